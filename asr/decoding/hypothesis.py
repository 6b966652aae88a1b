"""What every search returns, token sequences with their scores, and how CTC and attention scores mix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, TypeVar


@dataclass(frozen=True)
class Hypothesis:
    tokens: tuple[int, ...]  # no <sos>, no <eos>, no blanks
    score: float  # what the search ranked by (log domain, higher is better)
    ctc_score: Optional[float] = None  # log P_ctc(tokens), or the prefix score where the search ended early
    attention_score: Optional[float] = None  # log P_att(tokens <eos>) from the decoder


Score = TypeVar("Score")  # a float, or a tensor of them


def combine_scores(attention: Score, ctc: Score, ctc_weight: float) -> Score:
    """(1 - w) * attention + w * ctc, kept free of NaN (0 * -inf) at w = 0 and w = 1."""
    if ctc_weight == 0.0:
        return attention
    if ctc_weight == 1.0:
        return ctc
    return (1.0 - ctc_weight) * attention + ctc_weight * ctc
