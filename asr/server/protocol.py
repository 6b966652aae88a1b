"""OpenAI's audio transcription API as plain data: the request's form fields, the response in each
`response_format`, the model list and the error shape.

No web framework is imported here: `app.py` turns these into HTTP. The documents are rendered
from the same `Transcript` and by the same `asr.formats` functions as `asr transcribe`'s output,
so a file's text, subtitles and times are the same whichever way it was transcribed.
"""

from __future__ import annotations

import hmac
import json
import zlib
from dataclasses import dataclass
from typing import Optional

from asr.formats import SubtitleOptions, render, transcript_dict
from asr.longform import Transcript

RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
GRANULARITIES = ("segment", "word")
# The models this package ships and trains transcribe English; OpenAI's clients send ISO-639-1 codes.
LANGUAGE = "english"  # as OpenAI's verbose_json names it
ENGLISH = ("en", "english")
MEDIA_TYPES = {"json": "application/json", "verbose_json": "application/json", "text": "text/plain; charset=utf-8",
               "srt": "text/plain; charset=utf-8", "vtt": "text/vtt; charset=utf-8"}


class ApiError(Exception):
    """An error answered in OpenAI's shape: {"error": {"message", "type", "param", "code"}}.

    `message` is one line that says what was wrong with the request and, where it helps, what to do.
    """

    def __init__(self, status: int, message: str, code: str, param: Optional[str] = None,
                 headers: Optional[dict[str, str]] = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers or {}

    def body(self) -> dict:
        kind = "server_error" if self.status >= 500 else "invalid_request_error"  # OpenAI's two kinds
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}


@dataclass(frozen=True)
class TranscriptionRequest:
    """The form fields of POST /v1/audio/transcriptions that change the answer.

    `model` is whatever the client named (OpenAI's clients require one; the server answers with the
    model it loaded, whatever the name). `prompt` and `temperature` are accepted and ignored: the
    recognizer is not prompted, and its search is deterministic (temperature 0).
    """

    response_format: str = "json"
    words: bool = False  # timestamp_granularities[] holds "word": verbose_json lists the words
    model: str = ""


def parse_request(fields: dict[str, list[str]]) -> TranscriptionRequest:
    """The request the form fields describe, or ApiError (400) naming the field that is wrong."""

    def last(name: str) -> str:
        return fields.get(name, [""])[-1].strip()

    response_format = last("response_format") or "json"
    if response_format not in RESPONSE_FORMATS:
        raise ApiError(400, f"response_format {response_format!r} is not supported; choose from "
                            f"{', '.join(RESPONSE_FORMATS)}", "invalid_value", "response_format")
    language = last("language")
    if language and not _is_english(language):
        raise ApiError(400, f"language {language!r} is not supported: this server's model transcribes English "
                            "only; send language=en or leave it out", "unsupported_language", "language")
    granularities = fields.get("timestamp_granularities[]", []) + fields.get("timestamp_granularities", [])
    for value in granularities:
        if value.strip() not in GRANULARITIES:
            raise ApiError(400, f"timestamp_granularities[] {value!r} is not one of {', '.join(GRANULARITIES)}",
                           "invalid_value", "timestamp_granularities[]")
    temperature = last("temperature")
    if temperature:
        try:
            float(temperature)
        except ValueError:
            raise ApiError(400, f"temperature {temperature!r} is not a number", "invalid_value",
                           "temperature") from None
    if last("stream").lower() in ("true", "1"):
        raise ApiError(400, "stream=true is not supported: this server answers with the whole transcript; "
                            "leave stream out", "unsupported_value", "stream")
    return TranscriptionRequest(response_format, any(v.strip() == "word" for v in granularities), last("model"))


def _is_english(language: str) -> bool:
    code = language.lower().replace("_", "-")
    return code in ENGLISH or code.startswith("en-")  # en-US, en-GB: regional English is English


def render_response(request: TranscriptionRequest, transcript: Transcript, model: str,
                    subtitles: SubtitleOptions = SubtitleOptions()) -> tuple[str, str]:
    """(document, media type) of `transcript` in the format the request asks for."""
    fmt = request.response_format
    if fmt == "json":
        document = json.dumps({"text": transcript.text}, ensure_ascii=False)
    elif fmt == "verbose_json":
        document = json.dumps(verbose_json(transcript, model, request.words), ensure_ascii=False)
    else:  # text, srt, vtt: asr transcribe's own documents (text is its txt: the transcript and a newline)
        document = render({"text": "txt"}.get(fmt, fmt), transcript, model, subtitles)
    return document, MEDIA_TYPES[fmt]


def verbose_json(transcript: Transcript, model: str, words: bool) -> dict:
    """OpenAI's verbose_json, built from `asr transcribe --format json`'s document.

    Segment fields this recognizer has no measure for get neutral values: `tokens` is empty (its
    token ids mean nothing to another model), `avg_logprob` and `no_speech_prob` are 0.0
    (segments the no-speech gate rejected are not listed at all), `temperature` is 0.0 (the
    search is deterministic). `seek` is the segment's start in 10 ms frames.
    """
    document = transcript_dict(transcript, model)
    answer = {
        "task": "transcribe",
        "language": LANGUAGE,
        "duration": document["duration"],
        "text": document["text"],
        "segments": [_segment(i, segment) for i, segment in enumerate(document["segments"])],
    }
    if words:
        answer["words"] = [{"word": w["word"].strip(), "start": w["start"], "end": w["end"]}
                           for segment in document["segments"] for w in segment["words"]]
    return answer


def _segment(index: int, segment: dict) -> dict:
    return {"id": index, "seek": round(segment["start"] * 100), "start": segment["start"], "end": segment["end"],
            "text": segment["text"], "tokens": [], "temperature": 0.0, "avg_logprob": 0.0,
            "compression_ratio": round(compression_ratio(segment["text"]), 4), "no_speech_prob": 0.0}


def compression_ratio(text: str) -> float:
    """Whisper's repetition measure: the text's length over its zlib-compressed length."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def model_card(model_id: str, created: int) -> dict:
    return {"id": model_id, "object": "model", "created": created, "owned_by": "asr"}


def model_list(model_id: str, created: int) -> dict:
    """GET /v1/models: OpenAI's list shape, holding the one model this server loaded."""
    return {"object": "list", "data": [model_card(model_id, created)]}


API_KEY_MESSAGE = ("missing or incorrect API key: send 'Authorization: Bearer KEY' with the key the server was "
                   "started with")


def authorized(authorization: str, api_key: Optional[str]) -> bool:
    """Whether an Authorization header value carries `api_key` as a bearer token (any header, without a key)."""
    if api_key is None:
        return True
    scheme, _, token = authorization.partition(" ")
    # compare_digest: the time taken does not tell how much of a guess was right.
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), api_key.encode())
