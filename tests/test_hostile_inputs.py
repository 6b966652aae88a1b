"""Hostile input: every broken, odd or huge recording has a defined outcome.

Through the Python API (Recognizer.transcribe), the long-form reader `asr transcribe` uses
(transcribe_long) and the command itself, each input gives a transcript (possibly empty) or an
AudioError naming the file and the reason: never a traceback, a hang, or the loss of the other
inputs of a batch. Property tests cover the audio validator, the SNR mixer and the normaliser.
"""

import io
import json
import math
import os
import re
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pytest
import soundfile as sf
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import asr
import asr.longform
from asr.audio import (
    MAX_AMPLITUDE, MAX_CHANNELS, MAX_RESAMPLING_TAPS, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, load_audio, prepare_waveform,
    resampling_ratio,
)
from asr.cli import main as cli_main
from asr.data.augment import SILENT_POWER, active_speech_power, mix_at_snr
from asr.errors import AudioError
from asr.longform import LongformConfig, transcribe_long
from asr.text import normalize
from tests.conftest import fsdd_rows

SR = 16000
REPO = Path(__file__).resolve().parents[1]
NOT_UTF8 = os.fsdecode(b"caf\xe9.wav")  # a Latin-1 file name, as Python holds it (with a surrogate)
SHOWN_NOT_UTF8 = "caf\\xe9.wav"  # how outputs write it


# --- the corpus ------------------------------------------------------------------------------------

def encoded(samples: np.ndarray, fmt: str, subtype: Optional[str] = None, rate: int = SR) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def first_half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def scrambled(data: bytes) -> bytes:
    """The first 40 bytes (magic numbers, format and sizes) garbled."""
    head = bytes(b ^ 0x5A for b in data[4:40])
    return data[:4] + head + data[40:]


def square(amplitude: float) -> np.ndarray:
    return amplitude * np.sign(np.sin(2 * np.pi * 200 * np.arange(SR) / SR)).astype(np.float32)


def with_sample(clip: np.ndarray, value: float) -> np.ndarray:
    broken = clip.copy()
    broken[len(clip) // 2] = value
    return broken


RANDOM = np.random.default_rng(0)
JUNK = RANDOM.integers(0, 256, 6000, dtype=np.uint8).tobytes()
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00\x00\x00\x01\x00\x08\x06\x00\x00\x00" + JUNK
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + JUNK

Writer = Callable[[Path, np.ndarray], None]


def write_bytes(make: Callable[[np.ndarray], bytes]) -> Writer:
    return lambda path, clip: path.write_bytes(make(clip))


def write_audio(make: Callable[[np.ndarray], np.ndarray], rate: int = SR, subtype: Optional[str] = None) -> Writer:
    return lambda path, clip: sf.write(os.fsencode(path), make(clip), rate, subtype=subtype)  # any name


TRANSCRIPT = None  # the outcome is a transcript, possibly empty

# name -> (how to make it from a second of a spoken digit, the outcome: TRANSCRIPT or the AudioError's reason)
CORPUS: dict[str, tuple[Writer, Optional[str]]] = {
    "empty.wav": (write_bytes(lambda clip: b""), r"is empty \(0 bytes\)"),
    "zero_length.wav": (write_audio(lambda clip: clip[:0]), "contains no samples"),
    "header_only.wav": (write_bytes(lambda clip: encoded(clip, "WAV")[:20]), "not a readable audio file"),
    "header_only.flac": (write_bytes(lambda clip: encoded(clip, "FLAC")[:20]), "not a readable audio file"),
    "header_only.mp3": (write_bytes(lambda clip: encoded(clip, "MP3")[:20]), "not a readable audio file"),
    "cut_in_half.wav": (write_bytes(lambda clip: first_half(encoded(clip, "WAV"))),
                        "truncated: the header promises 32000 bytes of audio"),
    "cut_in_half.flac": (write_bytes(lambda clip: first_half(encoded(clip, "FLAC"))),
                         "not a readable audio file|unreadable after"),
    "scrambled_header.wav": (write_bytes(lambda clip: scrambled(encoded(clip, "WAV"))), "not a readable audio file"),
    "scrambled_header.flac": (write_bytes(lambda clip: scrambled(encoded(clip, "FLAC"))), "not a readable audio file"),
    "notes.wav": (write_bytes(lambda clip: b"minutes of the meeting\n" * 200), "not a readable audio file"),
    "photo.flac": (write_bytes(lambda clip: PNG), "not a readable audio file"),
    "photo.mp3": (write_bytes(lambda clip: JPEG), "not a readable audio file"),
    "nan.wav": (write_audio(lambda clip: with_sample(clip, np.nan), subtype="FLOAT"), "NaN or infinite"),
    "inf.wav": (write_audio(lambda clip: with_sample(clip, -np.inf), subtype="FLOAT"), "NaN or infinite"),
    "clipped_square.wav": (write_audio(lambda clip: square(1.0)), TRANSCRIPT),  # PCM_16 full scale
    "square_beyond_full_scale.wav": (write_audio(lambda clip: square(4.0), subtype="FLOAT"), TRANSCRIPT),
    "dc_offset.wav": (write_audio(lambda clip: 0.3 * clip + 0.6), TRANSCRIPT),
    "one_hz.wav": (write_audio(lambda clip: clip[:50], rate=1), "unsupported sample rate 1 Hz"),
    "384khz.wav": (write_audio(lambda clip: prepare_waveform(clip, SR, 384000), rate=384000), TRANSCRIPT),
    "eight_channels.wav": (write_audio(lambda clip: np.stack([clip * (k + 1) / 4.5 for k in range(8)], 1),
                                       subtype="FLOAT"), TRANSCRIPT),  # their mean is the clip
    "pcm_u8.wav": (write_audio(lambda clip: clip, subtype="PCM_U8"), TRANSCRIPT),
    "float32.wav": (write_audio(lambda clip: clip, subtype="FLOAT"), TRANSCRIPT),
    "ten_ms.wav": (write_audio(lambda clip: clip[: SR // 100]), TRANSCRIPT),
    "silence.wav": (write_audio(lambda clip: np.zeros(3 * SR, np.float32)), TRANSCRIPT),
    "noise.wav": (write_audio(lambda clip: (0.3 * RANDOM.standard_normal(3 * SR)).astype(np.float32)), TRANSCRIPT),
    "a name with spaces – ünïcödé 日本語.flac": (write_audio(lambda clip: clip), TRANSCRIPT),
    NOT_UTF8: (write_audio(lambda clip: clip), TRANSCRIPT),
    "loop.wav": (lambda path, clip: path.symlink_to(path.name), "cannot be opened"),  # a link to itself
    "pipe.wav": (lambda path, clip: os.mkfifo(path), "is a pipe or device"),  # nobody writes to it
}
# Inputs that hold the clip itself, however stored or named: their transcript is the clip's.
LOSSLESS = {"eight_channels.wav", "float32.wav", "a name with spaces – ünïcödé 日本語.flac", NOT_UTF8}
# Stored at another rate in 16 bits: read back at 16 kHz, the clip within rounding and the resampler's
# passband (50 dB here), which a tiny model memorising one clip may hear differently.
RESAMPLED = {"384khz.wav"}


@dataclass(frozen=True)
class Case:
    path: Path
    error: Optional[str]  # pattern of the reason, or None: a transcript


@pytest.fixture(scope="module")
def clip(data_dir) -> np.ndarray:
    """A spoken digit the tiny model was trained on, padded to one second."""
    samples = load_audio(fsdd_rows(data_dir)[0]["audio"])
    on_16_bit_grid = np.round(samples * 32768) / 32768  # so that a 16-bit file holds the clip exactly
    return np.pad(on_16_bit_grid, (0, SR - len(samples))).astype(np.float32)


@pytest.fixture(scope="module")
def corpus(clip, tmp_path_factory) -> dict[str, Case]:
    folder = tmp_path_factory.mktemp("hostile")
    cases = {}
    for name, (write, error) in CORPUS.items():
        write(folder / name, clip)
        cases[name] = Case(folder / name, error)
    return cases


@pytest.fixture(scope="module")
def recognizer(tiny_model_dir):
    return asr.load_model(tiny_model_dir)


@contextmanager
def pipes_freed_after(seconds: float, path: Path):
    """If `path` is a pipe, opens it for writing after `seconds`, freeing a reader stuck opening it."""
    def free() -> None:
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:  # nobody is reading it: nothing to free
            pass

    timer = threading.Timer(seconds, free)
    if path.is_fifo():
        timer.start()
    try:
        yield
    finally:
        timer.cancel()


def outcome(transcribe: Callable[[Path], str], case: Case) -> tuple[str, str]:
    """("transcript", text) or ("error", reason), checking the error names the file."""
    began = time.perf_counter()
    with pipes_freed_after(10.0, case.path):
        try:
            result = ("transcript", transcribe(case.path))
        except AudioError as err:
            assert err.source == str(case.path), err
            result = ("error", err.reason)
    assert time.perf_counter() - began < 10.0, f"{case.path.name} kept the reader waiting"
    return result


# --- every input, through the API and the long-form reader ----------------------------------------

@pytest.mark.parametrize("name", list(CORPUS), ids=ascii)
def test_each_hostile_input_has_its_outcome_in_the_api_and_the_long_form_reader(recognizer, corpus, clip, name):
    case = corpus[name]
    api = outcome(lambda path: recognizer.transcribe(path).text, case)
    longform = outcome(lambda path: transcribe_long(recognizer, path).text, case)
    for kind, value in (api, longform):
        if case.error is None:
            assert kind == "transcript" and isinstance(value, str), (name, value)
        else:
            assert kind == "error" and re.search(case.error, value), (name, value)
    if case.error is None:  # a recording short enough to decode whole decodes as the Recognizer decodes it
        assert api == longform
    if name in LOSSLESS:  # the clip's samples, so the clip's hypothesis and score, whatever the tiny model hears
        heard, reference = recognizer.transcribe(case.path), recognizer.transcribe(clip)
        assert api == ("transcript", reference.text) and heard.tokens == reference.tokens
        assert heard.score == pytest.approx(reference.score, abs=1e-4)
    if name in RESAMPLED:
        error = load_audio(case.path) - clip
        assert error.shape == clip.shape and 10 * np.log10(np.sum(clip**2) / np.sum(error**2)) > 40


def test_the_command_names_each_bad_input_on_one_line_and_transcribes_the_rest(tiny_model_dir, corpus, capsys):
    names = list(corpus)
    code = cli_main(["transcribe", *(str(corpus[n].path) for n in names), "--model", str(tiny_model_dir),
                     "--threads", "1"])
    out, err = capsys.readouterr()
    assert code == 1 and "Traceback" not in err
    good = [n for n in names if corpus[n].error is None]
    bad = [n for n in names if corpus[n].error is not None]
    printed = [line.split("\t")[0] for line in out.splitlines()]
    shown = [str(corpus[n].path).replace(NOT_UTF8, SHOWN_NOT_UTF8) for n in good]
    assert printed == shown  # every good input once, in order, the one with a Latin-1 name too
    lines = err.splitlines()
    assert len(lines) == len(bad)
    for name, line in zip(bad, lines):
        assert re.match(rf"asr transcribe: error: AudioError: {re.escape(str(corpus[name].path))}: "
                        rf"(.*)({corpus[name].error})", line), line


def test_a_folder_with_link_loops_and_pipes_in_it_is_walked_once(tiny_model_dir, corpus):
    folder = corpus["empty.wav"].path.parent
    (folder / "inner").mkdir(exist_ok=True)
    for link, target in [(folder / "inner" / "up", ".."), (folder / "self", ".")]:
        if not link.is_symlink():
            link.symlink_to(target)
    result = subprocess.run([sys.executable, "-m", "asr.cli", "transcribe", str(folder), "--model",
                             str(tiny_model_dir), "--threads", "1"], capture_output=True, timeout=300, cwd=REPO)
    err = result.stderr.decode("utf-8", "backslashreplace")
    assert result.returncode == 1 and "Traceback" not in err
    # The loops are not followed, and a pipe or a link to nowhere is not a file of the folder.
    good = sorted(str(case.path).replace(NOT_UTF8, SHOWN_NOT_UTF8) for case in corpus.values() if case.error is None)
    printed = sorted(line.split("\t")[0] for line in result.stdout.decode().splitlines())
    assert printed == good
    named = [line for line in err.splitlines() if line.startswith("asr transcribe: error: AudioError: ")]
    assert len(named) == sum(case.error is not None for case in corpus.values()) - 2  # all but loop.wav and pipe.wav


# --- files that change while they are read -----------------------------------------------------------

@pytest.fixture
def two_seconds(clip, tmp_path) -> Path:
    path = tmp_path / "two_seconds.wav"
    sf.write(path, np.concatenate([clip, clip]), SR)
    return path


def test_a_file_deleted_while_it_is_read_is_read_to_its_end(recognizer, two_seconds, tmp_path):
    intact = transcribe_long(recognizer, two_seconds).text
    small_blocks = LongformConfig(block_seconds=0.25)
    transcript = transcribe_long(recognizer, two_seconds, config=small_blocks,
                                 on_progress=lambda seconds: two_seconds.unlink(missing_ok=True))
    assert not two_seconds.exists()
    assert transcript.duration == 2.0 and transcript.text == intact


def test_a_file_cut_short_while_it_is_read_is_a_named_error(recognizer, two_seconds):
    one_second_less = two_seconds.stat().st_size - 2 * SR  # PCM_16: two bytes a sample

    def cut(seconds: float) -> None:
        os.truncate(two_seconds, min(one_second_less, two_seconds.stat().st_size))

    with pytest.raises(AudioError, match=r"two_seconds.wav: cut short while being read: 1.0 s of the 2.0 s"):
        transcribe_long(recognizer, two_seconds, config=LongformConfig(block_seconds=0.25), on_progress=cut)


def test_a_file_deleted_before_its_turn_is_named_and_the_others_go_on(tiny_model_dir, clip, tmp_path, monkeypatch,
                                                                      capsys):
    paths = [tmp_path / f"{name}.wav" for name in ("first", "vanishing", "last")]
    for path in paths:
        sf.write(path, clip, SR)
    read_blocks = asr.longform.read_blocks

    def then_delete_the_next(source, *args, **kwargs):  # the first file read, the second one goes
        yield from read_blocks(source, *args, **kwargs)
        paths[1].unlink(missing_ok=True)

    monkeypatch.setattr(asr.longform, "read_blocks", then_delete_the_next)
    code = cli_main(["transcribe", *map(str, paths), "--model", str(tiny_model_dir)])
    out, err = capsys.readouterr()
    assert code == 1
    assert [line.split("\t")[0] for line in out.splitlines()] == [str(paths[0]), str(paths[2])]
    assert err == f"asr transcribe: error: AudioError: {paths[1]}: file not found\n"


# --- three hours ---------------------------------------------------------------------------------------

MEASURE = """
import json, resource, sys
from asr.cli import main
model, warm_up, long, report = sys.argv[1:]
args = ["--model", model, "--threads", "1", "--quiet", "--output", "-"]
assert main(["transcribe", warm_up, *args]) == 0  # loads the model and allocates every buffer the long path has
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
assert main(["transcribe", long, *args]) == 0
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
open(report, "w").write(json.dumps({"grew_kb": after - before, "peak_kb": after}))
"""


def write_with_digits(path: Path, clip: np.ndarray, minutes: int, every: int) -> list[float]:
    """`minutes` of digital silence, a digit at the end of every `every`th minute; returns the digits' starts."""
    starts, written = [], 0
    with sf.SoundFile(path, "w", SR, 1, format="FLAC", subtype="PCM_16") as out:  # written a minute at a time
        for minute in range(1, minutes + 1):
            out.write(np.zeros(60 * SR, np.float32))
            written += 60 * SR
            if minute % every == 0:
                starts.append(written / SR)
                out.write(clip)
                written += len(clip)
    return starts


@pytest.mark.slow
def test_three_hours_are_transcribed_in_bounded_memory(tiny_model_dir, clip, tmp_path):
    long, warm_up, report = tmp_path / "three_hours.flac", tmp_path / "three_minutes.flac", tmp_path / "rss.json"
    starts = write_with_digits(long, clip, minutes=180, every=30)
    write_with_digits(warm_up, clip, minutes=3, every=2)
    result = subprocess.run([sys.executable, "-c", MEASURE, str(tiny_model_dir), str(warm_up), str(long), str(report)],
                            capture_output=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    transcript = json.loads(result.stdout.decode().splitlines()[-1])
    assert transcript["duration"] == 180 * 60 + 6
    # The silence is skipped: one segment per digit, where the digit is.
    found = [segment["start"] for segment in transcript["segments"]]
    assert len(found) == len(starts) and all(abs(a - b) < 0.5 for a, b in zip(found, starts)), (found, starts)
    whole_mb = transcript["duration"] * SR * 4 / 2**20  # the recording as float32 samples: 660 MiB
    grew_mb = json.loads(report.read_text())["grew_kb"] / 1024
    assert grew_mb < whole_mb / 10, f"resident memory grew by {grew_mb:.0f} MiB"


# --- odd sample rates -----------------------------------------------------------------------------------

RESAMPLE_IN_LIMITED_MEMORY = """
import resource, sys
import numpy as np
from asr.audio import prepare_waveform
mapped = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (mapped + 2**30, resource.RLIM_INFINITY))  # 1 GiB more than now
for rate in map(int, sys.argv[1:]):
    samples = prepare_waveform(np.random.default_rng(0).standard_normal(rate).astype(np.float32), rate)
    print(rate, len(samples))
"""


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux /proc")
def test_an_odd_sample_rate_is_resampled_in_bounded_memory():
    rates = [44101, 22254, 11127, 383999]  # each once needed a kernel of 0.4-2.8 GB, several times over
    result = subprocess.run([sys.executable, "-c", RESAMPLE_IN_LIMITED_MEMORY, *map(str, rates)],
                            capture_output=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    lengths = dict(map(int, line.split()) for line in result.stdout.decode().splitlines())
    assert all(abs(lengths[rate] - SR) <= 1 for rate in rates), lengths  # one second in, one second out


def test_the_usual_rates_resample_exactly_and_odd_ones_nearly():
    for rate in (8000, 11025, 12000, 22050, 24000, 32000, 37800, 44100, 47250, 48000, 88200, 96000, 176400, 192000,
                 352800, 384000):
        assert resampling_ratio(rate, SR) == (rate, SR)
    for rate in range(MIN_SAMPLE_RATE, MAX_SAMPLE_RATE + 1, 7):
        orig, new = resampling_ratio(rate, SR)
        g = math.gcd(orig, new)
        assert (orig // g) * (new // g) <= 1.01 * MAX_RESAMPLING_TAPS
        assert abs(new * rate / (orig * SR) - 1) <= 5e-4, rate  # 0.05 %: at worst 1.8 s an hour


# --- properties ----------------------------------------------------------------------------------------

DTYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "float16", "float32", "float64", "bool", "complex64"]


@st.composite
def sample_arrays(draw) -> np.ndarray:
    """Arrays of any dtype: mono, frames x channels (none to nine), or the wrong way round; of any
    values (NaN, infinities, the largest floats), or for floats half the time of ordinary levels."""
    frames = draw(st.integers(0, 300))
    shape = draw(st.sampled_from([(frames,), (frames, draw(st.integers(0, 9))), (2, MAX_CHANNELS + 1 + frames)]))
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    ordinary = dtype.kind == "f" and draw(st.booleans())
    return draw(arrays(dtype, shape, elements=st.floats(-2, 2, width=8 * dtype.itemsize) if ordinary else None))


def as_float32(data: np.ndarray) -> np.ndarray:
    """Samples as prepare_waveform documents reading them: integers scaled to full scale 1.0."""
    with np.errstate(over="ignore"):
        samples = data.astype(np.float32)
    return samples / float(np.iinfo(data.dtype).max) if data.dtype.kind in "iu" else samples


def is_usable(data: np.ndarray, rate: int) -> bool:
    """Whether prepare_waveform's contract accepts these samples."""
    if data.dtype.kind not in "iuf" or data.ndim not in (1, 2) or not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        return False
    channels = data.shape[1] if data.ndim == 2 else 1
    if data.shape[0] == 0 or not 1 <= channels <= MAX_CHANNELS:
        return False
    samples = as_float32(data)
    return bool(np.all(np.isfinite(samples)) and np.abs(samples).max() <= MAX_AMPLITUDE)


@settings(max_examples=200, deadline=None)
@given(data=sample_arrays(), rate=st.one_of(st.just(SR), st.sampled_from([8000, 44100]), st.integers(1, 500_000)))
def test_prepare_waveform_gives_finite_mono_float32_of_the_right_length_or_a_named_error(data, rate):
    try:
        out = prepare_waveform(data, rate, SR, "x.wav")
    except AudioError as err:
        assert err.source == "x.wav" and err.reason
        assert not is_usable(data, rate), err
        return
    assert is_usable(data, rate)
    assert out.dtype == np.float32 and out.ndim == 1 and np.all(np.isfinite(out))
    frames = data.shape[0]
    if rate == SR:
        samples = as_float32(data)
        mono = samples.mean(axis=1) if samples.ndim == 2 else samples
        np.testing.assert_allclose(out, mono, rtol=1e-6, atol=1e-6 * float(np.abs(mono).max()))
    else:
        exact = frames * SR / rate
        assert abs(len(out) - exact) <= 1 + 5e-4 * exact


@st.composite
def speech_and_noise(draw) -> tuple[np.ndarray, np.ndarray]:
    """Any speech, and noise of any shape: sparse clicks, a constant, subnormal dust, loud bursts."""
    n = draw(st.integers(1, 2000))
    speech = draw(arrays(np.float32, n, elements=st.floats(-1e3, 1e3, width=32)))
    noise = draw(arrays(np.float32, n, elements=st.floats(-1, 1, width=32), fill=st.sampled_from([0.0, 0.5])))
    return speech, noise


@settings(max_examples=200, deadline=None)
@given(pair=speech_and_noise(), snr=st.floats(-20.0, 40.0))
@example(pair=(np.array([1e-45, 0.0], np.float32), np.array([0.5, 0.5], np.float32)), snr=0.0)  # subnormal speech
@example(pair=(np.array([1e-10] + [0.0] * 320 + [1.0], np.float32), np.array([0.0] * 321 + [1.0], np.float32)),
         snr=0.0)  # the noise lands on a loud sample that the active frames leave out, and vanishes in float32
def test_mix_at_snr_of_any_noise_is_finite_and_at_the_snr_asked_for(pair, snr):
    speech, noise = pair
    mixed = mix_at_snr(speech, noise, snr)
    assert mixed.shape == speech.shape and mixed.dtype == np.float32 and np.all(np.isfinite(mixed))
    speech_power, noise_power = active_speech_power(speech), float(np.mean(noise.astype(np.float64) ** 2))
    if speech_power < SILENT_POWER or noise_power < SILENT_POWER:
        assert np.array_equal(mixed, speech)  # nothing to set an SNR against
        return
    # The noise scaled to the power the SNR asks for, added: each sample as near it as float32 can be
    # (noise far below a loud sample's resolution may vanish there, so no SNR is measured on `mixed`).
    exact = speech.astype(np.float64) + noise * np.sqrt(speech_power / (noise_power * 10 ** (snr / 10)))
    assert np.all(np.abs(mixed - exact) <= 2 * np.spacing(np.abs(exact).astype(np.float32)))


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(exclude_categories=()), max_size=40))  # surrogates and control characters too
def test_normalize_takes_any_string_and_is_idempotent(text):
    once = normalize(text)
    assert normalize(once) == once


@pytest.mark.parametrize("piece", ["9", "1,", "$", " one", " hundred and", "5%", " first", " 1984", "Mr. ", "3.5 ",
                                   "-", "'", "[", " $5.50", "\u0301", "\udc80"])
def test_normalize_takes_long_hostile_text_in_linear_time(piece):
    text = piece * (20000 // len(piece))
    began = time.perf_counter()
    once = normalize(text)
    assert time.perf_counter() - began < 5.0  # about 0.1 s; quadratic work would take minutes
    assert normalize(once) == once
