"""Hybrid CTC/attention speech recognition.

    import asr
    recognizer = asr.load_model("exp/run/model")
    result = recognizer.transcribe("speech.flac", mode="joint", beam_size=10)
    print(result.text, result.words)
"""

from asr.decoding.options import DecodingOptions
from asr.decoding.result import Result
from asr.recognizer import Recognizer, load_model

__all__ = ["DecodingOptions", "Recognizer", "Result", "load_model"]
