"""Enrollment: a few seconds of one person's voice become the embedding the encoder follows.

The embedding is a GE2E d-vector from resemblyzer's pretrained speaker encoder (weights bundled in
the package, Apache 2.0): 256 numbers of unit length, the average over 1.6 s windows of the voiced
audio (resemblyzer trims long pauses with WebRTC's VAD first). Several samples of one voice are
averaged the same way. Imports torch: only enrolled recognition pays for it.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np

from asr.errors import EnrollmentError

SAMPLE_RATE = 16000  # resemblyzer's rate, and ours
MIN_VOICED_SECONDS = 1.0  # below this the d-vector rests on one partial window of little speech
EMBEDDING_DIM = 256


@functools.lru_cache(maxsize=1)
def _voice_encoder():
    with warnings.catch_warnings():  # resemblyzer imports a scipy namespace scipy has deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        from resemblyzer import VoiceEncoder

    return VoiceEncoder("cpu", verbose=False)


def voiced(audio: np.ndarray) -> np.ndarray:
    """The audio with its long pauses removed and its level raised, as the speaker encoder wants it
    (empty for digital silence, which has no level to raise)."""
    audio = np.asarray(audio, dtype=np.float32)
    if not np.any(audio):
        return audio[:0]
    _voice_encoder()  # resemblyzer's audio module is imported with it
    from resemblyzer import preprocess_wav

    return preprocess_wav(audio)


def speaker_embedding(samples: list[np.ndarray] | np.ndarray, source: str = "enrollment") -> np.ndarray:
    """A unit-length (256,) float32 embedding of the voice in `samples` (16 kHz mono, one array or
    several of the same person). Raises EnrollmentError when they hold under a second of speech."""
    if isinstance(samples, np.ndarray):
        samples = [samples]
    speech = [voiced(s) for s in samples if len(s)]
    seconds = sum(len(s) for s in speech) / SAMPLE_RATE
    if seconds < MIN_VOICED_SECONDS:
        raise EnrollmentError(f"{source}: {seconds:.1f} s of speech found; enrollment needs at least "
                              f"{MIN_VOICED_SECONDS:.0f} s of the person speaking (a few seconds is best)")
    encoder = _voice_encoder()
    embedding = encoder.embed_speaker([s for s in speech if len(s)]) if len(speech) > 1 \
        else encoder.embed_utterance(speech[0])
    return embedding.astype(np.float32)
