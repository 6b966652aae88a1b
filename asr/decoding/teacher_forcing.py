"""One teacher-forced decoder pass over given token sequences: their log-probabilities and attention."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import Tensor

from asr.model.asr_model import ASRModel
from asr.model.encoder import lengths_to_mask


@dataclass
class TeacherForced:
    token_log_probs: list[Tensor]  # per sequence y, (len(y) + 1,): log P_att(y_i | <sos> prompt y_<i), y then <eos>
    cross_attention: Optional[list[Tensor]]  # per sequence, (layers, heads, len(y) + 1, T'): row i predicts y_i


def max_tokens(model: ASRModel) -> int:
    """The longest token sequence the decoder's position table leaves room for after <sos> and the prompt."""
    return model.decoder.config.max_length - 1 - len(model.config.decoder_prompt)


@torch.no_grad()
def teacher_force(
    model: ASRModel,
    memory: Tensor,
    memory_lengths: Tensor,
    utterance: Sequence[int],
    sequences: Sequence[Sequence[int]],
    need_weights: bool = False,
) -> TeacherForced:
    """Scores sequences[r] against utterance[r] of memory (B, T', d), all in one padded batch.

    Cross-attention comes back over each utterance's valid frames only (T' = its length), so
    every row sums to one. The model's decoder prompt goes between <sos> and each sequence, which
    must be at most `max_tokens(model)` long.
    """
    config = model.config
    prefix = [config.sos_id, *config.decoder_prompt]
    index = torch.tensor(list(utterance), dtype=torch.long, device=memory.device)
    lengths = [len(s) for s in sequences]
    width = len(prefix) + max(lengths)
    tokens_in = torch.full((len(sequences), width), config.eos_id, dtype=torch.long)
    # Output position p predicts input token p + 1: the first len(prefix) - 1 predict the prompt.
    targets = torch.full((len(sequences), width), config.eos_id, dtype=torch.long)
    for r, seq in enumerate(sequences):
        tokens_in[r, : len(prefix) + len(seq)] = torch.tensor([*prefix, *seq], dtype=torch.long)
        targets[r, len(prefix) - 1 : len(prefix) - 1 + len(seq)] = torch.tensor(seq, dtype=torch.long)
    tokens_in, targets = tokens_in.to(memory.device), targets.to(memory.device)
    in_lengths = torch.tensor(lengths, device=memory.device) + len(prefix)
    memory_mask = lengths_to_mask(memory_lengths, memory.shape[1])[index]
    out = model.decoder(tokens_in, in_lengths, memory[index], memory_mask, need_weights=need_weights)
    picked = torch.log_softmax(out.logits.float(), dim=-1).gather(-1, targets[..., None])[..., 0]
    first = len(prefix) - 1  # the position that predicts the first token
    token_log_probs = [picked[r, first : first + n + 1] for r, n in enumerate(lengths)]
    cross = None
    if need_weights:
        stacked = torch.stack(out.cross_attention, dim=1).float()  # (R, layers, heads, width, T')
        frames = memory_lengths[index].tolist()
        cross = [stacked[r, :, :, first : first + n + 1, : frames[r]] for r, n in enumerate(lengths)]
    return TeacherForced(token_log_probs, cross)
