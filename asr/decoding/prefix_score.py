"""CTC prefix scores for label-synchronous beam search (Watanabe et al., 2017; ESPnet's CTCPrefixScoreTH).

The prefix score psi(g) of a token sequence g is the log-probability that the CTC output
*starts with* g: the sum over every alignment whose collapsed labels begin with g. For the
end token, psi(g <eos>) is the log-probability that the output *is* g. Extending g by a token c
needs the forward variables of g: r[t] = (r_nonblank, r_blank), the log-probabilities that
frames 0..t collapse to exactly g with frame t a non-blank / a blank. Then, with
phi[t] = r_blank[t] + r_nonblank[t] (only r_blank[t] when c repeats g's last token),

    r_nonblank(g c)[t] = (r_nonblank(g c)[t-1] + phi[t-1]) * x_t(c)
    r_blank(g c)[t]    = (r_nonblank(g c)[t-1] + r_blank(g c)[t-1]) * x_t(blank)
    psi(g c)           = sum over t of phi[t-1] * x_t(c)

(in probabilities; the code works in logs). Both recursions are linear, so cumulative sums
solve them for every frame, candidate token and hypothesis at once, without a loop over frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from asr.model.encoder import lengths_to_mask

NEG_INF = float("-inf")


@dataclass
class PrefixState:
    """Forward variables of N hypotheses, all of the same length (label-synchronous search)."""

    r: Tensor  # (T, 2, N) float64: log r_nonblank, log r_blank per frame
    last: Tensor  # (N,) last token of each hypothesis, -1 while it is empty
    utterance: Tensor  # (N,) the utterance each hypothesis belongs to
    length: int  # tokens in each hypothesis


@dataclass
class PrefixExtension:
    """Every candidate extension of a PrefixState, before the search picks some."""

    r: Tensor  # (T, 2, N, K) float64
    score: Tensor  # (N, K) float64: prefix score psi(g c), or log P(g) for c = <eos>
    candidates: Tensor  # (N, K) the tokens c


class CTCPrefixScorer:
    def __init__(self, log_probs: Tensor, lengths: Tensor, blank_id: int, eos_id: int):
        """log_probs: (B, T, V) CTC log-probabilities; lengths: (B,) valid frames."""
        self.blank_id = blank_id
        self.eos_id = eos_id
        # Padded frames are zeroed and never read: scores sum valid frames only, and <eos> reads
        # each utterance's last valid frame.
        self.valid = lengths_to_mask(lengths, log_probs.shape[1]).t()  # (T, B)
        self.x = (log_probs.float() * self.valid.t()[..., None]).transpose(0, 1).contiguous()  # (T, B, V)
        self.last_frame = lengths - 1

    def initial_state(self, utterance: Tensor) -> PrefixState:
        """The empty hypothesis for each entry of `utterance` (N,): only blanks so far."""
        frames, n = self.x.shape[0], utterance.shape[0]
        r = self.x.new_full((frames, 2, n), NEG_INF, dtype=torch.float64)
        r[:, 1] = torch.cumsum(self.x[:, utterance, self.blank_id].double(), dim=0)
        last = torch.full((n,), -1, dtype=torch.long, device=utterance.device)
        return PrefixState(r, last, utterance, 0)

    def extend(self, state: PrefixState, candidates: Tensor) -> PrefixExtension:
        """Prefix scores of each hypothesis extended by each of its candidates (N, K)."""
        n, k = candidates.shape
        # Double precision: the recursions below are solved with cumulative sums of log-probabilities.
        x_token = self.x[:, state.utterance[:, None], candidates].double()  # (T, N, K)
        x_blank = self.x[:, state.utterance, self.blank_id].double()[..., None].expand_as(x_token)
        r_prev = state.r
        total_prev = torch.logaddexp(r_prev[:, 0], r_prev[:, 1])  # (T, N) log P(frames 0..t -> g)
        # A repeated token is a new label only after a blank; otherwise it merges into g's last one.
        repeat = (candidates == state.last[:, None])[None]
        phi = torch.where(repeat, r_prev[:, 1, :, None], total_prev[..., None])  # (T, N, K)
        # enter[t] = phi[t - 1]: g is complete before frame t (before frame 0 only if g is empty).
        before = phi.new_full((1, n, k), 0.0 if state.length == 0 else NEG_INF)
        enter = torch.cat([before, phi[:-1]])
        nonblank = _linear_recurrence(enter, x_token)
        blank = _linear_recurrence(torch.cat([phi.new_full((1, n, k), NEG_INF), nonblank[:-1]]), x_blank)
        valid = self.valid[:, state.utterance, None]  # (T, N, 1)
        score = torch.logsumexp((enter + x_token).masked_fill(~valid, NEG_INF), dim=0)
        # Ending here: the probability that the whole utterance collapses to exactly g.
        rows = torch.arange(n, device=candidates.device)
        ends = total_prev[self.last_frame[state.utterance], rows]
        score = torch.where(candidates == self.eos_id, ends[:, None], score)
        return PrefixExtension(torch.stack([nonblank, blank], dim=1), score, candidates)

    @staticmethod
    def select(state: PrefixState, extension: PrefixExtension, row: Tensor, column: Tensor) -> PrefixState:
        """The state of the hypotheses `state[row] + extension.candidates[row, column]`, (M,) each."""
        return PrefixState(
            r=extension.r[:, :, row, column],
            last=extension.candidates[row, column],
            utterance=state.utterance[row],
            length=state.length + 1,
        )


def _linear_recurrence(inflow: Tensor, emit: Tensor) -> Tensor:
    """Solves y[t] = (y[t-1] + exp(inflow[t])) * exp(emit[t]), y[-1] = 0, in logs, along dim 0.

    Unrolled, y[t] = sum over s <= t of exp(inflow[s]) * prod over u = s..t of exp(emit[u]): one
    cumulative sum and one cumulative log-sum-exp instead of a loop over frames.
    """
    through = emit.cumsum(dim=0)  # log prod of exp(emit[0..t])
    return through + torch.logcumsumexp(inflow - (through - emit), dim=0)
