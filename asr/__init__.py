"""Hybrid CTC/attention speech recognition.

    import asr
    recognizer = asr.load_model()  # the bundled default model, or a model folder
    result = recognizer.transcribe("speech.flac")  # the model's recommended decoding settings
    print(result.text, result.words)
    print(asr.transcribe_long(recognizer, "lecture.flac").text)  # any length, cut at pauses
"""

from asr.decoding.options import DecodingOptions
from asr.decoding.result import Result
from asr.longform import LongformConfig, Transcript, transcribe_long
from asr.recognizer import DEFAULT_MODEL, Recognizer, load_model

__all__ = ["DEFAULT_MODEL", "DecodingOptions", "LongformConfig", "Recognizer", "Result", "Transcript", "load_model",
           "transcribe_long"]
