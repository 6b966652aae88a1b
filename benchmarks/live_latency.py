"""Live transcription: how soon words appear, and what streaming costs in accuracy.

    python benchmarks/live_latency.py                       # both parts, the default model, 2 threads
    python benchmarks/live_latency.py --latency-clips 20 --accuracy exp/unseen_voices/*/noisy/clean.jsonl

Latency: real clips of speakers never used in training (recipes/unseen_voices/data) are played in
real time, 0.5 s of silence before and 2 s after each, in 100 ms chunks as a microphone delivers
them, into a fresh LiveRecognizer per clip; the recognizer runs in the same thread, so when it
falls behind, the audio waits for it, as it would live. For each word of a final, its end in the
audio comes from the final's own word times (CTC alignment); it "appears" with the first partial
(or the final) in which it stands where the final has it (matched by difflib's alignment of the
two word lists, case and punctuation ignored); it is in its final form once a partial shows it as
stable in the form the final gives it, every stable word before it too (later partials keep stable
words: asr.live), or else when its utterance's final is out. Latency is the wall-clock time of that
event, less the time at which the word's end had been played. How many partials had stable words
that the final then revised is counted too.

Accuracy: every clip of each manifest is decoded offline (Recognizer.transcribe, as `asr eval`
does) and streamed (LiveRecognizer fed 0.5 s chunks as fast as it takes them; its finals, joined).
Partials are decoded at fixed points of the stream and the detector's cuts do not depend on chunks,
so neither partials nor finals depend on chunking or pacing: this is what a live run gives. WER after
the one normaliser, 95 % intervals over speakers, and the paired difference of streaming less
offline. The same clips are decoded offline by peers too (--peers, from benchmarks/peers.py: by
default Whisper tiny.en unchanged in our architecture and faster-whisper), with the paired
difference of streaming less each: where streaming stands against the models ours grew from.

Writes results.json and RESULTS.md to --out (default benchmarks/runs/live). Not part of the tests.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from machine import REPO, machine
from peers import SYSTEMS, build

import asr
from asr.analysis.bootstrap import Interval, speaker_clusters, wer_difference_interval, wer_interval
from asr.audio import load_audio
from asr.cli import apply_overrides
from asr.config import from_dict, to_dict
from asr.data.manifest import read_manifest
from asr.live import Final, LiveConfig, LiveRecognizer, Partial
from asr.runtime.recognizer import load_onnx
from asr.scoring import score_utterance
from asr.text import normalize

RATE = 16000
RUNTIMES = {"onnx": "ONNX Runtime", "torch": "PyTorch"}
CHUNK_SECONDS = 0.1
LEAD_SECONDS, TAIL_SECONDS = 0.5, 2.0
UNSEEN = REPO / "recipes" / "unseen_voices" / "data"


def bare_words(text: str) -> list[str]:
    return [w for w in (re.sub(r"[^\w']", "", w.lower()) for w in text.split()) if w]


def play_in_real_time(recognizer, samples: np.ndarray, config: LiveConfig) -> tuple[list[tuple[float, object]], float]:
    """Events with the stream time (seconds since playing began) at which each was out; CPU seconds."""
    live = LiveRecognizer(recognizer, config)
    chunk = round(CHUNK_SECONDS * RATE)
    events: list[tuple[float, object]] = []
    began, cpu = time.perf_counter(), time.process_time()
    fed = 0
    while fed < len(samples):
        due = began + min(fed + chunk, len(samples)) / RATE  # when the next chunk has been recorded
        time.sleep(max(0.0, due - time.perf_counter()))
        arrived = min(len(samples), max(fed + chunk, int((time.perf_counter() - began) * RATE)))
        out = live.feed(samples[fed:arrived])
        fed = arrived
        now = time.perf_counter() - began
        events += [(now, event) for event in out]
    events += [(time.perf_counter() - began, event) for event in live.finish()]
    return events, time.process_time() - cpu


def word_latencies(events: list[tuple[float, object]]) -> dict[str, list[float]]:
    """Per word of every final, seconds from its end in the audio to: its first appearance, the
    moment it reached the form it kept (shown as stable as the final has it, or the final out), and
    its utterance's final."""
    out: dict[str, list[float]] = {"first_appearance": [], "fixed": [], "final": []}
    for out_at, event in events:
        if not isinstance(event, Final) or not event.words:
            continue
        timed = [w for w in event.words if bare_words(w.word)]  # not a lone dash: it has no word to find
        words = [bare_words(w.word)[0] for w in timed]
        partials = [(t, e) for t, e in events if isinstance(e, Partial) and e.start == event.start and t <= out_at]
        appeared, fixed = [out_at] * len(words), [out_at] * len(words)
        for t, partial in reversed(partials):  # latest first, so that the earliest match stays
            matcher = difflib.SequenceMatcher(a=words, b=bare_words(partial.text), autojunk=False)
            for block in matcher.get_matching_blocks():
                for i in range(block.a, block.a + block.size):
                    appeared[i] = min(appeared[i], t)
            for i, stable in enumerate(bare_words(partial.stable)[: len(words)]):
                if stable != words[i]:  # the final revised it, and so every word after it
                    break
                fixed[i] = min(fixed[i], t)
        for word, first, still in zip(timed, appeared, fixed):
            out["first_appearance"].append(first - word.end)
            out["fixed"].append(still - word.end)
            out["final"].append(out_at - word.end)
    return out


def stable_words_kept(events: list[tuple[float, object]]) -> tuple[int, int]:
    """Of the partials with stable words: how many, and in how many the final changed one."""
    kept = changed = 0
    for _, event in events:
        if isinstance(event, Final):
            final = bare_words(event.text)
            for _, partial in events:
                if isinstance(partial, Partial) and partial.start == event.start and partial.stable:
                    stable = bare_words(partial.stable)
                    kept += 1
                    changed += final[: len(stable)] != stable
    return kept, changed


def percentiles(values: list[float]) -> dict:
    if not values:
        return {}
    ordered = sorted(values)
    at = lambda q: ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]  # noqa: E731  # nearest rank
    return {"median": statistics.median(values), "p90": at(0.9), "max": ordered[-1], "words": len(values)}


def latency_part(recognizer, manifests: list[Path], clips: int, config: LiveConfig) -> dict:
    rows = [row for path in manifests for row in read_manifest(path)][:clips]
    latencies: dict[str, list[float]] = {"first_appearance": [], "fixed": [], "final": []}
    cpu, audio, revised, with_stable = 0.0, 0.0, 0, 0
    for number, row in enumerate(rows, 1):
        clip = load_audio(row.audio, RATE)
        samples = np.concatenate([np.zeros(round(LEAD_SECONDS * RATE), np.float32), clip,
                                  np.zeros(round(TAIL_SECONDS * RATE), np.float32)])
        events, seconds = play_in_real_time(recognizer, samples, config)
        found = word_latencies(events)
        for key, values in found.items():
            latencies[key] += values
        kept, changed = stable_words_kept(events)
        with_stable += kept
        revised += changed
        cpu += seconds
        audio += len(samples) / RATE
        medians = {key: round(statistics.median(v), 2) for key, v in found.items() if v}
        print(f"latency {number}/{len(rows)}: {row.id}: {medians}", file=sys.stderr, flush=True)
    return {"clips": len(rows), "manifests": [str(p) for p in manifests],
            **{key: percentiles(values) for key, values in latencies.items()},
            "cpu_per_audio_second": cpu / audio if audio else None,
            "partials_with_stable_words": with_stable, "of_them_revised_by_the_final": revised}


def stream_finals(recognizer, clip: np.ndarray, config: LiveConfig) -> str:
    live = LiveRecognizer(recognizer, config)
    chunk = RATE // 2
    events = [e for start in range(0, len(clip), chunk) for e in live.feed(clip[start : start + chunk])]
    events += live.finish()
    return " ".join(e.text for e in events if isinstance(e, Final) and e.text)


def accuracy_part(recognizer, manifest: Path, config: LiveConfig, peers: dict[str, Callable[[np.ndarray], str]]) -> dict:
    rows = read_manifest(manifest)
    offline, streamed = [], []
    by_peer: dict[str, list] = {name: [] for name in peers}
    for number, row in enumerate(rows, 1):
        clip = load_audio(row.audio, RATE)
        ref = normalize(row.text)
        score = lambda text: score_utterance(row.id, ref, normalize(text), row.speaker)  # noqa: E731
        offline.append(score(recognizer.transcribe(clip).text))
        streamed.append(score(stream_finals(recognizer, clip, config)))
        for name, transcribe in peers.items():
            by_peer[name].append(score(transcribe(clip)))
        if number % 25 == 0:
            print(f"accuracy {manifest}: {number}/{len(rows)}", file=sys.stderr, flush=True)
    clusters = speaker_clusters([r.id for r in rows], [r.speaker for r in rows])
    words = [u.words.reference_length for u in offline]
    errors = lambda scored: [u.words.errors for u in scored]  # noqa: E731
    result = {"manifest": str(manifest), "utterances": len(rows), "words": sum(words),
              "offline": wer_interval(errors(offline), words, clusters),
              "streaming": wer_interval(errors(streamed), words, clusters),
              "difference": wer_difference_interval(errors(streamed), errors(offline), words, clusters=clusters),
              "texts_differ": sum(a.hyp != b.hyp for a, b in zip(offline, streamed))}
    as_data = dataclasses.asdict
    peer_results = {name: {"wer": as_data(wer_interval(errors(scored), words, clusters)),
                           "streaming_minus_peer": as_data(wer_difference_interval(errors(streamed), errors(scored), words,
                                                                                  clusters=clusters))}
                    for name, scored in by_peer.items()}
    return {**{k: (as_data(v) if isinstance(v, Interval) else v) for k, v in result.items()}, "peers": peer_results}


def markdown(results: dict) -> str:
    fmt = lambda data: Interval(**data).format()  # noqa: E731
    lines = ["# Live transcription: latency and accuracy", "",
             f"Command: `{results['command']}`  ", f"{results['machine']}  ",
             f"Model: {results['model']} on {RUNTIMES[results.get('runtime', 'torch')]}; threads: {results['threads']}; "
             f"{results['config']}", ""]
    if "latency" in results:
        lat = results["latency"]
        lines += ["## Latency (real-time playback, 100 ms chunks)", "",
                  f"{lat['clips']} clips from {', '.join(Path(p).name for p in lat['manifests'])}; "
                  f"{lat['first_appearance'].get('words', 0)} words; CPU seconds per audio second "
                  f"{lat['cpu_per_audio_second']:.2f}.", "",
                  "| from the end of a word to | median | 90th percentile | max | target (median) |", "|---|---|---|---|---|"]
        for key, label, target in (("first_appearance", "its first appearance in a partial", "1.0 s"),
                                   ("fixed", "its final form (stable in a partial as the final has it, or the final)", "1.5 s"),
                                   ("final", "its utterance's final, at the pause", "")):
            p = lat[key]
            if p:
                lines.append(f"| {label} | {p['median']:.2f} s | {p['p90']:.2f} s | {p['max']:.2f} s | {target} |")
        lines += ["", f"Partials with stable words: {lat['partials_with_stable_words']}; of them, the final changed "
                      f"a stable word in {lat['of_them_revised_by_the_final']}.", ""]
    if results.get("accuracy"):
        lines += ["## Accuracy: streaming finals against offline decoding", "",
                  "WER % with 95 % interval over speakers; difference = streaming - offline, paired.", "",
                  "| set | utterances | words | offline | streaming | difference | relative | texts that differ |",
                  "|---|---|---|---|---|---|---|---|"]
        for acc in results["accuracy"]:
            relative = (acc["difference"]["estimate"] / acc["offline"]["estimate"]) if acc["offline"]["estimate"] else 0.0
            name = "/".join(Path(acc["manifest"]).parts[-3:])
            lines.append(f"| {name} | {acc['utterances']} | {acc['words']} | {fmt(acc['offline'])} | "
                         f"{fmt(acc['streaming'])} | {fmt(acc['difference'])} | {100 * relative:+.1f} % | "
                         f"{acc['texts_differ']} |")
    if any(acc.get("peers") for acc in results.get("accuracy", [])):
        lines += ["", "## The same clips decoded offline by peers", "",
                  "WER % with 95 % interval over speakers; streaming - peer, paired: below zero, streaming made fewer errors.",
                  "", "| set | peer | WER | streaming - peer |", "|---|---|---|---|"]
        for acc in results["accuracy"]:
            name = "/".join(Path(acc["manifest"]).parts[-3:])
            for peer, found in acc.get("peers", {}).items():
                lines.append(f"| {name} | {peer} | {fmt(found['wer'])} | {fmt(found['streaming_minus_peer'])} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="whisper-tiny-ctc")
    parser.add_argument("--latency-manifest", nargs="*", type=Path, default=[UNSEEN / "commonvoice.jsonl"])
    parser.add_argument("--latency-clips", type=int, default=20, help="clips played in real time (0: no latency part)")
    parser.add_argument("--accuracy", nargs="*", type=Path,
                        default=[UNSEEN / "speechocean762_test.jsonl", UNSEEN / "commonvoice.jsonl"],
                        help="manifests for the accuracy part (none: no accuracy part)")
    parser.add_argument("--live", action="append", default=[], metavar="KEY=VALUE",
                        help="a LiveConfig field other than its default, e.g. --live commit_after=2 or "
                             "--live vad.min_silence_seconds=0.3 (repeatable; choose them on development speakers)")
    parser.add_argument("--runtime", choices=("onnx", "torch"), default="onnx",
                        help="onnx: ONNX Runtime, as `asr transcribe --stream` runs by default; torch: PyTorch, as "
                             "the demo runs (it shows attention weights)")
    parser.add_argument("--peers", default="tiny.en-unchanged,faster-whisper-int8",
                        help=f"systems of benchmarks/peers.py that decode the accuracy part's clips offline too, "
                             f"comma-separated (empty: none); from {', '.join(SYSTEMS)}")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "runs" / "live")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    recognizer = load_onnx(args.model, "fp32", args.threads) if args.runtime == "onnx" else asr.load_model(args.model)
    config = from_dict(LiveConfig, apply_overrides(to_dict(LiveConfig()), args.live))
    results = {"command": "python " + " ".join(sys.argv), "machine": machine(), "model": args.model,
               "runtime": args.runtime, "threads": args.threads, "config": repr(config)}
    for warm_up in {recognizer, recognizer.quantized(config.partial_quantize) if config.partial_quantize else recognizer}:
        warm_up.transcribe(np.zeros(RATE, np.float32))
    if args.latency_clips:
        results["latency"] = latency_part(recognizer, args.latency_manifest, args.latency_clips, config)
    peers = {name: build(name, args.threads) for name in args.peers.split(",") if name} if args.accuracy else {}
    results["accuracy"] = [accuracy_part(recognizer, manifest, config, peers) for manifest in args.accuracy]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / "RESULTS.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
