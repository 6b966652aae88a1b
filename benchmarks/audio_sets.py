"""The audio every system is measured on, chosen and built deterministically from ../shared/data/speech.

Short utterances: the real clips of 2-6 s among the speakers held out of the default model's
fine-tuning (recipes/whisper_ctc): SpeechBrain's samples, LibriSpeech-mini and the last 85 LJ Speech
clips. The long recording: all of those clips, whatever their length, joined by short pauses of
digital silence (over 10 minutes), with the joined transcripts as its reference.

The audio is written once into a folder of its own (short.npz, long.wav, sets.json), so that the
worker processes read it with numpy and soundfile only and never need torch to get it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from itertools import chain, zip_longest
from pathlib import Path
from typing import Optional

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("ASR_DATA_DIR", REPO.parent / "shared" / "data"))
SAMPLE_RATE = 16000
SHORT_SECONDS = (2.0, 6.0)
LJ_HELD_OUT = 85  # recipes/whisper_ctc/prepare.py holds out the last 85 LJ Speech clips by id
PAUSE_SECONDS = 0.5  # between the clips of the long recording
LONG_MIN_SECONDS = 600.0  # the long recording must be at least this long (unless limited, as in --quick)


@dataclass(frozen=True)
class Clip:
    id: str
    source: str  # the corpus folder under speech/
    path: str
    text: str
    duration: float


def _read(corpus: str) -> list[Clip]:
    folder = DATA_DIR / "speech" / corpus
    clips = []
    for line in (folder / "manifest.jsonl").read_text().splitlines():
        row = json.loads(line)
        clips.append(Clip(row["id"], corpus, str(folder / row["audio"]), row["text"], row["duration"]))
    return sorted(clips, key=lambda c: c.id)


def held_out_clips() -> list[Clip]:
    """Every held-out transcribed clip, the corpora interleaved (one clip of each in turn), so that
    any prefix of the list mixes speakers and recording conditions."""
    corpora = [_read("speechbrain_asr"), _read("librispeech_mini"), _read("ljspeech_subset")[-LJ_HELD_OUT:]]
    return [c for c in chain.from_iterable(zip_longest(*corpora)) if c is not None]


def short_clips(limit: Optional[int] = None) -> list[Clip]:
    low, high = SHORT_SECONDS
    clips = [c for c in held_out_clips() if low <= c.duration <= high]
    return clips[:limit] if limit else clips


def long_clips(max_seconds: Optional[float] = None) -> list[Clip]:
    """The clips of the long recording: all held-out clips, or the first ones filling max_seconds."""
    clips = held_out_clips()
    if max_seconds is None:
        return clips
    chosen, total = [], 0.0
    for clip in clips:
        if chosen and total + clip.duration > max_seconds:
            break
        chosen.append(clip)
        total += clip.duration + PAUSE_SECONDS
    return chosen


def load(clip: Clip) -> np.ndarray:
    samples, rate = sf.read(clip.path, dtype="float32", always_2d=True)
    if rate != SAMPLE_RATE:  # every held-out clip is 16 kHz; resampling would add a dependency here
        raise ValueError(f"{clip.path}: {rate} Hz, expected {SAMPLE_RATE}")
    return samples.mean(axis=1)


def prepare(out: Path, short_limit: Optional[int] = None, long_seconds: Optional[float] = None) -> dict:
    """Writes short.npz, long.wav and sets.json into `out`; returns the description in sets.json."""
    out.mkdir(parents=True, exist_ok=True)
    short = short_clips(short_limit)
    audio = [load(c) for c in short]
    np.savez(out / "short.npz", **{f"clip{i:04d}": a for i, a in enumerate(audio)})

    joined = long_clips(long_seconds)
    pause = np.zeros(round(PAUSE_SECONDS * SAMPLE_RATE), dtype=np.float32)
    pieces = [piece for c in joined for piece in (load(c), pause)][:-1]
    long_audio = np.concatenate(pieces)
    if long_seconds is None and len(long_audio) < LONG_MIN_SECONDS * SAMPLE_RATE:
        raise ValueError(f"the held-out clips make only {len(long_audio) / SAMPLE_RATE:.0f} s of long recording")
    sf.write(out / "long.wav", long_audio, SAMPLE_RATE, subtype="PCM_16")  # the clips are 16-bit: lossless

    sets = {
        "short": {
            "clips": [asdict(c) for c in short],
            "seconds": sum(len(a) for a in audio) / SAMPLE_RATE,
            "words": sum(len(c.text.split()) for c in short),
        },
        "long": {
            "path": str(out / "long.wav"),
            "clips": [c.id for c in joined],
            "seconds": len(long_audio) / SAMPLE_RATE,
            "pause_seconds": PAUSE_SECONDS,
            "text": " ".join(c.text for c in joined),
            "words": sum(len(c.text.split()) for c in joined),
        },
    }
    (out / "sets.json").write_text(json.dumps(sets, indent=1))
    return sets


def read_short(folder: Path) -> list[np.ndarray]:
    with np.load(folder / "short.npz") as data:
        return [data[name] for name in sorted(data.files)]
