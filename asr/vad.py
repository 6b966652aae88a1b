"""Energy-based voice activity detection, streaming: where the speech is in a recording of any length.

A frame is speech when its energy stands `threshold_db` above the noise floor, a low percentile
of the frame energies around it (so the floor follows a noise that changes over an hour).
Speech frames separated by pauses shorter than `min_silence_seconds` form one segment;
segments with too little speech are clicks and dropped; each segment is widened by a pre-roll
and a hangover so that soft onsets and word endings ("s", "f") below the threshold are kept;
and a segment that grows past `max_segment_seconds` is cut at its quietest moment, since the
model decodes segments whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Optional

import numpy as np

from asr.errors import ConfigError


@dataclass(frozen=True)
class VadConfig:
    frame_seconds: float = 0.02  # energy frames, not overlapping
    threshold_db: float = 12.0  # how far above the noise floor a speech frame's energy lies
    # The noise floor of a frame: this percentile of the frame energies within floor_seconds
    # centred on it; so the detector looks floor_seconds / 2 ahead. A floor follows a slow change
    # of the noise; after a sudden rise, the louder noise passes for speech for a few seconds
    # (decoded, it mostly comes out empty), while a low percentile stays at the noise even where
    # most of the window is speech.
    floor_seconds: float = 8.0
    floor_percentile: float = 10.0
    # Digital silence has no noise to measure; the floor is never taken below this (dB re full scale).
    lowest_floor_db: float = -70.0
    min_speech_seconds: float = 0.1  # segments with fewer speech frames than this are clicks
    min_silence_seconds: float = 0.5  # shorter pauses do not end a segment
    pre_roll_seconds: float = 0.2  # audio kept before a segment's first speech frame
    hangover_seconds: float = 0.2  # and after its last
    max_segment_seconds: float = 20.0  # longer segments are cut at their quietest point

    def __post_init__(self) -> None:
        if self.frame_seconds <= 0 or self.floor_seconds < self.frame_seconds:
            raise ConfigError("VAD frame_seconds must be positive and floor_seconds at least one frame")
        if not 0 <= self.floor_percentile <= 100:
            raise ConfigError(f"VAD floor_percentile must lie in [0, 100], got {self.floor_percentile}")
        if min(self.min_speech_seconds, self.min_silence_seconds, self.pre_roll_seconds, self.hangover_seconds) < 0:
            raise ConfigError("VAD durations must not be negative")
        # A segment is only closed once its hangover has been heard.
        if self.hangover_seconds > self.min_silence_seconds:
            raise ConfigError("VAD hangover_seconds must not exceed min_silence_seconds")
        if self.max_segment_seconds < self.pre_roll_seconds + self.hangover_seconds + 10 * self.frame_seconds:
            raise ConfigError(f"VAD max_segment_seconds {self.max_segment_seconds} leaves no room for speech")


class Span(NamedTuple):
    """Samples [start, end) of a recording."""

    start: int
    end: int


class VoiceActivityDetector:
    """Feed a recording in blocks of any size; get its speech spans as soon as they are certain.

    The spans come in order and never overlap. Everything before `settled` will never be part
    of a span still to come, so a caller holding the audio may let go of it.
    """

    def __init__(self, sample_rate: int, config: VadConfig = VadConfig()):
        self.config = config
        self.frame = max(1, round(config.frame_seconds * sample_rate))  # samples
        frames = lambda seconds: round(seconds * sample_rate / self.frame)  # noqa: E731
        self.half_window = max(1, frames(config.floor_seconds) // 2)
        self.step = max(1, frames(0.5))  # frames classified with one noise floor
        self.min_speech = max(1, frames(config.min_speech_seconds))
        self.min_silence = max(1, frames(config.min_silence_seconds))
        self.smooth = max(1, frames(0.1))  # the window of the energy a long segment is cut at the lowest of
        self.pre_roll = round(config.pre_roll_seconds * sample_rate)
        self.hangover = round(config.hangover_seconds * sample_rate)
        self.max_frames = (round(config.max_segment_seconds * sample_rate) - self.pre_roll - self.hangover) // self.frame

        self._remainder = np.zeros(0, np.float32)  # samples short of a whole frame
        self._samples = 0  # samples fed
        self._frames = 0  # whole frames fed
        self._first = 0  # frame index of _energy[0] and _speech[0]
        self._energy = np.zeros(0, np.float32)  # dB per frame, from frame _first
        self._speech = np.zeros(0, bool)  # per classified frame, from frame _first
        self._classified = 0  # frames classified
        self._open: Optional[int] = None  # first frame of the segment being built
        self._open_at_cut = False  # it starts where a long segment was cut
        self._last_speech = 0
        self._end = 0  # end sample of the last span given out

    @property
    def settled(self) -> int:
        """The sample before which no span still to come will start."""
        first_frame = self._open if self._open is not None else self._classified
        return max(self._end, first_frame * self.frame - self.pre_roll)

    def feed(self, samples: np.ndarray) -> list[Span]:
        """Spans that `samples`, following everything fed before, complete."""
        samples = np.concatenate([self._remainder, np.asarray(samples, np.float32)])
        count = len(samples) // self.frame
        frames = samples[: count * self.frame].reshape(count, self.frame).astype(np.float64)
        self._remainder = samples[count * self.frame :]
        self._samples += count * self.frame
        self._frames += count
        energy = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12).astype(np.float32)
        self._energy = np.concatenate([self._energy, energy])
        spans: list[Span] = []
        while self._classified + self.step + self.half_window <= self._frames:
            spans += self._classify(self._classified + self.step)
        self._forget()
        return spans

    def finish(self) -> list[Span]:
        """The spans that the end of the recording completes."""
        self._samples += len(self._remainder)  # a last partial frame is too short to judge
        self._remainder = np.zeros(0, np.float32)
        spans: list[Span] = []
        while self._classified < self._frames:
            spans += self._classify(min(self._classified + self.step, self._frames))
        if self._open is not None:
            spans += self._close(self._last_speech + 1, at_cut=False)
        return spans

    def _classify(self, stop: int) -> list[Span]:
        """Decides frames _classified ... stop - 1 and runs the segmenter over them."""
        start = self._classified
        window = self._energies(start - self.half_window, stop + self.half_window)
        floor = max(float(np.percentile(window, self.config.floor_percentile)), self.config.lowest_floor_db)
        speech = self._energies(start, stop) > floor + self.config.threshold_db
        self._speech = np.concatenate([self._speech, speech])
        self._classified = stop
        spans: list[Span] = []
        for frame, is_speech in zip(range(start, stop), speech):
            if is_speech:
                if self._open is None:
                    self._open, self._open_at_cut = frame, False
                self._last_speech = frame
            elif self._open is not None and frame - self._last_speech >= self.min_silence:
                spans += self._close(self._last_speech + 1, at_cut=False)
            if self._open is not None and frame + 1 - self._open >= self.max_frames:
                spans += self._cut(frame + 1)
        return spans

    def _cut(self, stop: int) -> list[Span]:
        """Ends the open segment, grown to `stop`, at its quietest point in its second half."""
        assert self._open is not None
        first = self._open + self.max_frames // 2
        energy = self._energies(first, stop)
        width = min(self.smooth, len(energy))
        smoothed = np.convolve(energy, np.ones(width) / width, mode="same")
        cut = first + int(np.argmin(smoothed))
        spans = self._close(cut, at_cut=True)
        self._open, self._open_at_cut = cut, True
        self._last_speech = max(self._last_speech, cut)
        return spans

    def _close(self, stop: int, at_cut: bool) -> list[Span]:
        """Ends the open segment at frame `stop`; a span unless it holds too little speech."""
        assert self._open is not None
        begin, self._open = self._open, None
        if int(self._speeches(begin, stop).sum()) < self.min_speech:
            return []
        start = begin * self.frame - (0 if self._open_at_cut else self.pre_roll)
        end = stop * self.frame + (0 if at_cut else self.hangover)
        span = Span(max(start, self._end, 0), min(end, self._samples))
        self._end = span.end
        return [span]

    def _energies(self, start: int, stop: int) -> np.ndarray:
        return self._energy[max(start, self._first) - self._first : max(stop, self._first) - self._first]

    def _speeches(self, start: int, stop: int) -> np.ndarray:
        return self._speech[max(start, self._first) - self._first : max(stop, self._first) - self._first]

    def _forget(self) -> None:
        """Drops frames no floor window or open segment will look at again."""
        keep = self._classified - self.half_window
        if self._open is not None:
            keep = min(keep, self._open)
        drop = keep - self._first
        if drop > 0:
            self._energy = self._energy[drop:]
            self._speech = self._speech[drop:]
            self._first = keep


def detect_speech(samples: np.ndarray, sample_rate: int, config: VadConfig = VadConfig()) -> list[Span]:
    """The speech spans of a whole recording held in memory."""
    detector = VoiceActivityDetector(sample_rate, config)
    return detector.feed(samples) + detector.finish()
