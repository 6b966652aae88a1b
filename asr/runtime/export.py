"""The model as two ONNX graphs, for ONNX Runtime: the encoder and one decoder step.

    encoder.onnx  features (B, frames, n_mels), as `frontend.log_mel` makes them
                  -> hidden (B, T', d), ctc_log_probs (B, T', V_ctc),
                     cross_kv (2 * layers, B, heads, T', d_head): each decoder layer's keys, values
    decoder.onnx  tokens (N, n) int64, self_kv (2 * layers, N, heads, past, d_head),
                  cross_k_0, cross_v_0, ... cross_v_{layers-1}, each (N or 1, heads, T', d_head): one
                  input per tensor, so that a step reads them where they lie instead of slicing a
                  stacked copy; with 1 row, every row reads the same audio (a beam), and the
                  products broadcast it rather than copy it N times
                  -> logits (N, V) of the last token, self_kv (2 * layers, N, heads, past + n, d_head)

Both wrap the model's own modules (one model definition): the graphs are traces of the layers the
PyTorch path runs. The encoder attends to every frame, as decoding with `pad_to_frames` does; the
frontend (Whisper's log-mel, with the model's CMVN) is written as `frontend.npz` and computed with
numpy. `quantize` adds int8 copies (every matrix product's weights in 8 bits; see `quantize_graph`).
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import Tensor, nn

from asr.errors import ConfigError
from asr.model.asr_model import ASRModel
from asr.atomic import write_atomic
from asr.runtime.onnx_model import (DECODER_FILE, ENCODER_FILE, FRONTEND_FILE, INT8_SUFFIX, cross_input_names,
                                    weights_file)

OPSET = 17


class EncoderGraph(nn.Module):
    def __init__(self, model: ASRModel):
        super().__init__()
        self.model = model

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        out = self.model.encoder(features, None)  # every frame is input, as decoding with pad_to_frames
        kv = [t for layer in self.model.decoder.layers for t in layer.cross_attn.project_kv(out.hidden)]
        return out.hidden, self.model.ctc.log_probs(out.hidden), torch.stack(kv)


class DecoderStepGraph(nn.Module):
    def __init__(self, model: ASRModel):
        super().__init__()
        self.decoder = model.decoder

    def forward(self, tokens: Tensor, self_kv: Tensor, *cross_kv: Tensor) -> tuple[Tensor, Tensor]:
        past, n = self_kv.shape[3], tokens.shape[1]
        # Positions from tensors, not Python ints, so that the trace keeps them as inputs.
        positions = torch.arange(n) + past
        # The embedding and the output projection read one (d, V) table, so the graph stores Whisper's
        # 51864 x 384 matrix once (decoder.project would trace its own transposed copy).
        table = self.decoder.embed.weight.t() if self.decoder.output is None else None
        embedded = self.decoder.embed(tokens) if table is None else table[:, tokens].permute(1, 2, 0)
        x = embedded + self.decoder.positions.index_select(0, positions)
        causal = torch.arange(past + n)[None, :] <= positions[:, None]  # a token sees the past and itself
        new_kv = []
        for i, layer in enumerate(self.decoder.layers):
            x, (k, v), _, _ = layer(x, causal, (cross_kv[2 * i], cross_kv[2 * i + 1]), None, False,
                                    (self_kv[2 * i], self_kv[2 * i + 1]))
            new_kv += [k, v]
        last = self.decoder.norm(x[:, -1])
        logits = self.decoder.project(last) if table is None else last @ table
        return logits, torch.stack(new_kv)


def frontend_arrays(model: ASRModel) -> dict[str, np.ndarray]:
    """What `frontend.log_mel` needs: mel filters, window, CMVN, and the sizes."""
    config = model.config.frontend
    if config.kind != "whisper":
        raise ConfigError(f"ONNX export supports Whisper's frontend only, not {config.kind!r}")
    frontend = model.frontend
    return {"filters": frontend.filters.numpy(), "window": frontend.window.numpy(),
            "mean": model.cmvn.mean.numpy(), "istd": model.cmvn.istd.numpy(),
            "sizes": np.array([config.sample_rate, config.n_fft, config.hop_length, config.win_length])}


def _onnx_bytes(module: nn.Module, args: tuple, names: list[str], outputs: list[str], axes: dict,
                custom_opsets: Optional[dict[str, int]] = None) -> bytes:
    buffer = io.BytesIO()
    # The TorchScript exporter: it traces the modules as they run, with no extra package beyond onnx
    # (torch's newer exporter needs onnxscript); its deprecation notice is not the user's business, nor
    # its warning that sizes read from shapes (attention's head width) become constants: they are.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(module, args, buffer, dynamo=False, opset_version=OPSET, input_names=names,
                          output_names=outputs, dynamic_axes=axes, custom_opsets=custom_opsets)
    return buffer.getvalue()


@torch.no_grad()
def export_onnx(model: ASRModel, out: str | Path, frames: int = 3000, quantize: bool = True) -> list[Path]:
    """Writes encoder.onnx, decoder.onnx (each with its weights beside it) and frontend.npz into
    `out` (and, with `quantize`, int8 copies of both graphs); returns the paths written. `frames`:
    the encoder input the model is decoded with (Whisper's 30 s)."""
    model = model.eval()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = model.config
    layers, heads = config.decoder.num_layers, config.decoder.num_heads
    d_head = config.encoder.d_model // heads
    features = torch.zeros(1, frames, config.frontend.n_mels)
    encoder = _onnx_bytes(EncoderGraph(model).eval(), (features,), ["features"], ["hidden", "ctc_log_probs", "cross_kv"],
                          {"features": {0: "batch", 1: "frames"}, "hidden": {0: "batch", 1: "encoded"},
                           "ctc_log_probs": {0: "batch", 1: "encoded"}, "cross_kv": {1: "batch", 3: "encoded"}},
                          custom_opsets={"com.microsoft": 1})  # its self-attention (attention._FusedAttention)
    tokens = torch.tensor([[config.sos_id, *config.decoder_prompt]] * 2)
    self_kv = torch.zeros(2 * layers, 2, heads, 3, d_head)
    cross = [torch.zeros(1, heads, frames // model.encoder.subsampling.rate, d_head)] * (2 * layers)  # broadcast
    names = cross_input_names(layers)
    decoder = _onnx_bytes(DecoderStepGraph(model).eval(), (tokens, self_kv, *cross), ["tokens", "self_kv", *names],
                          ["logits", "new_self_kv"],
                          {"tokens": {0: "rows", 1: "new"}, "self_kv": {1: "rows", 3: "past"},
                           **{name: {0: "audio_rows", 2: "frames"} for name in names}, "logits": {0: "rows"},
                           "new_self_kv": {1: "rows", 3: "total"}})
    import onnx

    written = []
    for name, data in ((ENCODER_FILE, encoder), (DECODER_FILE, decoder)):
        written += save_graph(onnx.load_from_string(data), out / name)
        if quantize:
            written += quantize_graph(out / name, dynamic_after_norm=name == ENCODER_FILE)
    arrays = io.BytesIO()
    np.savez(arrays, **frontend_arrays(model))
    write_atomic(out / FRONTEND_FILE, arrays.getvalue())
    return written + [out / FRONTEND_FILE]


def save_graph(graph, path: Path) -> list[Path]:
    """Writes an onnx.ModelProto as `path` and its weights beside it (`weights_file`); returns both
    paths. Each is written under a temporary name and then renamed, the weights first: the graph
    that names them appears whole, after them."""
    import onnx

    weights = weights_file(path)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as staging:
        onnx.save_model(graph, os.path.join(staging, path.name), save_as_external_data=True,
                        all_tensors_to_one_file=True, location=weights.name)
        # onnx writes the weights for its owner alone; they are as readable as the graph.
        shutil.copymode(os.path.join(staging, path.name), os.path.join(staging, weights.name))
        os.replace(os.path.join(staging, weights.name), weights)
        os.replace(os.path.join(staging, path.name), path)
    return [path, weights]


def quantize_graph(path: Path, dynamic_after_norm: bool, target: Optional[Path] = None) -> list[Path]:
    """An int8 copy of a graph (into `target`, else beside it as *.int8.onnx, its weights beside
    that); returns the paths written. The weights of every matrix product are in 8 bits, in one of
    two ways.

    - With `dynamic_after_norm` (the encoder), a product that reads a LayerNorm's output (queries,
      keys, values, the first feed-forward layer, the cross-attention keys and values, the CTC head)
      is ONNX Runtime's dynamic int8: weights per output channel, its input under one scale per call.
      Over 1,500 frames it is the fastest kernel, and a normalised input has a narrow range.
    - Every other product has its weights in blocks of 32 values with a scale each, and its input
      quantised per block of 32 as it is multiplied (MatMulNBits, accuracy level 4): the attention
      output and the second feed-forward layer, whose inputs (a softmax-weighted sum, a GELU) range
      widely, and every product of a decoder step, which multiplies a beam's few rows, where this
      kernel is as fast. On development speakers, one scale per call on every product changed a
      quarter of the transcripts and added errors (recipes/whisper_ctc/INT8_SCHEME.md).

    The token table stays float32: it is read one row per token, so 8 bits would save memory but no
    time, and on development speakers they cost words in babble."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    target = Path(target or path.with_suffix(INT8_SUFFIX))
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)  # the quantisers log each tensor they leave alone on the root logger
    try:
        graph = onnx.load(path)
        after_norm = _products_after_layer_norm(graph) if dynamic_after_norm else []
        if after_norm:
            with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.") as staging:
                dynamic = Path(staging) / target.name
                quantize_dynamic(graph, dynamic, weight_type=QuantType.QInt8, per_channel=True,
                                 op_types_to_quantize=["MatMul"], nodes_to_quantize=after_norm)
                graph = onnx.load(dynamic)
        # Products already in int8 are no longer MatMul nodes: this takes the float ones left.
        blocks = MatMulNBitsQuantizer(graph, bits=8, block_size=32, is_symmetric=True, accuracy_level=4,
                                      op_types_to_quantize=("MatMul",))
        blocks.process()
    finally:
        logging.disable(previous)
    return save_graph(blocks.model.model, target)


def _products_after_layer_norm(graph) -> list[str]:
    """Names of the MatMul nodes with a constant weight whose input a LayerNormalization produced."""
    producers = {output: node.op_type for node in graph.graph.node for output in node.output}
    weights = {tensor.name for tensor in graph.graph.initializer}
    return [node.name for node in graph.graph.node
            if node.op_type == "MatMul" and node.input[1] in weights
            and producers.get(node.input[0]) == "LayerNormalization"]
