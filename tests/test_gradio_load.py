"""The demo app under load and attack: `python gradio_app.py` as a user starts it, and clients over HTTP.

Twenty clients at once each get their transcript or a clear "busy"; memory stays bounded; an
over-long recording is refused before it is decoded; no request can make the server read a file
outside its upload folder; and by default nothing listens beyond 127.0.0.1.
"""

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio_client is imported
os.environ["HF_HUB_OFFLINE"] = "1"

import ipaddress  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import urllib.error  # noqa: E402
import urllib.parse  # noqa: E402
import urllib.request  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import NamedTuple  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import soundfile as sf  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402

from tests.conftest import resident_mb  # noqa: E402
from tests.gradio_server import free_port, wait_until_serving  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402
from gradio_client.utils import QueueError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SEVEN = REPO / "audio_samples" / "7_jackson_0.flac"  # an FSDD clip the tiny model was trained on
MAX_SECONDS = 4
QUEUE_SIZE = 8
CLIENTS = 20
REQUEST_SECONDS = 120  # no answer within this is a hang

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc/self/net/tcp").exists(), reason="reads sockets and memory from Linux /proc"),
]


class Server(NamedTuple):
    url: str
    process: subprocess.Popen


@pytest.fixture(scope="module")
def server(tiny_model_dir, data_dir, tmp_path_factory):
    """The app started with no --host, as a user starts it, on a free port."""
    port = free_port()
    log = tmp_path_factory.mktemp("gradio_load") / "server.log"
    env = {key: value for key, value in os.environ.items() if key != "GRADIO_SERVER_NAME"}
    # No MALLOC_ARENA_MAX: run as a script, the app limits glibc's malloc arenas (limit_malloc_arenas),
    # without which the memory test below fails.
    env.update(OMP_NUM_THREADS="1", GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1")
    command = [sys.executable, "gradio_app.py", "--model", str(tiny_model_dir), "--port", str(port),
               "--max-seconds", str(MAX_SECONDS), "--queue-size", str(QUEUE_SIZE),
               "--noise-dir", str(data_dir / "noise")]
    with log.open("w") as output:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_serving(url, process, log)
        yield Server(url, process)
    finally:
        process.terminate()
        process.wait(timeout=30)


# --- where it listens -----------------------------------------------------------------------------

def _address(hex_address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An address as /proc/net/tcp{,6} writes it: 32-bit words in the machine's (little-endian) order."""
    raw = bytes.fromhex(hex_address)
    return ipaddress.ip_address(b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4)))


def listening_addresses(pid: int) -> list:
    """The local addresses of the TCP sockets that process `pid` listens on."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    addresses = []
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # 0A: LISTEN
                addresses.append(_address(local.split(":")[0]))
    return addresses


def test_nothing_listens_beyond_localhost_by_default(server):
    addresses = listening_addresses(server.process.pid)
    assert addresses and all(address.is_loopback for address in addresses), addresses


# --- twenty clients at once ------------------------------------------------------------------------

def ask(client: Client) -> str:
    """The transcript, or "busy" when the app says its queue is full; anything else fails the test."""
    try:
        return client.submit(handle_file(str(SEVEN)), api_name="/recognize").result(timeout=REQUEST_SECONDS)[0]
    except QueueError as err:
        assert "Queue is full" in str(err), err
        return "busy"


def test_twenty_clients_at_once_get_their_transcript_or_busy_in_bounded_memory(server):
    clients = [Client(server.url, verbose=False) for _ in range(CLIENTS)]
    resident, answers = [], []
    with ThreadPoolExecutor(CLIENTS) as pool:
        for _ in range(5):
            answers.append(list(pool.map(ask, clients)))
            resident.append(resident_mb(server.process.pid))
    for round_answers in answers:
        assert set(round_answers) <= {"seven", "busy"}, round_answers
        # One decodes while the queue holds QUEUE_SIZE: at least that many are answered, the rest told.
        assert round_answers.count("seven") >= QUEUE_SIZE, round_answers
    # Two rounds create the sessions and load what stays loaded (each session keeps its last plots,
    # about 200 kB); then 27 answers or more to the same sessions add little: under 2 MB each, where a
    # request that left its audio, plots and attention behind would add them every time.
    assert resident[4] - resident[1] < 60, resident


# --- refused before decoding ---------------------------------------------------------------------

def test_a_recording_over_the_limit_is_refused_before_it_is_decoded(server, tmp_path):
    two_hours = tmp_path / "two_hours.flac"
    with sf.SoundFile(two_hours, "w", 16000, 1, format="FLAC") as out:  # digital silence: a small upload
        for _ in range(120):
            out.write(np.zeros(60 * 16000, np.float32))
    before = resident_mb(server.process.pid)
    began = time.monotonic()
    with pytest.raises(AppError, match=rf"The recording is 7200.0 s long; this demo takes at most {MAX_SECONDS} s"):
        Client(server.url, verbose=False).predict(handle_file(str(two_hours)), api_name="/recognize")
    # Decoding it would take minutes and 460 MB for its samples alone.
    assert time.monotonic() - began < 30 and resident_mb(server.process.pid) - before < 100


# --- no file outside the upload folder ---------------------------------------------------------------

def call_with_path(url: str, path: str) -> str:
    """Calls /recognize over plain HTTP with a file the client claims is on the server; returns the event stream."""
    body = json.dumps({"data": [{"path": path, "meta": {"_type": "gradio.FileData"}}]}).encode()
    request = urllib.request.Request(url + "gradio_api/call/recognize", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        event = json.load(response)["event_id"]
    with urllib.request.urlopen(url + f"gradio_api/call/recognize/{event}", timeout=REQUEST_SECONDS) as response:
        return response.read().decode()


def test_no_request_reads_a_file_outside_the_upload_folder(server, tmp_path):
    outside = tmp_path / "private.wav"  # readable audio the server could transcribe, were it let
    sf.write(outside, sf.read(SEVEN)[0], 8000)
    for path in [str(outside), "/etc/passwd", f"/tmp/gradio/../..{outside}", str(SEVEN)]:
        events = call_with_path(server.url, path)
        assert events.startswith("event: error") and "seven" not in events, (path, events)
        # Refused by gradio before the app saw it: the app would have answered "not audio" for /etc/passwd.
        assert "not audio" not in events, (path, events)
    for path in [str(outside), "/etc/passwd", "../../../../etc/passwd"]:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(server.url + "gradio_api/file=" + urllib.parse.quote(path), timeout=30)
        assert refused.value.code in (403, 404), path
