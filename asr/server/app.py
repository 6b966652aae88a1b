"""The FastAPI application of `asr serve`: OpenAI's transcription endpoint, the model list, health,
and live transcription over a WebSocket (live.py).

The event loop only moves bytes: uploads are read as they arrive (upload.py) and each recording
is decoded in a thread of a fixed pool (`workers` threads; ONNX Runtime and torch release the GIL
while they compute), so one long recording never stalls the other requests. Admission (admission.py)
bounds what waits for a thread. A request's spool file belongs to its decoding job once the job
is submitted and is closed when the job ends, even if the client has gone away meanwhile.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Awaitable, Callable, Optional

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from asr.errors import AudioError
from asr.longform import Transcript, transcribe_long
from asr.server.admission import Admission
from asr.server.config import ServerConfig
from asr.server.live import add_stream_route
from asr.server.protocol import (API_KEY_MESSAGE, ApiError, authorized, model_card, model_list, parse_request,
                                 render_response)
from asr.server.upload import FILE_FIELD, Form, Spool, UploadLimits, check_content_length, read_form
from asr.stream import SOUNDFILE_EXTENSIONS, probe_duration

log = logging.getLogger("asr.server")
# How asr.stream words the hint for a file that only ffmpeg could read, as the suffix it names ("it": none).
if TYPE_CHECKING:  # the server on ONNX Runtime imports no torch
    from asr.recognizer import Recognizer
    from asr.runtime.recognizer import OnnxRecognizer

FFMPEG_HINT = "; reading {} needs ffmpeg, which is not installed"


class ServerState:
    """What every request shares: the model, loaded once, the decoding threads and the admission count."""

    def __init__(self, recognizer: Recognizer | OnnxRecognizer, config: ServerConfig):
        self.recognizer = recognizer
        self.config = config
        self.admission = Admission(config.workers, config.queue_size)
        self.streams = Admission(config.max_streams, 0)  # live streams (live.py), counted apart from requests
        self.executor = ThreadPoolExecutor(config.workers, thread_name_prefix="asr-decode")
        self.limits = UploadLimits(config.max_upload_bytes, config.upload_timeout)
        self.started = int(time.time())  # the model's "created" in /v1/models

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


def create_app(state: ServerState) -> FastAPI:
    # No /docs: Swagger's pages load their scripts from a CDN, which an offline server cannot reach.
    app = FastAPI(title="asr serve", docs_url=None, redoc_url=None)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)

    @app.get("/health")
    async def health() -> dict:  # open without the key: it tells load balancers the server is up, nothing more
        return {"status": "ok", "model": state.config.model, "runtime": state.config.runtime,
                "workers": state.config.workers,
                "queue_size": state.config.queue_size, "active": state.admission.held}

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(_authorizer(state.config.api_key))])

    @v1.get("/models")
    async def models() -> dict:
        return model_list(state.config.model, state.started)

    @v1.get("/models/{model_id:path}")
    async def model(model_id: str) -> dict:
        if model_id != state.config.model:
            raise ApiError(404, f"the model {model_id!r} does not exist; this server has {state.config.model!r}",
                           "model_not_found", "model")
        return model_card(model_id, state.started)

    @v1.post("/audio/transcriptions")
    async def transcriptions(request: Request) -> Response:
        try:
            return await _transcribe(state, request)
        except ClientDisconnect:  # nobody is left to answer; the spool and the place are given back
            log.info("a client went away while uploading")
            return Response(status_code=400)
        except ApiError:
            raise
        except Exception as err:  # a bug or a resource running out: this request fails, the server goes on
            log.exception("transcription failed")
            raise _internal(err) from err

    app.include_router(v1)
    add_stream_route(app, state)
    return app


async def _transcribe(state: ServerState, request: Request) -> Response:
    if not state.admission.enter():
        raise ApiError(503, "the server is busy: every decoding thread and queue place is taken; retry after "
                            "the seconds in Retry-After", "server_busy",
                       headers={"Retry-After": str(state.admission.retry_after())})
    form: Optional[Form] = None
    submitted = False
    try:
        check_content_length(request.headers.get("content-length"), state.limits)
        form = await read_form(request.stream(), request.headers.get("content-type", ""), state.limits,
                               state.config.spool_dir)
        wanted = parse_request(form.fields)
        assert form.file is not None  # read_form refuses a form without one
        job = state.executor.submit(_decode_upload, state, form.file, form.filename)
        job.add_done_callback(lambda done, spool=form.file: _job_done(state, spool, done))
        submitted = True
        # Shielded: were this request cancelled, the job would still own its spool and its place.
        transcript = await asyncio.shield(asyncio.wrap_future(job))
    finally:
        if not submitted:
            if form is not None and form.file is not None:
                form.file.close()
            state.admission.leave()
    document, media_type = render_response(wanted, transcript, state.config.model, state.config.subtitles)
    return Response(document, media_type=media_type)


def _decode_upload(state: ServerState, spool: Spool, filename: str) -> Transcript:
    """Runs in a decoding thread: the upload transcribed exactly as `asr transcribe` transcribes a file."""
    config = state.config
    name = filename or "the upload"
    _check_duration(probe_duration(spool.path), config.max_duration, name)  # the header's word, before any work
    try:
        transcript = transcribe_long(state.recognizer, spool.path, None, config.longform,
                                     lambda seconds: _check_duration(seconds, config.max_duration, name),
                                     **config.overrides)
    except AudioError as err:
        raise ApiError(400, f"{name}: {_reason(err, spool, filename)}", "invalid_audio", FILE_FIELD) from None
    return dataclasses.replace(transcript, audio=filename)


def _reason(err: AudioError, spool: Spool, filename: str) -> str:
    """The reader's reason, put in terms of the upload: its spool path is not the client's business, and
    has no suffix, so a hint that reading it needs ffmpeg is given only for the formats that do."""
    reason = err.reason.replace(str(spool.path), filename or "the upload")
    suffix = Path(filename).suffix.lower()
    hint = FFMPEG_HINT.format("it")
    if suffix in SOUNDFILE_EXTENSIONS:
        return reason.replace(hint, "")
    return reason.replace(hint, FFMPEG_HINT.format(suffix)) if suffix else reason


def _check_duration(seconds: Optional[float], limit: float, name: str) -> None:
    # Checked as the audio is read as well as from the header, which a file may get wrong.
    if seconds is not None and seconds > limit:
        raise ApiError(413, f"{name}: the recording is longer than this server's limit of {limit:g} s "
                            "(asr serve --max-duration)", "audio_too_long", FILE_FIELD)


def _job_done(state: ServerState, spool: Spool, job: Future) -> None:
    spool.close()
    succeeded = not job.cancelled() and job.exception() is None
    state.admission.leave(job.result().elapsed if succeeded else None)


def _authorizer(api_key: Optional[str]) -> Callable[[Request], Awaitable[None]]:
    async def authorize(request: Request) -> None:
        if not authorized(request.headers.get("authorization", ""), api_key):
            raise ApiError(401, API_KEY_MESSAGE, "invalid_api_key", headers={"WWW-Authenticate": "Bearer"})

    return authorize


def _internal(err: Exception) -> ApiError:
    # The error's type only: its message (paths, internals) goes to the server's log, not to clients.
    return ApiError(500, f"the server failed on this request ({type(err).__name__}); it goes on serving others",
                    "internal_error")


async def _api_error(request: Request, err: Exception) -> JSONResponse:
    assert isinstance(err, ApiError)
    return JSONResponse(err.body(), err.status, headers=err.headers)


async def _http_error(request: Request, err: Exception) -> JSONResponse:
    assert isinstance(err, StarletteHTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    message = f"{request.method} {request.url.path}: {err.detail}"
    return await _api_error(request, ApiError(err.status_code, message, codes.get(err.status_code, "http_error"),
                                              headers=dict(err.headers or {})))


async def _validation_error(request: Request, err: Exception) -> JSONResponse:
    return await _api_error(request, ApiError(400, f"invalid request: {err}", "invalid_request"))


async def _unexpected_error(request: Request, err: Exception) -> JSONResponse:
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=err)
    return await _api_error(request, _internal(err))
