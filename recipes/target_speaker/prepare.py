"""Test mixtures for target-speaker recognition, from speakers never used in training.

Every speechocean762 test speaker is a target once per condition: one of their utterances (three
words or more) talked over by other test speakers, each reading whole utterances that start up to
half a second apart from the target's and run on after it, so that some frames hold the target
alone and some only the others. Three other utterances of the target are its enrollment; three of
the first other talker that are not in the mixture are theirs (for the control: enrolling the
wrong person should bring out that person's words).

Conditions: the target alone (clean), two talkers at 5 and 0 dB signal-to-interference ratio
(active speech power of the target over that of the other), three talkers at 0 dB (the target
over the sum of the two others), the target in a held-out babble crowd recording at 5 dB SNR, and
the other talker alone with the target silent (target_absent: enrolled, nothing should come out).
Each row of a condition's manifest carries the target's transcript (`text`), the first other
talker's (`interferer_text`), both enrollments, and where each talker speaks (seconds).

    python recipes/target_speaker/prepare.py --data-dir ../shared/data --out exp/target_speaker

`--split dev` makes the same conditions (but the crowd, whose recordings are test noise) from the
ten speechocean762 train-split speakers that every training here keeps out (the development
speakers of recipes/whisper_ctc), several targets each: what a setting of enrolled recognition is
chosen on.

    python recipes/target_speaker/prepare.py --split dev --targets-per-speaker 6 --out exp/target_speaker_dev
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import soundfile as sf

from asr.audio import load_audio
from asr.data.augment import mix_at_sir
from asr.data.manifest import Utterance, read_manifest
from asr.noisy import Condition, below_full_scale, held_out_noise, noisy_copy, seeded_rng

SAMPLE_RATE = 16000
SEED = 0
ENROLL_UTTERANCES = 3
MIN_TARGET_WORDS = 3
# name -> (other talkers, SIR dB); crowd: a babble recording at CROWD_SNR_DB instead of talkers;
# absent: the other talker alone, the target silent (with the target enrolled, nothing should come out)
CONDITIONS = {"clean": (0, None), "two_talker_5": (1, 5.0), "two_talker_0": (1, 0.0),
              "three_talker_0": (2, 0.0), "crowd_5": (0, None), "target_absent": (1, None)}
CROWD = "crowd_5"
ABSENT = "target_absent"
CROWD_SNR_DB = 5.0


def split_speakers(data_dir: Path, split: str) -> dict[str, list[Utterance]]:
    """speechocean762's test split by speaker (the speakers no training ever used), or, for "dev",
    the train-split speakers every training here keeps out."""
    manifest = data_dir / "speech" / "speechocean762" / "manifest.jsonl"
    if split == "dev":
        sys.path.insert(0, str(Path(__file__).parents[1] / "whisper_ctc"))
        from gate_head import DEV_SPEAKERS, speech_sets

        _, dev = speech_sets(data_dir, per_speaker=1000, dev_speakers=DEV_SPEAKERS, seed=0)
        chosen = {u.id for u in dev}
    else:
        chosen = {row["id"] for row in map(json.loads, manifest.read_text().splitlines()) if row["split"] == "test"}
    speakers: dict[str, list[Utterance]] = defaultdict(list)
    for u in read_manifest(manifest):
        if u.id in chosen:
            speakers[u.speaker].append(u)
    return {s: sorted(us, key=lambda u: u.id) for s, us in sorted(speakers.items()) if len(us) > 2 * ENROLL_UTTERANCES}


def talker_run(utterances: list[Utterance], seconds: float, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    """Whole utterances of one talker, joined by 0.2-0.6 s pauses, until at least `seconds`."""
    parts, texts, used = [], [], 0
    for i in rng.permutation(len(utterances)):
        if parts:
            parts.append(np.zeros(int(rng.uniform(0.2, 0.6) * SAMPLE_RATE), np.float32))
        parts.append(load_audio(utterances[int(i)].audio, SAMPLE_RATE))
        texts.append(utterances[int(i)].text)
        used = sum(len(p) for p in parts)
        if used >= seconds * SAMPLE_RATE:
            break
    return np.concatenate(parts), texts


def placed(audio: np.ndarray, start: int, length: int) -> np.ndarray:
    out = np.zeros(length, np.float32)
    out[start: start + len(audio)] = audio[: length - start]
    return out


def mixture(name: str, target: Utterance, speakers: dict[str, list[Utterance]], enrolled: dict[str, list[Utterance]],
            crowd, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """One condition's audio for `target`, and its manifest fields beyond id, audio and text."""
    talkers, sir = CONDITIONS[name]
    speech = load_audio(target.audio, SAMPLE_RATE)
    others = [s for s in speakers if s != target.speaker]
    runs = []
    for other in rng.choice(others, size=talkers, replace=False):
        pool = [u for u in speakers[str(other)] if u not in enrolled[str(other)]]
        audio, texts = talker_run(pool, len(speech) / SAMPLE_RATE + 1.0, rng)
        runs.append((str(other), audio, texts, int(rng.uniform(0.0, 0.5) * SAMPLE_RATE)))
    lead = int(rng.uniform(0.0, 0.5) * SAMPLE_RATE)
    length = max([lead + len(speech)] + [start + len(audio) for _, audio, _, start in runs]) + SAMPLE_RATE // 4
    clean = placed(speech, lead, length)
    fields = {"speaker": target.speaker, "enroll": [u.audio for u in enrolled[target.speaker]],
              "target_span": [lead / SAMPLE_RATE, (lead + len(speech)) / SAMPLE_RATE], "condition": name}
    if runs:
        interference = sum(placed(audio, start, length) for _, audio, _, start in runs)
        mixed = interference if name == ABSENT else mix_at_sir(clean, interference, sir)
        first, _, texts, _ = runs[0]
        fields.update({"sir_db": sir, "interferer": first, "interferer_text": " ".join(texts),
                       "interferer_enroll": [u.audio for u in enrolled[first]],
                       "interferer_spans": [[start / SAMPLE_RATE, (start + len(audio)) / SAMPLE_RATE]
                                            for _, audio, _, start in runs]})
    elif name == CROWD:
        mixed, noise_id, _ = noisy_copy(clean, target.id, Condition("babble", CROWD_SNR_DB), crowd, SEED)
        fields.update({"noise": noise_id, "snr_db": CROWD_SNR_DB})
    else:
        mixed = clean
    return below_full_scale(mixed)[0].astype(np.float32), fields


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--out", default="exp/target_speaker")
    parser.add_argument("--split", choices=("test", "dev"), default="test")
    parser.add_argument("--speakers", type=int, default=0, help="the first N speakers only (0: all)")
    parser.add_argument("--targets-per-speaker", type=int, default=1)
    parser.add_argument("--conditions", help="default: all (dev: all but the crowd)")
    args = parser.parse_args()
    data_dir, out = Path(args.data_dir), Path(args.out)
    conditions = args.conditions.split(",") if args.conditions else \
        [c for c in CONDITIONS if args.split == "test" or c != CROWD]
    if args.split == "dev" and CROWD in conditions:
        raise SystemExit(f"{CROWD} is made of test-split noise: not a development condition")
    speakers = split_speakers(data_dir, args.split)
    if args.speakers:
        speakers = dict(list(speakers.items())[: args.speakers])
    crowd = held_out_noise(data_dir / "noise", ["babble"])["babble"] if CROWD in conditions else None
    targets, enrolled = [], {}
    for speaker, utterances in speakers.items():
        rng = seeded_rng(SEED, "enroll", speaker)
        order = [utterances[int(i)] for i in rng.permutation(len(utterances))]
        long_enough = [u for u in order if len(u.text.split()) >= MIN_TARGET_WORDS] or order
        chosen = long_enough[: args.targets_per_speaker]
        targets += chosen
        enrolled[speaker] = [u for u in order if u not in chosen][:ENROLL_UTTERANCES]
    for name in conditions:
        (out / name).mkdir(parents=True, exist_ok=True)
        rows = []
        for target in targets:
            audio, fields = mixture(name, target, speakers, enrolled, crowd, seeded_rng(SEED, name, target.id))
            path = out / name / f"{target.id}.wav"
            sf.write(path, audio, SAMPLE_RATE, subtype="PCM_16")
            text = target.text
            if name == ABSENT:  # the target is enrolled but says nothing
                text, fields["target_span"] = "", [0.0, 0.0]
            rows.append({"id": target.id, "audio": str(path.resolve()), "text": text,
                         "duration": round(len(audio) / SAMPLE_RATE, 3), **fields})
        manifest = out / f"{name}.jsonl"
        tmp = manifest.with_name(f".{manifest.name}.tmp")
        tmp.write_text("".join(json.dumps(row) + "\n" for row in rows))
        tmp.replace(manifest)
        print(f"{manifest}: {len(rows)} mixtures")


if __name__ == "__main__":
    main()
