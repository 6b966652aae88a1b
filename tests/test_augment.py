import json
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from asr.audio import load_audio
from asr.config import AugmentConfig, from_dict, to_dict
from asr.data.augment import (
    Augmenter,
    active_speech_power,
    apply_rir,
    build_augmenter,
    colored_noise,
    fit_to_length,
    make_babble,
    mix_at_sir,
    mix_at_snr,
    speed_perturb,
)
from asr.data.noise import (
    TEST,
    TRAIN,
    BankEntry,
    NoiseBank,
    RirBank,
    noise_split,
    normalize_rir,
    read_bank_manifest,
    rir_split,
)
from asr.errors import ConfigError

SR = 16000


def db(ratio: float) -> float:
    return 10 * np.log10(ratio)


@pytest.fixture(scope="module")
def speech(data_dir) -> np.ndarray:
    return load_audio(data_dir / "speech" / "ljspeech_subset" / "audio" / "LJ001-0002.flac")


@pytest.fixture(scope="module")
def voices(data_dir) -> list[str]:
    set_dir = data_dir / "speech" / "librispeech_mini"
    return [str(set_dir / json.loads(line)["audio"]) for line in (set_dir / "manifest.jsonl").read_text().splitlines()]


def full_config(data_dir, **changes) -> AugmentConfig:
    config = AugmentConfig(noise_manifests=[str(data_dir / "noise" / "manifest.jsonl")],
                           rir_manifests=[str(data_dir / "rir" / "manifest.jsonl")],
                           reverb_prob=0.5, noise_prob=0.4, colored_noise_prob=0.2, babble_prob=0.3,
                           volume_prob=0.5, clip_prob=0.3)
    return replace(config, **changes)


# --- SNR ------------------------------------------------------------------------------------------

def test_snr_of_mixture_matches_request_on_tone_bursts():
    # 1 s tone bursts of known power (A^2 / 2) with exact silence between them: the silence must
    # not count, so the SNR is against the bursts' power, not the lower average power.
    t = np.arange(SR) / SR
    burst = 0.5 * np.sin(2 * np.pi * 440 * t)
    speech = np.concatenate([np.zeros(7000), burst, np.zeros(24000), burst, np.zeros(9000)]).astype(np.float32)
    noise = np.random.default_rng(0).standard_normal(len(speech)).astype(np.float32)
    for snr in (-5.0, 0.0, 7.5, 20.0):
        added = mix_at_snr(speech, noise, snr) - speech
        measured = db((0.5**2 / 2) / np.mean(added.astype(np.float64) ** 2))
        assert abs(measured - snr) < 0.5, (snr, measured)


def test_silence_around_speech_does_not_change_the_noise_level(speech):
    padded = np.concatenate([np.zeros(3 * SR), speech, np.zeros(3 * SR)]).astype(np.float32)
    assert db(np.mean(speech.astype(np.float64) ** 2) / np.mean(padded.astype(np.float64) ** 2)) > 3
    assert abs(db(active_speech_power(padded) / active_speech_power(speech))) < 0.5
    noise = np.random.default_rng(1).standard_normal(len(padded)).astype(np.float32)
    noise_in_padded = mix_at_snr(padded, noise, 5.0) - padded
    noise_alone = mix_at_snr(speech, noise[: len(speech)], 5.0) - speech
    level = db(np.mean(noise_in_padded.astype(np.float64) ** 2) / np.mean(noise_alone.astype(np.float64) ** 2))
    assert abs(level) < 0.5


def test_snr_on_real_speech_and_real_noise(speech, data_dir):
    bank = NoiseBank.from_manifests([data_dir / "noise" / "manifest.jsonl"], TEST, kinds=["street"])
    noise = fit_to_length(bank.load(0), len(speech), np.random.default_rng(2))
    for snr in (0.0, 10.0):
        added = mix_at_snr(speech, noise, snr) - speech
        assert abs(db(active_speech_power(speech) / np.mean(added.astype(np.float64) ** 2)) - snr) < 0.5


@settings(max_examples=60, deadline=None)
@given(
    speech=arrays(np.float32, st.integers(200, 3000), elements=st.floats(-1, 1, width=32)),
    noise_seed=st.integers(0, 2**32 - 1),
    noise_gain=st.floats(1e-3, 10.0),
    snr=st.floats(-10.0, 30.0),
)
def test_mix_at_snr_property(speech, noise_seed, noise_gain, snr):
    assume(active_speech_power(speech) > 1e-6)
    noise = (noise_gain * np.random.default_rng(noise_seed).standard_normal(len(speech))).astype(np.float32)
    mixed = mix_at_snr(speech, noise, snr)
    assert mixed.shape == speech.shape and mixed.dtype == np.float32
    added = mixed.astype(np.float64) - speech
    assert abs(db(active_speech_power(speech) / np.mean(added**2)) - snr) < 0.01
    # Scaling the speech scales the whole mixture: the SNR is relative, never absolute.
    assert np.allclose(mix_at_snr(0.5 * speech, noise, snr), 0.5 * mixed, atol=1e-5)


def test_mix_at_snr_rejects_unequal_lengths_and_leaves_silence_alone():
    with pytest.raises(ValueError):
        mix_at_snr(np.ones(100, np.float32), np.ones(99, np.float32), 0.0)
    silence = np.zeros(1000, np.float32)
    assert np.array_equal(mix_at_snr(silence, np.ones(1000, np.float32), 0.0), silence)


def test_mix_at_sir_measures_each_talker_where_they_speak():
    rng = np.random.default_rng(0)
    target = np.zeros(32000, np.float32)
    target[:8000] = 0.1 * rng.standard_normal(8000)  # speaks a quarter of the time
    other = (0.3 * rng.standard_normal(32000)).astype(np.float32)  # talks throughout
    for sir in (-5.0, 0.0, 10.0):
        added = mix_at_sir(target, other, sir).astype(np.float64) - target
        assert abs(db(active_speech_power(target) / active_speech_power(added)) - sir) < 0.01
    # Unlike mix_at_snr, which averages interference over its silences (here a 41 % higher gain), pauses
    # change nothing.
    paused = other.copy()
    paused[16000:] = 0.0
    gain = (mix_at_sir(target, paused, 0.0) - target)[:16000] / paused[:16000]
    assert np.allclose(gain, (mix_at_sir(target, other, 0.0) - target)[:16000] / other[:16000], rtol=0.02)
    with pytest.raises(ValueError):
        mix_at_sir(target, other[:-1], 0.0)
    assert np.array_equal(mix_at_sir(target, np.zeros_like(other), 0.0), target)


# --- noise: fitting, colors, babble --------------------------------------------------------------

def test_long_noise_is_cropped_at_a_random_offset():
    noise = np.arange(1000, dtype=np.float32)
    starts = set()
    for seed in range(20):
        out = fit_to_length(noise, 300, np.random.default_rng(seed))
        assert len(out) == 300 and np.all(np.diff(out) == 1)  # one contiguous stretch
        assert 0 <= out[0] <= 700
        starts.add(out[0])
    assert len(starts) > 10


def test_short_noise_is_looped(data_dir):
    noise = np.arange(100, dtype=np.float32)
    out = fit_to_length(noise, 350, np.random.default_rng(3))
    assert np.array_equal(out, (out[0] + np.arange(350)) % 100)
    # The shortest real recording (a 0.5 s friction noise) stretched over 3 s.
    bank = NoiseBank.from_manifests([data_dir / "noise" / "manifest.jsonl"], TRAIN, kinds=["misc"])
    index = min(range(len(bank)), key=lambda i: bank.entries[i].duration)
    recording = bank.load(index)
    looped = fit_to_length(recording, 3 * SR, np.random.default_rng(4))
    assert len(looped) == 3 * SR
    assert np.array_equal(looped[len(recording):2 * len(recording)], looped[: len(recording)])


@pytest.mark.parametrize("color,slope", [("white", 0.0), ("pink", -1.0), ("brown", -2.0)])
def test_colored_noise_has_unit_power_and_its_spectral_slope(color, slope):
    noise = colored_noise(4 * SR, color, np.random.default_rng(5))
    assert len(noise) == 4 * SR and abs(np.mean(noise.astype(np.float64) ** 2) - 1) < 1e-3
    power = np.abs(np.fft.rfft(noise)) ** 2
    freqs = np.fft.rfftfreq(len(noise), 1 / SR)
    band = (freqs > 50) & (freqs < 7000)
    fitted = np.polyfit(np.log10(freqs[band]), np.log10(power[band]), 1)[0]
    assert abs(fitted - slope) < 0.15


def test_babble_gives_every_talker_the_same_level(voices):
    signals = [load_audio(v) for v in voices[:3]]
    signals[0] = signals[0] * 20  # one loud talker must not dominate
    babble = make_babble(signals, 5 * SR, np.random.default_rng(6))
    assert len(babble) == 5 * SR and np.all(np.isfinite(babble))
    solo = make_babble(signals[:1], 5 * SR, np.random.default_rng(6))
    assert abs(db(active_speech_power(solo))) < 0.5  # unit active level per talker


# --- reverberation and speed ----------------------------------------------------------------------

def test_reverb_keeps_length_and_direct_path_alignment(data_dir):
    rir = np.concatenate([np.zeros(50), [1.0], 0.3 * np.exp(-np.arange(2000) / 300.0)]).astype(np.float32)
    normalized = normalize_rir(rir)
    assert normalized[0] == normalized.max() and abs(np.sum(normalized.astype(np.float64) ** 2) - 1) < 1e-5
    click = np.zeros(8000, np.float32)
    click[1234] = 1.0
    out = apply_rir(click, normalized)
    assert len(out) == len(click) and int(np.argmax(np.abs(out))) == 1234
    bank = RirBank.from_manifests([data_dir / "rir" / "manifest.jsonl"], None)
    for i in range(len(bank)):
        real = bank.load(i)
        assert np.argmax(np.abs(real)) == 0
        out = apply_rir(click, real)
        assert len(out) == len(click) and int(np.argmax(np.abs(out))) == 1234


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_perturbation_changes_length_by_the_factor(speech, factor):
    out = speed_perturb(speech, factor)
    assert abs(len(out) - len(speech) / factor) <= 1


# --- the augmenter -------------------------------------------------------------------------------

def test_only_speed_perturbation_changes_the_length(speech, voices, data_dir):
    augmenter = build_augmenter(full_config(data_dir), voices, seed=0)
    seen = set()
    for index in range(40):
        result = augmenter.apply(speech, np.random.default_rng([7, 0, index]))
        assert result.waveform.dtype == np.float32 and np.all(np.isfinite(result.waveform))
        assert abs(len(result.waveform) - len(speech) / result.speed) <= 1
        if result.speed == 1.0:
            assert len(result.waveform) == len(speech)
        seen.add((result.speed, result.rir is not None, (result.noise or "none").split("-")[0][:2]))
    assert {s for s, _, _ in seen} == {0.9, 1.0, 1.1}
    assert any(r for _, r, _ in seen) and {"ba", "hu"} <= {n for _, _, n in seen}


def test_a_fixed_seed_reproduces_the_exact_samples(speech, voices, data_dir):
    config = full_config(data_dir)
    first = build_augmenter(config, voices, seed=0)
    second = build_augmenter(config, voices, seed=0)  # fresh caches: loading order must not matter
    for index in range(12):
        a = first(speech, np.random.default_rng([1, 2, index]))
        b = second(speech, np.random.default_rng([1, 2, index]))
        again = first(speech, np.random.default_rng([1, 2, index]))
        assert np.array_equal(a, b) and np.array_equal(a, again)
    other_epoch = first(speech, np.random.default_rng([1, 3, 0]))
    this_epoch = first(speech, np.random.default_rng([1, 2, 0]))
    assert len(other_epoch) != len(this_epoch) or not np.array_equal(other_epoch, this_epoch)


def test_augmenter_uses_training_noise_only(speech, voices, data_dir):
    augmenter = build_augmenter(full_config(data_dir, noise_prob=1.0, colored_noise_prob=0.0, babble_prob=0.0,
                                             reverb_prob=1.0), voices, seed=0)
    train_noise = {e.id for e in read_bank_manifest(data_dir / "noise" / "manifest.jsonl") if noise_split(e) == TRAIN}
    train_rirs = {e.id for e in read_bank_manifest(data_dir / "rir" / "manifest.jsonl") if rir_split(e) == TRAIN}
    for index in range(30):
        result = augmenter.apply(speech[: SR], np.random.default_rng(index))
        assert result.noise in train_noise and result.rir in train_rirs


def test_volume_and_clipping(speech, data_dir):
    quiet = AugmentConfig(speeds=[1.0], reverb_prob=0, noise_prob=0, colored_noise_prob=0, babble_prob=0,
                          volume_prob=1.0, clip_prob=0.0)
    result = Augmenter(quiet).apply(speech, np.random.default_rng(8))
    assert np.allclose(result.waveform, speech * 10 ** (result.gain_db / 20), atol=1e-6)
    clipping = replace(quiet, volume_prob=0.0, clip_prob=1.0, clip_max_fraction=0.05)
    result = Augmenter(clipping).apply(speech, np.random.default_rng(9))
    assert result.clip_level is not None and np.max(np.abs(result.waveform)) <= result.clip_level + 1e-7
    assert np.mean(np.abs(result.waveform) >= result.clip_level - 1e-7) <= 0.05 + 1e-3
    assert len(result.waveform) == len(speech)


def test_config_round_trips_and_rejects_bad_values(data_dir):
    config = full_config(data_dir)
    assert from_dict(AugmentConfig, to_dict(config)) == config
    with pytest.raises(ConfigError):
        from_dict(AugmentConfig, {"noise_prob": 0.6, "babble_prob": 0.6})
    with pytest.raises(ConfigError):
        from_dict(AugmentConfig, {"snr_min_db": 10.0, "snr_max_db": 0.0})
    with pytest.raises(ConfigError):
        Augmenter(AugmentConfig(noise_prob=0.5, reverb_prob=0.0, babble_prob=0.0))  # no noise bank
    with pytest.raises(ConfigError):
        build_augmenter(full_config(data_dir), [], seed=0)  # babble wanted, no voices


def test_augmentation_waits_for_its_start_epoch(data_dir, voices):
    from asr.data.dataset import SpeechDataset
    from asr.data.manifest import Utterance
    from asr.tokenizer import CharTokenizer

    audio = str(data_dir / "speech" / "ljspeech_subset" / "audio" / "LJ001-0002.flac")
    utts = [Utterance(id="a", audio=audio, text="in being comparatively modern", duration=1.9)]
    augmenter = build_augmenter(full_config(data_dir, start_epoch=2, speeds=[1.1]), voices, seed=0)
    dataset = SpeechDataset(utts, CharTokenizer.train([u.text for u in utts]), augmenter=augmenter, seed=3)
    clean = load_audio(audio)
    for epoch, augmented in ((0, False), (1, False), (2, True), (5, True)):
        dataset.epoch = epoch
        waveform = dataset[0].waveform.numpy()
        assert (len(waveform) != len(clean)) == augmented  # speed 1.1 shortens every augmented copy
        if not augmented:
            assert np.array_equal(waveform, clean)
    with pytest.raises(ConfigError):
        AugmentConfig(start_epoch=-1)


# --- the train/test split ------------------------------------------------------------------------

def test_noise_and_rir_splits_are_disjoint_and_complete(data_dir):
    for bank_cls, manifest in ((NoiseBank, "noise"), (RirBank, "rir")):
        path = data_dir / manifest / "manifest.jsonl"
        everything = read_bank_manifest(path)
        train = bank_cls.from_manifests([path], TRAIN).entries
        test = bank_cls.from_manifests([path], TEST).entries
        assert train and test
        assert not {e.audio for e in train} & {e.audio for e in test}
        assert {e.id for e in train} | {e.id for e in test} == {e.id for e in everything}
    noise_test = NoiseBank.from_manifests([data_dir / "noise" / "manifest.jsonl"], TEST).entries
    assert {e.kind for e in noise_test} == {"babble", "street", "car", "engine", "white", "music", "animals"}
    rir_test = RirBank.from_manifests([data_dir / "rir" / "manifest.jsonl"], TEST).entries
    assert {e.id for e in rir_test} == {"spatialaudio_rir_clap", "audiomentations_rir48000"}


def test_split_of_other_banks_is_stable_and_holds_out_about_a_tenth():
    entries = [BankEntry(f"noise-free-sound-{i:04d}", f"/x/{i}.wav", 1.0, "musan_noise") for i in range(2000)]
    splits = [noise_split(e) for e in entries]
    assert splits == [noise_split(e) for e in entries]
    assert 0.07 < splits.count(TEST) / len(splits) < 0.13
    assert noise_split(entries[0]) == rir_split(BankEntry(entries[0].id, "/y.wav", 1.0))  # by id alone
