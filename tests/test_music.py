import logging

import numpy as np
import pytest
import soundfile as sf

from asr.config import AugmentConfig
from asr.data.augment import Augmenter, active_speech_power, build_augmenter, colored_noise
from asr.data.corpora import main as corpora_main, music_folders
from asr.data.music import synthetic_music
from asr.data.noise import TEST, TRAIN, NoiseBank, write_bank_manifest
from asr.errors import ConfigError, ManifestError

SR = 16000


def flatness(x: np.ndarray) -> float:
    """Spectral flatness of the mean power spectrum: near 1 for white noise, near 0 for tones."""
    frames = x[: len(x) // 1024 * 1024].reshape(-1, 1024) * np.hanning(1024)
    power = (np.abs(np.fft.rfft(frames, axis=1)) ** 2).mean(axis=0)[1:] + 1e-12
    return float(np.exp(np.mean(np.log(power))) / np.mean(power))


def test_a_piece_is_drawn_from_its_generator_alone():
    a = synthetic_music(3 * SR, np.random.default_rng(5))
    assert np.array_equal(a, synthetic_music(3 * SR, np.random.default_rng(5)))
    assert not np.array_equal(a, synthetic_music(3 * SR, np.random.default_rng(6)))


@pytest.mark.parametrize("length", [0, 1, 400, 5 * SR])
def test_a_piece_has_the_length_asked_for_at_unit_power(length):
    x = synthetic_music(length, np.random.default_rng(length))
    assert x.dtype == np.float32 and x.shape == (length,) and np.isfinite(x).all()
    if length:
        assert np.mean(x.astype(np.float64) ** 2) == pytest.approx(1.0, rel=1e-4)


def test_pieces_are_tonal_and_change_over_time():
    rng = np.random.default_rng(0)
    pieces = [synthetic_music(4 * SR, rng) for _ in range(8)]
    # Harmonic notes: far from the flat spectrum of white noise.
    assert max(flatness(p) for p in pieces) < 0.2 < flatness(colored_noise(4 * SR, "white", rng))
    # Notes and beats: the level of 50 ms frames moves, unlike stationary noise.
    for piece in pieces:
        levels = np.log(np.mean(piece[: 80 * 800].reshape(80, 800) ** 2, axis=1) + 1e-9)
        assert np.std(levels) > 0.1


def test_the_augmenter_mixes_music_at_the_drawn_snr():
    t = np.arange(2 * SR) / SR
    speech = (0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32)
    config = AugmentConfig(speeds=[1.0], reverb_prob=0.0, noise_prob=0.0, colored_noise_prob=0.0, babble_prob=0.0,
                           music_prob=1.0, volume_prob=0.0, clip_prob=0.0)
    for seed in range(3):
        result = Augmenter(config).apply(speech, np.random.default_rng(seed))
        assert result.noise == "music"
        added = result.waveform - speech
        snr = 10 * np.log10(active_speech_power(speech) / np.mean(added.astype(np.float64) ** 2))
        assert snr == pytest.approx(result.snr_db, abs=0.01)


def test_music_counts_towards_the_one_noise_per_utterance():
    with pytest.raises(ConfigError, match="music_prob"):
        AugmentConfig(noise_prob=0.5, colored_noise_prob=0.1, babble_prob=0.3, music_prob=0.2)
    with pytest.raises(ConfigError, match="music_prob"):
        AugmentConfig(music_prob=-0.1)


def test_recorded_music_becomes_a_bank_whose_training_split_the_augmenter_draws_from(tmp_path, caplog):
    root = tmp_path / "soundtrack"
    rng = np.random.default_rng(0)
    for i in range(20):
        path = root / f"album{i % 2}" / f"track{i}.flac"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, 0.1 * synthetic_music(SR, rng), SR)
    (root / "album0" / "broken.ogg").write_text("not audio")
    (root / "album0" / "cover.png").write_bytes(b"not music either")
    with caplog.at_level(logging.WARNING):
        entries = music_folders([root])
    assert "broken.ogg" in caplog.text
    assert sorted(e.id for e in entries) == sorted(f"soundtrack/album{i % 2}/track{i}.flac" for i in range(20))
    assert all(e.kind == "recorded_music" and e.duration == pytest.approx(1.0) for e in entries)
    with pytest.raises(ManifestError, match="no audio files"):
        music_folders([tmp_path / "nothing-here"])

    manifest = tmp_path / "music.jsonl"
    assert corpora_main(["music", str(manifest), str(root)]) == 0
    train, test = (NoiseBank.from_manifests([manifest], split) for split in (TRAIN, TEST))
    train_ids, test_ids = {e.id for e in train.entries}, {e.id for e in test.entries}
    assert train_ids and test_ids and not train_ids & test_ids and len(train_ids | test_ids) == 20

    speech = (0.3 * np.sin(2 * np.pi * 220 * np.arange(2 * SR) / SR)).astype(np.float32)
    config = AugmentConfig(speeds=[1.0], reverb_prob=0.0, noise_prob=0.0, colored_noise_prob=0.0, babble_prob=0.0,
                           music_prob=1.0, volume_prob=0.0, clip_prob=0.0, music_manifests=[str(manifest)])
    augmenter = build_augmenter(config, [], seed=0)
    drawn = set()
    for seed in range(30):
        result = augmenter.apply(speech, np.random.default_rng(seed))
        drawn.add(result.noise)
        added = result.waveform - speech
        snr = 10 * np.log10(active_speech_power(speech) / np.mean(added.astype(np.float64) ** 2))
        assert snr == pytest.approx(result.snr_db, abs=0.01)
    assert drawn <= train_ids and len(drawn) > 5

    held_out = tmp_path / "held_out.jsonl"
    write_bank_manifest(test.entries, held_out)
    with pytest.raises(ConfigError, match="music_manifests"):
        build_augmenter(AugmentConfig(music_prob=0.5, noise_prob=0.0, babble_prob=0.0,
                                      reverb_prob=0.0, music_manifests=[str(held_out)]), [], seed=0)
