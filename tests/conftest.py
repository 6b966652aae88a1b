import ctypes
import gc
import json
import os
import tempfile
from pathlib import Path

import pytest
import torch

from asr.config import DecoderConfig, EncoderConfig, ModelConfig, TrainConfig, from_dict

# Tests share a 2-core machine; one intra-op thread per process keeps them from thrashing.
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]

# ONNX graphs that `asr transcribe` builds for a bundled model (its default runtime) go into a folder
# of this test session's, inherited by the commands tests start, not into the user's cache.
_CACHE = tempfile.TemporaryDirectory(prefix="asr-test-cache-")
os.environ["ASR_CACHE_DIR"] = _CACHE.name
DATA_DIR = Path(os.environ.get("ASR_DATA_DIR", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA_DIR.is_dir():
        pytest.skip(f"shared data not found at {DATA_DIR} (set ASR_DATA_DIR)")
    return DATA_DIR


def tiny_model_config(subsampling: str = "conv2d4", positional: str = "abs", vocab: int = 30) -> ModelConfig:
    return ModelConfig(
        vocab_size=vocab, sos_id=vocab - 1, eos_id=vocab - 1,
        encoder=EncoderConfig(subsampling=subsampling, d_model=64, num_heads=4, ffn_dim=128, num_layers=2,
                              positional=positional),
        decoder=DecoderConfig(num_heads=4, ffn_dim=128, num_layers=2),
    )


def write_manifest(rows: list[dict], path: Path) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def fsdd_rows(data_dir: Path, speakers: tuple[str, ...] = ("george", "jackson"), per_digit: int = 1) -> list[dict]:
    """The first `per_digit` recordings of every digit by each speaker, with absolute paths."""
    rows, counts = [], {}
    set_dir = data_dir / "speech" / "fsdd"
    for line in (set_dir / "manifest.jsonl").read_text().splitlines():
        row = json.loads(line)
        key = (row["speaker"], row["text"])
        if row["speaker"] in speakers and counts.get(key, 0) < per_digit:
            counts[key] = counts.get(key, 0) + 1
            rows.append({**row, "audio": str(set_dir / row["audio"])})
    return rows


def tiny_train_config(exp_dir: Path, train: list[Path], **sections) -> TrainConfig:
    """A model small enough to overfit 20 short utterances in seconds on one CPU thread."""
    data = {
        "exp_dir": str(exp_dir), "seed": 1, "log_every": 1,
        "model": {"specaugment": None, "label_smoothing": 0.0,
                  "encoder": {"d_model": 64, "num_heads": 2, "ffn_dim": 128, "num_layers": 2, "dropout": 0.0},
                  "decoder": {"num_heads": 2, "ffn_dim": 128, "num_layers": 1, "dropout": 0.0}},
        "data": {"train": [str(p) for p in train], "dev": [str(p) for p in train], "max_batch_seconds": 4.0},
        "optim": {"lr": 0.003, "warmup_steps": 20, "max_epochs": 80},
    }
    for section, values in sections.items():
        if isinstance(values, dict):
            data.setdefault(section, {}).update(values)
        else:
            data[section] = values
    return from_dict(TrainConfig, data)


@pytest.fixture(scope="session")
def fsdd_manifest(data_dir, tmp_path_factory) -> Path:
    """20 isolated digits: 2 speakers x 10 digits."""
    return write_manifest(fsdd_rows(data_dir), tmp_path_factory.mktemp("fsdd") / "train.jsonl")


@pytest.fixture(scope="session")
def tiny_model_dir(fsdd_manifest, tmp_path_factory) -> Path:
    """A tiny model trained until it has memorised the 20 digits of `fsdd_manifest` (~15 s)."""
    from asr.train import train

    exp = tmp_path_factory.mktemp("tiny_exp")
    return train(tiny_train_config(exp, [fsdd_manifest]))


def resident_mb(pid: int) -> float:
    """The resident memory of process `pid` in MiB, from Linux /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1]) / 1024


def settled_resident_mb() -> float:
    """This process's resident memory after garbage collection and after glibc returns its free heap
    pages, so what is measured is memory held, not allocator fragmentation that a later allocation
    reuses (one such 33 MB step once failed a 30 MB limit)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the plain reading
        pass
    return resident_mb(os.getpid())
