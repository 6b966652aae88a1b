"""Typed configuration dataclasses that round-trip through plain dicts and YAML."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, TypeVar

import yaml

from asr.errors import ConfigError

T = TypeVar("T")


# How a model's matrix products may be quantised for CPU inference (asr.model.quantize, asr.runtime).
QUANTIZE_MODES = ("int8",)


@dataclass
class FrontendConfig:
    # fbank: natural-log mels of uncentred frames (ESPnet/WeNet-like), normalised by global CMVN.
    # whisper: Whisper's log10 mels of centred frames, clamped to 8 decades below the utterance's peak.
    kind: str = "fbank"
    sample_rate: int = 16000
    n_mels: int = 80
    n_fft: int = 400  # 25 ms at 16 kHz
    hop_length: int = 160  # 10 ms
    win_length: int = 400


@dataclass
class AugmentConfig:
    # Bank manifests (asr.data.noise); only their training split is ever used here.
    noise_manifests: list[str] = field(default_factory=list)
    rir_manifests: list[str] = field(default_factory=list)
    speeds: list[float] = field(default_factory=lambda: [0.9, 1.0, 1.1])  # one drawn uniformly per utterance
    reverb_prob: float = 0.3
    # At most one kind of noise per utterance, so these four probabilities add up to at most 1.
    noise_prob: float = 0.45  # a recording from the noise bank
    colored_noise_prob: float = 0.1  # white, pink or brown
    babble_prob: float = 0.2  # other training utterances talking at once
    music_prob: float = 0.0  # a recording from music_manifests, or a synthetic piece (asr.data.music) without them
    # Recorded music (bank manifests, their training split): the shared bank's music is test-only.
    music_manifests: list[str] = field(default_factory=list)
    snr_min_db: float = -5.0
    snr_max_db: float = 20.0
    babble_min_talkers: int = 3
    babble_max_talkers: int = 8
    babble_pool_size: int = 100  # training utterances kept in memory as babble voices (~0.8 MB per 12 s one)
    volume_prob: float = 0.5
    gain_min_db: float = -12.0
    gain_max_db: float = 6.0
    clip_prob: float = 0.05
    clip_max_fraction: float = 0.02  # at most this share of an utterance's samples is clipped
    cache_seconds: float = 1800.0  # decoded audio kept in memory per process, for each of noise, RIRs and babble voices
    # Epochs before this one train on clean audio: a small model learns to align on clean speech
    # first, then to hold on to it in noise. Until then a run is exactly the unaugmented run.
    start_epoch: int = 0

    def __post_init__(self) -> None:
        probabilities = {"reverb_prob": self.reverb_prob, "noise_prob": self.noise_prob,
                         "colored_noise_prob": self.colored_noise_prob, "babble_prob": self.babble_prob,
                         "music_prob": self.music_prob, "volume_prob": self.volume_prob, "clip_prob": self.clip_prob}
        for name, p in probabilities.items():
            if not 0.0 <= p <= 1.0:
                raise ConfigError(f"AugmentConfig.{name} must be in [0, 1], got {p}")
        if self.noise_prob + self.colored_noise_prob + self.babble_prob + self.music_prob > 1.0 + 1e-9:
            raise ConfigError("AugmentConfig: noise_prob + colored_noise_prob + babble_prob + music_prob must be at most 1")
        if not self.speeds or any(not 0.5 <= s <= 2.0 for s in self.speeds):
            raise ConfigError(f"AugmentConfig.speeds must be factors in [0.5, 2], got {self.speeds}")
        if self.snr_min_db > self.snr_max_db or self.gain_min_db > self.gain_max_db:
            raise ConfigError("AugmentConfig: each *_min_db must be at most its *_max_db")
        if not 1 <= self.babble_min_talkers <= self.babble_max_talkers:
            raise ConfigError("AugmentConfig: need 1 <= babble_min_talkers <= babble_max_talkers")
        if self.start_epoch < 0:
            raise ConfigError(f"AugmentConfig.start_epoch must be at least 0, got {self.start_epoch}")
        if not 0.0 < self.clip_max_fraction < 1.0:
            raise ConfigError(f"AugmentConfig.clip_max_fraction must be in (0, 1), got {self.clip_max_fraction}")


@dataclass
class SpecAugmentConfig:
    num_freq_masks: int = 2
    max_freq_width: int = 27
    num_time_masks: int = 2
    max_time_width: int = 40
    # A time mask never covers more than this share of an utterance, so short clips keep their content.
    max_time_ratio: float = 0.2
    time_warp: int = 0  # 0 disables time warping


@dataclass
class EncoderConfig:
    subsampling: str = "conv2d4"  # conv2d4 | conv2d6 | conv2d8 | conv1d2
    d_model: int = 256
    num_heads: int = 4
    ffn_dim: int = 1024
    num_layers: int = 6
    dropout: float = 0.1
    attention_dropout: float = 0.0
    positional: str = "abs"  # abs (sinusoidal, added) | rel (Transformer-XL relative, in attention)
    # Conditioning on an enrolled voice (asr.model.speaker); None: the encoder hears everyone alike.
    speaker: Optional[SpeakerConfig] = None


@dataclass
class SpeakerConfig:
    """Adapters before every encoder layer, driven by a speaker embedding of the enrolled voice.
    Without an enrollment they are skipped, so the encoder is exactly the unconditioned one."""
    embedding_dim: int = 256  # resemblyzer's GE2E d-vector (asr.enrollment)
    adapter_dim: int = 256


@dataclass
class DecoderConfig:
    num_heads: int = 4
    ffn_dim: int = 1024
    num_layers: int = 3
    dropout: float = 0.1
    attention_dropout: float = 0.0
    max_length: int = 448  # longest token sequence the decoder positions cover


@dataclass
class ModelConfig:
    vocab_size: int = 0  # set from the tokenizer when the model is built
    frontend: FrontendConfig = field(default_factory=FrontendConfig)
    specaugment: Optional[SpecAugmentConfig] = field(default_factory=SpecAugmentConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    ctc_weight: float = 0.3
    label_smoothing: float = 0.1
    blank_id: int = 0
    sos_id: int = -1  # start and end of sentence share one id, as in ESPnet
    eos_id: int = -1
    # Tokens fed after <sos> before the transcript (Whisper: <|notimestamps|>); empty for our own models.
    decoder_prompt: list[int] = field(default_factory=list)
    # Size of the CTC vocabulary when it differs from the decoder's (a character CTC head on a BPE
    # decoder, as for imported Whisper models); 0 means the same vocabulary.
    ctc_vocab_size: int = 0
    # Decoder tokens never to output (Whisper's non-speech symbols, from its generation config).
    suppress_ids: list[int] = field(default_factory=list)
    # The token whose probability right after <sos> is the decoder's own estimate that the audio holds
    # no speech (Whisper's <|nospeech|>, <|nocaptions|> in English-only models); -1: the model has none.
    no_speech_id: int = -1


@dataclass
class TokenizerConfig:
    kind: str = "char"  # char | bpe | unigram
    vocab_size: int = 0  # for sentencepiece kinds
    lowercase: bool = True


@dataclass
class DataConfig:
    train: list[str] = field(default_factory=list)  # JSONL manifests or Kaldi data dirs
    dev: list[str] = field(default_factory=list)
    max_batch_seconds: float = 120.0  # total audio seconds per batch (length bucketing)
    max_utterance_seconds: float = 30.0
    num_workers: int = 0
    cmvn_max_utterances: int = 2000  # utterances used to estimate global mean/variance
    augment: Optional[AugmentConfig] = None  # waveform augmentation of training data (noise, reverb, speed)
    # Manifests of training clips that hold no speech (noise, silence): their transcript, whatever
    # the manifest says, is empty, so CTC learns all-blank and the decoder to end at once.
    no_speech: list[str] = field(default_factory=list)


@dataclass
class OptimConfig:
    lr: float = 1e-3
    weight_decay: float = 1e-6
    scheduler: str = "noam"  # noam | cosine | constant
    warmup_steps: int = 1000
    max_epochs: int = 50
    max_steps: int = 0  # 0: no limit besides max_epochs
    accum_grad: int = 1
    grad_clip: float = 5.0
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast)
    # Learning-rate multipliers by parameter-name prefix, e.g. {"ctc.": 10.0} for a fresh head on a
    # pretrained model; the first matching prefix applies.
    lr_scale: dict[str, float] = field(default_factory=dict)


@dataclass
class InitConfig:
    """Start from pretrained weights: the architecture and tokenizers come from the source, and
    only the model's training settings (specaugment, ctc_weight, label_smoothing) from TrainConfig."""

    source: str = ""  # a model folder, or for kind whisper a CTranslate2 / Hugging Face folder or OpenAI .pt
    kind: str = "model"  # model | whisper
    freeze: list[str] = field(default_factory=list)  # parameter-name prefixes kept fixed, e.g. "encoder.layers.0."


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    init: InitConfig = field(default_factory=InitConfig)
    exp_dir: str = "exp/run"
    seed: int = 1234
    threads: int = 0  # torch intra-op threads per process; 0: leave torch's default
    log_every: int = 10
    checkpoint_every: int = 0  # steps; 0: only at the end of each epoch
    keep_checkpoints: int = 5


def to_dict(config: Any) -> dict:
    return dataclasses.asdict(config)


def from_dict(cls: type[T], data: dict | None) -> T:
    """Builds dataclass `cls` from a nested dict, rejecting unknown keys by name."""
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise ConfigError(f"{cls.__name__}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown keys {unknown}; known: {sorted(names)}")
    kwargs = {}
    for key, value in data.items():
        kwargs[key] = _convert(hints[key], value, f"{cls.__name__}.{key}")
    return cls(**kwargs)


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union:  # Optional[X]
        if value is None:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, where)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value)
    if origin is list:
        if not isinstance(value, list):
            value = [value]
        return [_convert(args[0], v, where) for v in value]
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and not isinstance(value, hint):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
    return value


def save_yaml(config: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False))


def load_yaml(cls: type[T], path: str | Path) -> T:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"cannot read config {path}: {err}") from err
    return from_dict(cls, data or {})
