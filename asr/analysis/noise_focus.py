"""The noise-focus analysis: does attention stay on the voice as the noise gets louder?

Every noisy utterance of a sweep (asr.noisy) is a clean recording plus noise, so the clean
recording says which encoder frames hold speech (`speech_mask`, at the model's subsampling rate
and with the encoder's own frame count). Decoding the noisy copy with `return_attention` gives the
decoder's cross-attention over those frames for each output token and the encoder's
self-attention; `attention_focus` turns each into speech share and sharpness per layer and head.
Both are taken over the frames that hold audio (`over_audio`: not over Whisper's padding).

Per attention kind ("cross", "encoder") and layer/head, a `FocusTable` holds:
- the mean focus per condition, and per SNR pooled over noise kinds;
- the Spearman correlation between an utterance's normalised speech share (0 at chance, 1 all on
  speech) and its WER: pooled over every (utterance, condition) pair, where the SNR drives both,
  and within each condition (the mean of the per-condition correlations), where it does not.
  Focus that matters for recognition shows as a negative correlation within conditions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Sequence

import numpy as np
from scipy.stats import rankdata
from torch import Tensor

from asr.analysis.focus import Focus, attention_focus, mean_focus, speech_mask
from asr.analysis.markdown import markdown_table
from asr.audio import load_audio
from asr.data.manifest import Utterance
from asr.decoding.result import Result
from asr.noisy import CLEAN, Condition, snr_label
from asr.recognizer import Recognizer

ATTENTIONS = ("cross", "encoder")


@dataclass(frozen=True)
class UtteranceFocus:
    id: str
    condition: str
    cross: Optional[Focus]  # None for an empty hypothesis: no decoder step looked at the audio
    encoder: Optional[Focus]


@dataclass(frozen=True, eq=False)
class AttentionExample:
    """One decoded noisy utterance, with what its figure needs."""

    utterance: str
    condition: str
    audio: str  # the noisy recording
    text: str
    pieces: list[str]  # one label per cross-attention row
    speech: np.ndarray  # (frames,) bool, from the clean recording
    frame_shift: float  # seconds between encoder frames
    frame_offset: float  # centre of encoder frame 0, seconds
    cross_attention: Optional[np.ndarray]  # (layers, heads, tokens, frames), see `over_audio`
    encoder_attention: Optional[np.ndarray]  # (layers, heads, frames, frames)


class FocusRecorder:
    """Computes the focus of every decoded utterance against the speech mask of its clean recording.

    Used as the observer of `evaluate_model`, one condition at a time (`observer`), so that no
    attention weights outlive their batch; keeps the full weights of one (utterance, condition)
    pair, `example`, for a figure.
    """

    def __init__(self, recognizer: Recognizer, clean_audio: Mapping[str, str],
                 example: Optional[tuple[str, str]] = None, threshold_db: float = 40.0):
        frontend = recognizer.model.config.frontend
        self.sample_rate = frontend.sample_rate
        self.hop_length, self.win_length = frontend.hop_length, frontend.win_length
        self.rate = recognizer.model.encoder.subsampling.rate
        self.clean_audio = clean_audio  # utterance id -> clean recording
        self.threshold_db = threshold_db  # a feature frame is speech within this many dB of the loudest
        self.example_key = example
        self.example: Optional[AttentionExample] = None
        self.records: list[UtteranceFocus] = []
        self._masks: dict[tuple[str, int], np.ndarray] = {}  # the same for every condition of an utterance

    def observer(self, condition: str) -> Callable[[Utterance, Result], None]:
        return lambda utterance, result: self.observe(condition, utterance, result)

    def observe(self, condition: str, utterance: Utterance, result: Result) -> None:
        if result.encoder_attention is None:
            raise ValueError("decode with return_attention=True to record attention focus")
        frames = result.encoder_attention.shape[-1]  # the encoder frames that hold audio
        speech = self.speech_mask(utterance.id, frames)
        encoder = over_audio(result.encoder_attention, frames) if result.encoder_attention.shape[0] else None
        has_cross = result.cross_attention is not None and result.cross_attention.shape[2] > 0
        cross = over_audio(result.cross_attention, frames) if has_cross else None
        self.records.append(UtteranceFocus(
            id=utterance.id,
            condition=condition,
            cross=attention_focus(cross, speech) if cross is not None else None,
            encoder=attention_focus(encoder, speech) if encoder is not None else None,
        ))
        if (utterance.id, condition) == self.example_key:
            self.example = AttentionExample(
                utterance=utterance.id, condition=condition, audio=utterance.audio, text=result.text,
                pieces=list(result.pieces), speech=speech, frame_shift=result.frame_timing.shift,
                frame_offset=result.frame_timing.offset, cross_attention=cross, encoder_attention=encoder,
            )

    def speech_mask(self, utt_id: str, frames: int) -> np.ndarray:
        key = (utt_id, frames)
        if key not in self._masks:
            clean = load_audio(self.clean_audio[utt_id], self.sample_rate)
            self._masks[key] = speech_mask(clean, self.rate, frames, self.threshold_db, self.hop_length,
                                           self.win_length)
        return self._masks[key]


def over_audio(attention: Tensor, frames: int) -> np.ndarray:
    """Attention weights over the first `frames` key frames, each row renormalised to sum to one.

    A model decoded with pad_to_frames (Whisper's 30 s) also attends to the silent padding after
    the audio; the question here is how attention divides between voice and noise, which both lie
    in the audio, and the answer should compare across models that pad and models that do not.
    """
    weights = attention[..., :frames].double().numpy()
    total = weights.sum(axis=-1, keepdims=True)
    return weights / np.where(total > 0, total, 1.0)


@dataclass(frozen=True, eq=False)
class FocusTable:
    """The focus of one attention kind over a sweep; arrays are (layers, heads) unless noted."""

    attention: str
    by_condition: dict[str, Focus]
    by_snr: dict[str, Focus]  # snr_label -> pooled over noise kinds
    correlation_pooled: np.ndarray  # Spearman rho(normalised share, WER); NaN where undefined
    correlation_within: np.ndarray
    layer_correlation_pooled: np.ndarray  # (layers,), of the mean over a layer's heads
    layer_correlation_within: np.ndarray
    pairs: int  # (utterance, condition) pairs with a focus and a WER

    @property
    def shape(self) -> tuple[int, int]:
        return next(iter(self.by_condition.values())).speech_share.shape

    def summary(self) -> dict:
        return {
            "attention": self.attention,
            "layers": self.shape[0],
            "heads": self.shape[1],
            "by_condition": {name: focus.summary() for name, focus in self.by_condition.items()},
            "by_snr": {label: focus.summary() for label, focus in self.by_snr.items()},
            "wer_correlation": {
                "measure": "Spearman rho between per-utterance normalized_share and WER",
                "pairs": self.pairs,
                "pooled": _nan_to_none(self.correlation_pooled),
                "within_condition": _nan_to_none(self.correlation_within),
                "pooled_per_layer": _nan_to_none(self.layer_correlation_pooled),
                "within_condition_per_layer": _nan_to_none(self.layer_correlation_within),
            },
        }


def focus_table(attention: str, records: Sequence[UtteranceFocus], wer: Mapping[tuple[str, str], float],
                conditions: Sequence[Condition]) -> Optional[FocusTable]:
    """The table of `attention` ("cross" or "encoder"); None if no utterance had that attention.

    `wer` maps (condition name, utterance id) to the utterance's normalised WER.
    """
    kept = [r for r in records if getattr(r, attention) is not None]
    if not kept:
        return None
    by_condition = {c.name: mean_focus([getattr(r, attention) for r in kept if r.condition == c.name])
                    for c in conditions if any(r.condition == c.name for r in kept)}
    snr_of = {c.name: snr_label(c.snr_db) for c in conditions}
    by_snr = {}
    for label in dict.fromkeys(snr_of.values()):  # in sweep order, each once
        focuses = [getattr(r, attention) for r in kept if snr_of.get(r.condition) == label]
        if focuses:
            by_snr[label] = mean_focus(focuses)
    scored = [r for r in kept if (r.condition, r.id) in wer]
    shares = np.stack([getattr(r, attention).normalized_share for r in scored]) if scored else None
    errors = np.array([wer[r.condition, r.id] for r in scored], dtype=np.float64)
    groups = [np.array([r.condition == c.name for r in scored]) for c in conditions]
    layers, heads = next(iter(by_condition.values())).speech_share.shape
    pooled, within = np.full((layers, heads), np.nan), np.full((layers, heads), np.nan)
    layer_pooled, layer_within = np.full(layers, np.nan), np.full(layers, np.nan)
    if shares is not None:
        # NaN (chance 0 or 1) is a property of the utterance, so a layer's heads are all NaN or none is.
        layer_shares = shares.mean(axis=2)
        for layer in range(layers):
            layer_pooled[layer] = spearman(layer_shares[:, layer], errors)
            layer_within[layer] = _mean_within(layer_shares[:, layer], errors, groups)
            for head in range(heads):
                pooled[layer, head] = spearman(shares[:, layer, head], errors)
                within[layer, head] = _mean_within(shares[:, layer, head], errors, groups)
    return FocusTable(attention, by_condition, by_snr, pooled, within, layer_pooled, layer_within, len(scored))


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Rank correlation (ties ranked by their mean rank); NaN with fewer than 3 pairs or a constant side."""
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(np.corrcoef(rankdata(x), rankdata(y))[0, 1])


def _mean_within(x: np.ndarray, y: np.ndarray, groups: Sequence[np.ndarray]) -> float:
    rhos = [spearman(x[g], y[g]) for g in groups if g.any()]
    rhos = [r for r in rhos if not np.isnan(r)]
    return float(np.mean(rhos)) if rhos else float("nan")


def _nan_to_none(values: np.ndarray) -> list:
    return np.where(np.isnan(values), None, np.round(values, 6)).tolist()


def focus_markdown(table: FocusTable) -> str:
    """Speech share per layer (mean over heads) and per head, per SNR, with the WER correlations."""
    labels = list(table.by_snr)
    header = ["layer.head"] + [label if label == CLEAN else f"{label} dB" for label in labels] + \
        ["rho pooled", "rho within"]
    rows = []
    layers, heads = table.shape
    for layer in range(layers):
        shares = [float(table.by_snr[label].speech_share[layer].mean()) for label in labels]
        rows.append([f"**{layer + 1}** (mean)"] + [_number(s) for s in shares]
                    + [_number(table.layer_correlation_pooled[layer]), _number(table.layer_correlation_within[layer])])
        for head in range(heads):
            shares = [table.by_snr[label].speech_share[layer, head] for label in labels]
            rows.append([f"{layer + 1}.{head + 1}"] + [_number(s) for s in shares]
                        + [_number(table.correlation_pooled[layer, head]),
                           _number(table.correlation_within[layer, head])])
    chance = next(iter(table.by_snr.values())).chance
    caption = (f"Share of {table.attention} attention on frames that hold speech in the clean recording "
               f"(chance, the share of speech frames: {chance:.3f}); rho: Spearman correlation of an "
               f"utterance's normalised share with its WER over {table.pairs} (utterance, condition) pairs, "
               "pooled, or within each condition and averaged.")
    return caption + "\n\n" + markdown_table(header, rows)


def _number(value: float) -> str:
    return "n/a" if np.isnan(value) else f"{value:.3f}"
