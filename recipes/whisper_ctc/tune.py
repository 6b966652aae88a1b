"""Stage 3: choose the default model's decoding settings on DEV data and TRAINING noise only.

- ctc_weight and length_penalty for "rescore": the pair with the lowest dev WER (dev clean and
  dev mixed with training-split noise at 5 dB). Without a length bonus the decoder, fine-tuned on
  unpadded input, sometimes ends a long utterance after a word or two;
- no_speech_threshold: the CTC speech posterior (Result.speech_prob) that separates dev speech,
  clean and at 0 dB, from noise-only clips cut from the training-split noise recordings. It is set
  halfway (in log space) between the 2nd percentile of speech and the 98th of noise-only clips.

    python recipes/whisper_ctc/tune.py --model exp/whisper_ctc/model --dev recipes/whisper_ctc/data/dev.jsonl

Prints the chosen settings as `asr export --decoding` arguments and writes them to --out (JSON).
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

import numpy as np
import torch

from asr.audio import load_audio
from asr.data.augment import fit_to_length, mix_at_snr
from asr.data.manifest import read_manifest
from asr.data.noise import TRAIN, NoiseBank
from asr.recognizer import load_model
from asr.scoring import score



def noisy(waves: list[np.ndarray], bank: NoiseBank, snr_db: float, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for wave in waves:
        _, recording = bank.choose(rng)
        out.append(mix_at_snr(wave, fit_to_length(recording, len(wave), rng), snr_db))
    return out


def noise_only(bank: NoiseBank, count: int, seconds: float, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    clips = []
    for _ in range(count):
        _, recording = bank.choose(rng)
        clip = fit_to_length(recording, int(seconds * 16000), rng)
        clips.append((clip * 0.3 / max(1e-6, float(np.abs(clip).max()))).astype(np.float32))
    return clips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--dev", required=True)
    parser.add_argument("--data-dir", default=os.environ.get("ASR_DATA_DIR", "../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("recipes/whisper_ctc/tuned.json"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ctc-weights", default="0.1,0.3,0.5", help="grid of ctc_weight values")
    parser.add_argument("--length-penalties", default="0.5,1.0,1.5", help="grid of length_penalty values")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    recognizer = load_model(args.model)
    utterances = read_manifest(args.dev)
    clean = [load_audio(u.audio) for u in utterances]
    bank = NoiseBank.from_manifests([Path(args.data_dir) / "noise" / "manifest.jsonl"], TRAIN)
    conditions = {"clean": clean, "5dB": noisy(clean, bank, 5.0, 1), "0dB": noisy(clean, bank, 0.0, 2)}

    wer = {}
    speech_probs = []
    for weight in [float(x) for x in args.ctc_weights.split(",")]:
        for penalty in [float(x) for x in args.length_penalties.split(",")]:
            errors = []
            for name in ("clean", "5dB"):
                results = recognizer.transcribe_batch(conditions[name], mode="rescore", beam_size=5,
                                                      ctc_weight=weight, length_penalty=penalty)
                errors.append(score([(u.id, u.text, r.text) for u, r in zip(utterances, results)]).wer)
            wer[f"{weight},{penalty}"] = sum(errors) / len(errors)
            print(f"ctc_weight {weight}, length_penalty {penalty}: dev WER clean {errors[0]:.3f}, 5 dB {errors[1]:.3f}")
    best_weight, best_penalty = (float(x) for x in min(wer, key=wer.get).split(","))

    for name in ("clean", "0dB"):
        speech_probs += [r.speech_prob for r in recognizer.transcribe_batch(conditions[name], mode="ctc_greedy")]
    noise_probs = [r.speech_prob for r in recognizer.transcribe_batch(noise_only(bank, 60, 4.0, 3), mode="ctc_greedy")]
    low_speech, high_noise = np.percentile(speech_probs, 2), np.percentile(noise_probs, 98)
    threshold = math.exp((math.log(max(low_speech, 1e-6)) + math.log(max(high_noise, 1e-6))) / 2)
    print(f"speech_prob: dev speech 2nd percentile {low_speech:.4f}, training noise 98th percentile {high_noise:.4f}")

    settings = {"mode": "rescore", "beam_size": 5, "ctc_weight": best_weight, "length_penalty": best_penalty,
                "no_speech_threshold": round(float(threshold), 4)}
    args.out.write_text(json.dumps({"settings": settings, "dev_wer_by_ctc_weight_and_length_penalty": wer,
                                    "speech_prob_speech_p2": low_speech, "speech_prob_noise_p98": high_noise},
                                   indent=1))
    print(" ".join(f"--decoding {k}={v}" for k, v in settings.items()))


if __name__ == "__main__":
    main()
