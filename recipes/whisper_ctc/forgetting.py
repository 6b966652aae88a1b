"""Forgetting, step by step: WER of the teacher (step 0) and of each kept checkpoint of distill.py
on development speakers, clean and in training noise, so that a loss on clean speech shows the
moment it starts.

Development speakers are speechocean762 *train* speakers that no training here used
(gate_head.speech_sets' dev speakers); the noise is the training split's (distill.NOISE, drawn once
per utterance with a fixed seed, the same for every checkpoint). Decoding is the default model's.

    python recipes/whisper_ctc/forgetting.py --exp exp/distill --out recipes/whisper_ctc/FORGETTING.md
"""

from __future__ import annotations

import argparse
import copy
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from asr.audio import load_audio
from asr.checkpoint import list_checkpoints, load_checkpoint, load_model_dir
from asr.data.augment import build_augmenter
from asr.model_folder import load_ctc_tokenizer
from asr.recognizer import Recognizer
from asr.scoring import score

from distill import NOISE
from gate_head import DEV_SPEAKERS, TEACHER, speech_sets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--exp", default="exp/distill")
    parser.add_argument("--teacher", default=TEACHER, help="the unchanged tiny.en with its CTC head (gate_head.py)")
    parser.add_argument("--per-speaker", type=int, default=10)
    parser.add_argument("--dev-speakers", type=int, default=DEV_SPEAKERS, help="as distill.py and gate_head.py")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data_dir = Path(args.data_dir)

    _, dev = speech_sets(data_dir, args.per_speaker, args.dev_speakers, args.seed)
    clean = [load_audio(u.audio) for u in dev]
    augmenter = build_augmenter(replace(NOISE, noise_manifests=[str(data_dir / "noise" / "manifest.jsonl")],
                                        rir_manifests=[str(data_dir / "rir" / "manifest.jsonl")]),
                                [u.audio for u in dev], args.seed)
    noisy = [augmenter(w, np.random.default_rng([args.seed, 20_000 + i])) for i, w in enumerate(clean)]
    references = [u.text for u in dev]

    teacher, tokenizer, meta = load_model_dir(args.teacher)
    ctc_tokenizer = load_ctc_tokenizer(args.teacher, meta, tokenizer)
    steps = [(0, None)] + [(int(p.stem.split("_")[1]), p) for p in list_checkpoints(Path(args.exp) / "checkpoints")]
    revision = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    table = ["# Distillation: forgetting, step by step", "",
             f"Command: `python {' '.join(sys.argv)}` (git {revision}). {len(dev)} utterances of "
             f"{len({u.speaker for u in dev})} development speakers (speechocean762 train split, never trained on); "
             "noisy: the training noise mix (distill.NOISE), one draw per utterance, the same for every step. "
             "Step 0 is the teacher, the unchanged tiny.en. WER %, deletions in brackets.", "",
             "| step | clean | training noise |", "|---:|---:|---:|"]
    print("\n".join(table), flush=True)
    for step, path in steps:
        model = copy.deepcopy(teacher)
        if path is not None:
            model.encoder.load_state_dict(load_checkpoint(path)["encoder"])
        recognizer = Recognizer(model, tokenizer, meta, ctc_tokenizer)
        cells = []
        for audios in (clean, noisy):
            hyps = [r.text for r in recognizer.transcribe_batch(audios, batch_size=1)]
            scored = score((u.id, ref, hyp) for u, ref, hyp in zip(dev, references, hyps))
            cells.append(f"{100 * scored.wer:.1f} ({scored.words.deletions})")
        table.append(f"| {step} | {' | '.join(cells)} |")
        print(table[-1], flush=True)
    if args.out:
        args.out.write_text("\n".join(table) + "\n")


if __name__ == "__main__":
    main()
