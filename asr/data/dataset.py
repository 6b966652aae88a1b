"""Training data: utterances to padded batches, bucketed by length, resumable mid-epoch."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch
from torch import Tensor

from asr.audio import load_audio
from asr.data.manifest import Utterance
from asr.errors import AudioError
from asr.tokenizer import Tokenizer

log = logging.getLogger(__name__)


@dataclass
class Example:
    id: str
    waveform: Tensor
    tokens: list[int]


@dataclass
class Batch:
    ids: list[str]
    waveforms: Tensor  # (B, N), zero-padded
    lengths: Tensor  # (B,) samples
    targets: Tensor  # (B, L), padded with -1
    target_lengths: Tensor  # (B,)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (utterance id, reason)

    def to(self, device: torch.device) -> "Batch":
        return Batch(self.ids, self.waveforms.to(device), self.lengths.to(device), self.targets.to(device),
                     self.target_lengths.to(device), self.skipped)


class SpeechDataset(torch.utils.data.Dataset):
    """Loads and tokenizes one utterance; a bad one comes back as (id, reason) instead of raising."""

    def __init__(self, utterances: list[Utterance], tokenizer: Tokenizer, sample_rate: int = 16000):
        self.utterances = utterances
        self.tokenizer = tokenizer
        self.sample_rate = sample_rate

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, index: int) -> Example | tuple[str, str]:
        utt = self.utterances[index]
        if not utt.text or not utt.text.strip():
            return utt.id, "no transcript"
        unknown = self.tokenizer.unknown_symbols(utt.text)
        if unknown:
            return utt.id, f"characters outside the tokenizer: {''.join(sorted(unknown))!r}"
        try:
            waveform = load_audio(utt.audio, self.sample_rate)
        except AudioError as err:
            return utt.id, str(err)
        return Example(utt.id, torch.from_numpy(waveform), self.tokenizer.encode(utt.text))


def collate(items: list[Example | tuple[str, str]]) -> Batch:
    examples = [x for x in items if isinstance(x, Example)]
    skipped = [x for x in items if not isinstance(x, Example)]
    for utt_id, reason in skipped:
        log.warning("skipping utterance %s: %s", utt_id, reason)
    b = len(examples)
    lengths = torch.tensor([len(x.waveform) for x in examples], dtype=torch.long)
    target_lengths = torch.tensor([len(x.tokens) for x in examples], dtype=torch.long)
    waveforms = torch.zeros(b, int(lengths.max()) if b else 0)
    targets = torch.full((b, int(target_lengths.max()) if b else 0), -1, dtype=torch.long)
    for i, x in enumerate(examples):
        waveforms[i, : len(x.waveform)] = x.waveform
        targets[i, : len(x.tokens)] = torch.tensor(x.tokens, dtype=torch.long)
    return Batch([x.id for x in examples], waveforms, lengths, targets, target_lengths, skipped)


class BucketBatchSampler(torch.utils.data.Sampler):
    """Batches of similar-length utterances whose padded size stays under `max_batch_seconds`.

    The batch order of an epoch is a function of (seed, epoch) only, so a run resumes at any
    batch by skipping `start_batch` of them. Under DistributedDataParallel each rank takes
    every `world_size`-th batch, and all ranks get the same number of batches.
    """

    def __init__(self, durations: list[float], max_batch_seconds: float, seed: int,
                 rank: int = 0, world_size: int = 1):
        self.durations = np.asarray(durations, dtype=np.float64)
        self.max_batch_seconds = max_batch_seconds
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start_batch = 0

    def set_position(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, epoch])
        # Jitter before sorting so that batches differ between epochs but stay length-homogeneous.
        jitter = rng.uniform(0.9, 1.1, size=len(self.durations))
        order = np.argsort(self.durations * jitter, kind="stable")
        batches, current, longest = [], [], 0.0
        for index in order.tolist():
            longest_if_added = max(longest, self.durations[index])
            if current and longest_if_added * (len(current) + 1) > self.max_batch_seconds:
                batches.append(current)
                current, longest_if_added = [], self.durations[index]
            current.append(index)
            longest = longest_if_added
        if current:
            batches.append(current)
        rng.shuffle(batches)
        usable = len(batches) - len(batches) % self.world_size
        return batches[:usable][self.rank :: self.world_size]

    def __len__(self) -> int:
        return len(self.epoch_batches(self.epoch))

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.epoch_batches(self.epoch)[self.start_batch :]


def make_loader(dataset: SpeechDataset, sampler: BucketBatchSampler, num_workers: int) -> torch.utils.data.DataLoader:
    # A private generator: creating the loader's iterator must not draw from the global RNG,
    # or a resumed run would see different dropout and SpecAugment draws than the original.
    return torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, collate_fn=collate, num_workers=num_workers,
        generator=torch.Generator().manual_seed(0),
    )
