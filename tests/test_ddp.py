import subprocess
import sys

import pytest
import torch

from asr.config import save_yaml
from tests.conftest import REPO, tiny_train_config


@pytest.mark.slow
def test_two_process_gloo_training_keeps_ranks_identical(fsdd_manifest, tmp_path):
    config = tiny_train_config(tmp_path / "exp", [fsdd_manifest], threads=1,
                               model={"specaugment": {}, "encoder": {"d_model": 64, "num_heads": 2,
                                      "ffn_dim": 128, "num_layers": 2, "dropout": 0.1}},
                               optim={"max_steps": 4, "accum_grad": 2}, data={"dev": [], "max_batch_seconds": 3.0})
    save_yaml(config, tmp_path / "train.yaml")
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(REPO / "tests" / "ddp_worker.py"), str(tmp_path / "train.yaml"), str(tmp_path)],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rank 0 trained 4 steps" in result.stdout and "rank 1 trained 4 steps" in result.stdout
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    saved = torch.load(tmp_path / "exp" / "checkpoints" / "step_00000004.pt", weights_only=False)["model"]
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
        assert torch.equal(rank0[key], saved[key]), key  # what rank 0 checkpointed
    assert (tmp_path / "exp" / "model" / "model.safetensors").is_file()
