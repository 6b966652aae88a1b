"""Stage 6: RESULTS.md from the reports of stages 4-5 (nothing typed by hand).

    python recipes/offline/results.py --exp exp/offline --out recipes/offline/RESULTS.md
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
from pathlib import Path

MODELS = {"plain": "plain (no noise augmentation)", "noise": "noise-augmented"}
SETS = {
    "synth_voices": "held-out synthetic voices (espeak-ng Scottish, flite rms, festival ked, piper joe)",
    "fsdd": "FSDD digits, held-out speakers nicolas and theo",
    "ljspeech": "LJ Speech, held-out clips",
    "other_real": "SpeechBrain + LibriSpeech-mini (unseen real speakers)",
}


def per_speaker_wer(per_utt: Path, speakers: dict[str, str]) -> dict[str, float]:
    """WER per speaker: errors summed over a speaker's utterances / their reference words."""
    errors: dict[str, list[int]] = {}
    for line in per_utt.read_text().splitlines():
        row = json.loads(line)
        words = row["normalized"]["words"]
        count = errors.setdefault(speakers.get(row["id"], "?"), [0, 0])
        count[0] += words["substitutions"] + words["deletions"] + words["insertions"]
        count[1] += words["reference"]
    return {speaker: e / max(1, n) for speaker, (e, n) in sorted(errors.items())}


def clean_table(exp: Path) -> list[str]:
    lines = ["| model | " + " | ".join(SETS.values()) + " |", "|---|" + "---:|" * len(SETS)]
    for model, label in MODELS.items():
        cells = []
        for name in SETS:
            summary = exp / "eval" / model / name / "summary.json"
            if summary.is_file():
                report = json.loads(summary.read_text())
                cells.append(f"{100 * report['normalized']['wer']:.1f} ({report['normalized']['utterances']})")
            else:
                cells.append("–")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def search_description(exp: Path) -> str:
    """How stage 4 decoded, from the options recorded in one of its reports."""
    summaries = sorted((exp / "eval").glob("*/*/summary.json"))
    if not summaries:
        return "no test reports yet"
    options = json.loads(summaries[0].read_text())["decoding"]
    return f"{options['mode']} decoding, beam {options['beam_size']}, CTC weight {options['ctc_weight']}"


def dev_table(exp: Path) -> list[str]:
    searches = sorted(p.name for p in (exp / "dev").glob("*") if p.is_dir())
    if not searches:
        return []
    lines = ["| search | " + " | ".join(MODELS.values()) + " |", "|---|" + "---:|" * len(MODELS)]
    for search in searches:
        cells = []
        for model in MODELS:
            summary = exp / "dev" / search / model / "summary.json"
            cells.append(f"{100 * json.loads(summary.read_text())['normalized']['wer']:.1f}" if summary.is_file() else "–")
        lines.append(f"| {search} | " + " | ".join(cells) + " |")
    return lines


def voice_table(exp: Path, manifest: Path) -> list[str]:
    speakers = {json.loads(l)["id"]: json.loads(l)["speaker"] for l in manifest.read_text().splitlines() if l.strip()}
    by_model = {m: per_speaker_wer(exp / "eval" / m / "synth_voices" / "per_utt.jsonl", speakers)
                for m in MODELS if (exp / "eval" / m / "synth_voices" / "per_utt.jsonl").is_file()}
    if not by_model:
        return []
    voices = sorted({v for wers in by_model.values() for v in wers})
    lines = ["| held-out voice | " + " | ".join(MODELS[m] for m in by_model) + " |", "|---|" + "---:|" * len(by_model)]
    for voice in voices:
        lines.append(f"| {voice} | " + " | ".join(f"{100 * by_model[m].get(voice, float('nan')):.1f}" for m in by_model) + " |")
    return lines


def low_snr_gain(results: dict) -> list[str]:
    """How much noise augmentation changed the WER averaged over noise kinds, per SNR."""
    systems = results["wer"]["systems"]
    if not {"plain", "noise"} <= set(systems):
        return []
    lines = []
    for snr in results["wer"]["snrs"]:
        key = snr if snr == "clean" else f"{snr:g}"
        plain, noise = systems["plain"]["average"].get(key), systems["noise"]["average"].get(key)
        if plain is None or noise is None:
            continue
        relative = abs(noise - plain) / plain if plain else 0.0
        lines.append(f"- {snr if snr == 'clean' else f'{snr:g} dB'}: plain {100 * plain:.1f} %, noise-augmented "
                     f"{100 * noise:.1f} % ({100 * (noise - plain):+.1f} points, {100 * relative:.0f} % "
                     f"{'fewer' if noise <= plain else 'more'} errors)")
    return lines


def focus_comparison(results: dict) -> list[str]:
    """Share of attention on speech frames (and its normalised entropy), per SNR pooled over the noise
    kinds, for both models side by side: did noise augmentation keep attention on the voice?"""
    focus = results.get("focus", {})
    if not {"plain", "noise"} <= set(focus):
        return []
    lines = []
    for attention in ("cross", "encoder"):
        if attention not in focus["plain"] or attention not in focus["noise"]:
            continue
        snrs = [s if s == "clean" else f"{s:g}" for s in results["wer"]["snrs"]]
        lines += ["", f"{'Cross' if attention == 'cross' else 'Encoder self'}-attention, mean over layers and heads: "
                  "share on speech frames / normalised entropy (1 = uniform)", "",
                  "| model | " + " | ".join(s if s == "clean" else f"{s} dB" for s in snrs) + " |",
                  "|---|" + "---:|" * len(snrs)]
        for model in ("plain", "noise"):
            by_condition = focus[model][attention]["by_condition"]
            cells = []
            for snr in snrs:
                names = [c for c in by_condition if c == snr or c.rsplit("_", 1)[-1] == snr]
                share = sum(by_condition[c]["overall"]["speech_share"] for c in names) / max(1, len(names))
                entropy = sum(by_condition[c]["overall"]["normalized_entropy"] for c in names) / max(1, len(names))
                cells.append(f"{share:.3f} / {entropy:.2f}" if names else "–")
            lines.append(f"| {MODELS[model]} | " + " | ".join(cells) + " |")
        chance = focus["plain"][attention]["by_condition"].get("clean", {}).get("chance")
        if chance is not None:
            lines.append(f"\nChance (the share of speech frames): {chance:.3f}.")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp", type=Path, default=Path("exp/offline"))
    parser.add_argument("--data", type=Path, default=Path("recipes/offline/data"))
    parser.add_argument("--out", type=Path, default=Path("recipes/offline/RESULTS.md"))
    args = parser.parse_args()
    revision = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    lines = [
        "# offline: results",
        "",
        f"Produced by `python recipes/offline/results.py` from the reports of `recipes/offline/run.sh --stage 4"
        f" --stop-stage 5` (git {revision}). Both models: `conf/train_plain.yaml` and `conf/train_noise.yaml`,"
        " trained by stage 2 from scratch, identical but for the waveform noise augmentation; checkpoints averaged by stage 3;"
        f" {search_description(args.exp)}. WER in % after `asr.text.normalize` on both sides,"
        " utterances in brackets; a dash marks a run that has no report.",
        "",
        "## Clean speech",
        "",
        *clean_table(args.exp),
    ]
    dev = dev_table(args.exp)
    if dev:
        lines += ["", "Dev WER of each search (stage 4 decodes the test sets with the one of lower mean):", "", *dev]
    voices = voice_table(args.exp, args.data / "test_synth_voices.jsonl")
    if voices:
        lines += ["", "Per held-out synthetic voice (one voice per engine, never heard in training):", "", *voices]
    logs = {m: list(csv.DictReader(p.open())) for m in MODELS if (p := args.exp / m / "train_log.csv").is_file()}
    if logs:
        lines += ["", "Training (stage 2: the clean epochs before `augment.start_epoch`, which both configs share, once;"
                  " then both models at once, one CPU thread each), from each `train_log.csv` and `valid_log.csv`:", ""]
        for m, rows in logs.items():
            valid = list(csv.DictReader((args.exp / m / "valid_log.csv").open())) if (args.exp / m / "valid_log.csv").is_file() else []
            dev_cer = f", last dev CER {float(valid[-1]['cer']):.3f} (step {valid[-1]['step']})" if valid else ""
            lines.append(f"- {MODELS[m]}: {rows[-1]['step']} steps, last epoch {rows[-1]['epoch']}{dev_cer}")
    noisy = args.exp / "noisy"
    if (noisy / "results.json").is_file():
        results = json.loads((noisy / "results.json").read_text())
        lines += ["", "## Held-out noise (stage 5, `asr eval-noise` on `test_noise_mix.jsonl`)", "",
                  "Noise augmentation, WER averaged over the noise kinds:", "", *low_snr_gain(results),
                  *focus_comparison(results), "", (noisy / "results.md").read_text().strip()]
    args.out.write_text("\n".join(lines) + "\n")
    print(args.out)


if __name__ == "__main__":
    main()
