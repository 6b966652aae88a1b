"""The settings of `asr serve`: where it listens, how much work it takes on, and how it decodes."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from asr.errors import ConfigError
from asr.formats import SubtitleOptions
from asr.live import LiveConfig
from asr.longform import LongformConfig

RUNTIMES = ("onnx", "torch")
MB = 1_000_000  # upload sizes in decimal megabytes, as OpenAI states its 25 MB limit


@dataclass(frozen=True)
class ServerConfig:
    model: str  # a bundled model name or a model folder; also the id /v1/models lists
    host: str = "127.0.0.1"  # loopback: nothing beyond this machine can connect unless told
    port: int = 8000  # 0: any free port (the one bound is printed)
    api_key: Optional[str] = None  # required as "Authorization: Bearer KEY" on /v1 when set
    workers: int = 1  # recordings decoded at once, each in a thread of its own
    queue_size: int = 32  # requests admitted beyond those decoding; more get 503
    max_upload_bytes: int = 100 * MB
    max_duration: float = 3 * 3600.0  # seconds of audio in one request
    upload_timeout: float = 60.0  # seconds an upload may send nothing before it gets 408
    spool_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()))
    runtime: str = "torch"  # "onnx": ONNX Runtime, without torch (CPU; `asr serve` chooses it where it can)
    device: str = "cpu"
    threads: Optional[int] = None  # CPU threads in all; None: the runtime's default, shared among the workers
    quantize: Optional[str] = None
    longform: LongformConfig = field(default_factory=LongformConfig)
    max_streams: int = 4  # live WebSocket streams at once; each feeds the decoding threads
    live: LiveConfig = field(default_factory=LiveConfig)
    overrides: dict[str, Any] = field(default_factory=dict)  # DecodingOptions fields, as for `asr transcribe`
    subtitles: SubtitleOptions = field(default_factory=SubtitleOptions)

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must be 0 to 65535, got {self.port}")
        if self.workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {self.workers}")
        if self.max_streams < 0:
            raise ConfigError(f"--max-streams must be 0 or more, got {self.max_streams}")
        if self.queue_size < 0:
            raise ConfigError(f"--queue-size must be 0 or more, got {self.queue_size}")
        if self.max_upload_bytes < 1:
            raise ConfigError(f"--max-upload-mb must be positive, got {self.max_upload_bytes / MB:g}")
        if self.max_duration <= 0 or self.upload_timeout <= 0:
            raise ConfigError("--max-duration and --upload-timeout must be positive")
        if self.runtime not in RUNTIMES:
            raise ConfigError(f"--runtime must be one of {', '.join(RUNTIMES)}, got {self.runtime!r}")
        if self.runtime == "onnx" and self.device != "cpu":
            raise ConfigError("--runtime onnx runs on the CPU: leave out --device")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads must be at least 1, got {self.threads}")
        if self.api_key is not None and not self.api_key.strip():
            raise ConfigError("--api-key is empty")
        if not self.spool_dir.is_dir():
            raise ConfigError(f"--spool-dir {self.spool_dir} is not a folder")
