"""Stage 0b: clips with no speech in them, for training the model to output nothing.

Whisper tiny (and our fine-tune of it, before this stage) writes words on noise and silence. These
clips teach CTC to stay blank and the decoder to end at once: crops of the TRAINING-split noise
recordings (asr.data.noise; the held-out kinds - babble, street, music, car, engine... - are never
used), babble of 4-8 training utterances at equal level (a crowd, where no one talker stands out),
quiet coloured noise and digital silence, at levels from whisper-quiet to loud.

    python recipes/whisper_ctc/no_speech.py --data-dir ../shared/data --out recipes/whisper_ctc/data
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import soundfile as sf

from asr.audio import SAMPLE_RATE, load_audio
from asr.data.augment import colored_noise, fit_to_length, make_babble
from asr.data.manifest import read_manifest
from asr.data.noise import TRAIN, NoiseBank


def scaled(clip: np.ndarray, rng: np.random.Generator, low_db: float, high_db: float) -> np.ndarray:
    """`clip` with its peak at a random level between low_db and high_db dBFS."""
    peak = float(np.abs(clip).max())
    gain = 10 ** (rng.uniform(low_db, high_db) / 20) / peak if peak > 0 else 0.0
    return (clip * gain).astype(np.float32)


def make_clips(bank: NoiseBank, speech: list[str], counts: dict[str, int], rng: np.random.Generator):
    """Yields (kind, waveform) for `counts[kind]` clips of each kind, 2-8 s long."""
    voices = [load_audio(path) for path in rng.choice(speech, size=min(60, len(speech)), replace=False)]
    for kind, count in counts.items():
        for _ in range(count):
            length = int(rng.uniform(2.0, 8.0) * SAMPLE_RATE)
            if kind == "noise":
                clip = scaled(fit_to_length(bank.choose(rng)[1], length, rng), rng, -30, -1)
            elif kind == "babble":
                talkers = [voices[i] for i in rng.choice(len(voices), size=int(rng.integers(4, 9)), replace=False)]
                clip = scaled(make_babble(talkers, length, rng), rng, -30, -3)
            elif kind == "quiet":
                clip = scaled(colored_noise(length, str(rng.choice(["white", "pink", "brown"])), rng), rng, -75, -40)
            else:  # digital silence
                clip = np.zeros(length, dtype=np.float32)
            yield kind, np.clip(clip, -1.0, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("ASR_DATA_DIR", "../shared/data")))
    parser.add_argument("--out", type=Path, default=Path("recipes/whisper_ctc/data"))
    parser.add_argument("--noise", type=int, default=160, help="crops of training noise recordings")
    parser.add_argument("--babble", type=int, default=80, help="crowds of training utterances")
    parser.add_argument("--quiet", type=int, default=40, help="quiet white/pink/brown noise")
    parser.add_argument("--silence", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    bank = NoiseBank.from_manifests([args.data_dir / "noise" / "manifest.jsonl"], TRAIN)
    speech = [u.audio for u in read_manifest(args.out / "train.jsonl")]
    clip_dir = args.out / "no_speech"
    clip_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    counts = {"noise": args.noise, "babble": args.babble, "quiet": args.quiet, "silence": args.silence}
    for index, (kind, clip) in enumerate(make_clips(bank, speech, counts, rng)):
        path = clip_dir / f"{kind}_{index:04d}.flac"
        sf.write(str(path), clip, SAMPLE_RATE, format="FLAC")
        rows.append({"id": f"no_speech_{kind}_{index:04d}", "audio": str(path.resolve()), "text": None,
                     "duration": len(clip) / SAMPLE_RATE, "speaker": kind})
    manifest = args.out / "no_speech.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"{manifest}: {len(rows)} clips, {sum(r['duration'] for r in rows) / 60:.1f} min")


if __name__ == "__main__":
    main()
