"""Transformer encoder: subsampling, positions, pre-LayerNorm self-attention layers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor, nn

from asr.config import EncoderConfig
from asr.model.attention import MultiHeadAttention, RelPositionMultiHeadAttention
from asr.model.positional import absolute_positions, relative_positions
from asr.model.speaker import SpeakerAdapter
from asr.model.subsampling import build_subsampling


def feed_forward(d_model: int, ffn_dim: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(d_model, ffn_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn_dim, d_model)
    )


def lengths_to_mask(lengths: Tensor, max_length: int) -> Tensor:
    """(B,) -> (B, max_length) bool, True on valid positions."""
    return torch.arange(max_length, device=lengths.device)[None, :] < lengths[:, None]


@dataclass
class EncoderOutput:
    hidden: Tensor  # (B, T', d_model)
    lengths: Tensor  # (B,) valid frames after subsampling
    self_attention: Optional[list[Tensor]] = None  # per layer (B, H, T', T')

    @property
    def mask(self) -> Tensor:
        return lengths_to_mask(self.lengths, self.hidden.shape[1])


class EncoderLayer(nn.Module):
    def __init__(self, config: EncoderConfig):
        super().__init__()
        d = config.d_model
        attention = RelPositionMultiHeadAttention if config.positional == "rel" else MultiHeadAttention
        self.self_attn = attention(d, config.num_heads, config.attention_dropout)
        self.attn_norm = nn.LayerNorm(d)
        self.ffn = feed_forward(d, config.ffn_dim, config.dropout)
        self.ffn_norm = nn.LayerNorm(d)
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self, x: Tensor, mask: Tensor, pos_emb: Optional[Tensor], need_weights: bool
    ) -> tuple[Tensor, Optional[Tensor]]:
        h = self.attn_norm(x)
        if pos_emb is None:
            h, weights = self.self_attn(h, mask=mask, need_weights=need_weights)
        else:
            h, weights = self.self_attn(h, pos_emb, mask=mask, need_weights=need_weights)
        x = x + self.dropout(h)
        x = x + self.dropout(self.ffn(self.ffn_norm(x)))
        return x, weights


class TransformerEncoder(nn.Module):
    def __init__(self, config: EncoderConfig, n_mels: int):
        super().__init__()
        if config.positional not in ("abs", "rel"):
            raise ValueError(f"unknown positional encoding {config.positional!r}; choose abs or rel")
        self.config = config
        self.subsampling = build_subsampling(config.subsampling, n_mels, config.d_model)
        self.dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.num_layers))
        self.norm = nn.LayerNorm(config.d_model)
        self.speaker_adapters = None
        if config.speaker is not None:
            self.speaker_adapters = nn.ModuleList(
                SpeakerAdapter(config.d_model, config.speaker) for _ in range(config.num_layers))

    def forward(self, feats: Tensor, feat_lengths: Optional[Tensor], need_weights: bool = False,
                speaker: Optional[Tensor] = None) -> EncoderOutput:
        """`feat_lengths` None: every frame of every row is input (Whisper's padded 30 s window), so
        no mask is built or applied; attention then takes its fastest path, and an exported graph
        carries no (T', T') mask through every layer. `speaker` (B, embedding_dim): the enrolled
        voice each row should follow; None runs the encoder without its speaker adapters."""
        if speaker is not None and self.speaker_adapters is None:
            raise ValueError("this encoder has no speaker adapters; it cannot follow an enrolled voice")
        full = feat_lengths is None
        if full:
            feat_lengths = torch.full((feats.shape[0],), feats.shape[1], dtype=torch.long, device=feats.device)
        x, lengths = self.subsampling(feats, feat_lengths)
        lengths = lengths.clamp(min=1)
        t, d = x.shape[1], x.shape[2]
        pos_emb = None
        if self.config.positional == "abs":
            x = x + absolute_positions(t, d, x.device).to(x.dtype)
        else:
            pos_emb = self.dropout(relative_positions(t, d, x.device).to(x.dtype))
        x = self.dropout(x)
        mask = None if full else lengths_to_mask(lengths, t)[:, None, None, :]
        weights = [] if need_weights else None
        for i, layer in enumerate(self.layers):
            if speaker is not None:
                x = self.speaker_adapters[i](x, speaker.to(x.dtype))
            x, w = layer(x, mask, pos_emb, need_weights)
            if weights is not None:
                weights.append(w)
        return EncoderOutput(self.norm(x), lengths, weights)
