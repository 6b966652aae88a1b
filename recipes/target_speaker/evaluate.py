"""Decodes prepare.py's mixtures without enrollment, with the target enrolled, and with the first
other talker enrolled instead (the control), and measures where attention goes.

Hypotheses go to OUT/<enrollment>/<condition>.jsonl ({"id", "text"}), one file per pass, written
when the pass is done (an interrupted run starts again at the first missing file). For mixtures
of two talkers, OUT/<enrollment>/<condition>.focus.json holds the attention measure: of the
attention mass on frames where the target speaks (alone or talked over) and on frames where only
the other talker speaks, the share on the target's, per layer, for the encoder's self-attention and the decoder's cross-attention. The first
EDGE_FRAMES encoder frames are left out (attention sinks: some heads park there whatever the
frames hold), as are frames after the audio (Whisper's padding).

    python recipes/target_speaker/evaluate.py --data exp/target_speaker --out exp/target_speaker/hyps
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from asr.analysis.noise_focus import over_audio
from asr.data.manifest import read_manifest
from asr.evaluate import write_hypotheses
from asr.recognizer import load_model

from prepare import CONDITIONS

log = logging.getLogger("target_speaker")
ENROLLMENTS = ("none", "target", "interferer")
FOCUS_CONDITIONS = ("two_talker_5", "two_talker_0")
EDGE_FRAMES = 5


def talker_masks(row: dict, frames: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """(frames where the target speaks, frames where only others speak), over encoder frames."""
    times = (np.arange(frames) + 0.5) * shift
    target = (times >= row["target_span"][0]) & (times < row["target_span"][1])
    others = np.zeros(frames, bool)
    for start, end in row.get("interferer_spans", []):
        others |= (times >= start) & (times < end)
    keep = np.arange(frames) >= EDGE_FRAMES
    return target & keep, others & ~target & keep


def target_share(weights: np.ndarray, target: np.ndarray, others: np.ndarray) -> Optional[np.ndarray]:
    """(layers,) share of the attention mass on the target's frames and the others' solo frames that
    is on the target's;
    weights (layers, heads, queries, frames) over the audio frames."""
    if not target.any() or not others.any():
        return None
    on_target = weights[..., target].sum(-1).mean(axis=(1, 2))
    on_others = weights[..., others].sum(-1).mean(axis=(1, 2))
    return on_target / np.maximum(on_target + on_others, 1e-12)


def decode_pass(recognizer, rows: list[dict], enrollment: str, embeddings: dict, focus: bool
                ) -> tuple[dict[str, str], dict]:
    texts, shares = {}, {"encoder": [], "cross": []}
    for row in rows:
        speaker = {"none": None, "target": row["speaker"], "interferer": row.get("interferer")}[enrollment]
        overrides = {"return_attention": focus}
        if speaker is not None:
            if speaker not in embeddings:
                paths = row["enroll"] if speaker == row["speaker"] else row["interferer_enroll"]
                embeddings[speaker] = recognizer.enroll(paths)
            overrides["speaker"] = embeddings[speaker]
        result = recognizer.transcribe(row["audio"], **overrides)
        texts[row["id"]] = result.text
        if focus:
            frames = min(int(result.duration / result.frame_timing.shift), result.encoder_attention.shape[-1])
            target, others = talker_masks(row, frames, result.frame_timing.shift)
            encoder = over_audio(result.encoder_attention[:, :, :frames], frames)
            shares["encoder"].append(target_share(encoder, target, others))
            if result.cross_attention is not None and result.cross_attention.shape[2]:
                shares["cross"].append(target_share(over_audio(result.cross_attention, frames), target, others))
    summary = {kind: {"utterances": len([v for v in values if v is not None]),
                      "per_layer": np.mean([v for v in values if v is not None], axis=0).tolist()}
               for kind, values in shares.items() if any(v is not None for v in values)}
    return texts, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="exp/target_speaker", help="prepare.py's --out")
    parser.add_argument("--out", default="exp/target_speaker/hyps")
    parser.add_argument("--model", default="whisper-tiny-ctc")
    parser.add_argument("--conditions", default=",".join(CONDITIONS))
    parser.add_argument("--enrollments", default=",".join(ENROLLMENTS), help="which passes to run")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    recognizer = load_model(args.model)
    embeddings: dict[str, tuple[float, ...]] = {}
    for condition in args.conditions.split(","):
        rows = [json.loads(line) for line in (Path(args.data) / f"{condition}.jsonl").read_text().splitlines()]
        read_manifest(Path(args.data) / f"{condition}.jsonl")  # a malformed manifest is named here
        for enrollment in args.enrollments.split(","):
            if enrollment == "interferer" and not all("interferer" in row for row in rows):
                continue
            out = Path(args.out) / enrollment / f"{condition}.jsonl"
            if out.exists():
                continue
            out.parent.mkdir(parents=True, exist_ok=True)
            log.info("%s, enrolled: %s (%d mixtures)", condition, enrollment, len(rows))
            texts, focus = decode_pass(recognizer, rows, enrollment, embeddings, condition in FOCUS_CONDITIONS)
            if focus:
                out.with_suffix(".focus.json").write_text(json.dumps(focus, indent=1))
            tmp = out.with_name(f".{out.name}.tmp")
            write_hypotheses(texts, tmp)
            tmp.replace(out)


if __name__ == "__main__":
    main()
