"""Multi-head attention that can hand back its weights.

Without weights requested, attention runs through `scaled_dot_product_attention` (the
fused fast path); with them, and in an ONNX export, it computes the softmax explicitly, except
that an export's unmasked attention over keys of its own (the encoder's) becomes ONNX Runtime's
fused MultiHeadAttention.
Masks are boolean and broadcast to (batch, heads, queries, keys); True means "may attend".
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def attend(
    q: Tensor, k: Tensor, v: Tensor, mask: Optional[Tensor], dropout: float, need_weights: bool,
    bias: Optional[Tensor] = None,
) -> tuple[Tensor, Optional[Tensor]]:
    """q (B,H,Tq,dk), k/v (B,H,Tk,dk) -> context (B,H,Tq,dk) and weights (B,H,Tq,Tk) or None.

    k/v may hold fewer rows than q, A with B a multiple of A: then each run of B/A query rows reads
    one row of keys and values (the hypotheses of a beam, all reading one utterance)."""
    if k.shape[0] != q.shape[0] and mask is None and bias is None and not need_weights:
        return _attend_shared(q, k, v, dropout), None
    if not need_weights and not torch.onnx.is_in_onnx_export():
        attn_mask = mask
        if bias is not None:
            attn_mask = bias if mask is None else bias.masked_fill(~mask, float("-inf"))
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout), None
    # The query is scaled, not the scores nor (as scaled_dot_product_attention's ONNX form does) the
    # keys: an exported decoder step then reads the cached keys through one product that ONNX Runtime
    # fuses with their transpose, rather than scaling and transposing every key at every step.
    scores = (q * (1.0 / math.sqrt(q.shape[-1]))) @ k.transpose(-2, -1)
    if bias is not None:
        scores = scores + bias
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores.float(), dim=-1).to(q.dtype)
    if need_weights:  # else an export, where every row has a key to attend to (a token sees itself)
        weights = torch.nan_to_num(weights, nan=0.0)  # rows with no key to attend to
    context = (F.dropout(weights, p=dropout) if dropout else weights) @ v
    return context, weights if need_weights else None


def _attend_shared(q: Tensor, k: Tensor, v: Tensor, dropout: float) -> Tensor:
    """`attend` for B query rows over A < B rows of keys and values: the rows that share keys
    become query positions of one row, so that every key is read once per head rather than once
    per query row (a decoder step of a beam of 5 read each cached key 5 times)."""
    rows, heads, length, d_head = q.shape
    shared = k.shape[0]
    group = rows // shared
    folded = q.reshape(shared, group, heads, length, d_head).transpose(1, 2)
    folded = folded.reshape(shared, heads, group * length, d_head)
    context, _ = attend(folded, k, v, None, dropout, False)
    return context.reshape(shared, heads, group, length, d_head).transpose(1, 2).reshape(rows, heads, length, d_head)


class _FusedAttention(torch.autograd.Function):
    """Unmasked attention of (B, T, d) queries over (B, S, d) keys and values, exported as ONNX
    Runtime's MultiHeadAttention (com.microsoft), whose CPU kernel works through the keys in blocks
    (flash attention): a 30 s window's (heads, 1500, 1500) scores are never held whole, which saves
    8 % of the encoder's time and most of its working memory. Traced, it computes what `attend` does."""

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, num_heads: int) -> Tensor:  # noqa: ARG004
        split = lambda x: x.view(x.shape[0], x.shape[1], num_heads, -1).transpose(1, 2)  # noqa: E731
        context, _ = attend(split(q), split(k), split(v), None, 0.0, False)
        return MultiHeadAttention.merge_heads(context)

    @staticmethod
    def symbolic(g, q, k, v, num_heads: int):
        context = g.op("com.microsoft::MultiHeadAttention", q, k, v, num_heads_i=num_heads)
        context.setType(q.type())  # as the query: what the exporter's shape inference cannot know
        return context


class MultiHeadAttention(nn.Module):
    """Self- or cross-attention; `project_kv` lets callers cache keys and values."""

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model {d_model} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.dropout = dropout
        self.query = nn.Linear(d_model, d_model)
        self.key = nn.Linear(d_model, d_model, bias=False)  # a key bias cannot change the softmax
        self.value = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)

    def split_heads(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        return x.view(b, t, self.num_heads, d // self.num_heads).transpose(1, 2)

    @staticmethod
    def merge_heads(x: Tensor) -> Tensor:
        b, h, t, dk = x.shape
        return x.transpose(1, 2).reshape(b, t, h * dk)

    def project_kv(self, source: Tensor) -> tuple[Tensor, Tensor]:
        return self.split_heads(self.key(source)), self.split_heads(self.value(source))

    def forward(
        self,
        x: Tensor,
        source: Optional[Tensor] = None,
        mask: Optional[Tensor] = None,
        need_weights: bool = False,
        kv: Optional[tuple[Tensor, Tensor]] = None,
    ) -> tuple[Tensor, Optional[Tensor]]:
        """Attends from `x` to `source` (self-attention when None), or to precomputed `kv`."""
        if torch.onnx.is_in_onnx_export() and kv is None and mask is None and not need_weights:
            keys_from = x if source is None else source
            context = _FusedAttention.apply(self.query(x), self.key(keys_from), self.value(keys_from), self.num_heads)
            return self.out(context), None
        q = self.split_heads(self.query(x))
        k, v = kv if kv is not None else self.project_kv(x if source is None else source)
        dropout = self.dropout if self.training else 0.0
        context, weights = attend(q, k, v, mask, dropout, need_weights)
        return self.out(self.merge_heads(context)), weights


class RelPositionMultiHeadAttention(MultiHeadAttention):
    """Self-attention with Transformer-XL relative positions (as ESPnet's `rel_selfattn`).

    `pos_emb` holds sinusoids for relative distances T-1 ... -(T-1), shape (2T-1, d).
    """

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0):
        super().__init__(d_model, num_heads, dropout)
        d_head = d_model // num_heads
        self.pos = nn.Linear(d_model, d_model, bias=False)
        self.pos_bias_u = nn.Parameter(torch.zeros(num_heads, d_head))
        self.pos_bias_v = nn.Parameter(torch.zeros(num_heads, d_head))
        nn.init.xavier_uniform_(self.pos_bias_u)
        nn.init.xavier_uniform_(self.pos_bias_v)

    def forward(  # type: ignore[override]
        self, x: Tensor, pos_emb: Tensor, mask: Optional[Tensor] = None, need_weights: bool = False
    ) -> tuple[Tensor, Optional[Tensor]]:
        t = x.shape[1]
        q = self.split_heads(self.query(x))  # (B,H,T,dk)
        k, v = self.project_kv(x)
        p = self.split_heads(self.pos(pos_emb.unsqueeze(0)))  # (1,H,2T-1,dk)
        u = self.pos_bias_u[None, :, None, :]
        w = self.pos_bias_v[None, :, None, :]
        position_scores = (q + w) @ p.transpose(-2, -1)  # (B,H,T,2T-1)
        # Entry (i, j) needs the distance i - j, stored at column (T-1) - (i - j).
        rows = torch.arange(t, device=x.device)
        index = (t - 1) - rows[:, None] + rows[None, :]
        position_scores = position_scores.gather(
            -1, index.expand(position_scores.shape[0], position_scores.shape[1], t, t)
        )
        bias = position_scores / math.sqrt(q.shape[-1])
        dropout = self.dropout if self.training else 0.0
        context, weights = attend(q + u, k, v, mask, dropout, need_weights, bias=bias)
        return self.out(self.merge_heads(context)), weights
