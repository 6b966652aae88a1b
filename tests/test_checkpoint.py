import pytest
import torch

from asr.checkpoint import load_checkpoint, load_model_dir, save_checkpoint, save_model
from asr.model_folder import WEIGHTS_FILE
from asr.errors import CheckpointError


def test_model_folder_round_trip_gives_identical_outputs(tiny_model_dir, tmp_path):
    model, tokenizer, _ = load_model_dir(tiny_model_dir)
    copy = save_model(model, tokenizer, tmp_path / "copy", info={"note": "test"})
    again, tok2, meta = load_model_dir(copy)
    wave = torch.randn(1, 8000) * 0.1
    with torch.no_grad():
        a = model.ctc.log_probs(model.encode(wave, torch.tensor([8000])).hidden)
        b = again.ctc.log_probs(again.encode(wave, torch.tensor([8000])).hidden)
    assert torch.equal(a, b)
    assert meta["info"] == {"note": "test"} and tok2.symbols == tokenizer.symbols
    assert torch.equal(again.cmvn.mean, model.cmvn.mean) and not torch.all(model.cmvn.mean == 0)


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_model_file_is_named(tiny_model_dir, tmp_path, damage):
    model, tokenizer, _ = load_model_dir(tiny_model_dir)
    folder = save_model(model, tokenizer, tmp_path / "m")
    weights = folder / WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[-10] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load_model_dir(folder)


def test_missing_model_folder_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="not a model folder"):
        load_model_dir(tmp_path)


def test_training_checkpoint_needs_its_checksum(tmp_path):
    path = tmp_path / "step_00000001.pt"
    save_checkpoint({"step": 1, "w": torch.ones(3)}, path)
    assert load_checkpoint(path)["step"] == 1
    path.with_name(path.name + ".sha256").unlink()
    with pytest.raises(CheckpointError, match="incomplete"):
        load_checkpoint(path)


def test_checkpoint_loading_never_runs_pickled_code(tmp_path):
    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('code ran')",))

    path = tmp_path / "step_00000001.pt"
    save_checkpoint({"step": 1, "payload": Boom()}, path)
    with pytest.raises(CheckpointError, match="unreadable checkpoint"):
        load_checkpoint(path)
