"""What decoding returns for one utterance."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, Optional

if TYPE_CHECKING:  # annotations only: a Result is built without torch on the ONNX Runtime path
    from torch import Tensor

    from asr.decoding.align import FrameTiming


class Word(NamedTuple):
    word: str
    start: float  # seconds from the start of the audio
    end: float
    confidence: float  # mean over its tokens of their CTC posterior on the frames aligned to them


@dataclass(frozen=True)
class Timings:
    """Seconds spent on each stage, for the whole batch the utterance was decoded in."""

    encode: float  # features, encoder and CTC posteriors
    search: float
    align: float  # CTC forced alignment, time stamps
    attention: float  # the teacher-forced pass for attention weights (0 unless asked for)

    @property
    def total(self) -> float:
        return self.encode + self.search + self.align + self.attention


@dataclass
class Result:
    text: str
    tokens: list[int]
    pieces: list[str]  # tokens as written in the vocabulary (word starts or spaces as ▁)
    score: float  # the search's score of the chosen hypothesis (log domain; see DecodingOptions.mode)
    # From the CTC forced alignment (Viterbi) of the transcript, in the CTC head's labels. All three
    # are empty when they do not fit in the frames (only possible in "attention" mode).
    token_times: list[tuple[float, float]]  # (start, end) seconds per token
    # Words as `text` writes them ("The", "dog."), timed by the CTC head even where it spells them its
    # own way (asr.decoding.align.written_words).
    words: list[Word]
    alignment: list[int]  # per encoder frame, the position in `tokens` it emits, or -1 for a blank
    # The CTC log-probability of that path (None without one): how well the text fits the audio by
    # the CTC head alone, without the decoder's sense of what text is likely.
    alignment_score: Optional[float]
    frame_timing: FrameTiming  # where encoder frames (alignment, attention columns) lie in time
    duration: float  # seconds of audio
    speech_prob: float  # CTC non-blank posterior, mean over its densest 1 s (the no-speech gate's measure)
    timings: Timings
    # On request (DecodingOptions.return_attention). Row i of cross_attention is the decoder step
    # that predicted tokens[i]; None if the hypothesis is longer than the decoder's position table.
    cross_attention: Optional[Tensor] = None  # (layers, heads, len(tokens), frames), rows sum to 1
    encoder_attention: Optional[Tensor] = None  # (layers, heads, frames, frames), rows sum to 1
    # The decoder's probability of no speech, where its rule was applied (DecodingOptions.decoder_no_speech_threshold).
    no_speech_prob: Optional[float] = None
