"""asr.resample: torchaudio's resampling in numpy, so that audio at any rate is read without torch."""

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF

from asr.audio import resampling_ratio
from asr.resample import resample
from tests.conftest import REPO

RATES = [8000, 11025, 22050, 24000, 32000, 44100, 48000, 96000, 44101]


@pytest.mark.parametrize("rate", RATES)
def test_the_samples_are_torchaudios_to_float_rounding(rate):
    orig, new = resampling_ratio(rate, 16000)
    x = (0.3 * np.random.default_rng(rate).standard_normal(rate + 137)).astype(np.float32)
    ours = resample(x, orig, new)
    theirs = AF.resample(torch.from_numpy(x), orig, new).numpy()
    assert ours.dtype == np.float32 and ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, atol=5e-5)


def test_a_tone_keeps_its_pitch_and_level_and_a_tone_above_the_new_nyquist_is_removed():
    t = np.arange(48000) / 48000
    kept = resample(np.sin(2 * np.pi * 1000 * t).astype(np.float32), 48000, 16000)
    removed = resample(np.sin(2 * np.pi * 12000 * t).astype(np.float32), 48000, 16000)
    middle = slice(1000, 15000)
    expected = np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000)
    np.testing.assert_allclose(kept[middle], expected[middle], atol=2e-3)
    assert np.sqrt(np.mean(removed[middle] ** 2)) < 3e-3  # under -50 dB (the sine is at -3 dB)


def test_upsampling_and_equal_rates():
    x = np.random.default_rng(0).standard_normal(800).astype(np.float32)
    assert len(resample(x, 8000, 16000)) == 1600
    assert np.array_equal(resample(x, 16000, 16000), x)


def test_reading_a_44_1_khz_file_imports_no_torch(tmp_path):
    path = tmp_path / "cd.wav"
    sf.write(path, (0.1 * np.random.default_rng(1).standard_normal(44100)).astype(np.float32), 44100)
    code = ("import sys; from asr.audio import load_audio; n = len(load_audio(sys.argv[1])); "
            "print(n, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["16000", "False"]
