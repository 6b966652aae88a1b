"""`asr transcribe --stream`: audio in as it is recorded, partial and final lines out as they come.

Standard input ("-") is read as a live pipe (asr.pipe): WAV or raw 16-bit PCM, piece by piece.
A file is read in short blocks, as fast as the recognizer takes them. Each event is one line:
  txt:   "partial<TAB>start<TAB>end<TAB>text" and "final<TAB>start<TAB>end<TAB>text" (seconds)
  jsonl: one JSON object per event (asr.live.event_dict)
On a terminal, txt partials are drawn over each other on one line and each final replaces them.
Finals without words are not printed; every line is flushed at once, for the reader at the other end.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Iterator, Optional, TextIO, Union

import numpy as np

from asr.errors import AudioError
from asr.live import Event, Final, LiveConfig, LiveRecognizer, event_dict
from asr.pipe import read_pipe
from asr.stream import STDIN, read_blocks

if TYPE_CHECKING:
    from asr.recognizer import Recognizer
    from asr.runtime.recognizer import OnnxRecognizer

LIVE_FORMATS = ("txt", "jsonl")
FILE_BLOCK_SECONDS = 0.1  # a file read as if live: blocks this long


def stream_transcribe(recognizer: Union[Recognizer, OnnxRecognizer], source: str, fmt: str = "txt",
                      config: LiveConfig = LiveConfig(), out: Optional[TextIO] = None, raw_rate: int = 16000,
                      **overrides) -> None:
    """Prints the events of `source` ("-" or a file) to `out` (standard output) as they happen.

    `fmt` is one of LIVE_FORMATS (the command checks it before the model loads). Raises AudioError
    if the audio cannot be read (after printing what was heard before)."""
    printer = _Printer(out or sys.stdout, fmt)
    live = None
    try:
        for samples, rate in _pieces(source, recognizer.sample_rate, raw_rate):
            if live is None:
                live = LiveRecognizer(recognizer, config, sample_rate=rate, **overrides)
            printer.show(live.feed(samples))
    except KeyboardInterrupt:  # Ctrl-C ends the recording: what was heard is still decoded
        pass
    except AudioError:  # the stream broke off: what was heard before is still decoded
        if live is not None:
            printer.show(live.finish())
        raise
    if live is None:
        raise AudioError(source, "contains no samples")
    printer.show(live.finish())
    printer.close()


def _pieces(source: str, model_rate: int, raw_rate: int) -> Iterator[tuple[np.ndarray, int]]:
    if source == STDIN:
        if sys.stdin is None or sys.stdin.isatty():
            raise AudioError(STDIN, "standard input is a terminal, not audio: pipe a recording into it")
        yield from read_pipe(sys.stdin.buffer, raw_rate, source=STDIN)
    else:
        for block in read_blocks(source, model_rate, FILE_BLOCK_SECONDS):
            yield block, model_rate


class _Printer:
    def __init__(self, out: TextIO, fmt: str):
        self.out = out
        self.fmt = fmt
        self.redraw = fmt == "txt" and out.isatty()
        self._drawn = 0  # characters of the partial drawn on the terminal's last line

    def show(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, Final) and not event.text:
                self._clear()
            elif self.fmt == "jsonl":
                self._line(json.dumps(event_dict(event), ensure_ascii=False))
            elif self.redraw and not isinstance(event, Final):
                self._clear()
                self.out.write(event.text)
                self._drawn = len(event.text)
            else:
                kind = "final" if isinstance(event, Final) else "partial"
                self._line(f"{kind}\t{event.start:.2f}\t{event.end:.2f}\t{event.text}")
        self.out.flush()

    def close(self) -> None:
        self._clear()
        self.out.flush()

    def _line(self, text: str) -> None:
        self._clear()
        self.out.write(text + "\n")

    def _clear(self) -> None:
        if self._drawn:
            self.out.write("\r" + " " * self._drawn + "\r")
            self._drawn = 0
