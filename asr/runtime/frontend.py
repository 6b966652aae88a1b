"""Whisper's log-mel features with numpy, as `asr.features.WhisperLogMel` computes them in torch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Frontend:
    filters: np.ndarray  # (n_fft // 2 + 1, n_mels)
    window: np.ndarray  # (win_length,)
    mean: np.ndarray  # (n_mels,) CMVN
    istd: np.ndarray
    sample_rate: int
    n_fft: int
    hop_length: int

    @classmethod
    def load(cls, path: str | Path) -> "Frontend":
        with np.load(path) as arrays:
            sample_rate, n_fft, hop, _ = (int(x) for x in arrays["sizes"])
            return cls(arrays["filters"].astype(np.float32), arrays["window"].astype(np.float32),
                       arrays["mean"].astype(np.float32), arrays["istd"].astype(np.float32), sample_rate, n_fft, hop)

    def num_frames(self, num_samples: int) -> int:
        return num_samples // self.hop_length + 1

    def log_mel(self, waveform: np.ndarray, pad_to_frames: int = 0) -> np.ndarray:
        """(frames, n_mels) normalised features of one utterance, zero-padded to `pad_to_frames`.

        As faster-whisper: 160 zero samples appended, centred (reflect-padded) frames, log10 mels
        clamped to 8 decades below the peak, (x + 4) / 4; then the model's CMVN."""
        hop, half = self.hop_length, self.n_fft // 2
        own = np.pad(np.asarray(waveform, np.float32), (0, hop))
        padded = np.pad(own, (half, half), mode="reflect")
        count = self.num_frames(len(waveform))
        starts = np.arange(count) * hop
        frames = padded[starts[:, None] + np.arange(self.n_fft)[None, :]] * self.window
        power = np.abs(np.fft.rfft(frames, axis=-1)) ** 2
        mel = np.log10(np.maximum(power.astype(np.float32) @ self.filters, 1e-10))
        mel = np.maximum(mel, mel.max() - 8.0)
        features = ((mel + 4.0) / 4.0 - self.mean) * self.istd
        if pad_to_frames > count:
            features = np.pad(features, ((0, pad_to_frames - count), (0, 0)))
        return features.astype(np.float32)
