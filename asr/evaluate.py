"""Scoring a hypothesis file written by any system against a manifest's reference transcripts."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from asr.data.manifest import Utterance, read_manifest
from asr.errors import ManifestError
from asr.scoring import Report, read_hypotheses, score_report, write_report

log = logging.getLogger(__name__)


def evaluate_hypotheses(
    manifest_path: str | Path, hyp_path: str | Path, out_dir: str | Path, top: int = 20
) -> Report:
    """Scores `hyp_path` (JSONL or Kaldi text) against the manifest; writes the report into `out_dir`.

    A reference without a hypothesis is scored as an empty hypothesis (all deletions), so that
    a system cannot improve its WER by skipping hard utterances. Utterances without a reference
    transcript are left out.
    """
    utterances = [u for u in read_manifest(manifest_path) if u.text is not None]
    if not utterances:
        raise ManifestError(f"{manifest_path}: no utterance has a reference transcript")
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
    report = score_report(progress, missing=missing, extra=extra, top=top)
    write_report(report, out_dir)
    return report


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
