"""Live transcription: the streaming recognizer, and `asr transcribe --stream` on a pipe."""

import io
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

import asr
from asr.audio import load_audio
from asr.cli import main
from asr.errors import AudioError, ConfigError
from asr.live import Final, LiveConfig, LiveRecognizer, Partial
from asr.vad import VadConfig
from tests.conftest import REPO, settled_resident_mb

RATE = 16000
CLIPS = ("audio_samples/LJ001-0004.flac", "audio_samples/spk1_snt1.flac")
NO_PARTIALS = LiveConfig(partial_every_seconds=1e6)


def bare(text: str) -> str:
    return re.sub(r"[^a-z' ]", "", text.lower()).strip()


@pytest.fixture(scope="module")
def recognizer():
    return asr.load_model()


@pytest.fixture(scope="module")
def talk():
    """Two read sentences by two speakers, with pauses before, between and after them."""
    silence = np.zeros(RATE, np.float32)
    clips = [load_audio(path, RATE) for path in CLIPS]
    return np.concatenate([silence[: RATE // 2], clips[0], silence, clips[1], silence]), clips


def run(live: LiveRecognizer, samples: np.ndarray, chunk: int) -> list:
    events = []
    for start in range(0, len(samples), chunk):
        events += live.feed(samples[start : start + chunk])
    return events + live.finish()


def test_finals_are_the_offline_text_whatever_the_chunk_size(recognizer, talk):
    samples, clips = talk
    offline = [recognizer.transcribe(clip).text for clip in clips]
    finals, partials = {}, {}
    for seconds in (0.01, 0.37, 2.0):
        events = run(LiveRecognizer(recognizer), samples, round(seconds * RATE))
        finals[seconds] = [(e.text, e.start, e.end) for e in events if isinstance(e, Final)]
        partials[seconds] = [(e.text, e.stable, e.end) for e in events if isinstance(e, Partial)]
    # Partials are decoded at the same points of the stream whatever the chunks, so the words they
    # commit, and the finals that continue them, are the same too.
    assert finals[0.01] == finals[0.37] == finals[2.0]
    assert partials[0.01] == partials[0.37] == partials[2.0] and len(partials[0.01]) >= 8
    assert [bare(text) for text, _, _ in finals[0.01]] == [bare(text) for text in offline]
    # Each final lies where its sentence was spoken, in stream time.
    first_end = (RATE // 2 + len(clips[0])) / RATE
    (_, start1, end1), (_, start2, end2) = finals[0.01]
    assert 0.0 <= start1 < 0.8 and first_end - 0.5 < end1 <= first_end + 0.5 < start2 < end2 <= len(samples) / RATE


def test_partials_fill_in_while_the_sentence_is_spoken(recognizer, talk):
    samples, clips = talk
    first = np.concatenate([np.zeros(RATE // 2, np.float32), clips[0], np.zeros(RATE, np.float32)])
    events = run(LiveRecognizer(recognizer), first, RATE // 10)
    partials = [e for e in events if isinstance(e, Partial)]
    finals = [e for e in events if isinstance(e, Final)]
    assert len(finals) == 1 and events[-1] is finals[0]
    spoken_until = (RATE // 2 + len(clips[0])) / RATE
    assert len([p for p in partials if p.end < spoken_until]) >= 4  # every 0.5 s while speaking
    assert all(p.text.startswith(p.stable) for p in partials)
    # Committed words stay: each partial's stable text extends the one before. The final decodes the
    # sentence anew; on this clean one it keeps them.
    assert all(b.stable.startswith(a.stable) for a, b in zip(partials, partials[1:]))
    assert finals[0].text.startswith(partials[-1].stable) and partials[-1].stable
    assert [p.end for p in partials] == sorted(p.end for p in partials)
    # The words come in as they are spoken: the last partials hold most of the final's words.
    final_words = bare(finals[0].text).split()
    assert len(bare(partials[0].text).split()) < len(final_words) / 2
    last = bare(partials[-1].text).split()
    assert len(set(last) & set(final_words)) >= 0.8 * len(final_words)


class PartialsOfOtherAudio:
    """The recognizer, but every partial decodes the same stretch of another recording: partials
    that agree, and commit, on words that the stream's own audio does not hold."""

    def __init__(self, recognizer, other: np.ndarray):
        self.recognizer, self.other = recognizer, other

    def transcribe(self, audio, options):
        return self.recognizer.transcribe(self.other[: len(audio)], options)


def test_the_final_decodes_its_utterance_anew_whatever_the_partials_committed(recognizer, talk):
    """Committed words are the partials' reading of the first second or two; the final hears the
    whole utterance, and gives what offline decoding of its audio gives, not their continuation."""
    _, clips = talk
    samples = np.concatenate([np.zeros(RATE // 2, np.float32), clips[0], np.zeros(RATE, np.float32)])
    live = LiveRecognizer(recognizer)
    other = np.concatenate([np.zeros(RATE // 2, np.float32), clips[1]])
    live._partial_recognizer = PartialsOfOtherAudio(live._partial_recognizer, other)
    events = run(live, samples, RATE // 10)
    stable = [e.stable for e in events if isinstance(e, Partial) and e.stable]
    (final,) = [e for e in events if isinstance(e, Final)]
    assert stable and not bare(final.text).startswith(bare(stable[-1]))  # the other sentence's words, committed
    assert bare(final.text) == bare(recognizer.transcribe(final.audio).text) == bare(recognizer.transcribe(clips[0]).text)


def test_an_enrolled_voice_is_followed_live_with_partials_searched_alike_and_finals_as_offline(recognizer, talk):
    _, clips = talk
    speaker = recognizer.enroll(REPO / "audio_samples" / "LJ001-0002.flac")  # another clip of LJ's reader
    live = LiveRecognizer(recognizer, LiveConfig(partial_every_seconds=1.0), speaker=speaker)
    # Partials continue committed words, which only the attention search forces; the final searches
    # in the model's enrolled mode, as offline decoding of an enrolled voice does.
    assert live.partial_options.searched().mode == "attention" != live.final_options.searched().mode
    samples = np.concatenate([np.zeros(RATE // 2, np.float32), clips[0], np.zeros(RATE, np.float32)])
    events = run(live, samples, RATE // 5)
    (final,) = [e for e in events if isinstance(e, Final)]
    assert [e for e in events if isinstance(e, Partial) and e.text]
    assert final.text == recognizer.transcribe(final.audio, speaker=speaker).text
    assert bare(final.text) == bare(recognizer.transcribe(clips[0], speaker=speaker).text)


def test_a_final_keeps_the_stable_words_only_where_they_fit_its_audio_as_well(recognizer, talk):
    """Where the final's own reading revises the committed words, the utterance is decoded once more
    continuing them, and the CTC head judges: words of another recording fit this audio far worse,
    so the final is its own reading; with a margin that forgives any misfit, it keeps them; with
    None, there is no second decode."""
    _, clips = talk
    samples = np.concatenate([np.zeros(RATE // 2, np.float32), clips[0], np.zeros(RATE, np.float32)])
    other = np.concatenate([np.zeros(RATE // 2, np.float32), clips[1]])
    offline = bare(recognizer.transcribe(clips[0]).text)
    finals, decodes = {}, {}
    for margin in (0.0, float("inf"), None):
        live = LiveRecognizer(recognizer, LiveConfig(keep_stable_margin=margin))
        live._partial_recognizer = PartialsOfOtherAudio(live._partial_recognizer, other)
        decodes[margin] = FinalDecodes(live).heard_at
        events = run(live, samples, RATE // 10)
        stable = [e.stable for e in events if isinstance(e, Partial) and e.stable][-1]
        (final,) = [e for e in events if isinstance(e, Final)]
        finals[margin] = bare(final.text)
        assert not offline.startswith(bare(stable))  # the other sentence's words, committed
    assert finals[0.0] == finals[None] == offline
    assert finals[float("inf")].startswith(bare(stable))
    assert len(decodes[0.0]) == len(decodes[float("inf")]) == 2 * len(decodes[None])


class FinalDecodes:
    """The recognizer, noting how much of the stream had been fed at each decode of a final."""

    def __init__(self, live: LiveRecognizer):
        self.recognizer, self.live, self.heard_at = live.recognizer, live, []
        live.recognizer = self

    def transcribe(self, audio, options):
        self.heard_at.append(self.live.heard)
        return self.recognizer.transcribe(audio, options)

    def __getattr__(self, name):
        return getattr(self.recognizer, name)


def test_a_final_is_decoded_ahead_once_its_pause_has_outlasted_the_hangover(recognizer, talk):
    """The final is decoded as soon as the detector knows where the utterance ends if the pause
    goes on, and given out when it is sure, a pause's min_silence - hangover later; the partials
    stop in the meantime. A pause within the utterance that ends before then costs a decode, not
    a word: the final is what offline decoding of the whole sentence gives."""
    _, clips = talk
    half = len(clips[1]) // 2
    for pause in (0.0, 0.35):
        samples = np.concatenate([np.zeros(RATE // 2, np.float32), clips[1][:half], np.zeros(round(pause * RATE), np.float32),
                                  clips[1][half:], np.zeros(RATE, np.float32)])
        live = LiveRecognizer(recognizer)
        decodes = FinalDecodes(live)
        events, closed_at = [], None
        for start in range(0, len(samples), RATE // 100):
            out = live.feed(samples[start : start + RATE // 100])
            if any(isinstance(e, Final) for e in out):
                closed_at = live.heard
            events += out
        (final,) = [e for e in events if isinstance(e, Final)]
        vad = live.config.vad
        # The decode that gave the final came within a chunk of the span's end, the final at the
        # detector's certainty, and no partial came between them.
        assert final.end <= decodes.heard_at[-1] <= final.end + 0.01 + 0.032
        assert closed_at == pytest.approx(final.end + vad.min_silence_seconds - vad.hangover_seconds, abs=0.045)
        assert not [e for e in events if isinstance(e, Partial) and e.end > final.end]
        assert bare(final.text) == bare(recognizer.transcribe(final.audio).text)
        assert len(decodes.heard_at) == (1 if pause == 0.0 else 2)  # the pause's decode, for nothing
    assert bare(final.text) == bare(recognizer.transcribe(clips[1]).text)


def test_a_word_is_stable_only_once_another_has_begun_after_it(recognizer, talk):
    """Partials heard in a long pause all agree on every word; the last of them stays open all the
    same, since the final may still extend it ("I" -> "I'm")."""
    _, clips = talk
    samples = np.concatenate([np.zeros(RATE // 2, np.float32), clips[1], np.zeros(3 * RATE, np.float32)])
    # A hangover as long as the pause: the final is not decoded ahead, which would stop the partials.
    config = LiveConfig(vad=VadConfig(min_silence_seconds=2.0, hangover_seconds=2.0))
    partials = [e for e in run(LiveRecognizer(recognizer, config), samples, RATE // 10) if isinstance(e, Partial)]
    in_the_pause = [p for p in partials if p.end > (RATE // 2 + len(clips[1])) / RATE + 1.0]
    assert len(in_the_pause) >= 3 and len({p.text for p in in_the_pause}) == 1
    words = in_the_pause[-1].text.split()
    assert in_the_pause[-1].stable == " ".join(words[:-1])
    assert all(len(p.stable.split()) < len(p.text.split()) for p in partials)


def test_a_final_is_decoded_after_the_utterances_before_it(recognizer, talk):
    """With context, the second sentence's final decodes both sentences, the first one's words
    forced, and gives the second's words alone, timed where they were spoken; without, it decodes
    its own audio only, with the quiet before it: lead_seconds of it, back to the stream's start or
    the first sentence's end."""
    samples, clips = talk
    lead = LiveConfig().lead_seconds
    alone = [e for e in run(LiveRecognizer(recognizer, LiveConfig(final_context_seconds=0)), samples, RATE // 10)
             if isinstance(e, Final)]
    finals = [e for e in run(LiveRecognizer(recognizer), samples, RATE // 10) if isinstance(e, Final)]
    assert [f.context for f in alone] == pytest.approx([min(lead, alone[0].start),
                                                        min(lead, alone[1].start - alone[0].end)], abs=1e-3)
    assert 0 < alone[1].context and len(alone[1].audio) == round((alone[1].end - alone[1].start + alone[1].context) * RATE)
    bare_alone = [e for e in run(LiveRecognizer(recognizer, LiveConfig(final_context_seconds=0, lead_seconds=0)),
                                 samples, RATE // 10) if isinstance(e, Final)]
    assert [f.context for f in bare_alone] == [0.0, 0.0]
    first, second = finals
    first_audio = first.start - first.context
    assert first.context == alone[0].context and second.context == pytest.approx(second.start - first_audio, abs=1e-3)
    assert len(second.audio) == round((second.end - first_audio) * RATE)
    assert bare(second.result.text) == bare(first.text + " " + second.text)
    assert bare(second.text) == bare(recognizer.transcribe(clips[1]).text) and second.words
    assert all(second.start - 0.3 <= w.start < w.end <= second.end for w in second.words)
    with pytest.raises(ConfigError):
        LiveConfig(final_context_seconds=-1)
    with pytest.raises(ConfigError):
        LiveConfig(lead_seconds=-0.1)


def test_after_a_final_without_words_the_next_utterance_is_decoded_from_where_that_one_began(recognizer, talk):
    """An utterance the no-speech gates silence (here every one: no decode passes a threshold of 1)
    is read again with the next, as offline decoding hears the two: the second final's audio
    begins where the first's did, and it stands for both. Not so without context, nor once the
    wordless one lies more than final_context_seconds back."""
    samples, clips = talk
    deaf = dict(no_speech_threshold=1.0)
    first, second = [e for e in run(LiveRecognizer(recognizer, **deaf), samples, RATE // 10) if isinstance(e, Final)]
    assert first.text == second.text == "" and not first.words
    first_audio = first.start - first.context
    assert second.start == first.start and second.context == first.context
    assert len(second.audio) == round((second.end - first_audio) * RATE)
    assert second.end > first.end + len(clips[1]) / RATE - 0.5

    for config in (LiveConfig(final_context_seconds=0), LiveConfig(final_context_seconds=0.5)):
        alone = [e for e in run(LiveRecognizer(recognizer, config, **deaf), samples, RATE // 10) if isinstance(e, Final)]
        assert (alone[0].start, alone[0].end, alone[1].end) == (first.start, first.end, second.end)
        assert alone[0].end < alone[1].start < alone[0].end + 1.0  # the pause between the sentences
        assert len(alone[1].audio) < len(second.audio) - len(clips[0])


def test_memory_stays_bounded_on_speech_without_pauses(recognizer):
    clip = load_audio(CLIPS[0], RATE)
    speech = np.concatenate([clip[int(0.3 * RATE) : -int(0.3 * RATE)]] * 16)  # about 70 s, no pause of 0.5 s
    config = LiveConfig(vad=VadConfig(max_segment_seconds=20.0), partial_every_seconds=1e6)
    live = LiveRecognizer(recognizer, config)
    held, finals = [], []
    for start in range(0, len(speech), RATE):
        finals += [e for e in live.feed(speech[start : start + RATE]) if isinstance(e, Final)]
        held.append(live._audio.end - live._audio.start)
    finals += live.finish()
    assert len(finals) >= 3  # cut at 20 s at most
    assert all(f.end - f.start <= 20.0 + 1e-3 for f in finals)
    assert max(held) <= (config.final_context_seconds + 20.0 + 2.5) * RATE  # earlier finals' context, one utterance


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads the resident size from Linux /proc")
def test_an_hour_of_audio_keeps_memory_flat(recognizer):
    """An hour of quiet noise with a sentence every six minutes, partials on: every sentence comes out,
    the audio held stays within one utterance, and the resident size does not grow after the first."""
    sentence = load_audio(CLIPS[1], RATE)
    offline = bare(recognizer.transcribe(sentence).text)
    rng = np.random.default_rng(0)
    live = LiveRecognizer(recognizer)
    finals, held, memory, speaking = [], [], {}, np.zeros(0, np.float32)
    for second in range(3600):
        chunk = 0.003 * rng.standard_normal(RATE).astype(np.float32)
        if second % 360 == 180:
            speaking = sentence
        said, speaking = speaking[:RATE], speaking[RATE:]
        chunk[: len(said)] += said
        finals += [e for e in live.feed(chunk) if isinstance(e, Final)]
        held.append(live._audio.end - live._audio.start)
        if second % 360 == 359:
            memory[second // 360] = settled_resident_mb()
    finals += live.finish()
    assert [bare(f.text) for f in finals] == [offline] * 10, [f.text for f in finals]
    assert max(held) <= (LiveConfig().final_context_seconds + 5) * RATE  # a sentence, and one before it as context
    # A leak accumulates, so the last reading is compared with the one after the second sentence.
    assert memory[9] - memory[1] < 30, memory  # MB


def test_other_sample_rates_are_resampled_and_bad_chunks_refused(recognizer):
    clip, rate = sf.read(CLIPS[1], dtype="float32")
    assert rate != 8000
    samples = load_audio(CLIPS[1], 8000)
    padded = np.concatenate([np.zeros(4000, np.float32), samples, np.zeros(8000, np.float32)])
    live = LiveRecognizer(recognizer, NO_PARTIALS, sample_rate=8000)
    finals = [e for e in run(live, padded, 800) if isinstance(e, Final)]
    assert bare(" ".join(f.text for f in finals)) == bare(recognizer.transcribe(CLIPS[1]).text)
    live = LiveRecognizer(recognizer, NO_PARTIALS)
    with pytest.raises(AudioError, match="NaN"):
        live.feed(np.array([0.0, np.nan], np.float32))
    assert live.feed(np.zeros(0, np.float32)) == []  # the stream goes on after a refused chunk
    assert live.finish() == []
    with pytest.raises(RuntimeError, match="finished"):
        live.feed(np.zeros(160, np.float32))
    with pytest.raises(ConfigError):
        LiveConfig(partial_every_seconds=0)


# --- asr transcribe --stream ----------------------------------------------------------------------

def wav_bytes(samples: np.ndarray, rate: int, subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format="WAV", subtype=subtype)
    return buffer.getvalue()


def run_cli(monkeypatch, capsys, data: bytes, *args: str) -> tuple[int, str, str]:
    stdin = io.TextIOWrapper(io.BufferedReader(io.BytesIO(data)))
    monkeypatch.setattr(sys, "stdin", stdin)
    code = main(["transcribe", "-", "--stream", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_streams_wav_and_raw_pcm_from_standard_input(monkeypatch, capsys, recognizer):
    samples = np.concatenate([load_audio(CLIPS[1], RATE), np.zeros(RATE, np.float32)])
    offline = bare(recognizer.transcribe(CLIPS[1]).text)
    code, out, err = run_cli(monkeypatch, capsys, wav_bytes(samples, RATE))
    assert code == 0, err
    lines = [line.split("\t") for line in out.splitlines()]
    assert {kind for kind, *_ in lines} == {"partial", "final"} and lines[-1][0] == "final"
    assert bare(lines[-1][3]) == offline
    raw = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
    code, out, err = run_cli(monkeypatch, capsys, raw, "--format", "jsonl")
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert events[-1]["type"] == "final" and bare(events[-1]["text"]) == offline
    assert events[-1]["words"] and all(w["start"] <= w["end"] for w in events[-1]["words"])


def test_streaming_on_onnx_runtime_gives_the_offline_finals_and_the_command_imports_no_torch(recognizer, talk):
    from asr.runtime.recognizer import load_onnx

    samples, clips = talk
    events = run(LiveRecognizer(load_onnx(threads=2)), samples, round(0.37 * RATE))
    finals = [bare(e.text) for e in events if isinstance(e, Final)]
    assert finals == [bare(recognizer.transcribe(clip).text) for clip in clips]
    assert len([e for e in events if isinstance(e, Partial)]) >= 8
    code = ("import sys; from asr.cli import main; code = main(['transcribe', '-', '--stream']); "
            "print(code, sorted(m for m in ('torch', 'torchaudio') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], input=wav_bytes(samples, RATE), capture_output=True, check=True,
                         cwd=REPO)  # the bundled model's graphs: built above, in the tests' cache
    lines = out.stdout.decode().strip().splitlines()
    assert lines[-1] == "0 []"
    assert [bare(line.split("\t")[3]) for line in lines[:-1] if line.startswith("final")] == finals


def test_cli_names_a_stream_it_cannot_read(monkeypatch, capsys):
    flac = open(CLIPS[1], "rb").read()
    code, out, err = run_cli(monkeypatch, capsys, flac)
    assert code == 1 and out == ""
    assert "FLAC" in err and "leave out --stream" in err and "Traceback" not in err
    code, out, err = run_cli(monkeypatch, capsys, b"RIFF\x10\x00\x00\x00WAVEfmt ")
    assert code == 1 and "header breaks off" in err
    code, _, err = run_cli(monkeypatch, capsys, b"", "--format", "srt")
    assert code == 1 and "txt or jsonl" in err
