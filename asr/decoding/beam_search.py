"""Label-synchronous beam search with the attention decoder, alone or joint with CTC prefix scores.

Every hypothesis of every utterance in the batch is one row of a (batch * beam) decoder batch
that grows a token per step through the decoder's key/value cache. With CTC log-probabilities
given, each step also scores the candidates with a CTC prefix scorer (one-pass joint decoding,
Watanabe et al., 2017):

    score = (1 - ctc_weight) * log P_att(y) + ctc_weight * log psi_ctc(y) + length_penalty * |y|

Only the attention decoder's best few candidates per hypothesis are prefix-scored (ESPnet's
pre-beam), since prefix scoring costs a pass over the frames for every candidate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import count
from typing import Optional, Sequence

import torch
from torch import Tensor

from asr.decoding.hypothesis import Hypothesis, combine_scores
from asr.decoding.prefix_score import CTCPrefixScorer
from asr.decoding.teacher_forcing import max_tokens
from asr.decoding.vocabulary import never_emitted
from asr.errors import ConfigError
from asr.model.asr_model import ASRModel
from asr.model.decoder import DecoderCache
from asr.model.encoder import lengths_to_mask

NEG_INF = float("-inf")
PRE_BEAM_RATIO = 1.5  # candidates prefix-scored per hypothesis, per beam slot


@dataclass
class _Candidate:
    row: int  # hypothesis (decoder batch row) it extends
    column: int  # which of that row's candidate tokens
    score: float


@dataclass
class _Step:
    """One step's candidates (N, K) with their running scores, for building hypotheses."""

    tokens: Tensor  # (N, step): the tokens so far
    candidates: Tensor  # (N, K)
    attention: Tensor  # (N, K) log P_att(tokens + candidate)
    ctc: Optional[Tensor]  # (N, K) CTC prefix scores, None without CTC

    def hypothesis(self, c: _Candidate, ends: bool) -> Hypothesis:
        """The tokens of row c.row, extended by its candidate unless that is <eos>. Only a hypothesis
        that ends with <eos> has its attention score, log P_att(tokens <eos>)."""
        seq = self.tokens[c.row].tolist() + ([] if ends else [int(self.candidates[c.row, c.column])])
        ctc = None if self.ctc is None else float(self.ctc[c.row, c.column])
        attention = float(self.attention[c.row, c.column]) if ends else None
        return Hypothesis(tuple(seq), c.score, ctc, attention)


@torch.no_grad()
def beam_search(
    model: ASRModel,
    memory: Tensor,
    memory_lengths: Tensor,
    beam_size: int,
    ctc_log_probs: Optional[Tensor] = None,
    ctc_weight: float = 0.0,
    length_penalty: float = 0.0,
    max_length_ratio: float = 1.0,
    ctc_lengths: Optional[Tensor] = None,
    length_norm: bool = False,
    token_limits: Optional[list[int]] = None,
    forced: Sequence[int] = (),
) -> list[list[Hypothesis]]:
    """Finished hypotheses of each utterance, best first.

    memory: (B, T', d) encoder output; memory_lengths: (B,) valid frames. With ctc_log_probs
    (B, T', V) the search is joint and always runs the prefix scorer, whatever ctc_weight; CTC
    reads `ctc_lengths` frames (default memory_lengths: they differ when the input is padded).
    A hypothesis finishes when <eos> ranks among the beam; an utterance stops when no running
    hypothesis can still beat the best finished one, or at max_length_ratio * T' tokens (its
    running hypotheses then count as finished, without <eos>), or at its `token_limits` tokens
    when given. `forced` tokens continue the prompt of every utterance: the hypotheses follow
    them, and neither hold them nor are scored on them. With `length_norm`, finished
    hypotheses rank by score per token and an utterance stops once `beam_size` have finished
    (Whisper's rule, since per-token scores need not fall as hypotheses grow).
    """
    config = model.config
    batch = memory.shape[0]
    beam, device = beam_size, memory.device
    eos = config.eos_id
    prefix = [config.sos_id, *config.decoder_prompt, *forced]
    never = torch.tensor(never_emitted(config), dtype=torch.long, device=device)
    if len(forced) >= max_tokens(model):
        raise ConfigError(f"{len(forced)} forced tokens leave the decoder no room for more")
    max_lengths = [min(max(1, int(max_length_ratio * n)), max_tokens(model)) for n in memory_lengths.tolist()]
    if token_limits is not None:
        max_lengths = [min(length, limit) for length, limit in zip(max_lengths, token_limits)]
    max_lengths = [max(1, length - len(forced)) for length in max_lengths]  # the limits count the forced tokens

    # Rows of utterance u are u * beam ... u * beam + beam - 1. At first only one of them is alive,
    # so that the first step does not expand `beam` identical copies of <sos>.
    rows = torch.arange(batch * beam, device=device)
    alive = rows % beam == 0
    attention = torch.zeros(batch * beam, device=device)
    tokens = torch.tensor(prefix, device=device).repeat(batch * beam, 1)  # (N, len(prefix) + step)
    logits, cache, memory_mask = _first_step(model, memory, memory_lengths, prefix, beam)

    scorer = prefix_state = None
    if ctc_log_probs is None:
        width = beam + 1  # <eos> and the `beam` best other tokens: enough survivors for any row
    else:
        scorer = CTCPrefixScorer(ctc_log_probs, memory_lengths if ctc_lengths is None else ctc_lengths, config.blank_id, eos)
        prefix_state = scorer.initial_state(rows // beam)
        # With no attention weight, the decoder cannot pre-select: every token is scored.
        width = config.vocab_size if ctc_weight == 1.0 else max(beam + 1, math.ceil(PRE_BEAM_RATIO * beam))
    # Never-emitted tokens rank last (-inf), so this width leaves them out even when scoring everything.
    width = min(width, config.vocab_size - len(never))

    active = list(range(batch))  # utterances still searching, in row-block order
    finished: list[list[Hypothesis]] = [[] for _ in range(batch)]
    for step in count():  # every running hypothesis holds `step` tokens
        if step > 0:
            logits, cache, _ = model.decoder.step(tokens[:, -1:], cache, memory_mask, last_only=True)
        log_probs = torch.log_softmax(logits[:, -1].float(), dim=-1)
        log_probs[:, never] = NEG_INF
        # <eos> is always a candidate: a hypothesis may always end, and every other token may be
        # ruled out by the CTC prefix scores (once it would need more frames than are left).
        ranking = log_probs.clone()
        ranking[:, eos] = math.inf
        candidates = ranking.topk(width, dim=-1).indices  # (N, K)
        step_attention = log_probs.gather(1, candidates)
        new_attention = attention[:, None] + step_attention
        extension = None
        if scorer is not None:
            extension = scorer.extend(prefix_state, candidates)
            score = combine_scores(new_attention, extension.score, ctc_weight)
        else:
            score = new_attention
        length = step + (candidates != eos).long()  # <eos> is not an output token
        score = (score + length_penalty * length).masked_fill(~alive[:, None], NEG_INF)
        ctc_scores = None if extension is None else extension.score
        scored = _Step(tokens[:, len(prefix) :], candidates, new_attention, ctc_scores)

        # Per utterance, walk its candidates best first: <eos> ones finish, the others run on.
        flat = score.view(len(active), beam * width)
        top_score, top_index = flat.topk(min(2 * beam, beam * width), dim=-1)  # holds >= beam non-<eos>
        is_eos = (candidates == eos).tolist()
        survivors: list[list[_Candidate]] = []
        next_active = []
        for i, (u, scores, indices) in enumerate(zip(active, top_score.tolist(), top_index.tolist())):
            running: list[_Candidate] = []
            for s, index in zip(scores, indices):
                if s == NEG_INF or len(running) == beam:
                    break
                c = _Candidate(i * beam + index // width, index % width, s)
                if is_eos[c.row][c.column]:
                    finished[u].append(scored.hypothesis(c, ends=True))
                else:
                    running.append(c)
            # Scores only fall as hypotheses grow, so once the best finished one leads every running
            # one, the search is over. A length bonus breaks that bound: then also wait for `beam`
            # finished hypotheses (as Whisper does, always; that alone would stop too early).
            best_finished = max((h.score for h in finished[u]), default=NEG_INF)
            enough_finished = len(finished[u]) >= beam
            if length_norm:
                settled = enough_finished
            else:
                leads = bool(running) and best_finished >= running[0].score
                settled = leads and (length_penalty <= 0 or enough_finished)
            done = not running or step + 1 >= max_lengths[u] or settled
            if done:
                # Out of length: running hypotheses count as finished, only where none has, or (ranked
                # per token, as Whisper does) to fill the beam.
                wanted = beam - len(finished[u]) if length_norm else (0 if finished[u] else beam)
                finished[u] += [scored.hypothesis(c, ends=False) for c in running[: max(0, wanted)]]
                continue
            next_active.append(u)
            survivors.append(running)
        if not next_active:
            break

        # Gather the survivors into the next step's rows; short beams are padded with dead rows.
        keep_rows, keep_columns, keep_alive = [], [], []
        for running in survivors:
            padded = running + [running[0]] * (beam - len(running))
            keep_rows += [c.row for c in padded]
            keep_columns += [c.column for c in padded]
            keep_alive += [True] * len(running) + [False] * (beam - len(running))
        row = torch.tensor(keep_rows, device=device)
        column = torch.tensor(keep_columns, device=device)
        alive = torch.tensor(keep_alive, device=device)
        tokens = torch.cat([tokens[row], candidates[row, column][:, None]], dim=1)
        attention = new_attention[row, column]
        # Rows stay in their utterance's block, so the memory's keys, values and mask, which depend on
        # the utterance only, need selecting only when an utterance has finished and left the batch.
        utterances_left = len(next_active) < len(active)
        cache = cache.reorder(row, cross=utterances_left)
        if utterances_left:
            memory_mask = memory_mask[row]
        if scorer is not None:
            prefix_state = scorer.select(prefix_state, extension, row, column)
        active = next_active
    rank = (lambda h: h.score / max(1, len(h.tokens))) if length_norm else (lambda h: h.score)
    return [sorted(hyps, key=rank, reverse=True) for hyps in finished]


def _first_step(
    model: ASRModel, memory: Tensor, memory_lengths: Tensor, prefix: list[int], beam: int
) -> tuple[Tensor, DecoderCache, Tensor]:
    """The decoder's step over the prompt, with its logits (B * beam, 1, V), cache and memory mask
    for `beam` rows per utterance.

    Every row of an utterance reads the same prompt, so the step runs once per utterance and is
    then copied. So does the projection of the memory to cross-attention keys and values, whose
    `beam - 1` needless copies cost two thirds of the encoder layers' FLOPs at beam 5. Only the
    last prompt position is projected to the vocabulary: the others predict the prompt itself."""
    batch, frames = memory.shape[:2]
    mask = lengths_to_mask(memory_lengths, frames)
    tokens = torch.tensor(prefix, device=memory.device).repeat(batch, 1)
    logits, cache, _ = model.decoder.step(tokens, model.decoder.init_cache(memory), mask, last_only=True)
    rows = torch.arange(batch, device=memory.device).repeat_interleave(beam)
    return logits[rows], cache.reorder(rows), mask[rows]
