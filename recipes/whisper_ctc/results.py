"""Stage 6: RESULTS.md from the reports that stages 4-5 wrote (nothing typed by hand).

    python recipes/whisper_ctc/results.py --exp exp/whisper_ctc --out recipes/whisper_ctc/RESULTS.md
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

SYSTEMS = {
    "default": "whisper-tiny-ctc (ours, default settings)",
    "whisper_tiny_en": "Whisper tiny.en imported, unchanged (attention, 30 s padding)",
    "faster-whisper-int8": "faster-whisper tiny.en int8, beam 5",
    "pocketsphinx": "pocketsphinx 5.1.1 en-us",
}
SETS = {
    "ljspeech": "LJ Speech, held-out clips (85)",
    "fsdd": "FSDD digits, held-out speakers nicolas and theo (100)",
    "speechbrain": "SpeechBrain samples, 2 speakers (10)",
    "librispeech": "LibriSpeech test-clean, speaker 1089 (4)",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp", type=Path, default=Path("exp/whisper_ctc"))
    parser.add_argument("--out", type=Path, default=Path("recipes/whisper_ctc/RESULTS.md"))
    args = parser.parse_args()
    revision = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    lines = [
        "# whisper_ctc: results",
        "",
        f"Produced by `python recipes/whisper_ctc/results.py` from the reports of `recipes/whisper_ctc/run.sh --stage 4"
        f" --stop-stage 4` (git {revision}). WER in %, after `asr.text.normalize` on both sides; real speech"
        " from speakers or clips held out of fine-tuning; a dash marks a run that has no report. The SpeechBrain"
        " references carry 4 known label errors (see ../shared/data/README.md), the same for every system.",
        "",
        "| system | " + " | ".join(SETS.values()) + " |",
        "|---|" + "---:|" * len(SETS),
    ]
    for system, label in SYSTEMS.items():
        cells = []
        for name in SETS:
            summary = args.exp / "eval" / system / name / "summary.json"
            cells.append(f"{100 * json.loads(summary.read_text())['normalized']['wer']:.1f}" if summary.is_file() else "–")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    tuned = Path("recipes/whisper_ctc/tuned.json")
    if tuned.is_file():
        settings = json.loads(tuned.read_text())
        lines += ["", "Decoding settings chosen on dev data and training noise (`recipes/whisper_ctc/tune.py`):",
                  "", "```json", json.dumps(settings, indent=1), "```"]
    args.out.write_text("\n".join(lines) + "\n")
    print(args.out)


if __name__ == "__main__":
    main()
