"""asr transcribe: inputs of any kind and length, every output format, and errors without tracebacks."""

import fcntl
import importlib.machinery
import io
import json
import os
import pty
import random
import re
import shutil
import struct
import subprocess
import sys
import termios
import tracemalloc
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import asr
from asr.audio import load_audio
from asr.cli import build_parser, choose_runtime, main as cli_main
from asr.data.augment import active_speech_power, mix_at_snr
from asr.decoding.result import Word
from asr.errors import AudioError, ConfigError, VadModelError
from asr.atomic import AtomicFile, write_atomic
from asr.formats import FORMATS, SubtitleOptions, render, subtitle_cues, transcript_dict
from asr.longform import LongformConfig, Segment, Transcript, transcribe_long
from asr.stream import read_blocks
from asr.transcribe import Input, OutputConfig, check_outputs, find_inputs
from asr.vad import Span, VadConfig, VoiceActivityDetector, detect_speech, silero_model
from tests.conftest import fsdd_rows

SAMPLE_RATE = 16000


# --- strict readers of the output formats ---------------------------------------------------------

@dataclass
class Cue:
    start: float
    end: float
    lines: list[str]


def _seconds(h: str, m: str, s: str, ms: str) -> float:
    assert int(m) < 60 and int(s) < 60
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


def parse_srt(text: str) -> list[Cue]:
    """SubRip as players read it: numbered blocks from 1, 'HH:MM:SS,mmm --> HH:MM:SS,mmm', text lines."""
    assert text == "" or text.endswith("\n\n")
    cues = []
    for number, block in enumerate(text.split("\n\n")[:-1], 1):
        lines = block.split("\n")
        assert lines[0] == str(number), block
        times = re.fullmatch(r"(\d\d):(\d\d):(\d\d),(\d{3}) --> (\d\d):(\d\d):(\d\d),(\d{3})", lines[1])
        assert times, lines[1]
        assert len(lines) >= 3 and all(line.strip() == line and line for line in lines[2:]), block
        cues.append(Cue(_seconds(*times.groups()[:4]), _seconds(*times.groups()[4:]), lines[2:]))
    return cues


def parse_vtt(text: str) -> list[Cue]:
    """WebVTT: the header, then cues 'HH:MM:SS.mmm --> HH:MM:SS.mmm' with text that holds no markup
    (read back with its entities decoded)."""
    assert text.startswith("WEBVTT\n\n") and text.endswith("\n")
    cues = []
    for block in text[len("WEBVTT\n\n"):].split("\n\n")[:-1]:
        lines = block.split("\n")
        times = re.fullmatch(r"(\d\d):(\d\d):(\d\d)\.(\d{3}) --> (\d\d):(\d\d):(\d\d)\.(\d{3})", lines[0])
        assert times, lines[0]
        assert len(lines) >= 2 and all(line and "-->" not in line for line in lines[1:]), block
        assert not re.search(r"<|&(?!amp;|lt;|gt;)", "".join(lines[1:])), block
        text = [line.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&") for line in lines[1:]]
        cues.append(Cue(_seconds(*times.groups()[:4]), _seconds(*times.groups()[4:]), text))
    return cues


def check_cues(cues: list[Cue], duration: float, options: SubtitleOptions = SubtitleOptions()) -> None:
    for before, cue in zip([None, *cues], cues):
        assert 0 <= cue.start <= cue.end <= duration + 1e-3, cue
        assert before is None or before.end <= cue.start, (before, cue)
        assert 1 <= len(cue.lines) <= options.max_line_count, cue
        assert all(len(line) <= options.max_line_width or " " not in line for line in cue.lines), cue


def check_transcript_json(data: dict, audio: str, duration: float) -> None:
    """The jsonl object (and json file): exact keys and types, times increasing and inside the audio."""
    assert set(data) == {"audio", "text", "duration", "segments", "model", "rtf"}
    assert data["audio"] == audio and isinstance(data["model"], str) and data["model"]
    assert data["duration"] == pytest.approx(duration, abs=1e-3) and data["rtf"] >= 0
    assert data["text"] == " ".join(s["text"] for s in data["segments"])
    previous_end = 0.0
    for segment in data["segments"]:
        assert set(segment) == {"start", "end", "text", "words"}
        assert previous_end <= segment["start"] < segment["end"] <= data["duration"] + 1e-3
        previous_end = segment["end"]
        assert isinstance(segment["text"], str) and segment["text"]
        word_end = segment["start"]
        for word in segment["words"]:
            assert set(word) == {"word", "start", "end", "confidence"}
            assert isinstance(word["word"], str) and word["word"]
            assert word_end - 1e-3 <= word["start"] <= word["end"] <= segment["end"] + 1e-3
            assert 0.0 <= word["confidence"] <= 1.0
            word_end = word["end"]


def check_tsv(text: str, duration: float) -> list[tuple[int, int, str]]:
    lines = text.split("\n")
    assert lines[0] == "start\tend\ttext" and lines[-1] == ""
    rows = []
    for line in lines[1:-1]:
        start, end, words = line.split("\t")
        rows.append((int(start), int(end), words))
    assert all(0 <= s < e <= round(duration * 1000) for s, e, _ in rows)
    assert all(a[1] <= b[0] for a, b in zip(rows, rows[1:]))
    return rows


# --- audio made for the tests -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def recognizer(tiny_model_dir):
    return asr.load_model(tiny_model_dir)


@pytest.fixture(scope="module")
def clips(data_dir, tmp_path_factory) -> dict[str, tuple[Path, str]]:
    """FSDD digits in the formats people have: name -> (path, words)."""
    folder = tmp_path_factory.mktemp("clips")
    rows = fsdd_rows(data_dir)
    out = {}
    for name, row, rate, channels, fmt in [
        ("a.wav", rows[0], 16000, 1, "WAV"), ("b.flac", rows[3], 44100, 2, "FLAC"),
        ("c.ogg", rows[5], 22050, 1, "OGG"), ("d.mp3", rows[7], 16000, 1, "MP3"),
    ]:
        samples = load_audio(row["audio"], rate)
        sf.write(folder / name, np.repeat(samples[:, None], channels, axis=1), rate, format=fmt)
        out[name] = (folder / name, row["text"])
    return out


def bad_files(folder: Path, good: Path) -> dict[str, Path]:
    """One file for each way audio arrives broken."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {name: folder / name for name in
             ["empty.wav", "truncated.wav", "truncated.flac", "notes.wav", "zero.wav", "nan.wav", "onehz.wav"]}
    files["empty.wav"].write_bytes(b"")
    samples = load_audio(good)
    sf.write(folder / "whole.wav", samples, SAMPLE_RATE)
    sf.write(folder / "whole.flac", samples, SAMPLE_RATE)
    for name in ["truncated.wav", "truncated.flac"]:
        data = (folder / name.replace("truncated", "whole")).read_bytes()
        files[name].write_bytes(data[: len(data) // 2])
    files["notes.wav"].write_text("meeting notes, not audio\n")
    sf.write(files["zero.wav"], np.zeros(0, np.float32), SAMPLE_RATE)
    with_nan = samples.copy()
    with_nan[100] = np.nan
    sf.write(files["nan.wav"], with_nan, SAMPLE_RATE, subtype="FLOAT")
    sf.write(files["onehz.wav"], samples[:50], 1)
    files["missing.wav"] = folder / "missing.wav"
    return files


# --- voice activity detection ------------------------------------------------------------------------
# Real speech: LJ Speech clips, each trimmed to its speech (clean studio recordings, so a clip's own
# level tells where its speech begins and ends), joined with pauses and mixed with real noise.

LJ_SHORT = ["LJ001-0002", "LJ001-0008", "LJ001-0013", "LJ001-0037", "LJ001-0039", "LJ001-0043", "LJ001-0045",
            "LJ001-0054", "LJ001-0061", "LJ001-0078"]  # 1.8-4.5 s each
LJ_STRETCH = ["LJ001-0035", "LJ001-0037", "LJ001-0039", "LJ001-0029", "LJ001-0028"]  # 24 s when joined
LJ_LONG = [f"LJ001-{n:04d}" for n in range(41, 61)]  # 2 minutes when joined


def trimmed_to_speech(clip: np.ndarray) -> np.ndarray:
    """The clip from its first to its last 10 ms frame within 40 dB of its loudest."""
    frames = clip[: len(clip) // 160 * 160].reshape(-1, 160).astype(np.float64)
    level = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    loud = np.flatnonzero(level > level.max() - 40)
    return clip[loud[0] * 160 : (loud[-1] + 1) * 160]


def lj_clips(data_dir: Path, ids: list[str]) -> list[np.ndarray]:
    set_dir = data_dir / "speech" / "ljspeech_subset"
    paths = {row["id"]: set_dir / row["audio"]
             for row in map(json.loads, (set_dir / "manifest.jsonl").read_text().splitlines())}
    return [trimmed_to_speech(load_audio(paths[id_])) for id_ in ids]


def joined(clips: list[np.ndarray], pauses: list[float]) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Each clip after its pause (seconds) and a last pause after them; and where the clips lie (seconds)."""
    parts, truth, position = [], [], 0
    for clip, pause in zip(clips, pauses):
        silence = np.zeros(round(pause * SAMPLE_RATE), np.float32)
        parts += [silence, clip]
        truth.append(((position + len(silence)) / SAMPLE_RATE, (position + len(silence) + len(clip)) / SAMPLE_RATE))
        position += len(silence) + len(clip)
    parts.append(np.zeros(round(pauses[len(clips)] * SAMPLE_RATE), np.float32))
    return np.concatenate(parts), truth


def noise_of_kind(data_dir: Path, kind: str, length: int) -> np.ndarray:
    """The recordings of one kind of ../shared/data/noise one after another, repeated to `length` samples."""
    rows = map(json.loads, (data_dir / "noise" / "manifest.jsonl").read_text().splitlines())
    return np.resize(np.concatenate([load_audio(data_dir / "noise" / row["audio"]) for row in rows
                                     if row["kind"] == kind]), length)


def speech_in_noise(data_dir: Path, kind: str) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """48 s: the ten LJ_SHORT clips after pauses of 0.8-2.5 s, in `kind` noise at 10 dB SNR."""
    rng = random.Random(0)
    clean, truth = joined(lj_clips(data_dir, LJ_SHORT), [rng.uniform(0.8, 2.5) for _ in LJ_SHORT] + [1.0])
    return mix_at_snr(clean, noise_of_kind(data_dir, kind, len(clean)), 10.0), truth


def in_seconds(spans: list[Span]) -> list[tuple[float, float]]:
    return [(round(start / SAMPLE_RATE, 3), round(end / SAMPLE_RATE, 3)) for start, end in spans]


def level_db(audio: np.ndarray, start: int, stop: int, reference: float) -> float:
    """The power of audio[start:stop] in dB relative to `reference`."""
    return 10 * np.log10(np.mean(audio[max(start, 0) : stop].astype(np.float64) ** 2) / reference + 1e-12)


@pytest.mark.parametrize("kind", ["street", "white"])
def test_vad_finds_each_utterance_in_noise_within_its_margins(data_dir, kind):
    audio, truth = speech_in_noise(data_dir, kind)
    config = VadConfig()
    spans = in_seconds(detect_speech(audio, SAMPLE_RATE, config))
    assert len(spans) == len(truth), spans
    for (start, end), (true_start, true_end) in zip(spans, truth):
        # Silero needs a window or two to hear speech start and end; the pre-roll and hangover cover that.
        assert true_start - config.pre_roll_seconds - 0.1 <= start <= true_start + 0.1, (start, true_start)
        assert true_end - 0.1 <= end <= true_end + config.hangover_seconds + 0.2, (end, true_end)


def test_vad_streams_block_by_block_as_it_reads_whole(data_dir):
    audio, truth = speech_in_noise(data_dir, "street")
    whole = detect_speech(audio, SAMPLE_RATE)
    rng = random.Random(0)
    detector = VoiceActivityDetector(SAMPLE_RATE)
    streamed, position, settled = [], 0, 0
    while position < len(audio):
        size = rng.randrange(1, 600) if rng.random() < 0.3 else rng.randrange(600, 20000)  # parts of windows too
        for span in detector.feed(audio[position: position + size]):
            assert span.start >= settled  # the detector kept its promise: this audio was still wanted
            streamed.append(span)
        position += size
        assert detector.settled >= settled
        settled = detector.settled
    streamed += detector.finish()
    assert streamed == whole and len(whole) == len(truth)
    assert all(a.end <= b.start for a, b in zip(whole, whole[1:]))


def test_vad_keeps_speech_under_music_in_one_segment(data_dir):
    # 24 s of speech whose pauses are shorter than min_silence_seconds, with 6 s of music alone before
    # and after it and music all through it, 5 dB below the speech. The energy-based detector this one
    # replaced heard the music as speech: 36 s of "speech" that it cut at its quietest moments, three
    # of them inside the utterance (at 9.0, 14.0 and 27.6 s), with max_segment_seconds 30 as here.
    clean, truth = joined(lj_clips(data_dir, LJ_STRETCH), [6.0] + [0.15] * (len(LJ_STRETCH) - 1) + [6.0])
    start, end = truth[0][0], truth[-1][1]
    config = VadConfig()
    assert end - start < config.max_segment_seconds
    audio = mix_at_snr(clean, noise_of_kind(data_dir, "music", len(clean)), 5.0)
    spans = in_seconds(detect_speech(audio, SAMPLE_RATE, config))
    over_speech = [(s, e) for s, e in spans if s < end and e > start]
    assert len(over_speech) == 1, spans  # no span starts or ends inside the utterance
    assert over_speech[0][0] <= start + 0.1 and over_speech[0][1] >= end - 0.1, (spans, start, end)


def test_vad_finds_little_speech_in_noise_alone(data_dir):
    rows = map(json.loads, (data_dir / "noise" / "manifest.jsonl").read_text().splitlines())
    kinds = sorted({row["kind"] for row in rows} - {"babble"})  # babble is speech
    assert len(kinds) >= 8, kinds
    audio = np.concatenate([noise_of_kind(data_dir, kind, 20 * SAMPLE_RATE) for kind in kinds])
    spans = detect_speech(audio, SAMPLE_RATE)
    # "Few", not none: the pyroomacoustics guitar opens with a spoken count-in ("one, two, three, four").
    assert len(spans) <= 2 and sum(e - s for s, e in spans) <= 0.02 * len(audio), in_seconds(spans)


def test_vad_cuts_long_speech_where_it_sounds_least_like_speech(data_dir):
    # 2 minutes of speech with no pause between the clips longer than 0.15 s, in street noise at 20 dB.
    clean, truth = joined(lj_clips(data_dir, LJ_LONG), [0.5] + [0.15] * (len(LJ_LONG) - 1) + [0.5])
    audio = mix_at_snr(clean, noise_of_kind(data_dir, "street", len(clean)), 20.0)
    config = VadConfig()
    spans = detect_speech(audio, SAMPLE_RATE, config)
    assert all(e - s <= config.max_segment_seconds * SAMPLE_RATE for s, e in spans), in_seconds(spans)
    speech = active_speech_power(clean)
    cuts = [a.end for a, b in zip(spans, spans[1:]) if a.end == b.start]  # a cut loses no audio
    assert len(cuts) >= 2, in_seconds(spans)
    for cut in cuts:  # each in a pause: the clean speech around it is silent
        assert level_db(clean, cut - 512, cut + 512, speech) < -30, (cut / SAMPLE_RATE, in_seconds(spans))
    # And no speech is left out of the spans.
    covered = np.zeros(len(clean), bool)
    for s, e in spans:
        covered[s:e] = True
    for frame in range(0, len(clean) - 160, 160):
        if not covered[frame: frame + 160].all():
            assert level_db(clean, frame, frame + 160, speech) < -30, (frame / SAMPLE_RATE, in_seconds(spans))


def test_vad_settings_and_a_model_that_cannot_load_are_named_errors(clips, tmp_path, monkeypatch, capsys):
    with pytest.raises(ConfigError, match="threshold"):
        VadConfig(start_threshold=0.3, end_threshold=0.4)
    with pytest.raises(ConfigError, match="max_segment_seconds"):
        VadConfig(max_segment_seconds=0.5)
    with pytest.raises(ConfigError, match="16000"):
        VoiceActivityDetector(44100)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "silero_vad.onnx").write_bytes(b"not a model")
    broken = types.ModuleType("silero_vad")
    broken.__spec__ = importlib.machinery.ModuleSpec("silero_vad", None, is_package=True)
    broken.__spec__.submodule_search_locations = [str(tmp_path)]
    try:
        for package, message in [(None, "needs the silero-vad package"), (broken, "reinstall silero-vad")]:
            silero_model.cache_clear()
            monkeypatch.setitem(sys.modules, "silero_vad", package)  # None: not installed
            with pytest.raises(VadModelError, match=message):
                VoiceActivityDetector(SAMPLE_RATE)
            # The command names it in one line before it loads the recognizer (here a missing folder).
            assert cli_main(["transcribe", str(clips["a.wav"][0]), "--model", str(tmp_path / "no_model")]) == 1
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and "VadModelError" in err and message in err, err
            monkeypatch.undo()
    finally:
        silero_model.cache_clear()
    assert VoiceActivityDetector(SAMPLE_RATE).feed(np.zeros(SAMPLE_RATE, np.float32)) == []  # loads again


# --- reading in blocks ----------------------------------------------------------------------------

@pytest.mark.parametrize("rate, channels", [(44100, 2), (8000, 1), (48000, 6), (16000, 2)])
def test_blocks_resample_and_downmix_exactly_as_a_whole_file_read(tmp_path, rate, channels):
    rng = np.random.default_rng(rate)
    samples = (rng.standard_normal((rate * 3 + 77, channels)) * 0.1).astype(np.float32)
    sf.write(tmp_path / "x.wav", samples, rate, subtype="FLOAT")
    blocks = list(read_blocks(tmp_path / "x.wav", SAMPLE_RATE, block_seconds=0.25))
    assert max(len(b) for b in blocks) <= 0.25 * SAMPLE_RATE + 160  # plus at most one resampling group
    np.testing.assert_allclose(np.concatenate(blocks), load_audio(tmp_path / "x.wav"), atol=1e-5)


# --- twenty minutes ----------------------------------------------------------------------------------

@dataclass
class LongRecording:
    path: Path
    truth: list[tuple[str, float, float]]  # (word, start, end) in seconds
    duration: float


@pytest.fixture(scope="module")
def long_recording(data_dir, tmp_path_factory) -> LongRecording:
    """20 minutes: the FSDD digits of `fsdd_rows` in random order, each after 0.8-2 s of silence."""
    recordings = [(row["text"], load_audio(row["audio"])) for row in fsdd_rows(data_dir)]
    rng = random.Random(0)
    path = tmp_path_factory.mktemp("long") / "twenty_minutes.wav"
    truth, position = [], 0
    with sf.SoundFile(path, "w", SAMPLE_RATE, 1, subtype="PCM_16") as out:  # written, like read, in pieces
        while position < 20 * 60 * SAMPLE_RATE:
            word, samples = recordings[rng.randrange(len(recordings))]
            gap = int(rng.uniform(0.8, 2.0) * SAMPLE_RATE)
            out.write(np.concatenate([np.zeros(gap, np.float32), samples]))
            truth.append((word, (position + gap) / SAMPLE_RATE, (position + gap + len(samples)) / SAMPLE_RATE))
            position += gap + len(samples)
        out.write(np.zeros(SAMPLE_RATE, np.float32))
    return LongRecording(path, truth, (position + SAMPLE_RATE) / SAMPLE_RATE)


@pytest.fixture(scope="module")
def long_transcript(recognizer, long_recording) -> tuple[Transcript, int]:
    """The transcript of the 20 minutes, and the most memory (bytes) numpy held while making it."""
    tracemalloc.start()
    try:
        transcript = transcribe_long(recognizer, long_recording.path, config=LongformConfig(batch_size=16))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return transcript, peak


@pytest.mark.slow
def test_twenty_minutes_come_out_with_time_stamps_within_a_third_of_a_second(long_recording, long_transcript):
    transcript, _ = long_transcript
    truth = long_recording.truth
    assert transcript.duration == pytest.approx(long_recording.duration, abs=1e-3) and transcript.duration >= 1200
    # The silences are longer than the detector's pauses: one segment and one word per digit.
    assert len(transcript.segments) == len(truth)
    for segment, (_, start, end) in zip(transcript.segments, truth):
        assert len(segment.words) == 1, segment
        word = segment.words[0]
        assert abs(segment.start - start) <= 0.3 and abs(segment.end - end) <= 0.3, (segment, start, end)
        assert start - 0.3 <= word.start < word.end <= end + 0.3, (word, start, end)
    # The tiny model memorised whole clips, and a segment's margins differ from its clip's, so it
    # misspells some digits; what it writes is still the digit said at that time.
    right = sum(segment.text == word for segment, (word, _, _) in zip(transcript.segments, truth))
    assert right >= 0.5 * len(truth)


@pytest.mark.slow
def test_twenty_minutes_are_read_in_bounded_memory(long_recording, long_transcript):
    _, peak = long_transcript
    whole = long_recording.duration * SAMPLE_RATE * 4  # bytes of the recording as float32 samples
    assert peak < whole / 5, f"peak {peak / 1e6:.1f} MB for a recording of {whole / 1e6:.1f} MB"


@pytest.mark.slow
def test_every_format_of_a_long_transcript_is_valid(long_recording, long_transcript):
    transcript, _ = long_transcript
    duration, audio = transcript.duration, str(long_recording.path)
    check_transcript_json(json.loads(render("json", transcript, "tiny")), audio, duration)
    lines = render("jsonl", transcript, "tiny").split("\n")
    assert len(lines) == 2 and lines[1] == ""
    check_transcript_json(json.loads(lines[0]), audio, duration)
    for fmt, parse in [("srt", parse_srt), ("vtt", parse_vtt)]:
        cues = parse(render(fmt, transcript))
        check_cues(cues, duration)
        assert " ".join(" ".join(cue.lines) for cue in cues) == transcript.text
    rows = check_tsv(render("tsv", transcript), duration)
    assert [words for _, _, words in rows] == [s.text for s in transcript.segments]
    assert render("txt", transcript) == transcript.text + "\n"


def test_a_short_recording_decodes_whole_as_the_recognizer_does(recognizer, clips, monkeypatch):
    """...and loads no voice activity detector: a clip that fits one piece needs none."""
    def no_detector(*args, **kwargs):
        raise AssertionError("a VAD was made for a recording shorter than one piece")

    monkeypatch.setattr("asr.longform.VoiceActivityDetector", no_detector)
    path, words = clips["a.wav"]
    transcript = transcribe_long(recognizer, path)
    alone = recognizer.transcribe(path)
    assert transcript.text == alone.text == words
    assert [s.words for s in transcript.segments] == [alone.words]


# --- formats ----------------------------------------------------------------------------------------

def words_transcript() -> Transcript:
    """A hand-made transcript: a long segment, a segment whose model gave no word times, markup."""
    said = "the quick brown fox jumps over the lazy dog and keeps running far beyond the river bank".split()
    words = [Word(w, round(1.0 + 0.4 * i, 3), round(1.3 + 0.4 * i, 3), 0.9) for i, w in enumerate(said)]
    return Transcript("talk.wav", 30.0, [
        Segment(0.8, 8.0, " ".join(said), words),
        Segment(10.0, 14.0, "no word times came with this one at all", []),
        Segment(20.0, 21.0, "<b> & -->", [Word("<b>", 20.1, 20.3, 0.5), Word("&", 20.4, 20.5, 0.5),
                                         Word("-->", 20.6, 20.9, 0.5)]),
    ], elapsed=1.5)


@pytest.mark.parametrize("width, count", [(42, 2), (16, 1), (10, 3), (1, 1)])
def test_subtitle_lines_keep_to_the_width_and_count_asked_for(width, count):
    transcript = words_transcript()
    options = SubtitleOptions(max_line_width=width, max_line_count=count)
    for parse in (parse_srt, parse_vtt):
        fmt = "srt" if parse is parse_srt else "vtt"
        cues = parse(render(fmt, transcript, subtitles=options))
        check_cues(cues, transcript.duration, options)
    # Nothing lost or reordered; cues start at a word's start and stay within their segment.
    cues = subtitle_cues(transcript, options)
    assert " ".join(" ".join(c.lines) for c in cues) == transcript.text
    assert all(any(s.start <= c.start <= c.end <= s.end for s in transcript.segments) for c in cues)


def test_webvtt_escapes_markup_and_srt_keeps_it():
    transcript = words_transcript()
    assert "&lt;b&gt; &amp; --&gt;" in render("vtt", transcript)
    assert "<b> & -->" in render("srt", transcript, subtitles=SubtitleOptions(80, 2))


def test_json_lists_every_word_with_its_time_and_confidence():
    data = transcript_dict(words_transcript(), "tiny")
    check_transcript_json(data, "talk.wav", 30.0)
    assert data["segments"][0]["words"][1] == {"word": "quick", "start": 1.4, "end": 1.7, "confidence": 0.9}
    assert data["segments"][1]["words"] == [] and data["rtf"] == 0.05


def test_an_interrupted_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.srt"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with AtomicFile(target) as f:
            f.write("half a subtit")
            raise KeyboardInterrupt
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["out.srt"]


def test_bytes_and_text_are_written_whole_over_the_old_file(tmp_path):
    target = tmp_path / "model" / "frontend.npz"
    write_atomic(target, b"\x00\xff")
    assert target.read_bytes() == b"\x00\xff"
    write_atomic(target, "caf\u00e9\r\n")  # UTF-8, newlines as given
    assert target.read_bytes() == "caf\u00e9\r\n".encode() and os.listdir(target.parent) == ["frontend.npz"]


def test_outputs_are_checked_before_any_work(tmp_path):
    two = [Input("a/x.wav", "x"), Input("b/x.wav", "x")]
    with pytest.raises(ConfigError, match="--output-dir"):
        check_outputs(OutputConfig(formats=("srt",)), two)
    with pytest.raises(ConfigError, match="a/x.wav and b/x.wav"):
        check_outputs(OutputConfig(formats=("txt",), output_dir=tmp_path), two)
    check_outputs(OutputConfig(formats=("txt",)), two)  # lines on standard output
    check_outputs(OutputConfig(formats=("jsonl",)), two)
    with pytest.raises(ConfigError):
        SubtitleOptions(max_line_width=0)


# --- the command ------------------------------------------------------------------------------------

def test_help_is_complete(capsys):
    for argv in (["--help"], ["transcribe", "--help"]):
        with pytest.raises(SystemExit) as exit:
            build_parser().parse_args(argv)
        assert exit.value.code == 0
    out = capsys.readouterr().out
    for option in ["--model", "--decode", "--beam", "--ctc-weight", "--device", "--threads", "--batch-size",
                   "--no-speech-threshold", "--format", "--output-dir", "--output", "--max-line-width",
                   "--max-line-count", "--quiet", "--max-segment", *FORMATS]:
        assert option in out, option


def test_the_default_runtime_is_onnx_where_it_can_do_what_was_asked(tiny_model_dir, tmp_path):
    runtime = lambda *options: choose_runtime(build_parser().parse_args(["transcribe", "a.wav", *options]))  # noqa: E731
    assert runtime() == "onnx"  # the default model, decoded as it asks (attention)
    assert runtime("--decode", "attention", "--beam", "3", "--quantize", "int8") == "onnx"
    assert runtime("--decode", "rescore") == "torch"  # a search the ONNX path lacks
    assert runtime("--stream") == "onnx"  # live transcription too
    assert runtime("--device", "cuda") == runtime("--enroll", "me.wav") == runtime("--stream", "--enroll", "me.wav") == "torch"
    assert runtime("--model", str(tiny_model_dir), "--decode", "attention") == "torch"  # not Whisper-shaped
    assert runtime("--model", str(tmp_path / "missing")) == "torch"  # whose loading names the problem
    assert runtime("--runtime", "onnx", "--decode", "rescore") == "onnx"  # asked for: refused by name later


def test_bad_files_are_named_one_line_each_and_the_rest_transcribed(tiny_model_dir, clips, tmp_path, capsys):
    good, words = clips["a.wav"]
    bad = bad_files(tmp_path / "bad", good)
    code = cli_main(["transcribe", str(bad["empty.wav"]), str(good), *map(str, bad.values()),
                     "--model", str(tiny_model_dir)])
    out, err = capsys.readouterr()
    assert code == 1
    assert out == f"{good}\t{words}\n"
    lines = err.strip().split("\n")
    assert len(lines) == len(bad) and "Traceback" not in err
    for path, line in zip(bad.values(), lines):
        assert line.startswith("asr transcribe: error: AudioError: ") and str(path) in line, line
    reasons = dict(zip(bad, lines))
    assert "empty" in reasons["empty.wav"] and "truncated" in reasons["truncated.wav"]
    assert "unreadable after" in reasons["truncated.flac"] and "not a readable audio file" in reasons["notes.wav"]
    assert "no samples" in reasons["zero.wav"] and "NaN" in reasons["nan.wav"]
    assert "sample rate 1 Hz" in reasons["onehz.wav"] and "not found" in reasons["missing.wav"]


def test_any_format_rate_and_channel_count_transcribes(recognizer, tiny_model_dir, clips, capsys):
    paths = [path for path, _ in clips.values()]
    assert cli_main(["transcribe", *map(str, paths), "--model", str(tiny_model_dir), "--threads", "1"]) == 0
    out = capsys.readouterr().out
    # A file too short to cut decodes whole, as the Recognizer decodes it.
    assert out == "".join(f"{path}\t{recognizer.transcribe(path).text}\n" for path in paths)


def test_a_folder_is_walked_recursively_into_every_format(tiny_model_dir, clips, tmp_path, capsys):
    tree = tmp_path / "recordings"
    for name, relative in [("a.wav", "a.wav"), ("b.flac", "day1/b.flac"), ("c.ogg", "day1/late/c.ogg")]:
        (tree / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(clips[name][0], tree / relative)
    (tree / "day1" / "notes.txt").write_text("not audio, not looked at")
    (tree / ".hidden").mkdir()
    shutil.copy(clips["d.mp3"][0], tree / ".hidden" / "d.mp3")
    out_dir, jsonl = tmp_path / "out", tmp_path / "all.jsonl"
    code = cli_main(["transcribe", str(tree), "--model", str(tiny_model_dir), "--format", "all",
                     "--output-dir", str(out_dir), "--output", str(jsonl), "--max-line-width", "20"])
    assert code == 0 and capsys.readouterr().out == ""
    names = ["a", "day1/b", "day1/late/c"]
    written = sorted(str(p.relative_to(out_dir)) for p in out_dir.rglob("*") if p.is_file())
    assert written == sorted(f"{n}.{fmt}" for n in names for fmt in ["txt", "json", "srt", "vtt", "tsv"])
    objects = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [o["audio"] for o in objects] == [str(tree / r) for r in ["a.wav", "day1/b.flac", "day1/late/c.ogg"]]
    for name, data in zip(names, objects):
        duration = data["duration"]
        check_transcript_json(data, data["audio"], duration)
        assert data["model"] == str(tiny_model_dir)
        assert json.loads((out_dir / f"{name}.json").read_text())["segments"] == data["segments"]
        assert (out_dir / f"{name}.txt").read_text() == data["text"] + "\n"
        check_cues(parse_srt((out_dir / f"{name}.srt").read_text()), duration, SubtitleOptions(20, 2))
        check_cues(parse_vtt((out_dir / f"{name}.vtt").read_text()), duration, SubtitleOptions(20, 2))
        check_tsv((out_dir / f"{name}.tsv").read_text(), duration)
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_folder_without_audio_and_clashing_outputs_are_named_errors(tiny_model_dir, clips, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert cli_main(["transcribe", str(tmp_path / "empty"), "--model", str(tiny_model_dir)]) == 1
    err = capsys.readouterr().err
    assert "no audio files" in err and str(tmp_path / "empty") in err and "Traceback" not in err
    (tmp_path / "other").mkdir()
    shutil.copy(clips["a.wav"][0], tmp_path / "other" / "a.wav")
    args = [str(clips["a.wav"][0]), str(tmp_path / "other" / "a.wav"), "--model", str(tiny_model_dir)]
    assert cli_main(["transcribe", *args, "--output-dir", str(tmp_path / "out")]) == 1
    assert "ConfigError" in capsys.readouterr().err and not (tmp_path / "out").exists()
    assert cli_main(["transcribe", *args, "--format", "srt"]) == 1
    assert "--output-dir" in capsys.readouterr().err


def test_bad_options_are_one_named_error_before_any_input_is_read(tiny_model_dir, clips, capsys):
    path = str(clips["a.wav"][0])
    for bad in (["--no-speech-threshold", "2"], ["--batch-size", "0"], ["--max-line-count", "0"],
                ["--max-segment", "0.1"], ["--threads", "0"], ["--device", "cuda:99"]):
        assert cli_main(["transcribe", path, path, "--model", str(tiny_model_dir), *bad]) == 1
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1 and "ConfigError" in err and "Traceback" not in err, (bad, err)


def test_one_input_prints_any_format_and_jsonl_goes_to_standard_output(tiny_model_dir, clips, capsys):
    path, words = clips["a.wav"]
    assert cli_main(["transcribe", str(path), "--model", str(tiny_model_dir), "--format", "srt"]) == 0
    cues = parse_srt(capsys.readouterr().out)
    assert " ".join(" ".join(c.lines) for c in cues) == words
    assert cli_main(["transcribe", str(path), str(clips["b.flac"][0]), "--model", str(tiny_model_dir),
                     "--output", "-"]) == 0
    objects = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [o["audio"] for o in objects] == [str(path), str(clips["b.flac"][0])] and objects[0]["text"] == words


def test_standard_input_is_read_with_a_dash(tiny_model_dir, clips):
    path, words = clips["b.flac"]
    result = subprocess.run([sys.executable, "-m", "asr.cli", "transcribe", "-", "--model", str(tiny_model_dir),
                             "--threads", "1"], input=path.read_bytes(), capture_output=True, timeout=300)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode() == f"-\t{words}\n"


def test_a_progress_bar_is_drawn_on_a_terminal_unless_quiet(tiny_model_dir, clips, monkeypatch):
    paths = [str(clips["a.wav"][0]), str(clips["b.flac"][0])]
    for quiet, drawn in [([], True), (["--quiet"], False)]:
        leader, follower = pty.openpty()
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))  # a terminal 80 wide
        os.set_blocking(leader, False)
        with open(leader, "rb", buffering=0) as screen, open(follower, "w") as terminal:
            monkeypatch.setattr(sys, "stderr", terminal)
            monkeypatch.setattr(sys, "stdout", io.StringIO())
            assert cli_main(["transcribe", *paths, "--model", str(tiny_model_dir), *quiet]) == 0
            terminal.flush()
            shown = (screen.read(1 << 16) or b"").decode()  # None: nothing was written
        assert ("%|" in shown) == drawn, shown


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_m4a_and_video_are_read_through_ffmpeg(recognizer, clips, tmp_path):
    wav, words = clips["a.wav"]
    m4a = tmp_path / "a.m4a"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(wav), "-c:a", "aac", str(m4a)], check=True)
    assert transcribe_long(recognizer, m4a).duration == pytest.approx(len(load_audio(wav)) / SAMPLE_RATE, abs=0.05)
    (tmp_path / "film.mp4").write_text("not a film")
    inputs, _ = find_inputs([str(tmp_path)])
    assert [Path(i.source).name for i in inputs] == ["a.m4a", "film.mp4"]
    with pytest.raises(AudioError, match="film.mp4.*ffmpeg"):
        transcribe_long(recognizer, tmp_path / "film.mp4")
