"""CTC forced alignment (Viterbi) of a token sequence, encoder frames in seconds, and the token and
word time stamps they give. numpy only: the PyTorch and the ONNX Runtime paths share it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, Optional, Sequence

import numpy as np

from asr.decoding.result import Word

if TYPE_CHECKING:
    from asr.config import FrontendConfig
    from asr.model.asr_model import ASRModel
    from asr.tokenizer import Tokenizer

NEG_INF = float("-inf")
BLANK_POSITION = -1  # what an alignment holds for a frame that emits a blank


def forced_align(log_probs: np.ndarray, tokens: Sequence[int], blank_id: int = 0) -> Optional[list[int]]:
    """The most probable CTC path that spells exactly `tokens`.

    log_probs: (T, V) of one utterance, valid frames only (a numpy array, or anything np.asarray
    reads). Returns, per frame, the position in `tokens` that the frame emits, or BLANK_POSITION;
    None if the tokens cannot fit in T frames (each token needs a frame, and a repeated token a
    blank frame between its copies).
    """
    log_probs = np.asarray(log_probs, dtype=np.float32)
    frames = log_probs.shape[0]
    labels = np.asarray(list(tokens), dtype=np.int64)
    states = 2 * len(labels) + 1  # blank, token 0, blank, token 1, ..., blank
    extended = np.full(states, blank_id, dtype=np.int64)
    extended[1::2] = labels
    emit = log_probs[:, extended]  # (T, S)
    # A path may jump over the blank between two tokens only when they differ.
    can_skip = np.zeros(states, dtype=bool)
    can_skip[3::2] = labels[1:] != labels[:-1]
    score = np.full(states, NEG_INF, dtype=np.float32)
    score[: min(2, states)] = emit[0, : min(2, states)]
    moves = np.zeros((frames, states), dtype=np.int8)  # how far back each state's best step came from
    candidates = np.full((3, states), NEG_INF, dtype=np.float32)  # stay, from s - 1, from s - 2
    for t in range(1, frames):
        candidates[0] = score
        candidates[1, 1:] = score[:-1]
        candidates[2, 2:] = np.where(can_skip[2:], score[:-2], NEG_INF)
        moves[t] = candidates.argmax(axis=0)  # the first of equal scores, as before
        score = candidates.max(axis=0) + emit[t]
    last = states - 1
    if states > 1 and score[states - 2] > score[last]:
        last = states - 2  # end on the last token rather than the final blank
    if score[last] == NEG_INF:
        return None
    path = [0] * frames
    state = last
    for t in range(frames - 1, -1, -1):
        path[t] = (state - 1) // 2 if state % 2 else BLANK_POSITION
        state -= int(moves[t, state])
    return path


def token_frames(alignment: Sequence[int], num_tokens: int) -> list[tuple[int, int]]:
    """First and last frame of each token in a complete alignment from `forced_align`."""
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for frame, position in enumerate(alignment):
        if position != BLANK_POSITION:
            first.setdefault(position, frame)
            last[position] = frame
    return [(first[k], last[k]) for k in range(num_tokens)]


@dataclass(frozen=True)
class FrameTiming:
    """Where encoder frames lie in time.

    Feature frame i covers samples [i * hop, i * hop + win) (frames are not centred; Whisper's
    are, on sample i * hop), and the subsampler builds encoder frame j from feature frames
    j * rate ... j * rate + span - 1 (span = its min_input_frames).
    Frame j is placed at the centre of the audio it reads, `offset + j * shift` seconds, and
    stands for the `shift` seconds around it.
    """

    shift: float  # seconds between encoder frames
    offset: float  # centre of encoder frame 0, in seconds

    @classmethod
    def of(cls, model: ASRModel) -> "FrameTiming":
        subsampling = model.encoder.subsampling
        return cls.for_frontend(model.config.frontend, subsampling.rate, subsampling.min_input_frames())

    @classmethod
    def for_frontend(cls, frontend: "FrontendConfig", rate: int, span: int) -> "FrameTiming":
        """For a subsampler that builds each encoder frame from `span` feature frames, `rate` apart."""
        hop = frontend.hop_length / frontend.sample_rate
        # Whisper's feature frames are centred on i * hop; ours start there.
        first_feature = 0.0 if frontend.kind == "whisper" else frontend.win_length / 2 / frontend.sample_rate
        return cls(shift=rate * hop, offset=first_feature + (span - 1) / 2 * hop)

    def span(self, first: int, last: int, duration: float) -> tuple[float, float]:
        """Seconds (start, end) covered by frames first ... last, clipped to [0, duration]."""
        start = self.offset + (first - 0.5) * self.shift
        end = self.offset + (last + 0.5) * self.shift
        return round(max(0.0, start), 3), round(min(duration, end), 3)


class TimeStamps(NamedTuple):
    token_times: list[tuple[float, float]]
    words: list[Word]
    alignment: list[int]
    path_score: Optional[float]  # log-probability of the aligned path: how well the tokens fit the audio


def time_stamps(log_probs: np.ndarray, tokens: list[int], tokenizer: "Tokenizer", timing: FrameTiming,
                duration: float, blank_id: int, written: Optional[str] = None) -> TimeStamps:
    """Token times, word times, the frame alignment of one utterance and its path's log-probability;
    log_probs (T', V) of its valid frames. All empty (the score None) when the tokens do not fit.
    `written`: the transcript that `tokens` spell in the CTC head's own labels (a decoder with a
    vocabulary of its own wrote it); the words are then given as it writes them (written_words)."""
    log_probs = np.asarray(log_probs, dtype=np.float32)
    alignment = forced_align(log_probs, tokens, blank_id)
    if alignment is None:
        return TimeStamps([], [], [], None)
    spans = token_frames(alignment, len(tokens))
    token_times = [timing.span(first, last, duration) for first, last in spans]
    confidence = [float(np.exp(log_probs[first : last + 1, token]).mean()) for (first, last), token in zip(spans, tokens)]
    words = [
        Word(word, token_times[positions[0]][0], token_times[positions[-1]][1],
             sum(confidence[p] for p in positions) / len(positions))
        for word, positions in tokenizer.words(tokens)
    ]
    if written is not None:
        words = written_words(written, words, tokenizer)
    return TimeStamps(token_times, words, alignment, path_log_prob(log_probs, tokens, alignment, blank_id))


def written_words(text: str, words: list[Word], tokenizer: "Tokenizer") -> list[Word]:
    """`words`, timed by a CTC head that spells them its own way (lower case, no punctuation: a
    CharTokenizer's normaliser), as `text` writes them ("The", "dog."), so that subtitles and word
    lists read as the transcript does. A written word takes the times of the CTC words that its
    normalised form holds ("it's" of "it is"); one that holds none (a lone dash) takes no time, where
    the word before it ends. Where the text does not map onto the words one normalised word at a
    time (a number written across words), the CTC head's words are given as they are."""
    written = text.split()
    spelled = [tokenizer.normalize(w).split() for w in written]
    if sum(len(s) for s in spelled) != len(words) or not words:
        return words
    out: list[Word] = []
    at = 0
    for word, parts in zip(written, spelled):
        group = words[at : at + len(parts)]
        if [w.word for w in group] != parts:
            return words
        at += len(parts)
        if group:
            out.append(Word(word, group[0].start, group[-1].end, sum(w.confidence for w in group) / len(group)))
        else:
            edge = out[-1].end if out else words[0].start
            out.append(Word(word, edge, edge, out[-1].confidence if out else words[0].confidence))
    return out


def path_log_prob(log_probs: np.ndarray, tokens: Sequence[int], alignment: Sequence[int], blank_id: int = 0) -> float:
    """The log-probability of the CTC path that `alignment` (forced_align's) reads off `tokens`."""
    emitted = [tokens[p] if p != BLANK_POSITION else blank_id for p in alignment]
    return float(np.asarray(log_probs)[np.arange(len(alignment)), emitted].sum())
