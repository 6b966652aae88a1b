"""Faults: training killed at any moment, damaged or hostile model files, a bad line among 10,000.

Whatever happens, nothing already done is lost and nothing broken passes for sound: every
checkpoint on disk is complete (its checksum marker matches) or passed over by name, a resumed
run ends where an uninterrupted one does, and a model folder that was tampered with is refused
with a CheckpointError instead of loading, running code or crashing.
"""

import hashlib
import io
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import pytest
import torch
import yaml

import asr
from asr.checkpoint import (
    list_checkpoints, load_checkpoint, load_latest_checkpoint, load_model_dir, save_checkpoint, save_model,
)
from asr.model_folder import META_FILE, WEIGHTS_FILE
from asr.cli import main as cli_main
from asr.config import to_dict
from asr.data.dataset import BucketBatchSampler
from asr.data.manifest import read_manifest
from asr.errors import CheckpointError, ManifestError
from asr.train import Trainer, train
from tests.conftest import fsdd_rows, tiny_train_config, write_manifest

REPO = Path(__file__).resolve().parents[1]
Tamper = Callable[[Path, Path], None]  # (model folder, a file whose existence proves code ran)


# --- killed at random moments ------------------------------------------------------------------------

def newest_usable_step(folder: Path) -> Optional[int]:
    """Checks that every checkpoint under a real name loads (its marker matches) or is refused by
    name and passed over on resume; returns the step a resumed run starts from."""
    names = [p.name for p in folder.iterdir() if not p.name.startswith(".")] if folder.is_dir() else []
    assert all(re.fullmatch(r"step_\d{8}\.pt(\.sha256)?", name) for name in names), names  # temporaries are hidden
    usable = []
    for path in list_checkpoints(folder):
        try:
            state = load_checkpoint(path)
        except CheckpointError:  # written but not marked complete, or marked for what it held before
            continue
        assert state["step"] == int(path.stem.removeprefix("step_")) and set(state["model"])
        usable.append(path)
    latest = load_latest_checkpoint(folder)
    assert (latest[0] if latest else None) == (usable[-1] if usable else None)
    return int(usable[-1].stem.removeprefix("step_")) if usable else None


def wait_for_a_new_checkpoint(folder: Path, seen: set[str], process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not {p.name for p in list_checkpoints(folder)} - seen:
        assert process.poll() is None, "training ended before it was killed"
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)


@pytest.mark.slow
def test_training_killed_four_times_at_random_moments_ends_as_an_uninterrupted_run(fsdd_manifest, tmp_path):
    sections = dict(optim={"max_steps": 30, "max_epochs": 100}, checkpoint_every=1, keep_checkpoints=3, threads=1)
    reference = train(tiny_train_config(tmp_path / "reference", [fsdd_manifest], **sections))
    config = tiny_train_config(tmp_path / "killed", [fsdd_manifest], **sections)
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(to_dict(config)))
    command = [sys.executable, "-m", "asr.cli", "train", str(tmp_path / "train.yaml"), "--resume"]
    checkpoints = tmp_path / "killed" / "checkpoints"
    rng = random.Random(10)
    for kill in range(4):
        seen = {p.name for p in list_checkpoints(checkpoints)}
        with open(tmp_path / f"run{kill}.log", "w") as log:
            process = subprocess.Popen(command, stdout=log, stderr=log, cwd=REPO)
            try:
                wait_for_a_new_checkpoint(checkpoints, seen, process, timeout=120)
                time.sleep(rng.uniform(0.0, 0.3))  # anywhere in a step: computing, saving, pruning old ones
            finally:
                process.send_signal(signal.SIGKILL)
                process.wait(timeout=30)
        assert process.returncode == -signal.SIGKILL
        newest_usable_step(checkpoints)
        assert not (tmp_path / "killed" / "model").exists()

    finished = subprocess.run(command, capture_output=True, timeout=300, cwd=REPO)
    assert finished.returncode == 0, finished.stderr.decode()[-3000:]
    assert finished.stdout.decode().splitlines()[-1] == str(tmp_path / "killed" / "model")
    assert newest_usable_step(checkpoints) == 30
    model, _, meta = load_model_dir(tmp_path / "killed" / "model")
    assert meta["info"]["step"] == 30
    # Resuming is exact, so the kills cost time and nothing else.
    expected, _, _ = load_model_dir(reference)
    for key, value in expected.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


# --- a checkpoint that would run code ---------------------------------------------------------------

class RunsCode:
    """Unpickled without weights_only, it creates a file: the proof that code ran."""

    def __init__(self, proof: Path):
        self.proof = proof

    def __reduce__(self):
        return (exec, (f"open({str(self.proof)!r}, 'w')",))


def test_a_checkpoint_that_would_run_code_is_named_and_the_one_before_it_used(fsdd_manifest, tmp_path, caplog, capsys):
    config = tiny_train_config(tmp_path / "exp", [fsdd_manifest], optim={"max_steps": 4}, checkpoint_every=2)
    train(config)
    proof = tmp_path / "code_ran"
    bomb = tmp_path / "exp" / "checkpoints" / "step_00000009.pt"
    save_checkpoint({"step": 9, "model": RunsCode(proof)}, bomb)  # with a marker that matches
    trainer = Trainer(config, resume=True)
    assert trainer.step == 4 and not proof.exists()
    assert re.search(rf"ignoring checkpoint: {re.escape(str(bomb))}: unreadable checkpoint", caplog.text)
    # Averaging it is refused by name, in one line.
    assert cli_main(["average", str(tmp_path / "exp"), "--num", "2"]) == 1
    err = capsys.readouterr().err
    assert err == (f"asr average: error: CheckpointError: {bomb}: unreadable checkpoint (it holds more than "
                   "tensors and numbers, and unpickling the rest could run code)\n")
    assert not proof.exists()


# --- a tampered model folder ----------------------------------------------------------------------

def edit_meta(folder: Path, change: Callable[[dict], None]) -> None:
    meta = yaml.safe_load((folder / META_FILE).read_text())
    change(meta)
    (folder / META_FILE).write_text(yaml.safe_dump(meta, sort_keys=False))


def set_encoder(**values) -> Tamper:
    return lambda folder, proof: edit_meta(folder, lambda meta: meta["model"]["encoder"].update(values))


def write(name: str, data: bytes) -> Tamper:
    return lambda folder, proof: (folder / name).write_bytes(data)


def python_object(folder: Path, proof: Path) -> None:
    """A description that, loaded by an unsafe YAML reader, would run a command."""
    (folder / META_FILE).write_text(f"!!python/object/apply:os.system ['touch {proof}']\n")


def wrong_checksum(folder: Path, proof: Path) -> None:
    edit_meta(folder, lambda meta: meta.update(weights_sha256="0" * 64))


def tokenizer_elsewhere(folder: Path, proof: Path) -> None:
    edit_meta(folder, lambda meta: meta["tokenizer"].update(file="../../../../etc/passwd"))


def drop_a_token(folder: Path, proof: Optional[Path] = None) -> None:
    lines = (folder / "tokens.txt").read_text().splitlines()
    (folder / "tokens.txt").write_text("\n".join(lines[:5] + lines[6:]) + "\n")


def pickled_weights(folder: Path, proof: Path) -> None:
    """Weights replaced by a pickle that runs code, with the checksum in model.yaml rewritten to match."""
    buffer = io.BytesIO()
    torch.save({"encoder.weight": RunsCode(proof)}, buffer)
    (folder / WEIGHTS_FILE).write_bytes(buffer.getvalue())
    edit_meta(folder, lambda meta: meta.update(weights_sha256=hashlib.sha256(buffer.getvalue()).hexdigest()))


TAMPERING: dict[str, tuple[Tamper, str]] = {  # name -> (what is done to a model folder, pattern of the error)
    "yaml_not_utf8": (write(META_FILE, b"\xff\xfe model: {}"), "model.yaml: invalid model description"),
    "yaml_empty": (write(META_FILE, b""), "model.yaml: invalid model description"),
    "yaml_python_object": (python_object, "model.yaml: invalid model description"),
    "yaml_checksum_changed": (wrong_checksum, "model.safetensors: checksum mismatch"),
    "yaml_width_changed": (set_encoder(d_model=32), "weights do not fit the config"),
    "yaml_negative_width": (set_encoder(d_model=-64), "model.yaml: invalid model description .*negative dimension"),
    "yaml_tokenizer_elsewhere": (tokenizer_elsewhere, "tokenizer file '../../../../etc/passwd' lies outside"),
    "tokens_dropped": (drop_a_token, "tokens.txt: missing, or checksum mismatch"),
    "tokens_not_utf8": (write("tokens.txt", b"\xff<blank>\n"), "tokens.txt: missing, or checksum mismatch"),
    "weights_pickled": (pickled_weights, "model.safetensors: unreadable weights"),
}


@pytest.mark.parametrize("damage", list(TAMPERING))
def test_a_tampered_model_folder_is_refused_by_name(tiny_model_dir, tmp_path, damage):
    folder, proof = tmp_path / "model", tmp_path / "code_ran"
    model, tokenizer, _ = load_model_dir(tiny_model_dir)
    save_model(model, tokenizer, folder)
    tamper, reason = TAMPERING[damage]
    tamper(folder, proof)
    with pytest.raises(CheckpointError, match=reason):
        asr.load_model(folder)
    assert not proof.exists()


def test_the_command_refuses_a_tampered_model_in_one_line(tiny_model_dir, tmp_path, data_dir, capsys):
    folder = tmp_path / "model"
    model, tokenizer, _ = load_model_dir(tiny_model_dir)
    save_model(model, tokenizer, folder)
    set_encoder(d_model=32)(folder, tmp_path / "code_ran")  # torch lists every misfit weight, a line each
    assert cli_main(["transcribe", fsdd_rows(data_dir)[0]["audio"], "--model", str(folder)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith(f"asr transcribe: error: CheckpointError: {folder / WEIGHTS_FILE}: weights do not fit")
    assert "size mismatch for encoder.subsampling.convs.0.weight" in err


# --- a bad line among 10,000 ------------------------------------------------------------------------

def test_one_bad_utterance_in_ten_thousand_is_skipped_and_reported_and_training_goes_on(data_dir, tmp_path):
    good = fsdd_rows(data_dir)  # 20 short recordings, each named 500 times
    rows = [{**good[i % len(good)], "id": f"utt{i:05d}"} for i in range(10_000)]
    max_batch_seconds, seed = 4.0, 1
    batches = BucketBatchSampler([r["duration"] for r in rows], max_batch_seconds, seed).epoch_batches(0)
    # Two steps load the first two batches: a bad line in the first is met, one in the last never is.
    (tmp_path / "notes.wav").write_text("not audio")
    met, unmet = batches[0][0], batches[-1][0]
    for index, name in [(met, "bad_met"), (unmet, "bad_unmet")]:
        rows[index] = {**rows[index], "id": name, "audio": str(tmp_path / "notes.wav")}  # same duration: same batches
    manifest = write_manifest(rows, tmp_path / "ten_thousand.jsonl")
    config = tiny_train_config(tmp_path / "exp", [manifest], optim={"max_steps": 2}, seed=seed, threads=1,
                               data={"dev": [], "max_batch_seconds": max_batch_seconds, "cmvn_max_utterances": 50})
    model_dir = train(config)
    report = (tmp_path / "exp" / "skipped.tsv").read_text().splitlines()
    assert len(report) == 1 and report[0].startswith(f"bad_met\t{tmp_path / 'notes.wav'}: not a readable audio file")
    steps = (tmp_path / "exp" / "train_log.csv").read_text().splitlines()[1:]
    assert [line.split(",")[0] for line in steps] == ["1", "2"]
    assert load_model_dir(model_dir)[2]["info"]["step"] == 2


@pytest.mark.parametrize("line, reason", [
    (b'{"id": "x", "audio": "a.wav", "text": "caf\xe9", "duration": 1.0}', "codec can't decode"),  # Latin-1
    (b'{"id": "x", "audio": "a.wav", "text": 42, "duration": 1.0}', "text must be a string"),
    (b"\x00\x01\x02 binary junk", "malformed manifest line"),
])
def test_a_malformed_manifest_line_stops_training_by_name_before_it_starts(fsdd_manifest, tmp_path, line, reason,
                                                                          capsys):
    manifest = tmp_path / "m.jsonl"
    manifest.write_bytes(fsdd_manifest.read_bytes() + line + b"\n")
    config = tiny_train_config(tmp_path / "exp", [manifest])
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(to_dict(config)))
    assert cli_main(["train", str(tmp_path / "train.yaml")]) == 1
    err = capsys.readouterr().err
    assert re.fullmatch(rf"asr train: error: ManifestError: {re.escape(str(manifest))}:21: .*{reason}.*\n", err), err
    assert not (tmp_path / "exp" / "checkpoints").exists()


def test_a_kaldi_table_that_is_not_utf8_is_named(tmp_path, data_dir):
    folder = tmp_path / "kaldi"
    folder.mkdir()
    (folder / "wav.scp").write_text(f"a {fsdd_rows(data_dir)[0]['audio']}\n")
    (folder / "text").write_bytes(b"a caf\xe9\n")
    with pytest.raises(ManifestError, match=r"kaldi/text: not UTF-8 text"):
        read_manifest(folder)
