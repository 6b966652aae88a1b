"""Where the default model's decoding time goes: torch.profiler over short clips, one at a time.

    python benchmarks/profile_decoding.py                    # rescore, 12 clips of 2-6 s, 1 thread
    python benchmarks/profile_decoding.py --mode attention --clips 20 --threads 2 [--quantize int8]

Prints the share of each stage (features + encoder, CTC prefix beam search, attention beam search,
teacher-forced rescoring, CTC scoring of the candidates, time stamps) and the operators that take
the most time, with their input shapes. The profiler adds some overhead of its own.
"""

from __future__ import annotations

import argparse
import functools

import torch
from torch.profiler import ProfilerActivity, profile, record_function

import asr
import asr.decoding.decode as decode_module
import asr.decoding.rescore as rescore_module
from audio_sets import load, short_clips

# (module, function) pairs timed as stages; whatever else decoding does counts as "other".
STAGES = [(decode_module, "ctc_prefix_beam_search"), (decode_module, "beam_search"),
          (rescore_module, "teacher_force"), (rescore_module, "sequence_log_likelihoods"),
          (decode_module, "time_stamps")]


def labelled(function, label: str):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with record_function(label):
            return function(*args, **kwargs)
    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=asr.DEFAULT_MODEL, help="bundled model name or model folder")
    parser.add_argument("--mode", default="rescore")
    parser.add_argument("--clips", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quantize", choices=("int8",))
    parser.add_argument("--top", type=int, default=12, help="operators listed")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    recognizer = asr.load_model(args.model, quantize=args.quantize) if args.quantize else asr.load_model(args.model)
    audio = [load(c) for c in short_clips(args.clips)]
    recognizer.transcribe(audio[0], mode=args.mode)  # warm-up

    for module, name in STAGES:
        setattr(module, name, labelled(getattr(module, name), f"stage: {name}"))
    recognizer.model.encode = labelled(recognizer.model.encode, "stage: features + encoder")
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        with record_function("stage: all"):
            for samples in audio:
                recognizer.transcribe(samples, mode=args.mode)

    events = {e.key: e for e in prof.key_averages()}
    total = events["stage: all"].cpu_time_total
    seconds = sum(len(a) for a in audio) / recognizer.sample_rate
    print(f"{args.mode}{' int8' if args.quantize else ''}: {len(audio)} clips, {seconds:.1f} s of audio, "
          f"{args.threads} thread(s); {total / 1e6:.2f} s under the profiler (RTF {total / 1e6 / seconds:.3f})\n")
    print("| stage | ms per clip | share |\n|---|---:|---:|")
    staged = 0.0
    for key in sorted((k for k in events if k.startswith("stage: ") and k != "stage: all"),
                      key=lambda k: -events[k].cpu_time_total):
        t = events[key].cpu_time_total
        staged += t
        print(f"| {key[len('stage: '):]} | {t / 1e3 / len(audio):.1f} | {100 * t / total:.0f} % |")
    print(f"| other | {(total - staged) / 1e3 / len(audio):.1f} | {100 * (total - staged) / total:.0f} % |\n")
    print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=args.top,
                                                             max_name_column_width=40, max_shapes_column_width=60))


if __name__ == "__main__":
    main()
