"""Bootstrap confidence intervals of a corpus WER, and of the difference of two systems' WERs.

The corpus WER is sum(errors) / sum(reference words). Utterances of one speaker are not
independent (a voice, an accent, a microphone), so the bootstrap resamples *speakers* with
replacement, each with all of its utterances (a cluster bootstrap); an utterance without a
speaker is a cluster of its own, keyed by its id, so that the copies of one utterance under
several noise conditions stay together when they are pooled. The interval is the percentile
interval of the resampled WERs, with a fixed seed: the same data give the same interval.

A difference of two systems is resampled in pairs (the same clusters for both systems in every
resample), which takes out what the utterances have in common and is far narrower than two
separate intervals. A difference whose interval holds 0 is no difference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Iterable, Optional, Sequence

import numpy as np

RESAMPLES = 1000
LEVEL = 0.95
SEED = 0
# Resample indices are drawn in blocks of at most this many, to bound memory on large sets.
_BLOCK = 1 << 22


@dataclass(frozen=True)
class Interval:
    """A point estimate (a WER, or a difference of WERs, as a fraction) and its bootstrap interval."""

    estimate: float
    lo: float
    hi: float
    level: float = LEVEL
    resamples: int = RESAMPLES
    clusters: int = 0  # speakers, and utterances without a speaker, that were resampled

    def __contains__(self, value: float) -> bool:
        return self.lo <= value <= self.hi

    @property
    def defined(self) -> bool:
        """Resampling one speaker draws the same set every time: a zero-width interval that says
        nothing of how the result would vary with other speakers, so none is claimed."""
        return self.clusters != 1

    @property
    def excludes_zero(self) -> bool:
        """For a difference: whether it is a difference at all (never shown on one speaker)."""
        return self.defined and 0.0 not in self

    def summary(self) -> dict:
        return {"lo": self.lo, "hi": self.hi, "level": self.level, "resamples": self.resamples,
                "clusters": self.clusters}

    def format(self, scale: float = 100.0, digits: int = 1) -> str:
        """"12.3 [10.1, 14.6]": percent by default; "12.3 [one speaker]" where no interval is defined."""
        if not self.defined:
            return f"{scale * self.estimate:.{digits}f} [one speaker]"
        return f"{scale * self.estimate:.{digits}f} [{scale * self.lo:.{digits}f}, {scale * self.hi:.{digits}f}]"


@dataclass(frozen=True, eq=False)
class UtteranceErrors:
    """What the bootstrap needs of a scored set: per utterance its id, word errors (S + D + I),
    reference words and speaker (None: unknown). `asr.scoring.Score.utterance_errors` makes one."""

    ids: tuple[str, ...]
    errors: np.ndarray  # int64, one per utterance
    words: np.ndarray  # int64, one per utterance
    speakers: tuple[Optional[str], ...]

    @classmethod
    def of(cls, ids: Sequence[str], errors: Sequence[int], words: Sequence[int],
           speakers: Optional[Sequence[Optional[str]]] = None) -> UtteranceErrors:
        speakers = tuple(speakers) if speakers is not None else (None,) * len(ids)
        errors_array, words_array = np.asarray(errors, dtype=np.int64), np.asarray(words, dtype=np.int64)
        if not len(ids) == len(errors_array) == len(words_array) == len(speakers):
            raise ValueError("ids, errors, words and speakers must have one entry per utterance")
        return cls(tuple(ids), errors_array, words_array, speakers)

    @classmethod
    def pool(cls, parts: Iterable[UtteranceErrors]) -> UtteranceErrors:
        """All utterances of `parts` together, e.g. one test set under several noise kinds."""
        parts = list(parts)
        return cls(tuple(i for p in parts for i in p.ids),
                   np.concatenate([p.errors for p in parts]) if parts else np.zeros(0, np.int64),
                   np.concatenate([p.words for p in parts]) if parts else np.zeros(0, np.int64),
                   tuple(s for p in parts for s in p.speakers))

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def wer(self) -> Optional[float]:
        """As `asr.scoring.ErrorCounts.rate`: None for errors on no reference words."""
        errors, words = int(self.errors.sum()), int(self.words.sum())
        if words == 0:
            return 0.0 if errors == 0 else None
        return errors / words

    @property
    def clusters(self) -> list[Hashable]:
        return speaker_clusters(self.ids, self.speakers)

    def interval(self, resamples: int = RESAMPLES, level: float = LEVEL, seed: int = SEED) -> Optional[Interval]:
        return wer_interval(self.errors, self.words, self.clusters, resamples=resamples, level=level, seed=seed)

    def difference(self, other: UtteranceErrors, resamples: int = RESAMPLES, level: float = LEVEL,
                   seed: int = SEED) -> Optional[Interval]:
        """WER of self minus WER of `other`, scored on the same utterances, matched by id (an id that
        occurs several times, as in a pool of conditions, is matched occurrence by occurrence)."""
        mine, theirs = _occurrences(self.ids), _occurrences(other.ids)
        position = {key: i for i, key in enumerate(theirs)}
        if len(mine) != len(theirs) or any(key not in position for key in mine):
            raise ValueError("a paired difference needs both systems scored on the same utterances")
        index = np.array([position[key] for key in mine], dtype=np.int64)
        return wer_difference_interval(self.errors, other.errors[index], self.words, other.words[index],
                                       self.clusters, resamples=resamples, level=level, seed=seed)


def _occurrences(ids: Sequence[str]) -> list[tuple[str, int]]:
    """(id, how many times it came before) for each id."""
    seen: dict[str, int] = {}
    keys = []
    for utt_id in ids:
        keys.append((utt_id, seen.get(utt_id, 0)))
        seen[utt_id] = seen.get(utt_id, 0) + 1
    return keys


def speaker_clusters(ids: Sequence[str], speakers: Sequence[Optional[str]]) -> list[Hashable]:
    """The cluster of each utterance: its speaker, or the utterance itself where none is known."""
    return [("speaker", s) if s is not None else ("utterance", i) for i, s in zip(ids, speakers, strict=True)]


def wer_interval(errors: Sequence[int], words: Sequence[int], clusters: Optional[Sequence[Hashable]] = None, *,
                 resamples: int = RESAMPLES, level: float = LEVEL, seed: int = SEED) -> Optional[Interval]:
    """Percentile bootstrap interval of sum(errors) / sum(words), resampling `clusters` (one label per
    utterance, e.g. from `speaker_clusters`; None: every utterance its own) with replacement.

    None where the WER is undefined: no utterances, or no reference words at all.
    """
    return _interval([(errors, words, 1.0)], clusters, resamples, level, seed)


def wer_difference_interval(errors_a: Sequence[int], errors_b: Sequence[int], words_a: Sequence[int],
                            words_b: Optional[Sequence[int]] = None,
                            clusters: Optional[Sequence[Hashable]] = None, *, resamples: int = RESAMPLES,
                            level: float = LEVEL, seed: int = SEED) -> Optional[Interval]:
    """Paired bootstrap interval of WER(a) - WER(b), both scored on the same utterances in the same
    order (`words_b`: b's reference words where its normaliser counted differently; default `words_a`).
    Every resample takes the same clusters for both systems. A system against itself gives [0, 0]."""
    words_b = words_a if words_b is None else words_b
    return _interval([(errors_a, words_a, 1.0), (errors_b, words_b, -1.0)], clusters, resamples, level, seed)


def _interval(terms: list[tuple[Sequence[int], Sequence[int], float]], clusters: Optional[Sequence[Hashable]],
              resamples: int, level: float, seed: int) -> Optional[Interval]:
    """Interval of sum(sign * errors / words) over `terms` (errors, words, sign), each ratio taken
    of totals over the utterances: on the data, and on `resamples` resamples of the clusters."""
    if not 0 < level < 1 or resamples < 1:
        raise ValueError(f"need 0 < level < 1 and resamples >= 1, got {level}, {resamples}")
    columns = [np.asarray(c, dtype=np.float64) for errors, words, _ in terms for c in (errors, words)]
    n = len(columns[0])
    if any(c.shape != (n,) for c in columns) or (clusters is not None and len(clusters) != n):
        raise ValueError("errors, words and clusters need one entry per utterance")
    if clusters is None:
        index, count = np.arange(n), n
    else:
        labels: dict[Hashable, int] = {}
        index = np.array([labels.setdefault(c, len(labels)) for c in clusters], dtype=np.int64)
        count = len(labels)
    # Totals per cluster, in float64: exact for any count of words there is.
    sums = [np.bincount(index, weights=c, minlength=count) for c in columns]
    if count == 0 or any(words.sum() == 0 for words in sums[1::2]):
        return None
    signs = [sign for _, _, sign in terms]

    def statistic(totals: list) -> np.ndarray:
        return sum(sign * errors / words for sign, errors, words in zip(signs, totals[::2], totals[1::2]))

    estimate = float(statistic([c.sum() for c in sums]))
    rng = np.random.default_rng(seed)
    values = np.empty(resamples)
    block = max(1, _BLOCK // count)
    for start in range(0, resamples, block):
        picks = rng.integers(0, count, size=(min(block, resamples - start), count))
        with np.errstate(divide="ignore", invalid="ignore"):
            value = statistic([c[picks].sum(axis=1) for c in sums])
        # A resample that drew only clusters without reference words has no WER: it is left out.
        values[start:start + len(picks)] = np.where(np.isfinite(value), value, np.nan)
    tail = 100 * (1 - level) / 2
    lo, hi = np.nanpercentile(values, [tail, 100 - tail])
    return Interval(estimate, float(lo), float(hi), level, resamples, count)
