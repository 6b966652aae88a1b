"""Where the attention goes when long stretches of noise surround the voice, per layer and head.

In the sweep's clips speech fills 80-95 % of the frames, so attention on speech is near its chance
level whatever the model does. Here each unseen utterance is placed in the middle of held-out noise
(test split of the noise bank) as long as itself (half before, half after), so speech holds about
half of the frames, and mixed at each SNR (active speech over noise). The decoder's cross-attention
of the transcript it writes is measured over the frames that hold audio.

Attention sinks are left out: a Whisper decoder parks much of some heads' attention on the first
encoder frames whatever they hold. A frame position counts as a sink for a head when, in these
clips, where the first and last stretch is always noise, it draws more than SINK_SHARE of the
head's attention on average. The sink frames are dropped from the rows, which are renormalised,
and from the chance level; the table also gives the share the sinks took.

Both the default model and Whisper tiny.en imported unchanged are measured, on the same clips;
where the two hold the same encoder and decoder (the script checks), one table stands for both.

    python recipes/unseen_voices/focus.py --out recipes/unseen_voices/FOCUS.md
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

import asr
from asr.analysis.focus import speech_mask
from asr.analysis.markdown import markdown_table
from asr.analysis.noise_focus import over_audio
from asr.audio import load_audio
from asr.data.augment import fit_to_length
from asr.data.manifest import read_manifest
from asr.data.noise import TEST, NoiseBank
from asr.noisy import mix_below_full_scale

RATE = 16000
SINK_SHARE = 0.05  # a position drawing more than this of a head's attention, while it holds noise, is a sink
EDGE = 5  # frame positions examined for sinks at either end


def same_attention_weights(a, b) -> bool:
    """Whether two models hold the same encoder and decoder (the CTC head aside)."""
    left = {k: v for k, v in a.state_dict().items() if not k.startswith("ctc.")}
    right = {k: v for k, v in b.state_dict().items() if not k.startswith("ctc.")}
    return left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)


def surrounded(speech: np.ndarray, noise_bank: NoiseBank, snr_db: float, rng: np.random.Generator
               ) -> tuple[np.ndarray, np.ndarray]:
    """(noisy clip, clean clip): the speech with as much noise-only time around it, mixed at snr_db."""
    lead = len(speech) // 2
    clean = np.concatenate([np.zeros(lead, np.float32), speech, np.zeros(len(speech) - lead, np.float32)])
    _, recording = noise_bank.choose(rng)
    mixed, _ = mix_below_full_scale(clean, fit_to_length(recording, len(clean), rng), snr_db, RATE)
    return mixed.astype(np.float32), clean


def measure(recognizer, clips: list[tuple[np.ndarray, np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(cross-attention over audio frames (layers, heads, tokens, frames), speech mask) per decoded clip."""
    out = []
    subsampling = recognizer.model.encoder.subsampling.rate
    for noisy, clean in clips:
        result = recognizer.transcribe(noisy, return_attention=True)
        if result.cross_attention is None or result.cross_attention.shape[2] == 0:
            continue  # nothing written: no row of attention to measure
        frames = result.encoder_attention.shape[-1]
        out.append((over_audio(result.cross_attention, frames), speech_mask(clean, subsampling, frames)))
    return out


def sink_positions(measured: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """(layers, heads, 2 * EDGE) bool: positions 0..EDGE-1 from the start, then from the end, that are sinks."""
    shares = []
    for weights, speech in measured:
        mean = weights.mean(axis=2)  # (layers, heads, frames): the head's attention per frame
        edges = np.concatenate([mean[..., :EDGE], mean[..., -EDGE:][..., ::-1]], axis=-1)
        if speech[:EDGE].any() or speech[-EDGE:].any():
            continue  # only clips whose edges hold noise alone say what a sink is
        shares.append(edges)
    return np.mean(shares, axis=0) > SINK_SHARE


def shares(measured, sinks: np.ndarray) -> dict[str, np.ndarray]:
    """Means over clips, (layers, heads): speech share and chance without the sinks, and the sinks' share."""
    speech_share, chance, sink_share = [], [], []
    for weights, speech in measured:
        frames = weights.shape[-1]
        keep = np.ones(weights.shape[:2] + (frames,), bool)
        keep[..., :EDGE] &= ~sinks[..., :EDGE]
        keep[..., frames - EDGE :] &= ~sinks[..., EDGE:][..., ::-1]
        rows = weights * keep[:, :, None, :]
        kept = rows.sum(-1, keepdims=True)
        rows = rows / np.where(kept > 0, kept, 1.0)
        speech_share.append(rows[..., speech].sum(-1).mean(-1))
        chance.append((keep & speech).sum(-1) / keep.sum(-1))
        sink_share.append(1.0 - kept[..., 0].mean(-1))
    return {"speech_share": np.mean(speech_share, 0), "chance": np.mean(chance, 0), "sink_share": np.mean(sink_share, 0)}


def focus_tables(system: str, results: dict, named: bool) -> str:
    """Markdown: the share of attention on the voice over all heads, and per layer and head."""
    names = list(results)
    normalised = {name: (r["speech_share"] - r["chance"]) / (1 - r["chance"]) for name, r in results.items()}
    layers, heads = normalised[names[0]].shape
    summary = [[name, str(r["clips"]), f"{r['chance'].mean():.2f}", f"{r['speech_share'].mean():.2f}",
                f"{normalised[name].mean():+.2f}", f"{r['sink_share'].mean():.2f}"] for name, r in results.items()]
    per_head = [[str(layer), str(head), str(int(max(r["sinks"][layer, head].sum() for r in results.values()))),
                 *(f"{normalised[name][layer, head]:+.2f}" for name in names)]
                for layer in range(layers) for head in range(heads)]
    title = f" ({system})" if named else ""
    return (f"## Over all heads{title}\n\n" + markdown_table(
        ["condition", "clips", "chance", "on speech", "normalised", "sink share"], summary) +
        f"\n\n## Normalised share per layer and head{title}\n\n" + markdown_table(
        ["layer", "head", "sink frames", *names], per_head))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--manifest", type=Path, default=Path("recipes/unseen_voices/data/commonvoice.jsonl"))
    parser.add_argument("--clips", type=int, default=30)
    parser.add_argument("--kinds", default="babble,music,street")
    parser.add_argument("--snrs", default="5,0")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("recipes/unseen_voices/FOCUS.md"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    default = asr.load_model()
    tiny_dir = Path("exp/whisper_ctc/whisper_tiny_en")
    unchanged = asr.load_model(tiny_dir) if tiny_dir.is_dir() else None
    same = unchanged is not None and same_attention_weights(default.model, unchanged.model)
    systems = {"default": default, **({"tiny.en unchanged": unchanged} if unchanged is not None and not same else {})}
    utterances = read_manifest(args.manifest)[: args.clips]
    speech = [load_audio(u.audio, RATE) for u in utterances]
    results = {system: {} for system in systems}
    for kind in args.kinds.split(","):
        bank = NoiseBank.from_manifests([args.data_dir / "noise" / "manifest.jsonl"], TEST, kinds=[kind])
        for snr in [float(s) for s in args.snrs.split(",")]:
            rng = np.random.default_rng([int(snr * 10) + 1000, len(kind)])
            clips = [surrounded(s, bank, snr, rng) for s in speech]  # the same noisy clips for every system
            for system, recognizer in systems.items():
                measured = measure(recognizer, clips)
                sinks = sink_positions(measured)
                results[system][f"{kind} {snr:g} dB"] = {**shares(measured, sinks), "clips": len(measured), "sinks": sinks}
            print(f"{kind} {snr:g} dB: done", file=sys.stderr, flush=True)
    tables = "\n\n".join(focus_tables(system, by_condition, len(systems) > 1) for system, by_condition in results.items())
    Path("exp/unseen_voices").mkdir(parents=True, exist_ok=True)
    Path("exp/unseen_voices/focus.json").write_text(json.dumps(
        {system: {name: {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in r.items()}
                  for name, r in by_condition.items()} for system, by_condition in results.items()}, indent=1) + "\n")
    revision = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    head = [
        "# Cross-attention on the voice, with noise around it, per layer and head", "",
        f"Command: `python {' '.join(sys.argv)}` at git {revision}; {len(utterances)} utterances of "
        f"`{args.manifest}`, each in the middle of held-out noise as long as itself.", "",
        ("The default model and Whisper tiny.en unchanged hold the same encoder and decoder weights "
         "(checked by this script): one set of numbers stands for both." if same else
         "The default model and Whisper tiny.en unchanged (exp/whisper_ctc/whisper_tiny_en), on the same noisy clips."
         if unchanged is not None else
         "The unchanged model was not found (exp/whisper_ctc/whisper_tiny_en): these are the default's."),
        "",
        "chance: share of the (non-sink) frames that hold speech; on speech: share of the decoder's attention "
        "on them; normalised: (on speech - chance) / (1 - chance), 0 for attention blind to the voice, 1 for "
        "attention on the voice alone; sink share: attention the sink frames took before they were left out; "
        "sink frames: how many edge positions count as sinks for the head (most in any condition).",
        "",
    ]
    args.out.write_text("\n".join(head) + "\n" + tables + "\n")
    print(args.out)


if __name__ == "__main__":
    main()
