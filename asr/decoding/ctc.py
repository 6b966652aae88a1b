"""CTC search."""

from __future__ import annotations

import torch
from torch import Tensor


def ctc_greedy_search(log_probs: Tensor, lengths: Tensor, blank_id: int = 0) -> list[list[int]]:
    """Best token per frame, repeats merged, blanks dropped. log_probs: (B, T, V)."""
    best = log_probs.argmax(dim=-1)  # (B, T)
    keep = torch.ones_like(best, dtype=torch.bool)
    keep[:, 1:] = best[:, 1:] != best[:, :-1]
    keep &= best != blank_id
    keep &= torch.arange(best.shape[1], device=best.device)[None, :] < lengths[:, None]
    return [row[mask].tolist() for row, mask in zip(best, keep)]
