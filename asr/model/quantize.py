"""Dynamic int8 quantisation of a model's Linear layers, for faster CPU inference.

Weights are stored as int8 with a scale per output row; activations are quantised on the fly,
per batch (PyTorch's dynamic quantisation, x86/fbgemm kernels). Decoding one utterance at a time is
bound by reading weights from memory, above all the decoder's tied output projection (51864 x 384
for Whisper's vocabulary, 80 MB in float32), which is therefore quantised too: int8 reads a quarter
of the bytes. What it costs in accuracy is measured by benchmarks/run.py (see benchmarks/RESULTS.md).
Convolutions, embeddings, layer norms and attention itself stay float32.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from asr.config import QUANTIZE_MODES
from asr.errors import ConfigError
from asr.model.asr_model import ASRModel

def quantize(model: ASRModel, mode: str) -> ASRModel:
    """Quantises `model` (in eval mode, on the CPU) in place and returns it; for inference only."""
    if mode not in QUANTIZE_MODES:
        raise ConfigError(f"unknown quantisation {mode!r}; choose from {', '.join(QUANTIZE_MODES)}")
    if next(model.parameters()).device.type != "cpu":
        raise ConfigError("int8 quantisation runs on the CPU only; load the model with device 'cpu'")
    if model.training:
        raise ValueError("quantise a model in eval mode (model.eval()): it can no longer be trained")
    decoder = model.decoder
    # The tied projection is a matrix product with the embedding, not a Linear: give it a Linear
    # of its own holding the same weights, so that it is quantised with the rest. The embedding
    # itself keeps its float32 weights for looking tokens up.
    output = nn.Linear(decoder.embed.embedding_dim, decoder.embed.num_embeddings, bias=False)
    output.weight = decoder.embed.weight
    decoder.output = output
    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated in favour of torchao, which is not a dependency;
        # the eager dynamic quantisation used here still works in the torch version pinned.
        warnings.simplefilter("ignore", DeprecationWarning)
        # A scale per output row: per-tensor scales cost accuracy on the output projection, whose
        # rows (one per token) differ widely in size; both run equally fast.
        qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
        torch.ao.quantization.quantize_dynamic(model, {nn.Linear: qconfig}, dtype=torch.qint8, inplace=True)
    return model
