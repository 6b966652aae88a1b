import os
from pathlib import Path

import pytest
import torch

# Tests share a 2-core machine; one intra-op thread per process keeps them from thrashing.
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("ASR_DATA_DIR", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA_DIR.is_dir():
        pytest.skip(f"shared data not found at {DATA_DIR} (set ASR_DATA_DIR)")
    return DATA_DIR
