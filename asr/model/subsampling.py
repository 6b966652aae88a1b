"""Convolutional front layers that shorten the feature sequence before the encoder.

`conv2d4/6/8` follow ESPnet/WeNet (2-D convolutions over time and frequency, no time padding,
so valid output frames never read padded input). `conv1d2` follows Whisper (two 1-D
convolutions over time, the second with stride 2); padding is re-zeroed between the
layers so that batching does not change any valid output frame.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _conv_out(length: Tensor, kernel: int, stride: int) -> Tensor:
    return torch.div(length - kernel, stride, rounding_mode="floor") + 1


class Conv2dSubsampling(nn.Module):
    # (kernel, stride) of each convolution, per overall rate
    LAYOUTS = {4: [(3, 2), (3, 2)], 6: [(3, 2), (5, 3)], 8: [(3, 2), (3, 2), (3, 2)]}

    def __init__(self, n_mels: int, d_model: int, rate: int):
        super().__init__()
        self.rate = rate
        self.layout = self.LAYOUTS[rate]
        convs = []
        channels, freq = 1, n_mels
        for kernel, stride in self.layout:
            convs.append(nn.Conv2d(channels, d_model, kernel, stride))
            channels = d_model
            freq = (freq - kernel) // stride + 1
        self.convs = nn.ModuleList(convs)
        self.out = nn.Linear(d_model * freq, d_model)

    def output_lengths(self, lengths: Tensor) -> Tensor:
        for kernel, stride in self.layout:
            lengths = _conv_out(lengths, kernel, stride)
        return lengths

    def min_input_frames(self) -> int:
        frames = 1
        for kernel, stride in reversed(self.layout):
            frames = (frames - 1) * stride + kernel
        return frames

    def forward(self, feats: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        x = feats.unsqueeze(1)  # (B, 1, T, F)
        for conv in self.convs:
            x = torch.relu(conv(x))
        b, c, t, f = x.shape
        x = self.out(x.transpose(1, 2).reshape(b, t, c * f))
        return x, self.output_lengths(lengths)


class Conv1dSubsampling(nn.Module):
    """Whisper's stem: conv(k3, pad 1) -> GELU -> conv(k3, stride 2, pad 1) -> GELU."""

    rate = 2

    def __init__(self, n_mels: int, d_model: int):
        super().__init__()
        self.conv1 = nn.Conv1d(n_mels, d_model, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(d_model, d_model, kernel_size=3, stride=2, padding=1)

    def output_lengths(self, lengths: Tensor) -> Tensor:
        return torch.div(lengths - 1, 2, rounding_mode="floor") + 1

    def min_input_frames(self) -> int:
        return 1

    def forward(self, feats: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        valid = (torch.arange(feats.shape[1], device=feats.device)[None, :] < lengths[:, None])
        x = F.gelu(self.conv1(feats.transpose(1, 2)))
        x = x * valid[:, None, :].to(x.dtype)
        x = F.gelu(self.conv2(x))
        return x.transpose(1, 2), self.output_lengths(lengths)


def build_subsampling(kind: str, n_mels: int, d_model: int) -> nn.Module:
    if kind == "conv1d2":
        return Conv1dSubsampling(n_mels, d_model)
    rates = {"conv2d4": 4, "conv2d6": 6, "conv2d8": 8}
    if kind not in rates:
        raise ValueError(f"unknown subsampling {kind!r}; choose from conv1d2, {', '.join(rates)}")
    return Conv2dSubsampling(n_mels, d_model, rates[kind])
