"""An upload read as it arrives: form fields into memory, the audio file into an anonymous spool file.

Every limit is checked against the bytes received so far, so an upload over the limit is refused
(413) after at most the limit has been read, not after all of it; a client that stops sending
gets 408 after `idle_seconds`. FastAPI's own form parsing cannot do this: it spools the whole
body to the default temporary folder before the endpoint runs.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator, Optional

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from asr.server.protocol import ApiError

SPOOL_PREFIX = "asr-upload-"
FILE_FIELD = "file"
MAX_FIELD_BYTES = 64 * 1024  # a prompt is the longest field OpenAI defines, a few hundred tokens
MAX_FIELDS = 64
FORM_OVERHEAD_BYTES = 1 << 20  # a body may exceed its file by the fields and the multipart framing
# On Linux a process reads its own open files by path through /proc, even nameless ones.
PROC_FD = Path("/proc/self/fd")


class Spool:
    """An uploaded file on disk in `directory`, readable by `path` while open and gone once closed.

    On Linux the file never has a name in `directory` (O_TMPFILE, or unlinked the moment it is
    made) and is read as /proc/PID/fd/N, so it disappears with the process however the process
    ends, SIGKILL included. Elsewhere it is named and removed on close; a killed server leaves it.
    """

    def __init__(self, directory: Path):
        if PROC_FD.is_dir():
            self._file = tempfile.TemporaryFile(dir=directory, prefix=SPOOL_PREFIX)
            # The PID, not "self": a reader that runs in a subprocess (ffmpeg) opens it too.
            self.path = Path(f"/proc/{os.getpid()}/fd/{self._file.fileno()}")
        else:
            self._file = tempfile.NamedTemporaryFile(dir=directory, prefix=SPOOL_PREFIX)
            self.path = Path(self._file.name)
        self.size = 0

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self.size += len(data)

    def finish(self) -> None:
        """Makes every byte written visible to a reader that opens `path`."""
        self._file.flush()

    def close(self) -> None:
        self._file.close()


@dataclass(frozen=True)
class UploadLimits:
    max_file_bytes: int
    idle_seconds: float  # the longest wait for the next piece of the body

    @property
    def max_body_bytes(self) -> int:
        return self.max_file_bytes + FORM_OVERHEAD_BYTES


@dataclass
class Form:
    fields: dict[str, list[str]] = field(default_factory=dict)
    file: Optional[Spool] = None
    filename: str = ""  # as the client named it; "" when it gave no name


def check_content_length(header: Optional[str], limits: UploadLimits) -> None:
    """413 before any of the body is read when its announced length is over the limit already."""
    if header and header.isdigit() and int(header) > limits.max_body_bytes:
        raise too_large(limits)


def too_large(limits: UploadLimits) -> ApiError:
    return ApiError(413, f"the upload is larger than this server's limit of {limits.max_file_bytes:,} bytes "
                         "(asr serve --max-upload-mb)", "file_too_large", FILE_FIELD)


async def read_form(chunks: AsyncIterator[bytes], content_type: str, limits: UploadLimits,
                    spool_dir: Path) -> Form:
    """The form of a multipart/form-data body, its file spooled under `spool_dir`.

    Raises ApiError: 400 for a body that is not such a form, 408 when the client stops sending,
    413 over the limits. The caller owns the returned form's spool and must close it; on an
    error (the client going away included) it is closed here.
    """
    boundary = _boundary(content_type)
    reader = _FormReader(limits, spool_dir)
    parser = MultipartParser(boundary, reader.callbacks())
    received = 0
    try:
        iterator = chunks.__aiter__()
        while True:
            try:
                chunk = await asyncio.wait_for(iterator.__anext__(), limits.idle_seconds)
            except StopAsyncIteration:
                break
            except asyncio.TimeoutError:
                raise ApiError(408, f"the upload sent nothing for {limits.idle_seconds:g} s", "upload_timeout",
                               FILE_FIELD) from None
            received += len(chunk)
            if received > limits.max_body_bytes:
                raise too_large(limits)
            parser.write(chunk)  # calls reader's callbacks, which hold file data back for the write below
            await reader.write_pending()
        parser.finalize()
        return reader.finish()
    except FormParserError as err:
        reader.discard()
        raise ApiError(400, f"the body is not a well-formed multipart/form-data form ({err})", "invalid_form") \
            from None
    except BaseException:
        reader.discard()
        raise


def _boundary(content_type: str) -> bytes:
    kind, options = parse_options_header(content_type)
    if kind != b"multipart/form-data" or not options.get(b"boundary"):
        raise ApiError(400, "send the audio as multipart/form-data with the file in the field 'file' "
                            f"(got Content-Type {content_type or 'none'!r})", "invalid_content_type")
    return options[b"boundary"]


def _decode(raw: bytes) -> str:
    # parse_options_header hands values back as latin-1 bytes: these are the bytes the client sent,
    # which browsers, curl and httpx send as UTF-8.
    return raw.decode("utf-8", "replace")


class _FormReader:
    """python-multipart's callbacks, building a Form; file data is written outside the parser,
    off the event loop."""

    def __init__(self, limits: UploadLimits, spool_dir: Path):
        self.limits = limits
        self.spool_dir = spool_dir
        self.form = Form()
        self._headers: list[tuple[bytes, bytes]] = []
        self._header_name = b""
        self._header_value = b""
        self._name = ""
        self._is_file = False
        self._value = bytearray()
        self._pending: list[bytes] = []  # file data parsed but not yet written
        self._fields = 0

    def callbacks(self) -> dict:
        return {"on_part_begin": self._part_begin, "on_header_field": self._header_field,
                "on_header_value": self._header_value_data, "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished, "on_part_data": self._part_data,
                "on_part_end": self._part_end}

    def _part_begin(self) -> None:
        self._headers, self._name, self._is_file, self._value = [], "", False, bytearray()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers.append((self._header_name.lower(), self._header_value))
        self._header_name = self._header_value = b""

    def _headers_finished(self) -> None:
        disposition = next((value for name, value in self._headers if name == b"content-disposition"), b"")
        _, options = parse_options_header(disposition)
        if b"name" not in options:
            raise ApiError(400, "a part of the form has no name (Content-Disposition: form-data; name=...)",
                           "invalid_form")
        self._name = _decode(options[b"name"])
        self._is_file = b"filename" in options
        if not self._is_file:
            self._fields += 1
            if self._fields > MAX_FIELDS:
                raise ApiError(400, f"the form has more than {MAX_FIELDS} fields", "invalid_form")
            return
        if self._name != FILE_FIELD:
            raise ApiError(400, f"unexpected file in the field {self._name!r}: send the audio as 'file'",
                           "invalid_form", self._name)
        if self.form.file is not None:
            raise ApiError(400, "send one file per request", "invalid_form", FILE_FIELD)
        self.form.filename = _decode(options[b"filename"])
        self.form.file = Spool(self.spool_dir)

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._is_file:
            assert self.form.file is not None
            if self.form.file.size + sum(map(len, self._pending)) + end - start > self.limits.max_file_bytes:
                raise too_large(self.limits)
            self._pending.append(data[start:end])
            return
        if len(self._value) + end - start > MAX_FIELD_BYTES:
            raise ApiError(400, f"the field {self._name!r} is longer than {MAX_FIELD_BYTES} bytes", "invalid_form",
                           self._name)
        self._value += data[start:end]

    def _part_end(self) -> None:
        if not self._is_file:
            self.form.fields.setdefault(self._name, []).append(_decode(bytes(self._value)))

    async def write_pending(self) -> None:
        if self._pending:
            data, self._pending = b"".join(self._pending), []
            assert self.form.file is not None
            await asyncio.to_thread(self.form.file.write, data)  # a slow disk must not stall other requests

    def finish(self) -> Form:
        if self.form.file is None:
            raise ApiError(400, "no audio in the request: send it as the multipart file field 'file'",
                           "missing_file", FILE_FIELD)
        self.form.file.finish()
        return self.form

    def discard(self) -> None:
        if self.form.file is not None:
            self.form.file.close()
            self.form.file = None
