"""Transcribing many inputs into files or onto standard output: the work of `asr transcribe`.

Inputs are files, folders (searched recursively for audio) and "-" for standard input. One
input that cannot be read is reported through `on_error` and the others go on. Per-input
documents (txt, json, srt, vtt, tsv) go to `output_dir`, or to standard output when there is
one input (txt: one "path<TAB>text" line per input, for any number); JSON lines, one object per
input, go to `output_file` or standard output.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Sequence, TextIO, Union

from tqdm import tqdm

from asr.decoding.options import DecodingOptions
from asr.errors import AudioError, ConfigError
from asr.atomic import AtomicFile, write_atomic
from asr.formats import PER_INPUT_FORMATS, SubtitleOptions, render
from asr.longform import LongformConfig, Transcript, longest_whole, transcribe_long, transcribe_short
from asr.stream import STDIN, audio_extensions, probe_duration

if TYPE_CHECKING:
    import torch

    from asr.recognizer import Recognizer
    from asr.runtime.recognizer import OnnxRecognizer

# A progress bar is worth drawing for this many inputs, or for this many seconds of audio.
PROGRESS_MIN_INPUTS = 2
PROGRESS_MIN_SECONDS = 60.0
# Headers may be a little off: inputs this close to one piece's length go through transcribe_long alone.
SHORT_MARGIN_SECONDS = 0.5


@dataclass(frozen=True)
class Input:
    source: str  # a file, or "-" for standard input
    name: str  # its outputs' path under the output folder, without extension


@dataclass(frozen=True)
class OutputConfig:
    formats: tuple[str, ...] = ("txt",)  # from asr.formats.FORMATS
    output_dir: Optional[Path] = None
    output_file: Optional[Path] = None  # JSON lines of all inputs; None: standard output
    subtitles: SubtitleOptions = field(default_factory=SubtitleOptions)
    model: str = ""  # the model's name or path, recorded in JSON


def find_inputs(paths: Sequence[str]) -> tuple[list[Input], list[AudioError]]:
    """The inputs that `paths` name, folders expanded, each file once; and the folders without audio.

    A folder's files are named in the output folder by their path inside it, so its layout is
    kept; files given by name by their name alone. Hidden files and folders are skipped.
    """
    inputs: list[Input] = []
    empty: list[AudioError] = []
    seen: set[str] = set()
    extensions = audio_extensions()

    def add(source: str, name: str) -> None:
        key = source if source == STDIN else os.path.realpath(source)
        if key not in seen:
            seen.add(key)
            inputs.append(Input(source, name))

    for arg in paths:
        path = Path(arg)
        if arg == STDIN:
            add(STDIN, "stdin")
        elif path.is_dir():
            found = sorted(
                p for p in path.rglob("*")
                if p.suffix.lower() in extensions and p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            if not found:
                empty.append(AudioError(arg, f"no audio files ({' '.join(extensions)}) in this folder"))
            for p in found:
                add(str(p), p.relative_to(path).with_suffix("").as_posix())
        else:
            add(arg, path.stem if path.suffix else path.name)
    return inputs, empty


def check_outputs(output: OutputConfig, inputs: Sequence[Input]) -> None:
    """Raises ConfigError, before any work, if the outputs asked for cannot be written as asked."""
    per_input = [f for f in output.formats if f in PER_INPUT_FORMATS]
    if output.output_dir is None:
        documents = [f for f in per_input if f != "txt"]
        if len(per_input) > 1 or (documents and len(inputs) > 1):
            raise ConfigError(f"--format {','.join(per_input)} for {len(inputs)} input(s) writes one file each: "
                              "give --output-dir")
        return
    owners: dict[str, str] = {}
    for item in inputs:
        if item.name in owners:
            raise ConfigError(f"{owners[item.name]} and {item.source} would write the same outputs "
                              f"{item.name}.*: transcribe them into different --output-dir folders")
        owners[item.name] = item.source


def resolve_device(name: str) -> "torch.device":
    """The torch device called `name`, or ConfigError if this machine has none such."""
    import torch  # here: the ONNX Runtime path transcribes without torch

    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}: use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but torch finds no CUDA GPU here")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ConfigError(f"device {name!r} asked for, but torch finds {torch.cuda.device_count()} CUDA GPU(s)")
    return device


def transcribe_inputs(
    recognizer: Union["Recognizer", "OnnxRecognizer"],
    inputs: Sequence[Input],
    output: OutputConfig,
    options: Optional[DecodingOptions] = None,
    longform: LongformConfig = LongformConfig(),
    progress: bool = True,
    on_error: Callable[[Exception], None] = lambda err: None,
    **overrides,
) -> int:
    """Transcribes every input into the outputs asked for; returns how many inputs failed.

    Each input that fails (AudioError, or OSError for an output that cannot be written) goes to
    `on_error`; other errors (ConfigError for decoding options, say) concern every input and are raised.
    `options` and `overrides` are as for `Recognizer.transcribe`. The progress bar (on
    standard error, in seconds of audio) is drawn only when `progress` is asked for, standard
    error is a terminal, and there are several inputs or long ones.
    """
    check_outputs(output, inputs)
    recognizer.transcribe_batch([], options, **overrides)  # checks the decoding options once, not per input
    durations = [probe_duration(item.source) or 0.0 for item in inputs]
    draw = progress and sys.stderr.isatty() and (len(inputs) >= PROGRESS_MIN_INPUTS
                                                  or sum(durations) >= PROGRESS_MIN_SECONDS)
    failed = 0
    with ExitStack() as stack:
        lines = _json_lines(stack, output)
        bar = stack.enter_context(tqdm(total=round(sum(durations), 1), unit="s", unit_scale=True, file=sys.stderr,
                                       disable=not draw, dynamic_ncols=True, leave=False))
        short_enough = longest_whole(recognizer, options, longform, **overrides) / recognizer.sample_rate
        start = 0
        while start < len(inputs):
            # Inputs that each fit one piece, by their headers, are decoded a batch at a time.
            group = _short_run(durations, start, short_enough - SHORT_MARGIN_SECONDS, longform.batch_size)
            if len(group) > 1:
                bar.set_postfix_str(inputs[start].name, refresh=False)
                for i, transcript in zip(group, transcribe_short(recognizer, [inputs[i].source for i in group],
                                                                 options, longform, **overrides)):
                    failed += not _deliver(transcript, inputs[i], output, lines, on_error)
                    bar.update(durations[i])
                start += len(group)
                continue
            item, expected = inputs[start], durations[start]
            start += 1
            bar.set_postfix_str(item.name, refresh=False)
            done = 0.0

            def advance(seconds: float) -> None:
                nonlocal done
                seconds = min(seconds, expected)  # the header's duration may be a little off
                bar.update(seconds - done)
                done = seconds

            try:
                transcript: Union[Transcript, AudioError] = transcribe_long(recognizer, item.source, options, longform,
                                                                            advance, **overrides)
            except AudioError as err:
                transcript = err
            failed += not _deliver(transcript, item, output, lines, on_error)
            bar.update(expected - done)
    return failed


def _short_run(durations: list[float], start: int, most_seconds: float, count: int) -> list[int]:
    """Indices from `start` of consecutive inputs whose headers say they last under `most_seconds`."""
    run = []
    for i in range(start, min(len(durations), start + count)):
        if not 0 < durations[i] <= most_seconds:
            break
        run.append(i)
    return run


def _deliver(transcript: Union[Transcript, AudioError], item: Input, output: OutputConfig, lines: Optional[TextIO],
             on_error: Callable[[Exception], None]) -> bool:
    """Writes a transcript's outputs; False, with the error given to `on_error`, for an input that
    could not be read or an output that could not be written."""
    try:
        if isinstance(transcript, AudioError):
            raise transcript
        _write(transcript, item, output, lines)
        return True
    except (AudioError, OSError) as err:  # OSError: an output that cannot be written
        with tqdm.external_write_mode(file=sys.stderr):
            on_error(err)
        return False


def _json_lines(stack: ExitStack, output: OutputConfig) -> Optional[TextIO]:
    if "jsonl" not in output.formats:
        return None
    if output.output_file is None:
        return sys.stdout
    try:
        return stack.enter_context(AtomicFile(output.output_file))
    except OSError as err:
        raise ConfigError(f"cannot write {output.output_file}: {err.strerror or err}") from None


def _write(transcript: Transcript, item: Input, output: OutputConfig, lines: Optional[TextIO]) -> None:
    # Python holds the bytes of a file name that is not UTF-8 as surrogates, which no UTF-8 writer
    # takes: such bytes are written as \xNN (the files themselves get their names byte for byte).
    audio = transcript.audio.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    transcript = dataclasses.replace(transcript, audio=audio)
    for fmt in output.formats:
        if fmt == "jsonl":
            assert lines is not None
            lines.write(render("jsonl", transcript, output.model))
            lines.flush()
        elif output.output_dir is not None:
            write_atomic(output.output_dir / f"{item.name}.{fmt}", render(fmt, transcript, output.model, output.subtitles))
        elif fmt == "txt":  # the plain command's output: a line per input
            print(f"{transcript.audio}\t{transcript.text}", flush=True)
        else:
            sys.stdout.write(render(fmt, transcript, output.model, output.subtitles))
            sys.stdout.flush()
