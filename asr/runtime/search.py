"""The attention decoder's beam search over ONNX Runtime decoder steps, in numpy.

The same search as `asr.decoding.beam_search.beam_search` without CTC: `beam` rows per utterance
through the decoder's key/value cache; <eos> ranked among every row's candidates; a hypothesis
finishes when <eos> is among the beam; with `length_norm` finished hypotheses rank by score per
token and an utterance's search stops once `beam` have finished (Whisper's rule), else once the
best finished one leads every running one. Several utterances are searched together, their rows
in one decoder step: a step reads the whole output projection (Whisper's 51864 x 384 weights) for
any number of rows, so rows of several utterances share that read. Its parity with the PyTorch
search is tested.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np

from asr.config import ModelConfig
from asr.decoding.hypothesis import Hypothesis
from asr.decoding.vocabulary import never_emitted, token_room
from asr.errors import ConfigError

NEG_INF = float("-inf")
BLOCK = 64  # columns per block of top_columns' search
# (tokens (N, n), self_kv, utterances) -> (logits (N, V) of each row's last token, self_kv grown by n):
# the rows are a run of equally many per utterance, in the order of `utterances` (indices into the
# utterances searched), each run reading its utterance's cross-attention keys and values.
Step = Callable[[np.ndarray, np.ndarray, Sequence[int]], tuple[np.ndarray, np.ndarray]]


@dataclass
class _Candidate:
    row: int
    column: int
    score: float


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def top_columns(values: np.ndarray, k: int) -> np.ndarray:
    """Per row, the indices of the k largest values, largest first.

    A selection over all of a 50,000-token row costs more than a decoder step's arithmetic, so
    long rows are cut into blocks: the k largest values lie in the k blocks with the largest
    maxima, and only those blocks are searched."""
    rows, width = values.shape
    part = None
    if width > BLOCK * k * 8:
        padded = np.pad(values, ((0, 0), (0, -width % BLOCK)), constant_values=-np.inf)
        blocks = padded.reshape(rows, -1, BLOCK)
        chosen = np.argpartition(-blocks.max(axis=2), k - 1, axis=1)[:, :k]  # (rows, k) block numbers
        inside = (chosen[:, :, None] * BLOCK + np.arange(BLOCK)).reshape(rows, -1)  # their columns
        part = np.take_along_axis(inside, np.argpartition(-np.take_along_axis(padded, inside, axis=1), k - 1,
                                                          axis=1)[:, :k], axis=1)
    if part is None or (part >= width).any():  # short rows; or rows of fewer than k values above -inf
        part = np.argpartition(-values, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(values, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def beam_search(step: Step, self_kv: np.ndarray, config: ModelConfig, beam: int, max_lengths: Sequence[int],
                length_penalty: float = 0.0, length_norm: bool = False,
                forced: Sequence[int] = ()) -> list[list[Hypothesis]]:
    """Finished hypotheses of each utterance, best first. `step` runs decoder rows (see Step);
    `self_kv` is the empty cache of one row; `max_lengths`: per utterance, the most tokens out,
    counting the forced ones, which continue the prompt and are not part of the hypotheses."""
    prefix = [config.sos_id, *config.decoder_prompt, *forced]
    if len(forced) >= token_room(config):
        raise ConfigError(f"{len(forced)} forced tokens leave the decoder no room for more")
    never = np.array(never_emitted(config), dtype=np.int64)
    width = min(beam + 1, config.vocab_size - len(never))  # <eos> and the `beam` best other tokens
    searches = [_Search(config.eos_id, never, width, beam, max(1, min(limit, token_room(config)) - len(forced)),
                        length_penalty, length_norm) for limit in max_lengths]
    utterances = list(range(len(searches)))
    # The prompt is read once, by one row per utterance, and its cache copied to the `beam` rows;
    # only the first row of each is alive at first, so that the first step does not expand
    # `beam` copies of the same prompt.
    logits, kv = step(np.array([prefix] * len(utterances)), np.repeat(self_kv, len(utterances), axis=1), utterances)
    logits, kv = np.repeat(logits, beam, axis=0), np.repeat(kv, beam, axis=1)
    while utterances:
        going, rows, chosen = [], [], []
        for place, u in enumerate(utterances):
            picked = searches[u].advance(logits[place * beam : (place + 1) * beam])
            if picked is not None:
                going.append(u)
                rows.append(picked[0] + place * beam)
                chosen.append(picked[1])
        utterances = going
        if utterances:
            # np.take, not kv[:, rows]: indexing a middle axis gives a strided array, which the
            # decoder's input would then copy a second time, slowly.
            logits, kv = step(np.concatenate(chosen)[:, None], np.take(kv, np.concatenate(rows), axis=1), utterances)
    return [search.finished_best_first() for search in searches]


class _Search:
    """One utterance's hypotheses: `beam` rows, the first of them alone alive at first."""

    def __init__(self, eos: int, never: np.ndarray, width: int, beam: int, max_length: int, length_penalty: float,
                 length_norm: bool):
        """`never`: the tokens never emitted; `width`: candidates per row."""
        self.eos, self.never, self.width, self.beam, self.max_length = eos, never, width, beam, max_length
        self.length_penalty, self.length_norm = length_penalty, length_norm
        self.alive = np.arange(beam) == 0
        self.attention = np.zeros(beam)
        self.tokens = np.zeros((beam, 0), dtype=np.int64)
        self.finished: list[Hypothesis] = []

    def advance(self, logits: np.ndarray) -> Optional[tuple[np.ndarray, np.ndarray]]:
        """Takes the logits (beam, V) of every row's last token; returns which rows go on and the
        token each takes next, or None once the search is over."""
        beam, eos, width, length = self.beam, self.eos, self.width, self.tokens.shape[1]
        log_probs = log_softmax(logits.astype(np.float32))
        log_probs[:, self.never] = NEG_INF
        ranking = log_probs.copy()
        ranking[:, eos] = np.inf  # <eos> is always a candidate
        candidates = top_columns(ranking, width)  # (beam, width)
        new_attention = self.attention[:, None] + np.take_along_axis(log_probs, candidates, axis=1)
        score = new_attention + self.length_penalty * (length + (candidates != eos))
        score[~self.alive] = NEG_INF
        flat = score.reshape(-1)
        best = np.argsort(-flat, kind="stable")[: 2 * beam]

        running: list[_Candidate] = []
        for index in best:
            s = float(flat[index])
            if s == NEG_INF or len(running) == beam:
                break
            c = _Candidate(int(index) // width, int(index) % width, s)
            if candidates[c.row, c.column] == eos:
                self.finished.append(Hypothesis(tuple(self.tokens[c.row].tolist()), s, None,
                                                float(new_attention[c.row, c.column])))
            else:
                running.append(c)
        best_finished = max((h.score for h in self.finished), default=NEG_INF)
        if self.length_norm:
            settled = len(self.finished) >= beam
        else:
            leads = bool(running) and best_finished >= running[0].score
            settled = leads and (self.length_penalty <= 0 or len(self.finished) >= beam)
        if not running or length + 1 >= self.max_length or settled:
            wanted = beam - len(self.finished) if self.length_norm else (0 if self.finished else beam)
            self.finished += [Hypothesis((*self.tokens[c.row].tolist(), int(candidates[c.row, c.column])), c.score)
                              for c in running[: max(0, wanted)]]
            return None

        padded = running + [running[0]] * (beam - len(running))  # short beams get dead rows
        rows = np.array([c.row for c in padded])
        columns = np.array([c.column for c in padded])
        self.alive = np.arange(beam) < len(running)
        chosen = candidates[rows, columns]
        self.tokens = np.concatenate([self.tokens[rows], chosen[:, None]], axis=1)
        self.attention = new_attention[rows, columns]
        return rows, chosen

    def finished_best_first(self) -> list[Hypothesis]:
        rank = (lambda h: h.score / max(1, len(h.tokens))) if self.length_norm else (lambda h: h.score)
        return sorted(self.finished, key=rank, reverse=True)
