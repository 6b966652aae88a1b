"""Transcripts as the files people use: text, JSON (lines), SRT and WebVTT subtitles, TSV.

Every writer renders a whole document to a string (a transcript is small next to its audio), which
asr.atomic puts on disk whole or not at all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Optional, TextIO

from asr.decoding.result import Word
from asr.errors import ConfigError
from asr.longform import Segment, Transcript

FORMATS = ("txt", "json", "jsonl", "srt", "vtt", "tsv")
# What --format all writes for each input (JSON lines hold all inputs in one file).
PER_INPUT_FORMATS = ("txt", "json", "srt", "vtt", "tsv")


@dataclass(frozen=True)
class SubtitleOptions:
    """How subtitle cues are filled, as in Whisper's command line."""

    max_line_width: int = 42  # characters per line; a longer word gets a line of its own
    max_line_count: int = 2  # lines per cue; more words start the next cue

    def __post_init__(self) -> None:
        if self.max_line_width < 1 or self.max_line_count < 1:
            raise ConfigError(f"subtitle lines need a width and a count of at least 1, got "
                              f"{self.max_line_width} and {self.max_line_count}")


def transcript_dict(transcript: Transcript, model: str = "") -> dict:
    """The JSON form: the same for json and for each line of jsonl."""
    return {
        "audio": transcript.audio,
        "text": transcript.text,
        "duration": round(transcript.duration, 3),
        "segments": [
            {"start": s.start, "end": s.end, "text": s.text,
             "words": [{"word": w.word, "start": w.start, "end": w.end, "confidence": round(w.confidence, 4)}
                       for w in s.words]}
            for s in transcript.segments
        ],
        "model": model,
        "rtf": round(transcript.rtf, 4),
    }


def render(fmt: str, transcript: Transcript, model: str = "", subtitles: SubtitleOptions = SubtitleOptions()) -> str:
    """The document of format `fmt` (one of FORMATS) for one transcript."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown output format {fmt!r}; choose from {', '.join(FORMATS)}")
    if fmt == "txt":
        return transcript.text + "\n"
    if fmt == "json":
        return json.dumps(transcript_dict(transcript, model), indent=2, ensure_ascii=False) + "\n"
    if fmt == "jsonl":
        return json.dumps(transcript_dict(transcript, model), ensure_ascii=False) + "\n"
    if fmt == "tsv":  # Whisper's layout: integer milliseconds
        rows = [f"{round(s.start * 1000)}\t{round(s.end * 1000)}\t{' '.join(s.text.split())}\n"
                for s in transcript.segments]
        return "start\tend\ttext\n" + "".join(rows)
    cues = subtitle_cues(transcript, subtitles)
    if fmt == "srt":
        return "".join(f"{i}\n{_clock(c.start, ',')} --> {_clock(c.end, ',')}\n" + "\n".join(c.lines) + "\n\n"
                       for i, c in enumerate(cues, 1))
    return "WEBVTT\n\n" + "".join(f"{_clock(c.start, '.')} --> {_clock(c.end, '.')}\n"
                                  + "\n".join(_vtt_escape(line) for line in c.lines) + "\n\n" for c in cues)


class Cue(NamedTuple):
    start: float
    end: float
    lines: list[str]


def subtitle_cues(transcript: Transcript, options: SubtitleOptions = SubtitleOptions()) -> list[Cue]:
    """Cues in time order, never spanning two segments, lines filled word by word."""
    cues = []
    for segment in transcript.segments:
        lines: list[list[Word]] = []
        for word in segment.words or _spread_words(segment):
            if lines and len(_line(lines[-1] + [word])) <= options.max_line_width:
                lines[-1].append(word)
                continue
            if len(lines) == options.max_line_count:
                cues.append(_cue(lines))
                lines = []
            lines.append([word])
        if lines:
            cues.append(_cue(lines))
    return cues


def _line(words: list[Word]) -> str:
    return " ".join(w.word.strip() for w in words)


def _cue(lines: list[list[Word]]) -> Cue:
    start, end = lines[0][0].start, lines[-1][-1].end
    return Cue(start, max(start, end), [_line(words) for words in lines])


def _spread_words(segment: Segment) -> list[Word]:
    """Words of a segment whose model gave no word times, timed in proportion to their letters."""
    words = segment.text.split()
    total = sum(len(w) + 1 for w in words)
    per_char = (segment.end - segment.start) / total if total else 0.0
    spread, at = [], segment.start
    for word in words:
        end = at + (len(word) + 1) * per_char
        spread.append(Word(word, round(at, 3), round(end, 3), 0.0))
        at = end
    return spread


def _clock(seconds: float, decimal: str) -> str:
    ms = max(0, round(seconds * 1000))
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}{decimal}{ms % 1000:03d}"


def _vtt_escape(text: str) -> str:
    # WebVTT cue text is markup: "<" and "&" start tags and entities, and it must not hold "-->".
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
