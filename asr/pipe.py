"""Audio arriving through a pipe while it is recorded (`arecord ... | asr transcribe - --stream`).

A file reader may seek and wait for the end; a live pipe must be read as it comes, and a recorder
writing WAV to a pipe cannot know the data size it puts in the header (arecord writes the
largest size there is). So the stream is read piece by piece, whatever has arrived: a WAV header
(PCM or float samples) is parsed as it passes, and anything without one is raw 16-bit
little-endian PCM at a given rate and channel count, as arecord, sox and ffmpeg write it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO, Iterator

import numpy as np

from asr.audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE
from asr.errors import AudioError

READ_BYTES = 1 << 14  # at most this much per read: about 0.5 s of 16 kHz 16-bit audio
# The first bytes of containers that need a real decoder, with the name users know them by.
NOT_PCM = {b"fLaC": "FLAC", b"OggS": "Ogg", b"ID3": "MP3", b"\xff\xfb": "MP3", b"\xff\xf3": "MP3",
           b"RIFX": "big-endian WAV", b"FORM": "AIFF"}
WAVE_FORMATS = {1: "int", 3: "float", 0xFFFE: "extensible"}


@dataclass(frozen=True)
class PcmFormat:
    sample_rate: int
    channels: int
    dtype: str  # numpy dtype of one sample, little-endian: "<i2", "<i4", "<f4", ...

    @property
    def frame_bytes(self) -> int:
        return self.channels * np.dtype(self.dtype).itemsize


def read_pipe(stream: BinaryIO, raw_rate: int = 16000, raw_channels: int = 1,
              source: str = "-") -> Iterator[tuple[np.ndarray, int]]:
    """(samples, sample_rate) pieces of a live stream as they arrive: float32, frames x channels.

    `stream` is a binary stream with `read1` (sys.stdin.buffer), which returns what has arrived
    instead of waiting for a full read. Raises AudioError naming `source` for a header that is
    not WAV PCM or a container that needs decoding (FLAC, MP3, Ogg), before any samples.
    """
    reader = _Bytes(stream)
    head = reader.peek(4)
    for magic, name in NOT_PCM.items():
        if head.startswith(magic):
            raise AudioError(source, f"a live stream is read as WAV or raw 16-bit PCM, and this is {name}: "
                                     "leave out --stream to read it whole")
    fmt = _wav_header(reader, source) if head == b"RIFF" else PcmFormat(raw_rate, raw_channels, "<i2")
    if not MIN_SAMPLE_RATE <= fmt.sample_rate <= MAX_SAMPLE_RATE:
        raise AudioError(source, f"unsupported sample rate {fmt.sample_rate} Hz")
    scale = float(np.iinfo(fmt.dtype).max) if np.dtype(fmt.dtype).kind == "i" else 1.0
    pending = b""
    while chunk := reader.read():
        pending += chunk
        usable = len(pending) - len(pending) % fmt.frame_bytes
        if usable:
            samples = np.frombuffer(pending[:usable], dtype=fmt.dtype).astype(np.float32) / scale
            pending = pending[usable:]
            yield samples.reshape(-1, fmt.channels), fmt.sample_rate


def _wav_header(reader: "_Bytes", source: str) -> PcmFormat:
    """Reads a WAV header up to its data; the format of the samples that follow."""
    riff = reader.exactly(12, source)
    if riff[8:12] != b"WAVE":
        raise AudioError(source, "starts like WAV (RIFF) but is not WAVE audio")
    fmt = None
    while True:
        chunk_id, size = struct.unpack("<4sI", reader.exactly(8, source))
        if chunk_id == b"data":
            if fmt is None:
                raise AudioError(source, "WAV data comes before its format chunk")
            return fmt
        body = reader.exactly(size + size % 2, source)  # chunks are padded to an even size
        if chunk_id == b"fmt ":
            fmt = _wav_format(body, source)


def _wav_format(body: bytes, source: str) -> PcmFormat:
    if len(body) < 16:
        raise AudioError(source, "WAV format chunk is too short")
    tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
    if tag == 0xFFFE and len(body) >= 26:  # WAVE_FORMAT_EXTENSIBLE: the real tag opens the sub-format
        tag = struct.unpack("<H", body[24:26])[0]
    kind = WAVE_FORMATS.get(tag)
    dtypes = {("int", 16): "<i2", ("int", 32): "<i4", ("float", 32): "<f4", ("float", 64): "<f8"}
    if (kind, bits) not in dtypes or channels < 1:
        raise AudioError(source, f"a live stream is read as 16/32-bit integer or 32/64-bit float WAV; this one has "
                                 f"format {tag}, {bits}-bit samples and {channels} channels")
    return PcmFormat(rate, channels, dtypes[(kind, bits)])


class _Bytes:
    """A binary stream read as it arrives, with a look at its first bytes."""

    def __init__(self, stream: BinaryIO):
        self._stream = stream
        self._buffer = b""

    def _more(self) -> bytes:
        read1 = getattr(self._stream, "read1", None)
        return read1(READ_BYTES) if read1 is not None else self._stream.read(READ_BYTES)

    def peek(self, count: int) -> bytes:
        while len(self._buffer) < count and (chunk := self._more()):
            self._buffer += chunk
        return self._buffer[:count]

    def exactly(self, count: int, source: str) -> bytes:
        data = self.peek(count)
        if len(data) < count:
            raise AudioError(source, "the WAV header breaks off")
        self._buffer = self._buffer[count:]
        return data

    def read(self) -> bytes:
        """What has arrived (waiting for at least one byte), or b"" at the end of the stream."""
        if self._buffer:
            data, self._buffer = self._buffer, b""
            return data
        return self._more()
