"""Transcribing a recording of any length: read in blocks, cut at pauses, decode in batches, stitch.

The model decodes an utterance whole, so an hour of audio is cut by voice activity detection
into segments of at most `VadConfig.max_segment_seconds`, which are decoded `batch_size` at a
time, on a thread of their own, while the rest is still being read and cut. Memory holds one block
being read, the segment the detector has not yet closed, the segments of the batch being decoded and
of the one filling, whatever the recording's length. A
recording no longer than one segment is decoded whole, exactly as `Recognizer.transcribe` decodes it.

A model that pads every input to a fixed window (Whisper's 30 s) spends as much on a one-word
segment as on a full window, so consecutive segments are packed, joined end to end, into windows
of up to that length (or `max_segment_seconds`, if shorter), as faster-whisper packs its VAD
chunks. A window's words go back to the segment their middle falls in, with their times moved
back to the recording's, and its text is cut between the same words.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Sequence, Union

import numpy as np

from asr.decoding.options import DecodingOptions, with_overrides
from asr.decoding.result import Word
from asr.errors import AudioError, ConfigError
from asr.stream import AudioWindow, read_blocks
from asr.vad import Span, VadConfig, VoiceActivityDetector

if TYPE_CHECKING:
    from asr.recognizer import Recognizer
    from asr.runtime.recognizer import OnnxRecognizer


@dataclass(frozen=True)
class LongformConfig:
    vad: VadConfig = field(default_factory=VadConfig)
    batch_size: int = 8  # segments (or packed windows) decoded together
    block_seconds: float = 10.0  # audio read at a time
    pack_segments: bool = True  # for models that pad to a fixed window: consecutive segments share one

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
    whole_limit = longest_whole(recognizer, options, config, **overrides)
    vad = replace(config.vad, max_segment_seconds=whole_limit / rate)
    packer = _Packer(whole_limit if config.pack_segments and _fixed_window(recognizer, options, overrides) else 0)
    window = AudioWindow()
    segments: list[Segment] = []
    word_count = _word_counter(recognizer)

    def decode_now(batch: list[_Window]) -> None:
        results = recognizer.transcribe_batch([w.audio() for w in batch], options, config.batch_size, **overrides)
        for packed, result in zip(batch, results):
            segments.extend(packed.segments(result.text, result.words, rate, word_count))

    # While there is more to read, a batch decodes on a thread of its own and this one reads on and
    # runs the voice activity detector: both runtimes let go of the GIL as they compute, and the
    # detector's many small steps fill time in which the decoder leaves a core idle. One batch at a
    # time is in flight (memory stays bounded), and batches finish in order. A recording decoded
    # whole starts no thread.
    in_flight: list[Future] = []  # the batch decoding, if any

    def finish_decoding() -> None:
        while in_flight:
            in_flight.pop().result()

    def decode(batch: list[_Window]) -> None:
        finish_decoding()
        in_flight.append(decoder.submit(decode_now, batch))

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="asr-decode") as decoder:
        spans: list[Span] = []
        for block in read_blocks(source, rate, config.block_seconds):
            window.append(block)
            if detector is not None:
                spans += detector.feed(block)
            elif window.end > whole_limit:  # nothing has been let go of yet: the window holds it all
                detector = VoiceActivityDetector(rate, vad)
                spans += detector.feed(window.take(Span(0, window.end)))
            if window.end > whole_limit:  # too long to decode whole: decode segment by segment
                for span in spans:
                    packer.add(span, window.take(span))
                spans = []
                window.forget_before(detector.settled)
                while len(packer.full) >= config.batch_size:
                    decode(packer.full[: config.batch_size])
                    del packer.full[: config.batch_size]
            if on_progress:
                on_progress(window.end / rate)
        if detector is not None:
            spans += detector.finish()
        if window.end <= whole_limit:
            packer.add(Span(0, window.end), window.take(Span(0, window.end)))
        else:
            for span in spans:
                packer.add(span, window.take(span))
        packer.close()
        finish_decoding()
        for start in range(0, len(packer.full), config.batch_size):  # nothing left to read: decoded here
            decode_now(packer.full[start : start + config.batch_size])
    return Transcript(str(source), window.end / rate, segments, time.perf_counter() - began)


def transcribe_short(
    recognizer: Union["Recognizer", "OnnxRecognizer"],
    sources: Sequence[Union[str, Path]],
    options: Optional[DecodingOptions] = None,
    config: LongformConfig = LongformConfig(),
    **overrides,
) -> list[Union[Transcript, AudioError]]:
    """Several recordings, each expected to fit one piece (`longest_whole`), decoded together; each
    transcript is what `transcribe_long` gives for it alone. A recording that cannot be read comes
    back as its AudioError, in its place; one that proves longer goes through `transcribe_long`.
    Each transcript's `elapsed` is its share of the time the group took.

    Recordings are not packed into shared windows as `transcribe_long` packs one recording's
    segments, although the 30 s encoder is three quarters of a short clip's time: on the 200
    clean utterances of recipes/whisper_ctc/dev_noise.py --per-speaker 20 (ONNX Runtime, git
    14a7801), packed with 1.5 s of silence between them they made 40.5 % WER against 36.3 % alone
    (0.5 s: 47.2 %), the decoder passing over whole utterances (145 deletions against 45); decoding
    alone again the 71 whose words strayed from the CTC head's greedy count over their stretch (under
    0.7 or over 1/0.7 times as many) still left 37.2 %."""
    began = time.perf_counter()
    whole_limit = longest_whole(recognizer, options, config, **overrides)
    read: list[Union[np.ndarray, AudioError]] = []
    for source in sources:
        try:
            read.append(np.concatenate([np.zeros(0, np.float32), *read_blocks(source, recognizer.sample_rate,
                                                                               config.block_seconds)]))
        except AudioError as err:
            read.append(err)
    whole = [i for i, audio in enumerate(read) if isinstance(audio, np.ndarray) and len(audio) <= whole_limit]
    try:
        results = recognizer.transcribe_batch([read[i] for i in whole], options, config.batch_size, **overrides)
    except AudioError:  # samples the model refuses: each alone below, so that one names itself
        whole, results = [], []
    rate = recognizer.sample_rate
    out: list[Union[Transcript, AudioError, None]] = [r if isinstance(r, AudioError) else None for r in read]
    share = (time.perf_counter() - began) / max(1, len(sources))
    for i, result in zip(whole, results):
        alone = _Window([Span(0, len(read[i]))], [read[i]])  # as transcribe_long decodes a recording this short
        segments = alone.segments(result.text, result.words, rate, _word_counter(recognizer))
        out[i] = Transcript(str(sources[i]), len(read[i]) / rate, segments, share)
    for i, transcript in enumerate(out):
        if transcript is None:
            try:
                out[i] = transcribe_long(recognizer, sources[i], options, config, **overrides)
            except AudioError as err:
                out[i] = err
    return out  # type: ignore[return-value]  # every place is filled above


def longest_whole(recognizer: Union["Recognizer", "OnnxRecognizer"], options: Optional[DecodingOptions] = None,
                  config: LongformConfig = LongformConfig(), **overrides) -> int:
    """The most samples decoded as one piece: `max_segment_seconds`, and no more than the model's
    fixed window holds (a 30.0 s recording is one feature frame too long for Whisper's)."""
    limit = round(config.vad.max_segment_seconds * recognizer.sample_rate)
    fixed_window = _fixed_window(recognizer, options, overrides)
    return min(limit, fixed_window) if fixed_window else limit


def _fixed_window(recognizer: Union["Recognizer", "OnnxRecognizer"], options: Optional[DecodingOptions],
                  overrides: dict) -> int:
    """The most samples that fit the fixed window every input is padded to (Whisper's 30 s), 0 if
    inputs are not padded."""
    frames = with_overrides(options or recognizer.default_options, overrides).pad_to_frames
    return max(0, frames - 1) * recognizer.frontend.hop_length if frames else 0  # a frame per hop, and one


def _word_counter(recognizer: Union["Recognizer", "OnnxRecognizer"]) -> Callable[[str], int]:
    """How many words the recognizer's time stamps give for a text: they are the words of the
    text's CTC labels (`asr.decoding.align.time_stamps`)."""
    labels = recognizer.ctc_tokenizer or recognizer.tokenizer
    return lambda text: len(labels.words(labels.encode(text)))


@dataclass
class _Window:
    """Segments decoded together, joined end to end, with their audio."""

    spans: list[Span] = field(default_factory=list)
    pieces: list[np.ndarray] = field(default_factory=list)

    @property
    def samples(self) -> int:
        return sum(len(p) for p in self.pieces)

    def audio(self) -> np.ndarray:
        return self.pieces[0] if len(self.pieces) == 1 else np.concatenate(self.pieces)

    def segments(self, text: str, words: list[Word], rate: int, word_count: Callable[[str], int]) -> list[Segment]:
        """What the window decoded to (`words` timed from its start), as one segment per span that
        heard words; `word_count` says how many of `words` a text gives."""
        if not text.strip():
            return []
        if len(self.spans) == 1:
            return [_segment(self.spans[0], text, words, rate)]
        text_words = text.split()
        # Words as the text writes them (asr.decoding.align.written_words) are its words one for one;
        # words in a CTC head's own spelling are counted through `word_count`.
        as_written = [w.word for w in words] == text_words
        if not words or not as_written and word_count(text) != len(words):
            # No time stamps to cut it by: the window stays one segment, over the time it covers.
            whole = Span(self.spans[0].start, self.spans[-1].end)
            return [Segment(round(whole.start / rate, 3), round(whole.end / rate, 3), text.strip(), [])]
        ends = np.cumsum([len(p) for p in self.pieces]) / rate  # where each span ends in the window
        owners = np.minimum(np.searchsorted(ends, [(w.start + w.end) / 2 for w in words], side="right"),
                            len(self.spans) - 1)
        segments, cut, counted = [], 0, 0
        for index, span in enumerate(self.spans):
            own = [w for w, owner in zip(words, owners) if owner == index]
            if not own:
                continue
            counted += len(own)
            start = cut
            if counted == len(words):
                cut = len(text_words)
            elif as_written:
                cut = counted
            else:  # the text words that hold the words so far (a text word may hold several, or none)
                while cut < len(text_words) and word_count(" ".join(text_words[: cut + 1])) <= counted:
                    cut += 1
            offset = span.start / rate - (ends[index] - len(self.pieces[index]) / rate)
            first, last = span.start / rate, span.end / rate
            moved = [Word(w.word, round(min(max(w.start + offset, first), last), 3),
                          round(min(max(w.end + offset, first), last), 3), w.confidence) for w in own]
            segments.append(Segment(round(first, 3), round(last, 3), " ".join(text_words[start:cut]), moved))
        return segments


class _Packer:
    """Gathers segments, in order, into windows of at most `limit` samples (0: a window per segment)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.open = _Window()
        self.full: list[_Window] = []  # closed windows, not yet decoded

    def add(self, span: Span, audio: np.ndarray) -> None:
        if self.open.spans and self.open.samples + len(audio) > self.limit:
            self.close()
        self.open.spans.append(span)
        self.open.pieces.append(audio)

    def close(self) -> None:
        if self.open.spans:
            self.full.append(self.open)
            self.open = _Window()


def _segment(span: Span, text: str, words: list[Word], rate: int) -> Segment:
    offset = span.start / rate
    moved = [Word(w.word, round(offset + w.start, 3), round(offset + w.end, 3), w.confidence) for w in words]
    return Segment(round(offset, 3), round(span.end / rate, 3), text.strip(), moved)
