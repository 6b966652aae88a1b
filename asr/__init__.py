"""Hybrid CTC/attention speech recognition.

    import asr
    recognizer = asr.load_model()  # the bundled default model, or a model folder
    result = recognizer.transcribe("speech.flac")  # the model's recommended decoding settings
    print(result.text, result.words)
    print(asr.transcribe_long(recognizer, "lecture.flac").text)  # any length, cut at pauses
    live = asr.LiveRecognizer(recognizer)  # live.feed(chunk) -> partial and final results as they come
"""

import importlib

# The public names load on first use, so that `import asr.cli` (and `asr --help`) can check the
# compiled dependencies before torch is imported, and a broken one reads as one line, not a traceback.
_EXPORTS = {
    "DEFAULT_MODEL": "asr.recognizer", "DecodingOptions": "asr.decoding.options", "LiveConfig": "asr.live",
    "LiveRecognizer": "asr.live", "LongformConfig": "asr.longform",
    "Recognizer": "asr.recognizer", "Result": "asr.decoding.result", "Transcript": "asr.longform",
    "load_model": "asr.recognizer", "transcribe_long": "asr.longform",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'asr' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
