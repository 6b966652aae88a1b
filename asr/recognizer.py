"""The user-facing recognizer: a model folder in, transcripts with time stamps out."""

from __future__ import annotations

import copy
import threading
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch

from asr.audio import load_audio, prepare_waveform
from asr.checkpoint import load_model_dir
from asr.decoding.decode import decode
from asr.decoding.options import DecodingOptions, with_overrides
from asr.decoding.result import Result
from asr.errors import CheckpointError, ConfigError
from asr.model_folder import DEFAULT_MODEL, load_ctc_tokenizer, model_decoding, resolve_model
from asr.model.asr_model import ASRModel
from asr.config import QUANTIZE_MODES, FrontendConfig
from asr.model.quantize import quantize as quantize_model
from asr.model.speaker import speaker_conditioning
from asr.tokenizer import Tokenizer

# Models that ship inside the package, by name.

# A path to any audio file soundfile reads, or samples (1-D, or frames x channels) at the model's rate.
Audio = Union[str, Path, np.ndarray, torch.Tensor]


class Recognizer:
    """A model with its tokenizer(s) and its recommended decoding options (model.yaml's `decoding`)."""

    def __init__(self, model: ASRModel, tokenizer: Tokenizer, meta: Optional[dict] = None,
                 ctc_tokenizer: Optional[Tokenizer] = None, quantization: Optional[str] = None):
        ctc_vocabulary = (ctc_tokenizer or tokenizer).vocab_size
        if model.ctc.proj.out_features != ctc_vocabulary:
            raise CheckpointError(f"the CTC head has {model.ctc.proj.out_features} outputs but its tokenizer has "
                                  f"{ctc_vocabulary} tokens: give the CTC head's own tokenizer (ctc_tokenizer)")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.ctc_tokenizer = ctc_tokenizer
        self.meta = meta or {}
        self.quantization = quantization  # how `model` was quantised (asr.model.quantize), None: not at all
        self._quantized: dict[str, Recognizer] = {}
        self._quantizing = threading.Lock()  # a server's threads may ask at once
        self.default_options = model_decoding(self.meta, model.config)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def sample_rate(self) -> int:
        return self.model.config.frontend.sample_rate

    @property
    def frontend(self) -> FrontendConfig:
        return self.model.config.frontend

    def quantized(self, mode: str = "int8") -> Recognizer:
        """This recognizer with a quantised copy of its model (asr.model.quantize), made on first use
        and kept; itself if it is quantised so already, or not on the CPU (quantised kernels are CPU ones).
        The live recognizer's partial results use it: its decoder reads a quarter of the bytes."""
        if mode == self.quantization or self.device.type != "cpu":
            return self
        with self._quantizing:
            if mode not in self._quantized:
                model = quantize_model(copy.deepcopy(self.model), mode)
                self._quantized[mode] = Recognizer(model, self.tokenizer, self.meta, self.ctc_tokenizer, mode)
            return self._quantized[mode]

    def transcribe(self, audio: Audio, options: Optional[DecodingOptions] = None,
                   enroll: Union[Audio, Sequence[Audio], None] = None, **overrides) -> Result:
        """Decodes one recording; `overrides` replace fields of `options`, e.g. mode="ctc_greedy".
        `enroll`: a few seconds of the person to transcribe (one recording or several), whose voice
        the model then follows over others; the same as speaker=self.enroll(enroll)."""
        if enroll is not None:
            overrides["speaker"] = self.enroll(enroll)
        return self.transcribe_batch([audio], options, **overrides)[0]

    def enroll(self, audio: Union[Audio, Sequence[Audio]]) -> tuple[float, ...]:
        """The speaker embedding of the voice in `audio` (one recording or a list of them, the same
        person), for DecodingOptions.speaker. EnrollmentError when the model has no speaker adapters
        or the audio holds under a second of speech."""
        from asr.enrollment import speaker_embedding

        speaker_conditioning(self.model.config)  # before the costly embedding
        samples = list(audio) if isinstance(audio, (list, tuple)) else [audio]
        source = ", ".join(str(a) for a in samples if isinstance(a, (str, Path))) or "enrollment audio"
        return tuple(speaker_embedding([self._load(a) for a in samples], source).tolist())

    def transcribe_batch(
        self, audios: Sequence[Audio], options: Optional[DecodingOptions] = None, batch_size: int = 8, **overrides
    ) -> list[Result]:
        """Decodes recordings `batch_size` at a time (similar lengths together); results in input order.

        Raises AudioError naming the first input that cannot be read.
        """
        options = with_overrides(options or self.default_options, overrides)
        waveforms = [self._load(audio) for audio in audios]
        order = sorted(range(len(waveforms)), key=lambda i: len(waveforms[i]), reverse=True)
        results: list[Optional[Result]] = [None] * len(waveforms)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            lengths = torch.tensor([len(waveforms[i]) for i in chunk])
            batch = torch.zeros(len(chunk), int(lengths.max()))
            for row, i in enumerate(chunk):
                batch[row, : len(waveforms[i])] = torch.from_numpy(waveforms[i])
            decoded = decode(self.model, self.tokenizer, batch.to(self.device), lengths.to(self.device), options,
                             self.ctc_tokenizer)
            for i, result in zip(chunk, decoded):
                results[i] = result
        return results  # type: ignore[return-value]  # every slot is filled above

    def _load(self, audio: Audio) -> np.ndarray:
        if isinstance(audio, (str, Path)):
            samples = load_audio(audio, self.sample_rate)
        else:
            if isinstance(audio, torch.Tensor):
                audio = audio.detach().cpu().numpy()
            samples = prepare_waveform(audio, self.sample_rate, self.sample_rate)
        # Clips shorter than one encoder frame's receptive field are padded with silence.
        frontend = self.model.config.frontend
        shortest = (self.model.encoder.subsampling.min_input_frames() - 1) * frontend.hop_length + frontend.win_length
        return np.pad(samples, (0, max(0, shortest - len(samples))))


def load_model(name_or_path: Union[str, Path] = DEFAULT_MODEL, device: Union[str, torch.device] = "cpu",
               quantize: Optional[str] = None) -> Recognizer:
    """A Recognizer for a bundled model name (see `BUNDLED_MODELS`) or a model folder (as written
    by `asr train` or `asr average`). `quantize="int8"` quantises its Linear layers for faster
    CPU inference (asr.model.quantize), at a small cost in accuracy."""
    path = resolve_model(name_or_path)
    if quantize is not None and quantize not in QUANTIZE_MODES:  # before the costly load
        raise ConfigError(f"unknown quantisation {quantize!r}; choose from {', '.join(QUANTIZE_MODES)}")
    model, tokenizer, meta = load_model_dir(path, device)
    if quantize is not None:
        model = quantize_model(model, quantize)
    ctc_tokenizer = load_ctc_tokenizer(path, meta, tokenizer)
    return Recognizer(model, tokenizer, meta, None if ctc_tokenizer is tokenizer else ctc_tokenizer, quantize)
