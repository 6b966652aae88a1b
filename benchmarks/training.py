"""Training throughput of the standard configs: our model against an equal-size torch.nn.Transformer.

    python benchmarks/training.py --audio DIR --threads N --out RESULT.json [--quick]

One training step = zero the gradients, forward (features, SpecAugment, encoder, CTC and attention
losses), backward, gradient clipping, AdamW step, on one fixed batch of real speech (the first
short clips of the benchmark). The reference has the same frontend, SpecAugment, subsampling,
positions, d_model, heads, feed-forward size, layers, vocabulary, losses and batch; only its
encoder and decoder layers are torch.nn.Transformer's. The two models' steps alternate, so that a
change in the machine's load hits both alike. Steps run in float32 (the LibriSpeech configs ask
for bf16 autocast, which `asr train` applies; float32 keeps the comparison about the layers).

Targets are the clips' transcripts, tokenised by a tokenizer of the config's kind trained on the
transcripts of ../shared/data/speech; a sentencepiece vocabulary is sized as the config asks
(the small text yields fewer pieces, so the model's vocabulary is the config's, not the tokenizer's).
SpeechBrain is not installed, so it is not compared.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from asr.config import ModelConfig, TrainConfig, load_yaml
from asr.data.dataset import pad_tokens
from asr.features import GlobalCMVN, SpecAugment, build_frontend
from asr.model.asr_model import IGNORE_ID, ASRModel
from asr.model.encoder import lengths_to_mask
from asr.model.positional import absolute_positions
from asr.model.subsampling import build_subsampling
from asr.tokenizer import train_tokenizer
from audio_sets import DATA_DIR, SAMPLE_RATE, read_short

REPO = Path(__file__).resolve().parents[1]
CONFIGS = (
    "recipes/quickstart/train.yaml",
    "recipes/librispeech/conf/train_transformer_mini.yaml",
    "recipes/librispeech/conf/train_transformer.yaml",
    "recipes/librispeech/conf/train_transformer_large.yaml",
)


class TorchTransformerASR(nn.Module):
    """ASRModel's sizes, frontend, subsampling and losses around torch.nn.Transformer's layers."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        enc, dec = config.encoder, config.decoder
        if (dec.num_heads, dec.ffn_dim) != (enc.num_heads, enc.ffn_dim):
            raise ValueError("torch.nn.Transformer has one head count and feed-forward size for both stacks")
        self.config = config
        self.frontend = build_frontend(config.frontend)
        self.cmvn = GlobalCMVN(config.frontend.n_mels)
        self.specaugment = SpecAugment(config.specaugment) if config.specaugment else None
        self.subsampling = build_subsampling(enc.subsampling, config.frontend.n_mels, enc.d_model)
        self.transformer = nn.Transformer(
            enc.d_model, enc.num_heads, enc.num_layers, dec.num_layers, enc.ffn_dim, enc.dropout,
            activation="gelu", batch_first=True, norm_first=True,
        )
        self.ctc = nn.Linear(enc.d_model, config.vocab_size)
        self.embed = nn.Embedding(config.vocab_size, enc.d_model)
        self.positions = nn.Parameter(torch.empty(dec.max_length, enc.d_model).normal_(std=0.02))

    def forward(self, waveforms: Tensor, lengths: Tensor, targets: Tensor, target_lengths: Tensor,
                tokens_in: Tensor, tokens_out: Tensor, in_lengths: Tensor) -> Tensor:
        feats, feat_lengths = self.frontend(waveforms, lengths)
        feats = self.cmvn(feats)
        if self.specaugment is not None:
            feats = self.specaugment(feats, feat_lengths)
        feats = feats * lengths_to_mask(feat_lengths, feats.shape[1])[..., None]
        x, x_lengths = self.subsampling(feats, feat_lengths)
        x_lengths = x_lengths.clamp(min=1)
        x = x + absolute_positions(x.shape[1], x.shape[2], x.device)
        memory_padding = ~lengths_to_mask(x_lengths, x.shape[1])
        memory = self.transformer.encoder(x, src_key_padding_mask=memory_padding)

        length = tokens_in.shape[1]
        y = self.embed(tokens_in) + self.positions[:length]
        causal = torch.ones(length, length, dtype=torch.bool, device=y.device).triu(1)  # True: may not attend
        hidden = self.transformer.decoder(y, memory, tgt_mask=causal, tgt_is_causal=True,
                                          tgt_key_padding_mask=~lengths_to_mask(in_lengths, length),
                                          memory_key_padding_mask=memory_padding)
        batch = waveforms.shape[0]
        ctc_log_probs = F.log_softmax(self.ctc(memory), dim=-1)
        ctc = F.ctc_loss(ctc_log_probs.transpose(0, 1), targets.clamp(min=0), x_lengths, target_lengths,
                         blank=self.config.blank_id, reduction="sum", zero_infinity=True) / batch
        logits = hidden @ self.embed.weight.t()
        attention = F.cross_entropy(logits.transpose(1, 2), tokens_out, ignore_index=IGNORE_ID,
                                    label_smoothing=self.config.label_smoothing, reduction="sum") / batch
        w = self.config.ctc_weight
        return w * ctc + (1 - w) * attention


def transcripts() -> list[str]:
    """Every transcript of ../shared/data/speech, to train the benchmark's tokenizers on."""
    texts = []
    for manifest in sorted((DATA_DIR / "speech").glob("*/manifest.jsonl")):
        texts += [row["text"] for row in map(json.loads, manifest.read_text().splitlines()) if row.get("text")]
    return texts


def model_config(path: Path, texts: list[str]) -> tuple[ModelConfig, Callable[[str], list[int]], int]:
    """The config's model, its vocabulary completed as `asr train` completes it, and an encoder of text."""
    config = load_yaml(TrainConfig, path)
    tokenizer = train_tokenizer(texts, config.tokenizer)
    vocab = max(tokenizer.vocab_size, config.tokenizer.vocab_size)
    model = config.model
    model.vocab_size = vocab
    model.sos_id = model.eos_id = vocab - 1
    model.blank_id = 0
    return model, tokenizer.encode, tokenizer.vocab_size


def parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def step_timer(model: nn.Module, loss: Callable[[], Tensor]) -> Callable[[], float]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> float:
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss().backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        return time.perf_counter() - start

    return step


def benchmark_config(path: Path, texts: list[str], audio: list[np.ndarray], refs: list[str],
                     warmup: int, steps: int) -> dict:
    config, encode, tokenizer_size = model_config(path, texts)
    torch.manual_seed(0)
    ours = ASRModel(config).train()
    reference = TorchTransformerASR(config).train()

    lengths = torch.tensor([len(a) for a in audio])
    waveforms = torch.zeros(len(audio), int(lengths.max()))
    for row, a in enumerate(audio):
        waveforms[row, : len(a)] = torch.from_numpy(a)
    targets, target_lengths = pad_tokens([encode(text) for text in refs])
    tokens_in, tokens_out, in_lengths = ours.decoder_io(targets, target_lengths)

    timers = {
        "ours": step_timer(ours, lambda: ours(waveforms, lengths, targets, target_lengths).loss),
        "torch.nn.Transformer": step_timer(reference, lambda: reference(
            waveforms, lengths, targets, target_lengths, tokens_in, tokens_out, in_lengths)),
    }
    times: dict[str, list[float]] = {name: [] for name in timers}
    for i in range(warmup + steps):
        for name, step in timers.items():  # alternating, so that load changes hit both alike
            elapsed = step()
            if i >= warmup:
                times[name].append(elapsed)
    audio_seconds = float(lengths.sum()) / SAMPLE_RATE
    systems = {}
    for name, model in (("ours", ours), ("torch.nn.Transformer", reference)):
        median = statistics.median(times[name])
        systems[name] = {
            "parameters": parameters(model), "step_seconds": times[name], "median_step_seconds": median,
            "samples_per_second": len(audio) / median, "audio_seconds_per_second": audio_seconds / median,
        }
    enc, dec = config.encoder, config.decoder
    return {
        "config": str(path.relative_to(REPO)),
        "model": f"d{enc.d_model} h{enc.num_heads} ffn{enc.ffn_dim} enc{enc.num_layers} dec{dec.num_layers} "
                 f"{enc.subsampling} vocab {config.vocab_size}",
        "tokenizer_pieces": tokenizer_size,
        "batch": len(audio), "batch_audio_seconds": audio_seconds,
        "target_tokens": int(target_lengths.sum()),
        "systems": systems,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--audio", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, help="utterances per step (default 8; --quick: 4)")
    parser.add_argument("--quick", action="store_true", help="one timed step after one warm-up, batch 4")
    args = parser.parse_args()
    batch = args.batch or (4 if args.quick else 8)
    torch.set_num_threads(args.threads)
    # nn.Transformer builds its encoder with nested tensors on, which norm_first rules out (and says so).
    warnings.filterwarnings("ignore", message="enable_nested_tensor is True")
    sets = json.loads((args.audio / "sets.json").read_text())
    audio = read_short(args.audio)[:batch]
    refs = [clip["text"] for clip in sets["short"]["clips"]][:batch]
    texts = transcripts()
    warmup, steps = (1, 1) if args.quick else (2, 5)
    results = [benchmark_config(REPO / path, texts, audio, refs, warmup, steps) for path in CONFIGS]
    args.out.write_text(json.dumps({"threads": args.threads, "precision": "fp32", "configs": results,
                                    "speechbrain": "not installed: skipped"}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
