"""The exported graphs under ONNX Runtime: encoder outputs and decoder steps as numpy arrays."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from asr.errors import CheckpointError
from asr.runtime.frontend import Frontend

ENCODER_FILE, DECODER_FILE, FRONTEND_FILE = "encoder.onnx", "decoder.onnx", "frontend.npz"
INT8_SUFFIX = ".int8.onnx"  # the int8 copy of a graph: encoder.int8.onnx
# A graph's weights lie beside it (encoder.onnx.data): ONNX Runtime then reads them straight into the
# tensors it runs on, where a graph holding them is parsed whole first (45 MB less at the peak of one
# short clip).
WEIGHTS_SUFFIX = ".data"
PRECISIONS = ("fp32", "int8")
# What export_onnx writes; graphs built into a cache are kept under it, so a release that exports
# differently builds them afresh. 2: the encoder carries no padding mask; 3: the decoder broadcasts one
# row of cross-attention keys and values over a beam; 4: it takes them as one input per tensor;
# 5: attention scales its queries, so that a step no longer scales and transposes every cached key;
# 6: int8 graphs keep blocks of 32 weights per scale where one scale per call lost words; 7: a beam's
# rows read their utterance's cross-attention keys as one block of queries, each key once per step;
# 8: the encoder reads windows of any length (DecodingOptions.short_pad_to_frames); 9: the encoder's
# self-attention is ONNX Runtime's fused MultiHeadAttention, and each graph's weights are a file
# beside it.
GRAPHS_VERSION = 9


def weights_file(graph: Path) -> Path:
    """The file beside `graph` that holds its weights."""
    return graph.with_name(graph.name + WEIGHTS_SUFFIX)


def cross_input_names(layers: int) -> list[str]:
    """The decoder graph's inputs for each layer's cross-attention keys and values, in order."""
    return [f"cross_{kind}_{i}" for i in range(layers) for kind in ("k", "v")]


@dataclass
class Encoded:
    hidden: np.ndarray  # (B, T', d)
    ctc_log_probs: np.ndarray  # (B, T', V_ctc)
    cross_kv: np.ndarray  # (2 * layers, B, heads, T', d_head)


class OnnxModel:
    """encoder.onnx and decoder.onnx of a folder that `export_onnx` wrote, in `precision`."""

    def __init__(self, folder: str | Path, precision: str = "fp32", threads: int = 0):
        if precision not in PRECISIONS:
            raise CheckpointError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
        folder = Path(folder)
        suffix = INT8_SUFFIX if precision == "int8" else ".onnx"
        paths = [folder / Path(name).with_suffix(suffix).name for name in (ENCODER_FILE, DECODER_FILE)]
        files = [f for p in paths for f in (p, weights_file(p))] + [folder / FRONTEND_FILE]
        missing = [p.name for p in files if not p.is_file()]
        if missing:
            raise CheckpointError(f"{folder}: no exported model for {precision} (missing {', '.join(missing)}); "
                                  "write it with `asr export MODEL OUT --onnx`")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # 0: ONNX Runtime's choice (the physical cores)
        options.inter_op_num_threads = 1
        # Threads that wait for work sleep rather than spin: the decoder's build, the voice activity
        # detector and the search share the cores with them (one short clip: 0.84 s against 0.89 s).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # The decoder's session, the slower to build (its token table is packed for the product), is
        # built on a thread of its own while this one builds the encoder's and the caller goes on to
        # read and encode audio: ONNX Runtime lets go of the GIL while it builds. For one short clip
        # that takes a fifth of the start-up away.
        builder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="onnx-decoder")
        self._decoder = builder.submit(_session, paths[1], options)
        builder.shutdown(wait=False)  # its thread ends with the build
        self.encoder = _session(paths[0], options)
        self.frontend = Frontend.load(folder / FRONTEND_FILE)

    @property
    def decoder(self) -> ort.InferenceSession:
        """The decoder step's session, once its build has finished; CheckpointError if it failed."""
        return self._decoder.result()

    def encode(self, features: np.ndarray) -> Encoded:
        """features (B, frames, n_mels), each utterance's `Frontend.log_mel` padded to the window it is
        decoded in (any number of frames)."""
        hidden, ctc_log_probs, cross_kv = self.encoder.run(None, {"features": features.astype(np.float32)})
        return Encoded(hidden, ctc_log_probs, cross_kv)

    def bind_cross(self, cross_kv: np.ndarray) -> dict[str, ort.OrtValue]:
        """The decoder's cross-attention inputs made from `cross_kv` once, for every step of an
        utterance: views of its memory, not copies (where each layer's part of it is contiguous,
        as in an array the encoder gave, or the first rows of one)."""
        return {name: ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(cross_kv[i], dtype=np.float32))
                for i, name in enumerate(cross_input_names(len(cross_kv) // 2))}

    def step(self, tokens: np.ndarray, self_kv: np.ndarray,
             cross: np.ndarray | dict[str, ort.OrtValue]) -> tuple[np.ndarray, np.ndarray]:
        """Logits (N, V) of each row's last token, and the self-attention cache grown by `tokens` (N, n).
        `cross`: `cross_kv` as the encoder gave it, or `bind_cross(cross_kv)`; it has a row per token
        row, or one row that they all read."""
        inputs = {"tokens": ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(tokens, dtype=np.int64)),
                  "self_kv": ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(self_kv, dtype=np.float32)),
                  **(self.bind_cross(cross) if isinstance(cross, np.ndarray) else cross)}
        logits, new_kv = self.decoder.run_with_ort_values(["logits", "new_self_kv"], inputs)
        return logits.numpy(), new_kv.numpy()

    def empty_cache(self, rows: int, cross_kv: np.ndarray) -> np.ndarray:
        """A self-attention cache with no positions yet, for `rows` decoder rows."""
        layers2, _, heads, _, d_head = cross_kv.shape
        return np.zeros((layers2, rows, heads, 0, d_head), np.float32)


def _session(path: Path, options: ort.SessionOptions) -> ort.InferenceSession:
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # ONNX Runtime raises its own types for a corrupt or truncated graph
        raise CheckpointError(f"{path}: the graph cannot be loaded ({' '.join(str(err).split())}); "
                              "export it again with `asr export MODEL OUT --onnx`") from None
