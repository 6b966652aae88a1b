"""Noisy test conditions, made the same way every time: a clean manifest mixed with held-out noise
at set SNRs, and noise-only and silent clips for the hallucination check.

Only the test split of a noise bank is used (asr.data.noise decides the split), so no evaluation
noise was ever heard in training. The SNR is measured on active speech (`mix_at_snr`). Which
recording and which stretch of it an utterance gets depends on (seed, utterance id, kind) alone:
not on the order of the manifest, and not on the SNR, so that the conditions of one kind differ in
noise level and nothing else.

What `make_noisy_sets` writes into its folder, all 16-bit FLAC at 16 kHz:

    clean.jsonl                            the clean utterances, audio paths made absolute
    <kind>_<snr>.jsonl, <kind>_<snr>/      one manifest and audio folder per kind and SNR
                                           (e.g. babble_-5.jsonl); utterance ids as in the clean manifest
    noise_only.jsonl, noise_only/          noise without speech and digital silence, reference text ""
                                           (babble clips are crowds of several recordings)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
import soundfile as sf

from asr.audio import SAMPLE_RATE, load_audio
from asr.data.augment import fit_to_length, mix_at_snr
from asr.data.manifest import Utterance, read_manifest, write_jsonl
from asr.data.noise import TEST, NoiseBank
from asr.errors import ManifestError

CLEAN = "clean"
NOISE_ONLY = "noise_only"
SILENCE = "silence"
BABBLE = "babble"
PEAK = 0.99  # a mixture louder than this is scaled down as a whole, which keeps its SNR, instead of clipped
# Noise-only clips are played at about the level of speech recorded near full scale, so that the
# check asks whether the model invents words for noise as loud as the voices it is meant to hear.
NOISE_ONLY_LEVEL_DBFS = -25.0
# A babble recording may hold one or two clear talkers, and a clear talker is speech, not noise:
# a noise-only babble clip is a crowd, this many recordings (or all there are) at equal level.
CROWD_RECORDINGS = 4


@dataclass(frozen=True)
class Condition:
    kind: Optional[str] = None  # None: the clean recordings
    snr_db: Optional[float] = None

    @property
    def name(self) -> str:
        return CLEAN if self.kind is None else f"{self.kind}_{snr_label(self.snr_db)}"


def snr_label(snr_db: Optional[float]) -> str:
    """"clean" or the SNR as it appears in condition names ("20", "-5", "2.5")."""
    return CLEAN if snr_db is None else f"{snr_db:g}"


def sweep_conditions(kinds: Sequence[str], snrs: Sequence[Optional[float]]) -> list[Condition]:
    """Clean first (if `snrs` holds None), then every kind at every SNR in the order given."""
    conditions = [Condition()] if None in snrs else []
    return conditions + [Condition(kind, snr) for kind in kinds for snr in snrs if snr is not None]


@dataclass(frozen=True)
class NoisySets:
    directory: Path
    conditions: list[Condition]
    manifests: dict[str, Path]  # condition name -> manifest
    clean_audio: dict[str, str]  # utterance id -> clean recording (the speech masks come from it)
    noise_only: Path  # manifest of the noise-only and silent clips


def noise_manifest(noise: str | Path) -> Path:
    """A bank manifest, given as itself or as the folder that holds it (the shared noise/ folder)."""
    path = Path(noise)
    return path / "manifest.jsonl" if path.is_dir() else path


def held_out_noise(noise: str | Path, kinds: Sequence[str], sample_rate: int = SAMPLE_RATE) -> dict[str, NoiseBank]:
    """One bank per kind, of test-split recordings only; an error names a kind that has none."""
    manifest = noise_manifest(noise)
    banks = {kind: NoiseBank.from_manifests([manifest], TEST, kinds=[kind], sample_rate=sample_rate)
             for kind in kinds}
    empty = [kind for kind, bank in banks.items() if not bank]
    if empty:
        raise ManifestError(f"{manifest}: no test-split noise of kind {', '.join(empty)}")
    return banks


def seeded_rng(seed: int, *keys: str) -> np.random.Generator:
    """A generator fixed by `seed` and `keys` alone (hashlib, unlike hash(), is the same in every process)."""
    digest = hashlib.sha256("\0".join(keys).encode("utf-8")).digest()
    return np.random.default_rng([seed, int.from_bytes(digest[:8], "little")])


def noisy_copy(speech: np.ndarray, utt_id: str, condition: Condition, bank: NoiseBank, seed: int,
               sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, str, float]:
    """(mixture, noise recording id, gain applied to the mixture to keep it below full scale)."""
    rng = seeded_rng(seed, utt_id, condition.kind)
    entry, recording = bank.choose(rng)
    mixed, gain = mix_below_full_scale(speech, fit_to_length(recording, len(speech), rng), condition.snr_db,
                                       sample_rate)
    return mixed, entry.id, gain


def mix_below_full_scale(speech: np.ndarray, noise: np.ndarray, snr_db: float, sample_rate: int = SAMPLE_RATE
                         ) -> tuple[np.ndarray, float]:
    """(speech + noise at `snr_db`, the gain that brought its peak down to PEAK, else 1)."""
    return below_full_scale(mix_at_snr(speech, noise, snr_db, sample_rate))


def below_full_scale(mixed: np.ndarray) -> tuple[np.ndarray, float]:
    """(`mixed` with its peak brought down to PEAK if above it, the gain that took)."""
    peak = float(np.max(np.abs(mixed))) if len(mixed) else 0.0
    gain = PEAK / peak if peak > PEAK else 1.0
    return mixed * gain, gain


def write_condition(utterances: Sequence[Utterance], condition: Condition, bank: NoiseBank, directory: Path,
                    seed: int, sample_rate: int = SAMPLE_RATE) -> Path:
    """Writes the noisy copies of one condition and their manifest; returns the manifest."""
    audio_dir = directory / condition.name
    audio_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for utt in utterances:
        speech = load_audio(utt.audio, sample_rate)
        mixed, noise_id, gain = noisy_copy(speech, utt.id, condition, bank, seed, sample_rate)
        audio = audio_dir / _file_name(utt.id)
        sf.write(audio, mixed, sample_rate, subtype="PCM_16")
        rows.append({"id": utt.id, "audio": str(audio.relative_to(directory)), "text": utt.text,
                     "duration": round(len(mixed) / sample_rate, 3), "speaker": utt.speaker,
                     "clean_audio": utt.audio, "kind": condition.kind, "noise": noise_id,
                     "snr_db": condition.snr_db, "gain": gain})
    return _write_rows(rows, directory / f"{condition.name}.jsonl")


def write_noise_only(banks: dict[str, NoiseBank], directory: Path, seed: int, seconds: float = 4.0,
                     clips_per_kind: int = 3, sample_rate: int = SAMPLE_RATE) -> Path:
    """`clips_per_kind` crops of each kind's noise, and as many silent clips of growing length."""
    audio_dir = directory / NOISE_ONLY
    audio_dir.mkdir(parents=True, exist_ok=True)
    length = round(seconds * sample_rate)
    level = 10 ** (NOISE_ONLY_LEVEL_DBFS / 20)
    clips: list[tuple[str, str, np.ndarray]] = []
    for kind, bank in banks.items():
        for index in range(clips_per_kind):
            rng = seeded_rng(seed, NOISE_ONLY, kind, str(index))
            crop = _crowd(bank, length, rng) if kind == BABBLE else fit_to_length(bank.choose(rng)[1], length, rng)
            clips.append((f"{kind}_{index}", kind, np.clip(at_rms(crop, level), -PEAK, PEAK)))
    for index in range(clips_per_kind):  # different lengths, or the clips would all be the same
        clips.append((f"{SILENCE}_{index}", SILENCE, np.zeros(length * (index + 1) // clips_per_kind)))
    rows = []
    for clip_id, kind, samples in clips:
        audio = audio_dir / _file_name(clip_id)
        sf.write(audio, samples.astype(np.float32), sample_rate, subtype="PCM_16")
        rows.append({"id": clip_id, "audio": str(audio.relative_to(directory)), "text": "",
                     "duration": round(len(samples) / sample_rate, 3), "kind": kind})
    return _write_rows(rows, directory / f"{NOISE_ONLY}.jsonl")


def _crowd(bank: NoiseBank, length: int, rng: np.random.Generator) -> np.ndarray:
    """Crops of CROWD_RECORDINGS different recordings of `bank`, each at unit RMS, summed."""
    picks = rng.choice(len(bank), size=min(CROWD_RECORDINGS, len(bank)), replace=False)
    return sum(at_rms(fit_to_length(bank.load(int(i)), length, rng), 1.0) for i in sorted(picks))


def at_rms(audio: np.ndarray, rms: float) -> np.ndarray:
    """`audio` in float64 scaled to root-mean-square `rms` (unchanged if silent)."""
    audio = audio.astype(np.float64)
    current = float(np.sqrt(np.mean(audio**2)))
    return audio * (rms / current) if current > 0 else audio


def clip_kinds(manifest: str | Path) -> dict[str, str]:
    """Clip id -> kind ("babble", ..., "silence") of a noise-only manifest."""
    rows = [json.loads(line) for line in Path(manifest).read_text(encoding="utf-8").splitlines() if line.strip()]
    return {row["id"]: row["kind"] for row in rows}


def make_noisy_sets(manifest: str | Path, noise: str | Path, kinds: Sequence[str],
                    snrs: Sequence[Optional[float]], directory: str | Path, seed: int = 0,
                    clip_seconds: float = 4.0, clips_per_kind: int = 3) -> NoisySets:
    """Every condition of kinds x SNRs (and clean if `snrs` holds None) and the noise-only clips."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # Absolute paths: the manifests written here are read from another folder, perhaps by a peer.
    utterances = [replace(u, audio=str(Path(u.audio).resolve())) for u in read_manifest(manifest)]
    if not utterances:
        raise ManifestError(f"{manifest}: no utterances")
    banks = held_out_noise(noise, kinds)
    conditions = sweep_conditions(kinds, snrs)
    manifests = {}
    for condition in conditions:
        if condition.kind is None:
            path = directory / f"{CLEAN}.jsonl"
            write_jsonl(utterances, path)
        else:
            path = write_condition(utterances, condition, banks[condition.kind], directory, seed)
        manifests[condition.name] = path
    noise_only = write_noise_only(banks, directory, seed, clip_seconds, clips_per_kind)
    return NoisySets(directory, conditions, manifests, {u.id: u.audio for u in utterances}, noise_only)


def _file_name(utt_id: str) -> str:
    return utt_id.replace("/", "_") + ".flac"


def _write_rows(rows: Iterable[dict], path: Path) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path
