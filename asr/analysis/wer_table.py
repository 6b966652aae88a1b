"""The WER table of a noise sweep: systems x noise kinds x SNRs, and the average over kinds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from asr.analysis.markdown import markdown_table
from asr.noisy import CLEAN, Condition, snr_label

AVERAGE = "average"


@dataclass(frozen=True)
class WerTable:
    kinds: list[str]
    snrs: list[Optional[float]]  # None: clean
    wer: dict[str, dict[str, Optional[float]]]  # system -> condition name -> normalised WER (None: not scored)

    @property
    def systems(self) -> list[str]:
        return list(self.wer)

    def cell(self, system: str, kind: str, snr: Optional[float]) -> Optional[float]:
        """WER of `system` on `kind` at `snr`; the average over kinds for kind "average"."""
        if snr is None:
            return self.wer[system].get(CLEAN)
        if kind == AVERAGE:
            values = [self.cell(system, k, snr) for k in self.kinds]
            # The same utterances under every kind, so the mean of the kinds' WERs is the pooled WER.
            return None if any(v is None for v in values) else sum(values) / len(values)
        return self.wer[system].get(Condition(kind, snr).name)

    def summary(self) -> dict:
        return {
            "metric": "WER after asr.text.normalize (fraction; null: not scored)",
            "snrs": [CLEAN if snr is None else snr for snr in self.snrs],
            "kinds": self.kinds,
            "systems": {
                system: {kind: {snr_label(snr): self.cell(system, kind, snr) for snr in self.snrs}
                         for kind in [*self.kinds, AVERAGE]}
                for system in self.systems
            },
        }

    def markdown(self) -> str:
        header = ["system", "noise"] + [CLEAN if snr is None else f"{snr:g} dB" for snr in self.snrs]
        rows = [[system, f"**{AVERAGE}**" if kind == AVERAGE else kind]
                + [_percent(self.cell(system, kind, snr)) for snr in self.snrs]
                for system in self.systems for kind in [*self.kinds, AVERAGE]]
        return ("WER (%) after the text normaliser; the clean column repeats on every row of a system.\n\n"
                + markdown_table(header, rows, label_columns=2))


def _percent(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"
