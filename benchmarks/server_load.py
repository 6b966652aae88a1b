"""Throughput, latency and memory of `asr serve` under concurrent clients, against decoding one at a
time, on each runtime side by side.

    python benchmarks/server_load.py                                   # the default model, 8 clients
    python benchmarks/server_load.py --model exp/run/model --clients 20 --requests 5 --workers 1 2 4

Measurements, for each of --runtimes (ONNX Runtime and PyTorch), each of clients x requests
transcriptions of the same clips (rotating):
  in-process  transcribe_long in this process, one request at a time: the decoding alone, no HTTP
  batched     with --batch-sizes: the clips' samples through transcribe (one at a time) and
              transcribe_batch (N at a time), which is what batching requests that arrive together
              would gain; a request's latency is its whole batch's
  1 client    one client over HTTP, one request at a time: decoding plus HTTP, upload and spooling
  N clients   N clients at once, each sending its requests one after another
The last two run against a fresh `asr serve --runtime R` per --workers value (on 127.0.0.1, a free
port), whose peak resident memory is read when it stops. Latency is from sending a request to reading
its whole answer. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from machine import machine

REPO = Path(__file__).resolve().parents[1]
DEFAULT_AUDIO = [REPO / "audio_samples" / name for name in ("spk1_snt1.flac", "7_jackson_0.flac", "LJ001-0002.flac")]
BOUNDARY = "asr-benchmark-boundary"
STARTUP_SECONDS = 300
REQUEST_SECONDS = 600


@dataclass(frozen=True)
class Run:
    name: str
    clients: int
    latencies: list[float]  # seconds, one per answered request
    errors: int
    wall: float  # seconds from the first request sent to the last answer read
    audio_seconds: float  # of all the requests answered
    peak_mb: str = ""  # the server's peak resident memory, for runs against a server

    def row(self, runtime: str) -> str:
        ms = sorted(1000 * t for t in self.latencies) or [float("nan")]
        p = lambda q: ms[min(len(ms) - 1, round(q * (len(ms) - 1)))]  # noqa: E731  # nearest rank
        return (f"| {runtime} | {self.name} | {self.clients} | {len(self.latencies)} | {self.errors} | "
                f"{len(self.latencies) / self.wall:.2f} | {self.audio_seconds / self.wall:.1f} | "
                f"{p(0.5):.0f} | {p(0.9):.0f} | {p(0.99):.0f} | {ms[-1]:.0f} | {self.peak_mb} |")


def multipart(data: bytes, filename: str) -> bytes:
    return (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="model"\r\n\r\nbenchmark\r\n'
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{BOUNDARY}--\r\n".encode()


def transcribe_over_http(port: int, body: bytes) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_SECONDS)
    try:
        connection.request("POST", "/v1/audio/transcriptions", body,
                           {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
        response = connection.getresponse()
        answer = response.read().decode()
        if response.status != 200:
            raise RuntimeError(f"{response.status}: {answer}")
        return json.loads(answer)["text"]
    finally:
        connection.close()


def run_clients(name: str, port: int, bodies: list[bytes], seconds: list[float], clients: int,
                requests: int, expected: list[str]) -> Run:
    def client(number: int) -> tuple[list[float], int, float]:
        latencies, errors, audio = [], 0, 0.0
        for i in range(requests):
            k = (number + i) % len(bodies)
            began = time.perf_counter()
            try:
                text = transcribe_over_http(port, bodies[k])
            except (OSError, RuntimeError) as err:
                print(f"  {name}: request failed: {err}", file=sys.stderr)
                errors += 1
                continue
            latencies.append(time.perf_counter() - began)
            audio += seconds[k]
            errors += text != expected[k]
        return latencies, errors, audio

    began = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(client, range(clients)))
    wall = time.perf_counter() - began
    return Run(name, clients, [t for r in results for t in r[0]], sum(r[1] for r in results), wall,
               sum(r[2] for r in results))


def load_recognizer(model: str, runtime: str, threads: int | None):
    """The recognizer `asr serve --runtime RUNTIME --threads THREADS --workers 1` decodes with."""
    if runtime == "onnx":
        from asr.runtime.recognizer import load_onnx

        return load_onnx(model, threads=threads or 0)
    import torch

    import asr

    if threads:
        torch.set_num_threads(threads)
    return asr.load_model(model)


def run_in_process(recognizer, audio: list[Path], seconds: list[float], count: int) -> tuple[Run, list[str]]:
    """`count` transcriptions one at a time in this process; and each clip's transcript, to check answers by."""
    import asr

    expected = [asr.transcribe_long(recognizer, path).text for path in audio]  # also the warm-up
    latencies, total = [], 0.0
    began = time.perf_counter()
    for i in range(count):
        start = time.perf_counter()
        asr.transcribe_long(recognizer, audio[i % len(audio)])
        latencies.append(time.perf_counter() - start)
        total += seconds[i % len(audio)]
    return Run("in-process, one at a time", 1, latencies, 0, time.perf_counter() - began, total), expected


def run_batched(recognizer, audio: list[Path], seconds: list[float], count: int, batch_sizes: list[int]) -> list[Run]:
    """`count` transcriptions of the clips' samples, one at a time and then `batch` at a time for each
    batch size, alternating so that other load on the machine slows each alike; errors are answers
    that differ from one-at-a-time decoding."""
    from asr.audio import load_audio

    samples = [load_audio(path, recognizer.sample_rate) for path in audio]
    expected = [recognizer.transcribe(s).text for s in samples]  # also the warm-up
    recognizer.transcribe_batch(samples * (max(batch_sizes) // len(samples) + 1), batch_size=max(batch_sizes))
    runs = {size: ([], [0], [0.0], [0.0]) for size in [1, *batch_sizes]}  # latencies, errors, wall, audio
    for start in range(0, count, max(batch_sizes)):
        for size, (latencies, errors, wall, total) in runs.items():
            for first in range(start, min(count, start + max(batch_sizes)), size):
                picks = [i % len(audio) for i in range(first, min(count, first + size))]
                began = time.perf_counter()
                results = recognizer.transcribe_batch([samples[i] for i in picks], batch_size=size)
                took = time.perf_counter() - began
                wall[0] += took
                latencies += [took] * len(picks)
                errors[0] += sum(r.text != expected[i] for r, i in zip(results, picks))
                total[0] += sum(seconds[i] for i in picks)
    name = lambda size: "in-process, one at a time (transcribe)" if size == 1 else f"in-process, batches of {size} (transcribe_batch)"  # noqa: E731
    return [Run(name(size), 1, latencies, errors[0], wall[0], total[0])
            for size, (latencies, errors, wall, total) in runs.items()]


class ServerProcess:
    def __init__(self, model: str, runtime: str, workers: int, queue_size: int, threads: int | None, log: Path):
        command = [sys.executable, "-m", "asr.cli", "serve", "--model", model, "--runtime", runtime, "--port", "0",
                   "--workers", str(workers), "--queue-size", str(queue_size),
                   *(["--threads", str(threads)] if threads else [])]
        self.log = log
        with log.open("w") as output:
            self.process = subprocess.Popen(command, cwd=REPO, stdout=output, stderr=subprocess.STDOUT)
        self.port = self._wait_for_port()

    def _wait_for_port(self) -> int:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                sys.exit(f"asr serve exited with {self.process.returncode}:\n{self.log.read_text()}")
            found = re.search(r"asr serve: .* at http://127\.0\.0\.1:(\d+)/v1", self.log.read_text())
            if found:
                return int(found.group(1))
            time.sleep(0.2)
        self.stop()
        sys.exit(f"asr serve did not start within {STARTUP_SECONDS} s")

    def peak_mb(self) -> str:
        """The server's peak resident memory so far (Linux; empty elsewhere)."""
        status = Path(f"/proc/{self.process.pid}/status")
        found = re.search(r"VmHWM:\s+(\d+) kB", status.read_text()) if status.is_file() else None
        return f"{int(found.group(1)) / 1024:.0f}" if found else ""

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="whisper-tiny-ctc", help="bundled model name or model folder")
    parser.add_argument("--audio", nargs="+", type=Path, default=DEFAULT_AUDIO, help="clips sent in turn")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--requests", type=int, default=5, help="requests per client (default 5)")
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2],
                        help="asr serve --workers values, a server each (default 1 2; none: no server)")
    parser.add_argument("--batch-sizes", type=int, nargs="*", default=[],
                        help="also decode in process N requests at a time (e.g. 2 4 8)")
    parser.add_argument("--threads", type=int, help="CPU threads (default: as asr serve chooses)")
    parser.add_argument("--runtimes", nargs="+", choices=("onnx", "torch"), default=["onnx", "torch"],
                        help="asr serve --runtime values, each measured in full (default: both)")
    parser.add_argument("--out", type=Path, help="also write the report to OUT/RESULTS.md")
    args = parser.parse_args()

    import soundfile as sf

    seconds = [sf.info(str(path)).duration for path in args.audio]
    bodies = [multipart(path.read_bytes(), path.name) for path in args.audio]
    total = args.clients * args.requests
    report = ["# asr serve under load", "", f"Command: `python {' '.join(sys.argv)}`  ", f"{machine()}  ",
              f"model {args.model}; {len(args.audio)} clips of {', '.join(f'{s:.1f}' for s in seconds)} s; "
              f"{total} requests per measurement", ""]
    print("\n".join(report), flush=True)
    rows, medians = [], []
    for runtime in args.runtimes:
        recognizer = load_recognizer(args.model, runtime, args.threads)
        baseline, expected = run_in_process(recognizer, args.audio, seconds, total)
        rows.append(baseline.row(runtime))
        medians.append(f"{runtime} {1000 * statistics.median(baseline.latencies):.0f} ms")
        if args.batch_sizes:
            rows += [run.row(runtime) for run in run_batched(recognizer, args.audio, seconds, total, args.batch_sizes)]
        del recognizer
        rows += serve_runs(args, runtime, bodies, seconds, total, expected)
    table = ["| runtime | setup | clients | answered | errors | requests/s | audio s/s | p50 ms | p90 ms | p99 ms "
             "| max ms | server peak MB |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|", *rows, "",
             "errors: failed requests, and answers whose text differs from the in-process transcript "
             "(batched rows: from the same clip decoded alone). "
             f"Median in-process latency: {', '.join(medians)}. The server's peak memory is read as it stops, "
             "after both of its measurements."]
    print("\n".join(table))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "RESULTS.md").write_text("\n".join(report + table) + "\n")


def serve_runs(args: argparse.Namespace, runtime: str, bodies: list[bytes], seconds: list[float], total: int,
               expected: list[str]) -> list[str]:
    """One client and then --clients clients against a fresh server per --workers value."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="asr-server-load-") as folder:
        for workers in args.workers:
            server = ServerProcess(args.model, runtime, workers, args.clients + workers, args.threads,
                                   Path(folder) / f"server-{workers}.log")
            try:
                for body in bodies:  # warm-up: the first decoding of each length allocates
                    transcribe_over_http(server.port, body)
                runs = [run_clients(f"asr serve --workers {workers}, {label}", server.port, bodies, seconds,
                                    clients, total // clients, expected)
                        for clients, label in ((1, "1 client"), (args.clients, f"{args.clients} clients"))]
                peak = server.peak_mb()
            finally:
                server.stop()
            rows += [dataclasses.replace(run, peak_mb=peak).row(runtime) for run in runs]
    return rows


if __name__ == "__main__":
    main()
