"""Log-mel features, global mean/variance normalisation and SpecAugment."""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchaudio
from torch import Tensor, nn

from asr.config import FrontendConfig, SpecAugmentConfig


class LogMelFrontend(nn.Module):
    """Waveforms (B, N) -> log-mel features (B, T, n_mels) with per-utterance frame counts.

    Frames are not centred (Kaldi-style), so a frame never reads past an utterance's
    last sample: a padded utterance gets exactly the frames it would get alone.
    """

    def __init__(self, config: FrontendConfig):
        super().__init__()
        self.config = config
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=config.sample_rate,
            n_fft=config.n_fft,
            win_length=config.win_length,
            hop_length=config.hop_length,
            n_mels=config.n_mels,
            center=False,
            power=2.0,
            norm="slaney",
            mel_scale="slaney",
        )

    def num_frames(self, num_samples: Tensor) -> Tensor:
        win, hop = self.config.win_length, self.config.hop_length
        return 1 + torch.clamp(num_samples - win, min=0) // hop

    def forward(self, waveforms: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        short = self.config.win_length - waveforms.shape[1]
        if short > 0:
            waveforms = F.pad(waveforms, (0, short))
        with torch.autocast(waveforms.device.type, enabled=False):
            mel = self.mel(waveforms.float())  # (B, n_mels, T)
        feats = torch.log(torch.clamp(mel, min=1e-10)).transpose(1, 2)
        return feats, self.num_frames(lengths)


class WhisperLogMel(nn.Module):
    """Whisper's features, computed on each utterance's own samples so batching changes nothing.

    As faster-whisper does: 160 zero samples appended, centred (reflect-padded) frames, the last
    frame dropped, log10 mels clamped to 8 decades below the utterance's peak, then (x + 4) / 4.
    """

    def __init__(self, config: FrontendConfig):
        super().__init__()
        self.config = config
        filters = torchaudio.functional.melscale_fbanks(
            config.n_fft // 2 + 1, 0.0, config.sample_rate / 2, config.n_mels, config.sample_rate,
            norm="slaney", mel_scale="slaney",
        )
        self.register_buffer("filters", filters, persistent=False)  # (freqs, n_mels)
        self.register_buffer("window", torch.hann_window(config.win_length), persistent=False)

    def num_frames(self, num_samples: Tensor) -> Tensor:
        return num_samples // self.config.hop_length + 1

    def forward(self, waveforms: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        hop, half = self.config.hop_length, self.config.n_fft // 2
        padded = torch.zeros(waveforms.shape[0], waveforms.shape[1] + hop + 2 * half, device=waveforms.device)
        for i, n in enumerate(lengths.tolist()):
            own = F.pad(waveforms[i, :n].float(), (0, hop))
            padded[i, : n + hop + 2 * half] = F.pad(own[None, None], (half, half), mode="reflect")[0, 0]
        with torch.autocast(waveforms.device.type, enabled=False):
            spec = torch.stft(padded, self.config.n_fft, hop, self.config.win_length, self.window,
                              center=False, return_complex=True).abs() ** 2  # (B, freqs, frames)
            mel = torch.log10(torch.clamp(spec.transpose(1, 2) @ self.filters, min=1e-10))
        frames = self.num_frames(lengths)
        valid = torch.arange(mel.shape[1], device=mel.device)[None, :] < frames[:, None]
        peak = mel.masked_fill(~valid[..., None], float("-inf")).amax(dim=(1, 2), keepdim=True)
        mel = torch.maximum(mel, peak - 8.0)
        return (mel + 4.0) / 4.0, frames


def build_frontend(config: FrontendConfig) -> nn.Module:
    if config.kind == "fbank":
        return LogMelFrontend(config)
    if config.kind == "whisper":
        return WhisperLogMel(config)
    raise ValueError(f"unknown frontend kind {config.kind!r}; choose fbank or whisper")


class GlobalCMVN(nn.Module):
    """Subtracts the training data's mean and divides by its standard deviation, per mel bin."""

    def __init__(self, n_mels: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_mels))
        self.register_buffer("istd", torch.ones(n_mels))

    @torch.no_grad()
    def set_stats(self, total: Tensor, total_sq: Tensor, count: int) -> None:
        mean = total / count
        var = torch.clamp(total_sq / count - mean**2, min=1e-8)
        self.mean.copy_(mean)
        self.istd.copy_(var.rsqrt())

    def forward(self, feats: Tensor) -> Tensor:
        return (feats - self.mean) * self.istd


class SpecAugment(nn.Module):
    """Time warping, frequency masks and time masks, drawn per utterance (training only)."""

    def __init__(self, config: SpecAugmentConfig):
        super().__init__()
        self.config = config

    def forward(self, feats: Tensor, lengths: Tensor) -> Tensor:
        if not self.training:
            return feats
        feats = feats.clone()
        for i, length in enumerate(lengths.tolist()):
            feats[i, :length] = self._augment_one(feats[i, :length])
        return feats

    def _augment_one(self, x: Tensor) -> Tensor:
        cfg = self.config
        frames, bins = x.shape
        if cfg.time_warp > 0 and frames > 2 * cfg.time_warp + 1:
            x = time_warp(x, cfg.time_warp)
        for _ in range(cfg.num_freq_masks):
            width = int(torch.randint(0, cfg.max_freq_width + 1, ()))
            start = int(torch.randint(0, max(1, bins - width), ()))
            x[:, start : start + width] = 0.0
        max_width = min(cfg.max_time_width, int(cfg.max_time_ratio * frames))
        for _ in range(cfg.num_time_masks):
            width = int(torch.randint(0, max_width + 1, ()))
            start = int(torch.randint(0, max(1, frames - width), ()))
            x[start : start + width, :] = 0.0
        return x


def time_warp(x: Tensor, window: int) -> Tensor:
    """Stretches the features left of a random centre and squeezes those right of it (or vice versa)."""
    frames = x.shape[0]
    centre = int(torch.randint(window, frames - window, ()))
    warped = int(torch.randint(centre - window, centre + window + 1, ()))
    warped = min(max(warped, 1), frames - 1)
    image = x.t().unsqueeze(0)  # (1, bins, frames)
    left = F.interpolate(image[:, :, :centre], size=warped, mode="linear", align_corners=False)
    right = F.interpolate(image[:, :, centre:], size=frames - warped, mode="linear", align_corners=False)
    return torch.cat([left, right], dim=2)[0].t()
