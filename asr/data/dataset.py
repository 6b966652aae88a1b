"""Training data: utterances to padded batches, bucketed by length, resumable mid-epoch."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Iterator, Optional

import numpy as np
import torch
from torch import Tensor

from asr.audio import load_audio
from asr.data.augment import Augmenter
from asr.data.manifest import Utterance
from asr.errors import AudioError
from asr.tokenizer import Tokenizer

log = logging.getLogger(__name__)


@dataclass
class Example:
    id: str
    waveform: Tensor
    tokens: list[int]
    ctc_tokens: list[int]


@dataclass
class Batch:
    ids: list[str]
    waveforms: Tensor  # (B, N), zero-padded
    lengths: Tensor  # (B,) samples
    targets: Tensor  # (B, L), padded with -1
    target_lengths: Tensor  # (B,)
    ctc_targets: Tensor  # (B, L'), the same as targets unless the CTC head has its own tokenizer
    ctc_target_lengths: Tensor
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (utterance id, reason)

    def to(self, device: torch.device) -> "Batch":
        return Batch(self.ids, self.waveforms.to(device), self.lengths.to(device), self.targets.to(device),
                     self.target_lengths.to(device), self.ctc_targets.to(device),
                     self.ctc_target_lengths.to(device), self.skipped)


class SpeechDataset(torch.utils.data.Dataset):
    """Loads, augments and tokenizes one utterance; a bad one comes back as (id, reason) instead of raising.

    Augmentation draws from a generator seeded by (seed, epoch, index), so an utterance gets the
    same noise in a resumed run, whichever worker loads it. Set `epoch` before each epoch.
    """

    def __init__(self, utterances: list[Utterance], tokenizer: Tokenizer, sample_rate: int = 16000,
                 ctc_tokenizer: Optional[Tokenizer] = None, augmenter: Optional[Augmenter] = None, seed: int = 0,
                 no_speech_ids: frozenset[str] = frozenset()):
        self.utterances = utterances
        self.no_speech_ids = no_speech_ids  # utterances with no speech in them: empty targets, text ignored
        self.tokenizer = tokenizer
        self.ctc_tokenizer = ctc_tokenizer
        self.sample_rate = sample_rate
        self.augmenter = augmenter
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, index: int) -> Example | tuple[str, str]:
        utt = self.utterances[index]
        if utt.id in self.no_speech_ids:
            tokens, ctc_tokens = [], []
        else:
            if not utt.text or not utt.text.strip():
                return utt.id, "no transcript"
            tokenizers = [self.tokenizer] + ([self.ctc_tokenizer] if self.ctc_tokenizer else [])
            unknown = set().union(*(t.unknown_symbols(utt.text) for t in tokenizers))
            if unknown:
                return utt.id, f"characters outside the tokenizer: {''.join(sorted(unknown))!r}"
            tokens = self.tokenizer.encode(utt.text)
            ctc_tokens = self.ctc_tokenizer.encode(utt.text) if self.ctc_tokenizer else tokens
            if not tokens or not ctc_tokens:
                return utt.id, "transcript is empty after text normalisation"
        try:
            waveform = load_audio(utt.audio, self.sample_rate)
            # babble voices load lazily, so augmentation can meet a bad file too
            if self.augmenter is not None and self.epoch >= self.augmenter.config.start_epoch:
                waveform = self.augmenter(waveform, np.random.default_rng([self.seed, self.epoch, index]))
        except AudioError as err:
            return utt.id, str(err)
        return Example(utt.id, torch.from_numpy(waveform), tokens, ctc_tokens)


def collate(items: list[Example | tuple[str, str]]) -> Batch:
    examples = [x for x in items if isinstance(x, Example)]
    skipped = [x for x in items if not isinstance(x, Example)]
    for utt_id, reason in skipped:
        log.warning("skipping utterance %s: %s", utt_id, reason)
    lengths = torch.tensor([len(x.waveform) for x in examples], dtype=torch.long)
    waveforms = torch.zeros(len(examples), int(lengths.max()) if examples else 0)
    for i, x in enumerate(examples):
        waveforms[i, : len(x.waveform)] = x.waveform
    targets, target_lengths = pad_tokens([x.tokens for x in examples])
    ctc_targets, ctc_target_lengths = pad_tokens([x.ctc_tokens for x in examples])
    return Batch([x.id for x in examples], waveforms, lengths, targets, target_lengths,
                 ctc_targets, ctc_target_lengths, skipped)


def pad_tokens(sequences: list[list[int]]) -> tuple[Tensor, Tensor]:
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)
    padded = torch.full((len(sequences), int(lengths.max()) if sequences else 0), -1, dtype=torch.long)
    for i, s in enumerate(sequences):
        padded[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return padded, lengths


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
