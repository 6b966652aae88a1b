"""Starting `asr serve`: bind the socket, load the model once, run uvicorn until Ctrl-C or SIGTERM.
On ONNX Runtime the server never imports torch."""

from __future__ import annotations

import ipaddress
import logging
import socket
import sys

import uvicorn

from asr.errors import ConfigError
from asr.server.app import ServerState, create_app
from asr.server.config import ServerConfig
from asr.server.upload import Spool
from asr.vad import silero_model

log = logging.getLogger("asr.server")
BACKLOG = 128  # connections the kernel holds for the server to accept


def serve(config: ServerConfig) -> int:
    """Serves until stopped; returns the exit status. Prints the address once it is listening."""
    sock = bind(config.host, config.port)  # first: a port in use fails before the model loads, not after
    state = None
    try:
        check_spool_dir(config)
        silero_model()  # a voice activity detector that cannot load is named before the recognizer loads
        recognizer = load_recognizer(config)
        recognizer.transcribe_batch([], None, **config.overrides)  # bad decoding options fail now, not per request
        state = ServerState(recognizer, config)
        server = uvicorn.Server(uvicorn.Config(create_app(state), lifespan="off", log_level="info",
                                               server_header=False))
        if config.api_key is None and not _is_loopback(config.host):
            log.warning("listening on %s without --api-key: anyone who can reach it can use it", config.host)
        runtime = "ONNX Runtime" if config.runtime == "onnx" else "PyTorch"
        print(f"asr serve: {config.model} on {runtime} at {address(sock)}/v1 (Ctrl-C stops)", file=sys.stderr,
              flush=True)
        server.run(sockets=[sock])
    finally:
        if state is not None:
            state.close()
        sock.close()
    return 0


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: a free one)."""
    try:
        family, kind, proto, _, where = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                           flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as err:
        raise ConfigError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    try:
        # A restarted server takes its port back at once, though connections of the last one linger.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(where)
        sock.listen(BACKLOG)
    except OSError as err:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    return sock


def check_spool_dir(config: ServerConfig) -> None:
    """A spool folder that cannot take an upload is named now, not as every request's 500."""
    try:
        Spool(config.spool_dir).close()
    except OSError as err:
        raise ConfigError(f"--spool-dir {config.spool_dir}: cannot write uploads there ({err.strerror or err})") \
            from None


def address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def load_recognizer(config: ServerConfig):
    """The model on the configured runtime. ONNX Runtime's sessions run concurrent requests on one
    thread pool of `threads` (0: a thread per core), so the workers share the cores as they are."""
    if config.runtime == "onnx":
        from asr.runtime.recognizer import load_onnx

        return load_onnx(config.model, config.quantize or "fp32", config.threads or 0)
    import torch

    from asr.recognizer import load_model
    from asr.transcribe import resolve_device

    # Each decoding thread runs torch's parallel loops with the process's thread count: the workers
    # share the cores torch would use for one, rather than each taking all of them.
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    elif config.workers > 1:
        torch.set_num_threads(max(1, torch.get_num_threads() // config.workers))
    return load_model(config.model, resolve_device(config.device), quantize=config.quantize)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
