"""An experiment folder: its config, tokenizer, CMVN statistics, checkpoints and exported models.

    exp_dir/
      train.yaml           the TrainConfig the run started with
      tokenizer/           trained once from the training text, reused on resume
      cmvn.json            global feature statistics of the training data
      checkpoints/step_*.pt (+ .sha256)
      train_log.csv, valid_log.csv, skipped.tsv
      model/               the final model folder (asr.load_model reads it)
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

import torch
import yaml

from asr.audio import load_audio
from asr.checkpoint import (
    average_state_dicts, list_checkpoints, load_checkpoint, load_model_dir, save_model,
)
from asr.config import InitConfig, TrainConfig, from_dict
from asr.features import SpecAugment
from asr.data.manifest import Utterance
from asr.errors import AudioError, CheckpointError, ConfigError
from asr.atomic import write_atomic
from asr.model_folder import load_ctc_tokenizer
from asr.features import build_frontend
from asr.model.asr_model import ASRModel
from asr.tokenizer import Tokenizer, load_tokenizer, train_tokenizer

log = logging.getLogger(__name__)


class Experiment:
    def __init__(self, exp_dir: str | Path):
        self.dir = Path(exp_dir)
        self.checkpoints = self.dir / "checkpoints"

    @property
    def tokenizer_dir(self) -> Path:
        return self.dir / "tokenizer"

    @property
    def cmvn_path(self) -> Path:
        return self.dir / "cmvn.json"

    def load_config(self) -> TrainConfig:
        return from_dict(TrainConfig, yaml.safe_load((self.dir / "train.yaml").read_text()))

    def prepare_tokenizer(self, config: TrainConfig, utterances: list[Utterance]) -> Tokenizer:
        meta_path = self.tokenizer_dir / "tokenizer.yaml"
        if meta_path.is_file():
            return load_tokenizer(self.tokenizer_dir, yaml.safe_load(meta_path.read_text()))
        tokenizer = train_tokenizer([u.text for u in utterances if u.text], config.tokenizer)
        self.tokenizer_dir.mkdir(parents=True, exist_ok=True)
        meta = tokenizer.save(self.tokenizer_dir)
        write_atomic(meta_path, yaml.safe_dump(meta).encode())
        log.info("trained a %s tokenizer with %d tokens", config.tokenizer.kind, tokenizer.vocab_size)
        return tokenizer

    def prepare_cmvn(self, config: TrainConfig, utterances: list[Utterance]) -> dict:
        """Feature sums over (a fixed sample of) the training data, computed once per experiment."""
        if self.cmvn_path.is_file():
            return json.loads(self.cmvn_path.read_text())
        frontend = build_frontend(config.model.frontend)
        generator = torch.Generator().manual_seed(config.seed)
        order = torch.randperm(len(utterances), generator=generator)[: config.data.cmvn_max_utterances]
        total = torch.zeros(config.model.frontend.n_mels, dtype=torch.float64)
        total_sq = torch.zeros_like(total)
        frames = 0
        for index in order.tolist():
            try:
                wave = torch.from_numpy(load_audio(utterances[index].audio, config.model.frontend.sample_rate))
            except AudioError:
                continue  # reported when the data loader meets it
            with torch.no_grad():
                feats, _ = frontend(wave[None], torch.tensor([len(wave)]))
            feats = feats[0].double()
            total += feats.sum(0)
            total_sq += (feats**2).sum(0)
            frames += feats.shape[0]
        if frames == 0:
            raise AudioError("training data", "no readable audio to compute feature statistics from")
        stats = {"sum": total.tolist(), "sum_sq": total_sq.tolist(), "frames": frames}
        write_atomic(self.cmvn_path, json.dumps(stats).encode())
        return stats

    def export(self, model: ASRModel, tokenizer: Tokenizer, name: str = "model", info: dict | None = None,
               ctc_tokenizer: Optional[Tokenizer] = None) -> Path:
        return save_model(model, tokenizer, self.dir / name, info, ctc_tokenizer)

    def build_model(self, config: TrainConfig, utterances: list[Utterance]) -> tuple[ASRModel, Tokenizer, Optional[Tokenizer], dict]:
        """The model to train (fresh, or from config.init), its tokenizer(s) and notes to export with it."""
        if config.init.source:
            model, tokenizer, ctc_tokenizer, info = load_initial(config.init)
            model.config.ctc_weight = config.model.ctc_weight
            model.config.label_smoothing = config.model.label_smoothing
            model.config.specaugment = config.model.specaugment
            model.specaugment = SpecAugment(config.model.specaugment) if config.model.specaugment else None
            return model, tokenizer, ctc_tokenizer, info
        tokenizer = self.prepare_tokenizer(config, utterances)
        model_config = config.model
        model_config.vocab_size = tokenizer.vocab_size
        model_config.sos_id = model_config.eos_id = tokenizer.sos_id
        model_config.blank_id = tokenizer.blank_id
        model = ASRModel(model_config)
        cmvn = self.prepare_cmvn(config, utterances)
        model.cmvn.set_stats(torch.tensor(cmvn["sum"]), torch.tensor(cmvn["sum_sq"]), cmvn["frames"])
        return model, tokenizer, None, {}

    def average(self, num: int, by: str = "last") -> Path:
        """Averages `num` checkpoints (the last ones, or the best by validation loss) into a model folder."""
        paths = list_checkpoints(self.checkpoints)
        if by == "best":
            scored = []
            for path in paths:
                try:
                    loss = load_checkpoint(path).get("valid_loss")
                except CheckpointError as err:
                    log.warning("skipping %s", err)
                    continue
                if loss is not None:
                    scored.append((loss, path))
            chosen = [p for _, p in sorted(scored)[:num]]
        elif by == "last":
            chosen = paths[-num:]
        else:
            raise ValueError(f"unknown selection {by!r}; choose last or best")
        if not chosen:
            raise CheckpointError(f"{self.checkpoints}: no checkpoints to average")
        model, tokenizer, ctc_tokenizer, info = self.build_model(self.load_config(), [])
        model.load_state_dict(average_state_dicts(sorted(chosen)))
        info = {**info, "averaged": [p.name for p in sorted(chosen)], "selection": by}
        return self.export(model, tokenizer, f"model_avg{len(chosen)}_{by}", info, ctc_tokenizer)


def load_initial(init: InitConfig) -> tuple[ASRModel, Tokenizer, Optional[Tokenizer], dict]:
    """Pretrained starting weights: an `asr` model folder or an imported Whisper checkpoint."""
    if init.kind == "whisper":
        from asr.importers.whisper import ctc_tokenizer, import_whisper

        model, tokenizer, notes = import_whisper(init.source)
        return model, tokenizer, ctc_tokenizer(), notes
    if init.kind == "model":
        model, tokenizer, meta = load_model_dir(init.source)
        ctc = load_ctc_tokenizer(init.source, meta, tokenizer)
        return model, tokenizer, None if ctc is tokenizer else ctc, dict(meta.get("info", {}))
    raise ConfigError(f"unknown init.kind {init.kind!r}; choose model or whisper")
