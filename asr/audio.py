"""Loading audio: any file soundfile reads, validated, mono, resampled to the model rate."""

from __future__ import annotations

import math
import os
import stat
import struct
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf

from asr.errors import AudioError
from asr.resample import resample

SAMPLE_RATE = 16000
MIN_SAMPLE_RATE = 1000
MAX_SAMPLE_RATE = 384000
# libsndfile reads no file with more channels; an array with more is a (channels, frames) one.
MAX_CHANNELS = 1024
# No recording comes near this (full scale is 1.0; 32-bit PCM passed unscaled reaches 2.1e9), and
# below it the float32 sums of resampling and of a frame's power spectrum cannot overflow.
MAX_AMPLITUDE = 1e12
# The sinc resampler (asr.resample, torchaudio's method) builds a kernel of (orig / g) x (new / g)
# taps, g being the rates' greatest common divisor: 70,560 from 44,100 Hz to 16 kHz, but 705 million (gigabytes) from an
# odd rate such as 44,101 Hz. A ratio needing more taps than this is replaced by a close one.
MAX_RESAMPLING_TAPS = 1_000_000


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Returns a float32 mono waveform at `sample_rate`, or raises AudioError naming the file."""
    source = str(path)
    check_file(Path(source), source)
    try:
        # As bytes: soundfile cannot encode a name that is not UTF-8 (Python keeps its odd bytes as surrogates).
        with sf.SoundFile(os.fsencode(source)) as handle:
            check_not_cut_short(handle, Path(source), source)
            rate = handle.samplerate
            data = handle.read(dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        raise AudioError(source, f"not a readable audio file ({error_reason(err)})") from None
    return prepare_waveform(data, rate, sample_rate, source)


def check_file(path: Path, name: str) -> None:
    """Raises AudioError naming `name` unless `path` is a regular file with something in it.

    Pipes and devices are refused before they are opened: opening a pipe nobody writes to waits
    for ever, and /dev/zero never ends.
    """
    try:
        info = path.stat()
    except FileNotFoundError:
        raise AudioError(name, "file not found") from None
    except OSError as err:  # a symbolic link loop, say
        raise AudioError(name, f"cannot be opened ({err.strerror or err})") from None
    if stat.S_ISDIR(info.st_mode):
        raise AudioError(name, "is a directory, not an audio file")
    if not stat.S_ISREG(info.st_mode):
        raise AudioError(name, "is a pipe or device, not a regular file")
    if not os.access(path, os.R_OK):
        raise AudioError(name, "permission denied")
    if info.st_size == 0:
        raise AudioError(name, "is empty (0 bytes)")


def check_not_cut_short(handle: sf.SoundFile, path: Path, name: str) -> None:
    """libsndfile quietly reads what there is of a WAV file whose data were cut short; a
    transcript of part of a file should not pass for the whole one."""
    if handle.format not in ("WAV", "WAVEX"):
        return
    with open(path, "rb") as f:
        promised, held = _riff_data_sizes(f, path.stat().st_size)
    # Writers that stream (to a pipe, say) cannot know the size and leave 0 or the maximum.
    if promised not in (0, 0xFFFFFFFF) and promised > held:
        raise AudioError(name, f"truncated: the header promises {promised} bytes of audio, the file holds {held}")


def _riff_data_sizes(f: BinaryIO, file_size: int) -> tuple[int, int]:
    """(bytes the 'data' chunk's header promises, bytes the file holds after it); (0, 0) if none."""
    f.seek(12)  # "RIFF", size, "WAVE"
    while True:
        header = f.read(8)
        if len(header) < 8:
            return 0, 0
        chunk, size = struct.unpack("<4sI", header)
        if chunk == b"data":
            return size, file_size - f.tell()
        f.seek(size + size % 2, os.SEEK_CUR)  # chunks are padded to an even size


def error_reason(err: Exception) -> str:
    """libsndfile's own words for what went wrong, without the file name it adds."""
    return (getattr(err, "error_string", None) or str(err)).rstrip(".")


def prepare_waveform(
    data: np.ndarray, rate: int, sample_rate: int = SAMPLE_RATE, source: str = "<array>"
) -> np.ndarray:
    """Validates samples (frames x channels, or 1-D), downmixes and resamples them."""
    data = np.asarray(data)
    if data.dtype.kind not in "iuf":  # not bool, complex, text or objects
        raise AudioError(source, f"samples of type {data.dtype} are not audio: expected integers or floats")
    if data.ndim == 1:
        data = data[:, None]
    if data.ndim != 2:
        raise AudioError(source, f"expected 1-D or 2-D audio, got shape {data.shape}")
    if not (MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE):
        raise AudioError(source, f"unsupported sample rate {rate} Hz")
    if data.shape[0] == 0:
        raise AudioError(source, "contains no samples")
    if data.shape[1] == 0:
        raise AudioError(source, "has no channels")
    if data.shape[1] > MAX_CHANNELS:
        raise AudioError(source, f"has {data.shape[1]} channels: samples go as (frames, channels), "
                                 "so a (channels, frames) array needs transposing")
    if np.issubdtype(data.dtype, np.integer):
        data = data.astype(np.float32) / float(np.iinfo(data.dtype).max)
    with np.errstate(over="ignore"):  # float64 beyond float32's range becomes inf, refused below
        data = data.astype(np.float32, copy=False)
    peak = float(np.abs(data).max())  # NaN if any sample is
    if not math.isfinite(peak):
        raise AudioError(source, "contains NaN or infinite samples")
    if peak > MAX_AMPLITUDE:
        raise AudioError(source, f"samples reach {peak:.3g}, far beyond full scale (1.0): not audio")
    mono = data.mean(axis=1)
    if rate != sample_rate:
        mono = resample(mono, *resampling_ratio(rate, sample_rate))
    return np.ascontiguousarray(mono, dtype=np.float32)


def resampling_ratio(orig_rate: int, new_rate: int) -> tuple[int, int]:
    """(orig, new) to resample from `orig_rate` to `new_rate` with: the rates themselves when
    the resampler's kernel for them is small, as for every usual rate; else the nearest ratio whose
    kernel has about MAX_RESAMPLING_TAPS taps at most. To 16 kHz that ratio is off by under 10
    parts per million for all but a few hundred rates, those a few hertz from a simple fraction or
    multiple of 16 kHz (4,001 Hz, 15,992 Hz), which are off by at most 0.05%."""
    g = math.gcd(orig_rate, new_rate)
    if (orig_rate // g) * (new_rate // g) <= MAX_RESAMPLING_TAPS:
        return orig_rate, new_rate
    # new/orig ~ p/q with q <= limit keeps the taps, p * q ~ q^2 * new/orig, within the bound.
    limit = max(1, math.isqrt(MAX_RESAMPLING_TAPS * orig_rate // new_rate))
    ratio = Fraction(new_rate, orig_rate).limit_denominator(limit)
    return ratio.denominator, ratio.numerator
