"""Figures of the noise sweep: WER against SNR, and where attention falls on a noisy input.

matplotlib's object interface (Figure, not pyplot) draws without a display or global state.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from asr.analysis.noise_focus import AttentionExample
from asr.analysis.wer_table import AVERAGE, WerTable

SPEECH_COLOR = "#00e5ff"


def plot_wer_vs_snr(table: WerTable, path: str | Path) -> Path:
    """One panel for the average over noise kinds and one per kind; one line per system, in a band
    of its 95 % bootstrap interval."""
    panels = [AVERAGE, *table.kinds]
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure = Figure(figsize=(4.2 * columns, 3.4 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False, sharey=True).ravel()
    x = np.arange(len(table.snrs))
    labels = ["clean" if snr is None else f"{snr:g}" for snr in table.snrs]
    for ax, kind in zip(axes, panels, strict=False):  # spare axes are hidden below
        for system in table.systems:
            wer = [table.cell(system, kind, snr) for snr in table.snrs]
            line, = ax.plot(x, [np.nan if w is None else 100 * w for w in wer], marker="o", label=system)
            # Each cell's 95 % interval as a band. Whether two systems differ is the paired differences'
            # call (results.md): bands that overlap may still hide a clear paired difference.
            bounds = [table.interval(system, kind, snr) for snr in table.snrs]
            ax.fill_between(x, [np.nan if b is None else 100 * b.lo for b in bounds],
                            [np.nan if b is None else 100 * b.hi for b in bounds], color=line.get_color(),
                            alpha=0.15, linewidth=0)
        ax.set_title(f"{AVERAGE} over kinds" if kind == AVERAGE else kind)
        ax.set_xticks(x, labels)
        ax.set_xlabel("SNR (dB)")
        ax.grid(alpha=0.3)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    for ax in axes[::columns]:
        ax.set_ylabel("WER (%)")
    axes[0].legend(fontsize="small")
    return _save(figure, path)


def plot_attention_example(example: AttentionExample, waveform: np.ndarray, sample_rate: int,
                           path: str | Path) -> Path:
    """The noisy input's spectrogram, the last decoder layer's cross-attention (mean over heads) and
    the attention each encoder frame receives, with the clean recording's speech regions outlined.
    The time axis ends with the audio: attention on Whisper's padding beyond it is not drawn."""
    figure = Figure(figsize=(11, 8), layout="constrained")
    spectrum, cross, received = figure.subplots(3, 1, sharex=True, height_ratios=[2, 2, 1.2])
    duration = len(waveform) / sample_rate
    regions = [_span(example, first, last) for first, last in _runs(example.speech)]

    spectrum.specgram(waveform, NFFT=512, Fs=sample_rate, noverlap=512 - sample_rate // 100, cmap="magma")
    spectrum.set_ylabel("frequency (Hz)")
    spectrum.set_title(f"{example.utterance}, {example.condition}: \u201c{example.text}\u201d", fontsize="medium")
    for start, end in regions:
        spectrum.add_patch(Rectangle((start, 0), end - start, sample_rate / 2, fill=False,
                                     edgecolor=SPEECH_COLOR, linewidth=1.5))

    if example.cross_attention is not None:
        weights = example.cross_attention[-1].mean(axis=0)  # (tokens, frames)
        tokens, frames = weights.shape
        extent_x = (_span(example, 0, 0)[0], _span(example, frames - 1, frames - 1)[1])
        cross.imshow(weights, aspect="auto", interpolation="nearest", cmap="viridis",
                     extent=(*extent_x, tokens - 0.5, -0.5))
        cross.set_yticks(range(tokens), example.pieces, fontsize="small")
        for start, end in regions:
            cross.add_patch(Rectangle((start, -0.5), end - start, tokens, fill=False,
                                      edgecolor=SPEECH_COLOR, linewidth=1.5))
        cross.set_ylabel("output token")
    else:
        cross.text(0.5, 0.5, "empty hypothesis: no cross-attention", ha="center", va="center",
                   transform=cross.transAxes)
    cross.set_title("cross-attention, last decoder layer, mean over heads", fontsize="medium")

    if example.cross_attention is not None:
        for layer, weights in enumerate(example.cross_attention):
            per_frame = weights.mean(axis=(0, 1))
            received.plot(_times(example, len(per_frame)), per_frame, label=f"decoder layer {layer + 1}")
    if example.encoder_attention is not None:
        per_frame = example.encoder_attention[-1].mean(axis=(0, 1))
        received.plot(_times(example, len(per_frame)), per_frame, color="black", linestyle="--",
                      label="encoder, last layer")
    for start, end in regions:
        received.axvspan(start, end, color=SPEECH_COLOR, alpha=0.15, linewidth=0)
    received.set_ylabel("attention / frame")
    received.set_xlabel("time (s)")
    if received.lines:
        received.legend(fontsize="x-small", loc="upper right")
    received.set_xlim(0, duration)
    return _save(figure, path)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) index of every run of True."""
    padded = np.concatenate([[False], np.asarray(mask, dtype=bool), [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def _times(example: AttentionExample, frames: int) -> np.ndarray:
    """Centres of the first `frames` encoder frames, in seconds."""
    return example.frame_offset + np.arange(frames) * example.frame_shift


def _span(example: AttentionExample, first: int, last: int) -> tuple[float, float]:
    """Seconds covered by encoder frames first ... last."""
    return (example.frame_offset + (first - 0.5) * example.frame_shift,
            example.frame_offset + (last + 0.5) * example.frame_shift)


def _save(figure: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path
