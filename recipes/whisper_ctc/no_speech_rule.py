"""Where the default model's decoder no-speech rule (DecodingOptions.decoder_no_speech_threshold and
logprob_threshold, Whisper's rule) is set: on development speakers and crowds of training voices.

A crowd is what the unseen-voices benchmark's noise-only babble clips are (asr.noisy), made of
training voices instead of the noise bank's babble: CROWD_RECORDINGS babble recordings of 1-3
voices each, at equal level, the sum at the noise-only clips' level. The speech is dev_noise.py's
development speakers, clean and in noise. Each clip is decoded once with the rule measuring but not
acting (threshold 1.0); every pair of thresholds on the grid is then applied to what was measured.
The pair chosen: among those that raise the clean errors by at most CLEAN_ALLOWANCE of the clean
words, the one that silences the most crowds, then the one with the fewest errors in noise.

    python recipes/whisper_ctc/no_speech_rule.py --dev exp/dev_noise --out exp/no_speech_rule

`--model FOLDER` chooses the rule for another model folder (a candidate for the default) the same
way, and `--apply` writes the chosen pair into that folder's decoding settings.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import yaml

from asr.atomic import write_atomic
from asr.audio import load_audio
from asr.data.augment import make_babble
from asr.data.manifest import read_manifest
from asr.evaluate import cpu_model, git_revision
from asr.noisy import CROWD_RECORDINGS, NOISE_ONLY_LEVEL_DBFS, PEAK, at_rms
from asr.model_folder import DEFAULT_MODEL, META_FILE, read_meta, resolve_model
from asr.runtime.recognizer import load_onnx
from asr.scoring import score_utterance
from asr.text import normalize

SAMPLE_RATE = 16000
SPEECH_SETS = ("clean", "babble_5", "babble_0", "noise_0")  # dev_noise.py's sets
CLEAN_ALLOWANCE = 0.003
THRESHOLDS = np.round(np.arange(0.1, 0.41, 0.025), 3)
LOGPROB_THRESHOLDS = np.round(np.arange(-1.2, -0.19, 0.05), 2)


def crowds(voices: list[str], count: int, seconds: float, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    length = round(seconds * SAMPLE_RATE)
    out = []
    for _ in range(count):
        recordings = []
        for _ in range(CROWD_RECORDINGS):
            picks = rng.choice(len(voices), size=int(rng.integers(1, 4)), replace=False)
            recordings.append(at_rms(make_babble([load_audio(voices[int(p)]) for p in picks], length, rng), 1.0))
        level = 10 ** (NOISE_ONLY_LEVEL_DBFS / 20)
        out.append(np.clip(at_rms(sum(recordings), level), -PEAK, PEAK).astype(np.float32))
    return out


def measure(recognizer, audio: np.ndarray, reference: str) -> dict:
    """What the rule reads, and the errors with and without dropping the transcript."""
    result = recognizer.transcribe(audio, decoder_no_speech_threshold=1.0)  # measured, never acted on
    words = len(normalize(reference).split())
    kept = score_utterance("u", normalize(reference), normalize(result.text)).words.errors if words else \
        len(normalize(result.text).split())
    return {"no_speech_prob": result.no_speech_prob, "mean_logprob": result.score / (len(result.tokens) + 1),
            "words": words, "errors_kept": kept, "errors_dropped": words, "text": result.text}


def choose(clips: dict[str, list[dict]]) -> tuple[list[dict], dict]:
    rows = []
    clean_words = sum(c["words"] for c in clips["clean"])
    base = {name: sum(c["errors_kept"] for c in clips[name]) for name in SPEECH_SETS}
    for threshold in THRESHOLDS:
        for logprob in LOGPROB_THRESHOLDS:
            def dropped(c: dict) -> bool:
                return bool(c["no_speech_prob"] is not None and c["no_speech_prob"] > threshold
                            and c["mean_logprob"] < logprob)
            errors = {name: sum(c["errors_dropped"] if dropped(c) else c["errors_kept"] for c in clips[name])
                      for name in SPEECH_SETS}
            rows.append({"threshold": float(threshold), "logprob_threshold": float(logprob),
                         # silenced by either gate: the CTC gate leaves some crowds unsearched
                         "crowds_silenced": sum(dropped(c) or not c["text"].strip() for c in clips["crowd"]),
                         "change": {name: int(errors[name] - base[name]) for name in SPEECH_SETS}})
    allowed = [r for r in rows if r["change"]["clean"] <= CLEAN_ALLOWANCE * clean_words]
    best = min(allowed, key=lambda r: (-r["crowds_silenced"], sum(r["change"][n] for n in SPEECH_SETS[1:])))
    return rows, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--dev", type=Path, default=Path("exp/dev_noise"), help="dev_noise.py's output")
    parser.add_argument("--crowds", type=int, default=40)
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--out", type=Path, default=Path("exp/no_speech_rule"))
    parser.add_argument("--model", default=DEFAULT_MODEL, help="the model folder (or bundled name) to set the rule for")
    parser.add_argument("--apply", action="store_true", help="write the chosen pair into the model folder's decoding")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    from gate_head import speech_sets

    recognizer = load_onnx(args.model, threads=2)
    train, _ = speech_sets(args.data_dir, 10, 10, 0)  # dev_noise.py's training voices
    clips = {"crowd": [measure(recognizer, a, "") for a in crowds([u.audio for u in train], args.crowds, 4.0, args.seed)]}
    for name in SPEECH_SETS:
        clips[name] = [measure(recognizer, load_audio(u.audio), u.text) for u in read_manifest(args.dev / f"{name}.jsonl")]
    rows, best = choose(clips)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "clips.json").write_text(json.dumps(clips, indent=1))
    (args.out / "grid.json").write_text(json.dumps(rows, indent=1))
    words = {name: sum(c["words"] for c in clips[name]) for name in SPEECH_SETS}
    errors = {name: sum(c["errors_kept"] for c in clips[name]) for name in SPEECH_SETS}
    lines = ["# The decoder's no-speech rule on development speakers", "",
             f"Command: `python {' '.join(sys.argv)}`, git {git_revision() or 'unknown'}, CPU: {cpu_model()}.", "",
             f"{len(clips['crowd'])} crowds of training voices; " + "; ".join(
                 f"{n}: {len(clips[n])} utterances, {words[n]} words, {errors[n]} errors without the rule"
                 for n in SPEECH_SETS) + ".", "",
             f"Chosen: decoder_no_speech_threshold {best['threshold']}, logprob_threshold {best['logprob_threshold']} "
             f"(clean errors may rise by at most {CLEAN_ALLOWANCE:.1%} of the clean words). Below: the chosen pair, "
             "then the pairs that silence the most crowds whatever they cost; changes in errors against no rule.", "",
             "| no-speech probability above | mean log-probability under | crowds silenced | "
             + " | ".join(f"{n} errors" for n in SPEECH_SETS) + " |", "|---" * (3 + len(SPEECH_SETS)) + "|"]
    ranked = sorted(rows, key=lambda r: (-r["crowds_silenced"], sum(r["change"][n] for n in SPEECH_SETS[1:])))
    for r in [best] + [r for r in ranked if r is not best][:9]:
        lines.append(f"| {r['threshold']} | {r['logprob_threshold']} | {r['crowds_silenced']}/{len(clips['crowd'])} | "
                     + " | ".join(f"{r['change'][n]:+d}" for n in SPEECH_SETS) + " |")
    (args.out / "RESULTS.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if args.apply:
        apply(resolve_model(args.model), best)


def apply(folder: Path, chosen: dict) -> None:
    """Sets the model folder's decoder no-speech rule to the `chosen` pair of thresholds."""
    meta = read_meta(folder)
    meta["decoding"] = {**meta.get("decoding", {}), "decoder_no_speech_threshold": chosen["threshold"],
                        "logprob_threshold": chosen["logprob_threshold"]}
    write_atomic(folder / META_FILE, yaml.safe_dump(meta, sort_keys=False))


if __name__ == "__main__":
    main()
