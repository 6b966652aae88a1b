"""Development speakers in training noise at fixed SNRs: where settings are chosen (the token cap,
the live recognizer's commit rule), on voices and noise that no test holds.

The speakers are gate_head.speech_sets' development speakers (speechocean762 train-split speakers no
training used). The noise is babble of 1-4 training voices, or a recording of the noise bank's
training split (its music and street recordings are all in the test split). A mixture depends on
the seed, the condition and the utterance's place alone.

    python recipes/whisper_ctc/dev_noise.py --out exp/dev_noise    # clean.jsonl, babble_5.jsonl, ...

It also writes the live recognizer's latency sets (benchmarks/live_latency.py --latency-manifest):
live_clean.jsonl, utterances 3-5 of each development speaker's clean ones, and libri_dev.jsonl, the
LibriSpeech readers' clips that libri_dev_ids.txt lists (longer, read speech).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from asr.audio import load_audio
from asr.data.augment import fit_to_length, make_babble, mix_at_snr
from asr.data.manifest import Utterance, read_manifest
from asr.data.noise import TRAIN, NoiseBank
from asr.noisy import PEAK

KINDS = ("babble", "noise")
SNRS = (5.0, 0.0)
SAMPLE_RATE = 16000
LIVE_UTTERANCES = slice(2, 5)  # of each speaker's, for live_clean.jsonl
LIBRI_DEV_IDS = Path(__file__).with_name("libri_dev_ids.txt")


def mixtures(clean: list[np.ndarray], voices: list[str], data_dir: Path, kind: str, snr: float,
             seed: int) -> list[np.ndarray]:
    """Each of `clean` mixed at `snr` dB with noise of `kind` (KINDS): babble of 1-4 of `voices`
    (audio files of training utterances) or a training-split noise recording."""
    bank = NoiseBank.from_manifests([data_dir / "noise" / "manifest.jsonl"], TRAIN)
    k = KINDS.index(kind)
    mixed = []
    for i, speech in enumerate(clean):
        rng = np.random.default_rng([seed, k, int(snr), i])
        if kind == "babble":
            picks = rng.choice(len(voices), size=int(rng.integers(1, 5)), replace=False)
            noise = make_babble([load_audio(voices[int(p)]) for p in picks], len(speech), rng)
        else:
            noise = fit_to_length(bank.choose(rng)[1], len(speech), rng)
        mixed.append(mix_at_snr(speech, noise, snr))
    return mixed


def write_set(out: Path, name: str, utterances: list[Utterance], audio: list[np.ndarray]) -> Path:
    """`audio` as 16-bit WAV files under out/name/, and out/name.jsonl naming them."""
    import soundfile as sf

    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for utt, samples in zip(utterances, audio):
        path = folder / f"{utt.id}.wav"
        peak = float(np.max(np.abs(samples))) if len(samples) else 0.0
        sf.write(path, samples * (PEAK / peak) if peak > PEAK else samples, SAMPLE_RATE, subtype="PCM_16")
        rows.append({"id": utt.id, "audio": str(path.resolve()), "text": utt.text,
                     "duration": round(len(samples) / SAMPLE_RATE, 3), "speaker": utt.speaker})
    manifest = out / f"{name}.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return manifest


def write_live_clean(clean: Path) -> Path:
    """live_clean.jsonl beside the manifest `clean`: its utterances 3-5 of each speaker."""
    by_speaker: dict[str, list[str]] = {}
    for line in clean.read_text().splitlines():
        by_speaker.setdefault(json.loads(line)["speaker"], []).append(line + "\n")
    manifest = clean.with_name("live_clean.jsonl")
    manifest.write_text("".join(line for lines in by_speaker.values() for line in lines[LIVE_UTTERANCES]))
    return manifest


def write_libri_dev(out: Path, data_dir: Path) -> Path:
    """out/libri_dev.jsonl: the untranscribed LibriSpeech clips that LIBRI_DEV_IDS lists, in its order."""
    wanted = [line for line in LIBRI_DEV_IDS.read_text().split("\n") if line and not line.startswith("#")]
    folder = data_dir / "speech" / "librispeech_untranscribed"
    clips = {utt.id: utt for utt in read_manifest(folder / "manifest.jsonl")}
    rows = [{"id": i, "audio": str(Path(clips[i].audio).resolve()), "text": "", "speaker": clips[i].speaker,
             "duration": clips[i].duration} for i in wanted]
    manifest = out / "libri_dev.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--per-speaker", type=int, default=10)
    parser.add_argument("--dev-speakers", type=int, default=10, help="as gate_head.py and distill.py")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("exp/dev_noise"))
    args = parser.parse_args()

    from gate_head import speech_sets

    data_dir = Path(args.data_dir)
    train, dev = speech_sets(data_dir, args.per_speaker, args.dev_speakers, args.seed)
    clean = [load_audio(u.audio) for u in dev]
    clean_manifest = write_set(args.out, "clean", dev, clean)
    print(clean_manifest)
    print(write_live_clean(clean_manifest))
    print(write_libri_dev(args.out, data_dir))
    for kind in KINDS:
        for snr in SNRS:
            mixed = mixtures(clean, [u.audio for u in train], data_dir, kind, snr, args.seed)
            print(write_set(args.out, f"{kind}_{snr:g}", dev, mixed))


if __name__ == "__main__":
    main()
