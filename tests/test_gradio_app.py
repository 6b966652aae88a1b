"""The demo app in-process: the page builds, `recognize` transcribes and draws, bad input gets a readable message."""

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported (gradio_app sets them too)
os.environ["HF_HUB_OFFLINE"] = "1"

import ipaddress  # noqa: E402
import socket  # noqa: E402
from pathlib import Path  # noqa: E402

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import soundfile as sf  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import gradio_app  # noqa: E402
from asr.audio import load_audio  # noqa: E402
from asr.noisy import PEAK  # noqa: E402
from asr.recognizer import DEFAULT_MODEL, Recognizer  # noqa: E402

SEVEN = gradio_app.SAMPLES_DIR / "7_jackson_0.flac"  # an FSDD clip the tiny model was trained on
SENTENCE = gradio_app.SAMPLES_DIR / "spk1_snt1.flac"  # 2.9 s with pauses: speech and non-speech frames


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Fails any connection that leaves this machine."""
    connect = socket.socket.connect

    def local_only(sock, address):
        host = address[0] if isinstance(address, tuple) else None
        if host is not None and not _is_loopback(host):
            raise AssertionError(f"the app tried to reach the network: {address}")
        return connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", local_only)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


@pytest.fixture(scope="module")
def demo(tiny_model_dir, data_dir) -> gradio_app.Demo:
    return gradio_app.Demo(gradio_app.Settings(model=str(tiny_model_dir), max_seconds=10,
                                               noise_dir=data_dir / "noise"))


def _message(error: pytest.ExceptionInfo) -> str:
    return error.value.message


def test_app_builds_and_offers_the_recognize_api(demo):
    app = gradio_app.build_app(demo)
    endpoint = app.get_api_info()["named_endpoints"]["/recognize"]
    names = [p["parameter_name"] for p in endpoint["parameters"]]
    assert names == ["audio", "model", "mode", "beam_size", "ctc_weight", "noise", "snr_db",
                     "cross_layer", "cross_head", "encoder_layer", "encoder_head", "enrollment", "follow_enrolled"]
    assert [p["parameter_has_default"] for p in endpoint["parameters"]][:2] == [False, True]
    assert app._queue.max_size == demo.settings.queue_size  # beyond it, gradio tells the page the app is busy


def test_recognize_returns_the_transcript_words_and_figures(demo):
    out = demo.recognize(str(SEVEN))
    assert out.transcript == "seven"
    [(word, start, end, confidence)] = out.words
    assert word == "seven" and 0 <= start < end <= out.result.duration and 0 < confidence <= 1
    assert all(isinstance(f, Figure) for f in (out.spectrogram, out.cross_attention, out.encoder_attention))
    rate, samples = out.audio
    assert rate == 16000 and np.array_equal(samples, load_audio(SEVEN, 16000))
    assert out.timings["audio"] == pytest.approx(len(samples) / rate, abs=1e-3)
    assert out.timings["processing"] > 0
    assert "Add noise" in out.noise_focus

    # Tokens down, encoder frames across on the same time axis as the spectrogram's.
    cross_ax = out.cross_attention.axes[0]
    assert [t.get_text() for t in cross_ax.get_yticklabels()] == list(out.result.pieces)
    assert cross_ax.get_images()[0].get_array().shape[0] == len(out.result.tokens)
    spectrogram_ax = out.spectrogram.axes[0]
    assert cross_ax.get_xlim() == spectrogram_ax.get_xlim() == (0.0, pytest.approx(out.result.duration))
    assert cross_ax.get_position().x0 == pytest.approx(spectrogram_ax.get_position().x0)
    assert cross_ax.get_position().x1 == pytest.approx(spectrogram_ax.get_position().x1)
    assert "seven" in [t.get_text() for t in spectrogram_ax.texts]
    assert out.cross_attention.axes[1].get_ylabel() == "attention weight"  # the colour bar


def test_attention_plots_follow_the_layer_and_head_chosen(demo):
    out = demo.recognize(str(SEVEN), encoder_layer="1", encoder_head="0")
    assert "encoder layer 1, head 0" in out.encoder_attention.texts[0].get_text()
    cross, encoder = demo.attention_figures(out.result, "0", "1", "mean", "mean")
    assert "head 1" in cross.texts[0].get_text()
    assert "mean of 2 encoder layers, mean of 2 heads" in encoder.texts[0].get_text()
    with pytest.raises(gr.Error) as error:
        demo.attention_figures(out.result, "7", "mean", "mean", "mean")
    assert "layer 7 does not exist" in _message(error)


def test_model_controls_follow_the_model(demo, tiny_model_dir):
    mode, beam, ctc_weight, cross_layer, *_ = demo.model_controls(str(tiny_model_dir))
    defaults = demo.recognizer(str(tiny_model_dir)).default_options
    assert (mode["value"], beam["value"], ctc_weight["value"]) == (defaults.mode, defaults.beam_size,
                                                                    defaults.ctc_weight)
    assert cross_layer["choices"] == ["mean", "0"]  # the tiny model's decoder has one layer


def test_decoding_settings_reach_the_decoder(demo, monkeypatch):
    seen = []
    transcribe = Recognizer.transcribe

    def spy(self, audio, options=None, **overrides):
        seen.append(overrides)
        return transcribe(self, audio, options, **overrides)

    monkeypatch.setattr(Recognizer, "transcribe", spy)
    out = demo.recognize(str(SEVEN), mode="ctc_beam", beam_size=3.0, ctc_weight=0.5)
    assert out.transcript == "seven"
    assert seen == [{"mode": "ctc_beam", "beam_size": 3, "ctc_weight": 0.5, "return_attention": True}]


@pytest.mark.parametrize("kind", ["babble", "music", "street", "white", "another talker"])
def test_noise_is_added_reproducibly_and_its_focus_reported(demo, kind):
    clean = load_audio(SENTENCE, 16000)
    first = demo.recognize(str(SENTENCE), noise=kind, snr_db=0.0)
    again = demo.recognize(str(SENTENCE), noise=kind, snr_db=0.0)
    noisy = first.audio[1]
    assert noisy.shape == clean.shape and not np.allclose(noisy, clean)
    assert np.array_equal(noisy, again.audio[1])  # a fixed seed: the same noise every time
    assert np.max(np.abs(noisy)) <= PEAK + 1e-6
    assert (f"{kind} noise at 0 dB SNR" if kind != gradio_app.TALKER_NOISE else "another talker at 0 dB SIR") \
        in first.noise_focus
    assert "normalised share" in first.noise_focus and "layer 0" in first.noise_focus


def test_held_out_recordings_white_noise_and_another_voice_are_offered(demo):
    assert demo.noise_kinds == ["none", "babble", "music", "street", "white", "another talker"]


def test_any_format_rate_and_channel_count_is_accepted(demo, tmp_path):
    samples = load_audio(SEVEN, 44100)
    stereo = np.stack([samples, 0.5 * samples], axis=1)
    for name, subtype in (("seven.ogg", "VORBIS"), ("seven.wav", "PCM_16")):
        sf.write(tmp_path / name, stereo, 44100, subtype=subtype)
        out = demo.recognize(str(tmp_path / name))
        assert out.transcript == "seven"
        assert out.audio[0] == 16000 and out.audio[1].ndim == 1


def _write(path: Path, samples: np.ndarray, rate: int = 16000) -> str:
    sf.write(path, samples, rate)
    return str(path)


def test_bad_input_gets_a_readable_message(demo, tmp_path):
    text_file = tmp_path / "notes.wav"
    text_file.write_text("not audio at all")
    cases = {
        None: "No audio",
        "": "No audio",
        str(text_file): "is not audio that can be read",
        str(tmp_path): "is not audio that can be read",  # a folder
        _write(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32)): "contains no samples",
        _write(tmp_path / "silent.wav", np.zeros(16000, dtype=np.float32)): "silent",
    }
    for audio, expected in cases.items():
        with pytest.raises(gr.Error) as error:
            demo.recognize(audio)
        assert expected in _message(error), (audio, _message(error))
        assert "Traceback" not in _message(error)


def test_too_long_input_is_refused_before_decoding(demo, tmp_path, monkeypatch):
    def decode_nothing(*args, **kwargs):
        raise AssertionError("decoded an input that is too long")

    monkeypatch.setattr(Recognizer, "transcribe", decode_nothing)
    long_clip = _write(tmp_path / "long.flac", np.full(11 * 16000, 0.1, dtype=np.float32))
    with pytest.raises(gr.Error) as error:
        demo.recognize(long_clip)
    assert _message(error) == "The recording is 11.0 s long; this demo takes at most 10 s."


def test_bad_settings_get_a_readable_message(demo):
    expected = {
        "model": ("/no/such/model", "Cannot load model '/no/such/model'"),
        "mode": ("beam", "unknown decoding mode"),
        "noise": ("traffic", "Unknown noise"),
        "cross_layer": ("first", "a number"),
    }
    for name, (value, message) in expected.items():
        with pytest.raises(gr.Error) as error:
            demo.recognize(str(SEVEN), **{name: value})
        assert message in _message(error)


def test_enrolling_with_a_model_that_cannot_follow_a_voice_is_explained(demo):
    with pytest.raises(gr.Error) as error:
        demo.recognize(str(SEVEN), enrollment=str(SENTENCE))
    assert "Cannot enroll that voice" in _message(error) and "no speaker adapters" in _message(error)
    assert demo.recognize(str(SEVEN), enrollment=str(SENTENCE), follow_enrolled=False).transcript == "seven"


@pytest.mark.slow
def test_an_enrolled_voice_draws_the_attention_away_from_another_talker(data_dir):
    demo = gradio_app.Demo(gradio_app.Settings(model=DEFAULT_MODEL, max_seconds=10, noise_dir=data_dir / "noise"))
    lj = str(gradio_app.SAMPLES_DIR / "LJ001-0004.flac")
    plain = demo.recognize(lj, noise=gradio_app.TALKER_NOISE, snr_db=0.0)
    enrolled = demo.recognize(lj, noise=gradio_app.TALKER_NOISE, snr_db=0.0,
                              enrollment=str(gradio_app.SAMPLES_DIR / "LJ001-0002.flac"))
    assert plain.noise_focus.startswith("**Voice focus**")

    def share(focus: str) -> float:  # "... a normalised share of **+0.61** (0: no better than uniform ..."
        return float(focus.split("**")[5])

    # The talker covers the whole clip, so chance is high; against chance, enrolling moves attention to LJ.
    assert share(enrolled.noise_focus) > share(plain.noise_focus) + 0.2, (plain.noise_focus, enrolled.noise_focus)
    toggled = demo.recognize(lj, noise=gradio_app.TALKER_NOISE, snr_db=0.0, follow_enrolled=False,
                             enrollment=str(gradio_app.SAMPLES_DIR / "LJ001-0002.flac"))
    assert toggled.transcript == plain.transcript


def test_messages_cannot_inject_html(demo):
    with pytest.raises(gr.Error) as error:
        demo.recognize(str(SEVEN), model="<img src=x onerror=alert(1)>")
    assert "<img" not in _message(error) and "&lt;img" in _message(error)


def test_a_public_link_only_offers_the_models_it_was_started_with(tiny_model_dir):
    demo = gradio_app.Demo(gradio_app.Settings(model=str(tiny_model_dir), custom_models=False))
    with pytest.raises(gr.Error) as error:
        demo.recognize(str(SEVEN), model="/etc")
    assert "not offered here" in _message(error)


def test_command_line_defaults_and_a_missing_model():
    args = gradio_app.parse_args([])
    assert (args.host, args.port, args.share, args.model, args.max_seconds) == ("127.0.0.1", 7860, False,
                                                                                DEFAULT_MODEL, 60.0)
    with pytest.raises(SystemExit, match="unknown model"):
        gradio_app.main(["--model", "/no/such/model"])
