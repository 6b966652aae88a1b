"""Files that are either whole or not there: written under a temporary name beside their path,
synced, and renamed into place, so a reader never sees half a file, even if the program is killed
while writing. The one way this project writes a file that something else reads."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import IO, Optional, Union


class AtomicFile:
    """A file written under a temporary name beside `path` and renamed to it on success; text
    (UTF-8, newlines as written) unless `binary`.

    On an exception (or Ctrl-C) the temporary file is removed and `path` is left as it was.
    """

    def __init__(self, path: Union[str, Path], binary: bool = False):
        self.path = Path(path)
        self.binary = binary
        self._temporary = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}.tmp")
        self._file: Optional[IO] = None

    def __enter__(self) -> IO:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.binary:
            self._file = open(self._temporary, "xb")
        else:
            self._file = open(self._temporary, "x", encoding="utf-8", newline="")
        return self._file

    def __exit__(self, kind, value, traceback) -> None:
        assert self._file is not None
        try:
            if kind is None:
                self._file.flush()
                os.fsync(self._file.fileno())
            self._file.close()
            if kind is None:
                os.replace(self._temporary, self.path)
        finally:
            if self._temporary.exists():
                self._temporary.unlink()


def write_atomic(path: Union[str, Path], data: Union[bytes, str]) -> None:
    """Writes `data` (bytes as they are, text as UTF-8) as the whole of `path`."""
    with AtomicFile(path, binary=isinstance(data, bytes)) as f:
        f.write(data)
