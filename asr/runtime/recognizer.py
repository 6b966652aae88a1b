"""Transcription on ONNX Runtime: a model folder with exported graphs, decoded as `asr.Recognizer`
decodes it in "attention" mode, without importing torch."""

from __future__ import annotations

import math
import os
import shutil
import time
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
from asr.model_folder import DEFAULT_MODEL, load_ctc_tokenizer, model_decoding, read_description, read_meta, resolve_model
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
        self._source = (folder, threads, graphs)  # for quantized()
        self._other_precisions: dict[str, OnnxRecognizer] = {}
        # First, so that the decoder's graph builds while the tokenizers load. 0 threads: every core
        # this process may use (ONNX Runtime's own choice counts physical cores only, one on a machine
        # of 2 hyper-threads).
        self.model = OnnxModel(graphs or folder, precision, threads or _usable_cores())
        self.meta, self.config, self.tokenizer = read_description(folder)
        self.ctc_tokenizer = load_ctc_tokenizer(folder, self.meta, self.tokenizer)
        if self.config.encoder.subsampling != "conv1d2":
            raise CheckpointError(f"{folder}: ONNX graphs are made for Whisper's models only")
        self.precision = precision
        self.default_options = model_decoding(self.meta, self.config)
        self.timing = FrameTiming.for_frontend(self.config.frontend, SUBSAMPLING_RATE, 1)

    @property
    def sample_rate(self) -> int:
        return self.config.frontend.sample_rate

    @property
    def frontend(self) -> FrontendConfig:
        return self.config.frontend

    def quantized(self, mode: str = "int8") -> OnnxRecognizer:
        """The same model on its graphs of precision `mode` ("int8"), loaded on first use and kept;
        itself if it is that precision. The live recognizer's partial results use it."""
        if mode == self.precision:
            return self
        if mode not in self._other_precisions:
            folder, threads, graphs = self._source
            self._other_precisions[mode] = OnnxRecognizer(folder, mode, threads, graphs)
        return self._other_precisions[mode]

    def transcribe(self, audio: Audio, options: Optional[DecodingOptions] = None, **overrides) -> Result:
        """Decodes one recording of at most the graph's input (30 s); `overrides` replace fields of `options`."""
        return self.transcribe_batch([audio], options, **overrides)[0]

    def transcribe_batch(self, audios: Sequence[Audio], options: Optional[DecodingOptions] = None,
                         batch_size: int = 1, **overrides) -> list[Result]:
        """Results in input order; each is what the recording decoded alone gives. Every recording
        is encoded alone (batching fixed 30 s windows into one graph run encodes no faster on a
        CPU, benchmarks/runs/server-batching); then up to `batch_size` of them are searched
        together, their beams' rows in one decoder step, which reads the decoder's weights once
        for all of them."""
        options = with_overrides(options or self.default_options, overrides)
        self._check(options)  # also when there is nothing to decode: callers check options so
        size = max(1, batch_size)
        results: list[Result] = []
        for start in range(0, len(audios), size):
            batch = audios[start : start + size]
            samples = [self._load(audio) for audio in batch]
            windows = [self._window(audio, wave, options) for audio, wave in zip(batch, samples)]
            # Recordings in the short window and those in the long one are searched apart: one
            # search reads one array of cross-attention keys.
            decoded: dict[int, Result] = {}
            for window in sorted(set(windows)):
                rows = [i for i, w in enumerate(windows) if w == window]
                found = self._decode([samples[i] for i in rows], window, options)
                decoded.update(zip(rows, found))
            results += [decoded[i] for i in range(len(batch))]
        return results

    def _window(self, audio: Audio, wave: np.ndarray, options: DecodingOptions) -> int:
        """The encoder window, in frames, that `wave` is decoded in."""
        frames = self.model.frontend.num_frames(len(wave))
        if frames > options.pad_to_frames:
            raise AudioError(str(audio) if isinstance(audio, (str, Path)) else "<array>",
                             f"{len(wave) / self.sample_rate:.1f} s is longer than the model's "
                             f"{options.pad_to_frames * self.config.frontend.hop_length / self.sample_rate:.0f} s "
                             "window: use asr.transcribe_long, which cuts recordings at pauses")
        return options.window_frames(frames)

    def _decode(self, samples: list[np.ndarray], window: int, options: DecodingOptions) -> list[Result]:
        """Results of recordings that share one encoder window of `window` frames."""
        model, frontend = self.model, self.model.frontend
        began = time.perf_counter()
        log_probs, cross_kv = [], None
        for i, wave in enumerate(samples):
            encoded = model.encode(frontend.log_mel(wave, window)[None])
            frames = min(encoded.hidden.shape[1], (frontend.num_frames(len(wave)) - 1) // SUBSAMPLING_RATE + 1)
            log_probs.append(encoded.ctc_log_probs[0, :frames])  # the frames that hold audio
            # Every utterance's keys and values in one array, which the search reads in place; one
            # utterance's as the encoder gave them, not a copy.
            if len(samples) == 1:
                cross_kv = encoded.cross_kv
                continue
            if cross_kv is None:
                cross_kv = np.empty((encoded.cross_kv.shape[0], len(samples), *encoded.cross_kv.shape[2:]), np.float32)
            cross_kv[:, i] = encoded.cross_kv[:, 0]
        blank = self.config.blank_id
        window = max(1, round(NO_SPEECH_WINDOW_SECONDS / self.timing.shift))
        speech_probs = [float(densest_stretch((1 - np.exp(lp[:, blank]))[None], np.array([len(lp)]), window)[0])
                        for lp in log_probs]
        searched_from = time.perf_counter()

        # Under the no-speech gate: nothing, without a search.
        heard = [i for i, p in enumerate(speech_probs) if p >= options.no_speech_threshold or options.prefix]
        best: dict[int, Hypothesis] = {}
        no_speech: dict[int, float] = {}
        if heard:
            cross = _CrossAttention(model, cross_kv, heard)
            if decoder_rule_applies(options, self.config):  # first: the search moves what it no longer reads
                no_speech = dict(zip(heard, self._decoder_no_speech_probs(cross)))
            seconds = [len(samples[i]) / self.sample_rate for i in heard]
            for i, found in zip(heard, self._search(cross, seconds, options)):
                if i not in no_speech or not decoder_hears_no_speech(
                        no_speech[i], found.score, len(found.tokens), options.decoder_no_speech_threshold,
                        options.logprob_threshold):
                    best[i] = found
        searched = time.perf_counter()

        results = []
        for i, (wave, lp) in enumerate(zip(samples, log_probs)):
            silent = float(lp[:, blank].sum())
            hypothesis = best.get(i, Hypothesis((), silent, ctc_score=silent))
            results.append(self._result(hypothesis, lp, len(wave) / self.sample_rate, speech_probs[i],
                                        no_speech.get(i)))
        aligned = time.perf_counter()
        for result in results:
            result.timings = Timings(searched_from - began, searched - searched_from, aligned - searched, 0.0)
        return results

    def _result(self, best: Hypothesis, log_probs: np.ndarray, duration: float, speech_prob: float,
                no_speech: Optional[float]) -> Result:
        text = self.tokenizer.decode(best.tokens)
        shared = self.ctc_tokenizer is self.tokenizer
        labels = list(best.tokens) if shared else self.ctc_tokenizer.encode(text)
        stamps = time_stamps(log_probs, labels, self.ctc_tokenizer, self.timing, duration, self.config.blank_id,
                             None if shared else text)
        return Result(text=text, tokens=list(best.tokens), pieces=[self.tokenizer.piece(t) for t in best.tokens],
                      score=best.score, token_times=stamps.token_times, words=stamps.words,
                      alignment=stamps.alignment, alignment_score=stamps.path_score,
                      frame_timing=self.timing, duration=duration, speech_prob=speech_prob,
                      timings=Timings(0.0, 0.0, 0.0, 0.0), no_speech_prob=no_speech)

    def _search(self, cross: "_CrossAttention", seconds: list[float], options: DecodingOptions) -> list[Hypothesis]:
        frames = cross.kv.shape[3]
        limits = []
        for length in seconds:
            limit = max(1, int(options.max_length_ratio * frames))
            if options.max_tokens_per_second:
                limit = min(limit, math.ceil(options.max_tokens_per_second * max(1.0, length)))
            limits.append(limit)
        searched = beam_search(cross.step, self.model.empty_cache(1, cross.kv), self.config, options.beam_size,
                               limits, options.length_penalty, options.length_norm, options.prefix)
        return [Hypothesis(tuple(options.prefix) + hyps[0].tokens, hyps[0].score, hyps[0].ctc_score,
                           hyps[0].attention_score) for hyps in searched]

    def _decoder_no_speech_probs(self, cross: "_CrossAttention") -> list[float]:
        """Each utterance's decoder probability of its no-speech token right after <sos>, as
        `asr.decoding.decode` takes it."""
        every = list(range(cross.kv.shape[1]))  # before any search: every utterance in place
        sos = np.array([[self.config.sos_id]] * len(every))
        logits, _ = cross.step(sos, self.model.empty_cache(len(every), cross.kv), every)
        return np.exp(log_softmax(logits.astype(np.float32))[:, self.config.no_speech_id]).tolist()

    def _check(self, options: DecodingOptions) -> None:
        if options.mode != "attention":
            raise ConfigError(f"the ONNX Runtime path decodes in mode 'attention' only, not {options.mode!r}")
        if len(options.temperatures) > 1 or options.return_attention or options.speaker:
            raise ConfigError("the ONNX Runtime path has no temperature fallback, returns no attention weights and "
                              "follows no enrolled voice: use the PyTorch recognizer (asr.load_model) for them")
        if not options.pad_to_frames:
            raise ConfigError("the ONNX Runtime path decodes in a padded window: pad_to_frames must be set "
                              "(Whisper's is 3000)")

    def _load(self, audio: Audio) -> np.ndarray:
        if isinstance(audio, (str, Path)):
            samples = load_audio(audio, self.sample_rate)
        else:
            samples = prepare_waveform(audio, self.sample_rate, self.sample_rate)
        # Clips shorter than a feature frame are padded with silence, as the PyTorch recognizer pads them.
        return np.pad(samples, (0, max(0, self.config.frontend.win_length - len(samples))))


class _CrossAttention:
    """The cross-attention keys and values of the utterances searched together, as the decoder
    steps read them: the utterances a step runs are the first ones of one array, bound as views.
    When an utterance's search ends, those after it move forward in place (copying into memory
    already in use is fast; a fresh array for the rest cost more than the decoder steps it saved)."""

    def __init__(self, model: OnnxModel, cross_kv: np.ndarray, utterances: Sequence[int]):
        self.model = model
        self.kv = cross_kv if len(utterances) == cross_kv.shape[1] else np.take(cross_kv, utterances, axis=1)
        self._held = list(range(self.kv.shape[1]))  # which utterance each place of self.kv holds
        self._bound = self._bind()

    def step(self, tokens: np.ndarray, self_kv: np.ndarray, utterances: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """`asr.runtime.search.Step`: `utterances` index the utterances given to the constructor, in
        the order given (a search drops utterances, never reorders them)."""
        if list(utterances) != self._held:
            for place, utterance in enumerate(utterances):
                held = self._held.index(utterance)
                if held != place:  # held > place: moving forward in order overwrites only what has been moved
                    self.kv[:, place] = self.kv[:, held]
            self._held = list(utterances)
            self._bound = self._bind()
        return self.model.step(tokens, self_kv, self._bound)

    def _bind(self) -> dict:
        return self.model.bind_cross(self.kv[:, : len(self._held)])


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
