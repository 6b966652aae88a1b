"""CTC search: greedy (best path) and prefix beam search (frame-synchronous)."""

from __future__ import annotations

import math
from collections import defaultdict

import torch
from torch import Tensor

from asr.decoding.hypothesis import Hypothesis

NEG_INF = float("-inf")


def ctc_greedy_search(log_probs: Tensor, lengths: Tensor, blank_id: int = 0) -> list[list[int]]:
    """Best token per frame, repeats merged, blanks dropped. log_probs: (B, T, V)."""
    best = log_probs.argmax(dim=-1)  # (B, T)
    keep = torch.ones_like(best, dtype=torch.bool)
    keep[:, 1:] = best[:, 1:] != best[:, :-1]
    keep &= best != blank_id
    keep &= torch.arange(best.shape[1], device=best.device)[None, :] < lengths[:, None]
    return [row[mask].tolist() for row, mask in zip(best, keep)]


def best_path_scores(log_probs: Tensor, lengths: Tensor) -> list[float]:
    """Log-probability of the greedy path of each utterance: the sum of its frames' maxima."""
    best = log_probs.max(dim=-1).values  # (B, T)
    valid = torch.arange(best.shape[1], device=best.device)[None, :] < lengths[:, None]
    return (best * valid).sum(dim=1).tolist()


def _logadd(*values: float) -> float:
    top = max(values)
    if top == NEG_INF:
        return NEG_INF
    return top + math.log(sum(math.exp(v - top) for v in values))


def ctc_prefix_beam_search(
    log_probs: Tensor, lengths: Tensor, beam_size: int, blank_id: int = 0, eos_id: int = -1
) -> list[list[Hypothesis]]:
    """The `beam_size` most probable label sequences of each utterance, best first.

    log_probs: (B, T, V). Each prefix keeps two log-probabilities, of the alignments so far that
    end in a blank and of those that end in its last token; a frame extends every kept prefix
    by the blank and by the frame's `beam_size` most probable tokens, and the `beam_size`
    prefixes of largest total survive. `eos_id` (the decoder's end token, which CTC is never
    trained to emit) is never a label, so the output matches the joint search's label set.
    Hypothesis.score = ctc_score = log P_ctc(tokens) as summed over the surviving alignments.
    """
    log_probs = log_probs.detach().float().cpu().clone()
    if eos_id >= 0:
        log_probs[..., eos_id] = NEG_INF
    vocab = log_probs.shape[-1]
    masked = log_probs.clone()
    masked[..., blank_id] = NEG_INF
    top_values, top_tokens = masked.topk(min(beam_size, vocab - 1), dim=-1)  # (B, T, k)
    results = []
    for b, length in enumerate(lengths.tolist()):
        blank_lp = log_probs[b, :length, blank_id].tolist()
        values, tokens = top_values[b, :length].tolist(), top_tokens[b, :length].tolist()
        results.append(_prefix_beam_search_one(blank_lp, values, tokens, beam_size))
    return results


def _prefix_beam_search_one(
    blank_lp: list[float], values: list[list[float]], tokens: list[list[int]], beam_size: int
) -> list[Hypothesis]:
    # prefix -> (log P(alignments ending in blank), log P(alignments ending in the last token))
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, NEG_INF)}
    for blank, frame_values, frame_tokens in zip(blank_lp, values, tokens):
        grown: dict[tuple[int, ...], list[float]] = defaultdict(lambda: [NEG_INF, NEG_INF])
        for prefix, (p_blank, p_token) in beams.items():
            stay = grown[prefix]
            stay[0] = _logadd(stay[0], p_blank + blank, p_token + blank)
            last = prefix[-1] if prefix else None
            for lp, token in zip(frame_values, frame_tokens):
                if lp == NEG_INF:
                    continue
                longer = grown[prefix + (token,)]
                if token == last:
                    # The same token again merges into the prefix, unless a blank separated them.
                    stay[1] = _logadd(stay[1], p_token + lp)
                    longer[1] = _logadd(longer[1], p_blank + lp)
                else:
                    longer[1] = _logadd(longer[1], p_blank + lp, p_token + lp)
        totals = {prefix: _logadd(*p) for prefix, p in grown.items()}
        ranked = sorted((prefix for prefix in grown if totals[prefix] > NEG_INF), key=totals.__getitem__, reverse=True)
        beams = {prefix: (grown[prefix][0], grown[prefix][1]) for prefix in ranked[:beam_size]}
    return [Hypothesis(prefix, _logadd(*p), ctc_score=_logadd(*p)) for prefix, p in beams.items()]


def sequence_log_likelihoods(
    log_probs: Tensor, lengths: Tensor, utterance: list[int], sequences: list[list[int]], blank_id: int = 0
) -> list[float]:
    """log P_ctc(sequences[r] | utterance[r]), summed over all alignments (the CTC forward algorithm).

    log_probs: (B, T, V). -inf where a sequence cannot fit in its utterance's frames.
    """
    if not sequences:
        return []
    index = torch.tensor(utterance, dtype=torch.long, device=log_probs.device)
    target_lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)
    targets = torch.zeros(len(sequences), max(1, int(target_lengths.max())), dtype=torch.long)
    for r, seq in enumerate(sequences):
        targets[r, : len(seq)] = torch.tensor(seq, dtype=torch.long)
    losses = torch.nn.functional.ctc_loss(
        log_probs[index].float().transpose(0, 1), targets.to(log_probs.device), lengths[index],
        target_lengths.to(log_probs.device), blank=blank_id, reduction="none", zero_infinity=False,
    )
    return [-float(x) for x in losses]
