"""The teacher's recipe (recipes/whisper_ctc/gate_head.py): its CTC head taken back from a student."""

import sys

import pytest
import torch

from asr.checkpoint import load_model_dir, save_model
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
