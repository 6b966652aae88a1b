"""Word and character error rates, sclite-style alignments and the most frequent confusions.

Everything here takes (id, reference, hypothesis) triples and returns dataclasses; `write_report`
puts a `Report` on disk. Scores come in two views: on text normalised by `asr.text.normalize`
(the number to quote: "Mr." vs "mister" is not a recognition error) and on the raw text as given,
split at whitespace (for comparison with systems scored without a normaliser). Hypotheses written
by any system are read by `read_hypotheses`, so every peer goes through the same normaliser.

Every WER comes with its 95 % bootstrap interval over speakers (`asr.analysis.bootstrap`), taken
from the per-utterance counts of the same alignments: a difference inside it is no difference.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable, Iterable, Mapping, Optional, Sequence

import jiwer

from asr.analysis.bootstrap import Interval, UtteranceErrors
from asr.errors import ManifestError
from asr.text import normalize

Triple = tuple[str, str, str]  # (utterance id, reference, hypothesis)


@dataclass(frozen=True)
class ErrorCounts:
    """Edit-distance counts of one alignment, or summed over many."""

    hits: int = 0
    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0

    @property
    def reference_length(self) -> int:
        return self.hits + self.substitutions + self.deletions

    @property
    def hypothesis_length(self) -> int:
        return self.hits + self.substitutions + self.insertions

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def rate(self) -> Optional[float]:
        """errors / reference length; None where that is undefined (errors on an empty reference)."""
        if self.reference_length == 0:
            return 0.0 if self.errors == 0 else None
        return self.errors / self.reference_length

    def __add__(self, other: ErrorCounts) -> ErrorCounts:
        return ErrorCounts(
            self.hits + other.hits,
            self.substitutions + other.substitutions,
            self.deletions + other.deletions,
            self.insertions + other.insertions,
        )


@dataclass(frozen=True)
class Edit:
    """One column of a word alignment: C(orrect), S(ubstitution), D(eletion) or I(nsertion)."""

    op: str
    ref: Optional[str]  # None for an insertion
    hyp: Optional[str]  # None for a deletion


@dataclass(frozen=True)
class UtteranceScore:
    id: str
    ref: str  # as scored: normalised in the normalised view
    hyp: str
    words: ErrorCounts
    chars: ErrorCounts
    alignment: tuple[Edit, ...]  # word alignment
    speaker: Optional[str] = None  # from the manifest; the bootstrap resamples speakers

    @property
    def wer(self) -> Optional[float]:
        return self.words.rate

    @property
    def cer(self) -> Optional[float]:
        return self.chars.rate


@dataclass(frozen=True)
class Score:
    """One view (normalised or raw) of a set of utterances."""

    utterances: tuple[UtteranceScore, ...]
    words: ErrorCounts
    chars: ErrorCounts

    @property
    def wer(self) -> Optional[float]:
        return self.words.rate

    @property
    def cer(self) -> Optional[float]:
        return self.chars.rate

    @property
    def sentence_error_rate(self) -> float:
        """Share of utterances with at least one word error."""
        if not self.utterances:
            return 0.0
        return sum(u.words.errors > 0 for u in self.utterances) / len(self.utterances)

    def utterance_errors(self) -> UtteranceErrors:
        """Word errors, reference words and speaker of every utterance: what a bootstrap resamples."""
        return UtteranceErrors.of([u.id for u in self.utterances], [u.words.errors for u in self.utterances],
                                  [u.words.reference_length for u in self.utterances],
                                  [u.speaker for u in self.utterances])

    @cached_property
    def wer_interval(self) -> Optional[Interval]:
        """95 % bootstrap interval of the WER over speakers (1000 resamples, seed 0); None where the
        WER is undefined. `utterance_errors().interval(...)` takes other settings."""
        return self.utterance_errors().interval()


@dataclass(frozen=True)
class Confusions:
    """The most frequent word errors, most frequent first."""

    substitutions: tuple[tuple[str, str, int], ...]  # (reference word, hypothesis word, count)
    deletions: tuple[tuple[str, int], ...]
    insertions: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class Report:
    normalized: Score
    raw: Score
    confusions: Confusions  # in the normalised view
    missing: tuple[str, ...] = ()  # reference ids that had no hypothesis (scored as empty)
    extra: tuple[str, ...] = ()  # hypothesis ids that matched no reference (not scored)


def score_utterance(utt_id: str, ref: str, hyp: str, speaker: Optional[str] = None) -> UtteranceScore:
    """Aligns words (split at whitespace) and characters (single spaces included) of one pair."""
    ref, hyp = " ".join(ref.split()), " ".join(hyp.split())
    words = jiwer.process_words(ref, hyp)
    chars = jiwer.process_characters(ref, hyp)
    return UtteranceScore(
        id=utt_id,
        ref=" ".join(words.references[0]),
        hyp=" ".join(words.hypotheses[0]),
        words=_counts(words),
        chars=_counts(chars),
        alignment=_edits(words.references[0], words.hypotheses[0], words.alignments[0]),
        speaker=speaker,
    )


def _counts(output: jiwer.WordOutput | jiwer.CharacterOutput) -> ErrorCounts:
    return ErrorCounts(output.hits, output.substitutions, output.deletions, output.insertions)


def _edits(ref: list[str], hyp: list[str], chunks: list[jiwer.AlignmentChunk]) -> tuple[Edit, ...]:
    edits: list[Edit] = []
    for chunk in chunks:
        refs = ref[chunk.ref_start_idx : chunk.ref_end_idx]
        hyps = hyp[chunk.hyp_start_idx : chunk.hyp_end_idx]
        if chunk.type == "equal":
            edits += [Edit("C", r, h) for r, h in zip(refs, hyps, strict=True)]
        elif chunk.type == "substitute":
            edits += [Edit("S", r, h) for r, h in zip(refs, hyps, strict=True)]
        elif chunk.type == "delete":
            edits += [Edit("D", r, None) for r in refs]
        else:
            edits += [Edit("I", None, h) for h in hyps]
    return tuple(edits)


def aggregate(utterances: Sequence[UtteranceScore]) -> Score:
    words, chars = ErrorCounts(), ErrorCounts()
    for utterance in utterances:
        words += utterance.words
        chars += utterance.chars
    return Score(tuple(utterances), words, chars)


def score(triples: Iterable[Triple], normalizer: Optional[Callable[[str], str]] = normalize) -> Score:
    """WER and CER of (id, reference, hypothesis) triples, after `normalizer` (None: raw text)."""
    transform = normalizer or (lambda text: text)
    return aggregate([score_utterance(i, transform(ref), transform(hyp)) for i, ref, hyp in triples])


def most_frequent_confusions(view: Score, top: int = 20) -> Confusions:
    substitutions: Counter[tuple[str, str]] = Counter()
    deletions: Counter[str] = Counter()
    insertions: Counter[str] = Counter()
    for utterance in view.utterances:
        for edit in utterance.alignment:
            if edit.op == "S":
                substitutions[edit.ref, edit.hyp] += 1
            elif edit.op == "D":
                deletions[edit.ref] += 1
            elif edit.op == "I":
                insertions[edit.hyp] += 1
    return Confusions(
        substitutions=tuple((ref, hyp, n) for (ref, hyp), n in _top(substitutions, top)),
        deletions=tuple(_top(deletions, top)),
        insertions=tuple(_top(insertions, top)),
    )


def _top(counter: Counter, top: int) -> list:
    # Ties broken alphabetically, so that reports do not change from run to run.
    return sorted(counter.items(), key=lambda item: (-item[1], item[0]))[:top]


def score_report(
    triples: Iterable[Triple],
    missing: Sequence[str] = (),
    extra: Sequence[str] = (),
    top: int = 20,
    speakers: Optional[Mapping[str, Optional[str]]] = None,
) -> Report:
    """Both views of (id, reference, hypothesis) triples, read in one pass (so a progress bar can wrap them).

    `missing` and `extra` are only recorded: the caller pairs references with hypotheses.
    `speakers` (utterance id -> speaker, from the manifest) lets the WER's bootstrap interval
    resample speakers; an utterance without one is resampled on its own.
    """
    speakers = speakers or {}
    normalized, raw = [], []
    for utt_id, ref, hyp in triples:
        speaker = speakers.get(utt_id)
        normalized.append(score_utterance(utt_id, normalize(ref), normalize(hyp), speaker))
        raw.append(score_utterance(utt_id, ref, hyp, speaker))
    normalized_score = aggregate(normalized)
    return Report(
        normalized=normalized_score,
        raw=aggregate(raw),
        confusions=most_frequent_confusions(normalized_score, top),
        missing=tuple(missing),
        extra=tuple(extra),
    )


# ---------------------------------------------------------------- text reports


def format_alignment(alignment: Sequence[Edit]) -> tuple[str, str, str]:
    """sclite's REF, HYP and Eval lines: one column per edit, errors in upper case, gaps as stars."""
    ref_cells, hyp_cells, eval_cells = [], [], []
    for edit in alignment:
        ref, hyp = edit.ref, edit.hyp
        if edit.op != "C":
            ref, hyp = ref and ref.upper(), hyp and hyp.upper()
        width = max(len(ref or ""), len(hyp or ""))
        ref_cells.append((ref or "*" * width).ljust(width))
        hyp_cells.append((hyp or "*" * width).ljust(width))
        eval_cells.append(("" if edit.op == "C" else edit.op).ljust(width))
    return tuple(" ".join(cells).rstrip() for cells in (ref_cells, hyp_cells, eval_cells))


def format_summary(report: Report) -> str:
    """A small table of both views, as printed by `asr eval` and at the top of alignments.txt."""
    columns = [("utts", 6), ("words", 8), ("WER", 8), ("95% CI", 18), ("CER", 8), ("sub", 7), ("del", 7),
               ("ins", 7), ("S.Err", 8)]
    lines = [" " * 11 + "".join(name.rjust(width) for name, width in columns)]
    for name, view in (("normalized", report.normalized), ("raw", report.raw)):
        w = view.words
        lines.append(
            f"{name:<11}{len(view.utterances):>6}{w.reference_length:>8}{_percent(view.wer):>8}"
            f"{_bounds(view.wer_interval):>18}{_percent(view.cer):>8}{w.substitutions:>7}{w.deletions:>7}"
            f"{w.insertions:>7}{_percent(view.sentence_error_rate):>8}"
        )
    interval = report.normalized.wer_interval
    if interval is not None:
        lines.append(f"95% CI: percentile bootstrap of the WER over {interval.clusters} clusters (a speaker with "
                     f"all of its utterances; an utterance without a speaker alone), {interval.resamples} resamples")
    if report.missing:
        lines.append(f"{len(report.missing)} references had no hypothesis and were scored as empty")
    if report.extra:
        lines.append(f"{len(report.extra)} hypotheses matched no reference and were not scored")
    return "\n".join(lines)


def _percent(rate: Optional[float]) -> str:
    return "n/a" if rate is None else f"{100 * rate:.2f}%"


def _bounds(interval: Optional[Interval]) -> str:
    return "n/a" if interval is None else f"[{100 * interval.lo:.2f}, {100 * interval.hi:.2f}]"


def format_confusions(confusions: Confusions) -> str:
    lines = ["Most frequent substitutions (reference -> hypothesis):"]
    lines += [f"{n:>6}  {ref} -> {hyp}" for ref, hyp, n in confusions.substitutions]
    lines.append("Most frequent deletions:")
    lines += [f"{n:>6}  {word}" for word, n in confusions.deletions]
    lines.append("Most frequent insertions:")
    lines += [f"{n:>6}  {word}" for word, n in confusions.insertions]
    return "\n".join(lines)


def format_alignments(view: Score) -> str:
    """Every utterance as sclite's `pra` output prints it."""
    blocks = []
    for u in view.utterances:
        ref, hyp, marks = format_alignment(u.alignment)
        w = u.words
        blocks.append(
            f"id: {u.id}\n"
            f"Scores: (#C #S #D #I) {w.hits} {w.substitutions} {w.deletions} {w.insertions}"
            f"  WER {_percent(u.wer)}\n"
            f"REF:  {ref}\nHYP:  {hyp}\nEval: {marks}".rstrip()
        )
    return "\n\n".join(blocks)


# ---------------------------------------------------------------- files


def summary(report: Report) -> dict:
    """What summary.json holds."""
    confusions = report.confusions
    return {
        "normalizer": "asr.text.normalize",
        "normalized": _view_summary(report.normalized),
        "raw": _view_summary(report.raw),
        "confusions": {
            "substitutions": [{"ref": r, "hyp": h, "count": n} for r, h, n in confusions.substitutions],
            "deletions": [{"word": w, "count": n} for w, n in confusions.deletions],
            "insertions": [{"word": w, "count": n} for w, n in confusions.insertions],
        },
        "missing_hypotheses": list(report.missing),
        "unmatched_hypotheses": list(report.extra),
    }


def _view_summary(view: Score) -> dict:
    interval = view.wer_interval
    return {
        "wer": view.wer,
        # 95 % percentile bootstrap over speakers (utterances without one resampled on their own)
        "wer_interval": None if interval is None else interval.summary(),
        "cer": view.cer,
        "utterances": len(view.utterances),
        "sentence_error_rate": view.sentence_error_rate,
        "words": _counts_dict(view.words),
        "chars": _counts_dict(view.chars),
    }


def _counts_dict(counts: ErrorCounts) -> dict:
    return {
        "reference": counts.reference_length,
        "hits": counts.hits,
        "substitutions": counts.substitutions,
        "deletions": counts.deletions,
        "insertions": counts.insertions,
    }


def write_report(report: Report, out_dir: str | Path) -> Path:
    """Writes summary.json, per_utt.jsonl and alignments.txt into `out_dir`; returns it."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary_json = json.dumps(summary(report), indent=2, ensure_ascii=False)
    (out_dir / "summary.json").write_text(summary_json + "\n", encoding="utf-8")
    with (out_dir / "per_utt.jsonl").open("w", encoding="utf-8") as f:
        for norm, raw in zip(report.normalized.utterances, report.raw.utterances, strict=True):
            row = {
                "id": norm.id,
                "speaker": norm.speaker,
                "ref": raw.ref,
                "hyp": raw.hyp,
                "normalized": {"ref": norm.ref, "hyp": norm.hyp, "wer": norm.wer, "cer": norm.cer,
                               "words": _counts_dict(norm.words), "chars": _counts_dict(norm.chars)},
                "raw": {"wer": raw.wer, "cer": raw.cer,
                        "words": _counts_dict(raw.words), "chars": _counts_dict(raw.chars)},
            }
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    alignments = "\n\n".join(
        [format_summary(report), format_confusions(report.confusions), format_alignments(report.normalized)]
    )
    (out_dir / "alignments.txt").write_text(alignments + "\n", encoding="utf-8")
    return out_dir


def read_hypotheses(path: str | Path) -> dict[str, str]:
    """Hypotheses by key from JSONL or a Kaldi `text` file.

    JSONL lines are {"id", "text"}, or `asr transcribe` output with "audio" in place of "id" (the key
    is then the audio path as written); a Kaldi `text` line is "<utt-id> <words...>". The format is
    told by the first non-blank character: "{" means JSONL.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ManifestError(f"cannot read hypotheses {path}: {err}") from None
    is_jsonl = next((line.lstrip()[:1] == "{" for line in lines if line.strip()), False)
    hypotheses: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        key, text = _jsonl_hypothesis(line, path, number) if is_jsonl else _kaldi_hypothesis(line)
        if key in hypotheses:
            raise ManifestError(f"{path}:{number}: second hypothesis for {key!r}")
        hypotheses[key] = text
    return hypotheses


def _jsonl_hypothesis(line: str, path: Path, number: int) -> tuple[str, str]:
    try:
        row = json.loads(line)
        key = row.get("id", row.get("audio"))
        if key is None:
            raise KeyError("id")
        text = row.get("text") or ""
        if not isinstance(text, str):
            raise TypeError(f"text is {type(text).__name__}")
        return str(key), text
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
        raise ManifestError(f'{path}:{number}: expected {{"id" or "audio", "text"}} ({err!r})') from None


def _kaldi_hypothesis(line: str) -> tuple[str, str]:
    key, *text = line.split(maxsplit=1)
    return key, " ".join(text).strip()
