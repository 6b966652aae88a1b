"""Reading utterance lists: JSONL manifests and Kaldi data directories."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import soundfile as sf

from asr.errors import ManifestError


@dataclass(frozen=True)
class Utterance:
    id: str
    audio: str  # absolute path
    text: Optional[str]
    duration: float  # seconds
    speaker: Optional[str] = None


def read_manifest(path: str | Path) -> list[Utterance]:
    """A JSONL file ({"id","audio","text","duration"} per line) or a Kaldi data directory."""
    path = Path(path)
    if path.is_dir():
        return read_kaldi_dir(path)
    if not path.is_file():
        raise ManifestError(f"manifest not found: {path}")
    return read_jsonl(path)


def read_jsonl(path: Path) -> list[Utterance]:
    utterances = []
    with path.open("rb") as f:  # json.loads decodes each line, so text that is not UTF-8 is a malformed line
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                audio = Path(os.path.abspath(path.parent / row["audio"]))  # relative paths are relative to the manifest
                duration = row.get("duration")
                if not isinstance(row.get("text"), (str, type(None))):
                    raise TypeError(f"text must be a string, got {row['text']!r}")
                utterances.append(
                    Utterance(
                        id=str(row["id"]),
                        audio=str(audio),
                        text=row.get("text"),
                        duration=float(duration) if duration is not None else _duration_of(audio),
                        speaker=row.get("speaker"),
                    )
                )
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
                raise ManifestError(f"{path}:{number}: malformed manifest line ({err})") from None
    return utterances


def _read_table(path: Path) -> dict[str, str]:
    table = {}
    try:
        with path.open(encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                key, _, value = line.partition(" ")
                if not value and path.name != "text":
                    raise ManifestError(f"{path}:{number}: expected '<id> <value>'")
                table[key] = value.strip()
    except UnicodeDecodeError as err:
        raise ManifestError(f"{path}: not UTF-8 text ({err})") from None
    return table


def read_kaldi_dir(directory: Path) -> list[Utterance]:
    """wav.scp (plain paths), text, and optionally utt2spk and utt2dur."""
    wav_scp = directory / "wav.scp"
    if not wav_scp.is_file():
        raise ManifestError(f"{directory}: not a Kaldi data directory (no wav.scp)")
    if (directory / "segments").is_file():
        raise ManifestError(f"{directory}: Kaldi 'segments' files are not supported; cut the audio first")
    wavs = _read_table(wav_scp)
    for utt_id, value in wavs.items():
        if value.endswith("|"):
            raise ManifestError(f"{wav_scp}: {utt_id} is a piped command; only plain file paths are supported")
    texts = _read_table(directory / "text") if (directory / "text").is_file() else {}
    speakers = _read_table(directory / "utt2spk") if (directory / "utt2spk").is_file() else {}
    durations = _read_table(directory / "utt2dur") if (directory / "utt2dur").is_file() else {}
    utterances = []
    for utt_id, audio in wavs.items():
        audio_path = Path(audio) if Path(audio).is_absolute() else directory / audio
        duration = float(durations[utt_id]) if utt_id in durations else _duration_of(audio_path)
        utterances.append(Utterance(utt_id, str(audio_path), texts.get(utt_id), duration, speakers.get(utt_id)))
    return utterances


def _duration_of(audio: Path) -> float:
    try:
        info = sf.info(str(audio))
    except (sf.LibsndfileError, RuntimeError, OSError):
        return 0.0  # unreadable files are reported when loaded, not here
    return info.frames / info.samplerate


def write_jsonl(utterances: list[Utterance], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for u in utterances:
            row = {"id": u.id, "audio": u.audio, "text": u.text, "duration": round(u.duration, 3)}
            if u.speaker is not None:
                row["speaker"] = u.speaker
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)
