"""Noise training that forgets nothing: the unchanged tiny.en, hearing the clean audio, teaches a
student that hears it in noise.

The teacher is Whisper tiny.en unchanged, with its CTC head (gate_head.py). For every
training window it encodes the clean audio and transcribes it (greedy), so no transcript is needed
and any voice can be used. The student, initialised as the teacher, has its encoder trained while
the decoder and CTC head stay frozen, so everything the decoder knows about language is kept and
only what it is given to read changes (`--train-cross-attention` lets the decoder's reading of it
train too). The loss, on the noisy copy and on the clean audio alike:

    KL(teacher's token distributions on clean || student's)   over the teacher's transcript
    + mse_weight * mean squared distance of the encoder states from the teacher's on clean audio

The clean terms keep the student equal to the teacher on clean input (forgetting would show there
first); the noisy terms teach it to hear through noise.

Windows are built as decoding sees them: one to several utterances with short pauses between them,
at most 28 s, padded to Whisper's 30 s. Noise is the training split of the noise bank (recordings
unlike the test noise), babble of other training voices, coloured noise and room responses; no
speed change, so clean and noisy frames stay aligned.

Training voices (never a test speaker): speechocean762's train split but the gate's development
speakers (gate_head.speech_sets), LJ Speech but its held-out clips, FSDD's training speakers and the
untranscribed LibriSpeech readers. Resumable: checkpoints every `--save-every` steps.

    python recipes/whisper_ctc/distill.py --data-dir ../shared/data --exp exp/distill --steps 400
    python recipes/whisper_ctc/distill.py --exp exp/distill --export exp/distill/model   # a model folder
"""

from __future__ import annotations

import argparse
import copy
import csv
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from asr.audio import load_audio
from asr.checkpoint import list_checkpoints, load_latest_checkpoint, load_model_dir, save_checkpoint, save_model
from asr.model_folder import load_ctc_tokenizer, read_meta
from asr.config import AugmentConfig, FrontendConfig
from asr.data.augment import build_augmenter
from asr.data.manifest import read_manifest
from asr.decoding.beam_search import beam_search
from asr.decoding.options import SHORT_WINDOW_FRAMES, SHORT_WINDOW_MARGIN_FRAMES

# the same voices, development speakers and gate
from gate_head import DEV_SPEAKERS, TEACHER, calibrate_gate, speech_sets, training_noise
from speech_rate import token_cap, training_rates

log = logging.getLogger("distill")
SAMPLE_RATE = 16000
PAD_TO_FRAMES = 3000
MAX_WINDOW_SECONDS = 28.0
# --short-window-share: the longest window the student is given in the short window it also learns to
# read: recordings that fit there with decoding's margin.
MAX_SHORT_WINDOW_SECONDS = (SHORT_WINDOW_FRAMES - SHORT_WINDOW_MARGIN_FRAMES) * FrontendConfig.hop_length / SAMPLE_RATE
GATE_UTTERANCES_PER_SPEAKER = 8  # gate_head.py's --per-speaker: the same development utterances
# Harder than the fine-tuning's mix: babble is where Whisper fails first (issue 17).
NOISE = AugmentConfig(noise_prob=0.4, colored_noise_prob=0.1, babble_prob=0.4, reverb_prob=0.2,
                      snr_min_db=-5.0, snr_max_db=20.0, speeds=[1.0], clip_prob=0.02)
# The same share of noisy windows, a fifth of them music: synthetic (asr.data.music), or recordings
# with --music (the noise bank's training split holds none), since music is where the student trained
# on NOISE gained least on unseen voices against faster-whisper (issue 17).
NOISE_WITH_MUSIC = replace(NOISE, noise_prob=0.3, colored_noise_prob=0.05, babble_prob=0.35, music_prob=0.2)
NOISE_MIXES = {"bank": NOISE, "with-music": NOISE_WITH_MUSIC}
# The logit margin that makes a label all but certain (a one-hot label would put 0 * -inf in the KL).
CERTAIN = 30.0
NO_SPEECH_RULE = ("decoder_no_speech_threshold", "logprob_threshold")  # DecodingOptions fields


def training_voices(data_dir: Path, dev_speakers: int, seed: int) -> list[str]:
    """Audio paths of every training voice: gate_head's set (all of each speechocean762 train
    speaker's utterances) and the untranscribed LibriSpeech readers."""
    train, _ = speech_sets(data_dir, per_speaker=1000, dev_speakers=dev_speakers, seed=seed)
    untranscribed = read_manifest(data_dir / "speech" / "librispeech_untranscribed" / "manifest.jsonl")
    return [u.audio for u in train] + [u.audio for u in untranscribed]


def window(paths: list[str], rng: np.random.Generator, longest: float = MAX_WINDOW_SECONDS) -> np.ndarray:
    """Utterances drawn from `paths` joined by 0.2-1.0 s pauses, up to a length drawn between 3 s and
    `longest` (a single longer utterance is cut at `longest`)."""
    budget = int(rng.uniform(3.0, longest) * SAMPLE_RATE)
    parts, used = [], 0
    while used < budget:
        audio = load_audio(paths[int(rng.integers(len(paths)))], SAMPLE_RATE)
        if parts and used + len(audio) > budget:
            break
        if parts:
            pause = np.zeros(int(rng.uniform(0.2, 1.0) * SAMPLE_RATE), np.float32)
            parts.append(pause)
            used += len(pause)
        parts.append(audio[: int(longest * SAMPLE_RATE) - used])
        used += len(parts[-1])
    return np.concatenate(parts).astype(np.float32)


def noise_augmenter(data_dir: Path, voices: list[str], seed: int, mix: AugmentConfig = NOISE,
                    music_manifests: tuple[str, ...] = ()):
    """`mix` over the training splits of the shared noise and impulse-response banks and of
    `music_manifests` (recorded music; without them music is synthetic), babble of `voices`."""
    return build_augmenter(replace(mix, noise_manifests=[str(data_dir / "noise" / "manifest.jsonl")],
                                   rir_manifests=[str(data_dir / "rir" / "manifest.jsonl")],
                                   music_manifests=list(music_manifests)), voices, seed)


def start_from(student, folder: str) -> None:
    """Sets the student's encoder to `folder`'s, to go on training a student already distilled (the
    shipped default). Its speaker adapters are left out: enroll.py trains them for a finished encoder."""
    source, _, _ = load_model_dir(folder)
    own = student.encoder.state_dict()
    student.encoder.load_state_dict({k: v for k, v in source.encoder.state_dict().items() if k in own})


def batch_of(waveforms: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(w) for w in waveforms])
    batch = torch.zeros(len(waveforms), int(lengths.max()))
    for i, w in enumerate(waveforms):
        batch[i, : len(w)] = torch.from_numpy(w)
    return batch, lengths


@torch.no_grad()
def teach(teacher, clean: torch.Tensor, lengths: torch.Tensor, tokens_per_second: float = 6.0,
          silent: Sequence[int] = ()):
    """The teacher's encoder states, transcript (greedy) and teacher-forced log-probabilities.
    Rows in `silent` hold no speech to transcribe (enroll.py: the enrolled voice is absent): their
    transcript is empty and their one distribution is certain of the end, since on silence the
    teacher, as Whisper does, may say "you"."""
    hidden = teacher.encode(clean, lengths, pad_to_frames=PAD_TO_FRAMES).hidden
    memory_lengths = torch.full((len(clean),), hidden.shape[1])
    limits = [int(tokens_per_second * n / SAMPLE_RATE) + 10 for n in lengths.tolist()]
    hyps = beam_search(teacher, hidden, memory_lengths, 1, token_limits=limits)
    transcripts = [[] if row in silent else list(h[0].tokens) for row, h in enumerate(hyps)]
    targets = torch.nn.utils.rnn.pad_sequence([torch.tensor(t or [0], dtype=torch.long) for t in transcripts],
                                              batch_first=True, padding_value=-1)
    target_lengths = torch.tensor([len(t) for t in transcripts])
    tokens_in, tokens_out, in_lengths = teacher.decoder_io(targets, target_lengths)
    mask = torch.ones(len(clean), hidden.shape[1], dtype=torch.bool)
    log_probs = torch.log_softmax(teacher.decoder(tokens_in, in_lengths, hidden, mask).logits.float(), dim=-1)
    if silent:
        end_logits = torch.zeros(log_probs.shape[-1])
        end_logits[teacher.config.eos_id] = CERTAIN
        certain_end = torch.log_softmax(end_logits, dim=-1)
        for row in silent:
            log_probs[row, tokens_out[row] == teacher.config.eos_id] = certain_end
    return hidden, tokens_in, in_lengths, tokens_out != -1, log_probs, transcripts


def student_loss(student, audio, lengths, taught, mse_weight: float, speaker=None,
                 pad_to_frames: int = PAD_TO_FRAMES) -> tuple[torch.Tensor, float, float]:
    """KL from the teacher's token distributions plus mse_weight * encoder-state distance; `speaker`:
    the enrolled voice each row follows (enroll.py). A student window shorter than the teacher's
    (`pad_to_frames`) is held to the teacher's states over the same stretch of audio."""
    hidden_t, tokens_in, in_lengths, valid, log_probs_t, _ = taught
    hidden = student.encode(audio, lengths, pad_to_frames=pad_to_frames, speaker=speaker).hidden
    hidden_t = hidden_t[:, : hidden.shape[1]]
    mask = torch.ones(len(audio), hidden.shape[1], dtype=torch.bool)
    log_probs = torch.log_softmax(student.decoder(tokens_in, in_lengths, hidden, mask).logits.float(), dim=-1)
    kl = (log_probs_t.exp() * (log_probs_t - log_probs)).sum(-1)
    kl = (kl * valid).sum() / valid.sum()
    mse = F.mse_loss(hidden, hidden_t)
    return kl + mse_weight * mse, float(kl.detach()), float(mse.detach())


def trainable(model, cross_attention: bool = False) -> list[torch.nn.Parameter]:
    """The encoder's parameters, and with `cross_attention` the decoder's attention to it (each
    layer's cross-attention and the norm before it); the rest of the decoder and the CTC head stay
    the teacher's."""
    for p in model.parameters():
        p.requires_grad_(False)
    params = list(model.encoder.parameters())
    if cross_attention:
        params += [p for layer in model.decoder.layers
                   for p in (*layer.cross_attn.parameters(), *layer.cross_norm.parameters())]
    for p in params:
        p.requires_grad_(True)
    return params


def load_trained(student, state: dict) -> None:
    """A checkpoint's encoder, and its decoder where it has one (checkpoints before
    --train-cross-attention hold the encoder alone)."""
    student.encoder.load_state_dict(state["encoder"])
    if "decoder" in state:
        student.decoder.load_state_dict(state["decoder"])


def train(args, teacher, student, paths: list[str], augmenter, exp: Path) -> None:
    params = trainable(student, args.train_cross_attention)
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    schedule = lambda step: min(1.0, step / args.warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, step / args.steps)))  # noqa: E731
    start = 0
    latest = load_latest_checkpoint(exp / "checkpoints")
    if latest is not None:
        path, state = latest
        load_trained(student, state)
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["step"])
        log.info("resumed from %s (step %d)", path, start)
    csv_path = exp / "train.csv"
    fields = ["step", "student_frames", "lr", "kl_noisy", "kl_clean", "mse_noisy", "mse_clean", "audio_seconds", "seconds"]
    if not csv_path.exists():
        csv_path.write_text(",".join(fields) + "\n")
    student.train()
    for step in range(start + 1, args.steps + 1):
        began = time.time()
        rng = np.random.default_rng([args.seed, step])  # a step's data depends on the step alone: exact resume
        # No draw without the option: the shipped student's steps keep their data.
        short = args.short_window_share > 0 and rng.random() < args.short_window_share
        student_frames = SHORT_WINDOW_FRAMES if short else PAD_TO_FRAMES
        clean = [window(paths, rng, MAX_SHORT_WINDOW_SECONDS if short else MAX_WINDOW_SECONDS)
                 for _ in range(args.batch)]
        noisy = [augmenter(w, rng) for w in clean]
        clean_audio, lengths = batch_of(clean)
        noisy_audio, _ = batch_of(noisy)
        taught = teach(teacher, clean_audio, lengths)
        for group in optimizer.param_groups:
            group["lr"] = args.lr * schedule(step)
        optimizer.zero_grad()
        loss_noisy, kl_noisy, mse_noisy = student_loss(student, noisy_audio, lengths, taught, args.mse_weight,
                                                       pad_to_frames=student_frames)
        loss_noisy.backward()
        loss_clean, kl_clean, mse_clean = student_loss(student, clean_audio, lengths, taught, args.mse_weight,
                                                       pad_to_frames=student_frames)
        (args.clean_weight * loss_clean).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        row = [step, student_frames, optimizer.param_groups[0]["lr"], kl_noisy, kl_clean, mse_noisy, mse_clean,
               float(lengths.sum()) / SAMPLE_RATE, time.time() - began]
        with open(csv_path, "a", newline="") as f:
            csv.writer(f).writerow([f"{v:.5g}" if isinstance(v, float) else v for v in row])
        log.info("step %d (%d frames): KL noisy %.4f clean %.4f, MSE noisy %.4f clean %.4f (%.1f s)",
                 step, student_frames, kl_noisy, kl_clean, mse_noisy, mse_clean, row[-1])
        if step % args.save_every == 0 or step == args.steps:
            save_checkpoint({"encoder": student.encoder.state_dict(), "decoder": student.decoder.state_dict(),
                             "optimizer": optimizer.state_dict(), "step": step},
                            exp / "checkpoints" / f"step_{step:06d}.pt")
            for old in list_checkpoints(exp / "checkpoints")[:-2]:  # the last two, and every keep_every-th
                if int(old.stem.split("_")[1]) % args.keep_every:
                    old.unlink()
                    old.with_name(old.name + ".sha256").unlink(missing_ok=True)


def export(args, student, tokenizer, meta: dict, data_dir: Path, exp: Path) -> None:
    """Writes the latest checkpoint as a model folder, with its no-speech gate recalibrated: the
    student's encoder moved, so the teacher's CTC head reads it a little differently. Calibrated as
    gate_head.py calibrates (the same development speakers and training noise, the same share kept).
    Its decoding is capped at speech_rate.py's tokens per second of the training voices."""
    latest = load_latest_checkpoint(exp / "checkpoints")
    if latest is None:
        raise SystemExit(f"no checkpoint in {exp / 'checkpoints'}")
    path, state = latest
    load_trained(student, state)
    student.eval()
    info = {**meta.get("info", {}), "encoder": f"distilled in noise from the teacher, {path.name} "
            "(recipes/whisper_ctc/distill.py)"}
    chars = load_ctc_tokenizer(args.teacher, meta, tokenizer)
    decoding = dict(meta.get("decoding", {}))
    if args.short_window_share:  # it decodes short recordings in the window it learnt, and is calibrated so
        decoding["short_pad_to_frames"] = SHORT_WINDOW_FRAMES
    staged = save_model(student, tokenizer, exp / "uncalibrated", info, chars, decoding, "tiny.en", True)
    train, dev = speech_sets(data_dir, GATE_UTTERANCES_PER_SPEAKER, args.dev_speakers, args.seed)
    gate = calibrate_gate(staged, dev, training_noise(data_dir, train, args.seed), data_dir, args.seed, args.keep)
    cap = token_cap(training_rates(data_dir, tokenizer, args.dev_speakers, args.seed))
    decoding.update(no_speech_threshold=round(gate["no_speech_threshold"], 4), max_tokens_per_second=cap)
    if args.rule_from:  # the decoder's no-speech rule, which no_speech_rule.py set for the shipped default
        rule = read_meta(Path(args.rule_from)).get("decoding", {})
        decoding.update({k: rule[k] for k in NO_SPEECH_RULE if k in rule})
    print(save_model(student, tokenizer, args.export, {**info, "gate": gate}, chars, decoding, "tiny.en", True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--exp", default="exp/distill")
    parser.add_argument("--teacher", default=TEACHER, help="the unchanged tiny.en with its CTC head (gate_head.py)")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch", type=int, default=4, help="windows per step")
    parser.add_argument("--lr", type=float, default=3e-5)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--mse-weight", type=float, default=1.0)
    parser.add_argument("--clean-weight", type=float, default=1.0)
    parser.add_argument("--dev-speakers", type=int, default=DEV_SPEAKERS, help="as gate_head.py: kept for the gate")
    parser.add_argument("--save-every", type=int, default=20)
    parser.add_argument("--keep-every", type=int, default=80, help="checkpoints kept for the forgetting table")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise", choices=sorted(NOISE_MIXES), default="bank",
                        help="bank: NOISE, the shipped student's mix; with-music: NOISE_WITH_MUSIC")
    parser.add_argument("--music", nargs="+", default=(), metavar="BANK_MANIFEST",
                        help="with --noise with-music: recorded music to draw from instead of synthetic pieces "
                        "(python -m asr.data.corpora music)")
    parser.add_argument("--short-window-share", type=float, default=0.0,
                        help=f"share of steps whose windows fit the short window ({SHORT_WINDOW_FRAMES} frames), "
                        "which the student reads there and the teacher in its 30 s")
    parser.add_argument("--train-cross-attention", action="store_true",
                        help="train the decoder's cross-attention too (the rest of the decoder stays the teacher's)")
    parser.add_argument("--student-from", help="start the student's encoder from this model folder's instead of "
                        "the teacher's (a resumed run takes its checkpoint)")
    parser.add_argument("--keep", type=float, default=0.99, help="as gate_head.py: share of dev speech the gate lets through")
    parser.add_argument("--rule-from", help="with --export: take the decoder's no-speech rule (decoding's "
                        f"{' and '.join(NO_SPEECH_RULE)}) from this model folder")
    parser.add_argument("--export", help="write the latest checkpoint as a model folder here, gate recalibrated, and stop")
    args = parser.parse_args()
    if args.music and not NOISE_MIXES[args.noise].music_prob:
        parser.error(f"--music needs a mix with music (--noise with-music), not {args.noise}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    data_dir, exp = Path(args.data_dir), Path(args.exp)
    exp.mkdir(parents=True, exist_ok=True)

    teacher, tokenizer, meta = load_model_dir(args.teacher)
    student = copy.deepcopy(teacher)
    if args.export:
        export(args, student, tokenizer, meta, data_dir, exp)
        return
    if args.student_from:
        start_from(student, args.student_from)
    paths = training_voices(data_dir, args.dev_speakers, args.seed)
    augmenter = noise_augmenter(data_dir, paths, args.seed, NOISE_MIXES[args.noise], args.music)
    log.info("%d training utterances; %d steps of %d windows", len(paths), args.steps, args.batch)
    train(args, teacher.eval(), student, paths, augmenter, exp)


if __name__ == "__main__":
    main()
