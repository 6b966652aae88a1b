"""The attention decoder's beam search over ONNX Runtime decoder steps, in numpy.

The same search as `asr.decoding.beam_search.beam_search` without CTC, for one utterance: a row
per hypothesis through the decoder's key/value cache; <eos> ranked among every row's candidates; a
hypothesis finishes when <eos> is among the beam; with `length_norm` finished hypotheses rank by
score per token and the search stops once `beam` have finished (Whisper's rule), else once the best
finished one leads every running one. Its parity with the PyTorch search is tested.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from asr.config import ModelConfig
from asr.decoding.hypothesis import Hypothesis
from asr.decoding.vocabulary import never_emitted, token_room
from asr.errors import ConfigError

NEG_INF = float("-inf")
BLOCK = 64  # columns per block of top_columns' search
# (tokens (N, n), self_kv) -> (logits (N, V) of each row's last token, self_kv grown by n), for any
# N up to the beam: every row reads the same utterance.
Step = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass
class _Candidate:
    row: int
    column: int
    score: float


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def top_columns(values: np.ndarray, k: int) -> np.ndarray:
    """Per row, the indices of the k largest values, largest first.

    A selection over all of a 50,000-token row costs more than a decoder step's arithmetic, so
    long rows are cut into blocks: the k largest values lie in the k blocks with the largest
    maxima, and only those blocks are searched."""
    rows, width = values.shape
    part = None
    if width > BLOCK * k * 8:
        padded = np.pad(values, ((0, 0), (0, -width % BLOCK)), constant_values=-np.inf)
        blocks = padded.reshape(rows, -1, BLOCK)
        chosen = np.argpartition(-blocks.max(axis=2), k - 1, axis=1)[:, :k]  # (rows, k) block numbers
        inside = (chosen[:, :, None] * BLOCK + np.arange(BLOCK)).reshape(rows, -1)  # their columns
        part = np.take_along_axis(inside, np.argpartition(-np.take_along_axis(padded, inside, axis=1), k - 1,
                                                          axis=1)[:, :k], axis=1)
    if part is None or (part >= width).any():  # short rows; or rows of fewer than k values above -inf
        part = np.argpartition(-values, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(values, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def beam_search(step: Step, self_kv: np.ndarray, config: ModelConfig, beam: int, max_length: int,
                length_penalty: float = 0.0, length_norm: bool = False, forced: Sequence[int] = ()) -> list[Hypothesis]:
    """Finished hypotheses, best first. `step` runs decoder rows of the utterance (its cross-attention
    keys and values bound in); `self_kv` is the empty cache of one row. `max_length`: most tokens out,
    counting the forced ones, which continue the prompt and are not part of the hypotheses."""
    eos = config.eos_id
    prefix = [config.sos_id, *config.decoder_prompt, *forced]
    if len(forced) >= token_room(config):
        raise ConfigError(f"{len(forced)} forced tokens leave the decoder no room for more")
    max_length = max(1, min(max_length, token_room(config)) - len(forced))
    never = np.array(never_emitted(config), dtype=np.int64)
    width = min(beam + 1, config.vocab_size - len(never))  # <eos> and the `beam` best other tokens

    # The prompt is read once, by one row, and its cache copied to the `beam` rows; only row 0 is
    # alive at first, so that the first step does not expand `beam` copies of the same prompt.
    logits, kv = step(np.array([prefix]), self_kv)
    logits, kv = np.repeat(logits, beam, axis=0), np.repeat(kv, beam, axis=1)
    alive = np.arange(beam) == 0
    attention = np.zeros(beam)
    tokens = np.zeros((beam, 0), dtype=np.int64)
    finished: list[Hypothesis] = []
    for length in range(max_length):  # every running hypothesis holds `length` tokens
        log_probs = log_softmax(logits.astype(np.float32))
        log_probs[:, never] = NEG_INF
        ranking = log_probs.copy()
        ranking[:, eos] = np.inf  # <eos> is always a candidate
        candidates = top_columns(ranking, width)  # (beam, width)
        new_attention = attention[:, None] + np.take_along_axis(log_probs, candidates, axis=1)
        score = new_attention + length_penalty * (length + (candidates != eos))
        score[~alive] = NEG_INF
        flat = score.reshape(-1)
        best = np.argsort(-flat, kind="stable")[: 2 * beam]

        running: list[_Candidate] = []
        for index in best:
            s = float(flat[index])
            if s == NEG_INF or len(running) == beam:
                break
            c = _Candidate(int(index) // width, int(index) % width, s)
            if candidates[c.row, c.column] == eos:
                finished.append(Hypothesis(tuple(tokens[c.row].tolist()), s, None, float(new_attention[c.row, c.column])))
            else:
                running.append(c)
        best_finished = max((h.score for h in finished), default=NEG_INF)
        if length_norm:
            settled = len(finished) >= beam
        else:
            leads = bool(running) and best_finished >= running[0].score
            settled = leads and (length_penalty <= 0 or len(finished) >= beam)
        if not running or length + 1 >= max_length or settled:
            wanted = beam - len(finished) if length_norm else (0 if finished else beam)
            finished += [Hypothesis((*tokens[c.row].tolist(), int(candidates[c.row, c.column])), c.score)
                         for c in running[: max(0, wanted)]]
            break

        padded = running + [running[0]] * (beam - len(running))  # short beams get dead rows
        rows = np.array([c.row for c in padded])
        columns = np.array([c.column for c in padded])
        alive = np.arange(beam) < len(running)
        chosen = candidates[rows, columns]
        tokens = np.concatenate([tokens[rows], chosen[:, None]], axis=1)
        attention = new_attention[rows, columns]
        logits, kv = step(chosen[:, None], kv[:, rows])
    rank = (lambda h: h.score / max(1, len(h.tokens))) if length_norm else (lambda h: h.score)
    return sorted(finished, key=rank, reverse=True)
