"""Enrollment: speaker embeddings, the encoder's speaker adapters, and how decoding asks for them."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from asr.audio import load_audio
from asr.cli import main as cli_main
from asr.config import EncoderConfig, SpeakerConfig, from_dict, to_dict
from asr.decoding.decode import decode
from asr.decoding.options import DecodingOptions, with_overrides
from asr.enrollment import EMBEDDING_DIM, speaker_embedding
from asr.errors import ConfigError, EnrollmentError
from asr.model.asr_model import ASRModel
from asr.tokenizer import BLANK, SOS_EOS, UNK, CharTokenizer
from tests.conftest import REPO, tiny_model_config

SAMPLES = REPO / "audio_samples"


def with_speaker(config, adapter_dim: int = 16, embedding_dim: int = 8):
    return dataclasses.replace(config, encoder=dataclasses.replace(
        config.encoder, speaker=SpeakerConfig(embedding_dim=embedding_dim, adapter_dim=adapter_dim)))


def features(batch: int = 2, frames: int = 40, mels: int = 80) -> torch.Tensor:
    return torch.randn(batch, frames, mels, generator=torch.Generator().manual_seed(0))


def test_speaker_config_round_trips():
    config = EncoderConfig(speaker=SpeakerConfig(embedding_dim=256, adapter_dim=64))
    assert from_dict(EncoderConfig, to_dict(config)) == config
    assert from_dict(EncoderConfig, to_dict(EncoderConfig())).speaker is None


def test_new_adapters_change_nothing_and_no_enrollment_skips_them():
    torch.manual_seed(0)
    model = ASRModel(with_speaker(tiny_model_config())).eval()
    plain = ASRModel(tiny_model_config()).eval()
    missing, unexpected = plain.load_state_dict(model.state_dict(), strict=False)
    assert not missing and all(k.startswith("encoder.speaker_adapters.") for k in unexpected)
    feats, lengths = features(), torch.tensor([40, 31])
    speaker = torch.randn(2, 8)
    with torch.no_grad():
        reference = plain.encoder(feats, lengths).hidden
        assert torch.equal(model.encoder(feats, lengths).hidden, reference)
        # A fresh adapter's output projection is zero: the enrolled path starts where the plain one is.
        assert torch.allclose(model.encoder(feats, lengths, speaker=speaker).hidden, reference, atol=1e-6)
        for adapter in model.encoder.speaker_adapters:
            torch.nn.init.normal_(adapter.up.weight, std=0.1)
        enrolled = model.encoder(feats, lengths, speaker=speaker).hidden
        other = model.encoder(feats, lengths, speaker=torch.randn(2, 8)).hidden
        assert not torch.allclose(enrolled, reference, atol=1e-3)  # trained adapters act on enrolled input ...
        assert not torch.allclose(enrolled, other, atol=1e-3)  # ... and differently for another voice
        assert torch.equal(model.encoder(feats, lengths).hidden, reference)  # ... and never without enrollment


def test_an_encoder_without_adapters_refuses_a_speaker():
    model = ASRModel(tiny_model_config()).eval()
    with pytest.raises(ValueError, match="no speaker adapters"):
        model.encoder(features(), None, speaker=torch.zeros(2, 8))


def tokenizer() -> CharTokenizer:
    return CharTokenizer([BLANK, UNK, *"abcdefghijklmnopqrstuvwxyz' ", SOS_EOS])


def test_decoding_names_what_an_enrollment_cannot_do():
    waveforms, lengths = torch.randn(1, 8000) * 0.1, torch.tensor([8000])
    plain = ASRModel(tiny_model_config(vocab=31)).eval()
    with pytest.raises(EnrollmentError, match="no speaker adapters"):
        decode(plain, tokenizer(), waveforms, lengths, DecodingOptions(mode="ctc_greedy", speaker=(0.1,) * 8))
    model = ASRModel(with_speaker(tiny_model_config(vocab=31))).eval()
    with pytest.raises(EnrollmentError, match="8 numbers"):
        decode(model, tokenizer(), waveforms, lengths, DecodingOptions(mode="ctc_greedy", speaker=(0.1,) * 5))
    enrolled = decode(model, tokenizer(), waveforms, lengths, DecodingOptions(mode="ctc_greedy", speaker=[0.1] * 8))
    assert enrolled[0].text == decode(model, tokenizer(), waveforms, lengths, DecodingOptions(mode="ctc_greedy"))[0].text


def test_an_enrolled_voice_is_searched_in_the_enrolled_mode():
    torch.manual_seed(0)
    model = ASRModel(with_speaker(tiny_model_config(vocab=31))).eval()
    for adapter in model.encoder.speaker_adapters:
        torch.nn.init.normal_(adapter.up.weight, std=0.1)
    waveforms = torch.randn(1, 8000, generator=torch.Generator().manual_seed(1)) * 0.1
    lengths, speaker = torch.tensor([8000]), (0.3,) * 8

    def run(**fields):
        return decode(model, tokenizer(), waveforms, lengths, DecodingOptions(beam_size=3, **fields))[0]

    enrolled = run(mode="attention", enrolled_mode="ctc_greedy", speaker=speaker)
    searched = run(mode="ctc_greedy", speaker=speaker)
    assert (enrolled.tokens, enrolled.score) == (searched.tokens, searched.score)
    attention = run(mode="attention", speaker=speaker)
    assert attention.score != searched.score  # the two modes rank differently: the switch is seen
    # No one enrolled: the model's own mode, whatever enrolled_mode says.
    plain = run(mode="attention", enrolled_mode="ctc_greedy")
    assert plain.score == run(mode="attention").score
    # A forced prefix needs the attention search, enrolled or not.
    assert DecodingOptions(prefix=(3,), mode="attention", enrolled_mode="ctc_greedy",
                           speaker=speaker).searched().mode == "attention"
    # A mode asked for (asr transcribe --decode, the demo's menu) is the one searched, enrolled or not.
    model_default = DecodingOptions(mode="attention", enrolled_mode="ctc_greedy", speaker=speaker)
    assert with_overrides(model_default, {"mode": "ctc_beam"}).searched().mode == "ctc_beam"
    assert with_overrides(model_default, {"beam_size": 2}).searched().mode == "ctc_greedy"
    with pytest.raises(ConfigError, match="enrolled_mode"):
        DecodingOptions(enrolled_mode="fastest")


def test_options_keep_a_speaker_as_a_hashable_tuple():
    options = DecodingOptions(speaker=np.full(4, 0.5, np.float32))
    assert options.speaker == (0.5,) * 4 and hash(options)


def test_speaker_embeddings_tell_voices_apart():
    lj_a = speaker_embedding(load_audio(SAMPLES / "LJ001-0004.flac"))
    lj_b = speaker_embedding(load_audio(SAMPLES / "LJ001-0002.flac"))
    others = [speaker_embedding(load_audio(SAMPLES / name)) for name in ("1089-134686-0001.flac", "spk1_snt1.flac")]
    for e in (lj_a, lj_b, *others):
        assert e.shape == (EMBEDDING_DIM,) and e.dtype == np.float32
        assert math.isclose(float(np.linalg.norm(e)), 1.0, abs_tol=1e-4)
    same = float(lj_a @ lj_b)
    assert all(same > float(lj_a @ o) + 0.05 for o in others), (same, [float(lj_a @ o) for o in others])
    both = speaker_embedding([load_audio(SAMPLES / "LJ001-0004.flac"), load_audio(SAMPLES / "LJ001-0002.flac")])
    mean = (lj_a + lj_b) / np.linalg.norm(lj_a + lj_b)  # several samples of a voice: their mean direction
    np.testing.assert_allclose(both, mean, atol=1e-5)


@pytest.mark.parametrize("seconds", [0.0, 0.4, 3.0])
def test_too_little_speech_is_a_named_error(seconds):
    audio = load_audio(SAMPLES / "LJ001-0004.flac")[: int(seconds * 16000)] if seconds < 1 else \
        np.zeros(int(seconds * 16000), np.float32)
    with pytest.raises(EnrollmentError, match="needs at least 1 s"):
        speaker_embedding(audio, "me.wav")


def test_the_command_names_what_enrollment_needs(tiny_model_dir, tmp_path, capsys):
    clip = str(SAMPLES / "spk1_snt1.flac")
    assert cli_main(["transcribe", clip, "--enroll", clip, "--runtime", "onnx"]) == 1
    assert "--enroll runs on --runtime torch" in capsys.readouterr().err
    assert cli_main(["transcribe", clip, "--enroll", clip, "--model", str(tiny_model_dir)]) == 1
    err = capsys.readouterr().err
    assert "EnrollmentError" in err and "no speaker adapters" in err and err.count("\n") == 1, err


@pytest.fixture(scope="module")
def default_recognizer():
    from asr.recognizer import load_model

    return load_model()


@pytest.mark.slow
def test_the_default_model_follows_an_enrolled_voice_and_is_unchanged_without_one(default_recognizer):
    recognizer = default_recognizer
    assert recognizer.model.config.encoder.speaker is not None  # the bundled default ships its adapters
    lj = load_audio(SAMPLES / "LJ001-0004.flac")
    speaker = recognizer.enroll(SAMPLES / "LJ001-0002.flac")  # another clip of the same reader
    plain = recognizer.transcribe(lj).text
    assert recognizer.transcribe(lj, speaker=speaker).text == plain  # the voice alone: nothing to take away
    assert recognizer.transcribe(lj, enroll=SAMPLES / "LJ001-0002.flac").text == plain
    # The same options without a speaker give exactly what a model without adapters gives.
    plain_model = ASRModel(dataclasses.replace(recognizer.model.config, encoder=dataclasses.replace(
        recognizer.model.config.encoder, speaker=None))).eval()
    plain_model.load_state_dict({k: v for k, v in recognizer.model.state_dict().items()
                                 if not k.startswith("encoder.speaker_adapters.")})
    waveform = torch.from_numpy(lj)[None]
    with torch.no_grad():
        expected = plain_model.encode(waveform, torch.tensor([len(lj)]), pad_to_frames=3000).hidden
        got = recognizer.model.encode(waveform, torch.tensor([len(lj)]), pad_to_frames=3000).hidden
    assert torch.equal(got, expected)


@pytest.mark.slow
def test_the_enrolled_talker_comes_out_of_a_two_talker_mixture(default_recognizer):
    """LJ Speech's reader and LibriSpeech reader 1089 at 0 dB, the second starting half a second
    later: enrolling one brings out that one's words (speakers the adapters never trained on)."""
    from asr.data.augment import mix_at_sir
    from asr.scoring import score

    recognizer = default_recognizer
    lj, other = load_audio(SAMPLES / "LJ001-0004.flac"), load_audio(SAMPLES / "1089-134686-0001.flac")
    target, interference = np.zeros((2, max(len(lj), len(other) + 8000)), np.float32)
    target[: len(lj)], interference[8000: 8000 + len(other)] = lj, other
    mixture = mix_at_sir(target, interference, 0.0)
    mixture *= 0.99 / max(0.99, float(np.abs(mixture).max()))
    refs = {"lj": "produced the block books which were the immediate predecessors of the true printed book",
            "other": "stuff it into you his belly counselled him"}

    def heard(text: str, who: str) -> int:
        """Words of `who` the transcript has (aligned hits after the normaliser)."""
        return score([("u", refs[who], text)]).words.hits

    plain = recognizer.transcribe(mixture).text
    with_lj = recognizer.transcribe(mixture, enroll=SAMPLES / "LJ001-0002.flac").text
    with_other = recognizer.transcribe(mixture, enroll=other).text
    # Enrolling LJ: fewer of the other talker's words, and no fewer of LJ's.
    assert heard(with_lj, "other") < heard(plain, "other") and heard(with_lj, "lj") >= heard(plain, "lj"), \
        (plain, with_lj)
    # Enrolling the other talker: their words, and hardly any of LJ's 15.
    assert heard(with_other, "other") > heard(with_other, "lj") and heard(with_other, "lj") <= 2, with_other
