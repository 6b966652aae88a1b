import subprocess
import sys
from pathlib import Path

import pytest
import torch

from asr.config import save_yaml
from asr.data.dataset import BucketBatchSampler
from tests.conftest import REPO, fsdd_rows, tiny_train_config, write_manifest


def run_two_ranks(config_path: Path, out_dir: Path, timeout: float) -> subprocess.CompletedProcess:
    """tests/ddp_worker.py on 2 gloo ranks; a run still going after `timeout` seconds fails the test."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(REPO / "tests" / "ddp_worker.py"), str(config_path), str(out_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()  # torchrun ends its workers, which run in sessions of their own
        stdout, stderr = proc.communicate(timeout=180)
        pytest.fail(f"2-rank training still running after {timeout} s (hung?):\n{stderr[-3000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


@pytest.mark.slow
def test_two_process_gloo_training_keeps_ranks_identical(fsdd_manifest, tmp_path):
    config = tiny_train_config(tmp_path / "exp", [fsdd_manifest], threads=1,
                               model={"specaugment": {}, "encoder": {"d_model": 64, "num_heads": 2,
                                      "ffn_dim": 128, "num_layers": 2, "dropout": 0.1}},
                               optim={"max_steps": 4, "accum_grad": 2}, data={"dev": [], "max_batch_seconds": 3.0})
    save_yaml(config, tmp_path / "train.yaml")
    result = run_two_ranks(tmp_path / "train.yaml", tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rank 0 trained 4 steps" in result.stdout and "rank 1 trained 4 steps" in result.stdout
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    saved = torch.load(tmp_path / "exp" / "checkpoints" / "step_00000004.pt", weights_only=False)["model"]
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
        assert torch.equal(rank0[key], saved[key]), key  # what rank 0 checkpointed
    assert (tmp_path / "exp" / "model" / "model.safetensors").is_file()


@pytest.mark.slow
def test_two_gloo_ranks_skip_together_a_batch_one_rank_cannot_read(data_dir, fsdd_manifest, tmp_path):
    # 20 digits under a second, and one whose audio file is missing, long enough (1.35 s of a 1.5 s
    # budget) to make a batch of its own.
    rows = fsdd_rows(data_dir) + [{"id": "missing", "audio": str(tmp_path / "missing.flac"), "text": "zero",
                                   "duration": 1.35}]
    train = write_manifest(rows, tmp_path / "train.jsonl")
    config = tiny_train_config(tmp_path / "exp", [train], threads=1, optim={"max_epochs": 1, "accum_grad": 2},
                               data={"dev": [str(fsdd_manifest)], "max_batch_seconds": 1.5})
    save_yaml(config, tmp_path / "train.yaml")
    # Where the sampler puts it: rank 1's 4th of 5 batches, an accumulation boundary, while rank 0
    # trains on its 4th. A rank 1 that skipped it alone would make one optimizer step (one gradient
    # all-reduce) fewer than rank 0 in the epoch, and the ranks would end up waiting on each other.
    durations, bad = [row["duration"] for row in rows], len(rows) - 1
    rank0, rank1 = (BucketBatchSampler(durations, 1.5, config.seed, rank, 2).epoch_batches(0) for rank in (0, 1))
    assert len(rank1) == 5 and rank1[3] == [bad] and all(bad not in batch for batch in rank0)

    result = run_two_ranks(tmp_path / "train.yaml", tmp_path, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    # Both ranks skipped the batch: 2 steps (the gradients of batch 3 are reduced with those of batch 5).
    assert "rank 0 trained 2 steps" in result.stdout and "rank 1 trained 2 steps" in result.stdout
    rank0_weights = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1_weights = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for key in rank0_weights:
        assert torch.equal(rank0_weights[key], rank1_weights[key]), key
    # Validation ran on both ranks' shares of the dev set and gave every rank the same loss.
    losses = [line.split("valid losses ")[1] for line in result.stdout.splitlines() if "valid losses" in line]
    assert len(losses) == 2 and losses[0] == losses[1] and "None" not in losses[0], result.stdout
    valid_log = (tmp_path / "exp" / "valid_log.csv").read_text().splitlines()
    assert len(valid_log) == 2 and valid_log[1].startswith("2,1,"), valid_log  # step 2, after 1 epoch
    # Only rank 1 met the bad utterance; rank 0 reports it.
    assert (tmp_path / "exp" / "skipped.tsv").read_text().startswith("missing\t")
