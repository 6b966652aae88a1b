"""Saving and loading: model folders (safetensors + YAML) and training checkpoints.

Every write goes to a temporary name first and is renamed into place, so a crash never
leaves a half-written file under the real name. Weights are never unpickled as code:
safetensors for models, `torch.load(weights_only=True)` for training state.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import shutil
from pathlib import Path
from typing import Any, Optional

import safetensors.torch
import torch
import yaml

from asr.config import to_dict
from asr.errors import CheckpointError
from asr.model.asr_model import ASRModel
from asr.atomic import write_atomic
from asr.model_folder import (CTC_TOKENIZER_DIR, FORMAT_VERSION, META_FILE, WEIGHTS_FILE, read_description, sha256_of,
                              with_checksum)
from asr.tokenizer import Tokenizer

log = logging.getLogger(__name__)



def save_model(model: ASRModel, tokenizer: Tokenizer, directory: str | Path, info: Optional[dict] = None,
               ctc_tokenizer: Optional[Tokenizer] = None, decoding: Optional[dict] = None,
               base: Optional[str] = None, half: bool = False) -> Path:
    """Writes a model folder: weights, config, tokenizer(s), CMVN (in the weights).

    `ctc_tokenizer` is stored (in ctc/) when the CTC head has its own vocabulary; `decoding` holds
    the DecodingOptions fields the model is best used with. With `base` (a Whisper name or path
    that asr.importers.whisper imports), only the weights that differ from the base model are
    written, which keeps a fine-tuned Whisper small; `half` stores them as float16.
    """
    directory = Path(directory)
    staging = directory.with_name(f".{directory.name}.staging{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if base is not None:
        base_state = _base_state(base)
        state = {k: v for k, v in state.items() if k not in base_state or not torch.equal(v, base_state[k])}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    weights = safetensors.torch.save(state)
    (staging / WEIGHTS_FILE).write_bytes(weights)
    meta = {
        "format_version": FORMAT_VERSION,
        "model": to_dict(model.config),
        "tokenizer": with_checksum(staging, tokenizer.save(staging)),
        "weights_sha256": sha256_of(weights),
        "info": info or {},
        "decoding": decoding or {},
    }
    if base is not None:
        meta["base"] = base
    if ctc_tokenizer is not None:
        ctc_dir = staging / CTC_TOKENIZER_DIR
        ctc_dir.mkdir()
        meta["ctc_tokenizer"] = with_checksum(ctc_dir, ctc_tokenizer.save(ctc_dir))
    (staging / META_FILE).write_text(yaml.safe_dump(meta, sort_keys=False))
    if directory.exists():
        old = directory.with_name(f".{directory.name}.old{os.getpid()}")
        directory.rename(old)
        staging.rename(directory)
        shutil.rmtree(old)
    else:
        staging.rename(directory)
    return directory


def load_model_dir(directory: str | Path, device: str | torch.device = "cpu") -> tuple[ASRModel, Tokenizer, dict]:
    directory = Path(directory)
    meta_path, weights_path = directory / META_FILE, directory / WEIGHTS_FILE
    if not meta_path.is_file() or not weights_path.is_file():
        raise CheckpointError(f"{directory}: not a model folder (needs {META_FILE} and {WEIGHTS_FILE})")
    meta, config, tokenizer = read_description(directory)
    weights = weights_path.read_bytes()
    if sha256_of(weights) != meta.get("weights_sha256"):
        raise CheckpointError(f"{weights_path}: checksum mismatch (truncated or modified file)")
    try:
        state = safetensors.torch.load(weights)
    except Exception as err:  # safetensors raises its own error types for malformed headers
        raise CheckpointError(f"{weights_path}: unreadable weights ({err})") from None
    try:
        model = ASRModel(config)
    except (RuntimeError, ValueError, AssertionError, MemoryError) as err:  # sizes no model has, negative say
        raise CheckpointError(f"{meta_path}: invalid model description ({err})") from None
    if "base" in meta:  # weights that differ from a base model, the rest taken from it
        state = {**_base_state(meta["base"]), **state}
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"{weights_path}: weights do not fit the config ({err})") from None
    return model.to(device).eval(), tokenizer, meta


def _base_state(base: str) -> dict[str, torch.Tensor]:
    from asr.importers.whisper import import_whisper  # only models built on Whisper need it

    return import_whisper(base)[0].state_dict()


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Writes the training state, then its checksum file; the checksum marks it complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    write_atomic(path, data)
    write_atomic(path.with_name(path.name + ".sha256"), sha256_of(data).encode())


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    marker = path.with_name(path.name + ".sha256")
    if not path.is_file() or not marker.is_file():
        raise CheckpointError(f"{path}: incomplete checkpoint (file or checksum missing)")
    data = path.read_bytes()
    if sha256_of(data).encode() != marker.read_bytes().strip():  # bytes: a damaged marker need not be text
        raise CheckpointError(f"{path}: checksum mismatch (corrupt checkpoint)")
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # torch's message advises weights_only=False: never for a file like this
        raise CheckpointError(f"{path}: unreadable checkpoint (it holds more than tensors and numbers, and "
                              "unpickling the rest could run code)") from None
    except Exception as err:  # the unpickler raises many types; all mean "unusable"
        raise CheckpointError(f"{path}: unreadable checkpoint ({err})") from None


def list_checkpoints(directory: str | Path) -> list[Path]:
    """Checkpoint files in `directory`, oldest first (names sort by step)."""
    return sorted(Path(directory).glob("step_*.pt"))


def load_latest_checkpoint(directory: str | Path) -> Optional[tuple[Path, dict[str, Any]]]:
    """The newest checkpoint that passes its checksum; corrupt ones are named and passed over."""
    for path in reversed(list_checkpoints(directory)):
        try:
            return path, load_checkpoint(path)
        except CheckpointError as err:
            log.warning("ignoring checkpoint: %s", err)
    return None


def average_state_dicts(paths: list[Path]) -> dict[str, torch.Tensor]:
    """Element-wise mean of the model weights of several checkpoints (integer buffers from the last)."""
    if not paths:
        raise CheckpointError("no checkpoints to average")
    total: dict[str, torch.Tensor] = {}
    last: dict[str, torch.Tensor] = {}
    for path in paths:
        last = load_checkpoint(path)["model"]
        for key, value in last.items():
            if value.is_floating_point():
                total[key] = total.get(key, 0) + value.double()
    return {k: (total[k] / len(paths)).to(v.dtype) if k in total else v for k, v in last.items()}
