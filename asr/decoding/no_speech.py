"""The no-speech gates: CTC speech probability where speech is densest, and Whisper's rule on the
decoder's own no-speech probability."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import numpy as np

if TYPE_CHECKING:
    from asr.config import ModelConfig
    from asr.decoding.options import DecodingOptions

# The no-speech gate measures speech where it is densest, over this long a stretch: averaged over a
# whole clip, one short word ("tie") in a second or more of silence falls under any threshold that
# keeps noise out.
NO_SPEECH_WINDOW_SECONDS = 1.0


def densest_stretch(speech: np.ndarray, lengths: np.ndarray, window: int) -> np.ndarray:
    """(B,) the largest mean of `speech` (B, T) over `window` consecutive valid frames, or over all
    of an utterance's frames when it has fewer. Frames past `lengths` must hold zeros."""
    speech, lengths = np.asarray(speech, dtype=np.float64), np.asarray(lengths)
    cumulative = np.pad(speech.cumsum(1), ((0, 0), (1, 0)))  # (B, T + 1): sums of the first t frames
    widths = np.clip(lengths, 1, window)  # (B,)
    ends = np.arange(1, speech.shape[1] + 1)  # a stretch ending after frame t
    starts = np.clip(ends[None, :] - widths[:, None], 0, None)
    sums = cumulative[:, 1:] - np.take_along_axis(cumulative, starts, axis=1)
    inside = (starts + widths[:, None] == ends[None, :]) & (ends[None, :] <= lengths[:, None])
    return np.clip(np.where(inside, sums, 0.0).max(1) / widths, 0.0, None)


def decoder_rule_applies(options: "DecodingOptions", config: "ModelConfig") -> bool:
    """Whether Whisper's rule (DecodingOptions.decoder_no_speech_threshold) acts on a decoding: it is
    on, the search is the attention decoder's, no prefix is forced, and the model has a no-speech token."""
    return bool(options.decoder_no_speech_threshold) and options.mode == "attention" and not options.prefix \
        and config.no_speech_id >= 0


def decoder_hears_no_speech(no_speech_prob: float, log_prob: float, tokens: int, threshold: float,
                            logprob_threshold: Optional[float]) -> bool:
    """Whisper's rule (DecodingOptions.decoder_no_speech_threshold): the decoder's probability of no
    speech is above `threshold`, and the transcript's mean log-probability per token, <eos>
    included (`log_prob` summed over `tokens` tokens and <eos>), is under `logprob_threshold`."""
    if not threshold or no_speech_prob <= threshold:
        return False
    return logprob_threshold is None or log_prob / (tokens + 1) < logprob_threshold
