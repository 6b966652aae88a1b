"""Band-limited resampling in numpy, by the method torchaudio's `resample` uses by default: a
windowed sinc (Hann window, 6 zero crossings, roll-off 0.99) evaluated at each output phase.

Reading audio at any rate then needs no torch (the ONNX Runtime path imports none), and gives the
samples torchaudio gives, to float rounding (tests/test_resample.py holds the two together).
"""

from __future__ import annotations

import functools
import math

import numpy as np

ZERO_CROSSINGS = 6  # torchaudio's lowpass_filter_width
ROLLOFF = 0.99  # the filter's cut-off, as a share of the lower rate's Nyquist frequency
GROUPS_PER_PRODUCT = 1 << 14  # output groups computed at once: bounds the memory of a long recording


@functools.lru_cache(maxsize=8)
def sinc_kernels(orig: int, new: int) -> tuple[np.ndarray, int]:
    """(new, 2 * width + orig) filters, row j giving output j of every group of `new` outputs from
    the `orig` inputs it starts at, with `width` inputs of context on either side; `orig` and `new`
    are the rates divided by their greatest common divisor."""
    base = min(orig, new) * ROLLOFF
    width = math.ceil(ZERO_CROSSINGS * orig / base)
    # Time of each input relative to each output, in units of the filter's cut-off period.
    t = (np.arange(0, -new, -1)[:, None] / new + np.arange(-width, width + orig)[None, :] / orig) * base
    t = np.clip(t, -ZERO_CROSSINGS, ZERO_CROSSINGS)
    window = np.cos(t * math.pi / ZERO_CROSSINGS / 2) ** 2
    t = t * math.pi
    safe = np.where(t == 0, 1.0, t)
    sinc = np.where(t == 0, 1.0, np.sin(safe) / safe)
    return (sinc * window * (base / orig)).astype(np.float32), width


def resample(samples: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    """float32 `samples` (1-D) at `orig_rate` as float32 samples at `new_rate`: ceil(len * new / orig)
    of them, zeros assumed beyond both ends."""
    samples = np.asarray(samples, dtype=np.float32)
    if orig_rate == new_rate:
        return samples
    g = math.gcd(orig_rate, new_rate)
    orig, new = orig_rate // g, new_rate // g
    kernels, width = sinc_kernels(orig, new)
    padded = np.pad(samples, (width, width + orig))
    taps = kernels.shape[1]
    groups = (len(padded) - taps) // orig + 1
    windows = np.lib.stride_tricks.sliding_window_view(padded, taps)[::orig]  # (groups, taps), no copy
    out = np.empty((groups, new), np.float32)
    for first in range(0, groups, GROUPS_PER_PRODUCT):
        last = min(groups, first + GROUPS_PER_PRODUCT)
        np.matmul(windows[first:last], kernels.T, out=out[first:last])
    return out.reshape(-1)[: math.ceil(new * len(samples) / orig)]
