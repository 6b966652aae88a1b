"""The teacher's recipe (recipes/whisper_ctc/gate_head.py): its CTC head taken back from a student."""

import sys

import numpy as np
import pytest
import torch

from asr.checkpoint import load_model_dir, save_model
from asr.decoding.options import DecodingOptions
from asr.importers.whisper import BUNDLED, ctc_tokenizer, import_whisper
from asr.model_folder import resolve_model
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "recipes" / "whisper_ctc"))
import gate_head  # noqa: E402


@pytest.fixture(scope="module")
def imported():
    model, tokenizer, _ = import_whisper(BUNDLED)
    return model, tokenizer


def test_the_head_is_taken_from_a_student_whose_decoder_is_tiny_en(imported):
    model, _ = imported
    default, _, _ = load_model_dir(resolve_model("whisper-tiny-ctc"))
    assert not torch.equal(model.ctc.proj.weight, default.ctc.proj.weight)  # the import's head is untrained
    gate_head.head_of(model, resolve_model("whisper-tiny-ctc"))
    assert torch.equal(model.ctc.proj.weight, default.ctc.proj.weight)
    assert torch.equal(model.ctc.proj.bias, default.ctc.proj.bias)


def test_a_student_with_another_decoder_is_refused(imported, tmp_path):
    model, tokenizer = imported
    other, _, _ = load_model_dir(resolve_model("whisper-tiny-ctc"))
    with torch.no_grad():
        next(other.decoder.parameters()).add_(0.01)
    folder = save_model(other, tokenizer, tmp_path / "other", {}, ctc_tokenizer())
    with pytest.raises(SystemExit, match="decoder is not tiny.en's"):
        gate_head.head_of(model, folder)


def test_features_are_cached_in_the_window_decoding_reads_each_recording_in(imported, tmp_path):
    """--encoder-from: a short recording's states are those of the short window, a long one's those
    of the 30 s window, as a model folder with short_pad_to_frames decodes them."""
    model, _ = imported
    model.eval()
    rng = np.random.default_rng(0)
    short, long = (0.1 * rng.standard_normal(s * gate_head.SAMPLE_RATE).astype(np.float32) for s in (3, 12))
    decoding = DecodingOptions(pad_to_frames=3000, short_pad_to_frames=1000)
    examples = [("clean", long, "a"), ("clean", short, "b")]
    gate_head.cache_features(model, ctc_tokenizer(), examples, tmp_path, None, 0, decoding)
    (long_states, _), (short_states, _) = gate_head.load_cache(tmp_path)
    assert torch.equal(short_states, gate_head.encode(model, [short], 1000)[0])
    assert torch.equal(long_states, gate_head.encode(model, [long], 3000)[0])
    assert not torch.allclose(short_states.float(), gate_head.encode(model, [short], 3000)[0].float(), atol=1e-2)
