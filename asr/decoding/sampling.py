"""Sampling at a temperature, and Whisper's fallback to it when the beam's transcript fails.

A Whisper decoder that loses its way in noise or music repeats a phrase until its window ends, or
writes words it is unsure of throughout. Whisper (and faster-whisper) then decode again: sampling
`best_of` transcripts at temperature 0.2, then 0.4, ... until one passes two tests: its text
compresses no better than `compression_ratio_threshold` (a loop compresses very well), and its mean
log-probability per token is at least `logprob_threshold`. The last temperature's is kept anyway.
The thresholds are Whisper's published defaults, not tuned here. DecodingOptions.temperatures
turns it on; no bundled model does yet (its effect on unseen voices is still to be measured).
"""

from __future__ import annotations

import zlib
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor

from asr.decoding.vocabulary import never_emitted
from asr.decoding.hypothesis import Hypothesis
from asr.decoding.teacher_forcing import max_tokens
from asr.model.asr_model import ASRModel
from asr.model.encoder import lengths_to_mask

SEED = 0  # samples are drawn from a generator seeded so, for results that repeat run after run


def compression_ratio(text: str) -> float:
    """Bytes of the text over bytes of it compressed: about 1.5-2 for speech, far more for a loop."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def mean_logprob(hyp: Hypothesis) -> float:
    return hyp.score / max(1, len(hyp.tokens))


def fails(hyp: Hypothesis, text: str, compression_threshold: float, logprob_threshold: Optional[float]) -> bool:
    """Whether a transcript needs decoding again (Whisper's rule); `hyp.score` must be its summed log P."""
    if compression_threshold and compression_ratio(text) > compression_threshold:
        return True
    return logprob_threshold is not None and mean_logprob(hyp) < logprob_threshold


@torch.no_grad()
def sample(model: ASRModel, memory: Tensor, memory_lengths: Tensor, temperature: float, best_of: int,
           max_length_ratio: float = 1.0, token_limits: Optional[list[int]] = None,
           generator: Optional[torch.Generator] = None) -> list[Hypothesis]:
    """Per utterance, the best of `best_of` transcripts sampled at `temperature` > 0, by mean log P.

    Scores are summed log-probabilities of the decoder at temperature 1, as Whisper ranks them.
    Transcripts end as in beam_search: at <eos>, at max_length_ratio tokens per encoder frame, or
    at their utterance's `token_limits`.
    """
    config = model.config
    batch, device = memory.shape[0], memory.device
    rows = torch.arange(batch, device=device).repeat_interleave(best_of)
    memory, memory_lengths = memory[rows], memory_lengths[rows]
    mask = lengths_to_mask(memory_lengths, memory.shape[1])
    prefix = [config.sos_id, *config.decoder_prompt]
    never = torch.tensor(never_emitted(config), dtype=torch.long, device=device)
    limits = [min(max(1, int(max_length_ratio * n)), max_tokens(model)) for n in memory_lengths.tolist()]
    if token_limits is not None:
        limits = [min(limit, token_limits[int(r)]) for limit, r in zip(limits, rows.tolist())]
    tokens = torch.tensor(prefix, device=device).repeat(len(rows), 1)
    cache = model.decoder.init_cache(memory)
    logits, cache, _ = model.decoder.step(tokens, cache, mask, last_only=True)
    scores = torch.zeros(len(rows), device=device)
    finished = torch.zeros(len(rows), dtype=torch.bool, device=device)
    outputs: list[list[int]] = [[] for _ in rows.tolist()]
    for step in range(max(limits)):
        log_probs = torch.log_softmax(logits[:, -1].float(), dim=-1)
        log_probs[:, never] = float("-inf")
        choice = torch.multinomial(torch.softmax(log_probs / temperature, dim=-1), 1, generator=generator)[:, 0]
        gained = log_probs.gather(1, choice[:, None])[:, 0]
        scores = torch.where(finished, scores, scores + gained)
        for r, token in enumerate(choice.tolist()):
            if finished[r]:
                continue
            if token == config.eos_id:
                finished[r] = True
            else:
                outputs[r].append(token)
                finished[r] = len(outputs[r]) >= limits[r]
        if bool(finished.all()):
            break
        logits, cache, _ = model.decoder.step(choice[:, None], cache, mask, last_only=True)
    found = [Hypothesis(tuple(seq), float(s)) for seq, s in zip(outputs, scores.tolist())]
    return [max(found[u * best_of : (u + 1) * best_of], key=mean_logprob) for u in range(batch)]


def with_fallback(first: list[Hypothesis], decode_text: Callable[[Hypothesis], str], model: ASRModel, memory: Tensor,
                  memory_lengths: Tensor, temperatures: Sequence[float], best_of: int,
                  compression_threshold: float, logprob_threshold: Optional[float], max_length_ratio: float = 1.0,
                  token_limits: Optional[list[int]] = None) -> list[Hypothesis]:
    """`first` (the beam's transcripts, scored by summed log P), each that fails decoded again at the
    next temperature of `temperatures` (after the first, 0), until it passes or they run out."""
    found = list(first)
    generator = torch.Generator(device=memory.device).manual_seed(SEED)
    for temperature in temperatures[1:]:
        redo = [u for u, hyp in enumerate(found)
                if fails(hyp, decode_text(hyp), compression_threshold, logprob_threshold)]
        if not redo:
            break
        index = torch.tensor(redo, device=memory.device)
        limits = [token_limits[u] for u in redo] if token_limits else None
        for u, hyp in zip(redo, sample(model, memory[index], memory_lengths[index], temperature, best_of,
                                       max_length_ratio, limits, generator)):
            found[u] = hyp
    return found
