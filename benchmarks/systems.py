"""The systems under test behind one interface, and the worker that measures one of them.

    python benchmarks/systems.py SYSTEM --audio DIR --threads N --out RESULT.json --spawned-at T

benchmarks/run.py starts this once per system and repetition, so that each system's start-up
time and peak memory are its own: start-up is counted from the moment the parent spawned the
process (`--spawned-at`, wall clock) to the model being ready, so it holds the interpreter, the
imports and the model load. Peak memory is the process's VmHWM (the resident-set high-water mark
of /proc/self/status); getrusage's ru_maxrss would not do, since Linux carries the parent's peak
over into a child across exec.

Systems (`system_names`): ours-MODE for each decoding mode of the default model, ours-MODE-int8 for
its int8-quantised Linear layers, tiny.en-unchanged (Whisper tiny.en in our code before fine-tuning,
decoded as Whisper decodes), faster-whisper-int8 and -fp32 (Whisper tiny.en, beam 5) and
pocketsphinx. The worker times, after one warm-up clip: the short clips one at a time, the short
clips batched (where the system can batch), and the long recording one segment at a time and
batched. The audio was prepared by audio_sets.prepare; short clips are handed over as samples
(their decoding from FLAC is not timed, but feature extraction is), the long recording as a
file, which every system reads itself.
"""

from __future__ import annotations

import time

SPAWNED = time.time()  # before any heavy import; run.py also passes the parent's spawn time

import argparse  # noqa: E402  (the clock above must start before the imports)
import io  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Optional  # noqa: E402

import numpy as np  # noqa: E402

from audio_sets import read_short  # noqa: E402

OUR_MODES = ("ctc_greedy", "ctc_beam", "attention", "joint", "rescore")  # asr.decoding.options.MODES
UNCHANGED_TINY = "tiny.en-unchanged"  # Whisper tiny.en in our code before fine-tuning
PEERS = ("faster-whisper-int8", "faster-whisper-fp32", "pocketsphinx")


def system_names(modes: tuple[str, ...] = OUR_MODES, quantized_modes: tuple[str, ...] = ("rescore",)) -> list[str]:
    return [f"ours-{m}" for m in modes] + [f"ours-{m}-int8" for m in quantized_modes] + [UNCHANGED_TINY, *PEERS]


class System:
    """One recognizer. Methods a system lacks return None (shown as n/a)."""

    def transcribe(self, audio: np.ndarray) -> str:
        raise NotImplementedError

    def transcribe_batch(self, audios: list[np.ndarray], batch_size: int) -> Optional[list[str]]:
        return None

    def transcribe_long(self, path: str, batch_size: int) -> Optional[str]:
        return None


class Ours(System):
    """One of our Recognizers, decoded with `options`."""

    def __init__(self, recognizer, options):
        self.recognizer = recognizer
        self.options = options

    @classmethod
    def default_model(cls, mode: str, quantize: Optional[str], threads: int) -> "Ours":
        """The default model, asr.load_model(), in one decoding mode (its other settings the model's own)."""
        import dataclasses

        import torch

        import asr

        torch.set_num_threads(threads)
        recognizer = asr.load_model(quantize=quantize)
        return cls(recognizer, dataclasses.replace(recognizer.default_options, mode=mode))

    @classmethod
    def unchanged_tiny(cls, threads: int) -> "Ours":
        """Whisper tiny.en imported into our architecture and left as it is, decoded as Whisper
        decodes (attention beam 5 over 30 s of padded input). Its start-up includes the import."""
        from peers import unchanged_tiny_recognizer

        recognizer = unchanged_tiny_recognizer(threads)
        return cls(recognizer, recognizer.default_options)

    def transcribe(self, audio):
        return self.recognizer.transcribe(audio, self.options).text

    def transcribe_batch(self, audios, batch_size):
        return [r.text for r in self.recognizer.transcribe_batch(audios, self.options, batch_size)]

    def transcribe_long(self, path, batch_size):
        import asr

        # Cut at pauses by asr's voice activity detector, segments decoded batch_size at a time.
        config = asr.LongformConfig(batch_size=batch_size)
        return asr.transcribe_long(self.recognizer, path, self.options, config).text


class FasterWhisper(System):
    """faster-whisper (CTranslate2) on Whisper tiny.en, with the settings of benchmarks/peers.py."""

    def __init__(self, compute_type: str, threads: int):
        from peers import FASTER_WHISPER_OPTIONS, load_faster_whisper

        self.model = load_faster_whisper(compute_type, threads)
        self.options = FASTER_WHISPER_OPTIONS

    def transcribe(self, audio):
        segments, _ = self.model.transcribe(audio, **self.options)
        return " ".join(s.text.strip() for s in segments).strip()

    def transcribe_long(self, path, batch_size):
        if batch_size == 1:
            # Its own long-form transcription: 30 s windows, each decoded after the previous one
            # (with its defaults, which condition each window on the text before it).
            segments, _ = self.model.transcribe(path, beam_size=5, language="en")
        else:
            # Its own batched long-form pipeline: Silero VAD cuts the recording, chunks decoded
            # batch_size at a time (the VAD model ships inside the faster-whisper package).
            from faster_whisper import BatchedInferencePipeline

            pipeline = BatchedInferencePipeline(self.model)
            segments, _ = pipeline.transcribe(path, beam_size=5, language="en", batch_size=batch_size)
        return " ".join(s.text.strip() for s in segments).strip()


class Pocketsphinx(System):
    """pocketsphinx 5.1.1 with its bundled en-us model; single-threaded, no batching."""

    def __init__(self):
        from pocketsphinx import Decoder

        self.decoder = Decoder(samprate=16000, loglevel="FATAL")

    def transcribe(self, audio):
        from peers import pocketsphinx_decode

        return pocketsphinx_decode(self.decoder, audio)

    def transcribe_long(self, path, batch_size):
        if batch_size != 1:
            return None
        import soundfile as sf
        from pocketsphinx import Segmenter

        # Its own way with long audio: the Segmenter's voice activity detection, each segment decoded.
        pcm = sf.read(path, dtype="int16")[0].tobytes()
        texts = []
        for segment in Segmenter(sample_rate=16000).segment(io.BytesIO(pcm)):
            self.decoder.start_utt()
            self.decoder.process_raw(segment.pcm, full_utt=True)
            self.decoder.end_utt()
            if self.decoder.hyp() is not None:
                texts.append(self.decoder.hyp().hypstr)
        return " ".join(t for t in texts if t)


def build(name: str, threads: int) -> System:
    if name.startswith("ours-"):
        mode, _, quantize = name[len("ours-"):].partition("-")
        if mode not in OUR_MODES or quantize not in ("", "int8"):
            raise ValueError(f"unknown system {name!r}")
        return Ours.default_model(mode, quantize or None, threads)
    if name == UNCHANGED_TINY:
        return Ours.unchanged_tiny(threads)
    if name in ("faster-whisper-int8", "faster-whisper-fp32"):
        return FasterWhisper({"int8": "int8", "fp32": "float32"}[name.rsplit("-", 1)[1]], threads)
    if name == "pocketsphinx":
        return Pocketsphinx()
    raise ValueError(f"unknown system {name!r}; known: {', '.join(system_names())}")


def peak_rss_mb() -> float:
    """The process's resident-set high-water mark so far (VmHWM), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (not Linux?)")


def timed(function, *args):
    start = time.perf_counter()
    value = function(*args)
    return value, time.perf_counter() - start


def measure(system: System, audio_dir: Path, batch_size: int, long: bool) -> dict:
    short = read_short(audio_dir)
    result: dict = {}
    _, result["first_call_s"] = timed(system.transcribe, short[0])  # warm-up, not counted below
    result["rss_ready_mb"] = peak_rss_mb()

    texts, seconds = timed(lambda: [system.transcribe(a) for a in short])
    result["short_b1"] = {"seconds": seconds, "texts": texts}
    texts, seconds = timed(system.transcribe_batch, short, batch_size)
    result["short_batched"] = None if texts is None else {"seconds": seconds, "texts": texts}
    result["rss_short_mb"] = peak_rss_mb()
    if long:
        path = str(audio_dir / "long.wav")
        for key, size in (("long_b1", 1), ("long_batched", batch_size)):
            text, seconds = timed(system.transcribe_long, path, size)
            result[key] = None if text is None else {"seconds": seconds, "text": text}
        result["rss_long_mb"] = peak_rss_mb()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("system")
    parser.add_argument("--audio", type=Path, required=True, help="folder written by audio_sets.prepare")
    parser.add_argument("--out", type=Path, required=True, help="JSON result")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--spawned-at", type=float, default=SPAWNED, help="parent's time.time() at spawn")
    parser.add_argument("--no-long", action="store_true", help="skip the long recording")
    args = parser.parse_args()

    imported = time.time()
    system = build(args.system, args.threads)
    ready = time.time()
    result = {
        "system": args.system,
        "threads": args.threads,
        "startup_s": ready - args.spawned_at,  # interpreter + imports + model load
        "load_s": ready - imported,  # the model load alone (with the system's own imports)
    }
    result.update(measure(system, args.audio, args.batch_size, not args.no_long))
    args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
