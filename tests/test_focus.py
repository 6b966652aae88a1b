import math

import numpy as np
import pytest
import torch

from asr.analysis.focus import (
    attention_focus,
    frame_energy_db,
    mean_focus,
    row_entropy,
    speech_activity,
    speech_mask,
    subsample_mask,
)


def _tone_with_silences(sample_rate: int = 16000) -> np.ndarray:
    """0.5 s silence, 1 s tone, 0.5 s silence, 0.5 s tone, 0.5 s silence (3 s)."""
    t = np.arange(sample_rate) / sample_rate
    tone = 0.3 * np.sin(2 * np.pi * 220 * t)
    silence = np.zeros(sample_rate // 2)
    return np.concatenate([silence, tone, silence, tone[: sample_rate // 2], silence])


def test_speech_activity_finds_the_silent_regions():
    x = _tone_with_silences()
    active = speech_activity(x, threshold_db=40)
    assert len(active) == 1 + (len(x) - 400) // 160  # as the log-mel frontend counts frames
    # Frame i covers samples [160 i, 160 i + 400): it holds tone iff that range meets a tone region.
    starts = np.arange(len(active)) * 160
    in_tone = lambda lo, hi: (starts + 400 > lo) & (starts < hi)  # noqa: E731
    expected = in_tone(8000, 24000) | in_tone(32000, 40000)
    np.testing.assert_array_equal(active, expected)


def test_speech_activity_is_relative_to_the_loudest_frame():
    x = _tone_with_silences()
    quiet = 1e-3 * x + 1e-6 * np.random.default_rng(0).standard_normal(len(x))  # noise floor ~ -70 dB re tone
    np.testing.assert_array_equal(speech_activity(quiet), speech_activity(x))
    assert not speech_activity(np.zeros(16000)).any()


def test_frame_energy_of_a_sine():
    x = np.sin(2 * np.pi * 100 * np.arange(16000) / 16000)  # 100 Hz: whole periods in a 400-sample frame
    np.testing.assert_allclose(frame_energy_db(x), 10 * math.log10(0.5), atol=1e-6)
    assert len(frame_energy_db(np.ones(100))) == 1  # shorter than a window: one padded frame


def test_subsample_mask_marks_a_frame_with_any_speech():
    mask = np.array([0, 0, 0, 0, 0, 1, 0, 0, 1, 1, 1, 1, 0, 0], dtype=bool)
    np.testing.assert_array_equal(subsample_mask(mask, 4), [False, True, True, False])
    np.testing.assert_array_equal(subsample_mask(mask, 4, num_frames=3), [False, True, True])
    np.testing.assert_array_equal(subsample_mask(mask, 4, num_frames=5), [False, True, True, False, False])


def test_speech_mask_over_encoder_frames():
    x = _tone_with_silences()
    mask = speech_mask(x, subsampling=4, num_frames=73)
    assert mask.shape == (73,) and mask.dtype == bool
    # Encoder frame j spans feature frames 4j..4j+3, i.e. samples [640 j, 640 j + 880): it meets the
    # tone at samples [8000, 24000) for j in 12..37 and the one at [32000, 40000) for j in 49..62.
    j = np.arange(73)
    np.testing.assert_array_equal(mask, ((j >= 12) & (j <= 37)) | ((j >= 49) & (j <= 62)))


def test_focus_on_a_hand_made_matrix():
    speech = np.array([False, True, True, False])  # chance = 0.5
    head_on_speech = [[0.0, 0.5, 0.5, 0.0], [0.0, 1.0, 0.0, 0.0]]  # all mass on speech
    head_uniform = [[0.25] * 4, [0.25] * 4]
    head_on_noise = [[0.5, 0.0, 0.0, 0.5], [0.6, 0.2, 0.0, 0.2]]  # 0.0 and 0.2 on speech
    focus = attention_focus(np.array([head_on_speech, head_uniform, head_on_noise]), speech)
    assert focus.chance == 0.5
    np.testing.assert_allclose(focus.speech_share, [[1.0, 0.5, 0.1]])
    np.testing.assert_allclose(focus.normalized_share, [[1.0, 0.0, -0.8]])
    np.testing.assert_allclose(focus.normalized_entropy[0, 1], 1.0)  # uniform rows
    np.testing.assert_allclose(focus.entropy[0, 0], math.log(2) / 2)  # rows: two halves, one-hot


def test_entropy_of_uniform_and_one_hot_rows():
    assert row_entropy(np.full(8, 1 / 8)) == pytest.approx(math.log(8))
    assert row_entropy(np.eye(5)).tolist() == [0.0] * 5


def test_focus_takes_per_layer_tensors_as_the_decoder_returns_them():
    torch.manual_seed(0)
    layers = [torch.softmax(torch.randn(4, 6, 10, requires_grad=True), dim=-1) for _ in range(3)]
    speech = torch.arange(10) < 3
    focus = attention_focus(layers, speech)
    assert focus.speech_share.shape == (3, 4)
    expected = layers[1][2, :, :3].sum(-1).mean().item()
    assert focus.speech_share[1, 2] == pytest.approx(expected, rel=1e-6)
    assert np.all((focus.normalized_entropy > 0) & (focus.normalized_entropy < 1))
    summary = focus.summary()
    assert len(summary["per_layer"]["speech_share"]) == 3
    assert summary["overall"]["speech_share"] == pytest.approx(float(focus.speech_share.mean()))


def test_focus_rejects_scores_and_mismatched_frames():
    with pytest.raises(ValueError, match="sum to one"):
        attention_focus(np.ones((1, 2, 4)), np.ones(4, dtype=bool))
    with pytest.raises(ValueError, match="frames"):
        attention_focus(np.full((1, 2, 4), 0.25), np.ones(5, dtype=bool))


def test_mean_focus_weights_utterances_and_skips_undefined_values():
    speech = np.array([True, False])
    a = attention_focus(np.array([[[1.0, 0.0]]]), speech)  # share 1, normalised 1
    b = attention_focus(np.array([[[0.0, 1.0]]]), speech)  # share 0, normalised -1
    all_speech = attention_focus(np.array([[[0.5, 0.5]]]), np.array([True, True]))  # normalised undefined
    assert np.isnan(all_speech.normalized_share).all()
    mean = mean_focus([a, b, all_speech])
    assert mean.utterances == 3
    np.testing.assert_allclose(mean.speech_share, [[2 / 3]])
    np.testing.assert_allclose(mean.normalized_share, [[0.0]])
    assert mean.chance == pytest.approx(2 / 3)
