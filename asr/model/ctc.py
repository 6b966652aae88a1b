"""CTC head: a projection of encoder frames to token log-probabilities, and its loss."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class CTCHead(nn.Module):
    def __init__(self, d_model: int, vocab_size: int, blank_id: int = 0):
        super().__init__()
        self.blank_id = blank_id
        self.proj = nn.Linear(d_model, vocab_size)

    def log_probs(self, hidden: Tensor) -> Tensor:
        """(B, T', d) -> (B, T', vocab) log-probabilities, in fp32 for stable search and loss."""
        return F.log_softmax(self.proj(hidden).float(), dim=-1)

    def loss(self, log_probs: Tensor, lengths: Tensor, targets: Tensor, target_lengths: Tensor) -> Tensor:
        """Sum over the batch of per-utterance CTC negative log-likelihoods; targets padded with -1."""
        return F.ctc_loss(
            log_probs.transpose(0, 1),
            targets.clamp(min=0),
            lengths,
            target_lengths,
            blank=self.blank_id,
            reduction="sum",
            zero_infinity=True,
        )
