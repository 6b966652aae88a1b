"""Attention rescoring of a CTC n-best list (WeNet's attention_rescoring)."""

from __future__ import annotations

from torch import Tensor

from asr.decoding.hypothesis import Hypothesis, combine_scores
from asr.decoding.teacher_forcing import max_tokens, teacher_force
from asr.model.asr_model import ASRModel


def attention_rescore(
    model: ASRModel,
    memory: Tensor,
    memory_lengths: Tensor,
    nbest: list[list[Hypothesis]],
    ctc_weight: float,
    length_penalty: float = 0.0,
) -> list[list[Hypothesis]]:
    """Re-ranks each utterance's n-best (with ctc_score set) in one teacher-forced decoder pass.

    memory: (B, T', d); nbest[b] belongs to utterance b. New score:
    ctc_weight * ctc_score + (1 - ctc_weight) * log P_att(tokens <eos>) + length_penalty * len(tokens).
    Hypotheses longer than the decoder's position table cannot be scored and are dropped, unless
    that leaves an utterance with none: it then keeps its CTC ranking.
    """
    limit = max_tokens(model)
    pairs = [(b, h) for b, hyps in enumerate(nbest) for h in hyps if len(h.tokens) <= limit]
    rescored: list[list[Hypothesis]] = [[] for _ in nbest]
    if pairs:
        forced = teacher_force(model, memory, memory_lengths, [b for b, _ in pairs], [h.tokens for _, h in pairs])
        for (b, h), log_probs in zip(pairs, forced.token_log_probs):
            attention = float(log_probs.sum())
            score = combine_scores(attention, h.ctc_score, ctc_weight) + length_penalty * len(h.tokens)
            rescored[b].append(Hypothesis(h.tokens, score, h.ctc_score, attention))
    return [
        sorted(new, key=lambda h: h.score, reverse=True) if new else old
        for new, old in zip(rescored, nbest)
    ]
