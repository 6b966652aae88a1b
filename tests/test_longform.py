"""Long recordings through a model that pads every input to a fixed window (the default, Whisper's
30 s): segments are packed into windows, and the windows' words and text go back to their segments."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import jiwer
import numpy as np
import pytest
import soundfile as sf
import torch

import asr
from asr.decoding.result import Word
from asr.longform import LongformConfig, _Window, transcribe_long
from asr.text import normalize
from asr.vad import Span

RATE = 16000


def count_words(text: str) -> int:
    return len(normalize(text).split())


def test_a_window_gives_each_segment_its_words_and_its_text():
    # Three segments of 1.0, 1.5 and 2.0 s joined end to end; the first was said at 10 s, the
    # second at 20 s, the third at 40 s; "$5" is two words once normalised, "--" none.
    spans = [Span(10 * RATE, 11 * RATE), Span(20 * RATE, round(21.5 * RATE)), Span(40 * RATE, 42 * RATE)]
    window = _Window(spans, [np.zeros(s.end - s.start, np.float32) for s in spans])
    words = [Word("good", 0.1, 0.4, 0.9), Word("morning", 0.5, 0.9, 0.9),  # the first segment
             Word("five", 1.2, 1.4, 0.8), Word("dollars", 1.5, 1.9, 0.8),  # the second ...
             Word("please", 2.2, 2.6, 0.7),
             Word("thank", 2.7, 3.2, 0.9), Word("you", 3.3, 3.9, 0.9)]  # ... the third (it starts at 2.5)
    text = "Good morning. $5, please -- thank you!"
    segments = window.segments(text, words, RATE, count_words)
    assert [s.text for s in segments] == ["Good morning.", "$5, please --", "thank you!"]
    assert [(s.start, s.end) for s in segments] == [(10.0, 11.0), (20.0, 21.5), (40.0, 42.0)]
    assert [[w.word for w in s.words] for s in segments] == [["good", "morning"], ["five", "dollars", "please"],
                                                             ["thank", "you"]]
    assert segments[1].words[0] == Word("five", 20.2, 20.4, 0.8)  # 1.2 s into the window: 0.2 s into the second
    assert segments[2].words[1] == Word("you", 40.8, 41.4, 0.9)
    for segment in segments:
        assert all(segment.start <= w.start <= w.end <= segment.end for w in segment.words)


def test_a_window_without_time_stamps_stays_one_segment():
    spans = [Span(0, RATE), Span(3 * RATE, 4 * RATE)]
    window = _Window(spans, [np.zeros(RATE, np.float32)] * 2)
    segments = window.segments(" hello there", [], RATE, count_words)
    assert [(s.start, s.end, s.text, s.words) for s in segments] == [(0.0, 4.0, "hello there", [])]
    assert window.segments(" ", [], RATE, count_words) == []


@pytest.fixture(scope="module")
def recognizer():
    torch.set_num_threads(2)
    return asr.load_model()


@pytest.fixture(scope="module")
def sentences(data_dir, tmp_path_factory) -> tuple[Path, list[str]]:
    """About a minute: SpeechBrain's and LibriSpeech's sample sentences, each after 1.2 s of silence."""
    rows = []
    for corpus in ("speechbrain_asr", "librispeech_mini"):
        folder = data_dir / "speech" / corpus
        rows += [(folder / r["audio"], r["text"]) for r in map(json.loads, (folder / "manifest.jsonl").read_text().splitlines())]
    pause = np.zeros(round(1.2 * RATE), np.float32)
    audio = np.concatenate([np.concatenate([pause, asr.audio.load_audio(path, RATE)]) for path, _ in rows] + [pause])
    path = tmp_path_factory.mktemp("sentences") / "sentences.wav"
    sf.write(path, audio, RATE, subtype="PCM_16")
    return path, [text for _, text in rows]


@pytest.mark.slow
def test_packed_segments_decode_in_fewer_windows_and_lose_nothing(recognizer, sentences, monkeypatch):
    path, texts = sentences
    decoded: list[int] = []  # samples of each input the model decoded
    batch = recognizer.transcribe_batch

    def counting(audios, *args, **kwargs):
        decoded.extend(len(a) for a in audios)
        return batch(audios, *args, **kwargs)

    monkeypatch.setattr(recognizer, "transcribe_batch", counting)
    packed = transcribe_long(recognizer, path)
    windows, decoded[:] = list(decoded), []
    apart = transcribe_long(recognizer, path, config=LongformConfig(pack_segments=False))

    assert len(decoded) >= len(texts) and len(windows) <= len(decoded) / 3
    assert max(windows) <= 2999 * 160  # every window fits the model's 3000 frames
    # The same segments (the detector's), each with its own words, in order.
    assert [s.start for s in packed.segments] == [s.start for s in apart.segments]
    for segment in packed.segments:
        assert segment.words and all(segment.start <= w.start <= w.end <= segment.end for w in segment.words)
        assert [w.word for w in segment.words] == segment.text.split(), segment  # as the text writes them
    reference = normalize(" ".join(texts))
    packed_wer, apart_wer = (jiwer.wer(reference, normalize(t.text)) for t in (packed, apart))
    assert packed_wer <= apart_wer + 0.03, (packed_wer, apart_wer)
    assert packed_wer < 0.2, packed.text


@pytest.mark.slow
def test_the_recording_is_read_and_cut_on_while_a_batch_decodes(recognizer, sentences, monkeypatch):
    path, texts = sentences
    batch = recognizer.transcribe_batch
    decoding = threading.Event()
    seen_while_decoding: list[bool] = []  # at each block read: was a batch decoding meanwhile?

    def marking(audios, *args, **kwargs):
        decoding.set()
        try:
            return batch(audios, *args, **kwargs)
        finally:
            decoding.clear()

    monkeypatch.setattr(recognizer, "transcribe_batch", marking)
    config = LongformConfig(batch_size=1, block_seconds=1.0)
    transcript = transcribe_long(recognizer, path, config=config,
                                 on_progress=lambda seconds: seen_while_decoding.append(decoding.is_set()))
    assert any(seen_while_decoding) and not all(seen_while_decoding)
    assert jiwer.wer(normalize(" ".join(texts)), normalize(transcript.text)) < 0.2  # nothing lost or reordered
