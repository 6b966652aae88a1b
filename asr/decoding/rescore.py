"""Attention rescoring of a CTC n-best list (WeNet's attention_rescoring)."""

from __future__ import annotations

from typing import Optional

from torch import Tensor

from asr.decoding.ctc import sequence_log_likelihoods
from asr.decoding.hypothesis import Hypothesis, combine_scores
from asr.decoding.teacher_forcing import max_tokens, teacher_force
from asr.model.asr_model import ASRModel
from asr.tokenizer import Tokenizer


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


def cross_vocabulary_rescore(
    model: ASRModel,
    memory: Tensor,
    memory_lengths: Tensor,
    ctc_log_probs: Tensor,
    ctc_nbest: list[list[Hypothesis]],
    attention_nbest: list[list[Hypothesis]],
    tokenizer: Tokenizer,
    ctc_tokenizer: Tokenizer,
    ctc_weight: float,
    length_penalty: float = 0.0,
    ctc_lengths: Optional[Tensor] = None,
) -> list[Hypothesis]:
    """The best of both n-best lists when CTC and decoder have different vocabularies.

    Candidates are the CTC prefix-beam n-best (character labels) and the attention beam n-best
    (decoder tokens); each is written in the other vocabulary through its text and scored by both
    models, ctc_weight * log P_ctc + (1 - ctc_weight) * log P_att + length_penalty * |tokens|.
    The attention decoder makes good candidates, and CTC, which must account for every frame,
    rules out the decoder's loops and inventions. An attention hypothesis that carries its
    attention score keeps it; only the others go through the decoder again, whose projection to
    the vocabulary is the costly part. Returned hypotheses hold decoder tokens.
    """
    # (utterance, decoder tokens, CTC labels, log P_att if known)
    candidates: list[tuple[int, tuple[int, ...], list[int], Optional[float]]] = []
    limit = max_tokens(model)
    for b, (from_ctc, from_attention) in enumerate(zip(ctc_nbest, attention_nbest)):
        seen: set[tuple[int, ...]] = set()
        pairs = [(h.tokens, ctc_tokenizer.encode(tokenizer.decode(h.tokens)), h.attention_score) for h in from_attention]
        for h in from_ctc:
            text = ctc_tokenizer.decode(h.tokens)
            pairs.append((tuple(tokenizer.encode(text)) if text else (), list(h.tokens), None))
        for tokens, labels, attention in pairs:
            if tokens not in seen and len(tokens) <= limit:
                seen.add(tokens)
                candidates.append((b, tokens, labels, attention))
    if not candidates:
        return [Hypothesis((), float("-inf")) for _ in ctc_nbest]
    utterance = [c[0] for c in candidates]
    ctc_scores = sequence_log_likelihoods(ctc_log_probs, memory_lengths if ctc_lengths is None else ctc_lengths,
                                          utterance, [c[2] for c in candidates],
                                          model.config.blank_id)
    attention_scores = [c[3] for c in candidates]
    unscored = [i for i, a in enumerate(attention_scores) if a is None]
    if unscored:
        forced = teacher_force(model, memory, memory_lengths, [utterance[i] for i in unscored],
                               [candidates[i][1] for i in unscored])
        for i, log_probs in zip(unscored, forced.token_log_probs):
            attention_scores[i] = float(log_probs.sum())
    best: list[Optional[Hypothesis]] = [None] * len(ctc_nbest)
    for (b, tokens, _, _), ctc, attention in zip(candidates, ctc_scores, attention_scores):
        score = combine_scores(attention, ctc, ctc_weight) + length_penalty * len(tokens)
        if best[b] is None or score > best[b].score:
            best[b] = Hypothesis(tokens, score, ctc, attention)
    return [h if h is not None else Hypothesis((), float("-inf")) for h in best]
