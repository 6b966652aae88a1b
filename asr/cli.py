"""The `asr` command line: one module, one subcommand per job."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable

import yaml

from asr.errors import AsrError, ConfigError

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


# --- transcribe ----------------------------------------------------------------------------------

def add_transcribe(sub: argparse._SubParsersAction) -> None:
    from asr.decoding.options import MODES, DecodingOptions

    default = DecodingOptions()
    p = sub.add_parser("transcribe", help="transcribe audio files with a trained model",
                       description="Print one line per file: the file name, a tab, its transcript.")
    p.add_argument("files", nargs="+", metavar="FILE", help="audio files (any format soundfile reads)")
    p.add_argument("--model", default="exp/run/model", help="model folder (default: exp/run/model)")
    p.add_argument("--decode", choices=MODES, default=default.mode, help=f"search (default {default.mode})")
    p.add_argument("--beam", type=int, default=default.beam_size, help=f"beam size (default {default.beam_size})")
    p.add_argument("--ctc-weight", type=float, default=default.ctc_weight,
                   help=f"CTC weight for joint and rescore (default {default.ctc_weight})")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.set_defaults(handler=run_transcribe)


def run_transcribe(args: argparse.Namespace) -> int:
    from asr.decoding.options import DecodingOptions
    from asr.errors import AudioError
    from asr.recognizer import load_model

    options = DecodingOptions(mode=args.decode, beam_size=args.beam, ctc_weight=args.ctc_weight)
    recognizer = load_model(args.model, args.device)
    failed = 0
    for path in args.files:
        try:
            result = recognizer.transcribe(path, options)
        except AudioError as err:  # name the bad file and go on with the others
            print(f"asr transcribe: error: {type(err).__name__}: {err}", file=sys.stderr)
            failed += 1
            continue
        print(f"{path}\t{result.text}", flush=True)
    return 1 if failed else 0


SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [add_train, add_average, add_transcribe]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asr", description="Noise-robust hybrid CTC/attention speech recognition.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return args.handler(args)
    except AsrError as err:
        print(f"asr {args.command}: error: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"asr {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
