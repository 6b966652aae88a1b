"""Teaching the default model to follow an enrolled voice (issue 21).

The default model gains speaker adapters (asr.model.speaker) before each encoder layer, driven by a
resemblyzer d-vector of the enrolled person (asr.enrollment). Only the adapters are trained; every
other weight stays the default's, and without an enrollment the adapters are skipped, so the model
then is exactly the default.

Training mixtures need no new recordings. A target window (one to three utterances of one speaker,
3-20 s) is mixed with one to three other voices at a signal-to-interference ratio drawn from -5 to
10 dB, their speech starting before or after the target's so that some frames hold the target
alone, some the others alone; a share of windows has no other voice (so enrolling on clean speech
changes nothing), optionally a share has only the other voices (the target enrolled but silent),
and some get training noise on top. The enrollment is other speech of the same speaker. The label
is what the unchanged tiny.en (with its CTC head, gate_head.py) hears in the clean target alone, as
in distill.py: its token distributions over its own greedy transcript (KL) and its encoder states
(MSE), so the adapters learn to make a mixture sound like the target alone; with the target
absent, an empty transcript.

Voices (never a test speaker): speechocean762's train split but the development speakers, LJ
Speech but its held-out clips, FSDD's training speakers, and the untranscribed LibriSpeech readers
(a reader with one long recording gives its first part as target and its second as enrollment).

    python recipes/whisper_ctc/enroll.py --exp exp/enroll --steps 400          # embeddings, then training
    python recipes/whisper_ctc/enroll.py --exp exp/enroll --export asr/models/whisper-tiny-ctc

A model that already has adapters (the shipped default) trains on from them: a further round, which
needs mixtures the first did not see (--mixture-seed). A model with a new encoder starts from another
folder's adapters (--adapters-from). Each mixture is read in the window the model's decoding reads a
recording of its length in (a student with a short window, distill.py --short-window-share, reads
the shorter mixtures there).
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
import time
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from asr.audio import load_audio
from asr.checkpoint import list_checkpoints, load_latest_checkpoint, load_model_dir, save_checkpoint, save_model
from asr.config import SpeakerConfig
from asr.data.manifest import read_manifest
from asr.decoding.options import DecodingOptions
from asr.enrollment import speaker_embedding
from asr.errors import EnrollmentError
from asr.model.asr_model import ASRModel
from asr.model_folder import DEFAULT_MODEL, load_ctc_tokenizer, model_decoding, resolve_model
from asr.noisy import PEAK

from distill import SAMPLE_RATE, batch_of, noise_augmenter, student_loss, teach
from gate_head import DEV_SPEAKERS, TEACHER, speech_sets, window_of

log = logging.getLogger("enroll")
MAX_TARGET_SECONDS = 20.0
SPLIT_SECONDS = 8.0  # a reader's only recording at least this long is cut into target and enrollment
NO_OTHER_VOICE = 0.15  # windows with the target alone (enrolled clean speech must stay as it was)
NOISE_ON_TOP = 0.4  # windows that also get training noise (distill.py's mix)
TALKERS = (1, 2, 3)
TALKER_ODDS = (0.5, 0.3, 0.2)
SIR_DB = (-5.0, 10.0)
# How the exported model searches with a voice enrolled (DecodingOptions.enrolled_mode): ranked per
# token, the search let in the other talker's words; chosen on the development speakers
# (recipes/target_speaker/DEV_RESULTS.md).
ENROLLED_MODE = "rescore"


@dataclass(frozen=True)
class Piece:
    """Speech of one speaker: a file, or part of one (seconds)."""
    audio: str
    start: float = 0.0
    end: float = 0.0  # 0: to the end

    def load(self) -> np.ndarray:
        samples = load_audio(self.audio, SAMPLE_RATE)
        stop = int(self.end * SAMPLE_RATE) if self.end else len(samples)
        return samples[int(self.start * SAMPLE_RATE): stop]


def training_speakers(data_dir: Path, dev_speakers: int, seed: int) -> dict[str, list[Piece]]:
    """Speaker -> pieces of their speech, for every training voice (keys name the corpus, whose
    speaker ids overlap)."""
    train, _ = speech_sets(data_dir, per_speaker=1000, dev_speakers=dev_speakers, seed=seed)
    untranscribed = read_manifest(data_dir / "speech" / "librispeech_untranscribed" / "manifest.jsonl")
    speakers: dict[str, list[Piece]] = defaultdict(list)
    for u in train + untranscribed:
        corpus = Path(u.audio).relative_to((data_dir / "speech").resolve()).parts[0]
        speakers[f"{corpus}/{u.speaker}"].append(Piece(u.audio))
    for key, pieces in speakers.items():
        utterances = [u for u in untranscribed if f"librispeech_untranscribed/{u.speaker}" == key]
        if len(pieces) == 1 and utterances and utterances[0].duration >= SPLIT_SECONDS:
            half = utterances[0].duration / 2
            speakers[key] = [Piece(pieces[0].audio, 0.0, half), Piece(pieces[0].audio, half, 0.0)]
    return dict(speakers)


def embed_all(speakers: dict[str, list[Piece]], path: Path) -> dict[Piece, np.ndarray]:
    """Every piece's d-vector, computed once and kept in `path` (pieces with under a second of
    speech have none)."""
    if path.exists():
        stored = np.load(path, allow_pickle=False)
        keys = [Piece(a, float(s), float(e)) for a, s, e in zip(stored["audio"], stored["start"], stored["end"])]
        return dict(zip(keys, stored["embedding"]))
    embeddings = {}
    pieces = [p for ps in speakers.values() for p in ps]
    for i, piece in enumerate(pieces):
        try:
            embeddings[piece] = speaker_embedding(piece.load(), piece.audio)
        except EnrollmentError:
            continue
        if i % 200 == 0:
            log.info("embedded %d of %d pieces", i, len(pieces))
    keys = list(embeddings)
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez(tmp, audio=np.array([k.audio for k in keys]), start=np.array([k.start for k in keys]),
             end=np.array([k.end for k in keys]), embedding=np.stack([embeddings[k] for k in keys]))
    tmp.replace(path)
    return embeddings


def speech_run(pieces: list[Piece], budget: int, rng: np.random.Generator) -> np.ndarray:
    """Pieces drawn from `pieces` joined by 0.2-1.0 s pauses, `budget` samples of them (the last one cut)."""
    parts, used = [], 0
    while used < budget:
        if parts:
            parts.append(np.zeros(int(rng.uniform(0.2, 1.0) * SAMPLE_RATE), np.float32))
            used += len(parts[-1])
        parts.append(pieces[int(rng.integers(len(pieces)))].load())
        used += len(parts[-1])
    return np.concatenate(parts)[:budget].astype(np.float32)


def shifted(audio: np.ndarray, shift: int) -> np.ndarray:
    """`audio` moved later by `shift` samples (earlier when negative), same length, zeros let in."""
    out = np.zeros_like(audio)
    if shift >= 0:
        out[shift:] = audio[: len(audio) - shift]
    else:
        out[: len(audio) + shift] = audio[-shift:]
    return out


def speech_power(audio: np.ndarray) -> float:
    active = audio[np.abs(audio) > 1e-4]
    return float(np.mean(active**2)) if len(active) else 0.0


@dataclass(frozen=True)
class Window:
    clean: np.ndarray  # what the teacher hears: the target alone (silence when the target is absent)
    heard: np.ndarray  # what the student hears
    enrollment: np.ndarray  # the target's d-vector
    target_absent: bool


def mixture(speakers: dict[str, list[Piece]], targets: list[str], embeddings: dict[Piece, np.ndarray],
            augmenter, rng: np.random.Generator, target_absent: float = 0.0) -> Window:
    """`target_absent`: the share of windows where only the others speak, the target enrolled but
    silent, so that nothing should come out."""
    target = targets[int(rng.integers(len(targets)))]
    pieces = speakers[target]
    order = rng.permutation(len(pieces))
    enrolled = [pieces[i] for i in order[: min(int(rng.integers(1, 4)), len(pieces) - 1)] if pieces[i] in embeddings]
    spoken = [pieces[i] for i in order if pieces[i] not in enrolled] or [pieces[order[-1]]]
    enrollment = np.mean([embeddings[p] for p in enrolled], axis=0) if enrolled \
        else embeddings[next(p for p in pieces if p in embeddings)]
    enrollment = (enrollment / np.linalg.norm(enrollment)).astype(np.float32)

    utterances = speech_run(spoken, int(rng.uniform(3.0, MAX_TARGET_SECONDS) * SAMPLE_RATE), rng)
    lead = int(rng.uniform(0.0, 2.0) * SAMPLE_RATE)
    clean = np.concatenate([np.zeros(lead, np.float32), utterances, np.zeros(int(rng.uniform(0.0, 2.0) * SAMPLE_RATE),
                                                                              np.float32)])
    heard = clean.copy()
    # Drawn only when asked for: with none, a round draws the mixtures it drew before there were any.
    absent = target_absent > 0 and rng.random() < target_absent
    if absent or rng.random() >= NO_OTHER_VOICE:
        others = [s for s in speakers if s != target]
        count = int(rng.choice(TALKERS, p=TALKER_ODDS))
        interference = np.zeros_like(clean)
        for name in rng.choice(others, size=count, replace=False):
            voice = speech_run(speakers[str(name)], len(clean), rng)
            voice = shifted(voice, int(rng.uniform(-0.3, 0.3) * len(clean)))
            interference += voice / math.sqrt(speech_power(voice) or 1.0)
        sir = rng.uniform(*SIR_DB)
        gain = math.sqrt(speech_power(clean) / (speech_power(interference) or 1.0) / 10 ** (sir / 10))
        heard = clean + gain * interference
        if absent:  # the others as loud as they would be over the target
            clean = np.zeros_like(clean)
            heard = gain * interference
    if rng.random() < NOISE_ON_TOP:
        heard = augmenter(heard, rng)[: len(clean)]
    peak = float(np.max(np.abs(heard))) or 1.0
    if peak > PEAK:  # both scaled alike: the teacher hears the target at the level it has in the mixture
        heard, clean = heard * (PEAK / peak), clean * (PEAK / peak)
    return Window(clean.astype(np.float32), heard.astype(np.float32), enrollment, absent)


def with_adapters(default: ASRModel, config: SpeakerConfig) -> ASRModel:
    """The default model with speaker adapters (its own, or new zero-output ones when it has none);
    only they can be trained."""
    model_config = replace(default.config, encoder=replace(default.config.encoder, speaker=config))
    model = ASRModel(model_config)
    missing, unexpected = model.load_state_dict(default.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("encoder.speaker_adapters.") for k in missing)
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("encoder.speaker_adapters."))
    return model


def rows_of(taught: tuple, rows: list[int]) -> tuple:
    """distill.teach's lessons for the windows `rows` of its batch."""
    *tensors, transcripts = taught
    index = torch.tensor(rows)
    return (*(t[index] for t in tensors), [transcripts[i] for i in rows])


def backward_in_windows(student, heard: torch.Tensor, lengths: torch.Tensor, taught: tuple, speaker: torch.Tensor,
                        mse_weight: float, decoding: DecodingOptions) -> tuple[float, float]:
    """Backpropagates distill.student_loss over a batch, each mixture read in the window decoding reads
    a recording of its length in (one encoder call per window; the batch's loss is the mean over
    mixtures); returns its KL and MSE."""
    frames = [window_of(student, decoding, n) for n in lengths.tolist()]
    kl = mse = 0.0
    for window in sorted(set(frames)):
        rows = [i for i, f in enumerate(frames) if f == window]
        longest, share = int(lengths[rows].max()), len(rows) / len(frames)
        loss, part_kl, part_mse = student_loss(student, heard[rows, :longest], lengths[rows], rows_of(taught, rows),
                                               mse_weight, speaker[rows], window)
        (share * loss).backward()
        kl, mse = kl + share * part_kl, mse + share * part_mse
    return kl, mse


def train(args, teacher, student, speakers, embeddings, augmenter, exp: Path, decoding: DecodingOptions) -> None:
    adapters = student.encoder.speaker_adapters
    params = list(adapters.parameters())
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    schedule = lambda step: min(1.0, step / args.warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, step / args.steps)))  # noqa: E731
    start = 0
    latest = load_latest_checkpoint(exp / "checkpoints")
    if latest is not None:
        path, state = latest
        adapters.load_state_dict(state["adapters"])
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["step"])
        log.info("resumed from %s (step %d)", path, start)
    targets = sorted(s for s, pieces in speakers.items() if len(pieces) > 1 and any(p in embeddings for p in pieces))
    log.info("%d target speakers, %d voices in all; %d steps of %d windows", len(targets), len(speakers),
             args.steps, args.batch)
    csv_path = exp / "train.csv"
    fields = ["step", "lr", "kl", "mse", "audio_seconds", "seconds"]
    if not csv_path.exists():
        csv_path.write_text(",".join(fields) + "\n")
    student.train()
    for step in range(start + 1, args.steps + 1):
        began = time.time()
        rng = np.random.default_rng([args.mixture_seed, step])  # a step's data depends on the step alone: exact resume
        windows = [mixture(speakers, targets, embeddings, augmenter, rng, args.target_absent)
                   for _ in range(args.batch)]
        clean_audio, lengths = batch_of([w.clean for w in windows])
        heard_audio, _ = batch_of([w.heard for w in windows])
        speaker = torch.from_numpy(np.stack([w.enrollment for w in windows]))
        taught = teach(teacher, clean_audio, lengths, silent=[i for i, w in enumerate(windows) if w.target_absent])
        for group in optimizer.param_groups:
            group["lr"] = args.lr * schedule(step)
        optimizer.zero_grad()
        kl, mse = backward_in_windows(student, heard_audio, lengths, taught, speaker, args.mse_weight, decoding)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        row = [step, optimizer.param_groups[0]["lr"], kl, mse, float(lengths.sum()) / SAMPLE_RATE, time.time() - began]
        with open(csv_path, "a", newline="") as f:
            csv.writer(f).writerow([f"{v:.5g}" if isinstance(v, float) else v for v in row])
        log.info("step %d: KL %.4f MSE %.4f (%.1f s)", step, kl, mse, row[-1])
        if step % args.save_every == 0 or step == args.steps:
            save_checkpoint({"adapters": adapters.state_dict(), "optimizer": optimizer.state_dict(), "step": step},
                            exp / "checkpoints" / f"step_{step:06d}.pt")
            for old in list_checkpoints(exp / "checkpoints")[:-2]:
                old.unlink()
                old.with_name(old.name + ".sha256").unlink(missing_ok=True)


def export(args, student, tokenizer, meta: dict, exp: Path) -> None:
    """Writes the default model folder again with the trained adapters in it; every other weight,
    and the decoding settings, as they were."""
    latest = load_latest_checkpoint(exp / "checkpoints")
    if latest is None:
        raise SystemExit(f"no checkpoint in {exp / 'checkpoints'}")
    path, state = latest
    student.encoder.speaker_adapters.load_state_dict(state["adapters"])
    student.eval()
    info = {**meta.get("info", {}), "speaker_adapters": f"trained to follow an enrolled voice, {exp.name}/{path.name} "
            "(recipes/whisper_ctc/enroll.py)"}
    chars = load_ctc_tokenizer(args.model, meta, tokenizer)
    decoding = {**meta.get("decoding", {}), "enrolled_mode": ENROLLED_MODE}
    print(save_model(student, tokenizer, args.export, info, chars, decoding, meta.get("base"), True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--exp", default="exp/enroll")
    parser.add_argument("--model", default=str(resolve_model(DEFAULT_MODEL)), help="the model the adapters join")
    parser.add_argument("--teacher", default=TEACHER, help="the unchanged tiny.en with its CTC head (gate_head.py)")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch", type=int, default=4, help="windows per step")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--mse-weight", type=float, default=1.0)
    parser.add_argument("--target-absent", type=float, default=0.0,
                        help="share of windows with the target enrolled but silent, labelled with an empty transcript "
                             "(none in the shipped rounds: see recipes/target_speaker/README.md)")
    parser.add_argument("--adapter-dim", type=int, default=SpeakerConfig.adapter_dim)
    parser.add_argument("--dev-speakers", type=int, default=DEV_SPEAKERS, help="as gate_head.py: kept out of training")
    parser.add_argument("--save-every", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="which training speakers are development ones")
    parser.add_argument("--mixture-seed", type=int, help="the draw of training mixtures (default: --seed)")
    parser.add_argument("--adapters-from", help="start the adapters from this model folder's (a run without a "
                        "checkpoint): for a model whose encoder changed since its adapters were trained")
    parser.add_argument("--export", help="write the model with the latest checkpoint's adapters here, and stop")
    args = parser.parse_args()
    if args.mixture_seed is None:
        args.mixture_seed = args.seed
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    data_dir, exp = Path(args.data_dir), Path(args.exp)
    exp.mkdir(parents=True, exist_ok=True)

    default, tokenizer, meta = load_model_dir(args.model)
    student = with_adapters(default, SpeakerConfig(adapter_dim=args.adapter_dim))
    if args.export:
        export(args, student, tokenizer, meta, exp)
        return
    speakers = training_speakers(data_dir, args.dev_speakers, args.seed)
    embeddings = embed_all(speakers, exp / "embeddings.npz")
    augmenter = noise_augmenter(data_dir, [p.audio for ps in speakers.values() for p in ps], args.seed)
    if args.adapters_from:
        source, _, _ = load_model_dir(args.adapters_from)
        if source.encoder.speaker_adapters is None:
            raise SystemExit(f"{args.adapters_from}: that model has no speaker adapters to start from")
        student.encoder.speaker_adapters.load_state_dict(source.encoder.speaker_adapters.state_dict())
    teacher, _, _ = load_model_dir(args.teacher)
    train(args, teacher.eval(), student, speakers, embeddings, augmenter, exp, model_decoding(meta, default.config))


if __name__ == "__main__":
    main()
