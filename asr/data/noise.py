"""Banks of noise recordings and room impulse responses, with a fixed train/test split.

A bank manifest is JSONL, one recording per line: {"id", "audio" (absolute, or relative to the
manifest), "duration", optional "kind", optional "source"}. The shared data's noise/ and rir/
manifests have this form, and asr.data.corpora writes it for MUSAN and RIRS_NOISES.

Which recording is for training and which for testing is decided here and only here
(`noise_split`, `rir_split`), by recording, so that no recording is ever used in both:

- Shared noise data: the EMGSE "noise_test" recordings (babble, street, car, engine, white) and
  the music and animal clips are test-only; the 100 Hu nonspeech sounds, the household and the
  misc recordings are for training. Test noise therefore differs from training noise in recording
  and, for most kinds, in category too. Training still sees babble (built from other training
  utterances by the augmenter) and white noise (generated).
- Shared RIRs: the measured seminar-room clap response and the 48 kHz audiomentations response are
  test-only; the other six are for training.
- Any other bank (MUSAN, RIRS_NOISES): one recording in ten, chosen by a hash of its id, is
  test-only. The hash is stable across machines and Python versions, so the split never moves.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional

import numpy as np
import soundfile as sf

from asr.audio import SAMPLE_RATE, load_audio, prepare_waveform
from asr.errors import AudioError, ManifestError

TRAIN, TEST = "train", "test"

NOISE_SPLIT_BY_KIND = {
    "nonspeech": TRAIN,
    "household": TRAIN,
    "misc": TRAIN,
    "babble": TEST,
    "street": TEST,
    "car": TEST,
    "engine": TEST,
    "white": TEST,
    "music": TEST,
    "animals": TEST,
}
# The six training responses span short (rir4, impulse_response_0), medium (rir1, rir3) and long
# (rir2, stereo_impulse_response) decays; the two held out have medium decays (~0.2-0.3 s to -20 dB),
# one of them a seminar room measured with a clap.
RIR_SPLIT_BY_ID = {
    "speechbrain_rir1": TRAIN,
    "speechbrain_rir2": TRAIN,
    "speechbrain_rir3": TRAIN,
    "speechbrain_rir4": TRAIN,
    "audiomentations_impulse_response_0": TRAIN,
    "audiomentations_stereo_impulse_response_ch0": TRAIN,
    "audiomentations_rir48000": TEST,
    "spatialaudio_rir_clap": TEST,
}
HASHED_TEST_SHARE = 10  # one recording in this many is held out when no table above applies


@dataclass(frozen=True)
class BankEntry:
    id: str
    audio: str  # absolute path
    duration: float  # seconds
    kind: Optional[str] = None
    source: Optional[str] = None


def _hashed_split(entry_id: str) -> str:
    digest = hashlib.sha256(entry_id.encode("utf-8")).digest()
    return TEST if int.from_bytes(digest[:8], "big") % HASHED_TEST_SHARE == 0 else TRAIN


def noise_split(entry: BankEntry) -> str:
    """"train" or "test" for a noise recording (see the module docstring)."""
    return NOISE_SPLIT_BY_KIND.get(entry.kind) or _hashed_split(entry.id)


def rir_split(entry: BankEntry) -> str:
    """"train" or "test" for a room impulse response (see the module docstring)."""
    return RIR_SPLIT_BY_ID.get(entry.id) or _hashed_split(entry.id)


def read_bank_manifest(path: str | Path) -> list[BankEntry]:
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"noise/RIR manifest not found: {path}")
    # Relative audio paths are relative to the manifest's real location, so a symlinked manifest works.
    base = path.resolve().parent
    entries = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                audio = Path(row["audio"])
                entries.append(BankEntry(
                    id=str(row["id"]),
                    audio=str(audio if audio.is_absolute() else base / audio),
                    duration=float(row["duration"]),
                    kind=row.get("kind"),
                    source=row.get("source"),
                ))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
                raise ManifestError(f"{path}:{number}: malformed manifest line ({err})") from None
    return entries


def write_bank_manifest(entries: Iterable[BankEntry], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for e in entries:
            row = {"id": e.id, "audio": e.audio, "duration": round(e.duration, 3)}
            if e.kind is not None:
                row["kind"] = e.kind
            if e.source is not None:
                row["source"] = e.source
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)


class AudioCache:
    """Decoded waveforms kept in memory, least recently used dropped first beyond `max_seconds`.

    The shared noise bank (~15 minutes, ~60 MB as float32) fits whole; MUSAN or RIRS_NOISES do not,
    and then only the most recently used recordings stay decoded.
    """

    def __init__(self, max_seconds: float, sample_rate: int = SAMPLE_RATE):
        self.max_samples = int(max_seconds * sample_rate)
        self.samples = 0
        self.items: OrderedDict[str, np.ndarray] = OrderedDict()

    def get(self, key: str, load: Callable[[], np.ndarray]) -> np.ndarray:
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key]
        audio = load()
        audio.setflags(write=False)  # shared by every caller: nobody may change it in place
        self.items[key] = audio
        self.samples += len(audio)
        while self.samples > self.max_samples and len(self.items) > 1:
            _, dropped = self.items.popitem(last=False)
            self.samples -= len(dropped)
        return audio


def normalize_rir(rir: np.ndarray) -> np.ndarray:
    """Starts the response at its direct path (the strongest peak) and scales it to unit energy.

    Starting at the direct path means convolving delays nothing, so transcript time stamps stay
    valid; unit energy keeps the level of reverberant speech close to that of the dry speech.
    """
    rir = np.asarray(rir, dtype=np.float32)
    rir = rir[int(np.argmax(np.abs(rir))):]
    energy = float(np.sqrt(np.sum(rir.astype(np.float64) ** 2)))
    if energy == 0.0:
        raise ValueError("impulse response is all zeros")
    return (rir / energy).astype(np.float32)


class NoiseBank:
    """Noise recordings of one split, decoded on first use and cached."""

    split_of: Callable[[BankEntry], str] = staticmethod(noise_split)

    def __init__(self, entries: list[BankEntry], sample_rate: int = SAMPLE_RATE, cache_seconds: float = 1800.0):
        self.entries = entries
        self.sample_rate = sample_rate
        self.cache = AudioCache(cache_seconds, sample_rate)

    @classmethod
    def from_manifests(cls, paths: Iterable[str | Path], split: Optional[str], kinds: Optional[Iterable[str]] = None,
                       sample_rate: int = SAMPLE_RATE, cache_seconds: float = 1800.0) -> "NoiseBank":
        """The recordings of `split` ("train", "test", or None for all), optionally only of `kinds`."""
        if split not in (TRAIN, TEST, None):
            raise ValueError(f"split must be 'train', 'test' or None, got {split!r}")
        wanted = set(kinds) if kinds is not None else None
        entries = [e for p in paths for e in read_bank_manifest(p)
                   if (split is None or cls.split_of(e) == split) and (wanted is None or e.kind in wanted)]
        return cls(entries, sample_rate, cache_seconds)

    def __len__(self) -> int:
        return len(self.entries)

    def load(self, index: int) -> np.ndarray:
        entry = self.entries[index]
        return self.cache.get(entry.audio, lambda: self._prepare(entry))

    def choose(self, rng: np.random.Generator) -> tuple[BankEntry, np.ndarray]:
        index = int(rng.integers(len(self.entries)))
        return self.entries[index], self.load(index)

    def _prepare(self, entry: BankEntry) -> np.ndarray:
        return load_audio(entry.audio, self.sample_rate)


class RirBank(NoiseBank):
    """Room impulse responses of one split, normalized by `normalize_rir` when loaded."""

    split_of = staticmethod(rir_split)

    def _prepare(self, entry: BankEntry) -> np.ndarray:
        # A multi-microphone response is reduced to its first microphone: averaging microphones at
        # different distances would smear the direct path over several peaks.
        try:
            data, rate = sf.read(entry.audio, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, OSError) as err:
            raise AudioError(entry.audio, f"not a readable audio file ({err})") from None
        rir = prepare_waveform(data[:, :1], rate, self.sample_rate, entry.audio)
        try:
            return normalize_rir(rir)
        except ValueError as err:
            raise AudioError(entry.audio, str(err)) from None
