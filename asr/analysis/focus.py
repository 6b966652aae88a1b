"""Noise focus: how much of the decoder's cross-attention lands on speech rather than on noise.

A noisy test utterance is a clean recording plus noise, so the clean signal says which encoder
frames hold speech (`speech_mask`). A cross-attention matrix, heads x queries x frames with rows
summing to one, puts some share of its mass on those frames (`attention_focus`). Uniform
attention would put exactly the share of speech frames there (the chance level), so the share is
also reported normalised against chance: 0 at chance, 1 with everything on speech, below 0 when
attention is drawn to the noise. Sharpness is the mean row entropy in nats, and that entropy over
log(frames), the entropy of uniform attention (0: one-hot rows, 1: uniform rows).

Everything here is a pure function of arrays; torch tensors are accepted and read as float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np


def _as_array(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, possibly on a GPU or with a gradient
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def frame_energy_db(signal: Any, hop_length: int = 160, win_length: int = 400) -> np.ndarray:
    """(N,) waveform -> (T,) mean power in dB of frames covering samples [i*hop, i*hop + win).

    T = 1 + (N - win) // hop, as the log-mel frontend counts frames (a signal shorter than one
    window is zero-padded to one frame).
    """
    x = _as_array(signal).reshape(-1)
    if len(x) < win_length:
        x = np.pad(x, (0, win_length - len(x)))
    num_frames = 1 + (len(x) - win_length) // hop_length
    starts = np.arange(num_frames)[:, None] * hop_length
    power = np.mean(x[starts + np.arange(win_length)] ** 2, axis=1)
    return 10.0 * np.log10(np.maximum(power, 1e-20))


def speech_activity(
    clean: Any, threshold_db: float = 40.0, hop_length: int = 160, win_length: int = 400
) -> np.ndarray:
    """(N,) clean waveform -> (T,) bool per feature frame: within `threshold_db` of the loudest frame.

    The threshold is relative, so the mask does not depend on the recording level. A silent
    (all-zero) signal has no speech.
    """
    x = _as_array(clean).reshape(-1)
    energy = frame_energy_db(x, hop_length, win_length)
    if not np.any(x):
        return np.zeros(len(energy), dtype=bool)
    return energy >= energy.max() - threshold_db


def subsample_mask(mask: Any, rate: int, num_frames: Optional[int] = None) -> np.ndarray:
    """(T,) feature-frame mask -> (T',) encoder-frame mask for a subsampling `rate`.

    Encoder frame j stands for feature frames [j*rate, (j+1)*rate) and counts as speech if any of
    them is: a frame is noise-only only when no speech reaches it. T' is ceil(T / rate) unless
    `num_frames` (the encoder's own length, which convolution edges can shorten) is given; frames
    past the end of the mask are noise-only.
    """
    mask = _as_array(mask).reshape(-1) > 0
    if num_frames is None:
        num_frames = math.ceil(len(mask) / rate)
    padded = np.zeros(num_frames * rate, dtype=bool)
    kept = min(len(mask), len(padded))
    padded[:kept] = mask[:kept]
    return padded.reshape(num_frames, rate).any(axis=1)


def speech_mask(
    clean: Any,
    subsampling: int,
    num_frames: Optional[int] = None,
    threshold_db: float = 40.0,
    hop_length: int = 160,
    win_length: int = 400,
) -> np.ndarray:
    """(N,) clean waveform -> (T',) bool over encoder frames: True where the frame holds speech."""
    active = speech_activity(clean, threshold_db, hop_length, win_length)
    return subsample_mask(active, subsampling, num_frames)


@dataclass(frozen=True, eq=False)  # array fields: compare them with numpy, not ==
class Focus:
    """Attention statistics per layer and head: every array is (layers, heads).

    Statistics are means over query rows; a `Focus` from `mean_focus` averages utterances, each
    counting once, and `utterances` says how many.
    """

    speech_share: np.ndarray  # attention mass on speech frames
    normalized_share: np.ndarray  # (share - chance) / (1 - chance); NaN where chance is 0 or 1
    entropy: np.ndarray  # row entropy, nats
    normalized_entropy: np.ndarray  # row entropy / log(frames); 0 for a single frame
    chance: float  # share of frames that hold speech
    utterances: int = 1

    def summary(self) -> dict:
        """Means over heads per layer, and over everything; plain lists and floats for JSON."""
        fields = ("speech_share", "normalized_share", "entropy", "normalized_entropy")
        return {
            "utterances": self.utterances,
            "chance": self.chance,
            "overall": {name: _nanmean(getattr(self, name)) for name in fields},
            "per_layer": {name: [_nanmean(row) for row in getattr(self, name)] for name in fields},
            "per_head": {name: getattr(self, name).tolist() for name in fields},
        }


def _nanmean(x: np.ndarray) -> Optional[float]:
    x = np.asarray(x)
    return None if np.all(np.isnan(x)) else float(np.nanmean(x))


def row_entropy(attention: Any) -> np.ndarray:
    """(..., frames) distributions -> (...) entropy in nats (0 log 0 = 0)."""
    p = _as_array(attention)
    return -np.sum(p * np.log(np.where(p > 0, p, 1.0)), axis=-1)


def attention_focus(attention: Any, speech: Any) -> Focus:
    """Speech share and sharpness of cross-attention over one utterance.

    attention: (layers, heads, queries, frames), a sequence of (heads, queries, frames) per layer
        (as the decoder returns, batch index taken), or one layer's (heads, queries, frames);
        each row sums to one over the utterance's frames.
    speech: (frames,) bool, True on speech frames (`speech_mask`).
    """
    if isinstance(attention, (list, tuple)):
        attention = np.stack([_as_array(layer) for layer in attention])
    weights = _as_array(attention)
    if weights.ndim == 3:
        weights = weights[None]
    speech = _as_array(speech).reshape(-1) > 0
    if weights.ndim != 4 or weights.shape[-1] != len(speech):
        raise ValueError(
            f"attention {weights.shape} does not match (layers, heads, queries, {len(speech)} frames)"
        )
    if not np.allclose(weights.sum(-1), 1.0, atol=1e-2):  # loose enough for bf16 weights
        raise ValueError("attention rows must sum to one (probabilities over frames, not scores)")
    frames = len(speech)
    chance = float(speech.mean())
    share = weights[..., speech].sum(-1).mean(-1)
    if 0.0 < chance < 1.0:
        normalized_share = (share - chance) / (1.0 - chance)
    else:
        normalized_share = np.full_like(share, np.nan)
    entropy = row_entropy(weights).mean(-1)
    normalized_entropy = entropy / math.log(frames) if frames > 1 else np.zeros_like(entropy)
    return Focus(share, normalized_share, entropy, normalized_entropy, chance)


def mean_focus(focuses: Sequence[Focus]) -> Focus:
    """Average of per-utterance statistics (NaN-aware), each utterance weighted by its `utterances`."""
    if not focuses:
        raise ValueError("no attention statistics to average")
    weights = np.array([f.utterances for f in focuses], dtype=np.float64)

    def mean(name: str) -> np.ndarray:
        values = np.stack([getattr(f, name) for f in focuses])  # (utterances, layers, heads)
        w = weights[:, None, None] * ~np.isnan(values)
        total = w.sum(0)
        return np.divide(np.nansum(values * w, 0), total, out=np.full(total.shape, np.nan), where=total > 0)

    return Focus(
        speech_share=mean("speech_share"),
        normalized_share=mean("normalized_share"),
        entropy=mean("entropy"),
        normalized_entropy=mean("normalized_entropy"),
        chance=float(np.average([f.chance for f in focuses], weights=weights)),
        utterances=int(weights.sum()),
    )
