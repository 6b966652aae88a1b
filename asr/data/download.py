"""Fetching corpus archives: resumable HTTP download, checksum verification, safe extraction.

A download goes to `<name>.part` and is renamed only once its checksum matches, so an archive
under its final name is always complete. Rerunning after an interruption asks the server for the
rest (an HTTP Range request) and appends it. Archives with no published checksum get their
SHA-256 written beside them (`<name>.sha256`) at the first download, and later runs check the
archive against it; that catches later corruption, not a download that was wrong from the start.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import tarfile
import zipfile
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path, PurePosixPath
from typing import Optional
from urllib.error import HTTPError, URLError
from urllib.parse import unquote, urlparse
from urllib.request import Request, urlopen

from asr.errors import AsrError

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20


class DownloadError(AsrError):
    """An archive could not be fetched, failed its checksum, or cannot be extracted."""


@dataclass(frozen=True)
class Resource:
    url: str
    md5: Optional[str] = None
    sha256: Optional[str] = None

    @property
    def filename(self) -> str:
        name = PurePosixPath(unquote(urlparse(self.url).path)).name
        if not name:
            raise DownloadError(f"{self.url}: the URL names no file")
        return name


def file_digests(path: Path) -> dict[str, str]:
    md5, sha256 = hashlib.md5(), hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            md5.update(chunk)
            sha256.update(chunk)
    return {"md5": md5.hexdigest(), "sha256": sha256.hexdigest()}


def _sidecar(target: Path) -> Path:
    return target.with_name(target.name + ".sha256")


def _expected(resource: Resource, target: Path) -> dict[str, str]:
    expected = {k: v.lower() for k, v in (("md5", resource.md5), ("sha256", resource.sha256)) if v}
    if not expected and _sidecar(target).is_file():
        expected["sha256"] = _sidecar(target).read_text().split()[0].lower()
    return expected


def _verify(path: Path, expected: dict[str, str], url: str) -> None:
    """Deletes `path` and raises if a digest differs, so that a rerun fetches it afresh."""
    actual = file_digests(path)
    for kind, digest in expected.items():
        if actual[kind] != digest:
            path.unlink()
            raise DownloadError(f"{url}: {kind} of the download is {actual[kind]}, expected {digest}; "
                                f"deleted {path.name}, rerun to download it again")


def download(resource: Resource, directory: str | Path, timeout: float = 60.0) -> Path:
    """Downloads `resource` into `directory` (resuming a partial download) and returns its path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / resource.filename
    if target.is_file():
        _verify(target, _expected(resource, target), resource.url)
        log.info("%s: already downloaded", target)
        return target
    part = target.with_name(target.name + ".part")
    offset = part.stat().st_size if part.is_file() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        with urlopen(Request(resource.url, headers=headers), timeout=timeout) as response:
            status = getattr(response, "status", None)  # None for file:// URLs, which ignore Range
            if offset and status == 206:
                _check_content_range(response.headers.get("Content-Range", ""), offset, resource.url)
                log.info("%s: resuming at byte %d", resource.filename, offset)
            else:
                offset = 0  # a fresh download, or a server that sent the whole file again
            with part.open("ab" if offset else "wb") as f:
                shutil.copyfileobj(response, f, CHUNK_BYTES)
            # A connection closed early reads like a normal end of data; only the length tells.
            length = response.headers.get("Content-Length")
            received = part.stat().st_size - offset
            if length is not None and received != int(length):
                raise DownloadError(f"{resource.url}: connection ended after {received} of {length} bytes; "
                                    f"rerun to resume from byte {part.stat().st_size}")
    except HTTPError as err:
        # 416: nothing left after `offset`, i.e. the partial file is already complete.
        if not (err.code == 416 and offset):
            raise DownloadError(f"{resource.url}: HTTP {err.code} {err.reason}") from None
    except (URLError, HTTPException, OSError) as err:  # includes a connection cut mid-transfer
        raise DownloadError(f"{resource.url}: {err}; rerun to resume from byte "
                            f"{part.stat().st_size if part.is_file() else 0}") from None
    expected = _expected(resource, target)
    _verify(part, expected, resource.url)
    part.replace(target)
    if not expected:
        _sidecar(target).write_text(f"{file_digests(target)['sha256']}  {target.name}\n")
        log.warning("%s: no published checksum; recorded its SHA-256 in %s", target.name, _sidecar(target).name)
    return target


def _check_content_range(header: str, offset: int, url: str) -> None:
    match = re.match(r"bytes (\d+)-", header)
    if not match or int(match.group(1)) != offset:
        raise DownloadError(f"{url}: asked for bytes from {offset}, server sent range {header!r}")


def extract(archive: str | Path, directory: str | Path) -> None:
    """Unpacks a tar (any compression) or zip archive into `directory`, once.

    Members that would land outside `directory` (absolute paths, "..", links pointing out) are
    refused: tar through the "data" extraction filter, zip by zipfile's own path sanitising.
    """
    archive, directory = Path(archive), Path(directory)
    stamp = directory / f".{archive.name}.extracted"
    if stamp.is_file():
        return
    directory.mkdir(parents=True, exist_ok=True)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                z.extractall(directory)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as t:
                t.extractall(directory, filter="data")
        else:
            raise DownloadError(f"{archive}: neither a tar nor a zip archive")
    except (tarfile.TarError, zipfile.BadZipFile, OSError) as err:
        raise DownloadError(f"{archive}: cannot extract ({err})") from None
    stamp.touch()
