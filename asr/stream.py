"""Reading audio of any length in bounded blocks: mono float32 at the model's rate.

soundfile reads WAV, FLAC, OGG and MP3 (and the other formats libsndfile knows) a block at a
time; anything else, such as M4A or the sound track of a video, is decoded by an ffmpeg
subprocess where ffmpeg is installed. Memory is bounded by the block size, never by the length
of the recording, so an hour costs what ten seconds do.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Union

import numpy as np
import soundfile as sf

from asr.audio import SAMPLE_RATE, check_file, check_not_cut_short, error_reason, prepare_waveform, resampling_ratio
from asr.errors import AudioError
from asr.resample import resample, sinc_kernels

STDIN = "-"  # the source name that reads standard input
# What libsndfile reads; found in folders whether or not ffmpeg is installed.
SOUNDFILE_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".caf", ".w64")
# What only ffmpeg reads; found in folders only where it is installed.
FFMPEG_EXTENSIONS = (".m4a", ".aac", ".wma", ".mp4", ".m4v", ".mkv", ".webm", ".mov", ".avi")


def ffmpeg_path() -> Optional[str]:
    return shutil.which("ffmpeg")


def audio_extensions() -> tuple[str, ...]:
    """File name endings (lower case) of the audio this machine can read."""
    return SOUNDFILE_EXTENSIONS + (FFMPEG_EXTENSIONS if ffmpeg_path() else ())


def read_blocks(
    source: Union[str, Path], sample_rate: int = SAMPLE_RATE, block_seconds: float = 10.0
) -> Iterator[np.ndarray]:
    """The recording as consecutive mono float32 blocks at `sample_rate` of about `block_seconds`.

    `source` is a file, or "-" for standard input (spooled to a temporary file, since audio
    decoders need to seek). Raises AudioError naming `source` as soon as it proves unreadable:
    before the first block for most problems, after some blocks when the file breaks off.
    """
    if block_seconds <= 0:
        raise ValueError(f"block_seconds must be positive, got {block_seconds}")
    name = str(source)
    if name == STDIN:
        with _spooled_stdin() as path:
            yield from _read_file(path, name, sample_rate, block_seconds)
    else:
        yield from _read_file(Path(name), name, sample_rate, block_seconds)


def probe_duration(source: Union[str, Path]) -> Optional[float]:
    """Seconds of audio in a file that soundfile reads, from its header; None if unknown."""
    if str(source) == STDIN or not Path(source).is_file():  # opening a pipe could wait for ever
        return None
    try:
        info = sf.info(os.fsencode(source))  # bytes: a name need not be UTF-8
    except (sf.LibsndfileError, RuntimeError, OSError):
        return None
    return info.frames / info.samplerate if info.samplerate > 0 else None


@contextmanager
def _spooled_stdin() -> Iterator[Path]:
    if sys.stdin is None or sys.stdin.isatty():
        raise AudioError(STDIN, "standard input is a terminal, not audio: pipe a file into it")
    with tempfile.NamedTemporaryFile(prefix="asr-stdin-") as spool:
        shutil.copyfileobj(sys.stdin.buffer, spool, length=1 << 20)
        spool.flush()
        yield Path(spool.name)


def _read_file(path: Path, name: str, sample_rate: int, block_seconds: float) -> Iterator[np.ndarray]:
    check_file(path, name)
    try:
        handle = sf.SoundFile(os.fsencode(path))  # bytes: a name need not be UTF-8
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        reason = error_reason(err)
        ffmpeg = ffmpeg_path()
        if ffmpeg is None:
            suffix = Path(name).suffix.lower()
            if suffix not in SOUNDFILE_EXTENSIONS:
                reason += f"; reading {suffix or 'it'} needs ffmpeg, which is not installed"
            raise AudioError(name, f"not a readable audio file ({reason})") from None
        yield from _read_ffmpeg(ffmpeg, path, name, sample_rate, block_seconds)
        return
    with handle:
        yield from _read_soundfile(handle, path, name, sample_rate, block_seconds)


def _read_soundfile(handle: sf.SoundFile, path: Path, name: str, sample_rate: int,
                    block_seconds: float) -> Iterator[np.ndarray]:
    check_not_cut_short(handle, path, name)
    rate = handle.samplerate
    frames_per_block = max(1, int(block_seconds * rate))
    resampler: Optional[Resampler] = None
    read = 0
    while True:
        try:
            data = handle.read(frames_per_block, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as err:
            raise AudioError(name, f"unreadable after {read / rate:.1f} s ({error_reason(err)})") from None
        if not len(data):
            break
        read += len(data)
        mono = prepare_waveform(data, rate, rate, name)  # checks the rate and the samples, downmixes
        resampler = resampler or Resampler(rate, sample_rate)
        if (out := resampler.feed(mono)).size:
            yield out
    if resampler is None:
        raise AudioError(name, "contains no samples")
    if handle.format in ("WAV", "WAVEX") and read < handle.frames:  # libsndfile stops quietly
        raise AudioError(name, f"cut short while being read: {read / rate:.1f} s of the {handle.frames / rate:.1f} s "
                               "it held when opened")
    if (out := resampler.finish()).size:
        yield out


def _read_ffmpeg(ffmpeg: str, path: Path, name: str, sample_rate: int, block_seconds: float) -> Iterator[np.ndarray]:
    command = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-i", str(path),
               "-vn", "-ac", "1", "-ar", str(sample_rate), "-f", "f32le", "-"]
    block_bytes = 4 * max(1, int(block_seconds * sample_rate))
    # ffmpeg's messages go to a file: a full stderr pipe nobody reads would stall it.
    with tempfile.TemporaryFile() as messages, \
            subprocess.Popen(command, stdout=subprocess.PIPE, stderr=messages) as process:
        assert process.stdout is not None  # stdout=PIPE
        read = 0
        try:
            # A full read (blocking until block_bytes or the end) splits no sample but the last.
            while chunk := process.stdout.read(block_bytes):
                samples = np.frombuffer(chunk[: len(chunk) - len(chunk) % 4], dtype="<f4").astype(np.float32)
                if len(samples):
                    read += len(samples)
                    yield prepare_waveform(samples, sample_rate, sample_rate, name)
        finally:
            if process.poll() is None:  # the reader stopped early: the rest is not wanted
                process.kill()
            process.wait()
        if process.returncode != 0:
            messages.seek(0)
            lines = messages.read().decode("utf-8", "replace").strip().splitlines()
            reason = lines[-1] if lines else f"ffmpeg exited with status {process.returncode}"
            raise AudioError(name, f"not a readable audio file (ffmpeg: {reason})")
        if read == 0:
            raise AudioError(name, "contains no samples")


class Resampler:
    """Resamples a stream block by block to the samples `asr.resample` gives for the whole of it.

    The resampler computes the output in groups of new/g samples (g = gcd of the rates), group n
    from the input samples within `width` of [n * orig/g, (n + 1) * orig/g). Each block is
    resampled together with `context` samples on either side, and only the groups whose window
    lay wholly inside real input are kept; the rest wait for the next block.
    """

    def __init__(self, orig_rate: int, new_rate: int):
        orig_rate, new_rate = resampling_ratio(orig_rate, new_rate)  # the ratio prepare_waveform resamples by
        g = math.gcd(orig_rate, new_rate)
        self.orig_rate, self.new_rate = orig_rate, new_rate
        self.orig, self.new = orig_rate // g, new_rate // g
        _, width = sinc_kernels(self.orig, self.new)
        self.context_groups = width // self.orig + 1
        context = self.context_groups * self.orig
        # Input from `context` samples before the next group to emit; zeros before the start, as
        # the resampler pads.
        self.pending = np.zeros(context, np.float32)
        self.fed = 0
        self.emitted = 0

    def feed(self, samples: np.ndarray) -> np.ndarray:
        if self.orig == self.new:
            return samples
        self.fed += len(samples)
        self.pending = np.concatenate([self.pending, samples])
        context = self.context_groups * self.orig
        groups = (len(self.pending) - 2 * context) // self.orig
        if groups <= 0:
            return np.zeros(0, np.float32)
        used = self.pending[: 2 * context + groups * self.orig]
        out = self._resample(used)[self.context_groups * self.new : (self.context_groups + groups) * self.new]
        self.pending = self.pending[groups * self.orig :]
        self.emitted += len(out)
        return out

    def finish(self) -> np.ndarray:
        if self.orig == self.new:
            return np.zeros(0, np.float32)
        total = math.ceil(self.new * self.fed / self.orig)  # the resampler's output length
        start = self.context_groups * self.new
        return self._resample(self.pending)[start : start + total - self.emitted]

    def _resample(self, samples: np.ndarray) -> np.ndarray:
        return resample(samples, self.orig_rate, self.new_rate)


class AudioWindow:
    """The samples of a stream from some point on, addressed by their index in the whole stream."""

    def __init__(self) -> None:
        self.start = 0  # stream index of the first sample held
        self.end = 0  # stream index one past the last sample held (= samples appended in all)
        self._blocks: list[np.ndarray] = []

    def append(self, block: np.ndarray) -> None:
        self._blocks.append(block)
        self.end += len(block)

    def take(self, span: tuple[int, int]) -> np.ndarray:
        """A copy of the samples [start, end) of `span`, all of them held."""
        first, last = span
        if first < self.start or last > self.end:
            raise ValueError(f"samples {first}-{last} are not held (held: {self.start}-{self.end})")
        held = np.concatenate(self._blocks) if len(self._blocks) != 1 else self._blocks[0]
        self._blocks = [held]
        return held[first - self.start : last - self.start].copy()

    def forget_before(self, index: int) -> None:
        drop = min(index, self.end) - self.start
        if drop > 0:
            held = np.concatenate(self._blocks)
            self._blocks = [held[drop:].copy()]
            self.start += drop
