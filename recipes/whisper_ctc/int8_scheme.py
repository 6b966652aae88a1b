"""How the int8 graphs are quantised: each scheme against float32, on development speakers.

The default model's float32 graphs are quantised four ways, and each copy decodes dev_noise.py's
development speakers (clean and in training noise) beside float32:

- dynamic int8 everywhere: ONNX Runtime's dynamic quantisation of every matrix product and of the
  token table, weights per output channel and each product's input under one scale per call (the
  int8 graphs before graphs version 6);
- 8-bit blocks everywhere: every product's weights in blocks of 32 values with a scale each, its
  input quantised per block as it is multiplied (MatMulNBits, accuracy level 4);
- the shipped scheme (`asr.runtime.export.quantize_graph`): blocks, except the encoder's products
  after a LayerNorm, which stay dynamic int8;
- the shipped scheme with the token table in 8 bits too.

For each: WER and the paired difference to float32 with its 95 % bootstrap interval over speakers,
the transcripts that differ from float32's, the encoder's time per 30 s window, a decoder step's
time for a beam of 5, and the graphs' size, all in one run.

    python recipes/whisper_ctc/int8_scheme.py --dev exp/dev_noise --out exp/int8_scheme
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from asr.analysis.bootstrap import UtteranceErrors
from asr.audio import load_audio
from asr.data.manifest import read_manifest
from asr.evaluate import cpu_model, git_revision
from asr.model_folder import DEFAULT_MODEL, resolve_model
from asr.runtime.export import quantize_graph, save_graph
from asr.runtime.onnx_model import DECODER_FILE, ENCODER_FILE, FRONTEND_FILE, INT8_SUFFIX, OnnxModel, weights_file
from asr.runtime.recognizer import OnnxRecognizer, cached_graphs, load_onnx
from asr.scoring import score_utterance
from asr.text import normalize

SETS = ("clean", "babble_5", "noise_5", "babble_0")  # dev_noise.py's sets
THREADS = 2
WINDOW_FRAMES = 3000  # Whisper's 30 s of features


def quantized_dynamically(source: Path, target: Path, op_types: list[str]) -> None:
    """ONNX Runtime's dynamic int8 of `op_types`, saved as the graphs are (weights beside it)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(dir=target.parent) as staging:
        quantize_dynamic(source, Path(staging) / target.name, weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=op_types)
        save_graph(onnx.load(Path(staging) / target.name), target)


def dynamic_everywhere(source: Path, target: Path) -> None:
    quantized_dynamically(source, target, ["MatMul", "Gather"])


def blocks_everywhere(source: Path, target: Path) -> None:
    quantize_graph(source, dynamic_after_norm=False, target=target)


def shipped(source: Path, target: Path) -> None:
    quantize_graph(source, dynamic_after_norm=source.name == ENCODER_FILE, target=target)


def shipped_with_int8_table(source: Path, target: Path) -> None:
    shipped(source, target)
    if source.name == DECODER_FILE:  # then its token table (a Gather) too
        quantized_dynamically(target, target, ["Gather"])


SCHEMES = {"dynamic int8 everywhere": dynamic_everywhere, "8-bit blocks everywhere": blocks_everywhere,
           "shipped: blocks, dynamic int8 after a LayerNorm": shipped,
           "shipped, token table in 8 bits": shipped_with_int8_table}


def build(scheme: str, float32: Path, out: Path) -> Path:
    """A graphs folder whose int8 copies are `scheme`'s (its float32 ones linked to `float32`'s)."""
    folder = out / "graphs" / "-".join(scheme.split()).replace(":", "").replace(",", "")
    if (folder / FRONTEND_FILE).is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for name in (ENCODER_FILE, DECODER_FILE):
        for graph_file in (Path(name), weights_file(Path(name))):
            (folder / graph_file).unlink(missing_ok=True)
            (folder / graph_file).symlink_to((float32 / graph_file).resolve())
        SCHEMES[scheme](float32 / name, folder / Path(name).with_suffix(INT8_SUFFIX).name)
    shutil.copy(float32 / FRONTEND_FILE, folder / FRONTEND_FILE)  # last: the folder is complete
    return folder


def speed(folder: Path, precision: str) -> tuple[float, float]:
    """Median ms of the encoder over one window and of a decoder step for 5 rows after 10 tokens."""
    model = OnnxModel(folder, precision, THREADS)
    features = np.random.default_rng(0).standard_normal((1, WINDOW_FRAMES, 80)).astype(np.float32) * 0.3
    encoded = model.encode(features)

    def timed(run, repeats: int) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        return 1000 * float(np.median(times))

    encoder_ms = timed(lambda: model.encode(features), 5)
    cross = model.bind_cross(encoded.cross_kv)
    _, cache = model.step(np.full((5, 10), 262), model.empty_cache(5, encoded.cross_kv), cross)
    step_ms = timed(lambda: model.step(np.full((5, 1), 262), cache, cross), 30)
    return encoder_ms, step_ms


def decode(recognizer, manifests: dict) -> dict:
    """Per set: each utterance's normalised transcript, errors and reference words."""
    out = {}
    for name, utterances in manifests.items():
        rows = []
        for u in utterances:
            text = normalize(recognizer.transcribe(load_audio(u.audio)).text)
            words = score_utterance(u.id, normalize(u.text), text).words
            rows.append((u.id, u.speaker, text, words.errors, words.reference_length))
        out[name] = rows
    return out


def errors_of(rows) -> UtteranceErrors:
    return UtteranceErrors.of([r[0] for r in rows], [r[3] for r in rows], [r[4] for r in rows], [r[1] for r in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dev", type=Path, default=Path("exp/dev_noise"), help="dev_noise.py's output")
    parser.add_argument("--out", type=Path, default=Path("exp/int8_scheme"))
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the quantisers log each tensor they leave alone
    folder = resolve_model(DEFAULT_MODEL)
    load_onnx(DEFAULT_MODEL)  # builds the shipped graphs if they are not yet in the cache
    float32 = cached_graphs(folder)
    manifests = {name: read_manifest(args.dev / f"{name}.jsonl") for name in SETS}
    systems = {"float32": (float32, "fp32")}
    systems.update({scheme: (build(scheme, float32, args.out), "int8") for scheme in SCHEMES})
    results = {}
    for system, (graphs, precision) in systems.items():
        encoder_ms, step_ms = speed(graphs, precision)
        suffix = INT8_SUFFIX if precision == "int8" else ".onnx"
        graph_files = [graphs / Path(n).with_suffix(suffix).name for n in (ENCODER_FILE, DECODER_FILE)]
        size = sum(f.stat().st_size for graph in graph_files for f in (graph, weights_file(graph)))
        results[system] = {"encoder_ms": encoder_ms, "step_ms": step_ms, "megabytes": size / 1e6,
                           "sets": decode(OnnxRecognizer(folder, precision, THREADS, graphs), manifests)}
        print(f"{system}: done", file=sys.stderr, flush=True)
    reference = results["float32"]["sets"]
    lines = ["# int8 schemes against float32 on development speakers", "",
             f"Command: `python {' '.join(sys.argv)}`, git {git_revision() or 'unknown'}, CPU: {cpu_model()}, "
             f"{THREADS} threads.", "",
             "Development speakers (speechocean762 train-split speakers no training used; dev_noise.py), "
             f"{', '.join(f'{n}: {len(manifests[n])} utterances' for n in SETS)}. Per set: WER %, the difference to "
             "float32 in points with its 95 % paired bootstrap interval over speakers (bold where it leaves out "
             "0), and how many transcripts differ from float32's. Encoder: ms per 30 s window; step: ms per decoder step for a beam of 5; "
             "size: both graphs on disk.", "",
             "| scheme | encoder ms | step ms | MB | " + " | ".join(SETS) + " |", "|---" * (4 + len(SETS)) + "|"]
    for system, r in results.items():
        cells = []
        for name in SETS:
            mine, theirs = errors_of(r["sets"][name]), errors_of(reference[name])
            changed = sum(a[2] != b[2] for a, b in zip(r["sets"][name], reference[name]))
            if system == "float32":
                cells.append(f"{100 * mine.wer:.1f}")
                continue
            d = mine.difference(theirs)
            difference = f"{100 * d.estimate:+.1f} [{100 * d.lo:+.1f}, {100 * d.hi:+.1f}]"
            cells.append(f"{100 * mine.wer:.1f}, {f'**{difference}**' if d.excludes_zero else difference}, "
                         f"{changed} differ")
        lines.append(f"| {system} | {r['encoder_ms']:.0f} | {r['step_ms']:.2f} | {r['megabytes']:.0f} | "
                     + " | ".join(cells) + " |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "RESULTS.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
