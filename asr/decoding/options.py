"""How to decode: one frozen set of options, checked when it is made."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

from asr.errors import ConfigError

# Search modes, fastest first, with the score each one ranks by (Result.score; w = ctc_weight,
# "+ lp" = length_penalty per token).
MODES = (
    "ctc_greedy",  # best CTC label per frame, repeats merged, blanks dropped; log P of that one path
    "ctc_beam",  # CTC prefix beam search (frame-synchronous); log P_ctc(y) over the alignments kept
    "attention",  # attention-decoder beam search with the key/value cache; log P_att(y <eos>) + lp
    "joint",  # one-pass joint beam search with a CTC prefix scorer (ESPnet); (1-w) att + w ctc + lp
    "rescore",  # CTC prefix beam search, n-best rescored by the attention decoder (WeNet); same score
)
CTC_MODES = ("ctc_greedy", "ctc_beam")  # the modes that search CTC labels only
# The short window Whisper's encoder can be taught to read (DecodingOptions.short_pad_to_frames;
# recipes/whisper_ctc/distill.py --short-window-share): 10 s, a third of the work of its 30 s.
SHORT_WINDOW_FRAMES = 1000
# Silence a recording keeps after it in the short window (DecodingOptions.short_pad_to_frames): a
# second, at Whisper's 100 frames a second. Not measured: the development clips the 10 s window was
# tried on were at most 9.3 s long, so it keeps to what was tried.
SHORT_WINDOW_MARGIN_FRAMES = 100


@dataclass(frozen=True)
class DecodingOptions:
    mode: str = "joint"
    beam_size: int = 10
    # Weight of the CTC score against the attention score in "joint" and "rescore":
    # score = ctc_weight * ctc + (1 - ctc_weight) * attention.
    ctc_weight: float = 0.3
    # Added to a hypothesis score per output token ("attention", "joint", "rescore");
    # positive values favour longer outputs, counteracting the decoder's bias to stop early.
    length_penalty: float = 0.0
    # Rank finished hypotheses of "attention" and "joint" by their score per token, and search until
    # `beam_size` of them have finished, as Whisper and CTranslate2 do. Summed log-probabilities
    # favour hypotheses that end early: without this, an imported Whisper model stops after the
    # first clause of a long utterance.
    length_norm: bool = False
    # Longest output, in tokens per encoder frame ("attention" and "joint"); the decoder's
    # position table caps it too.
    max_length_ratio: float = 1.0
    # Longest output in tokens per second of audio (at least one second's worth; "attention" and
    # "joint"); 0: no such limit. Speech runs at 2-5 tokens a second: a search far beyond that is
    # repeating itself, which a Whisper decoder does on short or cut-off audio.
    max_tokens_per_second: float = 0.0
    # If the mean over frames of the CTC non-blank posterior, 1 - P(blank), is below this,
    # the utterance is taken to hold no speech and decodes to nothing without any search.
    # Speech runs at about 0.05-0.5; 0 turns the gate off.
    no_speech_threshold: float = 0.0
    # Whisper's rule against transcribing what is not speech addressed to the microphone (a crowd,
    # a voice across the room): a transcript is dropped when the decoder's probability of no speech
    # (ModelConfig.no_speech_id, after <sos>) exceeds this, unless its mean log-probability per token
    # (<eos> included) reaches `logprob_threshold`. The CTC gate above cannot tell such babble from
    # speech: it measures whether anyone speaks, not whether the decoder can follow them. 0 turns the
    # rule off; it applies in mode "attention", to models with a no-speech token, and never to a prefix.
    decoder_no_speech_threshold: float = 0.0
    # Return the cross-attention of the chosen hypothesis and the encoder self-attention.
    return_attention: bool = False
    # Pad the features with silence to this many frames and let the encoder attend to it, as
    # Whisper does (3000 frames = 30 s). 0 encodes the real length only, which is much faster; an
    # imported Whisper model needs the padding for "attention" decoding until it is fine-tuned.
    pad_to_frames: int = 0
    # A recording at least SHORT_WINDOW_MARGIN_FRAMES shorter than this is padded to this many frames
    # instead of pad_to_frames (0: never): Whisper's 30 s cost the same to encode however little of
    # them is speech, and a 10 s window (1000) takes a third of that. Speed at a cost in accuracy, so
    # the default model does not use it: on 100 development utterances (recipes/whisper_ctc/dev_noise.py)
    # it made as many errors in 10 s as in 30 s, but on unseen voices more, on clean speechocean762
    # and in street noise (recipes/unseen_voices/WINDOW.md). Windows fitted to each clip (its length
    # and 2 s) made the decoder write its sentence twice.
    short_pad_to_frames: int = 0
    # Decoder tokens the transcript must begin with ("attention" only; Whisper's `prefix`): the
    # search continues them, and the result holds them. A live recognizer forces the words it has
    # already shown as stable. Text already accepted is not gated: with a prefix, the no-speech
    # gate is off.
    prefix: tuple[int, ...] = ()
    # Whisper's fallback ("attention" only; asr.decoding.sampling): a transcript whose text compresses
    # better than compression_ratio_threshold (a loop), or whose mean log-probability per token is
    # under logprob_threshold, is decoded again by sampling best_of transcripts at each next
    # temperature in turn. (0.0,): the beam's transcript is kept, whatever it is.
    temperatures: tuple[float, ...] = (0.0,)
    best_of: int = 5
    compression_ratio_threshold: float = 2.4
    logprob_threshold: Optional[float] = -1.0
    # The enrolled voice to follow (asr.enrollment: a unit-length d-vector of 256 numbers): the
    # encoder's speaker adapters turn to it, so other talkers fade. Empty: every voice is heard
    # alike. Needs a model with speaker adapters.
    speaker: tuple[float, ...] = ()
    # The search mode while a voice is enrolled (empty: `mode`), unless a prefix is forced. Ranked by
    # summed log-probabilities and by the CTC head too ("rescore"), the search leaves out words the
    # enrolled model finds unlikely, which in a mixture are mostly the other talkers'; ranked per token
    # ("attention" with length_norm) it lets them in. On the development speakers of
    # recipes/target_speaker (DEV_RESULTS.md) "rescore" made 28 % fewer errors than "attention" on
    # the target's words at 0 dB and as many on the target alone.
    enrolled_mode: str = ""

    def __post_init__(self) -> None:
        # Lists, as a model's YAML holds them, become tuples: the options stay hashable and frozen.
        object.__setattr__(self, "prefix", tuple(self.prefix))
        object.__setattr__(self, "temperatures", tuple(float(t) for t in self.temperatures))
        object.__setattr__(self, "speaker", tuple(float(v) for v in self.speaker))
        temps = self.temperatures
        if not temps or temps[0] != 0.0 or any(b <= a for a, b in zip(temps, temps[1:])):
            raise ConfigError(f"temperatures must start at 0 and rise, got {list(temps)}")
        if self.best_of < 1:
            raise ConfigError(f"best_of must be at least 1, got {self.best_of}")
        if self.mode not in MODES:
            raise ConfigError(f"unknown decoding mode {self.mode!r}; choose from {', '.join(MODES)}")
        if self.beam_size < 1:
            raise ConfigError(f"beam_size must be at least 1, got {self.beam_size}")
        if not 0.0 <= self.ctc_weight <= 1.0:
            raise ConfigError(f"ctc_weight must lie in [0, 1], got {self.ctc_weight}")
        if self.max_length_ratio <= 0:
            raise ConfigError(f"max_length_ratio must be positive, got {self.max_length_ratio}")
        if self.max_tokens_per_second < 0:
            raise ConfigError(f"max_tokens_per_second must not be negative, got {self.max_tokens_per_second}")
        if self.pad_to_frames < 0:
            raise ConfigError(f"pad_to_frames must be 0 or more, got {self.pad_to_frames}")
        if self.short_pad_to_frames and not 0 < self.short_pad_to_frames < self.pad_to_frames:
            raise ConfigError(f"short_pad_to_frames must be 0 or less than pad_to_frames ({self.pad_to_frames}), "
                              f"got {self.short_pad_to_frames}")
        if self.enrolled_mode and self.enrolled_mode not in MODES:
            raise ConfigError(f"unknown enrolled_mode {self.enrolled_mode!r}; choose from {', '.join(MODES)}")
        if self.prefix and self.mode != "attention":
            raise ConfigError(f"a forced prefix needs mode 'attention', not {self.mode!r}")
        if not 0.0 <= self.no_speech_threshold <= 1.0:
            raise ConfigError(f"no_speech_threshold must lie in [0, 1], got {self.no_speech_threshold}")
        if not 0.0 <= self.decoder_no_speech_threshold <= 1.0:
            raise ConfigError(f"decoder_no_speech_threshold must lie in [0, 1], got {self.decoder_no_speech_threshold}")

    def searched(self) -> DecodingOptions:
        """The options a search runs with: `enrolled_mode` as the mode while a voice is enrolled and
        no prefix is forced (a prefix needs "attention")."""
        if self.speaker and self.enrolled_mode and not self.prefix:
            return dataclasses.replace(self, mode=self.enrolled_mode, enrolled_mode="")
        return self

    def window_frames(self, frames: int) -> int:
        """The encoder input, in frames, of a recording of `frames` feature frames: the short window
        if it fits there with a margin, else pad_to_frames (0: its own length)."""
        if self.short_pad_to_frames and frames + SHORT_WINDOW_MARGIN_FRAMES <= self.short_pad_to_frames:
            return self.short_pad_to_frames
        return self.pad_to_frames


def with_overrides(options: DecodingOptions, overrides: dict) -> DecodingOptions:
    """`options` with the fields named in `overrides` replaced; ConfigError for an unknown name. A
    mode asked for is the one searched, whoever is enrolled (unless enrolled_mode is asked for too)."""
    known = {f.name for f in dataclasses.fields(DecodingOptions)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"unknown decoding options {unknown}; known: {sorted(known)}")
    if "mode" in overrides:
        overrides = {"enrolled_mode": "", **overrides}
    return dataclasses.replace(options, **overrides)
