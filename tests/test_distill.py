"""The distillation recipe's pieces (recipes/whisper_ctc/distill.py): windows, the loss, what trains."""

import copy
import sys

import numpy as np
import pytest
import torch

import asr
from asr.audio import load_audio
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "recipes" / "whisper_ctc"))
import distill  # noqa: E402
import speech_rate  # noqa: E402
from asr.data.manifest import Utterance  # noqa: E402
from asr.decoding.options import SHORT_WINDOW_FRAMES, DecodingOptions  # noqa: E402
from asr.model_folder import read_description, resolve_model  # noqa: E402

CLIPS = [str(p) for p in sorted((REPO / "audio_samples").glob("*.flac"))]


def test_windows_join_whole_utterances_with_pauses_and_stay_under_28_s():
    lengths = {len(load_audio(p)) for p in CLIPS}
    for step in range(20):
        window = distill.window(CLIPS, np.random.default_rng([0, step]))
        assert 0 < len(window) <= distill.MAX_WINDOW_SECONDS * distill.SAMPLE_RATE
        assert len(window) >= min(lengths)  # at least one whole utterance
    again = distill.window(CLIPS, np.random.default_rng([0, 3]))
    assert np.array_equal(again, distill.window(CLIPS, np.random.default_rng([0, 3])))  # a step's data is fixed
    for step in range(20):  # the short window's: what decoding pads to 10 s, with its margin
        window = distill.window(CLIPS, np.random.default_rng([1, step]), distill.MAX_SHORT_WINDOW_SECONDS)
        frames = len(window) // 160
        assert 0 < len(window) <= distill.MAX_SHORT_WINDOW_SECONDS * distill.SAMPLE_RATE
        assert DecodingOptions(pad_to_frames=3000, short_pad_to_frames=SHORT_WINDOW_FRAMES).window_frames(
            frames) == SHORT_WINDOW_FRAMES


@pytest.fixture(scope="module")
def teacher():
    return asr.load_model().model


def test_the_teacher_as_its_own_student_has_no_loss_on_clean_audio_and_some_in_noise(teacher):
    clean = load_audio(REPO / "audio_samples" / "LJ001-0002.flac")
    noisy = load_audio(REPO / "audio_samples" / "noisy" / "LJ001-0002__babble__snr0.flac")
    audio, lengths = distill.batch_of([clean])
    taught = distill.teach(teacher, audio, lengths)
    assert taught[-1][0]  # the teacher's own transcript is what the student is scored on
    with torch.no_grad():
        loss, kl, mse = distill.student_loss(teacher, audio, lengths, taught, mse_weight=1.0)
        assert kl == pytest.approx(0.0, abs=1e-4) and mse == pytest.approx(0.0, abs=1e-6)
        noisy_audio, _ = distill.batch_of([noisy[: len(clean)]])
        _, kl_noisy, mse_noisy = distill.student_loss(teacher, noisy_audio, lengths, taught, mse_weight=1.0)
        # In the short window the same clean audio is scored against the teacher's 30 s reading of it,
        # which the unchanged model does not give there: that is what a student learns.
        _, kl_short, mse_short = distill.student_loss(teacher, audio, lengths, taught, mse_weight=1.0,
                                                      pad_to_frames=SHORT_WINDOW_FRAMES)
    assert kl_noisy > 0.01 and mse_noisy > 0.01
    assert mse_short > 0.01 and kl_short > 1e-3


def test_a_silent_row_is_taught_to_end_at_once_whatever_the_teacher_hears(teacher):
    speech = load_audio(REPO / "audio_samples" / "LJ001-0002.flac")
    audio, lengths = distill.batch_of([speech, np.zeros(len(speech), np.float32)])
    spoken = distill.teach(teacher, audio, lengths)
    taught = distill.teach(teacher, audio, lengths, silent=[0, 1])
    _, _, _, valid, log_probs, transcripts = taught
    assert spoken[-1][0] and transcripts == [[], []]  # the speech row too: silent means no label
    eos = teacher.config.eos_id
    for row in range(2):
        assert int(valid[row].sum()) == 1  # one output: the end
        assert log_probs[row][valid[row]].argmax(-1).tolist() == [eos]
        assert log_probs[row][valid[row]][0, eos].exp() > 0.999
    with torch.no_grad():  # the student is scored on how surely it ends: speech makes that cost
        _, kl_speech, _ = distill.student_loss(teacher, audio[:1], lengths[:1],
                                               tuple(t[:1] for t in taught[:5]) + (transcripts[:1],), 1.0)
    assert kl_speech > 1.0


def test_only_the_encoder_trains(teacher):
    student = copy.deepcopy(teacher)
    params = distill.trainable(student)
    assert {id(p) for p in params} == {id(p) for p in student.encoder.parameters()}
    assert not any(p.requires_grad for p in student.decoder.parameters())
    assert not any(p.requires_grad for p in student.ctc.parameters())
    with_cross = distill.trainable(student, cross_attention=True)
    cross = {id(p) for layer in student.decoder.layers for p in layer.cross_attn.parameters()}
    assert cross < {id(p) for p in with_cross} and len(with_cross) > len(params)
    assert not any(p.requires_grad for p in student.decoder.embed.parameters())
    assert not any(p.requires_grad for layer in student.decoder.layers for p in layer.self_attn.parameters())


def test_the_token_cap_counts_tokens_as_the_decoder_writes_them_and_leaves_room_over_the_fastest_speech():
    _, _, tokenizer = read_description(resolve_model("whisper-tiny-ctc"))
    shouted = Utterance("a", "/data/speech/ocean/a.flac", "WE CALL IT BEAR", 2.0)
    written = Utterance("b", "/data/speech/ocean/b.flac", "We call it bear", 2.0)
    short = Utterance("c", "/data/speech/lj/c.flac", "We call it bear", 0.5)  # counted over one second
    rates = speech_rate.tokens_per_second([shouted, written, short], tokenizer)
    assert sorted(rates) == ["lj", "ocean"]
    assert rates["ocean"][0] == rates["ocean"][1] == len(tokenizer.encode(" We call it bear")) / 2.0
    assert rates["lj"][0] == 2 * rates["ocean"][0]
    cap = speech_rate.token_cap(rates)
    assert cap == float(int(cap)) and rates["lj"][0] * speech_rate.MARGIN <= cap < rates["lj"][0] * speech_rate.MARGIN + 1
