"""Transcription on ONNX Runtime: a model folder with exported graphs, decoded as `asr.Recognizer`
decodes it in "attention" mode, without importing torch."""

from __future__ import annotations

import math
import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from asr.audio import load_audio, prepare_waveform
from asr.config import FrontendConfig
from asr.decoding.align import FrameTiming, time_stamps
from asr.decoding.hypothesis import Hypothesis
from asr.decoding.no_speech import NO_SPEECH_WINDOW_SECONDS, decoder_hears_no_speech, decoder_rule_applies, densest_stretch
from asr.decoding.options import DecodingOptions, with_overrides
from asr.decoding.result import Result, Timings
from asr.errors import AudioError, CheckpointError, ConfigError
from asr.model_folder import DEFAULT_MODEL, load_ctc_tokenizer, read_description, read_meta, resolve_model
from asr.runtime.onnx_model import ENCODER_FILE, FRONTEND_FILE, GRAPHS_VERSION, OnnxModel
from asr.runtime.search import beam_search, log_softmax

Audio = Union[str, Path, np.ndarray]
SUBSAMPLING_RATE = 2  # Whisper's stem (conv1d2), the one the export takes: an encoder frame per 2 features


class OnnxRecognizer:
    """The ONNX Runtime twin of `asr.Recognizer` for a model folder that `asr export --onnx` wrote."""

    def __init__(self, folder: str | Path, precision: str = "fp32", threads: int = 0,
                 graphs: Optional[str | Path] = None):
        """`folder`: the model folder; `graphs`: where its ONNX graphs are, if not in it."""
        folder = Path(folder)
        self.meta, self.config, self.tokenizer = read_description(folder)
        self.ctc_tokenizer = load_ctc_tokenizer(folder, self.meta, self.tokenizer)
        if self.config.encoder.subsampling != "conv1d2":
            raise CheckpointError(f"{folder}: ONNX graphs are made for Whisper's models only")
        self.model = OnnxModel(graphs or folder, precision, threads)
        self.precision = precision
        self.threads = threads or _usable_cores()  # 0: ONNX Runtime's choice, every core
        self._graphs = Path(graphs or folder)
        self._one_thread: Optional[OnnxModel] = None  # made by the first batch that is decoded side by side
        self._one_thread_lock = threading.Lock()
        try:
            self.default_options = DecodingOptions(**self.meta.get("decoding", {}))
        except TypeError as err:
            raise CheckpointError(f"invalid decoding settings in the model description: {err}") from None
        self.timing = FrameTiming.for_frontend(self.config.frontend, SUBSAMPLING_RATE, 1)

    @property
    def sample_rate(self) -> int:
        return self.config.frontend.sample_rate

    @property
    def frontend(self) -> FrontendConfig:
        return self.config.frontend

    def transcribe(self, audio: Audio, options: Optional[DecodingOptions] = None, **overrides) -> Result:
        """Decodes one recording of at most the graph's input (30 s); `overrides` replace fields of `options`."""
        options = with_overrides(options or self.default_options, overrides)
        self._check(options)
        return self._transcribe(audio, options, self.model)

    def _transcribe(self, audio: Audio, options: DecodingOptions, model: OnnxModel) -> Result:
        samples = self._load(audio)
        frontend = model.frontend
        features = frontend.num_frames(len(samples))
        if features > model.frames:
            raise AudioError(str(audio) if isinstance(audio, (str, Path)) else "<array>",
                             f"{len(samples) / self.sample_rate:.1f} s is longer than the model's "
                             f"{model.frames * frontend.hop_length / self.sample_rate:.0f} s window: "
                             "use asr.transcribe_long, which cuts recordings at pauses")
        began = time.perf_counter()
        encoded = model.encode(frontend.log_mel(samples, model.frames)[None])
        frames = min(encoded.hidden.shape[1], (features - 1) // SUBSAMPLING_RATE + 1)  # those that hold audio
        log_probs = encoded.ctc_log_probs[0, :frames]
        blank = self.config.blank_id
        window = max(1, round(NO_SPEECH_WINDOW_SECONDS / self.timing.shift))
        speech_prob = float(densest_stretch((1 - np.exp(log_probs[:, blank]))[None], np.array([frames]), window)[0])
        searched_from = time.perf_counter()

        silent = float(log_probs[:, blank].sum())
        nothing = Hypothesis((), silent, ctc_score=silent)
        no_speech = None
        if speech_prob >= options.no_speech_threshold or options.prefix:
            best = self._search(model, encoded.cross_kv, len(samples) / self.sample_rate, options)
            if decoder_rule_applies(options, self.config):
                no_speech = self._decoder_no_speech_prob(model, encoded.cross_kv)
                if decoder_hears_no_speech(no_speech, best.score, len(best.tokens),
                                           options.decoder_no_speech_threshold, options.logprob_threshold):
                    best = nothing
        else:  # under the no-speech gate: nothing, without a search
            best = nothing
        searched = time.perf_counter()

        text = self.tokenizer.decode(best.tokens)
        shared = self.ctc_tokenizer is self.tokenizer
        labels = list(best.tokens) if shared else self.ctc_tokenizer.encode(text)
        duration = len(samples) / self.sample_rate
        token_times, words, alignment = time_stamps(log_probs, labels, self.ctc_tokenizer, self.timing, duration, blank)
        aligned = time.perf_counter()
        return Result(text=text, tokens=list(best.tokens), pieces=[self.tokenizer.piece(t) for t in best.tokens],
                      score=best.score, token_times=token_times, words=words, alignment=alignment,
                      frame_timing=self.timing, duration=duration, speech_prob=speech_prob,
                      timings=Timings(searched_from - began, searched - searched_from, aligned - searched, 0.0),
                      no_speech_prob=no_speech)

    def transcribe_batch(self, audios: Sequence[Audio], options: Optional[DecodingOptions] = None,
                         batch_size: int = 1, **overrides) -> list[Result]:
        """Results in input order, whatever `batch_size`: batching fixed 30 s windows into one
        graph run decodes no faster on a CPU (benchmarks/runs/server-batching). Several recordings
        are decoded side by side instead, `threads` at a time, each on one thread: a decoder step
        is too small to keep several cores busy, and steps side by side do (two windows on one
        thread each decode 1.2-1.4 times as fast as one after the other on two threads, on 2 cores).
        The one-thread graphs are loaded by the first such batch."""
        options = with_overrides(options or self.default_options, overrides)
        self._check(options)  # also when there is nothing to decode: callers check options so
        if len(audios) < 2 or self.threads < 2:
            return [self._transcribe(audio, options, self.model) for audio in audios]
        model = self._one_thread_model()
        with ThreadPoolExecutor(min(self.threads, len(audios))) as pool:
            return list(pool.map(lambda audio: self._transcribe(audio, options, model), audios))

    def _one_thread_model(self) -> OnnxModel:
        with self._one_thread_lock:
            if self._one_thread is None:
                self._one_thread = OnnxModel(self._graphs, self.precision, threads=1)
            return self._one_thread

    def _search(self, model: OnnxModel, cross_kv: np.ndarray, seconds: float, options: DecodingOptions) -> Hypothesis:
        beam = options.beam_size
        cross = model.bind_cross(cross_kv)  # every row reads the one utterance's keys and values

        def step(tokens: np.ndarray, self_kv: np.ndarray):
            return model.step(tokens, self_kv, cross)

        max_length = max(1, int(options.max_length_ratio * cross_kv.shape[3]))
        if options.max_tokens_per_second:
            max_length = min(max_length, math.ceil(options.max_tokens_per_second * max(1.0, seconds)))
        hyps = beam_search(step, model.empty_cache(1, cross_kv), self.config, beam, max_length,
                           options.length_penalty, options.length_norm, options.prefix)
        best = hyps[0]
        return Hypothesis(tuple(options.prefix) + best.tokens, best.score, best.ctc_score, best.attention_score)

    def _decoder_no_speech_prob(self, model: OnnxModel, cross_kv: np.ndarray) -> float:
        """The decoder's probability of its no-speech token right after <sos>, as `asr.decoding.decode` takes it."""
        logits, _ = model.step(np.array([[self.config.sos_id]]), model.empty_cache(1, cross_kv), cross_kv)
        return float(np.exp(log_softmax(logits.astype(np.float32))[0, self.config.no_speech_id]))

    def _check(self, options: DecodingOptions) -> None:
        if options.mode != "attention":
            raise ConfigError(f"the ONNX Runtime path decodes in mode 'attention' only, not {options.mode!r}")
        if len(options.temperatures) > 1 or options.return_attention or options.speaker:
            raise ConfigError("the ONNX Runtime path has no temperature fallback, returns no attention weights and "
                              "follows no enrolled voice: use the PyTorch recognizer (asr.load_model) for them")
        if options.pad_to_frames != self.model.frames:
            raise ConfigError(f"the exported encoder reads {self.model.frames} frames, not pad_to_frames="
                              f"{options.pad_to_frames}")

    def _load(self, audio: Audio) -> np.ndarray:
        if isinstance(audio, (str, Path)):
            samples = load_audio(audio, self.sample_rate)
        else:
            samples = prepare_waveform(audio, self.sample_rate, self.sample_rate)
        # Clips shorter than a feature frame are padded with silence, as the PyTorch recognizer pads them.
        return np.pad(samples, (0, max(0, self.config.frontend.win_length - len(samples))))


def _usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cache_dir() -> Path:
    """Where graphs built from bundled models are kept: $ASR_CACHE_DIR, else $XDG_CACHE_HOME/asr or ~/.cache/asr."""
    if os.environ.get("ASR_CACHE_DIR"):
        return Path(os.environ["ASR_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "asr"


def load_onnx(name_or_path: str | Path = DEFAULT_MODEL, precision: str = "fp32", threads: int = 0) -> OnnxRecognizer:
    """An OnnxRecognizer for a bundled model name or a model folder. A folder without graphs (as the
    bundled models are shipped: their weights are Whisper's plus a difference) has them built once,
    with torch, into `cache_dir()`, keyed by the weights' checksum and GRAPHS_VERSION; later loads read
    them from there."""
    folder = resolve_model(name_or_path)
    if (folder / ENCODER_FILE).is_file():
        return OnnxRecognizer(folder, precision, threads)
    graphs = cached_graphs(folder)
    if not (graphs / FRONTEND_FILE).is_file():  # written last: its presence means the graphs are complete
        build_graphs(folder, graphs)
    return OnnxRecognizer(folder, precision, threads, graphs)


def cached_graphs(folder: Path) -> Path:
    """Where the graphs of a model folder without them are built: keyed by its weights' checksum and
    GRAPHS_VERSION."""
    sha = str(read_meta(folder).get("weights_sha256", "unknown"))[:16]
    return cache_dir() / "onnx" / f"{folder.name}-{sha}-v{GRAPHS_VERSION}"


def build_graphs(folder: Path, graphs: Path) -> None:
    """Exports the model in `folder` into `graphs`, atomically (a concurrent build of the same graphs
    is harmless: the first to finish is kept)."""
    from asr.environment import check_compiled_dependencies

    check_compiled_dependencies()  # the build, unlike what it builds, needs torch and torchaudio: named if broken
    from asr.checkpoint import load_model_dir  # torch, this once
    from asr.runtime.export import export_onnx

    model, _, meta = load_model_dir(folder)
    staging = graphs.with_name(f".{graphs.name}.staging{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    export_onnx(model, staging, frames=(meta.get("decoding") or {}).get("pad_to_frames") or 3000)
    try:
        staging.rename(graphs)
    except OSError:  # built meanwhile by another process
        shutil.rmtree(staging, ignore_errors=True)
