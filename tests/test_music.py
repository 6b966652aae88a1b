import numpy as np
import pytest

from asr.config import AugmentConfig
from asr.data.augment import Augmenter, active_speech_power, colored_noise
from asr.data.music import synthetic_music
from asr.errors import ConfigError

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
