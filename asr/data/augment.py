"""Online waveform augmentation: speed, reverberation, noise or music at a set SNR, volume and clipping.

Every random choice is drawn from the generator the caller passes in. When the data loader derives
it from (seed, epoch, utterance index), an utterance's augmentation depends on nothing else: it is
the same with any number of workers and after resuming mid-epoch.

The SNR of added noise is measured against the *active* speech (frames within 40 dB of the loudest
one), not the whole utterance: otherwise leading and trailing silence would lower the measured
speech level and every noisy example would be cleaner than the SNR it was drawn at.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
import torchaudio.functional as AF
from scipy.signal import fftconvolve

from asr.audio import SAMPLE_RATE, load_audio
from asr.config import AugmentConfig
from asr.data.music import synthetic_music
from asr.data.noise import TRAIN, AudioCache, NoiseBank, RirBank
from asr.errors import ConfigError

ACTIVE_FRAME_SECONDS = 0.02
ACTIVE_THRESHOLD_DB = -40.0  # a frame is active speech if within this many dB of the loudest frame
# Below this power (float32's smallest normal number) a signal is digital silence: noise scaled to
# it would fall among the subnormals, where float32 cannot hold it to any SNR.
SILENT_POWER = float(np.finfo(np.float32).tiny)
NOISE_COLORS = {"white": 0.0, "pink": 1.0, "brown": 2.0}  # power spectral density ~ 1 / f**exponent


def active_speech_power(speech: np.ndarray, sample_rate: int = SAMPLE_RATE,
                        threshold_db: float = ACTIVE_THRESHOLD_DB) -> float:
    """Mean power of the 20 ms frames within `threshold_db` of the loudest frame (0.0 for silence)."""
    x = np.asarray(speech, dtype=np.float64)
    frame = max(1, round(sample_rate * ACTIVE_FRAME_SECONDS))
    frames = len(x) // frame
    if frames == 0:  # shorter than one frame: nothing to tell apart
        return float(np.mean(x**2)) if len(x) else 0.0
    power = np.mean(x[: frames * frame].reshape(frames, frame) ** 2, axis=1)
    loudest = float(power.max())
    if loudest == 0.0:
        return 0.0
    return float(power[power >= loudest * 10 ** (threshold_db / 10)].mean())


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """speech + noise scaled so that active speech power / mean noise power is `snr_db`.

    `noise` must have the length of `speech` (see `fit_to_length`). Silent speech or silent noise
    (power below SILENT_POWER) has no SNR to set, so the speech comes back unchanged. The result is
    not clipped to [-1, 1].
    """
    speech = np.asarray(speech, dtype=np.float32)
    noise = np.asarray(noise, dtype=np.float32)
    if speech.shape != noise.shape or speech.ndim != 1:
        raise ValueError(f"speech and noise must be 1-D of equal length, got {speech.shape} and {noise.shape}")
    speech_power = active_speech_power(speech, sample_rate)
    noise_power = float(np.mean(noise.astype(np.float64) ** 2))
    if speech_power < SILENT_POWER or noise_power < SILENT_POWER:
        return speech.copy()
    scale = np.sqrt(speech_power / (noise_power * 10 ** (snr_db / 10)))
    return (speech + scale * noise).astype(np.float32)


def mix_at_sir(target: np.ndarray, interference: np.ndarray, sir_db: float, sample_rate: int = SAMPLE_RATE
               ) -> np.ndarray:
    """target + interference (other talkers) scaled so that the active speech power of the one over
    that of the other is `sir_db`; both of one length, not clipped. As mix_at_snr, but talkers pause:
    their power is measured where they speak, not averaged over their silences."""
    target = np.asarray(target, dtype=np.float32)
    interference = np.asarray(interference, dtype=np.float32)
    if target.shape != interference.shape or target.ndim != 1:
        raise ValueError(f"target and interference must be 1-D of equal length, got {target.shape} and "
                         f"{interference.shape}")
    target_power = active_speech_power(target, sample_rate)
    other_power = active_speech_power(interference, sample_rate)
    if target_power < SILENT_POWER or other_power < SILENT_POWER:
        return target.copy()
    scale = np.sqrt(target_power / (other_power * 10 ** (sir_db / 10)))
    return (target + scale * interference).astype(np.float32)


def fit_to_length(noise: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """`length` samples of `noise` from a random offset: a crop if it is long enough, else looped."""
    if len(noise) == 0:
        raise ValueError("noise has no samples")
    start = int(rng.integers(len(noise) - length + 1)) if len(noise) >= length else int(rng.integers(len(noise)))
    return np.asarray(noise, dtype=np.float32)[(start + np.arange(length)) % len(noise)]


def colored_noise(length: int, color: str, rng: np.random.Generator) -> np.ndarray:
    """Gaussian white, pink (1/f) or brown (1/f^2) noise of unit power, shaped in the frequency domain."""
    if color not in NOISE_COLORS:
        raise ValueError(f"unknown noise color {color!r}; choose from {sorted(NOISE_COLORS)}")
    noise = rng.standard_normal(length)
    exponent = NOISE_COLORS[color]
    if exponent and length > 1:
        spectrum = np.fft.rfft(noise)
        freqs = np.fft.rfftfreq(length)
        freqs[0] = freqs[1]  # placeholder: the DC bin is zeroed below (an offset is not audible noise)
        spectrum *= freqs ** (-exponent / 2)
        spectrum[0] = 0.0
        noise = np.fft.irfft(spectrum, n=length)
    rms = float(np.sqrt(np.mean(noise**2)))
    return (noise / rms if rms > 0 else noise).astype(np.float32)


def make_babble(voices: Sequence[np.ndarray], length: int, rng: np.random.Generator,
                sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The sum of `voices`, each fitted to `length` and brought to the same active level.

    Equal levels keep one loud talker from turning babble into a single competing voice.
    """
    babble = np.zeros(length, dtype=np.float64)
    for voice in voices:
        part = fit_to_length(voice, length, rng)
        power = active_speech_power(part, sample_rate)
        if power > 0:
            babble += part / np.sqrt(power)
    return babble.astype(np.float32)


def apply_rir(speech: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Reverberant speech of the same length; `rir` must start at its direct path (see normalize_rir)."""
    return fftconvolve(np.asarray(speech, dtype=np.float32), rir)[: len(speech)].astype(np.float32)


def speed_perturb(waveform: np.ndarray, factor: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Plays `waveform` `factor` times faster (tempo and pitch, as Kaldi's sox speed): len / factor samples."""
    if factor == 1.0:
        return waveform
    source_rate = round(sample_rate * factor)
    resampled = AF.resample(torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32)), source_rate,
                            sample_rate)
    return resampled.numpy()


@dataclass
class Augmentation:
    """An augmented waveform and what was done to it."""

    waveform: np.ndarray
    speed: float = 1.0  # the only length change: len(waveform) is the input length / speed (+-1)
    rir: Optional[str] = None  # id of the impulse response
    noise: Optional[str] = None  # noise or music recording id, a color ("pink"), "babble-<talkers>" or "music" (synthetic)
    snr_db: Optional[float] = None
    gain_db: float = 0.0
    clip_level: Optional[float] = None


class Augmenter:
    """Applies, in order: speed, reverberation, one kind of noise, volume, clipping."""

    def __init__(self, config: AugmentConfig, noise_bank: Optional[NoiseBank] = None,
                 rir_bank: Optional[RirBank] = None, babble_voices: Sequence[str | np.ndarray] = (),
                 sample_rate: int = SAMPLE_RATE, music_bank: Optional[NoiseBank] = None):
        if config.noise_prob > 0 and not noise_bank:
            raise ConfigError("augment.noise_prob > 0 but there are no training noise recordings (noise_manifests)")
        if config.reverb_prob > 0 and not rir_bank:
            raise ConfigError("augment.reverb_prob > 0 but there are no training impulse responses (rir_manifests)")
        if config.babble_prob > 0 and not babble_voices:
            raise ConfigError("augment.babble_prob > 0 but no utterances were given to build babble from")
        if config.music_manifests and not music_bank:
            raise ConfigError("augment.music_manifests are given but hold no training recordings")
        self.config = config
        self.noise_bank = noise_bank
        self.rir_bank = rir_bank
        self.music_bank = music_bank
        self.voices = list(babble_voices)
        self.voice_cache = AudioCache(config.cache_seconds, sample_rate)
        self.sample_rate = sample_rate

    def __call__(self, waveform: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.apply(waveform, rng).waveform

    def apply(self, waveform: np.ndarray, rng: np.random.Generator) -> Augmentation:
        c = self.config
        speed = float(c.speeds[int(rng.integers(len(c.speeds)))])
        result = Augmentation(speed_perturb(np.asarray(waveform, dtype=np.float32), speed, self.sample_rate), speed)
        x = result.waveform
        if rng.random() < c.reverb_prob:
            entry, rir = self.rir_bank.choose(rng)
            x, result.rir = apply_rir(x, rir), entry.id
        choice = rng.random()
        if choice < c.noise_prob + c.colored_noise_prob + c.babble_prob + c.music_prob:
            result.snr_db = float(rng.uniform(c.snr_min_db, c.snr_max_db))
            if choice < c.noise_prob:
                entry, recording = self.noise_bank.choose(rng)
                noise, result.noise = fit_to_length(recording, len(x), rng), entry.id
            elif choice < c.noise_prob + c.colored_noise_prob:
                result.noise = str(rng.choice(list(NOISE_COLORS)))
                noise = colored_noise(len(x), result.noise, rng)
            elif choice < c.noise_prob + c.colored_noise_prob + c.babble_prob:
                talkers = int(rng.integers(c.babble_min_talkers, c.babble_max_talkers + 1))
                noise, result.noise = self._babble(len(x), talkers, rng), f"babble-{talkers}"
            elif self.music_bank:
                entry, recording = self.music_bank.choose(rng)
                noise, result.noise = fit_to_length(recording, len(x), rng), entry.id
            else:
                noise, result.noise = synthetic_music(len(x), rng, self.sample_rate), "music"
            x = mix_at_snr(x, noise, result.snr_db, self.sample_rate)
        if rng.random() < c.volume_prob:
            result.gain_db = float(rng.uniform(c.gain_min_db, c.gain_max_db))
            x = (x * 10 ** (result.gain_db / 20)).astype(np.float32)
        if rng.random() < c.clip_prob:
            # Clip at the level that the loudest `fraction` of the samples exceed, as an overdriven input would.
            fraction = float(rng.uniform(0.0, c.clip_max_fraction))
            level = float(np.quantile(np.abs(x), 1.0 - fraction))
            if level > 0:
                x, result.clip_level = np.clip(x, -level, level), level
        result.waveform = x
        return result

    def _babble(self, length: int, talkers: int, rng: np.random.Generator) -> np.ndarray:
        picks = rng.choice(len(self.voices), size=talkers, replace=talkers > len(self.voices))
        return make_babble([self._voice(int(i)) for i in picks], length, rng, self.sample_rate)

    def _voice(self, index: int) -> np.ndarray:
        voice = self.voices[index]
        if isinstance(voice, str):
            return self.voice_cache.get(voice, lambda: load_audio(voice, self.sample_rate))
        return voice


def build_augmenter(config: AugmentConfig, speech_paths: Sequence[str], seed: int,
                    sample_rate: int = SAMPLE_RATE) -> Augmenter:
    """An Augmenter over the training split of the configured banks, with babble voices drawn
    (fixed by `seed`) from `speech_paths`, normally the training utterances' audio files."""
    noise = NoiseBank.from_manifests(config.noise_manifests, TRAIN, sample_rate=sample_rate,
                                     cache_seconds=config.cache_seconds)
    rirs = RirBank.from_manifests(config.rir_manifests, TRAIN, sample_rate=sample_rate,
                                  cache_seconds=config.cache_seconds)
    music = NoiseBank.from_manifests(config.music_manifests, TRAIN, sample_rate=sample_rate,
                                     cache_seconds=config.cache_seconds)
    count = min(config.babble_pool_size, len(speech_paths))
    picks = np.random.default_rng(seed).choice(len(speech_paths), size=count, replace=False)
    voices = [speech_paths[int(i)] for i in sorted(picks)]
    return Augmenter(config, noise, rirs, voices, sample_rate, music)
