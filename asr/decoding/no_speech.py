"""The no-speech gate's measure: CTC speech probability where speech is densest."""

from __future__ import annotations

import numpy as np

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
