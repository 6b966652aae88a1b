"""Figures of one recognised utterance: what was heard, where each word was written, where attention looked.

Every function is pure: a waveform or a Result in, a new matplotlib Figure out. Figures are drawn by
Agg through the object interface (no pyplot, no display, no global state), so a web server can make
them from any thread. All figures share one layout: the same width and margins, and time in seconds
along x from 0 to the end of the audio. Stacked, the spectrogram's time axis lines up with the
attention plots' frame axis, which `Result.frame_timing` places in time.

Layers and heads are numbered from 0; `None` for a layer or a head means the mean over all of them.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
import torchaudio
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

from asr.decoding.align import FrameTiming
from asr.decoding.result import Result

# Spectrogram analysis: 25 ms windows every 10 ms, 80 mel bands (what speech recognisers look at).
WINDOW_SECONDS = 0.025
HOP_SECONDS = 0.010
N_MELS = 80
DYNAMIC_RANGE_DB = 80.0
FREQUENCY_TICKS_HZ = (0, 500, 1000, 2000, 4000, 8000, 16000)

# Layout in inches, the same for every figure so that their x axes line up when stacked.
WIDTH = 10.0
LEFT = 1.1  # room for token labels
RIGHT = 1.0  # room for the colour bar and its label
BOTTOM = 0.55
TOP = 0.45  # room for the title
TITLE_OFFSET = 0.08  # from the top edge
COLORBAR_GAP = 0.15
COLORBAR_WIDTH = 0.15
WORD_LABEL_ROWS = 2  # word labels alternate between rows so that short neighbouring words do not overlap
WORD_LABEL_STEP = 11  # points between those rows
MAX_TOKEN_LABELS = 40  # beyond this, only every k-th token is labelled
WORD_SHADES = ("#00e5ff", "#ffd600")


def log_mel(waveform: np.ndarray, sample_rate: int) -> np.ndarray:
    """(N,) samples -> (N_MELS, frames) power in dB, at most DYNAMIC_RANGE_DB below the loudest bin.

    Frame i is centred on sample i * hop, so frame i lies at i * HOP_SECONDS seconds.
    """
    win, hop = round(WINDOW_SECONDS * sample_rate), round(HOP_SECONDS * sample_rate)
    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=sample_rate, n_fft=win, win_length=win, hop_length=hop, n_mels=N_MELS, center=True, power=2.0
    )
    samples = torch.as_tensor(np.asarray(waveform, dtype=np.float32))
    if len(samples) < win:  # too short for the centred frame's reflection padding
        samples = torch.nn.functional.pad(samples, (0, win - len(samples)))
    power = mel(samples)
    db = 10.0 * torch.log10(torch.clamp(power, min=1e-10))
    return torch.clamp(db, min=float(db.max()) - DYNAMIC_RANGE_DB).numpy()


def spectrogram_figure(waveform: np.ndarray, sample_rate: int, result: Optional[Result] = None) -> Figure:
    """The log-mel spectrogram with the words of `result` where CTC aligned them: shaded spans, labelled above."""
    title = "Log-mel spectrogram" if result is None else "Log-mel spectrogram, words where CTC aligned them"
    figure, ax, colorbar_ax = _layout(3.2, title, top=TOP + WORD_LABEL_STEP * WORD_LABEL_ROWS / 72)
    duration = len(waveform) / sample_rate
    db = log_mel(waveform, sample_rate)
    hop = HOP_SECONDS
    image = ax.imshow(db, origin="lower", aspect="auto", cmap="magma", interpolation="nearest",
                      extent=(-hop / 2, (db.shape[1] - 0.5) * hop, -0.5, N_MELS - 0.5))
    positions, labels = _frequency_ticks(sample_rate)
    ax.set_yticks(positions, labels)
    ax.set_ylabel("frequency (kHz, mel scale)")
    _time_axis(ax, duration, "time (s)")
    figure.colorbar(image, cax=colorbar_ax, label="power (dB)")
    if result is not None:
        for index, word in enumerate(result.words):
            shade = WORD_SHADES[index % len(WORD_SHADES)]
            ax.axvspan(word.start, word.end, color=shade, alpha=0.18, linewidth=0)
            ax.axvline(word.start, color=shade, linewidth=0.8)
            ax.axvline(word.end, color=shade, linewidth=0.8, linestyle="--")
            ax.annotate(_escape(word.word), xy=((word.start + word.end) / 2, 1.0), xycoords=("data", "axes fraction"),
                        xytext=(0, 3 + WORD_LABEL_STEP * (index % WORD_LABEL_ROWS)), textcoords="offset points",
                        ha="center", va="bottom", fontsize="small")
        if not result.words:
            ax.set_title("(no CTC word alignment for this transcript)", fontsize="small", loc="left")
    return figure


def cross_attention_figure(result: Result, layer: Optional[int] = None, head: Optional[int] = None) -> Figure:
    """The decoder's cross-attention: one row per output token (labelled), encoder frames along x in seconds."""
    attention = result.cross_attention
    if attention is None:
        return message_figure("No cross-attention: not asked for (return_attention), or no decoder tokens (a CTC mode "
                              "with a CTC vocabulary of its own), or a transcript too long for the decoder.")
    if attention.shape[2] == 0:
        return message_figure("No cross-attention: nothing was recognised.")
    weights = select_attention(attention, layer, head)
    frames = audio_frames(result.frame_timing, result.duration, weights.shape[1])
    weights = weights[:, :frames]
    tokens = weights.shape[0]
    title = f"Cross-attention, {_heads_name(attention, layer, head, 'decoder')}"
    figure, ax, colorbar_ax = _layout(min(12.0, max(2.4, 1.5 + 0.18 * tokens)), title)
    image = ax.imshow(weights, origin="upper", aspect="auto", cmap="viridis", interpolation="nearest",
                      vmin=0.0, extent=(*_frame_extent(result.frame_timing, frames), tokens - 0.5, -0.5))
    step = math.ceil(tokens / MAX_TOKEN_LABELS)
    ticks = list(range(0, tokens, step))
    ax.set_yticks(ticks, [_escape(result.pieces[i].replace(" ", "▁")) for i in ticks])
    ax.set_ylabel("output token")
    _time_axis(ax, result.duration, "encoder frame time (s)")
    figure.colorbar(image, cax=colorbar_ax, label="attention weight")
    return figure


def encoder_attention_figure(result: Result, layer: Optional[int] = None, head: Optional[int] = None) -> Figure:
    """The encoder's self-attention: query frames down, key frames across, both in seconds."""
    attention = result.encoder_attention
    if attention is None:
        return message_figure("No encoder self-attention: not asked for (return_attention).")
    if attention.shape[0] == 0:
        return message_figure("No encoder self-attention: this encoder has no self-attention layers.")
    weights = select_attention(attention, layer, head)
    frames = audio_frames(result.frame_timing, result.duration, weights.shape[1])
    weights = weights[:frames, :frames]
    figure, ax, colorbar_ax = _layout(4.5, f"Encoder self-attention, {_heads_name(attention, layer, head, 'encoder')}")
    left, right = _frame_extent(result.frame_timing, frames)
    image = ax.imshow(weights, origin="upper", aspect="auto", cmap="viridis", interpolation="nearest",
                      vmin=0.0, extent=(left, right, right, left))
    _time_axis(ax, result.duration, "key frame time (s)")
    ax.set_ylim(result.duration, 0.0)
    ax.set_ylabel("query frame time (s)")
    figure.colorbar(image, cax=colorbar_ax, label="attention weight")
    return figure


def message_figure(text: str) -> Figure:
    """A figure that says why there is nothing to draw, so that a page keeps its layout."""
    figure = Figure(figsize=(WIDTH, 1.0))
    FigureCanvasAgg(figure)
    figure.text(0.5, 0.5, text, ha="center", va="center", wrap=True)
    return figure


def select_attention(attention: Tensor, layer: Optional[int] = None, head: Optional[int] = None) -> np.ndarray:
    """(layers, heads, queries, keys) -> (queries, keys): one layer or the mean over layers, likewise heads."""
    layers, heads = attention.shape[:2]
    for name, index, count in (("layer", layer, layers), ("head", head, heads)):
        if index is not None and not 0 <= index < count:
            raise ValueError(f"{name} {index} does not exist: there are {count} (0 to {count - 1})")
    weights = attention.detach().float().cpu()
    weights = weights.mean(0) if layer is None else weights[layer]
    weights = weights.mean(0) if head is None else weights[head]
    return weights.numpy()


def audio_frames(timing: FrameTiming, duration: float, frames: int) -> int:
    """How many of the first `frames` encoder frames are centred inside the audio.

    Whisper models attend over 30 s of padding after the audio, which has nothing to show.
    """
    inside = math.ceil((duration - timing.offset) / timing.shift)
    return max(1, min(frames, inside))


def _frame_extent(timing: FrameTiming, frames: int) -> tuple[float, float]:
    """Seconds from the start of frame 0 to the end of the last frame, each `shift` wide around its centre."""
    return timing.offset - timing.shift / 2, timing.offset + (frames - 0.5) * timing.shift


def _heads_name(attention: Tensor, layer: Optional[int], head: Optional[int], stack: str) -> str:
    layers, heads = attention.shape[:2]
    layer_name = f"mean of {layers} {stack} layers" if layer is None and layers > 1 else f"{stack} layer {layer or 0}"
    head_name = f"mean of {heads} heads" if head is None and heads > 1 else f"head {head or 0}"
    return f"{layer_name}, {head_name}"


def _layout(height: float, title: str, top: float = TOP) -> tuple[Figure, Axes, Axes]:
    """A figure `height` inches tall, titled at its top left, with the plot and colour bar axes at the shared
    margins (`top` inches above the plot hold the title and anything drawn above the plot)."""
    figure = Figure(figsize=(WIDTH, height))
    FigureCanvasAgg(figure)
    figure.text(LEFT / WIDTH, 1 - TITLE_OFFSET / height, title, ha="left", va="top", fontsize="medium")
    plot_width = WIDTH - LEFT - RIGHT
    bottom, plot_height = BOTTOM / height, (height - BOTTOM - top) / height
    ax = figure.add_axes((LEFT / WIDTH, bottom, plot_width / WIDTH, plot_height))
    colorbar_ax = figure.add_axes(((LEFT + plot_width + COLORBAR_GAP) / WIDTH, bottom, COLORBAR_WIDTH / WIDTH,
                                   plot_height))
    return figure, ax, colorbar_ax


def _time_axis(ax: Axes, duration: float, label: str) -> None:
    ax.set_xlim(0.0, duration)
    ax.set_xlabel(label)


def _frequency_ticks(sample_rate: int) -> tuple[list[float], list[str]]:
    """Positions on the mel band axis of round frequencies (torchaudio's default HTK mel scale)."""
    def mel(hz: float) -> float:
        return 2595.0 * math.log10(1.0 + hz / 700.0)

    step = mel(sample_rate / 2) / (N_MELS + 1)  # band m is centred on mel (m + 1) * step
    ticks = [(mel(hz) / step - 1, f"{hz / 1000:g}") for hz in FREQUENCY_TICKS_HZ if hz <= sample_rate / 2]
    ticks = [(position, label) for position, label in ticks if position >= -0.5]  # on the axis, not below band 0
    return [position for position, _ in ticks], [label for _, label in ticks]


def _escape(text: str) -> str:
    """Text shown as written: matplotlib would read a pair of $ as mathematics."""
    return text.replace("$", r"\$")
