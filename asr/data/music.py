"""Synthetic music, a training noise that any number of pieces can be drawn from.

The shared noise bank's music is test-only (asr.data.noise), so without this a model trained on the
bank's training split never hears music, and music is where the noise-trained default gained least
on unseen voices (issue 17). A piece here is drawn from a generator: a tempo, a key and a scale,
one to four instruments (bass, chords, melody, arpeggio) of random harmonic timbres, plucked or
sustained, one of them possibly a sung vowel line, and often drums. It is not meant to sound good;
it is meant to hold what makes music hard for a recognizer: sustained harmonic sounds in the
speech band, voice-like pitch glides and vowels, and regular transients.
"""

from __future__ import annotations

import numpy as np

from asr.audio import SAMPLE_RATE

SCALES = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "pentatonic": (0, 2, 4, 7, 9),
    "blues": (0, 3, 5, 6, 7, 10),
}
# Formants (Hz) of sung vowels, for the voice-like line: a, e, i, o, u.
VOWELS = ((800, 1150, 2900), (400, 1600, 2700), (300, 2300, 3000), (450, 800, 2830), (350, 600, 2700))


def midi_hz(note: float) -> float:
    return 440.0 * 2.0 ** ((note - 69.0) / 12.0)


def synthetic_music(length: int, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """`length` samples of a piece drawn from `rng`, at unit power (float32)."""
    if length <= 0:
        return np.zeros(0, np.float32)
    beat = round(sample_rate * 60.0 / rng.uniform(60.0, 170.0))
    root = int(rng.integers(40, 57))
    scale = SCALES[str(rng.choice(list(SCALES)))]
    parts = rng.choice(["bass", "chords", "melody", "arpeggio"], size=int(rng.integers(1, 5)), replace=False)
    piece = np.zeros(length, np.float64)
    for part in parts:
        line = _line(str(part), length, beat, root, scale, rng, sample_rate)
        piece += line / max(float(np.sqrt(np.mean(line**2))), 1e-9) * rng.uniform(0.3, 1.0)
    if rng.random() < 0.6:
        drums = _drums(length, beat, rng, sample_rate)
        piece += drums / max(float(np.sqrt(np.mean(drums**2))), 1e-9) * rng.uniform(0.2, 1.0)
    rms = float(np.sqrt(np.mean(piece**2)))
    return (piece / rms if rms > 0 else piece).astype(np.float32)


def _line(part: str, length: int, beat: int, root: int, scale: tuple[int, ...], rng: np.random.Generator,
          sample_rate: int) -> np.ndarray:
    """One instrument's notes over the piece."""
    timbre = _timbre(rng, voice=part == "melody" and rng.random() < 0.4)
    octave = {"bass": -12, "chords": 12, "melody": 24, "arpeggio": 12}[part]
    beats_per_note = {"bass": (1, 2), "chords": (2, 4), "melody": (0.5, 1, 2), "arpeggio": (0.25, 0.5)}[part]
    out = np.zeros(length, np.float64)
    at, degree = 0, int(rng.integers(len(scale)))
    while at < length:
        duration = max(1, round(beat * float(rng.choice(beats_per_note))))
        degree = max(0, min(2 * len(scale) - 1, degree + int(rng.integers(-2, 3))))  # mostly steps
        chord = (0, 2, 4) if part == "chords" else (0,)
        for step in chord:
            d = degree + step
            note = root + octave + 12 * (d // len(scale)) + scale[d % len(scale)]
            sound = _note(midi_hz(note), min(duration, length - at), timbre, rng, sample_rate)
            out[at : at + len(sound)] += sound
        at += duration
    return out


def _timbre(rng: np.random.Generator, voice: bool) -> dict:
    harmonics = int(rng.integers(1, 16))
    return {
        "voice": voice,
        "vowel": VOWELS[int(rng.integers(len(VOWELS)))],
        "harmonics": 30 if voice else harmonics,
        "rolloff": rng.uniform(0.5, 2.5),  # harmonic k at k ** -rolloff
        "jitter": rng.uniform(0.0, 1.0, size=30),  # a fixed colour per instrument
        "plucked": not voice and rng.random() < 0.5,
        "decay": rng.uniform(0.1, 1.2),  # seconds, plucked notes
        "attack": rng.uniform(0.005, 0.02) if not voice else rng.uniform(0.03, 0.12),
        "vibrato": rng.uniform(0.1, 0.6) if voice or rng.random() < 0.3 else 0.0,  # semitones
    }


def _note(frequency: float, length: int, timbre: dict, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    t = np.arange(length) / sample_rate
    if timbre["vibrato"]:
        rate = rng.uniform(4.5, 6.5)
        cents = timbre["vibrato"] * np.sin(2 * np.pi * rate * t) * np.minimum(1.0, t / 0.3)  # vibrato sets in
        phase = 2 * np.pi * np.cumsum(frequency * 2.0 ** (cents / 12.0)) / sample_rate
    else:
        phase = 2 * np.pi * frequency * t
    ks = np.arange(1, timbre["harmonics"] + 1)
    ks = ks[ks * frequency < 0.45 * sample_rate]
    if timbre["voice"]:  # the glottal source's fall, shaped by the vowel's formants
        f = ks * frequency
        amplitude = ks ** -1.0 * sum(np.exp(-0.5 * ((f - formant) / (0.08 * formant + 50)) ** 2)
                                     for formant in timbre["vowel"])
    else:
        amplitude = ks ** -timbre["rolloff"] * (0.5 + timbre["jitter"][: len(ks)])
    wave = np.sin(np.outer(ks, phase)).T @ amplitude
    attack = np.minimum(1.0, t / timbre["attack"])
    if timbre["plucked"]:
        envelope = attack * np.exp(-t / timbre["decay"])
    else:
        release = np.minimum(1.0, (length - np.arange(length)) / (0.05 * sample_rate))
        envelope = attack * release
    return wave * envelope


def _drums(length: int, beat: int, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """A kick, snare and hi-hat pattern that repeats every bar of four beats, a little varied."""
    out = np.zeros(length, np.float64)
    kick, snare, hat = _kick(sample_rate, rng), _snare(sample_rate, rng), _hat(sample_rate, rng)
    eighth = max(1, beat // 2)
    hats = rng.random() < 0.8
    for index, at in enumerate(range(0, length, eighth)):
        position = index % 8
        hits = []
        if position in (0, 4) or (position == 5 and rng.random() < 0.2):
            hits.append(kick)
        if position in (2, 6) or rng.random() < 0.03:
            hits.append(snare)
        if hats:
            hits.append(hat * rng.uniform(0.5, 1.0))
        for hit in hits:
            end = min(length, at + len(hit))
            out[at:end] += hit[: end - at]
    return out


def _kick(sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(0.3 * sample_rate)) / sample_rate
    frequency = 45.0 + 110.0 * np.exp(-t / 0.03)
    return np.sin(2 * np.pi * np.cumsum(frequency) / sample_rate) * np.exp(-t / rng.uniform(0.08, 0.2)) * 3.0


def _snare(sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(0.25 * sample_rate)) / sample_rate
    noise = rng.standard_normal(len(t))
    tone = np.sin(2 * np.pi * rng.uniform(150.0, 250.0) * t)
    return (noise + tone) * np.exp(-t / rng.uniform(0.04, 0.1))


def _hat(sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(0.1 * sample_rate)) / sample_rate
    noise = np.diff(rng.standard_normal(len(t) + 1))  # mostly highs
    return noise * np.exp(-t / rng.uniform(0.01, 0.05)) * 0.5
