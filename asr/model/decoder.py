"""Transformer attention decoder: masked self-attention, cross-attention, key/value cache."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import Tensor, nn

from asr.config import DecoderConfig
from asr.model.attention import MultiHeadAttention
from asr.model.encoder import feed_forward


@dataclass
class DecoderCache:
    """Keys and values of every layer: cross ones computed once, self ones grown a token at a time."""

    cross: list[tuple[Tensor, Tensor]]
    self_kv: list[Optional[tuple[Tensor, Tensor]]] = field(default_factory=list)
    length: int = 0

    def reorder(self, index: Tensor, cross: bool = True) -> "DecoderCache":
        """Selects batch rows (e.g. surviving beams) from every cached tensor.

        `cross=False` keeps the cross-attention keys and values as they are: right when row i
        of the result belongs to the same utterance as row i before (beams reordered within each
        utterance), since they depend on the utterance only; it saves copying them every step."""
        pick = lambda kv: None if kv is None else (kv[0].index_select(0, index), kv[1].index_select(0, index))  # noqa: E731
        return DecoderCache([pick(kv) for kv in self.cross] if cross else self.cross,
                            [pick(kv) for kv in self.self_kv], self.length)


@dataclass
class DecoderOutput:
    logits: Tensor  # (B, L, vocab)
    cross_attention: Optional[list[Tensor]] = None  # per layer (B, H, L, T')
    self_attention: Optional[list[Tensor]] = None  # per layer (B, H, L, L)


@dataclass
class DecoderStates:
    states: Tensor  # (B, L, d), final and normalised: TransformerDecoder.project makes them logits
    cross_attention: Optional[list[Tensor]] = None
    self_attention: Optional[list[Tensor]] = None


class DecoderLayer(nn.Module):
    def __init__(self, d_model: int, config: DecoderConfig):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, config.num_heads, config.attention_dropout)
        self.self_norm = nn.LayerNorm(d_model)
        self.cross_attn = MultiHeadAttention(d_model, config.num_heads, config.attention_dropout)
        self.cross_norm = nn.LayerNorm(d_model)
        self.ffn = feed_forward(d_model, config.ffn_dim, config.dropout)
        self.ffn_norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        x: Tensor,
        self_mask: Optional[Tensor],
        cross_kv: tuple[Tensor, Tensor],
        memory_mask: Tensor,
        need_weights: bool,
        self_kv: Optional[tuple[Tensor, Tensor]] = None,
    ) -> tuple[Tensor, tuple[Tensor, Tensor], Optional[Tensor], Optional[Tensor]]:
        h = self.self_norm(x)
        k, v = self.self_attn.project_kv(h)
        if self_kv is not None:  # incremental: prepend the cached positions
            k, v = torch.cat([self_kv[0], k], dim=2), torch.cat([self_kv[1], v], dim=2)
        h, self_weights = self.self_attn(h, mask=self_mask, need_weights=need_weights, kv=(k, v))
        x = x + self.dropout(h)
        h, cross_weights = self.cross_attn(
            self.cross_norm(x), mask=memory_mask, need_weights=need_weights, kv=cross_kv
        )
        x = x + self.dropout(h)
        x = x + self.dropout(self.ffn(self.ffn_norm(x)))
        return x, (k, v), self_weights, cross_weights


class TransformerDecoder(nn.Module):
    def __init__(self, config: DecoderConfig, d_model: int, vocab_size: int):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(vocab_size, d_model)
        self.positions = nn.Parameter(torch.empty(config.max_length, d_model).normal_(std=0.02))
        self.dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(DecoderLayer(d_model, config) for _ in range(config.num_layers))
        self.norm = nn.LayerNorm(d_model)
        # An output projection of its own in place of the tied embedding, e.g. an int8 copy of it
        # (asr.model.quantize); None uses the embedding matrix itself.
        self.output: Optional[nn.Module] = None

    def init_cache(self, memory: Tensor) -> DecoderCache:
        cross = [layer.cross_attn.project_kv(memory) for layer in self.layers]
        return DecoderCache(cross, [None] * len(self.layers), 0)

    def _embed(self, tokens: Tensor, offset: int) -> Tensor:
        length = tokens.shape[1]
        if offset + length > self.config.max_length:
            raise ValueError(f"token sequence of {offset + length} exceeds decoder max_length {self.config.max_length}")
        return self.dropout(self.embed(tokens) + self.positions[offset : offset + length])

    def project(self, states: Tensor) -> Tensor:
        """Logits (..., vocab) of final states (..., d) as `states` returns them.

        The projection to a large vocabulary (Whisper's 51864 tokens) costs more than all the
        decoder layers, so callers that need only some positions project only those."""
        if self.output is not None:
            return self.output(states)
        return states @ self.embed.weight.t()  # output projection tied to the embedding

    def forward(
        self,
        tokens: Tensor,
        token_lengths: Tensor,
        memory: Tensor,
        memory_mask: Tensor,
        need_weights: bool = False,
    ) -> DecoderOutput:
        """Teacher-forced pass over whole sequences. memory_mask: (B, T') bool."""
        out = self.states(tokens, token_lengths, memory, memory_mask, need_weights)
        return DecoderOutput(self.project(out.states), out.cross_attention, out.self_attention)

    def states(
        self,
        tokens: Tensor,
        token_lengths: Tensor,
        memory: Tensor,
        memory_mask: Tensor,
        need_weights: bool = False,
    ) -> DecoderStates:
        """As `forward`, without the output projection."""
        length = tokens.shape[1]
        causal = torch.ones(length, length, dtype=torch.bool, device=tokens.device).tril()
        keys_valid = torch.arange(length, device=tokens.device)[None, :] < token_lengths[:, None]
        self_mask = causal[None, None] & keys_valid[:, None, None, :]
        cross_mask = memory_mask[:, None, None, :]
        x = self._embed(tokens, 0)
        cross_all, self_all = ([], []) if need_weights else (None, None)
        for layer in self.layers:
            cross_kv = layer.cross_attn.project_kv(memory)
            x, _, self_w, cross_w = layer(x, self_mask, cross_kv, cross_mask, need_weights)
            if need_weights:
                self_all.append(self_w)
                cross_all.append(cross_w)
        return DecoderStates(self.norm(x), cross_all, self_all)

    def step(
        self, tokens: Tensor, cache: DecoderCache, memory_mask: Tensor, need_weights: bool = False,
        last_only: bool = False,
    ) -> tuple[Tensor, DecoderCache, Optional[list[Tensor]]]:
        """Feeds the newest tokens (B, n) after `cache.length` earlier ones; returns their logits
        (B, n, V), or (B, 1, V) of the last one only with `last_only`."""
        n = tokens.shape[1]
        x = self._embed(tokens, cache.length)
        # A new token may see every cached position and the new ones up to itself.
        total = cache.length + n
        causal = torch.ones(n, total, dtype=torch.bool, device=tokens.device).tril(diagonal=cache.length)
        cross_mask = memory_mask[:, None, None, :]
        new_self, cross_all = [], ([] if need_weights else None)
        for layer, cross_kv, self_kv in zip(self.layers, cache.cross, cache.self_kv):
            x, kv, _, cross_w = layer(x, causal, cross_kv, cross_mask, need_weights, self_kv)
            new_self.append(kv)
            if cross_all is not None:
                cross_all.append(cross_w)
        if last_only:
            x = x[:, -1:]
        return self.project(self.norm(x)), DecoderCache(cache.cross, new_self, total), cross_all
