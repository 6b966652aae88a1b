"""Evaluation: decoding a manifest with a model and scoring it, or scoring a hypothesis file
written by any system, against the manifest's reference transcripts.

Both paths end in the same `asr.scoring` report, so a peer's hypotheses and ours are compared by
exactly the same normaliser. The manifest's speakers go into the report, so that the WER's
bootstrap interval resamples speakers rather than utterances. A decoded run also records what
produced it in summary.json: the model, the decoding settings, the real-time factor and the
code's git revision.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import platform
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from tqdm import tqdm

from asr.data.manifest import Utterance, read_manifest
from asr.decoding.options import DecodingOptions
from asr.decoding.result import Result
from asr.errors import ConfigError, ManifestError
from asr.recognizer import Recognizer
from asr.scoring import Report, read_hypotheses, score_report, write_report

log = logging.getLogger(__name__)

HYPOTHESES_FILE = "hyp.jsonl"

# Called with every decoded utterance before its Result is dropped: attention weights are far too
# large to keep for a whole test set, so analyses take what they need as the results go by.
Observer = Callable[[Utterance, Result], None]


@dataclass(frozen=True)
class DecodeRun:
    """How a set was decoded: what summary.json records beside the scores."""

    model: str  # the name or folder the model was loaded from
    weights_sha256: Optional[str]
    options: DecodingOptions
    batch_size: int
    device: str
    audio_seconds: float
    decode_seconds: float  # wall clock of reading the audio and decoding it, scoring not included

    @property
    def real_time_factor(self) -> Optional[float]:
        return self.decode_seconds / self.audio_seconds if self.audio_seconds > 0 else None

    def summary(self) -> dict:
        return {
            "model": {"name": self.model, "weights_sha256": self.weights_sha256},
            "decoding": {**dataclasses.asdict(self.options), "batch_size": self.batch_size, "device": self.device},
            "audio_seconds": round(self.audio_seconds, 3),
            "decode_seconds": round(self.decode_seconds, 3),
            "real_time_factor": self.real_time_factor,
        }


@dataclass(frozen=True)
class Evaluation:
    report: Report
    run: DecodeRun


def decoding_options(recognizer: Recognizer, overrides: Mapping[str, Any]) -> DecodingOptions:
    """The model's recommended options with `overrides` (field name -> value) applied."""
    known = {f.name for f in dataclasses.fields(DecodingOptions)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"unknown decoding options {unknown}; known: {sorted(known)}")
    return dataclasses.replace(recognizer.default_options, **overrides)


def transcribe_utterances(
    recognizer: Recognizer,
    utterances: Sequence[Utterance],
    options: DecodingOptions,
    batch_size: int = 8,
    observe: Optional[Observer] = None,
    desc: str = "decoding",
) -> tuple[dict[str, str], float, float]:
    """Transcripts by utterance id, seconds of audio, and seconds spent decoding.

    Utterances are decoded longest first, so that a batch pads little; `observe` sees each result.
    """
    order = sorted(utterances, key=lambda u: u.duration, reverse=True)
    texts: dict[str, str] = {}
    audio_seconds = decode_seconds = 0.0
    with tqdm(total=len(order), desc=desc, unit="utt") as progress:
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            began = time.perf_counter()
            results = recognizer.transcribe_batch([u.audio for u in chunk], options, batch_size=batch_size)
            decode_seconds += time.perf_counter() - began
            for utterance, result in zip(chunk, results, strict=True):
                texts[utterance.id] = result.text
                audio_seconds += result.duration
                if observe is not None:
                    observe(utterance, result)
            progress.update(len(chunk))
    return texts, audio_seconds, decode_seconds


def evaluate_model(
    recognizer: Recognizer,
    manifest_path: str | Path,
    out_dir: str | Path,
    model_name: str,
    decoding: Optional[Mapping[str, Any]] = None,
    batch_size: int = 8,
    observe: Optional[Observer] = None,
    top: int = 20,
) -> Evaluation:
    """Decodes the manifest's transcribed utterances, scores them and writes into `out_dir` the
    report (summary.json, per_utt.jsonl, alignments.txt) and the hypotheses (hyp.jsonl).

    `decoding` overrides fields of the model's recommended DecodingOptions.
    """
    utterances = _transcribed(manifest_path)
    options = decoding_options(recognizer, decoding or {})
    texts, audio_seconds, decode_seconds = transcribe_utterances(
        recognizer, utterances, options, batch_size, observe, desc=f"decoding {Path(manifest_path).name}"
    )
    run = DecodeRun(
        model=model_name,
        weights_sha256=recognizer.meta.get("weights_sha256"),
        options=options,
        batch_size=batch_size,
        device=str(recognizer.device),
        audio_seconds=audio_seconds,
        decode_seconds=decode_seconds,
    )
    report = score_report(((u.id, u.text, texts[u.id]) for u in utterances), top=top, speakers=_speakers(utterances))
    out_dir = Path(out_dir)
    write_report(report, out_dir)
    write_hypotheses({u.id: texts[u.id] for u in utterances}, out_dir / HYPOTHESES_FILE)
    _add_to_summary(out_dir, {"manifest": str(manifest_path), **run.summary(), "git_revision": git_revision()})
    return Evaluation(report, run)


def evaluate_hypotheses(
    manifest_path: str | Path, hyp_path: str | Path, out_dir: str | Path, top: int = 20
) -> Report:
    """Scores `hyp_path` (JSONL or Kaldi text) against the manifest; writes the report into `out_dir`.

    A reference without a hypothesis is scored as an empty hypothesis (all deletions), so that
    a system cannot improve its WER by skipping hard utterances. Utterances without a reference
    transcript are left out.
    """
    utterances = _transcribed(manifest_path)
    hypotheses = read_hypotheses(hyp_path)
    matched = match_hypotheses(utterances, hypotheses)
    missing = [u.id for u in utterances if u.id not in matched]
    extra = sorted(set(hypotheses) - set(matched.values()))
    if missing:
        log.warning("%d of %d references have no hypothesis; scored as empty", len(missing), len(utterances))
    if extra:
        log.warning("%d hypotheses match no reference in %s; not scored", len(extra), manifest_path)
    triples = ((u.id, u.text, hypotheses[matched[u.id]] if u.id in matched else "") for u in utterances)
    progress = tqdm(triples, total=len(utterances), desc="scoring", unit="utt")
    report = score_report(progress, missing=missing, extra=extra, top=top, speakers=_speakers(utterances))
    write_report(report, out_dir)
    # The normaliser changes with the code, so the revision says which one scored the file.
    _add_to_summary(Path(out_dir), {"manifest": str(manifest_path), "hypotheses": str(hyp_path),
                                    "git_revision": git_revision()})
    return report


def _transcribed(manifest_path: str | Path) -> list[Utterance]:
    utterances = [u for u in read_manifest(manifest_path) if u.text is not None]
    if not utterances:
        raise ManifestError(f"{manifest_path}: no utterance has a reference transcript")
    return utterances


def _speakers(utterances: Sequence[Utterance]) -> dict[str, Optional[str]]:
    """Utterance id -> speaker: the clusters of the WER's bootstrap interval."""
    return {u.id: u.speaker for u in utterances}


def match_hypotheses(utterances: list[Utterance], hypotheses: dict[str, str]) -> dict[str, str]:
    """Utterance id -> key of its hypothesis.

    A key is an utterance id, or (from `asr transcribe`) the path of the audio, matched against the
    manifest's audio as written, as an absolute path, or by file name where that is unique.
    """
    by_path = {}
    for u in utterances:
        by_path[u.audio] = u.id
        by_path[str(Path(u.audio).resolve())] = u.id
    name_counts = Counter(Path(u.audio).name for u in utterances)
    by_name = {Path(u.audio).name: u.id for u in utterances if name_counts[Path(u.audio).name] == 1}
    ids = {u.id for u in utterances}
    matched: dict[str, str] = {}
    for key in hypotheses:
        if key in ids:
            utt_id = key
        else:
            utt_id = by_path.get(key) or by_path.get(str(Path(key).resolve())) or by_name.get(Path(key).name)
        if utt_id is not None and utt_id not in matched:
            matched[utt_id] = key
    return matched


def write_hypotheses(texts: Mapping[str, str], path: str | Path) -> None:
    """{"id", "text"} per line, the format `read_hypotheses` reads back."""
    lines = (json.dumps({"id": utt_id, "text": text}, ensure_ascii=False) + "\n" for utt_id, text in texts.items())
    Path(path).write_text("".join(lines), encoding="utf-8")


def git_revision() -> Optional[str]:
    """The commit of the code that is running, or None outside a git checkout (an installed wheel)."""
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), for results that say where they were measured."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _add_to_summary(out_dir: Path, fields: dict) -> None:
    path = out_dir / "summary.json"
    summary = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps({**summary, **fields}, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
