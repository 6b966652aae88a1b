"""Stage 0 of the unseen-voices benchmark: one test manifest per set, of speakers never trained on.

- speechocean762_test: the corpus's test split (125 non-native speakers, children and adults),
  `--per-speaker` utterances of each, chosen at random with a fixed seed;
- commonvoice: all 100 clips of commonvoice_en_sample (95 speakers, home microphones);
- librispeech_mini: the 4 LibriSpeech test-clean utterances of speaker 1089;
- speechbrain: SpeechBrain's sample sentences, leaving out the 4 whose label belongs to another
  recording (the data README's `note`): scoring against a wrong reference measures nothing.

No model of this project has been trained, tuned or calibrated on any of these speakers.

    python recipes/unseen_voices/prepare.py --data-dir ../shared/data --out recipes/unseen_voices/data
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path


def rows(data_dir: Path, name: str) -> list[dict]:
    folder = data_dir / "speech" / name
    found = [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines() if line.strip()]
    return [{**row, "audio": str((folder / row["audio"]).resolve())} for row in found]


def speechocean_test(data_dir: Path, per_speaker: int, seed: int) -> list[dict]:
    by_speaker: dict[str, list[dict]] = {}
    for row in rows(data_dir, "speechocean762"):
        if row["split"] == "test":
            by_speaker.setdefault(row["speaker"], []).append(row)
    rng = random.Random(seed)
    chosen = []
    for speaker in sorted(by_speaker):
        chosen += rng.sample(by_speaker[speaker], min(per_speaker, len(by_speaker[speaker])))
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--out", default="recipes/unseen_voices/data")
    parser.add_argument("--per-speaker", type=int, default=2, help="speechocean762 test utterances per speaker")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data_dir, out = Path(args.data_dir), Path(args.out)
    sets = {
        "speechocean762_test": speechocean_test(data_dir, args.per_speaker, args.seed),
        "commonvoice": rows(data_dir, "commonvoice_en_sample"),
        "librispeech_mini": rows(data_dir, "librispeech_mini"),
        "speechbrain": [row for row in rows(data_dir, "speechbrain_asr") if not row.get("note")],
    }
    out.mkdir(parents=True, exist_ok=True)
    for name, chosen in sets.items():
        keep = ("id", "audio", "text", "speaker", "duration")
        (out / f"{name}.jsonl").write_text("".join(json.dumps({k: r[k] for k in keep}) + "\n" for r in chosen))
        speakers = len({r["speaker"] for r in chosen})
        print(f"{out / name}.jsonl: {len(chosen)} utterances, {speakers} speakers, "
              f"{sum(r['duration'] for r in chosen) / 60:.1f} min")


if __name__ == "__main__":
    main()
