"""The hallucination check: how often a system writes words for audio that holds no speech.

Words are counted after `asr.text.normalize`, as scoring counts them, so punctuation alone or a
filler ("uh") is not a hallucinated word.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from asr.text import normalize

ALL = "all"


@dataclass(frozen=True)
class Hallucination:
    clips: int = 0
    clips_with_words: int = 0
    words: int = 0

    @property
    def share(self) -> float:
        """Share of clips with any output word."""
        return self.clips_with_words / self.clips if self.clips else 0.0

    @property
    def words_per_clip(self) -> float:
        return self.words / self.clips if self.clips else 0.0

    def __add__(self, other: Hallucination) -> Hallucination:
        return Hallucination(self.clips + other.clips, self.clips_with_words + other.clips_with_words,
                             self.words + other.words)

    def summary(self) -> dict:
        return {"clips": self.clips, "clips_with_words": self.clips_with_words, "words": self.words,
                "share_with_words": self.share, "words_per_clip": self.words_per_clip}


def hallucination_by_kind(kinds: Mapping[str, str], hypotheses: Mapping[str, str]) -> dict[str, Hallucination]:
    """Per kind of clip, in the order the kinds first appear, then over all clips ("all").

    A clip without a hypothesis counts as silent: a system that skipped it wrote nothing for it.
    """
    counts: dict[str, Hallucination] = {}
    for clip_id, kind in kinds.items():
        words = len(normalize(hypotheses.get(clip_id, "")).split())
        counts[kind] = counts.get(kind, Hallucination()) + Hallucination(1, int(words > 0), words)
    return {**counts, ALL: sum(counts.values(), Hallucination())}
