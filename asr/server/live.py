"""Live transcription over a WebSocket: audio in as it is recorded, partial and final results out.

    ws://127.0.0.1:8000/v1/audio/stream?sample_rate=16000&encoding=pcm_s16le

The client sends binary messages of mono audio (16-bit little-endian PCM, or 32-bit float with
`encoding=pcm_f32le`; any message size, samples may split across messages) and, when done, the
text message {"type": "end"}. The server answers with text messages, one JSON object each: the
events of asr.live ({"type": "partial", "text", "stable", "start", "end"} while an utterance goes
on, {"type": "final", "text", "start", "end", "words"} at each pause), then {"type": "done"},
and closes. A problem gets {"type": "error", "message"} and a close code: 1008 without the right
API key, 1013 when every stream place is taken (`--max-streams`), 1007 for audio that is not audio
(NaN, far beyond full scale) or a message it cannot read.

The recognizer runs in the server's decoding threads, never on the event loop. Audio that arrives
while it is busy is gathered and fed at once, so a slow machine falls behind by as much as it is
slow, no more, and the client's messages never wait on a full socket buffer.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING

import numpy as np
from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from asr.errors import AsrError, AudioError
from asr.live import LiveRecognizer, event_dict
from asr.server.protocol import API_KEY_MESSAGE, authorized

if TYPE_CHECKING:  # app.py adds this module's route to its application
    from asr.server.app import ServerState

log = logging.getLogger("asr.server")
STREAM_PATH = "/v1/audio/stream"
ENCODINGS = {"pcm_s16le": ("<i2", 32768.0), "pcm_f32le": ("<f4", 1.0)}
# WebSocket close codes (RFC 6455 and IANA's registry).
NORMAL, INVALID_DATA, POLICY, TRY_AGAIN = 1000, 1007, 1008, 1013


class StreamError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


def add_stream_route(app: FastAPI, state: "ServerState") -> None:
    @app.websocket(STREAM_PATH)
    async def stream(websocket: WebSocket) -> None:
        await websocket.accept()
        entered = False
        try:
            if not authorized(websocket.headers.get("authorization", ""), state.config.api_key):
                raise StreamError(POLICY, API_KEY_MESSAGE)
            rate, dtype, scale = _audio_format(websocket)
            if not state.streams.enter():
                raise StreamError(TRY_AGAIN, f"every live stream place is taken ({state.config.max_streams}); "
                                             "retry later")
            entered = True
            loop = asyncio.get_running_loop()
            live = await loop.run_in_executor(state.executor, _new_recognizer, state, rate)
            await _run(websocket, state, live, dtype, scale)
            await websocket.send_json({"type": "done"})
            await websocket.close(NORMAL)
        except StreamError as err:
            await _refuse(websocket, err.code, str(err))
        except WebSocketDisconnect:
            log.info("a live stream's client went away")
        except Exception as err:  # a bug or a resource running out: this stream ends, the server goes on
            log.exception("live stream failed")
            await _refuse(websocket, 1011, f"the server failed on this stream ({type(err).__name__})")
        finally:
            if entered:
                state.streams.leave()


def _new_recognizer(state: "ServerState", rate: int) -> LiveRecognizer:
    try:
        return LiveRecognizer(state.recognizer, state.config.live, sample_rate=rate, **state.config.overrides)
    except AsrError as err:
        raise StreamError(INVALID_DATA, str(err)) from None


async def _run(websocket: WebSocket, state: "ServerState", live: LiveRecognizer, dtype: str, scale: float) -> None:
    """Feeds what arrives to `live`, in the decoding threads, and sends its events, until the end."""
    loop = asyncio.get_running_loop()
    width = np.dtype(dtype).itemsize
    pending = bytearray()
    arrived = asyncio.Event()
    ended = False

    async def receive() -> None:
        nonlocal ended
        while not ended:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(message.get("code", 1000))
            if message.get("bytes") is not None:
                pending.extend(message["bytes"])
            elif message.get("text") is not None:
                ended = _is_end(message["text"])
            arrived.set()

    reader = asyncio.create_task(receive())
    try:
        while True:
            if not ended and not pending:
                waiting = asyncio.create_task(arrived.wait())
                await asyncio.wait({waiting, reader}, return_when=asyncio.FIRST_COMPLETED)
                waiting.cancel()
                if reader.done() and reader.exception() is not None:
                    raise reader.exception()  # type: ignore[misc]  # the client went away, or sent nonsense
            arrived.clear()
            usable = len(pending) - len(pending) % width
            chunk = bytes(pending[:usable])
            del pending[:usable]
            if chunk:
                samples = np.frombuffer(chunk, dtype=dtype).astype(np.float32) / scale
                events = await loop.run_in_executor(state.executor, _feed, live, samples)
                for event in events:
                    await websocket.send_json(event_dict(event))
            if ended and len(pending) < width:
                break
        for event in await loop.run_in_executor(state.executor, live.finish):
            await websocket.send_json(event_dict(event))
    finally:
        reader.cancel()


def _feed(live: LiveRecognizer, samples: np.ndarray) -> list:
    try:
        return live.feed(samples)
    except AudioError as err:
        raise StreamError(INVALID_DATA, f"the audio sent is not audio: {err.reason}") from None


def _is_end(text: str) -> bool:
    try:
        message = json.loads(text)
    except json.JSONDecodeError:
        raise StreamError(INVALID_DATA, 'text messages are JSON: {"type": "end"} ends the stream') from None
    if not isinstance(message, dict) or message.get("type") != "end":
        raise StreamError(INVALID_DATA, f'unknown message {text[:100]!r}: {{"type": "end"}} ends the stream')
    return True


def _audio_format(websocket: WebSocket) -> tuple[int, str, float]:
    query = websocket.query_params
    encoding = query.get("encoding", "pcm_s16le")
    if encoding not in ENCODINGS:
        raise StreamError(INVALID_DATA, f"unknown encoding {encoding!r}; choose from {', '.join(ENCODINGS)}")
    try:
        rate = int(query.get("sample_rate", "16000"))
    except ValueError:
        raise StreamError(INVALID_DATA, f"sample_rate must be a whole number of Hz, got {query['sample_rate']!r}") \
            from None
    if not 8000 <= rate <= 192000:
        raise StreamError(INVALID_DATA, f"sample_rate must be 8000 to 192000 Hz, got {rate}")
    return (rate, *ENCODINGS[encoding])


async def _refuse(websocket: WebSocket, code: int, message: str) -> None:
    try:
        await websocket.send_json({"type": "error", "message": message})
        await websocket.close(code, reason=message[:120])
    except (WebSocketDisconnect, RuntimeError):  # already gone, or already closed
        pass
