"""Live transcription: words while the person is still speaking, final text at each pause.

Audio arrives in chunks of any size. The long-form reader's voice activity detector finds where
each utterance starts and ends. While one is going on, the audio heard of it so far is decoded
again every `partial_every_seconds` of the stream with a cheaper search (an int8 copy of the model,
a shorter window): a partial result. When the detector closes the utterance, at a pause, it is
decoded once more with the model's full settings: the final result. That decode starts as soon as
the pause has outlasted the detector's hangover, when where the utterance ends is known if the pause
goes on, so the final is ready when the detector is sure of the pause, 0.3 s later.

Words that `commit_after` partials in a row agree on, from the start, are committed (local
agreement, as in Whisper-Streaming): they are shown as stable, and every later partial of the
utterance continues them as a forced prefix, so they stay as shown until the final. The final
decodes the utterance anew, as offline decoding would: a decoder forced to continue words chosen
from the first second or two of an utterance cannot take them back when what follows shows them
wrong, and on development speakers finals that always continued them had 2.5 times as many texts
differing from offline decoding (33 of 100 against 13). Where the final's reading revises a stable
word, the utterance is decoded once more continuing the stable words, and that reading is kept if
the CTC head, which judges how well a text fits the audio without the decoder's sense of what text
is likely, scores it at least as well (keep_stable_margin): the stable words go only when the audio
says they were wrong. How often a stable word is revised, and how soon words reach the form they
keep, benchmarks/live_latency.py measures.

Partials are decoded at fixed points of the stream, whatever the chunks, and the detector's cuts do
not depend on chunking either: chunks of any size give the same partials and the same finals.

A final is decoded with the utterances just before it as context, as offline decoding of the
whole recording would hear them: their audio precedes the utterance's in the decoded window and
their words are forced as a prefix, so only the utterance's own words are new. A speaker who pauses
mid-sentence is otherwise decoded in pieces, each without the words around it. An utterance whose
final has no words is heard again by the next ones' partials and final, which decode from where
it began: alone, a speaker's first words or half a sentence can fall under the no-speech gates
that the whole, as offline decoding reads it, passes.

Work and memory per second are bounded however long the stream runs: an utterance is closed at
latest after `vad.max_segment_seconds`, and audio before the detector's settled point (or before
the context, at most `final_context_seconds`) is dropped.
"""

from __future__ import annotations

import dataclasses
import re
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple, Optional, Union

import numpy as np

from asr.audio import prepare_waveform
from asr.decoding.options import DecodingOptions, with_overrides
from asr.decoding.result import Result, Word
from asr.errors import ConfigError
from asr.config import QUANTIZE_MODES
from asr.stream import AudioWindow, Resampler
from asr.vad import Span, VadConfig, VoiceActivityDetector

if TYPE_CHECKING:
    from asr.recognizer import Recognizer
    from asr.runtime.recognizer import OnnxRecognizer

# Held audio before the detector's settled point is dropped in steps of this much, not at every chunk.
FORGET_STEP_SECONDS = 1.0


@dataclass(frozen=True)
class LiveConfig:
    # Endpoints: a pause of vad.min_silence_seconds (0.5 s). On development speakers
    # (benchmarks/live_latency.py, AMD EPYC; the sets of commit_after) 0.8 s cut fewer sentences at a
    # comma, and streaming cost -0.9 points [-2.8, 0.5] against offline decoding instead of -0.4
    # [-2.6, 1.7], but words reached their final form after 1.84 s instead of 1.59 s (median) on
    # the LibriSpeech readers, and their utterance's final after 3.74 s instead of 2.99 s. Holding an
    # utterance open for 1.0 s when its final, decoded ahead, did not end with ., ? or ! changed 3 of
    # those 200 finals and no error count: Whisper ends a fragment cut at a pause with a period too
    # ("She wanted to."). A hangover of 0.3 s instead of 0.2 s: -0.5 points [-3.2, 2.0], 43 texts
    # differing instead of 44.
    vad: VadConfig = field(default_factory=VadConfig)
    # Decode the open utterance at every multiple of this in the stream. On development speakers
    # (recipes/whisper_ctc/dev_noise.py) 0.4 s against 0.5 s: words final after 1.29 s instead of
    # 1.57 s (median), the same CPU per second of audio, and streaming WER within 5 errors of 704.
    partial_every_seconds: float = 0.4
    partial_shortest_seconds: float = 0.3  # but not before it is this long (pre-roll included)
    # The partial search's beam (finals use the model's settings). Stable words come from partials,
    # and greedy ones agreed on words the final's beam would not have chosen: on 100 development
    # utterances (recipes/whisper_ctc/dev_noise.py, clean), when finals still continued the committed
    # words, they had 285 errors with a beam of 1 and 277 with 5, against 268 offline. A partial of
    # 4 s then takes 0.15 s instead of 0.10 s on 2 cores.
    partial_beam_size: int = 5
    # A model that reads a fixed window (Whisper's 30 s) reads a partial up to this long padded to
    # this instead: a third of the encoder's work, and in our measurements the same words
    # (benchmarks/live_latency.py). Longer partials, and every final, get the model's window.
    partial_window_seconds: float = 10.0
    # A partial is cut after this many tokens per second heard: a Whisper decoder given the first
    # half second of a word tends to repeat it until the window ends ("produced, produced, ...").
    partial_max_tokens_per_second: float = 8.0
    # Partials decode with a copy of the model quantised so (Recognizer.quantized; None: as loaded):
    # decoding one utterance is bound by reading the decoder's weights, and int8 reads a quarter of
    # the bytes, which makes a partial about three times cheaper. Finals use the model as loaded.
    partial_quantize: Optional[str] = "int8"
    # Commit the words that `commit_after` partials in a row agree on (local agreement): they show as
    # stable, and every later partial continues them (a forced prefix), so they stay until the final,
    # which keeps them unless the audio says otherwise (see the module's notes). Otherwise, and for models not
    # decoded in mode "attention", stable words are the agreed ones, and a later partial may differ.
    commit: bool = True
    # Partials in a row that must agree on a word before it is committed. With finals that keep the
    # stable words only where they fit the audio (keep_stable_margin), two: on development speakers
    # (benchmarks/live_latency.py, ONNX Runtime, AMD EPYC; latency on recipes/whisper_ctc/dev_noise.py's
    # live_clean.jsonl and the first 20 clips of its libri_dev.jsonl, accuracy on the 200 utterances
    # of dev_noise.py --per-speaker 20) words reached their final form after 1.17 s and 1.62 s
    # (median) against 1.48 s and 1.71 s with three and finals decoded anew, a stable word revised in
    # 30 of 122 and 78 of 206 partials (23 of 82, 95 of 175), and streaming finals cost +0.2 points
    # [-2.3, 2.7] against offline decoding (+1.3 [-0.1, 3.1] with three, finals decoded anew and
    # partials every 0.3 s, which did not shorten the wait on LibriSpeech). Two alone, without the
    # CTC head's say, had a stable word revised in 48 of 122.
    commit_after: int = 2
    # A final is decoded after up to this much of the stream before its utterance, the earlier
    # utterances' words forced as a prefix (see the module's notes); 0: each utterance alone. The
    # context goes back no further than a final without words, and the window stays within the
    # model's own (Whisper's 30 s). Utterances whose finals had no words are decoded again with
    # the next one if they began at most this long ago: on the 200 utterances of
    # recipes/whisper_ctc/dev_noise.py --per-speaker 20 (benchmarks/live_latency.py --accuracy,
    # AMD EPYC), streaming then cost -0.4 points [-2.6, 1.7] against offline decoding on clean speech,
    # 44 transcripts differing, instead of +0.2 [-2.3, 2.7] and 49; in 5 dB babble nothing changed.
    final_context_seconds: float = 20.0
    # Audio before an utterance's span (which starts the detector's pre-roll, 0.2 s, before its first
    # speech) that its partials and final also decode, back to the end of the utterance before: a
    # clip decoded offline holds the quiet before its speech, and Whisper reads the first words
    # differently without it. On 100 development utterances (recipes/whisper_ctc/dev_noise.py,
    # clean), the detector's spans decoded alone changed 37 transcripts against the whole clips'
    # (WER 39.3 % against 38.4 %); with 0.8 s more before each, 18 (38.4 %). On the 200 clean
    # utterances of dev_noise.py --per-speaker 20, 30 s (all the quiet since the last utterance)
    # changed neither streaming's WER nor the 44 finals that differ from offline decoding (git ec4b7fc).
    lead_seconds: float = 0.8
    # A final that reads the committed words otherwise is decoded a second time, continuing them, and
    # keeps them if the CTC head's path for that reading scores at least its own less this margin
    # (log-probability, Result.alignment_score): where both readings fit the audio alike, the words
    # shown as stable stay, and where the audio says they were wrong, they go. None: the final is
    # always its own reading. Measured with commit_after; and on the 200 clean utterances of
    # recipes/whisper_ctc/dev_noise.py --per-speaker 20 (benchmarks/live_latency.py --accuracy, ONNX
    # Runtime, AMD EPYC, git ec4b7fc), None left 24 finals differing from offline decoding instead of
    # 44, but cost +1.1 points [-0.1, 2.7] against it instead of -0.4 [-2.6, 1.7]: on balance the
    # stable words kept made fewer errors than the finals' own readings of them.
    keep_stable_margin: Optional[float] = 0.0

    def __post_init__(self) -> None:
        if self.partial_every_seconds <= 0:
            raise ConfigError(f"partial_every_seconds must be positive, got {self.partial_every_seconds}")
        if self.partial_beam_size < 1:
            raise ConfigError(f"partial_beam_size must be at least 1, got {self.partial_beam_size}")
        if self.partial_max_tokens_per_second < 0:
            raise ConfigError(f"partial_max_tokens_per_second must not be negative, got {self.partial_max_tokens_per_second}")
        if self.partial_quantize is not None and self.partial_quantize not in QUANTIZE_MODES:
            raise ConfigError(f"unknown partial_quantize {self.partial_quantize!r}; choose from {', '.join(QUANTIZE_MODES)}")
        if self.commit_after < 2:
            raise ConfigError(f"commit_after must be at least 2 (partials that agree), got {self.commit_after}")
        if self.partial_window_seconds < 0:
            raise ConfigError(f"partial_window_seconds must not be negative, got {self.partial_window_seconds}")
        if self.final_context_seconds < 0:
            raise ConfigError(f"final_context_seconds must not be negative, got {self.final_context_seconds}")
        if self.lead_seconds < 0:
            raise ConfigError(f"lead_seconds must not be negative, got {self.lead_seconds}")
        if self.keep_stable_margin is not None and self.keep_stable_margin != self.keep_stable_margin:
            raise ConfigError("keep_stable_margin must be a number or None, not NaN")


@dataclass(frozen=True)
class Partial:
    """What the utterance still going on says so far; replaced by the next partial or its final."""

    text: str
    stable: str  # a prefix of `text`: committed words, which later partials keep (see LiveConfig.commit)
    start: float  # seconds from the start of the stream
    end: float  # the audio heard when it was decoded


@dataclass(frozen=True)
class Final:
    """A finished utterance: its text will not change."""

    text: str  # empty if the model heard no words in it (it replaces any partial all the same)
    start: float  # seconds from the start of the stream
    end: float
    words: list[Word]  # times from the start of the stream
    # The decoding that gave it (attention on request), of `audio`: the utterance, after any earlier
    # ones decoded with it as context, whose words begin its text (LiveConfig.final_context_seconds).
    result: Result  # times from the start of `audio`
    audio: np.ndarray = field(repr=False)  # at the model's rate; it ends where the utterance ends
    # Seconds of `audio` before the utterance: earlier utterances decoded as its context, and the
    # quiet before it (LiveConfig.lead_seconds).
    context: float = 0.0


Event = Union[Partial, Final]


def event_dict(event: Event) -> dict:
    """An event as JSON-ready data: {"type": "partial" | "final", "text", "start", "end", ...}."""
    if isinstance(event, Partial):
        return {"type": "partial", "text": event.text, "stable": event.stable, "start": event.start, "end": event.end}
    return {"type": "final", "text": event.text, "start": event.start, "end": event.end,
            "words": [{"word": w.word, "start": w.start, "end": w.end, "confidence": round(w.confidence, 4)}
                      for w in event.words]}


class LiveRecognizer:
    """Feed audio as it arrives; get Partial and Final results as soon as there are any.

        live = LiveRecognizer(asr.load_model())
        for chunk in microphone():            # float samples at live.sample_rate, any chunk size
            for event in live.feed(chunk):
                print(event)
        for event in live.finish():           # the end of the stream closes the last utterance
            print(event)

    `recognizer` runs on PyTorch (asr.load_model: attention weights, an enrolled voice) or on ONNX
    Runtime (asr.runtime.recognizer.load_onnx: no torch imported, and a final of a 3.6 s utterance in
    0.34 s against 0.47 s on 2 cores of an AMD EPYC).
    `options` and `overrides` set the final decoding as for `Recognizer.transcribe` (for example
    return_attention=True); partials use the same settings with a beam of `partial_beam_size`.
    `sample_rate` is the rate of the fed samples: anything other than the model's is resampled.
    """

    def __init__(self, recognizer: Union[Recognizer, OnnxRecognizer], config: LiveConfig = LiveConfig(),
                 options: Optional[DecodingOptions] = None, sample_rate: Optional[int] = None, **overrides):
        self.recognizer = recognizer
        self._partial_recognizer = recognizer.quantized(config.partial_quantize) if config.partial_quantize else recognizer
        self.config = config
        self.final_options = with_overrides(options or recognizer.default_options, overrides)
        # No fallback for partials: a loop in a partial is cut by its token limit, and the next one reads more.
        # Nor the enrolled mode: partials continue the committed words, which only the attention search
        # can force, so every partial of an utterance searches alike; its final ranks as offline decoding does.
        self.partial_options = dataclasses.replace(self.final_options, beam_size=config.partial_beam_size,
                                                   return_attention=False, temperatures=(0.0,), enrolled_mode="",
                                                   max_tokens_per_second=config.partial_max_tokens_per_second)
        self.rate = recognizer.sample_rate
        self.sample_rate = sample_rate or self.rate
        self._resampler = Resampler(self.sample_rate, self.rate) if self.sample_rate != self.rate else None
        self._detector = VoiceActivityDetector(self.rate, config.vad)
        self._audio = AudioWindow()
        self._partial_every = round(config.partial_every_seconds * self.rate)
        hop = recognizer.frontend.hop_length
        short_window = min(round(config.partial_window_seconds * self.rate / hop), self.final_options.pad_to_frames)
        self._short_partial_samples = short_window * hop  # partials shorter than this read the short window
        self._short_partial_options = dataclasses.replace(self.partial_options, pad_to_frames=short_window,
                                                          short_pad_to_frames=0)
        self._partial_shortest = round(config.partial_shortest_seconds * self.rate)
        self._recent: deque[list[str]] = deque(maxlen=config.commit_after)  # the last partials' words
        self._committed: tuple[int, ...] = ()  # decoder tokens of the utterance's committed words
        self._commits = config.commit and self.final_options.mode == "attention"
        self._heard_words = False  # whether a partial of the open utterance had words
        # (stream index where it starts, its own decoder tokens) of each utterance a final may follow
        self._context: deque[tuple[int, tuple[int, ...]]] = deque()
        # A prefix needs the attention search (DecodingOptions.prefix).
        self._uses_context = config.final_context_seconds > 0 and self.final_options.mode == "attention"
        self._longest_final = self.final_options.pad_to_frames * hop or None  # samples a final may decode
        self._lead = round(config.lead_seconds * self.rate)
        self._last_end = 0  # where the last utterance closed ended: no decode of a later one reads before it
        # (where its span starts, where its decode starts) of the first of the finals without words
        # since the last with words: later utterances are decoded from there (see _lead_start)
        self._wordless: Optional[tuple[int, int]] = None
        self._ahead: Optional[tuple[_FinalRequest, Result]] = None  # a final decoded ahead: _decode_ahead
        self._finished = False

    @property
    def heard(self) -> float:
        """Seconds of audio fed so far."""
        return self._audio.end / self.rate

    def feed(self, samples: np.ndarray) -> list[Event]:
        """The finals and partials that `samples`, following everything fed before, complete, in order.

        Raises AudioError for samples that are not audio (NaN, far beyond full scale, ...);
        the stream is unchanged then and may go on."""
        if self._finished:
            raise RuntimeError("this stream has finished: start a new LiveRecognizer")
        samples = np.asarray(samples)
        if samples.size == 0:
            return []
        samples = prepare_waveform(samples, self.sample_rate, self.sample_rate, source="<live audio>")
        if self._resampler is not None:
            samples = self._resampler.feed(samples)
        events: list[Event] = []
        # Partials are decoded at fixed points of the stream, every partial_every_seconds, whatever
        # the chunks: so the committed words do not depend on chunking, nor does whether a final is
        # decoded after context (once a partial has heard words).
        while len(samples):
            piece = self._partial_every - self._audio.end % self._partial_every
            events += self._take(samples[:piece])
            samples = samples[piece:]
            if self._audio.end % self._partial_every == 0:
                events += self._partial()
        return events

    def finish(self) -> list[Event]:
        """The finals of what is left: the end of the stream ends any utterance going on."""
        if self._finished:
            return []
        self._finished = True
        tail = self._resampler.finish() if self._resampler is not None else np.zeros(0, np.float32)
        return self._take(tail, last=True)

    def _take(self, samples: np.ndarray, last: bool = False) -> list[Final]:
        """Finals of the utterances that `samples` (and the end of the stream, if `last`) close."""
        self._audio.append(samples)
        spans = self._detector.feed(samples) if len(samples) else []
        if last:
            spans += self._detector.finish()
        finals = [self._final(span) for span in spans]
        self._decode_ahead()
        settled = self._detector.settled
        oldest = settled - round(self.config.final_context_seconds * self.rate)
        while self._context and self._context[0][0] < oldest:
            self._context.popleft()
        if self._wordless is not None and self._wordless[1] < oldest:
            self._wordless = None
        # What a later utterance's decode may read: its lead, its context, or wordless utterances.
        keep = settled - self._lead
        keep = min(keep, self._context[0][0]) if self._context else keep
        keep = min(keep, self._wordless[1]) if self._wordless is not None else keep
        if keep - self._audio.start >= FORGET_STEP_SECONDS * self.rate:
            self._audio.forget_before(keep)
        return finals

    def _final_request(self, span: Span) -> _FinalRequest:
        """What a final of `span` decodes, were the detector to close it now."""
        # Context only once a partial has heard words: a prefix turns the no-speech gate off, and an
        # utterance that may be noise alone must meet the gate on its own.
        context = self._context_for(span) if self._heard_words else []
        own_start = self._lead_start(span.start, span.end)
        start = context[0][0] if context else own_start
        # The utterance's committed words are forced only in a second decode (module notes).
        earlier = tuple(token for _, tokens in context for token in tokens)
        committed = self._committed if self.config.keep_stable_margin is not None else ()
        return _FinalRequest(Span(start, span.end), own_start, earlier, committed)

    def _decode_final(self, request: _FinalRequest) -> Result:
        """The utterance's own reading, or, where it revises the committed words and a reading that
        keeps them fits the audio as well by the CTC head (LiveConfig.keep_stable_margin), that one."""
        audio = self._audio.take(request.audio)
        options = dataclasses.replace(self.final_options, prefix=request.earlier)
        own = self.recognizer.transcribe(audio, options)
        if not request.committed or own.alignment_score is None:
            return own
        decode = self.recognizer.tokenizer.decode
        stable = decode(list(request.committed)).split()
        if _agreement([stable, decode(own.tokens[len(request.earlier):]).split()]) == len(stable):
            return own
        continuing = dataclasses.replace(options, prefix=request.earlier + request.committed)
        kept = self.recognizer.transcribe(audio, continuing)
        keeps = kept.alignment_score is not None and \
            kept.alignment_score >= own.alignment_score - self.config.keep_stable_margin
        return kept if keeps else own

    def _decode_ahead(self) -> None:
        """Decodes the final of the open utterance as soon as the detector knows where it will end
        if the pause goes on (VoiceActivityDetector.pending), so that it is ready when the detector
        is sure: the last words' final then comes up to a decode's time sooner. If speech resumes,
        the decode was for nothing."""
        pending = self._detector.pending
        if pending is None:
            self._ahead = None
            return
        request = self._final_request(pending)
        if self._ahead is None or self._ahead[0] != request:
            self._ahead = (request, self._decode_final(request))

    def _final(self, span: Span) -> Final:
        request = self._final_request(span)
        ahead, self._ahead = self._ahead, None
        result = ahead[1] if ahead is not None and ahead[0] == request else self._decode_final(request)
        audio = self._audio.take(request.audio)
        start, own_start, earlier = request.audio.start, request.own_start, request.earlier
        utterance_start = self._utterance_start(span.start)
        self._last_end = span.end
        self._committed = ()
        self._heard_words = False
        self._recent.clear()
        own = result.tokens[len(earlier):]
        text = self.recognizer.tokenizer.decode(own).strip()
        if text:
            self._wordless = None
            if self._uses_context:
                self._context.append((own_start, tuple(own)))
        else:  # no context reaches back over an utterance without words; its audio is read again
            self._context.clear()
            if self._wordless is None and self.config.final_context_seconds > 0:
                self._wordless = (span.start, own_start)
        offset = start / self.rate
        # Word times come from the CTC head, whose vocabulary may be its own: count words as written.
        context_words = len(self.recognizer.tokenizer.decode(list(earlier)).split())
        words = [Word(w.word, round(offset + w.start, 3), round(offset + w.end, 3), w.confidence)
                 for w in result.words[context_words:]]
        return Final(text, round(utterance_start / self.rate, 3), round(span.end / self.rate, 3), words, result,
                     audio, round((utterance_start - start) / self.rate, 3))

    def _utterance_start(self, start: int) -> int:
        """Where the utterance whose span starts at `start` begins for its partials and final: at
        the first wordless utterance before it that its decodes read again, if any."""
        return self._wordless[0] if self._wordless is not None else start

    def _lead_start(self, start: int, end: int) -> int:
        """Where a decode of the utterance that starts at `start` begins, if it is to end at `end`:
        `lead_seconds` earlier, but not before the last utterance's end nor so early that the
        audio outgrows the model's window. After finals without words, where the first of them
        began: a speaker's first words, or a sentence cut at a pause, can be too short or too faint
        alone for the no-speech gates, which the same audio heard whole, as offline decoding
        hears it, passes."""
        lead_start = max(start - self._lead, self._last_end)
        if self._wordless is not None:
            lead_start = min(lead_start, self._wordless[1])
        if self._longest_final is not None:
            lead_start = max(lead_start, end - self._longest_final)
        return min(start, lead_start)

    def _context_for(self, span: Span) -> list[tuple[int, tuple[int, ...]]]:
        """The earlier utterances a final of `span` is decoded after: those that begin at most
        final_context_seconds before it, and no earlier than the model's window allows."""
        earliest = span.start - round(self.config.final_context_seconds * self.rate)
        if self._longest_final is not None:
            earliest = max(earliest, span.end - self._longest_final)
        return [entry for entry in self._context if entry[0] >= earliest]

    def _partial(self) -> list[Partial]:
        start = self._detector.open_start
        if start is None or self._audio.end - start < self._partial_shortest:
            return []
        if self._ahead is not None:  # in a pause whose final is decoded already: it follows, if the pause goes on
            return []
        audio = self._audio.take(Span(self._lead_start(start, self._audio.end), self._audio.end))
        options = self._short_partial_options if len(audio) < self._short_partial_samples else self.partial_options
        result = self._partial_recognizer.transcribe(audio, dataclasses.replace(options, prefix=self._committed))
        words = _without_loop(result.text.split())
        self._recent.append(words)
        self._heard_words = self._heard_words or bool(words)
        agreed = _agreement(list(self._recent)) if len(self._recent) == self._recent.maxlen else 0
        # Not the partial's last word: until another word has begun after it, the final may still
        # extend it ("I" -> "I'm", "cat" -> "cats").
        agreed = max(0, min(agreed, len(words) - 1))
        if self._commits:
            self._commit(result.tokens, agreed)
            stable = self.recognizer.tokenizer.decode(list(self._committed)).strip()
        else:
            stable = " ".join(words[:agreed])
        text = " ".join(words)
        if not text:
            return []
        if not text.startswith(stable):  # the loop cut reached into committed words
            text = stable
        return [Partial(text, stable, round(self._utterance_start(start) / self.rate, 3),
                        round(self._audio.end / self.rate, 3))]

    def _commit(self, tokens: list[int], words: int) -> None:
        """Commits the tokens of the first `words` words of a partial whose tokens are `tokens`
        (which begin with those committed before): up to where word `words + 1` would begin."""
        decode = self.recognizer.tokenizer.decode
        if words <= len(decode(list(self._committed)).split()):
            return
        end = len(self._committed)
        while end < len(tokens) and len(decode(tokens[: end + 1]).split()) <= words:
            end += 1
        self._committed = tuple(tokens[:end])


class _FinalRequest(NamedTuple):
    """The decode that gives an utterance's final: equal requests give equal finals."""

    audio: Span  # stream samples decoded: the context, the lead, the utterance
    own_start: int  # where the utterance's own audio (its lead included) begins
    earlier: tuple[int, ...]  # the context's tokens, forced as a prefix
    committed: tuple[int, ...]  # the utterance's committed tokens, which the final keeps if it can


def _agreement(partials: list[list[str]]) -> int:
    """How many words from the start the word lists all share, ignoring case and punctuation."""
    count = 0
    for words in zip(*partials):
        if len({_bare(w) for w in words}) != 1:
            break
        count += 1
    return count


def _without_loop(words: list[str], longest: int = 4) -> list[str]:
    """`words` with a phrase of up to `longest` words that repeats three times or more at the end
    kept once: a partial cut off at its token limit while the decoder loops."""
    bare = [_bare(w) for w in words]
    for size in range(1, longest + 1):
        copies = 1
        while len(bare) >= size * (copies + 1) and bare[len(bare) - size * (copies + 1) : len(bare) - size * copies] \
                == bare[len(bare) - size :]:
            copies += 1
        if copies >= 3:
            return words[: len(words) - size * (copies - 1)]
    return words


def _bare(word: str) -> str:
    return re.sub(r"[^\w']", "", word.lower())
