"""The noise sweep behind `asr eval-noise`: WER of several systems on one test set under every
held-out noise kind at every SNR, the hallucination check, and optionally the noise-focus analysis.

Layout of the output folder:

    noisy/                         the test audio of every condition (asr.noisy), for peers to decode
    systems/<system>/<condition>/  asr eval's report of that system on that condition
    systems/<system>/noise_only.jsonl           its hypotheses for the noise-only and silent clips
    systems/<system>/attention_example.png      with focus: attention over one noisy input
    results.json, results.md       WER table (95 % bootstrap intervals over speakers, and each
                                   system's paired difference to the first), hallucination table,
                                   focus tables
    wer_vs_snr.png                 WER against SNR, one line per system

Peers (systems run elsewhere) are read from a hypothesis folder laid out as
`<hyp_dir>/<system>/<condition>.jsonl` (or `.txt` for Kaldi text), with conditions named as the
manifests in noisy/ (clean, babble_20, ..., white_-5) plus noise_only; a missing file leaves its
cells empty. Every system is scored by the same normaliser.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from asr.analysis.bootstrap import UtteranceErrors
from asr.analysis.hallucination import Hallucination, hallucination_by_kind
from asr.analysis.markdown import markdown_table
from asr.analysis.noise_focus import ATTENTIONS, FocusRecorder, FocusTable, focus_markdown, focus_table
from asr.analysis.plots import plot_attention_example, plot_wer_vs_snr
from asr.analysis.wer_table import WerTable
from asr.audio import load_audio
from asr.data.manifest import read_manifest
from asr.errors import ConfigError
from asr.evaluate import (
    decoding_options,
    evaluate_hypotheses,
    evaluate_model,
    git_revision,
    transcribe_utterances,
    write_hypotheses,
)
from asr.noisy import NOISE_ONLY, NoisySets, clip_kinds, make_noisy_sets, noise_manifest
from asr.recognizer import load_model
from asr.scoring import Report, read_hypotheses

log = logging.getLogger(__name__)

DEFAULT_KINDS = ("babble", "music", "street", "white")
DEFAULT_SNRS: tuple[Optional[float], ...] = (None, 20.0, 10.0, 5.0, 0.0, -5.0)  # None: clean
HYPOTHESIS_SUFFIXES = (".jsonl", ".txt")


@dataclass(frozen=True)
class SweepConfig:
    manifest: str
    noise: str  # a noise bank manifest, or the folder holding one (the shared noise/)
    out_dir: str
    models: tuple[str, ...] = ()  # "[NAME=]MODEL": model names or folders, named as `system_name` says
    hyp_dir: Optional[str] = None  # peers' hypotheses, see the module docstring
    kinds: tuple[str, ...] = DEFAULT_KINDS
    snrs: tuple[Optional[float], ...] = DEFAULT_SNRS
    decoding: dict[str, Any] = field(default_factory=dict)  # overrides of each model's DecodingOptions
    batch_size: int = 8
    device: str = "cpu"
    focus: bool = False
    # Speech frames of the focus analysis: within this many dB of the clean recording's loudest
    # frame. 40 dB agrees with the active speech the SNR is measured on; 30 dB leaves pauses out.
    focus_threshold_db: float = 40.0
    seed: int = 0
    clip_seconds: float = 4.0  # length of each noise-only clip
    clips_per_kind: int = 3


@dataclass(frozen=True)
class SweepResult:
    setup: dict  # what was run: test set, noise, seed, systems, decoding overrides, code revision
    wer: WerTable
    hallucination: dict[str, dict[str, Hallucination]]  # system -> clip kind (and "all") -> counts
    focus: dict[str, dict[str, FocusTable]]  # system -> "cross" / "encoder" -> table
    out_dir: Path

    def summary(self) -> dict:
        return {
            "setup": self.setup,
            "wer": self.wer.summary(),
            "hallucination": {system: {kind: h.summary() for kind, h in by_kind.items()}
                              for system, by_kind in self.hallucination.items()},
            "focus": {system: {name: table.summary() for name, table in tables.items()}
                      for system, tables in self.focus.items()},
        }

    def markdown(self) -> str:
        parts = ["## WER", self.wer.markdown()]
        if any(h.clips for by_kind in self.hallucination.values() for h in by_kind.values()):  # none asked for: no table
            parts += ["## Hallucinations on noise-only and silent clips", _hallucination_markdown(self.hallucination)]
        for system, tables in self.focus.items():
            for name, table in tables.items():
                parts += [f"## Attention focus: {system}, {name} attention", focus_markdown(table)]
        return "\n\n".join(parts) + "\n"


def system_name(spec: str) -> tuple[str, str]:
    """"NAME=MODEL" -> (NAME, MODEL); a bare model folder is named after itself, or after its
    parent when it is the `model` folder that `asr train` exports into an experiment."""
    name, sep, model = spec.partition("=")
    if sep:
        return name, model
    path = Path(spec)
    return (path.parent.name if path.name == "model" and path.parent.name else path.name), spec


def prepare_sweep(config: SweepConfig) -> NoisySets:
    """Writes the test audio of every condition into OUT/noisy (the same files every time)."""
    return make_noisy_sets(config.manifest, config.noise, config.kinds, config.snrs, Path(config.out_dir) / "noisy",
                           config.seed, config.clip_seconds, config.clips_per_kind)


def run_sweep(config: SweepConfig) -> SweepResult:
    out_dir = Path(config.out_dir)
    models = [system_name(spec) for spec in config.models]
    peers = _peer_folders(config.hyp_dir)
    names = [name for name, _ in models] + list(peers)
    if len(set(names)) != len(names):
        raise ConfigError(f"system names must differ (name models with NAME=MODEL): {names}")
    if not names:
        raise ConfigError("nothing to evaluate: give at least one model or a hypothesis folder")
    sets = prepare_sweep(config)
    clips = clip_kinds(sets.noise_only)
    errors: dict[str, dict[str, Optional[UtteranceErrors]]] = {}
    hallucination: dict[str, dict[str, Hallucination]] = {}
    focus: dict[str, dict[str, FocusTable]] = {}
    for name, model in models:
        system_dir = out_dir / "systems" / name
        errors[name], hypotheses, tables = _run_model(model, sets, system_dir, config)
        hallucination[name] = hallucination_by_kind(clips, hypotheses)
        if tables:
            focus[name] = tables
    for name, folder in peers.items():
        errors[name] = {c.name: _score_peer(folder, c.name, sets.manifests[c.name], out_dir / "systems" / name)
                        for c in sets.conditions}
        noise_only = _peer_file(folder, NOISE_ONLY)
        if noise_only is not None:
            hallucination[name] = hallucination_by_kind(clips, read_hypotheses(noise_only))
    setup = {
        "manifest": config.manifest, "noise": str(noise_manifest(config.noise)), "seed": config.seed,
        "models": dict(models), "peers": {name: str(folder) for name, folder in peers.items()},
        "decoding_overrides": config.decoding, "git_revision": git_revision(),
        "focus_threshold_db": config.focus_threshold_db if config.focus else None,
    }
    result = SweepResult(setup, WerTable(list(config.kinds), list(config.snrs), errors), hallucination, focus, out_dir)
    _write_json(result.summary(), out_dir / "results.json")
    (out_dir / "results.md").write_text(result.markdown(), encoding="utf-8")
    plot_wer_vs_snr(result.wer, out_dir / "wer_vs_snr.png")
    return result


def _run_model(model: str, sets: NoisySets, system_dir: Path, config: SweepConfig
               ) -> tuple[dict[str, Optional[UtteranceErrors]], dict[str, str], dict[str, FocusTable]]:
    """Word errors per condition, noise-only hypotheses and focus tables of one model."""
    recognizer = load_model(model, config.device)
    decoding = {**config.decoding, "return_attention": True} if config.focus else config.decoding
    recorder = (FocusRecorder(recognizer, sets.clean_audio, _example(sets), config.focus_threshold_db)
                if config.focus else None)
    errors: dict[str, Optional[UtteranceErrors]] = {}
    utterance_wer: dict[tuple[str, str], float] = {}
    for condition in sets.conditions:
        observe = recorder.observer(condition.name) if recorder else None
        evaluation = evaluate_model(recognizer, sets.manifests[condition.name], system_dir / condition.name,
                                    model_name=model, decoding=decoding, batch_size=config.batch_size,
                                    observe=observe)
        errors[condition.name] = evaluation.report.normalized.utterance_errors()
        utterance_wer.update(_utterance_wer(condition.name, evaluation.report))
    clips = read_manifest(sets.noise_only)
    hypotheses, _, _ = transcribe_utterances(recognizer, clips, decoding_options(recognizer, config.decoding),
                                             config.batch_size, desc="decoding noise-only clips")
    write_hypotheses(hypotheses, system_dir / f"{NOISE_ONLY}.jsonl")
    tables: dict[str, FocusTable] = {}
    if recorder is not None:
        for attention in ATTENTIONS:
            table = focus_table(attention, recorder.records, utterance_wer, sets.conditions)
            if table is not None:
                tables[attention] = table
        if recorder.example is not None:
            waveform = load_audio(recorder.example.audio, recognizer.sample_rate)
            plot_attention_example(recorder.example, waveform, recognizer.sample_rate,
                                   system_dir / "attention_example.png")
    return errors, hypotheses, tables


def _example(sets: NoisySets) -> tuple[str, str]:
    """(utterance, condition) of the attention figure: the first utterance under the first noise kind
    at 0 dB (voice and noise equally loud), else at that kind's lowest SNR; clean in a clean-only sweep."""
    utterance = next(iter(sets.clean_audio))
    noisy = [c for c in sets.conditions if c.kind is not None]
    if not noisy:
        return utterance, sets.conditions[0].name
    first_kind = [c for c in noisy if c.kind == noisy[0].kind]
    chosen = next((c for c in first_kind if c.snr_db == 0), min(first_kind, key=lambda c: c.snr_db))
    return utterance, chosen.name


def _utterance_wer(condition: str, report: Report) -> dict[tuple[str, str], float]:
    return {(condition, u.id): u.wer for u in report.normalized.utterances if u.wer is not None}


def _peer_folders(hyp_dir: Optional[str]) -> dict[str, Path]:
    if hyp_dir is None:
        return {}
    root = Path(hyp_dir)
    if not root.is_dir():
        raise ConfigError(f"hypothesis folder not found: {root}")
    return {folder.name: folder for folder in sorted(root.iterdir()) if folder.is_dir()}


def _peer_file(folder: Path, condition: str) -> Optional[Path]:
    return next((folder / f"{condition}{suffix}" for suffix in HYPOTHESIS_SUFFIXES
                 if (folder / f"{condition}{suffix}").is_file()), None)


def _score_peer(folder: Path, condition: str, manifest: Path, system_dir: Path) -> Optional[UtteranceErrors]:
    hypotheses = _peer_file(folder, condition)
    if hypotheses is None:
        log.warning("%s has no hypotheses for %s (%s.jsonl or .txt); left out", folder, condition, condition)
        return None
    return evaluate_hypotheses(manifest, hypotheses, system_dir / condition).normalized.utterance_errors()


def _hallucination_markdown(hallucination: dict[str, dict[str, Hallucination]]) -> str:
    if not hallucination:
        return "No system was run on the noise-only clips."
    kinds = list(dict.fromkeys(kind for by_kind in hallucination.values() for kind in by_kind))
    rows = [[system] + [f"{100 * by_kind[k].share:.0f}% / {by_kind[k].words_per_clip:.2f}" if k in by_kind
                        else "n/a" for k in kinds]
            for system, by_kind in hallucination.items()]
    return ("Share of clips with any output word / output words per clip (after the text normaliser).\n\n"
            + markdown_table(["system", *kinds], rows))


def _write_json(data: dict, path: Path) -> None:
    path.write_text(json.dumps(_finite(data), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _finite(value: Any) -> Any:
    """NaN (an undefined mean or correlation) as null: strict JSON parsers reject NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value
