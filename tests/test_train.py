import csv
import json
import shutil

import numpy as np
import soundfile as sf
import torch

from asr.checkpoint import list_checkpoints, load_checkpoint, load_model_dir
from asr.config import TrainConfig, from_dict, to_dict
from asr.data.dataset import SpeechDataset, collate
from asr.data.manifest import read_manifest
from asr.decoding.ctc import ctc_greedy_search
from asr.experiment import Experiment
from asr.model.asr_model import ASRModel
from asr.train import Trainer, train
from tests.conftest import fsdd_rows, tiny_train_config, write_manifest


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_tiny_model_memorises_twenty_utterances(tiny_model_dir, fsdd_manifest):
    model, tokenizer, meta = load_model_dir(tiny_model_dir)
    utts = read_manifest(fsdd_manifest)
    assert len(utts) == 20
    batch = collate([SpeechDataset(utts, tokenizer)[i] for i in range(len(utts))])
    with torch.no_grad():
        enc = model.encode(batch.waveforms, batch.lengths)
        hyps = [tokenizer.decode(ids) for ids in ctc_greedy_search(model.ctc.log_probs(enc.hidden), enc.lengths)]
    assert hyps == [u.text for u in utts]
    valid = read_csv(tiny_model_dir.parent / "valid_log.csv")
    assert float(valid[-1]["cer"]) == 0.0
    assert float(valid[-1]["loss"]) < float(valid[0]["loss"]) / 10


def test_loss_goes_down_on_a_real_batch(data_dir, tmp_path):
    rows = [json.loads(line) for line in (data_dir / "speech/speechbrain_asr/manifest.jsonl").read_text().splitlines()]
    rows = [{**r, "audio": str(data_dir / "speech/speechbrain_asr" / r["audio"])} for r in rows[:4]]
    manifest = write_manifest(rows, tmp_path / "m.jsonl")
    config = tiny_train_config(tmp_path / "exp", [manifest], data={"max_batch_seconds": 100.0, "dev": []},
                               optim={"lr": 0.002, "warmup_steps": 1, "max_epochs": 8, "scheduler": "constant"})
    train(config)
    losses = [float(r["loss"]) for r in read_csv(tmp_path / "exp" / "train_log.csv")]
    assert len(losses) == 8
    assert losses[-1] < 0.8 * losses[0]


def test_resume_continues_exactly(fsdd_manifest, tmp_path):
    # SpecAugment and dropout on, so that resuming must restore the random state too.
    sections = dict(model={"specaugment": {}, "encoder": {"d_model": 64, "num_heads": 2, "ffn_dim": 128,
                                                         "num_layers": 2, "dropout": 0.1}},
                    optim={"max_steps": 8, "accum_grad": 2}, checkpoint_every=5, keep_checkpoints=10)
    full = tiny_train_config(tmp_path / "full", [fsdd_manifest], **sections)
    train(full)
    cut_at = tmp_path / "full" / "checkpoints" / "step_00000005.pt"
    assert load_checkpoint(cut_at)["batch_in_epoch"] > 0  # resuming mid-epoch is the hard case

    # A run that was killed after its step-5 checkpoint, then resumed.
    shutil.copytree(tmp_path / "full", tmp_path / "cut")
    for path in list_checkpoints(tmp_path / "cut" / "checkpoints"):
        if path.name > cut_at.name:
            path.unlink()
    resumed = tiny_train_config(tmp_path / "cut", [fsdd_manifest], **sections)
    Trainer(resumed, resume=True).run()
    a = load_checkpoint(tmp_path / "full" / "checkpoints" / "step_00000008.pt")
    b = load_checkpoint(tmp_path / "cut" / "checkpoints" / "step_00000008.pt")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    full_log = read_csv(tmp_path / "full" / "train_log.csv")
    cut_log = read_csv(tmp_path / "cut" / "train_log.csv")
    assert [r["loss"] for r in full_log[5:8]] == [r["loss"] for r in cut_log[8:]]


def test_corrupt_checkpoint_is_named_and_previous_one_used(fsdd_manifest, tmp_path, caplog):
    config = tiny_train_config(tmp_path / "exp", [fsdd_manifest], optim={"max_steps": 4}, checkpoint_every=2)
    train(config)
    newest = list_checkpoints(tmp_path / "exp" / "checkpoints")[-1]
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    newest.write_bytes(bytes(data))
    trainer = Trainer(tiny_train_config(tmp_path / "exp", [fsdd_manifest], optim={"max_steps": 4}), resume=True)
    assert trainer.step == 2
    assert "checksum mismatch" in caplog.text and newest.name in caplog.text


def test_bad_utterances_are_skipped_and_reported(data_dir, tmp_path):
    rows = fsdd_rows(data_dir, speakers=("george",))
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "text.wav").write_text("this is not audio")
    sf.write(tmp_path / "nan.wav", [0.0, float("nan")] * 800, 16000, subtype="FLOAT")
    bad = [{"id": name, "audio": str(tmp_path / f"{name}.wav"), "text": "one", "duration": 0.5}
           for name in ("empty", "text", "nan")]
    bad.append({**rows[0], "id": "odd_chars", "text": "zero \u00e9\u00e9"})
    manifest = write_manifest(rows + bad, tmp_path / "m.jsonl")
    config = tiny_train_config(tmp_path / "exp", [manifest], optim={"max_epochs": 1},
                               data={"dev": [], "max_batch_seconds": 100.0},
                               tokenizer={"kind": "char"})
    # The tokenizer is trained on the text, so build it first from clean rows only: é is then unknown.
    clean = tiny_train_config(tmp_path / "exp", [write_manifest(rows, tmp_path / "clean.jsonl")])
    Experiment(tmp_path / "exp").prepare_tokenizer(clean, read_manifest(tmp_path / "clean.jsonl"))
    train(config)
    report = dict(line.split("\t") for line in (tmp_path / "exp" / "skipped.tsv").read_text().splitlines())
    assert set(report) == {"empty", "text", "nan", "odd_chars"}
    assert "NaN" in report["nan"] and "outside the tokenizer" in report["odd_chars"]
    assert str(tmp_path / "text.wav") in report["text"]


def test_average_of_checkpoints_is_their_mean(fsdd_manifest, tmp_path):
    config = tiny_train_config(tmp_path / "exp", [fsdd_manifest], optim={"max_steps": 4}, checkpoint_every=1,
                               keep_checkpoints=10)
    train(config)
    model_dir = Experiment(tmp_path / "exp").average(num=2, by="last")
    model, _, meta = load_model_dir(model_dir)
    a = load_checkpoint(tmp_path / "exp/checkpoints/step_00000003.pt")["model"]
    b = load_checkpoint(tmp_path / "exp/checkpoints/step_00000004.pt")["model"]
    key = "encoder.layers.0.ffn.0.weight"
    torch.testing.assert_close(model.state_dict()[key], (a[key] + b[key]) / 2)
    assert meta["info"]["averaged"] == ["step_00000003.pt", "step_00000004.pt"]


def test_train_config_round_trips_through_yaml(tmp_path):
    from asr.config import load_yaml, save_yaml

    config = tiny_train_config(tmp_path, [tmp_path / "a.jsonl"], optim={"scheduler": "cosine"})
    save_yaml(config, tmp_path / "c.yaml")
    again = load_yaml(TrainConfig, tmp_path / "c.yaml")
    assert again == config
    assert to_dict(from_dict(TrainConfig, to_dict(config))) == to_dict(config)


def test_model_is_fully_described_by_its_config(tiny_model_dir):
    model, tokenizer, meta = load_model_dir(tiny_model_dir)
    rebuilt = ASRModel(model.config)
    assert set(rebuilt.state_dict()) == set(model.state_dict())
    assert model.config.vocab_size == tokenizer.vocab_size


def test_no_speech_clips_train_to_output_nothing(data_dir, tmp_path):
    rng = np.random.default_rng(0)
    clips = []
    for name, wave in {"hiss": 0.1 * rng.standard_normal(16000), "quiet": 1e-4 * rng.standard_normal(12000)}.items():
        sf.write(tmp_path / f"{name}.wav", wave.astype(np.float32), 16000)
        # Whatever text a no-speech manifest carries is not a transcript.
        clips.append({"id": name, "audio": str(tmp_path / f"{name}.wav"), "text": "words", "duration": len(wave) / 16000})
    speech = write_manifest(fsdd_rows(data_dir, speakers=("george",)), tmp_path / "speech.jsonl")
    no_speech = write_manifest(clips, tmp_path / "noise.jsonl")
    config = tiny_train_config(tmp_path / "exp", [speech], data={"dev": [], "no_speech": [str(no_speech)]},
                               optim={"lr": 0.003, "warmup_steps": 1, "scheduler": "constant"})
    trainer = Trainer(config)
    examples = {x.id: x for x in (trainer.train_set[i] for i in range(len(trainer.train_set)))}
    assert len(examples) == 12 and examples["hiss"].tokens == [] and examples["quiet"].ctc_tokens == []
    assert examples["0_george_0"].tokens == trainer.tokenizer.encode("zero")

    model = trainer.model
    batch = collate([examples["hiss"], examples["quiet"]])
    optimizer = torch.optim.Adam(model.parameters(), lr=0.003)

    def blank_probability() -> float:
        model.eval()
        with torch.no_grad():
            enc = model.encode(batch.waveforms, batch.lengths)
            blank = model.ctc.log_probs(enc.hidden)[..., model.config.blank_id].exp().mean()
        model.train()
        return float(blank)

    before, losses = blank_probability(), []
    for _ in range(15):
        output = model(batch.waveforms, batch.lengths, batch.targets, batch.target_lengths)
        assert torch.isfinite(output.loss)
        losses.append((float(output.ctc), float(output.attention)))
        optimizer.zero_grad()
        output.loss.backward()
        optimizer.step()
    assert before < 0.5 < 0.9 < blank_probability()
    # The decoder's only target is the end of sentence, which this tied-embedding model predicts from the start.
    assert losses[-1][0] < losses[0][0] / 10 and losses[-1][1] < 0.1
