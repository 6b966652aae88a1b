"""One teacher-forced decoder pass over given token sequences: their log-probabilities and attention."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import Tensor

from asr.decoding.vocabulary import token_room
from asr.model.asr_model import ASRModel
from asr.model.encoder import lengths_to_mask


@dataclass
class TeacherForced:
    token_log_probs: list[Tensor]  # per sequence y, (len(y) + 1,): log P_att(y_i | <sos> prompt y_<i), y then <eos>
    cross_attention: Optional[list[Tensor]]  # per sequence, (layers, heads, len(y) + 1, T'): row i predicts y_i


def max_tokens(model: ASRModel) -> int:
    """The longest token sequence the decoder's position table leaves room for after <sos> and the prompt."""
    return token_room(model.config)


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
    for r, seq in enumerate(sequences):
        tokens_in[r, : len(prefix) + len(seq)] = torch.tensor([*prefix, *seq], dtype=torch.long)
    tokens_in = tokens_in.to(memory.device)
    in_lengths = torch.tensor(lengths, device=memory.device) + len(prefix)
    memory_mask = lengths_to_mask(memory_lengths, memory.shape[1])[index]
    out = model.decoder.states(tokens_in, in_lengths, memory[index], memory_mask, need_weights=need_weights)

    # Output position p predicts input token p + 1, so the first len(prefix) - 1 positions predict
    # the prompt and are not scored, nor is the padding. The projection to the vocabulary costs
    # the most, so each distinct state (an utterance and the tokens so far: n-best lists mostly
    # share their beginnings) is projected once.
    first = len(prefix) - 1  # the position that predicts the first token
    states, reads = _distinct_states(utterance, sequences, first)
    rows, positions = (torch.tensor(column, device=memory.device) for column in zip(*states))
    log_probs = torch.log_softmax(model.decoder.project(out.states[rows, positions]).float(), dim=-1)
    targets = torch.tensor([t for seq in sequences for t in (*seq, config.eos_id)], device=memory.device)
    picked = log_probs[torch.tensor(reads, device=memory.device), targets]
    token_log_probs = list(picked.split([n + 1 for n in lengths]))
    cross = None
    if need_weights:
        stacked = torch.stack(out.cross_attention, dim=1).float()  # (R, layers, heads, width, T')
        frames = memory_lengths[index].tolist()
        cross = [stacked[r, :, :, first : first + n + 1, : frames[r]] for r, n in enumerate(lengths)]
    return TeacherForced(token_log_probs, cross)


def _distinct_states(
    utterance: Sequence[int], sequences: Sequence[Sequence[int]], first: int
) -> tuple[list[tuple[int, int]], list[int]]:
    """The distinct decoder states that score the sequences, as (row, position) of the padded batch,
    and for each scored position (sequence by sequence: the one before each token, then the one
    before <eos>) the index of its state. A state is the same wherever utterance and tokens so far
    are: the states form a trie of the sequences per utterance."""
    node_of: dict[tuple[int, int], int] = {}  # (parent node, token) -> node; -1 - u is utterance u's root
    states: list[tuple[int, int]] = []  # per node, where the batch computes it first
    reads: list[int] = []

    def node(key: tuple[int, int], row: int, position: int) -> int:
        if key not in node_of:
            node_of[key] = len(states)
            states.append((row, position))
        return node_of[key]

    for row, (u, seq) in enumerate(zip(utterance, sequences)):
        current = node((-1 - u, -1), row, first)
        reads.append(current)
        for i, token in enumerate(seq):
            current = node((current, token), row, first + 1 + i)
            reads.append(current)
    return states, reads
