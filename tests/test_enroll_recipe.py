"""The adapters' training mixtures (recipes/whisper_ctc/enroll.py): who is heard, at what level, and
what the label hears."""

import importlib.util
import sys

import numpy as np
import pytest

from asr.data.augment import active_speech_power
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "recipes" / "whisper_ctc"))
import enroll  # noqa: E402

SAMPLES = REPO / "audio_samples"


def test_a_reader_with_one_long_recording_gives_a_target_part_and_an_enrollment_part(data_dir):
    speakers = enroll.training_speakers(data_dir, dev_speakers=10, seed=0)
    split = [p for key, p in speakers.items() if key.startswith("librispeech_untranscribed/") and len(p) == 2
             and p[0].audio == p[1].audio]
    assert split and all(a.end == b.start > 0 and a.start == 0 and b.end == 0 for a, b in split)
    assert not any(key.startswith("speechocean762/") and len(p) < 2 for key, p in speakers.items())
    keys = {key.split("/")[0] for key in speakers}
    assert keys == {"speechocean762", "ljspeech_subset", "fsdd", "librispeech_untranscribed"}


def test_mixtures_put_other_voices_over_the_target_and_the_label_hears_the_target_alone():
    speakers = {"lj": [enroll.Piece(str(SAMPLES / "LJ001-0002.flac")), enroll.Piece(str(SAMPLES / "LJ001-0004.flac"))],
                "reader": [enroll.Piece(str(SAMPLES / "1089-134686-0001.flac"))],
                "speaker1": [enroll.Piece(str(SAMPLES / "spk1_snt1.flac"))],
                "jackson": [enroll.Piece(str(SAMPLES / "7_jackson_0.flac"))]}  # up to three others at once
    embeddings = {p: np.eye(256, dtype=np.float32)[i] for i, p in enumerate(p for ps in speakers.values() for p in ps)}
    no_noise = lambda audio, rng: audio  # noqa: E731
    with_others = absent = 0
    for step in range(60):
        window = enroll.mixture(speakers, ["lj"], embeddings, no_noise, np.random.default_rng(step), target_absent=0.1)
        clean, heard = window.clean, window.heard
        assert clean.shape == heard.shape and clean.dtype == heard.dtype == np.float32
        assert np.isclose(np.linalg.norm(window.enrollment), 1.0)
        assert window.enrollment[2:].sum() == 0  # only LJ's own pieces enroll LJ
        assert np.max(np.abs(heard)) <= 0.99 + 1e-6
        if window.target_absent:
            absent += 1
            assert not clean.any() and active_speech_power(heard) > 0  # the others alone
            continue
        interference = heard - clean
        if np.any(np.abs(interference) > 1e-6):
            with_others += 1
            sir = 10 * np.log10(enroll.speech_power(clean) / enroll.speech_power(interference))
            assert enroll.SIR_DB[0] - 0.5 <= sir <= enroll.SIR_DB[1] + 0.5, sir
        assert active_speech_power(clean) > 0
    assert 1 <= absent <= 10  # about 10 % of windows: the target enrolled but silent
    assert with_others >= 0.7 * (60 - absent) and with_others < 60 - absent  # about 15 % the target alone
    by_default = [enroll.mixture(speakers, ["lj"], embeddings, no_noise, np.random.default_rng(step))
                  for step in range(60)]
    assert not any(w.target_absent for w in by_default)  # as the shipped rounds drew: the target in every window


def test_the_development_mixtures_use_speakers_neither_the_adapters_nor_the_test_mixtures_use(data_dir):
    # By path: recipes/whisper_ctc has a prepare.py of its own, which may already be imported as "prepare".
    spec = importlib.util.spec_from_file_location("target_speaker_prepare",
                                                  REPO / "recipes" / "target_speaker" / "prepare.py")
    prepare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prepare)
    dev = prepare.split_speakers(data_dir, "dev")
    test = prepare.split_speakers(data_dir, "test")
    trained = {key.split("/", 1)[1] for key in enroll.training_speakers(data_dir, enroll.DEV_SPEAKERS, seed=0)
               if key.startswith("speechocean762/")}
    assert len(dev) == enroll.DEV_SPEAKERS and len(test) == 125
    assert not set(dev) & trained and not set(dev) & set(test) and not set(test) & trained
    assert all(len(utterances) > 2 * prepare.ENROLL_UTTERANCES for utterances in dev.values())


def test_the_exported_model_holds_the_trained_adapters_and_searches_enrolled_voices_as_chosen(tmp_path):
    import argparse

    import torch

    from asr.checkpoint import load_model_dir, save_checkpoint
    from asr.config import SpeakerConfig
    from asr.model_folder import DEFAULT_MODEL, resolve_model
    from asr.recognizer import load_model

    folder = resolve_model(DEFAULT_MODEL)
    default, tokenizer, meta = load_model_dir(folder)
    student = enroll.with_adapters(default, SpeakerConfig())
    adapters = student.encoder.speaker_adapters.state_dict()
    adapters = {k: v + 0.01 for k, v in adapters.items()}  # a "trained" step away from the shipped ones
    save_checkpoint({"adapters": adapters, "step": 1}, tmp_path / "exp" / "checkpoints" / "step_000001.pt")
    args = argparse.Namespace(model=str(folder), export=str(tmp_path / "model"))
    enroll.export(args, student, tokenizer, meta, tmp_path / "exp")
    exported = load_model(tmp_path / "model")
    assert exported.default_options.enrolled_mode == enroll.ENROLLED_MODE
    assert exported.default_options.mode == meta["decoding"]["mode"]  # without enrollment, searched as before
    got = exported.model.encoder.speaker_adapters.state_dict()
    assert all(torch.equal(got[k], v.half().float()) for k, v in adapters.items())  # stored as float16


def test_each_mixture_is_read_in_the_window_decoding_reads_it_in():
    """A model with a short window (DecodingOptions.short_pad_to_frames) learns its adapters there for
    short mixtures and in the 30 s window for long ones; without one, the batch is read whole."""
    import torch

    from asr.audio import load_audio
    from asr.checkpoint import load_model_dir
    from asr.config import SpeakerConfig
    from asr.decoding.options import DecodingOptions
    from asr.model_folder import DEFAULT_MODEL, resolve_model
    from distill import batch_of, student_loss, teach

    default, _, _ = load_model_dir(resolve_model(DEFAULT_MODEL))
    student = enroll.with_adapters(default, SpeakerConfig())
    short = load_audio(str(SAMPLES / "LJ001-0002.flac"), enroll.SAMPLE_RATE)
    long = np.concatenate([load_audio(str(SAMPLES / name), enroll.SAMPLE_RATE)
                           for name in ("LJ001-0004.flac", "1089-134686-0001.flac", "LJ001-0002.flac")])
    assert len(short) < 8 * enroll.SAMPLE_RATE < 10 * enroll.SAMPLE_RATE < len(long)
    audio, lengths = batch_of([short, long])
    speaker = torch.nn.functional.normalize(torch.randn(2, 256, generator=torch.Generator().manual_seed(0)), dim=-1)
    taught = teach(default.eval(), audio, lengths)

    def kl(decoding):
        return enroll.backward_in_windows(student, audio, lengths, taught, speaker, 1.0, decoding)[0]

    whole = student_loss(student, audio, lengths, taught, 1.0, speaker, 3000)[1]
    assert kl(DecodingOptions(pad_to_frames=3000)) == pytest.approx(whole, rel=1e-5)
    apart = [student_loss(student, audio[[i], : lengths[i]], lengths[[i]], enroll.rows_of(taught, [i]), 1.0,
                          speaker[[i]], frames)[1] for i, frames in ((0, 1000), (1, 3000))]
    assert kl(DecodingOptions(pad_to_frames=3000, short_pad_to_frames=1000)) == pytest.approx(sum(apart) / 2, rel=1e-5)
    assert sum(apart) / 2 != pytest.approx(whole, rel=1e-3)
