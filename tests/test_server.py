"""`asr serve` over real HTTP: the official openai client gets what `asr transcribe` prints, in every
response format; keys, limits, a full queue, hostile uploads and many clients at once get their
defined answers; a server killed in the middle of an upload leaves nothing behind and starts again.

Servers run as `python -m asr.cli serve` subprocesses on a port they choose themselves (--port 0,
read back from the line they print), with the tiny test model (on PyTorch) and the default model (on
ONNX Runtime). Nothing waits a fixed time: every
wait polls for what it expects, up to a generous bound.
"""

import asyncio
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import openai
import pytest
import soundfile as sf
from openai import OpenAI

from asr.audio import load_audio
from asr.cli import main as cli_main
from tests.conftest import REPO, fsdd_rows, resident_mb
from tests.test_hostile_inputs import CORPUS, NOT_UTF8, SR

KEY = "test-key-123"
STARTUP_SECONDS = 180  # importing torch and FastAPI on a busy 2-core machine
WAIT_SECONDS = 120  # the bound of every other wait: no answer within it is a hang
CLIENTS, REQUESTS_EACH = 20, 5
# Hostile inputs that are not files one can upload: a symbolic link loop and a named pipe.
NOT_UPLOADABLE = {"loop.wav", "pipe.wav"}

pytestmark = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="the spool test reads Linux /proc")


# --- servers -------------------------------------------------------------------------------------------

@dataclass
class Server:
    process: subprocess.Popen
    port: int
    spool: Path
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, api_key: str = KEY, **options) -> OpenAI:
        return OpenAI(base_url=f"{self.url}/v1", api_key=api_key, max_retries=0, timeout=WAIT_SECONDS, **options)

    def health(self) -> dict:
        status, _, body = request(self.port, "GET", "/health")
        assert status == 200, body
        return json.loads(body)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=WAIT_SECONDS)


def start_server(model_dir: Path, folder: Path, *options: str, port: int = 0) -> Server:
    folder.mkdir(parents=True, exist_ok=True)
    spool = folder / "spool"
    spool.mkdir(exist_ok=True)
    log = folder / f"server-{len(list(folder.glob('server-*.log')))}.log"
    command = [sys.executable, "-m", "asr.cli", "serve", "--model", str(model_dir), "--port", str(port),
               "--spool-dir", str(spool), "--threads", "1", *options]
    with log.open("w") as output:
        process = subprocess.Popen(command, cwd=REPO, stdout=output, stderr=subprocess.STDOUT,
                                   env={**os.environ, "OMP_NUM_THREADS": "1"})
    ready = re.compile(r"asr serve: .* at http://127\.0\.0\.1:(\d+)/v1")
    found: list[int] = []

    def listening() -> bool:
        assert process.poll() is None, f"the server exited with {process.returncode}:\n{log.read_text()}"
        found.extend(int(m.group(1)) for m in ready.finditer(log.read_text()))
        return bool(found)

    wait_for(listening, "the server to listen", STARTUP_SECONDS)
    server = Server(process, found[0], spool, log)
    wait_for(lambda: server.health()["status"] == "ok", "the server to answer /health")
    return server


def wait_for(condition: Callable[[], bool], what: str, seconds: float = WAIT_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    pytest.fail(f"no {what} within {seconds} s")


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    """Two decoding threads and room for every client of the load test; an API key."""
    running = start_server(tiny_model_dir, tmp_path_factory.mktemp("server"), "--api-key", KEY, "--workers", "2",
                           "--queue-size", str(CLIENTS + 8))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def strict_server(tiny_model_dir, tmp_path_factory):
    """One request at a time and nothing queued; small uploads and short recordings only; no key; no live streams."""
    running = start_server(tiny_model_dir, tmp_path_factory.mktemp("strict"), "--workers", "1", "--queue-size", "0",
                           "--max-upload-mb", "0.2", "--max-duration", "2", "--upload-timeout", "600",
                           "--max-streams", "0")
    yield running
    running.stop()


# --- plain HTTP, for what the openai client cannot send -------------------------------------------------

BOUNDARY = "asr-test-boundary-7d3f"


def form(data: bytes, filename: str = "clip.flac", **fields: str) -> bytes:
    parts = [f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
             for name, value in fields.items()]
    parts.append(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
                 "Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def fields_only(**fields: str) -> bytes:
    return b"".join(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
                    for name, value in fields.items()) + f"--{BOUNDARY}--\r\n".encode()


FORM_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def request(port: int, method: str, path: str, body=None, headers: Optional[dict] = None,
            chunked: bool = False) -> tuple[int, dict, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT_SECONDS)
    try:
        connection.request(method, path, body=body, headers=headers or {}, encode_chunked=chunked)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read().decode()
    finally:
        connection.close()


def post_form(port: int, body: bytes, key: Optional[str] = KEY, chunked: bool = False) -> tuple[int, dict, dict]:
    headers = {"Content-Type": FORM_TYPE, **({"Authorization": f"Bearer {key}"} if key else {})}
    if chunked:  # in pieces of unknown total length: the limit can only be seen while reading
        body = iter([body[i : i + 8192] for i in range(0, len(body), 8192)])
    status, response_headers, text = request(port, "POST", "/v1/audio/transcriptions", body, headers, chunked)
    return status, response_headers, json.loads(text) if text.startswith("{") else {"text": text}


def upload_half(port: int, data: bytes, key: Optional[str] = KEY) -> socket.socket:
    """A connection that has sent its headers and half its upload, and then waits."""
    body = form(data)
    head = (f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {FORM_TYPE}\r\n"
            f"Content-Length: {len(body)}\r\n" + (f"Authorization: Bearer {key}\r\n" if key else "") + "\r\n")
    sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT_SECONDS)
    sock.sendall(head.encode() + body[: len(body) // 2])
    return sock


def assert_openai_error(body: dict, code: str) -> str:
    """The error in OpenAI's shape, with this code; returns its message."""
    assert set(body) == {"error"} and {"message", "type", "code", "param"} <= set(body["error"]), body
    assert body["error"]["code"] == code and body["error"]["message"], body
    return body["error"]["message"]


# --- what asr transcribe says ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def clips(data_dir) -> list[Path]:
    rows = fsdd_rows(data_dir)
    return [Path(rows[i]["audio"]) for i in (0, 7, 13)]


@pytest.fixture(scope="module")
def expected(tiny_model_dir, clips, tmp_path_factory) -> dict[Path, dict[str, str]]:
    """What `asr transcribe --format all` writes for each clip: {clip: {format: document}}."""
    out = tmp_path_factory.mktemp("expected")
    code = cli_main(["transcribe", *map(str, clips), "--model", str(tiny_model_dir), "--format", "all",
                     "--output-dir", str(out), "--threads", "1", "--quiet"])
    assert code == 0
    return {clip: {fmt: (out / f"{clip.stem}.{fmt}").read_text(encoding="utf-8")
                   for fmt in ("txt", "json", "srt", "vtt")} for clip in clips}


# --- the openai client, every response format ---------------------------------------------------------------

def test_the_openai_client_gets_what_asr_transcribe_prints_in_every_format(server, clips, expected):
    client = server.client()
    for clip in clips:
        documents = expected[clip]
        text = documents["txt"].rstrip("\n")
        assert text  # the tiny model knows these clips: an empty transcript would prove little
        with clip.open("rb") as audio:
            assert client.audio.transcriptions.create(model="whisper-1", file=audio).text == text
        for fmt, document in (("text", documents["txt"]), ("srt", documents["srt"]), ("vtt", documents["vtt"])):
            with clip.open("rb") as audio:
                answer = client.audio.transcriptions.create(model="whisper-1", file=audio, response_format=fmt)
            assert answer == document, fmt
        with clip.open("rb") as audio:
            verbose = client.audio.transcriptions.create(model="whisper-1", file=audio, response_format="verbose_json",
                                                         timestamp_granularities=["word", "segment"], language="en")
        mine = json.loads(documents["json"])
        assert (verbose.text, verbose.language, verbose.duration) == (text, "english", mine["duration"])
        assert [(s.start, s.end, s.text) for s in verbose.segments] == [(s["start"], s["end"], s["text"])
                                                                         for s in mine["segments"]]
        words = [(w["word"].strip(), w["start"], w["end"]) for s in mine["segments"] for w in s["words"]]
        assert words and [(w.word, w.start, w.end) for w in verbose.words] == words


def test_verbose_json_lists_words_only_when_asked(server, clips):
    with clips[0].open("rb") as audio:
        verbose = server.client().audio.transcriptions.create(model="m", file=audio, response_format="verbose_json")
    assert verbose.segments and verbose.words is None


def test_curl_can_call_it(server, clips, expected):
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    result = subprocess.run(["curl", "-sS", "--max-time", str(WAIT_SECONDS), f"{server.url}/v1/audio/transcriptions",
                             "-H", f"Authorization: Bearer {KEY}", "-F", f"file=@{clips[1]}", "-F", "model=whisper-1",
                             "-F", "response_format=text"], capture_output=True, timeout=WAIT_SECONDS + 10)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == expected[clips[1]]["txt"]


def test_models_and_health(server, tiny_model_dir):
    models = server.client().models.list()
    assert [m.id for m in models.data] == [str(tiny_model_dir)] and models.data[0].object == "model"
    assert server.client().models.retrieve(str(tiny_model_dir)).id == str(tiny_model_dir)
    status, _, body = request(server.port, "GET", "/v1/models", headers={"Authorization": f"Bearer {KEY}"})
    assert status == 200 and json.loads(body)["object"] == "list"
    health = server.health()  # open without the key
    assert health["status"] == "ok" and health["model"] == str(tiny_model_dir) and health["workers"] == 2


# --- the key -----------------------------------------------------------------------------------------

def test_without_the_key_every_v1_request_gets_401(server, clips):
    with pytest.raises(openai.AuthenticationError) as refused:
        with clips[0].open("rb") as audio:
            server.client(api_key="not-the-key").audio.transcriptions.create(model="m", file=audio)
    assert refused.value.status_code == 401
    assert_openai_error(refused.value.response.json(), "invalid_api_key")
    status, headers, body = post_form(server.port, form(clips[0].read_bytes()), key=None)
    assert status == 401 and headers.get("www-authenticate") == "Bearer"
    assert_openai_error(body, "invalid_api_key")
    status, _, text = request(server.port, "GET", "/v1/models")
    assert status == 401 and assert_openai_error(json.loads(text), "invalid_api_key")


# --- requests that are wrong -----------------------------------------------------------------------------

def test_a_language_other_than_english_is_a_clear_400(server, clips):
    with pytest.raises(openai.BadRequestError) as refused:
        with clips[0].open("rb") as audio:
            server.client().audio.transcriptions.create(model="m", file=audio, language="fr")
    message = assert_openai_error(refused.value.response.json(), "unsupported_language")
    assert "'fr'" in message and "English" in message


def test_malformed_requests_get_400_in_openai_shape_and_the_server_goes_on(server, clips):
    audio = clips[0].read_bytes()
    cases = [
        (form(audio, response_format="diarized_json"), FORM_TYPE, "invalid_value"),
        (form(audio, **{"timestamp_granularities[]": "sentence"}), FORM_TYPE, "invalid_value"),
        (form(audio, temperature="warm"), FORM_TYPE, "invalid_value"),
        (form(audio, stream="true"), FORM_TYPE, "unsupported_value"),
        (form(audio).replace(b'name="file"', b'name="audio"'), FORM_TYPE, "invalid_form"),
        (fields_only(model="m", response_format="text"), FORM_TYPE, "missing_file"),
        (b'{"file": "clip.flac"}', "application/json", "invalid_content_type"),
        (b"garbage" * 100, FORM_TYPE, "invalid_form"),
    ]
    for body, content_type, code in cases:
        status, _, text = request(server.port, "POST", "/v1/audio/transcriptions", body,
                                  {"Content-Type": content_type, "Authorization": f"Bearer {KEY}"})
        assert status == 400, (code, text)
        assert_openai_error(json.loads(text), code)
    status, _, text = request(server.port, "GET", "/v1/nowhere", headers={"Authorization": f"Bearer {KEY}"})
    assert status == 404 and assert_openai_error(json.loads(text), "not_found")
    assert server.health()["active"] == 0


# --- hostile audio: the outcomes of tests/test_hostile_inputs.py, over HTTP ----------------------------------

@pytest.fixture(scope="module")
def hostile(data_dir, tmp_path_factory) -> dict[str, Path]:
    """The corpus of tests/test_hostile_inputs.py that can be uploaded, written from the same clip."""
    samples = load_audio(fsdd_rows(data_dir)[0]["audio"])
    clip = np.pad(np.round(samples * 32768) / 32768, (0, SR - len(samples))).astype(np.float32)
    folder = tmp_path_factory.mktemp("hostile")
    files = {}
    for name, (write, _) in CORPUS.items():
        if name not in NOT_UPLOADABLE:
            write(folder / name, clip)
            files[name] = folder / name
    return files


def upload_name(name: str) -> str:
    return "café.wav" if name == NOT_UTF8 else name  # an upload's name is text; the file's was Latin-1 bytes


def test_each_hostile_upload_is_a_400_naming_it_or_the_transcript_asr_transcribe_gives(
        server, hostile, tiny_model_dir, capsys):
    good = [name for name in hostile if CORPUS[name][1] is None]
    capsys.readouterr()
    assert cli_main(["transcribe", *(str(hostile[n]) for n in good), "--model", str(tiny_model_dir),
                     "--threads", "1", "--quiet"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == len(good)
    transcripts = {name: line.split("\t", 1)[1] for name, line in zip(good, printed)}
    client = server.client()
    for name, path in hostile.items():
        error = CORPUS[name][1]
        upload = (upload_name(name), path.read_bytes())
        if error is None:
            assert client.audio.transcriptions.create(model="m", file=upload).text == transcripts[name], name
            continue
        with pytest.raises(openai.BadRequestError) as refused:
            client.audio.transcriptions.create(model="m", file=upload)
        message = assert_openai_error(refused.value.response.json(), "invalid_audio")
        assert message.startswith(f"{upload_name(name)}: ") and re.search(error, message), (name, message)
        assert "/proc/" not in message and "ffmpeg" not in message, message  # the spool is not the client's business
    assert server.health()["active"] == 0


def test_a_format_only_ffmpeg_reads_is_named_as_such_when_ffmpeg_is_missing(server):
    if shutil.which("ffmpeg"):
        pytest.skip("ffmpeg is installed")
    status, _, body = post_form(server.port, form(b"not really m4a" * 100, filename="voice.m4a"))
    assert status == 400 and "reading .m4a needs ffmpeg" in assert_openai_error(body, "invalid_audio")


def test_a_request_that_fails_inside_gets_500_and_the_server_goes_on(tiny_model_dir, clips, monkeypatch, tmp_path):
    """Decoding raising what no test foresaw (here: running out of memory) fails that request alone."""
    import asr.server.app as app
    from starlette.testclient import TestClient

    from asr.recognizer import load_model
    from asr.server.config import ServerConfig

    failures = [MemoryError("out of memory")]
    transcribe_long = app.transcribe_long

    def fails_once(*args, **kwargs):
        if failures:
            raise failures.pop()
        return transcribe_long(*args, **kwargs)

    monkeypatch.setattr(app, "transcribe_long", fails_once)
    state = app.ServerState(load_model(tiny_model_dir), ServerConfig(str(tiny_model_dir), spool_dir=tmp_path))
    upload = {"file": ("clip.flac", clips[0].read_bytes())}
    try:
        with TestClient(app.create_app(state), raise_server_exceptions=False) as client:
            failed = client.post("/v1/audio/transcriptions", files=upload)
            assert failed.status_code == 500 and "MemoryError" in assert_openai_error(failed.json(), "internal_error")
            served = client.post("/v1/audio/transcriptions", files=upload, data={"response_format": "text"})
            assert served.status_code == 200 and served.text.strip()
            assert client.get("/health").json()["active"] == 0
    finally:
        state.close()
    assert os.listdir(tmp_path) == []


# --- limits ---------------------------------------------------------------------------------------------

def noise_wav(path: Path, seconds: float, rate: int = 8000) -> Path:
    sf.write(path, (0.1 * np.random.default_rng(0).standard_normal(int(seconds * rate))).astype(np.float32), rate)
    return path


def test_an_upload_over_the_size_limit_gets_413_whether_its_length_is_announced_or_not(strict_server, tmp_path):
    big = noise_wav(tmp_path / "big.wav", 20).read_bytes()  # 320 kB, over 0.2 MB
    with pytest.raises(openai.APIStatusError) as refused:
        strict_server.client().audio.transcriptions.create(model="m", file=("big.wav", big))
    assert refused.value.status_code == 413
    assert "200,000 bytes" in assert_openai_error(refused.value.response.json(), "file_too_large")
    status, _, body = post_form(strict_server.port, form(big), chunked=True)
    assert status == 413 and assert_openai_error(body, "file_too_large")
    assert strict_server.health()["active"] == 0 and os.listdir(strict_server.spool) == []


def test_a_recording_over_the_duration_limit_gets_413(strict_server, tmp_path):
    long = noise_wav(tmp_path / "three_seconds.wav", 3)  # 48 kB: small enough, but 3 s of the 2 allowed
    status, _, body = post_form(strict_server.port, form(long.read_bytes(), "three_seconds.wav"))
    assert status == 413
    assert "three_seconds.wav: the recording is longer than" in assert_openai_error(body, "audio_too_long")


def test_the_duration_limit_holds_when_the_header_does_not_tell(tiny_model_dir, tmp_path, monkeypatch):
    """A header may give no length or a wrong one: the limit is also checked on what has been read."""
    import asr.server.app as app
    from asr.recognizer import load_model
    from asr.server.config import ServerConfig
    from asr.server.protocol import ApiError
    from asr.server.upload import Spool

    monkeypatch.setattr(app, "probe_duration", lambda path: None)
    state = app.ServerState(load_model(tiny_model_dir), ServerConfig(str(tiny_model_dir), max_duration=2.0))
    spool = Spool(tmp_path)
    try:
        spool.write(noise_wav(tmp_path / "long.wav", 30).read_bytes())
        spool.finish()
        with pytest.raises(ApiError) as refused:
            app._decode_upload(state, spool, "long.wav")
        assert refused.value.status == 413 and refused.value.code == "audio_too_long"
    finally:
        spool.close()
        state.close()


def test_an_upload_that_stops_sending_gets_408(tmp_path):
    from asr.server.protocol import ApiError
    from asr.server.upload import UploadLimits, read_form

    async def stalls():
        yield form(b"RIFF")[:100]
        await asyncio.Event().wait()  # never set: the client sends nothing more

    with pytest.raises(ApiError) as refused:
        asyncio.run(read_form(stalls(), FORM_TYPE, UploadLimits(1000, idle_seconds=0.2), tmp_path))
    assert refused.value.status == 408 and os.listdir(tmp_path) == []


def test_a_full_queue_gets_503_with_retry_after_and_then_serves_again(strict_server, clips, expected):
    holder = upload_half(strict_server.port, clips[0].read_bytes(), key=None)  # takes the one place
    try:
        wait_for(lambda: strict_server.health()["active"] == 1, "the half upload to be admitted")
        with pytest.raises(openai.InternalServerError) as refused:
            with clips[1].open("rb") as audio:
                strict_server.client().audio.transcriptions.create(model="m", file=audio)
        assert refused.value.status_code == 503
        assert int(refused.value.response.headers["retry-after"]) >= 1
        assert_openai_error(refused.value.response.json(), "server_busy")
    finally:
        holder.close()  # the client goes away: its place and its spool are given back
    wait_for(lambda: strict_server.health()["active"] == 0, "the abandoned upload to give its place back")
    assert os.listdir(strict_server.spool) == []
    with clips[1].open("rb") as audio:
        assert strict_server.client().audio.transcriptions.create(model="m", file=audio).text == \
            expected[clips[1]]["txt"].rstrip("\n")


# --- many clients at once ------------------------------------------------------------------------------------

def test_twenty_clients_of_five_requests_each_all_get_their_transcript(server, clips, expected):
    """Five rounds of twenty requests at once, one per client; the server's memory is steady from round 2 on."""
    client = server.client()
    audio = {clip: clip.read_bytes() for clip in clips}

    def one_request(number: int, round_number: int) -> tuple[str, str]:
        clip = clips[(number + round_number) % len(clips)]
        text = client.audio.transcriptions.create(model="m", file=(clip.name, audio[clip])).text
        return text, expected[clip]["txt"].rstrip("\n")

    results, memory = [], []
    with ThreadPoolExecutor(CLIENTS) as pool:
        for round_number in range(REQUESTS_EACH):
            results += pool.map(one_request, range(CLIENTS), [round_number] * CLIENTS)
            memory.append(resident_mb(server.process.pid))
    assert len(results) == CLIENTS * REQUESTS_EACH
    assert all(got == wanted for got, wanted in results), [r for r in results if r[0] != r[1]]
    assert server.health()["active"] == 0 and os.listdir(server.spool) == []
    # Round 1 warms the allocator and the threads up; after it, serving holds on to nothing.
    assert max(memory[1:]) - memory[1] < 0.05 * memory[1] + 16, memory


# --- live transcription over a WebSocket -----------------------------------------------------------------

def stream_over_websocket(port: int, samples: np.ndarray, key: Optional[str] = KEY, message_seconds: float = 0.02,
                          encoding: str = "pcm_s16le") -> tuple[list[dict], Optional[int]]:
    """Sends `samples` (16 kHz) in messages of `message_seconds`, then the end; every message received,
    and the close code."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    url = f"ws://127.0.0.1:{port}/v1/audio/stream?sample_rate={SR}&encoding={encoding}"
    data = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes() if encoding == "pcm_s16le" \
        else samples.astype("<f4").tobytes()
    step = round(message_seconds * SR) * (2 if encoding == "pcm_s16le" else 4)
    received = []
    with connect(url, additional_headers=headers, open_timeout=WAIT_SECONDS, close_timeout=WAIT_SECONDS) as ws:
        try:
            for start in range(0, len(data), step):
                ws.send(data[start : start + step])
            ws.send(json.dumps({"type": "end"}))
        except ConnectionClosed:  # refused early: what the server said before closing is still read below
            pass
        try:
            while True:
                received.append(json.loads(ws.recv(timeout=WAIT_SECONDS)))
        except ConnectionClosed:
            pass
        return received, ws.close_code


def test_a_websocket_streams_partial_and_final_results_with_asr_transcribe_text(server, clips, expected):
    samples = np.concatenate([np.zeros(SR // 2, np.float32), load_audio(clips[1], SR), np.zeros(SR, np.float32)])
    received, code = stream_over_websocket(server.port, samples)
    assert code == 1000 and received[-1] == {"type": "done"}, received
    finals = [m for m in received if m["type"] == "final"]
    assert [m["type"] for m in received[:-1]] and {m["type"] for m in received[:-1]} <= {"partial", "final"}
    assert " ".join(m["text"] for m in finals if m["text"]) == expected[clips[1]]["txt"].rstrip("\n")
    assert all(0.0 <= m["start"] < m["end"] <= len(samples) / SR + 0.01 for m in finals)
    # Float samples, in one message: the same finals (confidences aside: 16-bit samples round the audio).
    again, code = stream_over_websocket(server.port, samples, message_seconds=10.0, encoding="pcm_f32le")
    plain = lambda messages: [(m["text"], m["start"], m["end"]) for m in messages if m["type"] == "final"]  # noqa: E731
    assert code == 1000 and plain(again) == plain(finals)
    assert server.health()["active"] == 0


def test_a_websocket_refuses_a_wrong_key_bad_audio_and_more_streams_than_allowed(server, strict_server):
    silence = np.zeros(SR // 10, np.float32)
    received, code = stream_over_websocket(server.port, silence, key="wrong")
    assert code == 1008 and received[0]["type"] == "error" and "API key" in received[0]["message"]
    nan = np.full(SR // 10, np.nan, np.float32)
    received, code = stream_over_websocket(server.port, nan, encoding="pcm_f32le")
    assert code == 1007 and "NaN" in received[-1]["message"], received
    received, code = stream_over_websocket(strict_server.port, silence, key=None)
    assert code == 1013 and "stream place" in received[0]["message"]
    received, code = stream_over_websocket(server.port, silence)  # the server goes on
    assert code == 1000 and received == [{"type": "done"}]


# --- killed mid-request ------------------------------------------------------------------------------------

def spool_files_open(pid: int, spool: Path) -> list[str]:
    """The files in `spool` that process `pid` holds open (named or not)."""
    links = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            links.append(os.readlink(fd))
        except OSError:  # closed meanwhile
            pass
    return [link for link in links if link.startswith(f"{spool.resolve()}/")]


def test_a_server_killed_mid_upload_leaves_no_spool_file_and_starts_again(tiny_model_dir, clips, expected, tmp_path):
    server = start_server(tiny_model_dir, tmp_path)
    try:
        upload = upload_half(server.port, clips[0].read_bytes() * 20, key=None)
        # The upload is being written to the spool folder when the server is killed.
        wait_for(lambda: spool_files_open(server.process.pid, server.spool), "an open spool file")
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(timeout=WAIT_SECONDS)
        upload.close()
    finally:
        server.stop()
    assert os.listdir(server.spool) == []
    restarted = start_server(tiny_model_dir, tmp_path, port=server.port)
    try:
        with clips[0].open("rb") as audio:
            assert restarted.client().audio.transcriptions.create(model="m", file=audio).text == \
                expected[clips[0]]["txt"].rstrip("\n")
    finally:
        restarted.stop()


# --- the runtime ---------------------------------------------------------------------------------------

def torch_loaded(process: subprocess.Popen) -> bool:
    """Whether torch's library is mapped into the process: imported, at any depth."""
    return "libtorch" in Path(f"/proc/{process.pid}/maps").read_text()


def test_the_default_model_is_served_on_onnx_runtime_without_torch(server, tmp_path):
    from asr.runtime.recognizer import load_onnx

    load_onnx()  # its graphs built here, once, so the server only reads them
    clip = REPO / "audio_samples" / "LJ001-0002.flac"
    out = tmp_path / "expected"
    assert cli_main(["transcribe", str(clip), "--format", "all", "--output-dir", str(out), "--threads", "1",
                     "--quiet"]) == 0
    onnx_server = start_server("whisper-tiny-ctc", tmp_path / "onnx")
    try:
        assert onnx_server.health()["runtime"] == "onnx"
        client = onnx_server.client()
        for fmt in ("text", "vtt"):
            with clip.open("rb") as f:
                answer = client.audio.transcriptions.create(model="whisper-tiny-ctc", file=f, response_format=fmt)
            written = (out / f"{clip.stem}.{'txt' if fmt == 'text' else fmt}").read_text(encoding="utf-8")
            assert answer.strip() == written.strip()
        assert not torch_loaded(onnx_server.process)
    finally:
        onnx_server.stop()
    # The tiny test model is not Whisper-shaped: served on PyTorch, which the check above would see.
    assert server.health()["runtime"] == "torch" and torch_loaded(server.process)


# --- cost to the other commands ----------------------------------------------------------------------------

def test_other_commands_do_not_import_the_web_framework():
    script = ("import sys; from asr.cli import build_parser; build_parser(); import asr.transcribe; "
              "print(sorted(m for m in sys.modules if m.split('.')[0] in ('fastapi', 'uvicorn', 'starlette', "
              "'python_multipart') or m in ('asr.server.app', 'asr.server.run')))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=WAIT_SECONDS, cwd=REPO)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().strip() == "[]"
