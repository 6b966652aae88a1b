"""Reading CTranslate2 `model.bin` files (format version 6) without CTranslate2 itself.

Layout, little-endian: u32 format version, string spec name, u32 spec revision, u32 variable
count, then per variable: string name, u8 rank, u32 dims[rank], u8 dtype, u32 byte count, data;
then u32 alias count and (alias, target) string pairs. A string is a u16 length (counting a
trailing NUL) followed by its bytes.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from asr.errors import CheckpointError

# CTranslate2's DataType enumeration
DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
SUPPORTED_VERSIONS = (5, 6)


class _Reader:
    def __init__(self, data: bytes, source: str):
        self.data, self.pos, self.source = data, 0, source

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise CheckpointError(f"{self.source}: truncated CTranslate2 model (needs {n} more bytes at {self.pos})")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def number(self, fmt: str) -> int:
        return struct.unpack("<" + fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        return self.take(self.number("H"))[:-1].decode("utf-8")


def read_model_bin(path: str | Path) -> tuple[str, dict[str, np.ndarray]]:
    """Returns the spec name and every variable (aliases resolved) as numpy arrays."""
    reader = _Reader(Path(path).read_bytes(), str(path))
    version = reader.number("I")
    if version not in SUPPORTED_VERSIONS:
        raise CheckpointError(f"{path}: unsupported CTranslate2 format version {version}")
    spec = reader.string()
    reader.number("I")  # spec revision
    variables: dict[str, np.ndarray] = {}
    for _ in range(reader.number("I")):
        name = reader.string()
        shape = [reader.number("I") for _ in range(reader.number("B"))]
        dtype_id = reader.number("B")
        if dtype_id not in DTYPES:
            raise CheckpointError(f"{path}: variable {name} has unsupported dtype id {dtype_id}")
        data = reader.take(reader.number("I"))
        variables[name] = np.frombuffer(data, dtype=DTYPES[dtype_id]).reshape(shape)
    for _ in range(reader.number("I")):
        alias, target = reader.string(), reader.string()
        variables[alias] = variables[target]
    return spec, variables
