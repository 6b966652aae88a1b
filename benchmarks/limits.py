"""The physical limit: how much of the machine the default model's inference uses.

    python benchmarks/limits.py --audio DIR --threads N --out RESULT.json [--quick]

Measures the machine's sustained throughput (float32, bfloat16 and int8 matrix products, and
memory read bandwidth), counts the model's FLOPs per second of audio (torch's FlopCounterMode,
checked against an analytical count from the config), and reports what fraction of the peak the
encoder forward (at batch 1, as `transcribe` runs it, and 8, as `asr eval` and `transcribe_long`
do) and the decoding searches achieve. Decoding one utterance at a time reads every decoder
weight once per step for a handful of rows, so its yardstick is memory bandwidth as much as
FLOPs: both are reported. Run by benchmarks/run.py in a process of its own.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

import asr
from audio_sets import read_short

SAMPLE_RATE = 16000
DECODE_MODES = ("ctc_greedy", "ctc_beam", "attention", "rescore")


def sustained(function: Callable[[], object], seconds: float) -> list[float]:
    """Seconds per call of `function`, called repeatedly for about `seconds` after one warm-up call."""
    function()
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < 3:
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


def rate(work: float, times: list[float]) -> dict:
    """Work per second: the median call and the best one (the sustained and the peak rate)."""
    return {"median": work / statistics.median(times), "best": work / min(times), "calls": len(times)}


def machine_peaks(size: int, seconds: float) -> dict:
    """Matrix-product throughput (FLOP/s; int8 in OP/s) and memory read bandwidth (bytes/s)."""
    flops = 2 * size**3
    a, b = torch.randn(size, size), torch.randn(size, size)
    peaks = {"matmul_size": size, "fp32": rate(flops, sustained(lambda: torch.mm(a, b), seconds))}
    a16, b16 = a.bfloat16(), b.bfloat16()
    peaks["bf16"] = rate(flops, sustained(lambda: torch.mm(a16, b16), seconds))
    i8a = torch.randint(-128, 128, (size, size), dtype=torch.int8)
    i8b = torch.randint(-128, 128, (size, size), dtype=torch.int8)
    try:
        peaks["int8_int_mm"] = rate(flops, sustained(lambda: torch._int_mm(i8a, i8b), seconds))
    except RuntimeError as err:  # not every build has a CPU kernel for it
        peaks["int8_int_mm"] = {"error": str(err).splitlines()[0]}
    # The kernel the int8 model runs: a dynamically quantised Linear (activations quantised per call).
    linear = torch.nn.Sequential(torch.nn.Linear(size, size, bias=False))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        quantized = torch.ao.quantization.quantize_dynamic(linear, {torch.nn.Linear}, dtype=torch.qint8)
    peaks["int8_dynamic_linear"] = rate(flops, sustained(lambda: quantized(a), seconds))
    big = torch.ones(64 * 1024 * 1024)  # 256 MiB, far beyond the caches of the machines we run on
    peaks["memory_read"] = rate(big.numel() * 4, sustained(lambda: big.sum(), seconds))
    return peaks


def flop_counter() -> FlopCounterMode:
    """FlopCounterMode that also counts the CPU's fused attention: torch's table knows the CUDA
    kernels of scaled_dot_product_attention but not `_scaled_dot_product_flash_attention_for_cpu`,
    which it would count as zero (about 8 % of the encoder's FLOPs for a 4 s clip)."""
    def cpu_sdpa(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(query_shape, key_shape, value_shape)

    op = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    return FlopCounterMode(display=False, custom_mapping={op: cpu_sdpa})


def counted(function: Callable[[], object]) -> tuple[int, dict]:
    """FLOPs of what `function` runs, in all and per module (FlopCounterMode's module names)."""
    with flop_counter() as counter:
        function()
    by_module = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}
    return counter.get_total_flops(), by_module


def analytic_layer_flops(config, frames: int) -> int:
    """FLOPs of the encoder's Transformer layers over `frames` frames (after subsampling), from the
    config: Linear layers 2 * frames * (4 d^2 + 2 d ffn) and attention 2 * 2 * frames^2 * d
    (scores and weighted sum) per layer."""
    enc = config.encoder
    d = enc.d_model
    return enc.num_layers * (2 * frames * (4 * d * d + 2 * d * enc.ffn_dim) + 4 * frames * frames * d)


def batches(audio: list[np.ndarray], size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Padded batches of `size`, longest first, as Recognizer.transcribe_batch makes them."""
    order = sorted(range(len(audio)), key=lambda i: len(audio[i]), reverse=True)
    out = []
    for start in range(0, len(order), size):
        chunk = [audio[i] for i in order[start : start + size]]
        lengths = torch.tensor([len(a) for a in chunk])
        batch = torch.zeros(len(chunk), int(lengths.max()))
        for row, a in enumerate(chunk):
            batch[row, : len(a)] = torch.from_numpy(a)
        out.append((batch, lengths))
    return out


def encoder_section(recognizer, quantized, audio: list[np.ndarray], peaks: dict, seconds: float) -> dict:
    """FLOPs (counted and analytic) and achieved throughput of features + encoder + CTC posteriors,
    over all clips in padded batches of 1 and of 8, for the float32 model and the int8 one (whose
    FLOPs are the float32 model's: the same arithmetic, which FlopCounterMode cannot see in int8)."""
    model = recognizer.model
    audio_seconds = sum(len(a) for a in audio) / SAMPLE_RATE
    out = {}
    for size in (1, 8):
        work = batches(audio, size)

        def encode_all(model=model) -> None:
            with torch.no_grad():
                for batch, lengths in work:
                    model.ctc.log_probs(model.encode(batch, lengths).hidden)

        flops, by_module = counted(encode_all)
        layers = sum(n for name, n in by_module.items() if re.fullmatch(r"TransformerEncoder\.layers\.\d+", name))
        # Every utterance of a batch runs over the padded width of the encoder's output.
        with torch.no_grad():
            widths = [model.encode(batch, lengths).hidden.shape[1] for batch, lengths in work]
        analytic = sum(len(lengths) * analytic_layer_flops(model.config, width)
                       for (_, lengths), width in zip(work, widths))
        elapsed = statistics.median(sustained(encode_all, seconds))
        out[f"batch_{size}"] = {
            "flops": flops,
            "flops_frontend": by_module.get(type(model.frontend).__name__, 0),
            "flops_subsampling": by_module.get("TransformerEncoder.subsampling", 0),
            "flops_layers": layers,
            "analytic_layer_flops": analytic,
            "flops_per_audio_second": flops / audio_seconds, "seconds": elapsed,
            "achieved_flops": flops / elapsed, "fraction_of_fp32_peak": flops / elapsed / peaks["fp32"]["median"],
        }
        elapsed = statistics.median(sustained(lambda: encode_all(quantized.model), seconds))
        out[f"batch_{size}"]["int8"] = {
            "seconds": elapsed, "achieved_flops": flops / elapsed,
            "fraction_of_int8_peak": flops / elapsed / peaks["int8_dynamic_linear"]["median"],
        }
    return out


def decoding_section(recognizer, audio: list[np.ndarray], peaks: dict, quantized) -> dict:
    """Per decoding mode, at batch 1: the search's FLOPs (all FLOPs of `transcribe` less those of
    the encoder), its time (Result.timings: search + alignment) and the decoder weight bytes it
    streams (one full read of the decoder, output projection included, per step or pass)."""
    model = recognizer.model
    audio_seconds = sum(len(a) for a in audio) / SAMPLE_RATE
    decoder_bytes = sum(p.numel() * p.element_size() for p in model.decoder.parameters())
    # ctc_greedy's search is an argmax: its FLOPs are those of features, encoder and CTC posteriors.
    encode_flops, _ = counted(lambda: [recognizer.transcribe(a, mode="ctc_greedy") for a in audio])
    out = {"decoder_weight_bytes": decoder_bytes}
    for mode in DECODE_MODES:
        options = dataclasses.replace(recognizer.default_options, mode=mode)
        passes, (total, _) = count_decoder_passes(
            model, lambda: counted(lambda: [recognizer.transcribe(a, options) for a in audio]))
        row = {"flops": total - encode_flops, "flops_per_audio_second": (total - encode_flops) / audio_seconds,
               "decoder_passes": passes}
        for name, system in (("fp32", recognizer), ("int8", quantized)):
            recognizer_options = dataclasses.replace(system.default_options, mode=mode)
            system.transcribe(audio[0], recognizer_options)  # warm-up
            results = [system.transcribe(a, recognizer_options) for a in audio]
            search = sum(r.timings.search + r.timings.align for r in results)
            weights = decoder_bytes if name == "fp32" else decoder_bytes / 4  # about a byte per int8 weight
            row[name] = {
                "seconds": search, "rtf": search / audio_seconds,
                "achieved_flops": row["flops"] / search,
                "fraction_of_peak": row["flops"] / search / peaks["fp32" if name == "fp32" else "int8_dynamic_linear"]["median"],
                "weight_bytes_per_second": passes * weights / search,
                "fraction_of_memory_bandwidth": passes * weights / search / peaks["memory_read"]["median"],
            }
        out[mode] = row
    return out


def count_decoder_passes(model, function: Callable[[], object]) -> tuple[int, object]:
    """Decoder passes (kv-cache steps and teacher-forced passes) made while `function` runs, and
    what it returns."""
    calls = {"n": 0}
    original_step, original_states = model.decoder.step, model.decoder.states

    def step(*args, **kwargs):
        calls["n"] += 1
        return original_step(*args, **kwargs)

    def states(*args, **kwargs):
        calls["n"] += 1
        return original_states(*args, **kwargs)

    model.decoder.step, model.decoder.states = step, states
    try:
        value = function()
    finally:
        del model.decoder.step, model.decoder.states  # back to the class's methods
    return calls["n"], value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--audio", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="small matrices, short runs, few clips")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # Fractions of the peak need no more than a few dozen seconds of speech.
    audio = read_short(args.audio)[: 4 if args.quick else 16]
    peaks = machine_peaks(1024 if args.quick else 2048, 1.0 if args.quick else 3.0)
    recognizer = asr.load_model()
    quantized = asr.load_model(quantize="int8")
    result = {
        "threads": args.threads,
        "peaks": peaks,
        "clips": len(audio),
        "audio_seconds": sum(len(a) for a in audio) / SAMPLE_RATE,
        "encoder": encoder_section(recognizer, quantized, audio, peaks, 0.0 if args.quick else 3.0),
        "decoding": decoding_section(recognizer, audio, peaks, quantized),
    }
    args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    sys.exit(main())
