"""RESULTS.md of the target-speaker benchmark, from evaluate.py's hypotheses and attention measures
and faster-whisper's hypotheses (benchmarks/peers.py); 95 % bootstrap intervals over target speakers.

    python recipes/target_speaker/results.py --data exp/target_speaker --command "..." > recipes/target_speaker/RESULTS.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Iterator, Optional

from asr.analysis.bootstrap import Interval, UtteranceErrors
from asr.analysis.markdown import markdown_table
from asr.evaluate import cpu_model, git_revision
from asr.scoring import read_hypotheses, score
from asr.text import normalize

from prepare import ABSENT, CONDITIONS

# Column name -> benchmarks/peers.py's system: the model the default was made from, decoded as
# Whisper decodes, and faster-whisper tiny.en int8, beam 5.
PEERS = {"tiny.en unchanged": "tiny.en-unchanged", "faster-whisper": "faster-whisper-int8"}
# condition -> the share of errors enrollment must remove (issue 21); clean: no change beyond its interval
TARGETS = {"two_talker_0": 0.5, "two_talker_5": 0.3}
SPEAKERS = {"test": "Targets: speechocean762 test speakers (never used in training), one mixture each per condition "
                    "(README.md).",
            "dev": "Targets: the development speakers (speechocean762 train-split speakers no training used; "
                   "prepare.py --split dev), several mixtures each per condition: for choosing, not for claims."}


def errors(rows: list[dict], hyps: Optional[dict[str, str]], reference: str = "text",
           speaker: str = "speaker") -> Optional[UtteranceErrors]:
    if hyps is None:
        return None
    scored = score((row["id"], row[reference], hyps.get(row["id"], "")) for row in rows)
    return UtteranceErrors.of([u.id for u in scored.utterances], [u.words.errors for u in scored.utterances],
                              [u.words.reference_length for u in scored.utterances], [row[speaker] for row in rows])


def cell(e: Optional[UtteranceErrors]) -> str:
    if e is None:
        return "–"
    interval = e.interval()
    return interval.format() if interval is not None else f"{100 * e.wer:.1f}"


def change(enrolled: Optional[UtteranceErrors], plain: Optional[UtteranceErrors]) -> tuple[str, Optional[Interval]]:
    """'−12.3 [−15.0, −9.1] points (−45 %)': enrolled minus not enrolled, paired by mixture."""
    if enrolled is None or plain is None:
        return "–", None
    diff = enrolled.difference(plain)
    relative = f" ({100 * diff.estimate / plain.wer:+.0f} %)" if plain.wer else ""
    return diff.format() + relative, diff


def hypotheses(path: Path) -> Optional[dict[str, str]]:
    return read_hypotheses(path) if path.exists() else None


def verdict(condition: str, plain: Optional[UtteranceErrors], diff: Optional[Interval]) -> str:
    if diff is None or plain is None or not plain.wer:
        return "–"
    if condition in TARGETS:
        needed = TARGETS[condition]
        met = -diff.estimate / plain.wer >= needed
        return f"{'met' if met else 'not met'} (needs {100 * needed:.0f} % fewer)"
    if condition == "clean":
        return "met (no difference)" if not diff.excludes_zero else "not met (a difference)"
    return "–"


def spoken_conditions(data: Path) -> Iterator[tuple[str, list[dict]]]:
    """(condition, its manifest's rows) for each prepared condition in which the target speaks."""
    for condition in CONDITIONS:
        manifest = data / f"{condition}.jsonl"
        if condition != ABSENT and manifest.exists():
            yield condition, [json.loads(line) for line in manifest.read_text().splitlines()]


def wer_section(data: Path, hyps: Path) -> list[str]:
    header = ["condition", "mixtures", "target words", *PEERS, "default, no enrollment",
              "target enrolled", "enrolled − not (points)", "target", "other talker enrolled: target's words",
              "other talker enrolled: their words"]
    rows_out = []
    for condition, rows in spoken_conditions(data):
        peers = [errors(rows, hypotheses(data / "peers" / condition / f"{system}.jsonl")) for system in PEERS.values()]
        plain = errors(rows, hypotheses(hyps / "none" / f"{condition}.jsonl"))
        enrolled = errors(rows, hypotheses(hyps / "target" / f"{condition}.jsonl"))
        wrong = hypotheses(hyps / "interferer" / f"{condition}.jsonl")
        has_other = all("interferer" in row for row in rows)
        wrong_target = errors(rows, wrong) if has_other else None
        wrong_own = errors(rows, wrong, "interferer_text", "interferer") if has_other else None
        text, diff = change(enrolled, plain)
        words = str(int(plain.words.sum())) if plain is not None else "–"
        rows_out.append([condition, str(len(rows)), words, *map(cell, peers), cell(plain), cell(enrolled), text,
                         verdict(condition, plain, diff), cell(wrong_target), cell(wrong_own)])
    return ["## WER of the target's words (%)", "", markdown_table(header, rows_out), ""]


def absent_section(data: Path, hyps: Path, split: str) -> list[str]:
    """The other talker alone: with the target enrolled, nothing should come out."""
    manifest = data / f"{ABSENT}.jsonl"
    if not manifest.exists():
        return []
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    systems = [*((name, data / "peers" / ABSENT / f"{system}.jsonl") for name, system in PEERS.items()),
               ("default, no enrollment", hyps / "none" / f"{ABSENT}.jsonl"),
               ("default, target enrolled", hyps / "target" / f"{ABSENT}.jsonl"),
               ("default, the talker enrolled", hyps / "interferer" / f"{ABSENT}.jsonl")]
    table = []
    for name, path in systems:
        found = hypotheses(path)
        if found is None:
            continue
        counts = [len(normalize(found.get(row["id"], "")).split()) for row in rows]
        talker = errors(rows, found, "interferer_text", "interferer")
        table.append([name, str(len(rows)), f"{100 * sum(c > 0 for c in counts) / len(rows):.0f} %",
                      f"{sum(counts) / len(rows):.1f}", cell(talker)])
    header = ["system", "clips", "clips with words", "words per clip", "WER of the talker's words"]
    who = {"test": "test", "dev": "development"}[split]
    return [f"## The target silent, another {who} speaker talking ({ABSENT})", "",
            "The target is enrolled but says nothing: their words should be none. The talker's own words "
            f"({int(errors(rows, {}, 'interferer_text', 'interferer').words.sum())} in all) for comparison.", "",
            markdown_table(header, table), ""]


def focus_section(hyps: Path) -> list[str]:
    header = ["condition", "enrolled", "mixtures", "encoder self-attention, per layer", "cross-attention, per layer"]
    rows_out = []
    for condition in CONDITIONS:
        for enrollment in ("none", "target", "interferer"):
            path = hyps / enrollment / f"{condition}.focus.json"
            if not path.exists():
                continue
            focus = json.loads(path.read_text())
            layers = {kind: " / ".join(f"{v:.2f}" for v in focus[kind]["per_layer"]) if kind in focus else "–"
                      for kind in ("encoder", "cross")}
            rows_out.append([condition, enrollment, str(focus.get("encoder", {}).get("utterances", 0)),
                             layers["encoder"], layers["cross"]])
    if not rows_out:
        return []
    return ["## Where attention goes", "",
            "Of the attention mass on frames where the target speaks and on frames where only the other talker "
            "speaks, the share on the target's (mean over heads and queries; first 5 encoder frames and "
            "Whisper's padding left out). Higher: attention follows the target.", "",
            markdown_table(header, rows_out), ""]


def previous_section(data: Path, hyps: Path, previous: Path) -> list[str]:
    """The target enrolled, this candidate (adapters, or a decoding setting) against the model it would replace."""
    header = ["condition", "mixtures", "previous", "candidate", "candidate − previous (points)"]
    rows_out, talked_over = [], []
    for condition, rows in spoken_conditions(data):
        before = errors(rows, hypotheses(previous / "target" / f"{condition}.jsonl"))
        after = errors(rows, hypotheses(hyps / "target" / f"{condition}.jsonl"))
        if before is None or after is None:
            continue
        rows_out.append([condition, str(len(rows)), cell(before), cell(after), change(after, before)[0]])
        if condition != "clean":
            talked_over.append((before, after))
    if not rows_out:
        return []
    if len(talked_over) > 1:  # the decision in one number: every mixture with other voices, paired
        before, after = (UtteranceErrors.pool(side) for side in zip(*talked_over))
        rows_out.append(["**all but clean**", str(len(before)), cell(before), cell(after), change(after, before)[0]])
    return ["## Against the model it would replace", "",
            "WER of the target's words with the target enrolled, the same mixtures decoded by the model "
            f"the candidate would replace (`{previous}`); the change is paired by mixture, relative to it.", "",
            markdown_table(header, rows_out), ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="exp/target_speaker")
    parser.add_argument("--hyps", default=None, help="evaluate.py's --out (default DATA/hyps)")
    parser.add_argument("--command", required=True, help="the command that produced the results, to quote")
    parser.add_argument("--split", choices=("test", "dev"), default="test", help="prepare.py's --split")
    parser.add_argument("--previous", help="evaluate.py's --out for the model the candidate would replace")
    args = parser.parse_args()
    data = Path(args.data)
    hyps = Path(args.hyps) if args.hyps else data / "hyps"
    lines = ["# Target-speaker recognition: results", "",
             "Produced by `recipes/target_speaker/results.py`; do not edit by hand.", "",
             f"- Command: `{args.command}`", f"- Git revision: {git_revision()}",
             f"- CPU: {cpu_model()}", "",
             SPEAKERS[args.split] + " WER after the project's normaliser, 95 % bootstrap intervals over target speakers; "
             "the change is paired by mixture, relative to the WER without enrollment.", ""]
    lines += wer_section(data, hyps)
    lines += absent_section(data, hyps, args.split)
    lines += focus_section(hyps)
    if args.previous:
        lines += previous_section(data, hyps, Path(args.previous))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
