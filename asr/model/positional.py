"""Sinusoidal position signals."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def sinusoids(positions: Tensor, channels: int, max_timescale: float = 10000.0) -> Tensor:
    """(len(positions), channels): sines in the first half, cosines in the second (Whisper's layout)."""
    half = channels // 2
    increment = math.log(max_timescale) / (half - 1)
    inv_timescales = torch.exp(-increment * torch.arange(half, dtype=torch.float32, device=positions.device))
    scaled = positions.float()[:, None] * inv_timescales[None, :]
    return torch.cat([torch.sin(scaled), torch.cos(scaled)], dim=1)


def absolute_positions(length: int, channels: int, device: torch.device | None = None) -> Tensor:
    return sinusoids(torch.arange(length, device=device), channels)


def relative_positions(length: int, channels: int, device: torch.device | None = None) -> Tensor:
    """Signals for distances length-1 down to -(length-1)."""
    return sinusoids(torch.arange(length - 1, -length, -1, device=device), channels)
