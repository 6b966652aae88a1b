"""A browser demo of the recognizer: speak or upload, optionally bury the voice in held-out noise, and
see the transcript, where CTC placed each word, and where the attention looked. The live microphone
shows the words while they are spoken (asr.live), and each finished sentence as a recording would be.

    python gradio_app.py [--host 127.0.0.1] [--port 7860] [--share] [--model M] [--max-seconds 60]

Nothing here reaches the network unless --share asks for a public link: no analytics, no Hugging
Face Hub, fonts served by the app itself. The recognition is also an API endpoint, "recognize":

    from gradio_client import Client, handle_file
    client = Client("http://127.0.0.1:7860/")
    transcript, words, *_ = client.predict(handle_file("audio_samples/7_jackson_0.flac"), api_name="/recognize")

Its parameters are those of `Demo.recognize`; all but the audio have defaults (see client.view_api()).
"""

from __future__ import annotations

import ctypes
import os

M_ARENA_MAX = -8  # mallopt parameter number, from glibc's malloc.h


def limit_malloc_arenas(arenas: int = 2) -> None:
    """glibc gives each of the server's worker threads a malloc arena of its own and keeps what they
    freed, so by default the resident size creeps up for many requests before it levels off (84 MB
    over three rounds of twenty clients in tests/test_gradio_load.py; 24-30 MB with two arenas). It
    must run before the threads start. A MALLOC_ARENA_MAX in the environment wins; where libc is
    not glibc, nothing changes."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(M_ARENA_MAX, arenas)


if __name__ == "__main__":
    limit_malloc_arenas()  # before torch and gradio start threads that would each take an arena

# Read by gradio and huggingface_hub when they are imported, so set before that.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("MPLBACKEND", "Agg")  # gradio imports pyplot; there is no display to draw on

import argparse  # noqa: E402
import html  # noqa: E402
import math  # noqa: E402
import queue  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable, NamedTuple, Optional, Sequence  # noqa: E402

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from asr import plots  # noqa: E402
from asr.analysis.focus import Focus, attention_focus, speech_mask  # noqa: E402
from asr.analysis.noise_focus import over_audio  # noqa: E402
from asr.audio import SAMPLE_RATE, load_audio  # noqa: E402
from asr.data.augment import colored_noise, fit_to_length, mix_at_sir  # noqa: E402
from asr.data.manifest import read_manifest  # noqa: E402
from asr.data.noise import TEST, NoiseBank  # noqa: E402
from asr.decoding.options import MODES  # noqa: E402
from asr.decoding.result import Result  # noqa: E402
from asr.errors import AsrError, AudioError  # noqa: E402
from asr.live import Final, LiveRecognizer  # noqa: E402
from asr.noisy import below_full_scale, mix_below_full_scale  # noqa: E402
from asr.model_folder import BUNDLED_MODELS  # noqa: E402
from asr.recognizer import DEFAULT_MODEL, Recognizer, load_model  # noqa: E402

REPO = Path(__file__).resolve().parent
SAMPLES_DIR = REPO / "audio_samples"
DEFAULT_NOISE_DIR = Path(os.environ.get("ASR_DATA_DIR", REPO.parent / "shared" / "data")) / "noise"

NO_NOISE = "none"
RECORDED_NOISE = ("babble", "music", "street")  # test-split recordings of the noise bank, never heard in training
GENERATED_NOISE = "white"  # made on the spot, so always available
# One other voice over the input (a LibriSpeech reader from audio_samples, looped), at the slider's
# level as a signal-to-interference ratio: with a voice enrolled, the focus shows whom attention follows.
TALKER_NOISE = "another talker"
TALKER_CLIP = SAMPLES_DIR / "1089-134686-0001.flac"
NOISE_SEED = 0  # the same input and settings always get the same stretch of noise
MEAN = "mean"  # layer or head choice: average over all of them
ENROLLMENTS_KEPT = 8  # voice embeddings kept by file, so that toggling or re-recognising does not redo them
LIVE_EVERY_SECONDS = 0.25  # the browser sends the live microphone's audio in pieces this long
LIVE_CLOSE_SECONDS = 60.0  # at the end of a recording, the longest wait for the recognizer to catch up
MAX_UPLOAD = "100mb"  # refused before it is stored; a minute of 48 kHz stereo WAV is 11 MB


@dataclass(frozen=True)
class Settings:
    model: str  # loaded at start and selected first
    max_seconds: float = 60.0  # longer input is refused before decoding
    noise_dir: Path = DEFAULT_NOISE_DIR  # holds the noise bank's manifest.jsonl
    queue_size: int = 8  # requests waiting beyond this are told the app is busy
    # Whether the page may name any model folder on the server; not for a public (--share) link.
    custom_models: bool = True


class Outputs(NamedTuple):
    """What one recognition shows, in the order of the page's output components."""

    transcript: str
    words: list[list]  # [word, start s, end s, confidence] per word
    spectrogram: Figure
    cross_attention: Figure
    encoder_attention: Figure
    timings: dict  # seconds: audio, processing and its stages
    noise_focus: str  # Markdown
    audio: tuple[int, np.ndarray]  # (rate, samples): what the model heard, noise included
    result: Result  # kept in the session, to redraw the attention for another layer or head


class LiveSession:
    """One browser's live microphone: a streaming recognizer working in a thread of its own.

    Gradio hands the stream's handler the next piece of audio only once the handler has returned, and
    drops what came meanwhile, so the handler only queues the audio and reports what the thread has
    found so far; the thread feeds everything queued at once, whatever it is behind by."""

    def __init__(self, live: LiveRecognizer, render: Callable[[Final], Outputs]):
        self.live = live
        self._render = render
        self._pieces: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._finals: list[str] = []
        self._partial = ""
        self._shown: Optional[Outputs] = None  # the last finished utterance, not yet shown
        self._error: Optional[str] = None
        self._worker = threading.Thread(target=self._work, name="live-session", daemon=True)
        self._worker.start()

    def put(self, samples: np.ndarray, rate: int) -> None:
        self._pieces.put((samples, rate))

    def close(self, timeout: float) -> None:
        """Finishes the utterance going on once everything queued has been heard."""
        self._pieces.put(None)
        self._worker.join(timeout)

    def report(self) -> tuple[str, Optional[Outputs]]:
        """The transcript so far (finished utterances, then the one going on), and the results of a
        newly finished utterance, if there is one. Raises gr.Error if the audio could not be used."""
        with self._lock:
            if self._error is not None:
                raise _error(self._error)
            shown, self._shown = self._shown, None
            return " ".join([*self._finals, self._partial]).strip(), shown

    def _work(self) -> None:
        try:
            while True:
                pieces = [self._pieces.get()]
                while not self._pieces.empty():
                    pieces.append(self._pieces.get())
                ending = pieces[-1] is None
                audio = [piece for piece in pieces if piece is not None]
                if audio:
                    self._note(self._feed(audio))
                if ending:
                    self._note(self.live.finish())
                    return
        except AsrError as err:
            with self._lock:
                self._error = str(err)

    def _feed(self, pieces: list[tuple[np.ndarray, int]]) -> list:
        rate = pieces[0][1]
        if any(r != rate for _, r in pieces):
            raise AudioError("<microphone>", "the sample rate changed during the recording")
        if rate != self.live.sample_rate:
            if self.live.heard > 0:
                raise AudioError("<microphone>", f"the sample rate changed from {self.live.sample_rate} to {rate} Hz")
            self.live = LiveRecognizer(self.live.recognizer, options=self.live.final_options, sample_rate=rate)
        return self.live.feed(np.concatenate([samples for samples, _ in pieces]))

    def _note(self, events: list) -> None:
        for event in events:
            shown = self._render(event) if isinstance(event, Final) and event.text else None
            with self._lock:
                if isinstance(event, Final):
                    self._partial = ""
                    if event.text:
                        self._finals.append(event.text)
                        self._shown = shown
                else:
                    self._partial = event.text


class Demo:
    """The recognition behind the page: models and noise recordings loaded once, shared by every request."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._models = {settings.model: load_model(settings.model)}  # AsrError if the first one cannot load
        self._models[settings.model].quantized()  # the live microphone's partials: made now, not in the first stream
        self._noise: dict[tuple[str, int], NoiseBank] = {}
        self._enrolled: dict[tuple[int, str], tuple[float, ...]] = {}
        self.noise_manifest = settings.noise_dir / "manifest.jsonl"
        recorded = []
        if self.noise_manifest.is_file():
            recorded = [kind for kind in RECORDED_NOISE if self._bank(kind, SAMPLE_RATE)]
        self.noise_kinds = [NO_NOISE, *recorded, GENERATED_NOISE, TALKER_NOISE]

    def recognizer(self, name: str) -> Recognizer:
        """The model by name or folder, loaded on first use and kept (the app holds a handful at most)."""
        name = name.strip()
        if name not in self._models:
            if name != self.settings.model and name not in BUNDLED_MODELS and not self.settings.custom_models:
                raise _error(f"Model {name!r} is not offered here.")
            try:
                self._models[name] = load_model(name)
            except AsrError as err:
                raise _error(f"Cannot load model {name!r}: {err}") from None
        return self._models[name]

    def recognize(
        self,
        audio: Optional[str],
        model: Optional[str] = None,
        mode: Optional[str] = None,
        beam_size: Optional[float] = None,
        ctc_weight: Optional[float] = None,
        noise: str = NO_NOISE,
        snr_db: float = 5.0,
        cross_layer: str = MEAN,
        cross_head: str = MEAN,
        encoder_layer: str = MEAN,
        encoder_head: str = MEAN,
        enrollment: Optional[str] = None,
        follow_enrolled: bool = True,
    ) -> Outputs:
        """Transcribes an audio file, after adding `noise` at `snr_db` unless it is "none".

        `mode`, `beam_size` and `ctc_weight` default to the model's own decoding settings; the four
        layer and head choices ("mean", or an index from 0) pick the attention the plots show.
        `enrollment`: a recording of the person to follow over other talkers, used while
        `follow_enrolled` (the page's toggle, to compare with and without it).
        Raises gr.Error with a message for the page on input it cannot use.
        """
        recognizer = self.recognizer(model or self.settings.model)
        clean = self._read(audio, recognizer.sample_rate)
        heard = clean if noise == NO_NOISE else self._add_noise(clean, noise, snr_db, recognizer.sample_rate)
        # The menu starts at the model's own mode; left there, a followed voice gets the model's
        # enrolled mode (DecodingOptions.enrolled_mode), as `asr transcribe --enroll` does.
        overrides = {"mode": None if mode == recognizer.default_options.mode else mode,
                     "beam_size": None if beam_size is None else int(beam_size), "ctc_weight": ctc_weight,
                     "speaker": self._speaker(recognizer, enrollment) if enrollment and follow_enrolled else None}
        started = time.perf_counter()
        try:
            result = recognizer.transcribe(heard, return_attention=True,
                                           **{key: value for key, value in overrides.items() if value is not None})
        except AsrError as err:
            raise _error(str(err)) from None
        processing = time.perf_counter() - started
        focus = (_focus_text(noise, snr_db, self._noise_focus(recognizer, clean, result)) if noise != NO_NOISE
                 else "Add noise above to measure how much attention stays on the voice.")
        return self._outputs(recognizer, heard, result, processing, focus,
                             (cross_layer, cross_head, encoder_layer, encoder_head))

    def listen(self, chunk: Optional[tuple[int, np.ndarray]], session: Optional[LiveSession], model: Optional[str],
               cross_layer: str = MEAN, cross_head: str = MEAN, encoder_layer: str = MEAN,
               encoder_head: str = MEAN, enrollment: Optional[str] = None, follow_enrolled: bool = True) -> tuple:
        """One piece of the live microphone: the transcript so far, the session, and for an utterance
        that has finished since, what Recognize shows for it (else no change to those outputs)."""
        if session is None:
            recognizer = self.recognizer(model or self.settings.model)
            selectors = (cross_layer, cross_head, encoder_layer, encoder_head)
            speaker = {"speaker": self._speaker(recognizer, enrollment)} if enrollment and follow_enrolled else {}
            session = LiveSession(LiveRecognizer(recognizer, return_attention=True, **speaker),
                                  lambda final: self._final_outputs(recognizer, final, selectors))
        if chunk is not None:
            session.put(chunk[1], chunk[0])
        return self._live_outputs(session)

    def stop_listening(self, session: Optional[LiveSession]) -> tuple:
        """The end of the live recording: what is queued is heard, and the utterance going on finished."""
        if session is None:
            return ("", None) + (gr.skip(),) * len(Outputs._fields)
        session.close(LIVE_CLOSE_SECONDS)
        text, _, *shown = self._live_outputs(session)
        return (text, None, *shown)  # the next recording starts a session of its own

    @staticmethod
    def _live_outputs(session: LiveSession) -> tuple:
        text, shown = session.report()
        return (text, session, *(shown if shown is not None else (gr.skip(),) * len(Outputs._fields)))

    def _final_outputs(self, recognizer: Recognizer, final: Final, selectors: tuple[str, str, str, str]) -> Outputs:
        focus = ("Live audio has no added noise to measure focus against: record or upload a clip, add noise "
                 "and press Recognize.")
        return self._outputs(recognizer, final.audio, final.result, final.result.timings.total, focus, selectors)

    def _outputs(self, recognizer: Recognizer, heard: np.ndarray, result: Result, processing: float, focus: str,
                 selectors: tuple[str, str, str, str]) -> Outputs:
        rate = recognizer.sample_rate
        cross, encoder = self.attention_figures(result, *selectors)
        audio_seconds = len(heard) / rate
        stages = result.timings
        return Outputs(
            transcript=result.text,
            words=[[w.word, round(w.start, 2), round(w.end, 2), round(w.confidence, 2)] for w in result.words],
            spectrogram=plots.spectrogram_figure(heard, rate, result),
            cross_attention=cross,
            encoder_attention=encoder,
            timings={"audio": round(audio_seconds, 3), "processing": round(processing, 3),
                     "real_time_factor": round(processing / audio_seconds, 3),
                     "encoder": round(stages.encode, 3), "search": round(stages.search, 3),
                     "alignment": round(stages.align, 3), "attention_weights": round(stages.attention, 3)},
            noise_focus=focus,
            audio=(rate, heard),
            result=result,
        )

    def attention_figures(self, result: Optional[Result], cross_layer: str, cross_head: str,
                          encoder_layer: str, encoder_head: str) -> tuple[Optional[Figure], Optional[Figure]]:
        """The cross- and encoder self-attention plots for the layers and heads chosen ("mean" or an index)."""
        if result is None:  # nothing recognised yet in this session
            return None, None
        try:
            return (plots.cross_attention_figure(result, _index(cross_layer), _index(cross_head)),
                    plots.encoder_attention_figure(result, _index(encoder_layer), _index(encoder_head)))
        except ValueError as err:
            raise _error(str(err)) from None

    def model_controls(self, name: str) -> tuple[dict, ...]:
        """Updates for the decoding and attention controls: the model's own defaults and its layer and head counts."""
        recognizer = self.recognizer(name)
        options = recognizer.default_options
        config = recognizer.model.config
        return (
            gr.update(value=options.mode),
            gr.update(value=options.beam_size),
            gr.update(value=options.ctc_weight),
            gr.update(choices=_choices(config.decoder.num_layers), value=MEAN),
            gr.update(choices=_choices(config.decoder.num_heads), value=MEAN),
            gr.update(choices=_choices(config.encoder.num_layers), value=MEAN),
            gr.update(choices=_choices(config.encoder.num_heads), value=MEAN),
        )

    def _speaker(self, recognizer: Recognizer, enrollment: str) -> tuple[float, ...]:
        """The enrolled voice's embedding, for DecodingOptions.speaker (the last few kept by file)."""
        key = (id(recognizer), enrollment)
        if key not in self._enrolled:
            try:
                embedding = recognizer.enroll(self._read(enrollment, recognizer.sample_rate))
            except AsrError as err:
                raise _error(f"Cannot enroll that voice: {err}") from None
            while len(self._enrolled) >= ENROLLMENTS_KEPT:
                self._enrolled.pop(next(iter(self._enrolled)))
            self._enrolled[key] = embedding
        return self._enrolled[key]

    def _read(self, audio: Optional[str], sample_rate: int) -> np.ndarray:
        if not audio:
            raise _error("No audio: record with the microphone, upload a file, or pick an example below.")
        try:  # the header alone, so that over-long input is refused without decoding it
            seconds = sf.info(audio).duration
        except (sf.LibsndfileError, RuntimeError, OSError):
            raise _error("This file is not audio that can be read here (try WAV, FLAC, OGG or MP3).") from None
        if seconds > self.settings.max_seconds:
            raise _error(f"The recording is {seconds:.1f} s long; this demo takes at most "
                         f"{self.settings.max_seconds:g} s.")
        try:
            samples = load_audio(audio, sample_rate)
        except AudioError as err:
            raise _error(f"This audio cannot be used: {err.reason}.") from None
        if not np.any(samples):
            raise _error("The recording is silent: check that the microphone is on and allowed in the browser.")
        return samples

    def _add_noise(self, clean: np.ndarray, kind: str, snr_db: float, sample_rate: int) -> np.ndarray:
        if kind not in self.noise_kinds:
            raise _error(f"Unknown noise {kind!r}; choose from {', '.join(self.noise_kinds)}.")
        if not math.isfinite(snr_db):
            raise _error("The SNR must be a number of dB.")
        rng = np.random.default_rng(NOISE_SEED)
        if kind == TALKER_NOISE:
            voice = fit_to_length(load_audio(TALKER_CLIP, sample_rate), len(clean), rng)
            return below_full_scale(mix_at_sir(clean, voice, snr_db, sample_rate))[0]
        if kind == GENERATED_NOISE:
            noise = colored_noise(len(clean), GENERATED_NOISE, rng)
        else:
            _, recording = self._bank(kind, sample_rate).choose(rng)
            noise = fit_to_length(recording, len(clean), rng)
        return mix_below_full_scale(clean, noise, snr_db, sample_rate)[0]

    def _bank(self, kind: str, sample_rate: int) -> NoiseBank:
        key = (kind, sample_rate)
        if key not in self._noise:
            self._noise[key] = NoiseBank.from_manifests([self.noise_manifest], TEST, kinds=[kind],
                                                        sample_rate=sample_rate)
        return self._noise[key]

    def _noise_focus(self, recognizer: Recognizer, clean: np.ndarray, result: Result) -> Optional[Focus]:
        """How much cross-attention falls on the frames where the clean input has speech; None if there is none."""
        if result.cross_attention is None or result.cross_attention.shape[2] == 0:
            return None
        frames = result.encoder_attention.shape[-1]  # the encoder frames that hold audio
        cross = over_audio(result.cross_attention, frames)
        frontend = recognizer.model.config.frontend
        speech = speech_mask(clean, recognizer.model.encoder.subsampling.rate, frames,
                             hop_length=frontend.hop_length, win_length=frontend.win_length)
        return attention_focus(cross, speech)


def build_app(demo: Demo) -> gr.Blocks:
    """The page over `demo`, its queue included."""
    settings = demo.settings
    first = demo.recognizer(settings.model)
    options, config = first.default_options, first.model.config
    models = list(dict.fromkeys([settings.model, *BUNDLED_MODELS]))

    with gr.Blocks(title="Speech recognition with visible attention") as app:
        gr.Markdown(
            "# Speech recognition with visible attention\n"
            "Record or upload up to "
            f"{settings.max_seconds:g} s of speech, or pick an example. Add noise to hear how the model copes, "
            "and see in the plots where the decoder looked while writing each token."
        )
        with gr.Row():
            with gr.Column():
                audio = gr.Audio(sources=["microphone", "upload"], type="filepath", label="Speech",
                                 elem_id="input-audio")
                with gr.Row():
                    noise = gr.Radio(demo.noise_kinds, value=NO_NOISE, label="Add noise",
                                     info="held-out recordings, generated white noise, or another voice")
                    snr = gr.Slider(-10, 30, value=5, step=1, label="SNR (dB)",
                                    info="speech power over noise power")
                with gr.Accordion("Focus on one voice", open=False):
                    enrollment = gr.Audio(sources=["microphone", "upload"], type="filepath", elem_id="enroll-audio",
                                          label="The voice to follow: a few seconds of that person speaking")
                    follow = gr.Checkbox(value=True, elem_id="follow-enrolled",
                                         label="Follow the enrolled voice (untick to compare without it)")
                with gr.Accordion("Model and decoding", open=False):
                    model = gr.Dropdown(models, value=settings.model, label="Model (name or folder)",
                                        allow_custom_value=settings.custom_models)
                    mode = gr.Dropdown(list(MODES), value=options.mode, label="Decoding mode",
                                       info="left at the model's own, a followed voice is searched in the model's enrolled mode")
                    beam = gr.Slider(1, 32, value=options.beam_size, step=1, label="Beam size")
                    ctc_weight = gr.Slider(0, 1, value=options.ctc_weight, step=0.05, label="CTC weight",
                                           info="joint and rescore modes: CTC score against attention score")
                button = gr.Button("Recognize", variant="primary", elem_id="recognize")
                with gr.Group():
                    live_audio = gr.Audio(sources=["microphone"], streaming=True, type="numpy", elem_id="live-audio",
                                          label="Live: record and watch the words come")
                    live_text = gr.Textbox(label="Live transcript (each finished sentence also fills in the "
                                                 "results on the right, with the sentences just before it, which "
                                                 "it was decoded after)", lines=3, elem_id="live-transcript")
                _examples("manifest.jsonl", "Examples: clean", audio)
                _examples("noisy_manifest.jsonl", "Examples: with noise already mixed in", audio)
            with gr.Column():
                transcript = gr.Textbox(label="Transcript", lines=2, elem_id="transcript")
                words = gr.Dataframe(headers=["word", "start (s)", "end (s)", "confidence"],
                                     label="Words (CTC alignment)", interactive=False, elem_id="words")
                heard = gr.Audio(label="Audio recognised (noise included)", interactive=False, elem_id="heard")
                timings = gr.JSON(label="Timings (seconds)", elem_id="timings")
                focus = gr.Markdown(label="Noise focus", elem_id="noise-focus")
        # The figures carry their own titles, where gradio's label would cover them.
        spectrogram = gr.Plot(label="Log-mel spectrogram with the CTC word alignment", format="png",
                              show_label=False, elem_id="spectrogram")
        with gr.Row():
            cross_layer = gr.Dropdown(_choices(config.decoder.num_layers), value=MEAN, label="Decoder layer")
            cross_head = gr.Dropdown(_choices(config.decoder.num_heads), value=MEAN, label="Decoder head")
            encoder_layer = gr.Dropdown(_choices(config.encoder.num_layers), value=MEAN, label="Encoder layer")
            encoder_head = gr.Dropdown(_choices(config.encoder.num_heads), value=MEAN, label="Encoder head")
        cross = gr.Plot(label="Cross-attention: output tokens over encoder frames", format="png",
                        show_label=False, elem_id="cross-attention")
        encoder = gr.Plot(label="Encoder self-attention", format="png", show_label=False,
                          elem_id="encoder-attention")
        shown = gr.State(time_to_live=1800)  # attention weights are large: not kept past half an hour
        live_session = gr.State(time_to_live=1800)

        selectors = [cross_layer, cross_head, encoder_layer, encoder_head]
        # One model at a time: recognition and model loading share a queue of concurrency one.
        button.click(demo.recognize, [audio, model, mode, beam, ctc_weight, noise, snr, *selectors, enrollment, follow],
                     [transcript, words, spectrogram, cross, encoder, timings, focus, heard, shown],
                     api_name="recognize", concurrency_id="model")
        shown_outputs = [transcript, words, spectrogram, cross, encoder, timings, focus, heard, shown]
        live_audio.stream(demo.listen, [live_audio, live_session, model, *selectors, enrollment, follow],
                          [live_text, live_session, *shown_outputs], stream_every=LIVE_EVERY_SECONDS,
                          time_limit=settings.max_seconds, api_visibility="private", concurrency_id="model")
        live_audio.stop_recording(demo.stop_listening, [live_session],
                                  [live_text, live_session, *shown_outputs], api_visibility="private",
                                  concurrency_id="model")
        model.change(demo.model_controls, [model], [mode, beam, ctc_weight, *selectors],
                     api_visibility="private", concurrency_id="model")
        for selector in selectors:
            selector.change(demo.attention_figures, [shown, *selectors], [cross, encoder],
                            api_visibility="private")
    return app.queue(max_size=settings.queue_size, default_concurrency_limit=1)


def _examples(manifest: str, label: str, audio: gr.Audio) -> None:
    utterances = read_manifest(SAMPLES_DIR / manifest)
    gr.Examples([[u.audio] for u in utterances], [audio], label=label, examples_per_page=5,
                example_labels=[f"{u.id}: {u.text}" for u in utterances])


def _choices(count: int) -> list[str]:
    return [MEAN, *(str(i) for i in range(count))]


def _index(choice: str) -> Optional[int]:
    if choice == MEAN:
        return None
    try:
        return int(choice)
    except (TypeError, ValueError):
        raise _error(f"A layer or head is {MEAN!r} or a number, not {choice!r}.") from None


def _error(message: str) -> gr.Error:
    # The page renders the message as HTML; it may quote a file or model name the user chose.
    return gr.Error(html.escape(message, quote=False), title="Cannot recognize", print_exception=False)


def _focus_text(noise: str, snr_db: float, focus: Optional[Focus]) -> str:
    heading = (f"**Voice focus** (another talker at {snr_db:g} dB SIR; your speech frames from the input before "
               "mixing; enroll your voice above to see attention follow it): " if noise == TALKER_NOISE else
               f"**Noise focus** ({noise} noise at {snr_db:g} dB SNR; speech frames from the input before the noise): ")
    if focus is None:
        return heading + "no cross-attention to measure (nothing recognised, or no decoder tokens)."
    summary = focus.summary()
    overall = summary["overall"]
    if overall["normalized_share"] is None:
        return heading + (f"the clean input has speech in {focus.chance:.0%} of its frames, "
                          "so attention on speech cannot be told apart from chance.")
    per_layer = " · ".join(f"layer {i}: {share:+.2f}"
                           for i, share in enumerate(summary["per_layer"]["normalized_share"]))
    return heading + (
        f"the decoder puts **{overall['speech_share']:.0%}** of its cross-attention on speech frames, "
        f"which are {focus.chance:.0%} of the audio: a normalised share of **{overall['normalized_share']:+.2f}** "
        f"(0: no better than uniform attention, 1: all on speech). Per decoder layer: {per_layer}."
    )


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--share", action="store_true", help="also serve a public gradio.live link (uses the network)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="bundled model name or model folder")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="longest input accepted")
    parser.add_argument("--noise-dir", type=Path, default=DEFAULT_NOISE_DIR,
                        help="noise bank folder with manifest.jsonl (its test split is used)")
    parser.add_argument("--queue-size", type=int, default=8, help="requests that may wait before 'busy'")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    settings = Settings(model=args.model, max_seconds=args.max_seconds, noise_dir=args.noise_dir,
                        queue_size=args.queue_size, custom_models=not args.share)
    try:
        demo = Demo(settings)
    except AsrError as err:
        sys.exit(f"gradio_app.py: {err}")
    app = build_app(demo)
    app.launch(server_name=args.host, server_port=args.port, share=args.share, allowed_paths=[str(SAMPLES_DIR)],
               max_file_size=MAX_UPLOAD)


if __name__ == "__main__":
    main()
