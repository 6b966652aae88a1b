"""Voice activity detection with Silero VAD, streaming: where the speech is in a recording of any length.

Silero VAD (the `silero-vad` package, MIT, its ONNX model shipped inside it and run here through
onnxruntime) gives each 32 ms window a speech probability, carrying its recurrent state from
window to window. Speech starts at a window whose probability reaches `start_threshold` and goes
on until one falls below the lower `end_threshold` (hysteresis, as Silero's own VADIterator
does), so a word does not flicker in and out on its softer parts. Speech separated by pauses
shorter than `min_silence_seconds` forms one segment; segments with too little speech are
dropped; each segment is widened by a pre-roll and a hangover so that soft onsets and word
endings are kept; and a segment that grows past `max_segment_seconds` is cut where it sounds
least like speech, since the model decodes segments whole.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Optional

import numpy as np

from asr.errors import ConfigError, VadModelError

WINDOW_SECONDS = 0.032  # Silero judges 512 samples at 16 kHz, 256 at 8 kHz
CONTEXT_SECONDS = 0.004  # and sees the last 64 (32) samples of the window before with each
SMOOTH_SECONDS = 0.1  # a long segment is cut at the lowest speech probability averaged over this


@dataclass(frozen=True)
class VadConfig:
    start_threshold: float = 0.5  # a window at least this likely to be speech starts speech
    end_threshold: float = 0.35  # speech goes on until a window is less likely than this
    min_speech_seconds: float = 0.1  # segments with less speech than this are dropped
    min_silence_seconds: float = 0.5  # shorter pauses do not end a segment
    pre_roll_seconds: float = 0.2  # audio kept before a segment's first speech window
    hangover_seconds: float = 0.2  # and after its last
    max_segment_seconds: float = 30.0  # longer segments are cut where they sound least like speech

    def __post_init__(self) -> None:
        if not 0 < self.end_threshold <= self.start_threshold < 1:
            raise ConfigError("VAD thresholds must satisfy 0 < end_threshold <= start_threshold < 1, got "
                              f"{self.end_threshold} and {self.start_threshold}")
        if min(self.min_speech_seconds, self.min_silence_seconds, self.pre_roll_seconds, self.hangover_seconds) < 0:
            raise ConfigError("VAD durations must not be negative")
        # A segment is only closed once its hangover has been heard.
        if self.hangover_seconds > self.min_silence_seconds:
            raise ConfigError("VAD hangover_seconds must not exceed min_silence_seconds")
        if self.max_segment_seconds < self.pre_roll_seconds + self.hangover_seconds + 10 * WINDOW_SECONDS:
            raise ConfigError(f"VAD max_segment_seconds {self.max_segment_seconds} leaves no room for speech")


class Span(NamedTuple):
    """Samples [start, end) of a recording."""

    start: int
    end: int


@functools.lru_cache(maxsize=None)
def silero_model() -> Any:
    """The Silero VAD model as an onnxruntime session, loaded once per process on first use.

    The session holds no state of a stream (each detector carries its own), so one serves every
    detector, in any thread. It is read from the file that `silero_vad.load_silero_vad(onnx=True)`
    reads, found without importing the package: its import sets torch's thread count to 1 for
    the whole process, which would slow the recognizer down.
    """
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise VadModelError("the voice activity detector needs the silero-vad package: pip install silero-vad")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "silero_vad.onnx"
    try:
        import onnxruntime
    except ImportError as err:
        raise VadModelError(f"the voice activity detector needs onnxruntime to run {path}: {err}") from err
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1  # one small window at a time
    options.log_severity_level = 3  # errors only
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own types for a missing or corrupt file
        raise VadModelError(f"the Silero VAD model {path} cannot be loaded (reinstall silero-vad): "
                            f"{str(err).strip()}") from err


class VoiceActivityDetector:
    """Feed a recording in blocks of any size; get its speech spans as soon as they are certain.

    The spans come in order and never overlap, and blocks of any size give the same spans. Everything
    before `settled` will never be part of a span still to come, so a caller holding the audio may
    let go of it. Sample rates: 16 kHz and 8 kHz, the rates Silero VAD was trained at.
    """

    def __init__(self, sample_rate: int, config: VadConfig = VadConfig()):
        if sample_rate not in (8000, 16000):
            raise ConfigError(f"the voice activity detector works at 16000 or 8000 Hz, not {sample_rate}")
        self.config = config
        self.sample_rate = sample_rate
        self.window = round(WINDOW_SECONDS * sample_rate)  # samples
        windows = lambda seconds: round(seconds * sample_rate / self.window)  # noqa: E731
        self.min_speech = max(1, windows(config.min_speech_seconds))
        self.min_silence = max(1, windows(config.min_silence_seconds))
        self.smooth = max(1, windows(SMOOTH_SECONDS))
        self.pre_roll = round(config.pre_roll_seconds * sample_rate)
        self.hangover = round(config.hangover_seconds * sample_rate)
        longest = round(config.max_segment_seconds * sample_rate) - self.pre_roll - self.hangover
        self.max_windows = longest // self.window  # of a segment's speech, between its pre-roll and hangover

        self._session = silero_model()
        self._state = np.zeros((2, 1, 128), np.float32)  # Silero's recurrent state
        self._context = np.zeros((1, round(CONTEXT_SECONDS * sample_rate)), np.float32)
        self._rate = np.array(sample_rate, np.int64)
        self._triggered = False  # the hysteresis: in speech
        self._remainder = np.zeros(0, np.float32)  # samples short of a whole window
        self._samples = 0  # samples fed
        self._windows = 0  # windows judged
        self._first = 0  # window index of _probability[0] and _speech[0]
        self._probability = np.zeros(0, np.float32)  # Silero's speech probability per window, from _first
        self._speech = np.zeros(0, bool)  # per window, from _first
        self._open: Optional[int] = None  # first window of the segment being built
        self._open_at_cut = False  # it starts where a long segment was cut
        self._last_speech = 0
        self._end = 0  # end sample of the last span given out

    @property
    def settled(self) -> int:
        """The sample before which no span still to come will start."""
        first_window = self._open if self._open is not None else self._windows
        return max(self._end, first_window * self.window - self.pre_roll)

    @property
    def open_start(self) -> Optional[int]:
        """The sample where the segment being built starts, or None while no speech is going on.

        A live recognizer shows partial results of this segment before the detector closes it."""
        if self._open is None:
            return None
        return max(self._end, 0, self._open * self.window - (0 if self._open_at_cut else self.pre_roll))

    @property
    def pending(self) -> Optional[Span]:
        """The span the segment being built will be, if no more speech comes before it closes: known
        once its hangover has been heard, a pause's `min_silence_seconds - hangover_seconds` before
        the detector is sure of it. A live recognizer decodes it ahead; speech that resumes, or a
        long segment's cut, makes it a different span."""
        if self._open is None or self._last_speech == self._windows - 1:
            return None
        stop = self._last_speech + 1
        if stop * self.window + self.hangover > self._samples:
            return None
        return self._span(self._open, stop, at_cut=False)

    def feed(self, samples: np.ndarray) -> list[Span]:
        """Spans that `samples`, following everything fed before, complete."""
        samples = np.concatenate([self._remainder, np.asarray(samples, np.float32).reshape(-1)])
        count = len(samples) // self.window
        self._remainder = samples[count * self.window :]
        self._samples += count * self.window
        probability = np.array([self._judge(samples[i * self.window : (i + 1) * self.window]) for i in range(count)],
                               np.float32)
        speech = np.zeros(count, bool)
        for i, p in enumerate(probability):
            threshold = self.config.end_threshold if self._triggered else self.config.start_threshold
            speech[i] = self._triggered = bool(p >= threshold)
        self._probability = np.concatenate([self._probability, probability])
        self._speech = np.concatenate([self._speech, speech])
        spans: list[Span] = []
        for is_speech in speech:
            spans += self._segment(is_speech)
        self._forget()
        return spans

    def finish(self) -> list[Span]:
        """The spans that the end of the recording completes."""
        self._samples += len(self._remainder)  # a last partial window is too short to judge
        self._remainder = np.zeros(0, np.float32)
        if self._open is None:
            return []
        return self._close(self._last_speech + 1, at_cut=False)

    def _judge(self, window: np.ndarray) -> float:
        """Silero's speech probability of the next window, which moves its state on."""
        audio = np.concatenate([self._context, window[None, :]], axis=1)
        probability, self._state = self._session.run(None, {"input": audio, "state": self._state, "sr": self._rate})
        self._context = audio[:, -self._context.shape[1] :]
        return float(probability[0, 0])

    def _segment(self, is_speech: bool) -> list[Span]:
        """Runs the segmenter over the next window."""
        window = self._windows
        self._windows += 1
        spans: list[Span] = []
        if is_speech:
            if self._open is None:
                self._open, self._open_at_cut = window, False
            self._last_speech = window
        elif self._open is not None and window - self._last_speech >= self.min_silence:
            spans += self._close(self._last_speech + 1, at_cut=False)
        if self._open is not None and window + 1 - self._open >= self.max_windows:
            spans += self._cut(window + 1)
        return spans

    def _cut(self, stop: int) -> list[Span]:
        """Ends the open segment, grown to `stop`, where its second half sounds least like speech."""
        assert self._open is not None
        first = self._open + self.max_windows // 2
        half = self.smooth // 2
        probability = self._probabilities(first - half, stop)
        padded = np.concatenate([probability, np.repeat(probability[-1:], half)])  # nothing is known past stop
        smoothed = np.convolve(padded, np.ones(2 * half + 1) / (2 * half + 1), mode="valid")
        cut = first + int(np.argmin(smoothed))
        spans = self._close(cut, at_cut=True)
        self._open, self._open_at_cut = cut, True
        self._last_speech = max(self._last_speech, cut)
        return spans

    def _close(self, stop: int, at_cut: bool) -> list[Span]:
        """Ends the open segment at window `stop`; a span unless it holds too little speech."""
        assert self._open is not None
        begin, self._open = self._open, None
        span = self._span(begin, stop, at_cut)
        if span is None:
            return []
        self._end = span.end
        return [span]

    def _span(self, begin: int, stop: int, at_cut: bool) -> Optional[Span]:
        """The span of a segment from window `begin` to `stop`, or None if it holds too little speech."""
        if int(self._speeches(begin, stop).sum()) < self.min_speech:
            return None
        start = begin * self.window - (0 if self._open_at_cut else self.pre_roll)
        end = stop * self.window + (0 if at_cut else self.hangover)
        return Span(max(start, self._end, 0), min(end, self._samples))

    def _probabilities(self, start: int, stop: int) -> np.ndarray:
        return self._probability[start - self._first : stop - self._first]

    def _speeches(self, start: int, stop: int) -> np.ndarray:
        return self._speech[start - self._first : stop - self._first]

    def _forget(self) -> None:
        """Drops the windows that no open segment will look at again."""
        keep = self._open if self._open is not None else self._windows
        drop = keep - self._first
        if drop > 0:
            self._probability = self._probability[drop:]
            self._speech = self._speech[drop:]
            self._first = keep


def detect_speech(samples: np.ndarray, sample_rate: int, config: VadConfig = VadConfig()) -> list[Span]:
    """The speech spans of a whole recording held in memory."""
    detector = VoiceActivityDetector(sample_rate, config)
    return detector.feed(samples) + detector.finish()
