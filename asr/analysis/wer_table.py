"""The WER table of a noise sweep: systems x noise kinds x SNRs, and the average over kinds, every
cell with its 95 % bootstrap interval over speakers; and each system's paired difference to the
first system, so that the table says which differences are differences at all."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from asr.analysis.bootstrap import LEVEL, RESAMPLES, SEED, Interval, UtteranceErrors
from asr.analysis.markdown import markdown_table
from asr.noisy import CLEAN, Condition, snr_label

AVERAGE = "average"


@dataclass(frozen=True)
class WerTable:
    kinds: list[str]
    snrs: list[Optional[float]]  # None: clean
    # system -> condition name -> per-utterance word errors after the normaliser (None: not scored)
    errors: dict[str, dict[str, Optional[UtteranceErrors]]]
    resamples: int = RESAMPLES
    level: float = LEVEL
    seed: int = SEED
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def systems(self) -> list[str]:
        return list(self.errors)

    @property
    def baseline(self) -> Optional[str]:
        """The system the others are compared with: the first."""
        return self.systems[0] if self.systems else None

    def utterances(self, system: str, kind: str, snr: Optional[float]) -> Optional[UtteranceErrors]:
        """What `system` got on `kind` at `snr`; for kind "average", every kind's utterances pooled."""
        if snr is None:
            return self.errors[system].get(CLEAN)
        if kind == AVERAGE:
            parts = [self.utterances(system, k, snr) for k in self.kinds]
            return None if not parts or any(p is None for p in parts) else UtteranceErrors.pool(parts)
        return self.errors[system].get(Condition(kind, snr).name)

    def cell(self, system: str, kind: str, snr: Optional[float]) -> Optional[float]:
        """WER of `system` on `kind` at `snr`; for kind "average" the pooled WER over kinds, which is
        the mean of the kinds' WERs: every kind holds the same utterances."""
        key = ("wer", system, kind, snr)
        if key not in self._cache:
            utterances = self.utterances(system, kind, snr)
            self._cache[key] = None if utterances is None else utterances.wer
        return self._cache[key]

    def interval(self, system: str, kind: str, snr: Optional[float]) -> Optional[Interval]:
        """The cell's bootstrap interval over speakers. In the average, one utterance under several
        kinds is one cluster (its speaker, or itself), since it is the same voice every time."""
        key = ("interval", system, kind, snr)
        if key not in self._cache:
            utterances = self.utterances(system, kind, snr)
            self._cache[key] = None if utterances is None else utterances.interval(self.resamples, self.level,
                                                                                   self.seed)
        return self._cache[key]

    def difference(self, system: str, baseline: str, kind: str, snr: Optional[float]) -> Optional[Interval]:
        """WER of `system` minus that of `baseline` in one cell, with its paired bootstrap interval."""
        key = ("difference", system, baseline, kind, snr)
        if key not in self._cache:
            mine, theirs = self.utterances(system, kind, snr), self.utterances(baseline, kind, snr)
            self._cache[key] = (None if mine is None or theirs is None
                                else mine.difference(theirs, self.resamples, self.level, self.seed))
        return self._cache[key]

    def summary(self) -> dict:
        kinds = [*self.kinds, AVERAGE]
        others = self.systems[1:]
        return {
            "metric": "WER after asr.text.normalize (fraction; null: not scored)",
            "interval": f"{100 * self.level:g} % percentile bootstrap over speakers (an utterance without a "
                        f"speaker on its own), {self.resamples} resamples, seed {self.seed}",
            "snrs": [CLEAN if snr is None else snr for snr in self.snrs],
            "kinds": self.kinds,
            "systems": {
                system: {kind: {snr_label(snr): self.cell(system, kind, snr) for snr in self.snrs} for kind in kinds}
                for system in self.systems
            },
            "intervals": {
                system: {kind: {snr_label(snr): _bounds(self.interval(system, kind, snr)) for snr in self.snrs}
                         for kind in kinds}
                for system in self.systems
            },
            "differences": {
                "baseline": self.baseline,
                "metric": "WER of the system minus WER of the baseline (fraction), paired bootstrap",
                "systems": {
                    system: {kind: {snr_label(snr): _difference(self.difference(system, self.baseline, kind, snr))
                                    for snr in self.snrs} for kind in kinds}
                    for system in others
                },
            },
        }

    def markdown(self) -> str:
        level = f"{100 * self.level:g} %"
        header = ["system", "noise"] + [CLEAN if snr is None else f"{snr:g} dB" for snr in self.snrs]
        rows = [[system, f"**{AVERAGE}**" if kind == AVERAGE else kind]
                + [_cell(self.interval(system, kind, snr), self.cell(system, kind, snr)) for snr in self.snrs]
                for system in self.systems for kind in [*self.kinds, AVERAGE]]
        text = (f"WER (%) after the text normaliser, and its {level} bootstrap interval over speakers "
                f"[lo, hi]; the clean column repeats on every row of a system.\n\n"
                + markdown_table(header, rows, label_columns=2))
        if len(self.systems) < 2:
            return text
        rows = [[f"{system} - {self.baseline}", f"**{AVERAGE}**" if kind == AVERAGE else kind]
                + [_difference_cell(self.difference(system, self.baseline, kind, snr)) for snr in self.snrs]
                for system in self.systems[1:] for kind in [*self.kinds, AVERAGE]]
        return (text + f"\n\nDifference in WER to {self.baseline} (percentage points; negative: fewer errors), "
                f"with its {level} paired bootstrap interval; **bold** where the interval leaves out 0. "
                "A difference whose interval holds 0 is no difference.\n\n"
                + markdown_table(["systems", "noise", *header[2:]], rows, label_columns=2))


def _cell(interval: Optional[Interval], wer: Optional[float]) -> str:
    if interval is not None:
        return interval.format()
    return "n/a" if wer is None else f"{100 * wer:.1f}"


def _difference_cell(interval: Optional[Interval]) -> str:
    if interval is None:
        return "n/a"
    if not interval.defined:
        return f"{100 * interval.estimate:+.1f} [one speaker]"
    text = f"{100 * interval.estimate:+.1f} [{100 * interval.lo:+.1f}, {100 * interval.hi:+.1f}]"
    return f"**{text}**" if interval.excludes_zero else text


def _bounds(interval: Optional[Interval]) -> Optional[dict]:
    return None if interval is None else {"lo": interval.lo, "hi": interval.hi}


def _difference(interval: Optional[Interval]) -> Optional[dict]:
    return None if interval is None else {"estimate": interval.estimate, "lo": interval.lo, "hi": interval.hi}
