"""CTC forced alignment (Viterbi) of a token sequence, and encoder frames in seconds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import Tensor

from asr.model.asr_model import ASRModel

NEG_INF = float("-inf")
BLANK_POSITION = -1  # what an alignment holds for a frame that emits a blank


def forced_align(log_probs: Tensor, tokens: Sequence[int], blank_id: int = 0) -> Optional[list[int]]:
    """The most probable CTC path that spells exactly `tokens`.

    log_probs: (T, V) of one utterance, valid frames only. Returns, per frame, the position in
    `tokens` that the frame emits, or BLANK_POSITION; None if the tokens cannot fit in T frames
    (each token needs a frame, and a repeated token a blank frame between its copies).
    """
    frames = log_probs.shape[0]
    labels = torch.tensor(list(tokens), dtype=torch.long)
    states = 2 * len(labels) + 1  # blank, token 0, blank, token 1, ..., blank
    extended = torch.full((states,), blank_id, dtype=torch.long)
    extended[1::2] = labels
    emit = log_probs.detach().float().cpu()[:, extended]  # (T, S)
    # A path may jump over the blank between two tokens only when they differ.
    can_skip = torch.zeros(states, dtype=torch.bool)
    can_skip[3::2] = labels[1:] != labels[:-1]
    no_skip = torch.full((states,), NEG_INF)
    score = torch.full((states,), NEG_INF)
    score[: min(2, states)] = emit[0, : min(2, states)]
    moves = torch.zeros(frames, states, dtype=torch.long)  # how far back each state's best step came from
    pad = torch.full((2,), NEG_INF)
    for t in range(1, frames):
        shifted = torch.cat([pad, score])  # shifted[s + 2 - k] is the score of state s - k
        skip = torch.where(can_skip, shifted[:-2], no_skip)
        best, moves[t] = torch.stack([score, shifted[1:-1], skip]).max(dim=0)
        score = best + emit[t]
    last = states - 1
    if states > 1 and score[states - 2] > score[last]:
        last = states - 2  # end on the last token rather than the final blank
    if score[last] == NEG_INF:
        return None
    path = [0] * frames
    state, moves_list = last, moves.tolist()
    for t in range(frames - 1, -1, -1):
        path[t] = (state - 1) // 2 if state % 2 else BLANK_POSITION
        state -= moves_list[t][state]
    return path


def token_frames(alignment: Sequence[int], num_tokens: int) -> list[tuple[int, int]]:
    """First and last frame of each token in a complete alignment from `forced_align`."""
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for frame, position in enumerate(alignment):
        if position != BLANK_POSITION:
            first.setdefault(position, frame)
            last[position] = frame
    return [(first[k], last[k]) for k in range(num_tokens)]


@dataclass(frozen=True)
class FrameTiming:
    """Where encoder frames lie in time.

    Feature frame i covers samples [i * hop, i * hop + win) (frames are not centred; Whisper's
    are, on sample i * hop), and the subsampler builds encoder frame j from feature frames
    j * rate ... j * rate + span - 1 (span = its min_input_frames).
    Frame j is placed at the centre of the audio it reads, `offset + j * shift` seconds, and
    stands for the `shift` seconds around it.
    """

    shift: float  # seconds between encoder frames
    offset: float  # centre of encoder frame 0, in seconds

    @classmethod
    def of(cls, model: ASRModel) -> "FrameTiming":
        frontend, subsampling = model.config.frontend, model.encoder.subsampling
        hop = frontend.hop_length / frontend.sample_rate
        # Whisper's feature frames are centred on i * hop; ours start there.
        first_feature = 0.0 if frontend.kind == "whisper" else frontend.win_length / 2 / frontend.sample_rate
        centre_feature = (subsampling.min_input_frames() - 1) / 2
        return cls(shift=subsampling.rate * hop, offset=first_feature + centre_feature * hop)

    def span(self, first: int, last: int, duration: float) -> tuple[float, float]:
        """Seconds (start, end) covered by frames first ... last, clipped to [0, duration]."""
        start = self.offset + (first - 0.5) * self.shift
        end = self.offset + (last + 0.5) * self.shift
        return round(max(0.0, start), 3), round(min(duration, end), 3)
