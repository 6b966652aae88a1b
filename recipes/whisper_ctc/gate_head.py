"""The teacher: Whisper tiny.en left unchanged, with a character CTC head trained on its frozen
encoder for the no-speech gate and the word time stamps.

It was the default model from git 3ad3279 until the distilled student (distill.py), which keeps its
CTC head and decoder, replaced it; it transcribes exactly as Whisper tiny.en does. The head reads
the encoder as decoding runs it (input padded to 30 s), so its features are computed that way once,
cached, and the head (one linear layer) is trained on the cache.

Training voices (never a test speaker): speechocean762's train split but for `--dev-speakers` of
its speakers kept for the gate's threshold, LJ Speech but its last 105 clips (the held-out test and
dev clips of prepare.py), and FSDD speakers george, jackson, lucas and yweweler; each utterance clean
and once with training-split noise, plus clips with no speech (training-split noise, quiet noise,
silence) whose target is nothing.

    python recipes/whisper_ctc/gate_head.py --data-dir ../shared/data --exp exp/whisper_ctc/gate_head

The head trained here stays with every model distill.py derives (it trains the encoder alone), so
`--head-from asr/models/whisper-tiny-ctc` rebuilds the teacher in minutes instead of an hour: the
head is taken from that folder once its decoder is checked to be tiny.en's, and only the gate is
calibrated again, on the unchanged encoder.

A student whose encoder reads short recordings in a window of its own (distill.py
`--short-window-share`) gives the head states it never saw: `--encoder-from FOLDER` trains a head
for that folder's encoder instead, each example encoded in the window the folder's decoding puts it
in, and writes the folder again with the new head and its gate calibrated:

    python recipes/whisper_ctc/gate_head.py --encoder-from exp/distill_short_cross/model \
        --exp exp/distill_short_cross/head --out exp/distill_short_cross/model_head --half
"""

from __future__ import annotations

import argparse
import json
import logging
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from asr.audio import load_audio
from asr.checkpoint import load_model_dir, save_model
from asr.model_folder import load_ctc_tokenizer
from asr.config import AugmentConfig
from asr.data.augment import build_augmenter, fit_to_length
from asr.data.manifest import read_manifest
from asr.data.noise import TRAIN, NoiseBank
from asr.decoding.options import DecodingOptions
from asr.importers.whisper import WHISPER_DECODING, ctc_tokenizer, import_whisper

log = logging.getLogger("gate_head")
SAMPLE_RATE = 16000
PAD_TO_FRAMES = WHISPER_DECODING["pad_to_frames"]
FSDD_TRAIN_SPEAKERS = {"george", "jackson", "lucas", "yweweler"}
TEACHER = "exp/whisper_ctc/gate_head/model"  # what distill.py teaches from
DEV_SPEAKERS = 10  # speechocean762 train-split speakers every training here keeps out, to choose on
LJ_HELD_OUT = 105  # prepare.py's LJ_TEST + LJ_DEV: the last clips of the subset
NOISE = AugmentConfig(noise_prob=0.6, colored_noise_prob=0.15, babble_prob=0.25, reverb_prob=0.2,
                      snr_min_db=-5.0, snr_max_db=20.0, speeds=[1.0])


def speech_sets(data_dir: Path, per_speaker: int, dev_speakers: int, seed: int) -> tuple[list, list]:
    """(train, dev) utterances; dev: whole speechocean762 train-split speakers kept out of training."""
    speech = data_dir / "speech"
    rng = random.Random(seed)
    ocean_manifest = speech / "speechocean762" / "manifest.jsonl"
    train_split = {row["id"] for row in map(json.loads, ocean_manifest.read_text().splitlines())
                   if row["split"] == "train"}  # the test split is for evaluation only
    ocean = [u for u in read_manifest(ocean_manifest) if u.id in train_split]
    speakers = sorted({u.speaker for u in ocean})
    rng.shuffle(speakers)
    held = set(speakers[:dev_speakers])
    train, dev = [], []
    for speaker in sorted(set(speakers)):
        own = [u for u in ocean if u.speaker == speaker]
        rng.shuffle(own)
        (dev if speaker in held else train).extend(own[:per_speaker])
    lj = read_manifest(speech / "ljspeech_subset" / "manifest.jsonl")[:-LJ_HELD_OUT]
    fsdd = [u for u in read_manifest(speech / "fsdd" / "manifest.jsonl")
            if u.speaker in FSDD_TRAIN_SPEAKERS and u.id.endswith(("_0", "_1"))]
    return train + lj + fsdd, dev


def no_speech_clips(data_dir: Path, count: int, seed: int) -> list[np.ndarray]:
    """Training-split noise at any level, quiet noise and silence: what the gate must keep out."""
    bank = NoiseBank.from_manifests([data_dir / "noise" / "manifest.jsonl"], TRAIN)
    rng = np.random.default_rng(seed)
    clips = []
    for i in range(count):
        length = int(rng.uniform(1.0, 8.0) * SAMPLE_RATE)
        if i % 10 == 0:
            clips.append(np.zeros(length, np.float32))
            continue
        _, recording = bank.choose(rng)
        noise = fit_to_length(recording, length, rng)
        level_db = rng.uniform(-60.0, -10.0)  # RMS re full scale, quiet rooms to loud streets
        rms = float(np.sqrt(np.mean(noise**2))) or 1.0
        clips.append((noise * (10 ** (level_db / 20) / rms)).astype(np.float32))
    return clips


@torch.no_grad()
def encode(model, waveforms: list[np.ndarray], pad_to_frames: int = PAD_TO_FRAMES) -> list[torch.Tensor]:
    """Encoder states of the frames that hold audio, with the input padded to `pad_to_frames`."""
    lengths = torch.tensor([len(w) for w in waveforms])
    batch = torch.zeros(len(waveforms), int(lengths.max()))
    for i, w in enumerate(waveforms):
        batch[i, : len(w)] = torch.from_numpy(w)
    enc = model.encode(batch, lengths, pad_to_frames=pad_to_frames)
    frames = torch.minimum(enc.lengths, model.encoded_frames(lengths)).tolist()
    return [enc.hidden[i, :n].half().clone() for i, n in enumerate(frames)]


def window_of(model, decoding: DecodingOptions, samples: int) -> int:
    """The encoder window, in frames, decoding reads a recording of `samples` samples in."""
    return decoding.window_frames(int(model.frontend.num_frames(torch.tensor([samples]))[0]))


def cache_features(model, tokenizer, examples: list[tuple[str, np.ndarray | str, str]], folder: Path,
                   augmenter, seed: int, decoding: DecodingOptions, chunk: int = 64) -> None:
    """Writes (features, CTC targets) in chunks of `chunk` examples, each encoded in the window
    `decoding` reads it in; a rerun skips finished chunks."""
    folder.mkdir(parents=True, exist_ok=True)
    for start in range(0, len(examples), chunk):
        path = folder / f"chunk_{start // chunk:04d}.pt"
        if path.is_file():
            continue
        part = examples[start : start + chunk]
        waves, targets = [], []
        for k, (kind, audio, text) in enumerate(part):
            wave = load_audio(audio, SAMPLE_RATE) if isinstance(audio, str) else audio
            wave = wave[: 30 * SAMPLE_RATE]
            if kind == "noisy":
                wave = augmenter(wave, np.random.default_rng([seed, start + k]))
            waves.append(np.asarray(wave, np.float32))
            targets.append(tokenizer.encode(text) if text else [])
        features = []
        windows = [window_of(model, decoding, len(w)) for w in waves]
        order = sorted(range(len(waves)), key=lambda j: (windows[j], len(waves[j])))
        for i in range(0, len(order), 8):  # batches of similar length
            idx = order[i : i + 8]
            for window in sorted({windows[j] for j in idx}):  # one window per encoder call
                same = [j for j in idx if windows[j] == window]
                features += list(zip(same, encode(model, [waves[j] for j in same], window)))
        features = [f for _, f in sorted(features, key=lambda p: p[0])]
        tmp = path.with_suffix(".tmp")
        torch.save({"features": features, "targets": targets}, tmp)
        tmp.replace(path)
        log.info("cached %s (%d of %d examples)", path.name, min(start + chunk, len(examples)), len(examples))


def load_cache(folder: Path) -> list[tuple[torch.Tensor, list[int]]]:
    pairs = []
    for path in sorted(folder.glob("chunk_*.pt")):
        data = torch.load(path, weights_only=True)
        pairs += list(zip(data["features"], data["targets"]))
    return pairs


def head_of(model, folder: Path) -> None:
    """Sets `model`'s CTC head (tiny.en imported here) to the one of the model folder `folder`, a
    student of distill.py: refused unless that folder's decoder and CTC alphabet are tiny.en's and
    this script's, i.e. unless its head was trained here on the unchanged encoder."""
    student, tokenizer, meta = load_model_dir(folder)
    own = model.decoder.state_dict()
    changed = [k for k, v in student.decoder.state_dict().items() if not torch.equal(v, own[k])]
    if changed:
        raise SystemExit(f"{folder}: its decoder is not tiny.en's ({len(changed)} tensors differ), so its "
                         "CTC head may not be this teacher's; train the head instead (no --head-from)")
    if getattr(load_ctc_tokenizer(folder, meta, tokenizer), "symbols", None) != ctc_tokenizer().symbols:
        raise SystemExit(f"{folder}: its CTC head does not write this script's alphabet")
    model.ctc.proj.load_state_dict(student.ctc.proj.state_dict())


def train_head(head: torch.nn.Linear, pairs, blank: int, epochs: int, lr: float, seed: int) -> None:
    """Fits the CTC head on cached encoder states (batches of 32, AdamW, cosine decay)."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * ((len(pairs) + 31) // 32)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.05)
    for epoch in range(epochs):
        order = torch.randperm(len(pairs), generator=generator).tolist()
        total, frames = 0.0, 0
        for i in range(0, len(order), 32):
            batch = [pairs[j] for j in order[i : i + 32]]
            lengths = torch.tensor([f.shape[0] for f, _ in batch])
            hidden = torch.nn.utils.rnn.pad_sequence([f.float() for f, _ in batch], batch_first=True)
            targets = torch.nn.utils.rnn.pad_sequence([torch.tensor(t, dtype=torch.long) for _, t in batch],
                                                      batch_first=True, padding_value=0)
            target_lengths = torch.tensor([len(t) for _, t in batch])
            log_probs = torch.log_softmax(head(hidden), dim=-1)
            loss = torch.nn.functional.ctc_loss(log_probs.transpose(0, 1), targets, lengths, target_lengths,
                                                blank=blank, reduction="sum", zero_infinity=True)
            optimizer.zero_grad()
            (loss / lengths.sum()).backward()
            optimizer.step()
            schedule.step()
            total, frames = total + float(loss), frames + int(lengths.sum())
        log.info("epoch %d: CTC loss %.4f per frame", epoch + 1, total / frames)


def training_noise(data_dir: Path, train: list, seed: int):
    """The augmenter of NOISE with the shared noise bank's and RIRs' training splits, babble of `train`."""
    return build_augmenter(replace(NOISE, noise_manifests=[str(data_dir / "noise" / "manifest.jsonl")],
                                   rir_manifests=[str(data_dir / "rir" / "manifest.jsonl")]),
                           [u.audio for u in train], seed)


def calibrate_gate(model_dir: Path, dev: list, augmenter, data_dir: Path, seed: int, keep: float) -> dict:
    """The no-speech threshold that lets `keep` of the dev speech through, clean and in training noise,
    with how much training-split noise (clips the head never saw) it keeps out."""
    from asr.recognizer import load_model

    recognizer = load_model(model_dir)
    clean = [load_audio(u.audio, SAMPLE_RATE) for u in dev]
    noisy = [augmenter(w, np.random.default_rng([seed, 10_000 + i])) for i, w in enumerate(clean)]
    noise = no_speech_clips(data_dir, 100, seed + 1)
    measure = lambda audios: np.array([r.speech_prob for r in recognizer.transcribe_batch(audios, mode="ctc_greedy")])  # noqa: E731
    speech, noise_probs = np.concatenate([measure(clean), measure(noisy)]), measure(noise)
    threshold = float(np.quantile(speech, 1.0 - keep))
    report = {"no_speech_threshold": threshold, "dev_speech_utterances": len(speech),
              "dev_speech_kept": float(np.mean(speech >= threshold)),
              "noise_clips": len(noise_probs), "noise_clips_kept_out": float(np.mean(noise_probs < threshold)),
              "speech_prob_percentiles": {q: float(np.quantile(speech, q / 100)) for q in (1, 5, 50)},
              "noise_prob_percentiles": {q: float(np.quantile(noise_probs, q / 100)) for q in (50, 95, 99)}}
    log.info("gate: %s", report)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--exp", default="exp/whisper_ctc/gate_head")
    parser.add_argument("--out", default=TEACHER)
    parser.add_argument("--per-speaker", type=int, default=8, help="speechocean762 utterances per train speaker")
    parser.add_argument("--dev-speakers", type=int, default=DEV_SPEAKERS)
    parser.add_argument("--no-speech", type=int, default=300, help="no-speech training clips")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=float, default=0.99, help="share of dev speech the gate lets through")
    parser.add_argument("--base", default="tiny.en", help="store only the weights that differ from this model")
    parser.add_argument("--half", action="store_true", help="store them as float16")
    parser.add_argument("--head-from", help="take the CTC head from this distill.py student instead of training it")
    parser.add_argument("--encoder-from", help="train the head for this model folder's encoder, in the windows its "
                        "decoding reads, instead of tiny.en's; --out gets that folder with the new head")
    args = parser.parse_args()
    if args.head_from and args.encoder_from:
        parser.error("--head-from takes a head for tiny.en's encoder; --encoder-from trains one for another")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    data_dir, exp = Path(args.data_dir), Path(args.exp)

    if args.encoder_from:
        model, tokenizer, meta = load_model_dir(args.encoder_from)
        notes, decoding = meta.get("info", {}), dict(meta.get("decoding", {}))
        if getattr(load_ctc_tokenizer(args.encoder_from, meta, tokenizer), "symbols", None) != ctc_tokenizer().symbols:
            raise SystemExit(f"{args.encoder_from}: its CTC head does not write this script's alphabet")
    else:
        (model, tokenizer, notes), decoding = import_whisper("tiny.en"), dict(WHISPER_DECODING)
    decoding.pop("no_speech_threshold", None)  # calibrated below, for this head
    model.eval()
    chars = ctc_tokenizer()
    train, dev = speech_sets(data_dir, args.per_speaker, args.dev_speakers, args.seed)
    augmenter = training_noise(data_dir, train, args.seed)
    examples = [(kind, u.audio, u.text) for u in train for kind in ("clean", "noisy")]
    examples += [("clean", clip, "") for clip in no_speech_clips(data_dir, args.no_speech, args.seed)]
    random.Random(args.seed).shuffle(examples)
    log.info("%d training examples from %d utterances; %d dev utterances", len(examples), len(train), len(dev))
    if args.head_from:
        head_of(model, Path(args.head_from))
    else:
        cache_features(model, chars, examples, exp / "features", augmenter, args.seed, DecodingOptions(**decoding))
        train_head(model.ctc.proj, load_cache(exp / "features"), model.config.blank_id, args.epochs, args.lr,
                   args.seed)
    info = {**(notes or {}), "ctc_head": "trained on the frozen encoder (recipes/whisper_ctc/gate_head.py)",
            "train_utterances": len(train), "dev_speakers": sorted({u.speaker for u in dev})}
    folder = save_model(model, tokenizer, exp / "head", info, chars, decoding)
    gate = calibrate_gate(folder, dev, augmenter, data_dir, args.seed, args.keep)
    (exp / "gate.json").write_text(json.dumps(gate, indent=2) + "\n")
    decoding["no_speech_threshold"] = round(gate["no_speech_threshold"], 4)
    print(save_model(model, tokenizer, args.out, {**info, "gate": gate}, chars, decoding, args.base, args.half))


if __name__ == "__main__":
    main()
