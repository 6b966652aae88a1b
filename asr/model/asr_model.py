"""The hybrid CTC/attention model: waveform in, encoder states, CTC and decoder outputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from asr.config import ModelConfig
from asr.features import GlobalCMVN, SpecAugment, build_frontend
from asr.model.ctc import CTCHead
from asr.model.decoder import TransformerDecoder
from asr.model.encoder import EncoderOutput, TransformerEncoder, lengths_to_mask

IGNORE_ID = -1


@dataclass
class LossOutput:
    loss: Tensor  # per utterance, averaged over the batch
    ctc: Tensor
    attention: Tensor
    accuracy: Tensor  # share of decoder tokens predicted right under teacher forcing


class ASRModel(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.vocab_size <= 0 or config.sos_id < 0 or config.eos_id < 0:
            raise ValueError("ModelConfig needs vocab_size, sos_id and eos_id (set from the tokenizer)")
        self.config = config
        self.frontend = build_frontend(config.frontend)
        self.cmvn = GlobalCMVN(config.frontend.n_mels)
        self.specaugment = SpecAugment(config.specaugment) if config.specaugment else None
        self.encoder = TransformerEncoder(config.encoder, config.frontend.n_mels)
        self.ctc = CTCHead(config.encoder.d_model, config.ctc_vocab_size or config.vocab_size, config.blank_id)
        self.decoder = TransformerDecoder(config.decoder, config.encoder.d_model, config.vocab_size)

    def features(self, waveforms: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Normalised log-mel features with padded frames zeroed, SpecAugment when training."""
        feats, feat_lengths = self.frontend(waveforms, lengths)
        feats = self.cmvn(feats)
        if self.specaugment is not None:
            feats = self.specaugment(feats, feat_lengths)
        valid = lengths_to_mask(feat_lengths, feats.shape[1])
        return feats * valid[..., None].to(feats.dtype), feat_lengths

    def encode(self, waveforms: Tensor, lengths: Tensor, need_weights: bool = False,
               pad_to_frames: int = 0, speaker: Optional[Tensor] = None) -> EncoderOutput:
        """Encoder states of a padded batch. `pad_to_frames` pads the features with zeros and lets
        the encoder attend to the padding, as Whisper does with its fixed 30 s (3000-frame) input.
        `speaker` (B, embedding_dim): an enrolled voice per row to follow (asr.enrollment)."""
        feats, feat_lengths = self.features(waveforms, lengths)
        if pad_to_frames >= feats.shape[1]:
            feats = F.pad(feats, (0, 0, 0, pad_to_frames - feats.shape[1]))
            return self.encoder(feats, None, need_weights, speaker)  # every frame is input, the padding too
        return self.encoder(feats, feat_lengths, need_weights, speaker)

    def encoded_frames(self, lengths: Tensor) -> Tensor:
        """Encoder frames that hold audio, for waveforms of `lengths` samples (without padding)."""
        return self.encoder.subsampling.output_lengths(self.frontend.num_frames(lengths)).clamp(min=1)

    def decoder_io(self, targets: Tensor, target_lengths: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Teacher-forcing input (<sos> prompt y) and output (y <eos>, the prompt positions ignored),
        padded with eos / IGNORE_ID; returns them with the input lengths."""
        b = targets.shape[0]
        prefix = targets.new_tensor([self.config.sos_id, *self.config.decoder_prompt]).expand(b, -1)
        body = targets.masked_fill(targets == IGNORE_ID, self.config.eos_id)
        tokens_in = torch.cat([prefix, body], dim=1)
        ignored = targets.new_full((b, prefix.shape[1] - 1), IGNORE_ID)
        tokens_out = torch.cat([ignored, targets, targets.new_full((b, 1), IGNORE_ID)], dim=1)
        tokens_out[torch.arange(b), ignored.shape[1] + target_lengths] = self.config.eos_id
        return tokens_in, tokens_out, target_lengths + prefix.shape[1]

    def forward(self, waveforms: Tensor, lengths: Tensor, targets: Tensor, target_lengths: Tensor,
                ctc_targets: Optional[Tensor] = None, ctc_target_lengths: Optional[Tensor] = None) -> LossOutput:
        """Hybrid loss: ctc_weight * CTC + (1 - ctc_weight) * label-smoothed cross-entropy.

        `ctc_targets` are needed when the CTC head has its own vocabulary (ctc_vocab_size)."""
        if ctc_targets is None:
            ctc_targets, ctc_target_lengths = targets, target_lengths
        enc = self.encode(waveforms, lengths)
        batch = waveforms.shape[0]
        ctc_log_probs = self.ctc.log_probs(enc.hidden)
        ctc_loss = self.ctc.loss(ctc_log_probs, enc.lengths, ctc_targets, ctc_target_lengths) / batch
        tokens_in, tokens_out, in_lengths = self.decoder_io(targets, target_lengths)
        logits = self.decoder(tokens_in, in_lengths, enc.hidden, enc.mask).logits.float()
        att_loss = F.cross_entropy(
            logits.transpose(1, 2),
            tokens_out,
            ignore_index=IGNORE_ID,
            label_smoothing=self.config.label_smoothing,
            reduction="sum",
        ) / batch
        w = self.config.ctc_weight
        loss = w * ctc_loss + (1 - w) * att_loss
        valid = tokens_out != IGNORE_ID
        accuracy = ((logits.argmax(-1) == tokens_out) & valid).sum() / valid.sum().clamp(min=1)
        return LossOutput(loss, ctc_loss.detach(), att_loss.detach(), accuracy.detach())
