"""The training loop: hybrid CTC/attention loss, bucketed batches, exact resume, DDP.

Run it through `asr train CONFIG.yaml`, or `torchrun --nproc_per_node N -m asr.cli train ...`
for DistributedDataParallel (gloo on CPU, NCCL on GPUs).
"""

from __future__ import annotations

import contextlib
import csv
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import jiwer
import torch
import torch.distributed as torch_dist
from torch import nn
from tqdm import tqdm

from asr.checkpoint import list_checkpoints, load_latest_checkpoint, save_checkpoint
from asr.config import OptimConfig, TrainConfig, save_yaml, to_dict
from asr.data.augment import build_augmenter
from asr.data.dataset import BucketBatchSampler, SpeechDataset, make_loader
from asr.data.manifest import Utterance, read_manifest
from asr.decoding.ctc import ctc_greedy_search
from asr.errors import ConfigError
from asr.experiment import Experiment

log = logging.getLogger(__name__)


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> "Distributed":
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size == 1:
            return cls(device=torch.device("cuda" if torch.cuda.is_available() else "cpu"))
        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank)
            device = torch.device("cuda", local_rank)
        else:
            device = torch.device("cpu")
        if not torch_dist.is_initialized():
            torch_dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return cls(rank, world_size, device)

    def barrier(self) -> None:
        if self.world_size > 1:
            torch_dist.barrier()

    def min_over_ranks(self, value: int) -> int:
        """The smallest of every rank's `value`; `value` itself without DDP (no collective)."""
        if self.world_size == 1:
            return value
        tensor = torch.tensor([value], device=self.device)
        torch_dist.all_reduce(tensor, op=torch_dist.ReduceOp.MIN)
        return int(tensor.item())

    def gather(self, obj) -> list:
        """`obj` from every rank, in rank order, on every rank; [obj] without DDP (no collective)."""
        if self.world_size == 1:
            return [obj]
        parts = [None] * self.world_size
        torch_dist.all_gather_object(parts, obj)
        return parts


def lr_multiplier(optim: OptimConfig, total_steps: int):
    """The schedule as a function of the optimizer step (1-based), peak 1.0 at the end of warmup."""
    warmup = max(1, optim.warmup_steps)

    def noam(step: int) -> float:
        step = max(1, step)
        return warmup**0.5 * min(step**-0.5, step * warmup**-1.5)

    def cosine(step: int) -> float:
        if step < warmup:
            return step / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return 0.5 * (1 + math.cos(math.pi * progress))

    def constant(step: int) -> float:
        return min(1.0, step / warmup)

    schedules = {"noam": noam, "cosine": cosine, "constant": constant}
    if optim.scheduler not in schedules:
        raise ConfigError(f"unknown scheduler {optim.scheduler!r}; choose {', '.join(schedules)}")
    return schedules[optim.scheduler]


def load_utterances(paths: list[str], max_seconds: float) -> list[Utterance]:
    utterances = [u for p in paths for u in read_manifest(p)]
    kept = [u for u in utterances if u.text and 0 < u.duration <= max_seconds]
    if len(kept) < len(utterances):
        log.info("left out %d of %d utterances (no transcript, unreadable or longer than %.0f s)",
                 len(utterances) - len(kept), len(utterances), max_seconds)
    return kept


class CsvLog:
    def __init__(self, path: Path, fields: list[str]):
        self.path, self.fields = path, fields

    def write(self, row: dict) -> None:
        new = not self.path.exists()
        with self.path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.fields)
            if new:
                writer.writeheader()
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


class Trainer:
    def __init__(self, config: TrainConfig, resume: bool = False):
        self.config = config
        self.dist = Distributed.from_env()
        if config.threads > 0:
            torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)
        self.exp = Experiment(config.exp_dir)
        train_utts = load_utterances(config.data.train, config.data.max_utterance_seconds)
        if not train_utts:
            raise ConfigError("no usable training utterances in data.train")
        dev_utts = load_utterances(config.data.dev, config.data.max_utterance_seconds)
        no_speech = [u for p in config.data.no_speech for u in read_manifest(p)
                     if 0 < u.duration <= config.data.max_utterance_seconds]
        if self.dist.is_main:  # tokenizer and CMVN are computed once, by one process
            self.exp.dir.mkdir(parents=True, exist_ok=True)
            save_yaml(config, self.exp.dir / "train.yaml")
            self.exp.build_model(config, train_utts)
        self.dist.barrier()
        self.model, self.tokenizer, self.ctc_tokenizer, self.init_info = self.exp.build_model(config, train_utts)
        self.model.to(self.dist.device)
        frozen = tuple(config.init.freeze)
        for name, parameter in self.model.named_parameters():
            parameter.requires_grad = not (frozen and name.startswith(frozen))
        rate = self.model.config.frontend.sample_rate
        augmenter = None
        if config.data.augment is not None:
            augmenter = build_augmenter(config.data.augment, [u.audio for u in train_utts], config.seed, rate)
        self.train_set = SpeechDataset(train_utts + no_speech, self.tokenizer, rate, self.ctc_tokenizer, augmenter,
                                       config.seed, no_speech_ids=frozenset(u.id for u in no_speech))
        self.dev_set = SpeechDataset(dev_utts, self.tokenizer, rate, self.ctc_tokenizer)
        self.sampler = BucketBatchSampler([u.duration for u in self.train_set.utterances], config.data.max_batch_seconds,
                                          config.seed, self.dist.rank, self.dist.world_size)
        self.ddp_model: nn.Module = self.model
        if self.dist.world_size > 1:
            self.ddp_model = nn.parallel.DistributedDataParallel(self.model)
        optim = config.optim
        self.optimizer = torch.optim.AdamW(self._parameter_groups(), lr=optim.lr, weight_decay=optim.weight_decay)
        steps_per_epoch = math.ceil(len(self.sampler) / optim.accum_grad)
        self.total_steps = optim.max_steps or optim.max_epochs * steps_per_epoch
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_multiplier(optim, self.total_steps))
        self.scaler = torch.amp.GradScaler(enabled=optim.precision == "fp16")
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.skipped: dict[str, str] = {}
        if resume:
            self._restore()
        self.train_log = CsvLog(self.exp.dir / "train_log.csv", [
            "step", "epoch", "lr", "loss", "ctc", "attention", "accuracy", "grad_norm", "utts_per_s", "audio_s_per_s"])
        self.valid_log = CsvLog(self.exp.dir / "valid_log.csv",
                                ["step", "epoch", "loss", "ctc", "attention", "cer", "wer"])

    def _parameter_groups(self) -> list[dict]:
        """Trainable parameters grouped by their learning-rate multiplier (optim.lr_scale)."""
        groups: dict[float, list] = {}
        for name, parameter in self.model.named_parameters():
            if parameter.requires_grad:
                scale = next((s for prefix, s in self.config.optim.lr_scale.items() if name.startswith(prefix)), 1.0)
                groups.setdefault(scale, []).append(parameter)
        return [{"params": params, "lr": self.config.optim.lr * scale} for scale, params in groups.items()]

    def _autocast(self):
        precision, device = self.config.optim.precision, self.dist.device.type
        if precision == "fp32":
            return contextlib.nullcontext()
        if precision == "fp16" and device != "cuda":
            raise ConfigError("precision fp16 needs a GPU; use bf16 or fp32 on CPU")
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return torch.autocast(device, dtype=dtype)

    # --- checkpoints -------------------------------------------------------------------------

    def _state(self, valid_loss: Optional[float] = None) -> dict:
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "torch_rng": torch.get_rng_state(),
            "config": to_dict(self.config),
            "valid_loss": valid_loss,
        }
        if torch.cuda.is_available():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        return state

    def save(self, valid_loss: Optional[float] = None) -> None:
        if not self.dist.is_main:
            return
        save_checkpoint(self._state(valid_loss), self.exp.checkpoints / f"step_{self.step:08d}.pt")
        for old in list_checkpoints(self.exp.checkpoints)[: -self.config.keep_checkpoints]:
            old.unlink(missing_ok=True)
            old.with_name(old.name + ".sha256").unlink(missing_ok=True)

    def _restore(self) -> None:
        found = load_latest_checkpoint(self.exp.checkpoints)
        if found is None:
            log.info("no checkpoint in %s; starting from scratch", self.exp.checkpoints)
            return
        path, state = found
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch, self.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        log.info("resumed from %s (step %d, epoch %d, batch %d)", path, self.step, self.epoch, self.batch_in_epoch)

    # --- loop ----------------------------------------------------------------------------------

    def finished(self) -> bool:
        optim = self.config.optim
        return self.epoch >= optim.max_epochs or (optim.max_steps > 0 and self.step >= optim.max_steps)

    def run(self) -> Path:
        while not self.finished():
            self.train_epoch()
            if self.batch_in_epoch == 0:  # the epoch ran to its end
                valid_loss = self.validate()
                self.save(valid_loss)
        saved = list_checkpoints(self.exp.checkpoints)
        if not saved or saved[-1].name != f"step_{self.step:08d}.pt":
            self.save()  # stopped by max_steps inside an epoch
        for part in self.dist.gather(self.skipped):  # rank 0 reports what every rank met
            self.skipped.update(part)
        if self.dist.is_main:
            self._report_skipped()
            info = {**self.init_info, "step": self.step, "epoch": self.epoch}
            path = self.exp.export(self.model, self.tokenizer, info=info, ctc_tokenizer=self.ctc_tokenizer)
            log.info("wrote model to %s", path)
        self.dist.barrier()
        return self.exp.dir / "model"

    def train_epoch(self) -> None:
        self.model.train()
        self.sampler.set_position(self.epoch, self.batch_in_epoch)
        self.train_set.epoch = self.epoch
        loader = make_loader(self.train_set, self.sampler, self.config.data.num_workers)
        accum = self.config.optim.accum_grad
        progress = tqdm(total=len(self.sampler), initial=self.batch_in_epoch, desc=f"epoch {self.epoch}",
                        disable=not self.dist.is_main or None, leave=False)
        window = {"utts": 0, "seconds": 0.0, "start": time.perf_counter()}
        for batch in loader:
            self.batch_in_epoch += 1
            progress.update()
            self.skipped.update(dict(batch.skipped))
            # Under DDP the ranks skip a batch together when any of them has no utterance left in its
            # part: a rank that skipped alone would leave the others waiting in the gradient all-reduce.
            # Skipping together keeps the optimizer steps at the same batches on every rank; gradients
            # accumulated before a skipped boundary batch are reduced at the next one.
            if self.dist.min_over_ranks(len(batch.ids)) == 0:
                continue
            batch = batch.to(self.dist.device)
            boundary = self.batch_in_epoch % accum == 0 or self.batch_in_epoch == len(self.sampler)
            sync = contextlib.nullcontext() if boundary or self.dist.world_size == 1 else self.ddp_model.no_sync()
            with sync:
                with self._autocast():
                    out = self.ddp_model(batch.waveforms, batch.lengths, batch.targets, batch.target_lengths,
                                         batch.ctc_targets, batch.ctc_target_lengths)
                self.scaler.scale(out.loss / accum).backward()
            window["utts"] += len(batch.ids)
            window["seconds"] += float(batch.lengths.sum()) / self.config.model.frontend.sample_rate
            if not boundary:
                continue
            grad_norm = self._optimizer_step()
            if self.step % self.config.log_every == 0:
                self._log_step(out, grad_norm, window, progress)
            if self.config.checkpoint_every and self.step % self.config.checkpoint_every == 0:
                self.save()
            if self.finished():
                break
        progress.close()
        if self.batch_in_epoch >= len(self.sampler):
            self.epoch += 1
            self.batch_in_epoch = 0

    def _optimizer_step(self) -> float:
        self.scaler.unscale_(self.optimizer)
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        grad_norm = float(nn.utils.clip_grad_norm_(trainable, self.config.optim.grad_clip))
        self.scaler.step(self.optimizer)  # skipped by the scaler when gradients are not finite
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.step += 1
        return grad_norm

    def _log_step(self, out, grad_norm: float, window: dict, progress: tqdm) -> None:
        elapsed = max(1e-9, time.perf_counter() - window["start"])
        row = {
            "step": self.step, "epoch": self.epoch, "lr": self.scheduler.get_last_lr()[0],
            "loss": float(out.loss.detach()), "ctc": float(out.ctc), "attention": float(out.attention),
            "accuracy": float(out.accuracy), "grad_norm": grad_norm,
            "utts_per_s": window["utts"] / elapsed, "audio_s_per_s": window["seconds"] / elapsed,
        }
        if self.dist.is_main:
            self.train_log.write(row)
            progress.set_postfix(loss=f"{row['loss']:.2f}", acc=f"{row['accuracy']:.2f}",
                                 x_rt=f"{row['audio_s_per_s']:.1f}")
        window.update(utts=0, seconds=0.0, start=time.perf_counter())

    @torch.no_grad()
    def validate(self) -> Optional[float]:
        """Dev loss and CTC-greedy CER/WER; returns the loss per utterance, the same on every rank.

        Under DDP each rank scores its own share of the dev batches, then the ranks pool their sums
        and transcripts and rank 0 writes the row: no rank waits in a collective while another
        works through the whole dev set.
        """
        if len(self.dev_set) == 0:
            return None
        self.model.eval()
        # Every dev batch, dealt out to the ranks in turn (the sampler's own sharding would drop the
        # batches that do not divide evenly among them).
        batches = BucketBatchSampler([u.duration for u in self.dev_set.utterances],
                                     self.config.data.max_batch_seconds, self.config.seed).epoch_batches(0)
        batches = batches[self.dist.rank :: self.dist.world_size]
        totals = {"loss": 0.0, "ctc": 0.0, "attention": 0.0}
        refs, hyps, count = [], [], 0
        for batch in make_loader(self.dev_set, batches, self.config.data.num_workers):
            if not batch.ids:
                continue
            batch = batch.to(self.dist.device)
            out = self.model(batch.waveforms, batch.lengths, batch.targets, batch.target_lengths,
                             batch.ctc_targets, batch.ctc_target_lengths)
            n = len(batch.ids)
            for key in totals:
                totals[key] += float(getattr(out, key)) * n
            count += n
            enc = self.model.encode(batch.waveforms, batch.lengths)
            ctc_tokenizer = self.ctc_tokenizer or self.tokenizer
            best = ctc_greedy_search(self.model.ctc.log_probs(enc.hidden), enc.lengths, self.model.config.blank_id)
            for ids, target, length in zip(best, batch.ctc_targets, batch.ctc_target_lengths):
                refs.append(ctc_tokenizer.decode(target[:length].tolist()))
                hyps.append(ctc_tokenizer.decode(ids))
        self.model.train()
        parts = self.dist.gather((totals, count, refs, hyps))  # summed in rank order: equal on every rank
        count = sum(part[1] for part in parts)
        if count == 0:
            return None
        row = {k: sum(part[0][k] for part in parts) / count for k in totals}
        if self.dist.is_main:
            refs = [ref for part in parts for ref in part[2]]
            hyps = [hyp for part in parts for hyp in part[3]]
            row.update(step=self.step, epoch=self.epoch, cer=jiwer.cer(refs, hyps), wer=jiwer.wer(refs, hyps))
            self.valid_log.write(row)
            log.info("epoch %d step %d: dev loss %.3f, CER %.3f, WER %.3f",
                     self.epoch, self.step, row["loss"], row["cer"], row["wer"])
        return row["loss"]

    def _report_skipped(self) -> None:
        if not self.skipped:
            return
        log.warning("skipped %d bad utterances; see %s", len(self.skipped), self.exp.dir / "skipped.tsv")
        with (self.exp.dir / "skipped.tsv").open("w", encoding="utf-8") as f:
            f.writelines(f"{utt}\t{reason}\n" for utt, reason in sorted(self.skipped.items()))


def train(config: TrainConfig, resume: bool = False) -> Path:
    """Trains (or resumes) the experiment in config.exp_dir; returns the exported model folder."""
    return Trainer(config, resume).run()
