"""One long recording from the command line: `asr transcribe` against faster-whisper tiny.en int8
beam 5 on the same WAV file, an hour of it by default (the speed issue's target: at most 2 minutes
on 2 cores, in bounded memory).

    python benchmarks/long_recording.py --out benchmarks/runs/long-recording
    python benchmarks/long_recording.py --minutes 10

The recording is benchmarks/audio_sets.py's long one (the held-out clips joined by 0.5 s pauses,
over 10 minutes) played again and again until it lasts --minutes, written as a 16-bit WAV; its
reference is the joined transcripts as often. Each command runs once, in a fresh process, on the
default kernels (wall clock and peak resident memory from /usr/bin/time, start-up and model load
included); WER after the project's normaliser. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

import audio_sets
from cli_speed import FASTER_WHISPER, timed, wer
from machine import REPO, machine


def commands(threads: int) -> list[tuple[str, list[str]]]:
    asr = [sys.executable, "-m", "asr.cli", "transcribe", "--threads", str(threads), "--quiet"]
    return [("asr transcribe (the default: ONNX Runtime, fp32)", asr),
            ("asr transcribe --quantize int8", [*asr, "--quantize", "int8"]),
            ("faster-whisper tiny.en int8, beam 5", [sys.executable, "-c", FASTER_WHISPER, str(threads)])]


def write_recording(folder: Path, minutes: float) -> tuple[Path, str, float]:
    """(path, reference, seconds) of the long recording repeated to last `minutes`."""
    shorter = minutes * 60 if minutes * 60 < audio_sets.LONG_MIN_SECONDS else None  # a quick try: part of it
    sets = audio_sets.prepare(folder / "sets", short_limit=1, long_seconds=shorter)["long"]
    once, rate = sf.read(sets["path"], dtype="int16")
    pause = np.zeros(round(sets["pause_seconds"] * rate), np.int16)
    times = math.ceil(minutes * 60 / sets["seconds"])
    path = folder / "recording.wav"
    sf.write(path, np.concatenate([np.concatenate([once, pause])] * times), rate, subtype="PCM_16")
    return path, " ".join([sets["text"]] * times), sf.info(str(path)).duration


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=60.0, help="at least this long (default 60)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="also write OUT/RESULTS.md")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="asr-long-") as folder:
        path, reference, seconds = write_recording(Path(folder), args.minutes)
        report = ["# One long recording from the command line", "",
                  f"Command: `python {' '.join(sys.argv)}`  ", f"{machine()}  ",
                  f"Recording: benchmarks/audio_sets.py's long recording repeated to {seconds / 60:.1f} minutes, "
                  f"one 16-bit WAV. {args.threads} threads, default kernels, one run per command, start-up included.",
                  "", "| command | wall s | RTF | peak MB | WER % |", "|---|---:|---:|---:|---:|"]
        print("\n".join(report), flush=True)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "ASR_CACHE_DIR": str(Path(folder) / "cache")}
        timed(commands(args.threads)[0][1] + [str(REPO / "audio_samples" / "spk1_snt1.flac")], env)  # builds the graphs
        lines = []
        for name, argv in commands(args.threads):
            wall, peak, stdout = timed(argv + [str(path)], env)
            lines.append(f"| {name} | {wall:.1f} | {wall / seconds:.3f} | {peak:.0f} | "
                         f"{wer(stdout, {str(path): reference}):.1f} |")
            print(lines[-1], flush=True)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "RESULTS.md").write_text("\n".join(report + lines) + "\n")


if __name__ == "__main__":
    main()
