"""Run by tests/test_ddp.py under torchrun: trains, then saves this rank's weights for comparison."""

import os
import sys

import torch

from asr.config import TrainConfig, load_yaml
from asr.train import Trainer

config_path, out_dir = sys.argv[1], sys.argv[2]
torch.set_num_threads(1)
trainer = Trainer(load_yaml(TrainConfig, config_path))
valid_losses = []  # what validate() returned on this rank
validate = trainer.validate


def recording_validate():
    valid_losses.append(validate())
    return valid_losses[-1]


trainer.validate = recording_validate
trainer.run()
torch.save(trainer.model.state_dict(), os.path.join(out_dir, f"rank{os.environ['RANK']}.pt"))
print(f"rank {os.environ['RANK']} trained {trainer.step} steps on {len(trainer.sampler)} batches per epoch")
print(f"rank {os.environ['RANK']} valid losses {valid_losses}")
