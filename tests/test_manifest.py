import json

import pytest
import soundfile as sf

from asr.data.dataset import BucketBatchSampler
from asr.data.manifest import read_manifest
from asr.errors import ManifestError


def test_jsonl_paths_are_relative_to_the_manifest(data_dir):
    utts = read_manifest(data_dir / "speech/speechbrain_asr/manifest.jsonl")
    assert len(utts) == 10
    assert utts[0].audio == str(data_dir / "speech/speechbrain_asr/audio/spk1_snt1.flac")
    assert utts[0].text == "THE CHILD ALMOST HURT THE SMALL DOG" and utts[0].speaker == "spk1"


def test_kaldi_directory(data_dir, tmp_path):
    src = data_dir / "speech/speechbrain_asr/audio"
    (tmp_path / "wav.scp").write_text(f"a {src / 'spk1_snt1.flac'}\nb {src / 'spk1_snt3.flac'}\n")
    (tmp_path / "text").write_text("a THE CHILD ALMOST HURT THE SMALL DOG\nb\n")
    (tmp_path / "utt2spk").write_text("a spk1\nb spk1\n")
    utts = read_manifest(tmp_path)
    assert [u.id for u in utts] == ["a", "b"]
    assert utts[0].text == "THE CHILD ALMOST HURT THE SMALL DOG" and utts[1].text == ""
    assert utts[0].duration == pytest.approx(sf.info(str(src / "spk1_snt1.flac")).duration, abs=1e-3)
    assert utts[1].speaker == "spk1"


def test_malformed_manifests_are_named(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "a", "audio": "x.wav", "text": "t", "duration": 1}) + "\n{not json\n")
    with pytest.raises(ManifestError, match="bad.jsonl:2"):
        read_manifest(bad)
    with pytest.raises(ManifestError, match="not found"):
        read_manifest(tmp_path / "missing.jsonl")
    (tmp_path / "kaldi").mkdir()
    (tmp_path / "kaldi" / "wav.scp").write_text("a sox x.wav -t wav - |\n")
    with pytest.raises(ManifestError, match="piped"):
        read_manifest(tmp_path / "kaldi")


def test_bucketing_respects_the_budget_and_resumes():
    durations = [0.5 + (i * 7 % 13) for i in range(200)]
    sampler = BucketBatchSampler(durations, max_batch_seconds=30.0, seed=3)
    batches = sampler.epoch_batches(0)
    assert sorted(i for b in batches for i in b) == list(range(200))
    assert all(len(b) * max(durations[i] for i in b) <= 30.0 or len(b) == 1 for b in batches)
    assert sampler.epoch_batches(1) != batches  # reshuffled per epoch
    sampler.set_position(0, 5)
    assert list(sampler) == batches[5:]
    ranks = [BucketBatchSampler(durations, 30.0, 3, rank=r, world_size=2).epoch_batches(0) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1])
    assert not {i for b in ranks[0] for i in b} & {i for b in ranks[1] for i in b}
