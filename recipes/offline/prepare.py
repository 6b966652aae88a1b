"""Stage 2 of the offline recipe: train/dev/test manifests from the synthetic corpus and the
shared real speech.

Training: the synthetic training voices, the LJ Speech clips before the last 105, and four of the
six free-spoken-digit speakers. Held out, never trained on: the synthetic test voices (one per
engine), the FSDD speakers nicolas and theo, the last 85 LJ Speech clips, and the SpeechBrain and
LibriSpeech-mini speakers (both too unlike anything here to train on, kept as the hardest test).
The same real-speech split as recipes/whisper_ctc, so the two recipes' tables compare.

    python recipes/offline/prepare.py --data-dir ../shared/data --data recipes/offline/data
"""

from __future__ import annotations

import argparse
import os
import random
from pathlib import Path

from asr.data.manifest import Utterance, read_manifest, write_jsonl

TEST_FSDD_SPEAKERS = {"nicolas", "theo"}
LJ_TEST, LJ_DEV = 85, 20
FSDD_DEV = 40


def write(utterances: list[Utterance], path: Path) -> None:
    write_jsonl(utterances, path)
    print(f"{path}: {len(utterances)} utterances, {sum(u.duration for u in utterances) / 60:.1f} min, "
          f"{len({u.speaker for u in utterances})} speakers")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("ASR_DATA_DIR", "../shared/data")))
    parser.add_argument("--data", type=Path, default=Path("recipes/offline/data"), help="synth_*.jsonl are here; output too")
    args = parser.parse_args()
    speech, data = args.data_dir.resolve() / "speech", args.data  # absolute audio paths in the manifests
    rng = random.Random(0)

    lj = sorted(read_manifest(speech / "ljspeech_subset/manifest.jsonl"), key=lambda u: u.id)
    lj_train, lj_dev, lj_test = lj[: -LJ_TEST - LJ_DEV], lj[-LJ_TEST - LJ_DEV : -LJ_TEST], lj[-LJ_TEST:]
    fsdd = read_manifest(speech / "fsdd/manifest.jsonl")
    fsdd_train = [u for u in fsdd if u.speaker not in TEST_FSDD_SPEAKERS]
    fsdd_test = [u for u in fsdd if u.speaker in TEST_FSDD_SPEAKERS]
    rng.shuffle(fsdd_train)
    rng.shuffle(fsdd_test)
    synth = {split: read_manifest(data / f"synth_{split}.jsonl") for split in ("train", "dev", "test")}
    rng.shuffle(synth["test"])

    write(synth["train"] + lj_train + fsdd_train[FSDD_DEV:], data / "train.jsonl")
    write(synth["dev"] + lj_dev + fsdd_train[:FSDD_DEV], data / "dev.jsonl")
    write(synth["test"], data / "test_synth_voices.jsonl")
    write(fsdd_test[:200], data / "test_fsdd.jsonl")
    write(lj_test, data / "test_ljspeech.jsonl")
    write(read_manifest(speech / "speechbrain_asr/manifest.jsonl") + read_manifest(speech / "librispeech_mini/manifest.jsonl"),
          data / "test_other_real.jsonl")
    # The noise sweep decodes each clip ~20 times per model: 20 from each held-out kind of voice.
    by_voice: dict[str, list[Utterance]] = {}
    for utt in synth["test"]:
        by_voice.setdefault(utt.speaker, []).append(utt)
    mixed = [u for utts in by_voice.values() for u in utts[:5]] + fsdd_test[:20] + lj_test[:20]
    write(mixed, data / "test_noise_mix.jsonl")


if __name__ == "__main__":
    main()
