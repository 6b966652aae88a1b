import subprocess
import sys

import yaml

from asr.cli import apply_overrides, main
from tests.conftest import tiny_train_config
from asr.config import to_dict


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "asr.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def test_overrides_set_nested_values():
    data = apply_overrides({"optim": {"lr": 1.0}}, ["optim.lr=0.5", "model.encoder.num_layers=3", "seed=7"])
    assert data == {"optim": {"lr": 0.5}, "model": {"encoder": {"num_layers": 3}}, "seed": 7}


def test_train_command_trains_a_model(fsdd_manifest, tmp_path):
    config = tiny_train_config(tmp_path / "exp", [fsdd_manifest], optim={"max_steps": 3})
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(to_dict(config)))
    result = run_cli("train", str(tmp_path / "train.yaml"), "--exp-dir", str(tmp_path / "other"), "--threads", "1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "other" / "model")
    assert (tmp_path / "other" / "model" / "model.yaml").is_file()


def test_bad_config_is_a_named_error_without_traceback(tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text("optim:\n  learning_rate: 0.1\n")
    assert main(["train", str(tmp_path / "bad.yaml")]) == 1
    err = capsys.readouterr().err
    assert "ConfigError" in err and "learning_rate" in err and "Traceback" not in err
    assert main(["train", str(tmp_path / "missing.yaml")]) == 1
    assert "cannot read config" in capsys.readouterr().err


def test_help_lists_subcommands():
    result = run_cli("--help")
    assert result.returncode == 0 and "train" in result.stdout and "average" in result.stdout
