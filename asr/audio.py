"""Loading audio: any file soundfile reads, validated, mono, resampled to the model rate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from asr.errors import AudioError

SAMPLE_RATE = 16000
MIN_SAMPLE_RATE = 1000
MAX_SAMPLE_RATE = 384000


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Returns a float32 mono waveform at `sample_rate`, or raises AudioError naming the file."""
    source = str(path)
    try:
        data, rate = sf.read(source, dtype="float32", always_2d=True)
    except FileNotFoundError:
        raise AudioError(source, "file not found") from None
    except IsADirectoryError:
        raise AudioError(source, "is a directory, not an audio file") from None
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        raise AudioError(source, f"not a readable audio file ({err})") from None
    return prepare_waveform(data, rate, sample_rate, source)


def prepare_waveform(
    data: np.ndarray, rate: int, sample_rate: int = SAMPLE_RATE, source: str = "<array>"
) -> np.ndarray:
    """Validates samples (frames x channels, or 1-D), downmixes and resamples them."""
    data = np.asarray(data)
    if data.ndim == 1:
        data = data[:, None]
    if data.ndim != 2:
        raise AudioError(source, f"expected 1-D or 2-D audio, got shape {data.shape}")
    if not (MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE):
        raise AudioError(source, f"unsupported sample rate {rate} Hz")
    if data.shape[0] == 0:
        raise AudioError(source, "contains no samples")
    if np.issubdtype(data.dtype, np.integer):
        data = data.astype(np.float32) / float(np.iinfo(data.dtype).max)
    data = data.astype(np.float32, copy=False)
    if not np.all(np.isfinite(data)):
        raise AudioError(source, "contains NaN or infinite samples")
    mono = data.mean(axis=1)
    if rate != sample_rate:
        mono = AF.resample(torch.from_numpy(mono), rate, sample_rate).numpy()
    return np.ascontiguousarray(mono, dtype=np.float32)
