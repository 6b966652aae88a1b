"""Which decoder tokens a search may output, and whether CTC shares the decoder's vocabulary."""

from __future__ import annotations

from asr.config import ModelConfig


def never_emitted(config: ModelConfig) -> list[int]:
    """Decoder tokens that are never outputs: <sos>, and ids after <eos> (special tokens, as in
    Whisper's vocabulary), the model's suppressed tokens, and the CTC blank when CTC and decoder
    share one vocabulary."""
    never = {config.sos_id, *range(config.eos_id + 1, config.vocab_size), *config.suppress_ids} - {config.eos_id}
    if ctc_shares_vocabulary(config):
        never.add(config.blank_id)
    return sorted(never)


def ctc_shares_vocabulary(config: ModelConfig) -> bool:
    """Whether CTC labels are decoder tokens (not so for a character CTC head on a BPE decoder)."""
    return config.ctc_vocab_size in (0, config.vocab_size)


def token_room(config: ModelConfig) -> int:
    """The longest token sequence the decoder's position table leaves room for after <sos> and the prompt."""
    return config.decoder.max_length - 1 - len(config.decoder_prompt)
