"""A model folder's files and description, read without torch: what both runtimes load from.

A folder holds model.yaml (config, tokenizer description, checksums, recommended decoding), the
tokenizer files, a CTC tokenizer in ctc/ when the CTC head has its own vocabulary, the weights
(model.safetensors, read by asr.checkpoint with torch) and, when exported, the ONNX graphs
(asr.runtime).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml

from asr.config import ModelConfig, from_dict
from asr.decoding.options import DecodingOptions
from asr.errors import CheckpointError, ConfigError, TokenizerError
from asr.tokenizer import Tokenizer, load_tokenizer

WEIGHTS_FILE = "model.safetensors"
META_FILE = "model.yaml"
FORMAT_VERSION = 1
CTC_TOKENIZER_DIR = "ctc"
MODELS_DIR = Path(__file__).resolve().parent / "models"
BUNDLED_MODELS = {path.name: path for path in sorted(MODELS_DIR.glob("*")) if (path / META_FILE).is_file()}
DEFAULT_MODEL = "whisper-tiny-ctc"
# libyaml's parser where PyYAML was built with it (its wheels are): the same safe loading, read a
# tenth as fast, which start-up notices (model.yaml is read at every start).
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def resolve_model(name_or_path: str | Path) -> Path:
    """The folder of a bundled model name, or the model folder given; CheckpointError if neither."""
    path = BUNDLED_MODELS.get(str(name_or_path), Path(name_or_path))
    if not path.exists():
        names = ", ".join(sorted(BUNDLED_MODELS))
        raise CheckpointError(f"unknown model {str(name_or_path)!r}: neither a model folder nor a bundled model ({names})")
    return path


def read_meta(directory: Path) -> dict:
    """model.yaml's contents."""
    meta_path = directory / META_FILE
    try:
        meta = yaml.load(meta_path.read_text(), Loader=YAML_LOADER)
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{meta_path}: invalid model description ({err})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{meta_path}: invalid model description (not a mapping)")
    return meta


def read_description(directory: Path) -> tuple[dict, ModelConfig, Tokenizer]:
    """model.yaml's contents, the model config and the decoder's tokenizer."""
    meta_path = directory / META_FILE
    meta = read_meta(directory)
    try:
        config = from_dict(ModelConfig, meta["model"])
        check_tokenizer_file(directory, meta["tokenizer"])
        tokenizer = load_tokenizer(directory, meta["tokenizer"])
    except (OSError, UnicodeDecodeError, KeyError, TypeError, ConfigError, TokenizerError) as err:
        raise CheckpointError(f"{meta_path}: invalid model description ({err})") from None
    return meta, config, tokenizer


def model_decoding(meta: dict, config: ModelConfig) -> DecodingOptions:
    """The decoding a model's description sets (its `decoding`); CheckpointError where it names an
    unknown field, or asks for Whisper's no-speech rule of a model without a no-speech token, where
    the rule would never act (a folder derived from one written before the token was recorded)."""
    try:
        options = DecodingOptions(**meta.get("decoding", {}))
    except TypeError as err:
        raise CheckpointError(f"invalid decoding settings in the model description: {err}") from None
    if options.decoder_no_speech_threshold and config.no_speech_id < 0:
        raise CheckpointError("the model description sets decoder_no_speech_threshold, but the model has no "
                              "no-speech token (model.no_speech_id): the rule would never act")
    return options


def with_checksum(directory: Path, tokenizer_meta: dict) -> dict:
    """A tokenizer's description (from Tokenizer.save) with the checksum of the file it names."""
    return {**tokenizer_meta, "sha256": sha256_of((directory / tokenizer_meta["file"]).read_bytes())}


def check_tokenizer_file(directory: Path, tokenizer_meta: dict) -> None:
    """Raises CheckpointError unless the tokenizer file lies in `directory` and, where the folder
    records its checksum (folders written before it did do not), matches it."""
    name = tokenizer_meta["file"]
    if not isinstance(name, str) or Path(name).name != name:
        raise CheckpointError(f"{directory}: tokenizer file {name!r} lies outside the model folder")
    path = directory / name
    if "sha256" in tokenizer_meta and (not path.is_file() or sha256_of(path.read_bytes()) != tokenizer_meta["sha256"]):
        raise CheckpointError(f"{path}: missing, or checksum mismatch (truncated or modified file)")


def load_ctc_tokenizer(directory: str | Path, meta: dict, tokenizer: Tokenizer) -> Tokenizer:
    """The CTC head's tokenizer of a model folder: its own if it has one, else the decoder's."""
    if "ctc_tokenizer" not in meta:
        return tokenizer
    try:
        check_tokenizer_file(Path(directory) / CTC_TOKENIZER_DIR, meta["ctc_tokenizer"])
        return load_tokenizer(Path(directory) / CTC_TOKENIZER_DIR, meta["ctc_tokenizer"])
    except (UnicodeDecodeError, KeyError, TypeError, TokenizerError) as err:
        raise CheckpointError(f"{directory}: invalid CTC tokenizer ({err})") from None
