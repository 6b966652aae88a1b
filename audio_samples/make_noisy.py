"""Writes noisy versions of the clean clips in manifest.jsonl at known SNRs: noisy/*.flac and noisy_manifest.jsonl.

    python audio_samples/make_noisy.py [--data-dir DIR]

The noise is held out of training and can be redistributed with the clips:
- babble: five LibriSpeech test-other readers talking at once (CC BY 4.0), from the shared data's
  librispeech_untranscribed set; test-other is never training data;
- music: the two guitar recordings of the shared noise bank, which asr.data.noise holds out for
  testing (MIT).
The shared data's street and EMGSE babble recordings would be the obvious choice, but their source
states no licence, so they are not shipped here.

SNR is measured on active speech (asr.data.augment.mix_at_snr). The seed is fixed and a clip gets
the same noise stretch at every SNR, so its versions differ in noise level alone. Rerunning rewrites
the same files and the whole noisy_manifest.jsonl. Clips are written at 16 kHz (the 8 kHz FSDD clip
is resampled).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import soundfile as sf

from asr.audio import SAMPLE_RATE, load_audio
from asr.data.augment import fit_to_length, make_babble, mix_at_snr
from asr.data.noise import TEST, NoiseBank

HERE = Path(__file__).resolve().parent
SNRS_DB = (10.0, 0.0)
SEED = 20240
BABBLE_TALKERS = 5
LIBRISPEECH_ATTRIBUTION = ("CC BY 4.0, LibriSpeech ASR corpus, V. Panayotov, G. Chen, D. Povey, S. Khudanpur "
                           "(via resemble-ai/Resemblyzer @ 15d828e)")


def babble_voices(data_dir: Path) -> list[np.ndarray]:
    """The first test-other utterance of each of the first BABBLE_TALKERS readers."""
    set_dir = data_dir / "speech" / "librispeech_untranscribed"
    first_by_speaker: dict[str, str] = {}
    for line in (set_dir / "manifest.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row["audio"].startswith("audio/test-other/"):
            first_by_speaker.setdefault(row["speaker"], row["audio"])
    chosen = sorted(first_by_speaker.items())[:BABBLE_TALKERS]
    return [load_audio(set_dir / audio) for _, audio in chosen]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = Path(os.environ.get("ASR_DATA_DIR", HERE.parent.parent / "shared" / "data"))
    parser.add_argument("--data-dir", type=Path, default=default, help=f"shared data (default {default})")
    args = parser.parse_args()

    music = NoiseBank.from_manifests([args.data_dir / "noise" / "manifest.jsonl"], TEST, kinds=["music"])
    voices = babble_voices(args.data_dir)
    clips = [json.loads(line) for line in (HERE / "manifest.jsonl").read_text().splitlines() if line.strip()]
    out_dir = HERE / "noisy"
    out_dir.mkdir(exist_ok=True)
    rows = []
    for clip_index, clip in enumerate(clips):
        speech = load_audio(HERE / clip["audio"], SAMPLE_RATE)
        for kind_index, kind in enumerate(("babble", "music")):
            rng = np.random.default_rng([SEED, clip_index, kind_index])
            if kind == "babble":
                noise = make_babble(voices, len(speech), rng)
                noise_id, noise_source, noise_license = f"librispeech_test_other_babble{BABBLE_TALKERS}", \
                    "LibriSpeech test-other, 5 readers", LIBRISPEECH_ATTRIBUTION
            else:
                entry, recording = music.choose(rng)
                noise = fit_to_length(recording, len(speech), rng)
                noise_id, noise_source, noise_license = entry.id, entry.source, "MIT"
            for snr in SNRS_DB:
                mixed = mix_at_snr(speech, noise, snr)
                peak = float(np.max(np.abs(mixed)))
                if peak > 1.0:  # scale the whole mixture, which keeps its SNR, rather than clip it
                    mixed *= 0.99 / peak
                name = f"{clip['id']}__{kind}__snr{snr:g}"
                sf.write(out_dir / f"{name}.flac", mixed, SAMPLE_RATE, subtype="PCM_16")
                rows.append({
                    "id": name, "audio": f"noisy/{name}.flac", "text": clip["text"],
                    "duration": round(len(mixed) / SAMPLE_RATE, 3), "speaker": clip["speaker"],
                    "clean_id": clip["id"], "noise": noise_id, "snr_db": snr,
                    "source": clip["source"], "license": clip["license"],
                    "noise_source": noise_source, "noise_license": noise_license,
                })
    (HERE / "noisy_manifest.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    print(f"wrote {len(rows)} noisy clips to {out_dir} and noisy_manifest.jsonl")


if __name__ == "__main__":
    main()
