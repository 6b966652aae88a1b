"""Transcribing a recording of any length: read in blocks, cut at pauses, decode in batches, stitch.

The model decodes an utterance whole, so an hour of audio is cut by voice activity detection
into segments of at most `VadConfig.max_segment_seconds`, which are decoded `batch_size` at a
time while the rest is still being read. Memory holds one block being read, the segment the
detector has not yet closed and the segments of one batch, whatever the recording's length. A
recording no longer than one segment is decoded whole, exactly as `Recognizer.transcribe` decodes it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Union

import numpy as np

from asr.decoding.options import DecodingOptions
from asr.decoding.result import Word
from asr.errors import ConfigError
from asr.stream import AudioWindow, read_blocks
from asr.vad import Span, VadConfig, VoiceActivityDetector

if TYPE_CHECKING:
    from asr.recognizer import Recognizer
    from asr.runtime.recognizer import OnnxRecognizer


@dataclass(frozen=True)
class LongformConfig:
    vad: VadConfig = field(default_factory=VadConfig)
    batch_size: int = 8  # segments decoded together
    block_seconds: float = 10.0  # audio read at a time

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.block_seconds <= 0:
            raise ConfigError(f"block_seconds must be positive, got {self.block_seconds}")


@dataclass(frozen=True)
class Segment:
    start: float  # seconds from the start of the recording
    end: float
    text: str
    words: list[Word]  # times from the start of the recording; empty if the model gives none


@dataclass(frozen=True)
class Transcript:
    audio: str  # the source as given: a path, or "-" for standard input
    duration: float  # seconds of audio
    segments: list[Segment]  # in time order; segments that decoded to nothing are left out
    elapsed: float  # wall-clock seconds spent reading and decoding

    @property
    def text(self) -> str:
        return " ".join(segment.text for segment in self.segments)

    @property
    def rtf(self) -> float:
        """Real-time factor: seconds of computing per second of audio."""
        return self.elapsed / self.duration if self.duration else 0.0


def transcribe_long(
    recognizer: Union["Recognizer", "OnnxRecognizer"],
    source: Union[str, Path],
    options: Optional[DecodingOptions] = None,
    config: LongformConfig = LongformConfig(),
    on_progress: Optional[Callable[[float], None]] = None,
    **overrides,
) -> Transcript:
    """Transcribes a file (or "-" for standard input) of any length, with time stamps from its start.

    `options` and `overrides` are as for `Recognizer.transcribe`; `on_progress` is called with
    the seconds read so far. Raises AudioError naming `source` if it is not readable audio.
    """
    began = time.perf_counter()
    rate = recognizer.sample_rate
    # The detector starts only once the recording proves longer than one piece, on everything read
    # so far (it gives the same spans for blocks of any size): a short clip loads no VAD model.
    detector: Optional[VoiceActivityDetector] = None
    whole_limit = round(config.vad.max_segment_seconds * rate)
    window = AudioWindow()
    ready: list[tuple[Span, np.ndarray]] = []  # found segments with their audio, not yet decoded
    segments: list[Segment] = []

    def decode(batch: list[tuple[Span, np.ndarray]]) -> None:
        results = recognizer.transcribe_batch([audio for _, audio in batch], options, config.batch_size, **overrides)
        segments.extend(_segment(span, result.text, result.words, rate) for (span, _), result in zip(batch, results)
                        if result.text.strip())

    spans: list[Span] = []
    for block in read_blocks(source, rate, config.block_seconds):
        window.append(block)
        if detector is not None:
            spans += detector.feed(block)
        elif window.end > whole_limit:  # nothing has been let go of yet: the window holds it all
            detector = VoiceActivityDetector(rate, config.vad)
            spans += detector.feed(window.take(Span(0, window.end)))
        if window.end > whole_limit:  # too long to decode whole: decode segment by segment
            ready += [(span, window.take(span)) for span in spans]
            spans = []
            window.forget_before(detector.settled)
            while len(ready) >= config.batch_size:
                decode(ready[: config.batch_size])
                ready = ready[config.batch_size :]
        if on_progress:
            on_progress(window.end / rate)
    if detector is not None:
        spans += detector.finish()
    if window.end <= whole_limit:
        ready = [(Span(0, window.end), window.take(Span(0, window.end)))]
    else:
        ready += [(span, window.take(span)) for span in spans]
    for start in range(0, len(ready), config.batch_size):
        decode(ready[start : start + config.batch_size])
    return Transcript(str(source), window.end / rate, segments, time.perf_counter() - began)


def _segment(span: Span, text: str, words: list[Word], rate: int) -> Segment:
    offset = span.start / rate
    moved = [Word(w.word, round(offset + w.start, 3), round(offset + w.end, 3), w.confidence) for w in words]
    return Segment(round(offset, 3), round(span.end / rate, 3), text.strip(), moved)
