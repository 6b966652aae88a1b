"""Decoding speed of each search mode: real-time factor on a few real clips, as a markdown table.

    python benchmarks/decode_speed.py exp/run/model
    python benchmarks/decode_speed.py exp/run/model --modes ctc_greedy joint --beam 5 --clips 4 --threads 2

RTF = decoding seconds / audio seconds (lower is faster; 0.1 means ten times faster than real
time). Clips are decoded one at a time, after one warm-up clip per mode; decoding time includes
features, encoder, search and CTC alignment (the stage columns split it).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

import asr
from asr.audio import load_audio
from asr.data.manifest import read_manifest
from asr.decoding.options import MODES

DATA_DIR = Path(os.environ.get("ASR_DATA_DIR", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
DEFAULT_MANIFESTS = [DATA_DIR / "speech" / name / "manifest.jsonl" for name in ("librispeech_mini", "speechbrain_asr")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="model folder")
    parser.add_argument("--manifest", nargs="+", type=Path, default=DEFAULT_MANIFESTS, help="JSONL manifests of clips")
    parser.add_argument("--clips", type=int, default=8, help="clips to decode (default 8)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--beam", type=int, default=10)
    parser.add_argument("--ctc-weight", type=float, default=0.3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    recognizer = asr.load_model(args.model, args.device)
    utterances = [u for path in args.manifest for u in read_manifest(path)][: args.clips]
    audio = [load_audio(u.audio, recognizer.sample_rate) for u in utterances]
    audio_seconds = sum(len(a) for a in audio) / recognizer.sample_rate

    print(f"{len(audio)} clips, {audio_seconds:.1f} s of audio; beam {args.beam}, ctc_weight {args.ctc_weight}, "
          f"{args.threads} thread(s) on {args.device}\n")
    print("| mode | RTF | decode s | encode s | search s | align s |")
    print("|---|---:|---:|---:|---:|---:|")
    for mode in args.modes:
        options = asr.DecodingOptions(mode=mode, beam_size=args.beam, ctc_weight=args.ctc_weight)
        recognizer.transcribe(audio[0], options)  # warm-up
        stages = {"encode": 0.0, "search": 0.0, "align": 0.0}
        start = time.perf_counter()
        for samples in audio:
            timings = recognizer.transcribe(samples, options).timings
            for stage in stages:
                stages[stage] += getattr(timings, stage)
        elapsed = time.perf_counter() - start
        print(f"| {mode} | {elapsed / audio_seconds:.4f} | {elapsed:.2f} | {stages['encode']:.2f} "
              f"| {stages['search']:.2f} | {stages['align']:.2f} |")


if __name__ == "__main__":
    main()
