"""Decoding a padded batch of utterances into Results: encode, search, align, attention weights."""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from asr.decoding.align import FrameTiming, time_stamps
from asr.decoding.beam_search import beam_search
from asr.decoding.vocabulary import ctc_shares_vocabulary
from asr.decoding.ctc import best_path_scores, ctc_greedy_search, ctc_prefix_beam_search
from asr.decoding.hypothesis import Hypothesis
from asr.decoding.no_speech import NO_SPEECH_WINDOW_SECONDS, decoder_hears_no_speech, decoder_rule_applies, densest_stretch
from asr.decoding.options import CTC_MODES, DecodingOptions
from asr.decoding.rescore import attention_rescore, cross_vocabulary_rescore
from asr.decoding.sampling import with_fallback
from asr.decoding.result import Result, Timings
from asr.decoding.teacher_forcing import max_tokens, teacher_force
from asr.errors import ConfigError, EnrollmentError
from asr.model.asr_model import ASRModel
from asr.model.encoder import lengths_to_mask
from asr.model.speaker import speaker_conditioning
from asr.tokenizer import Tokenizer


@dataclass
class Vocabularies:
    """The decoder's tokenizer and the CTC head's (the same one unless the model pairs, say, a
    character CTC head with a BPE decoder, as fine-tuned Whisper models do)."""

    decoder: Tokenizer
    ctc: Tokenizer

    @property
    def shared(self) -> bool:
        return self.ctc is self.decoder


@torch.no_grad()
def decode(
    model: ASRModel, tokenizer: Tokenizer, waveforms: Tensor, lengths: Tensor, options: DecodingOptions,
    ctc_tokenizer: Optional[Tokenizer] = None,
) -> list[Result]:
    """One Result per utterance of waveforms (B, N) with valid samples lengths (B,).

    Each utterance decodes exactly as it would alone: padding changes no encoder frame, and
    every search keeps its utterances apart. The model must be in eval mode. `ctc_tokenizer` is
    needed when the CTC head has its own vocabulary; then "joint" is unavailable, "rescore" ranks
    both n-best lists by both models, and time stamps come from aligning the transcript's CTC labels.
    """
    if model.training:
        raise ValueError("decode needs the model in eval mode (model.eval()): dropout would corrupt the search")
    options = options.searched()
    if not options.short_pad_to_frames:
        return _decode_in_window(model, tokenizer, waveforms, lengths, options, ctc_tokenizer)
    # Recordings decoded in the short window and those in the long one go through the encoder apart.
    windows = [options.window_frames(n) for n in model.frontend.num_frames(lengths).tolist()]
    results: list[Optional[Result]] = [None] * len(windows)
    for window in sorted(set(windows)):
        rows = [b for b, w in enumerate(windows) if w == window]
        index = torch.tensor(rows, device=lengths.device)
        group_lengths = lengths[index]
        group = waveforms[index, : int(group_lengths.max())]
        decoded = _decode_in_window(model, tokenizer, group, group_lengths,
                                    dataclasses.replace(options, pad_to_frames=window, short_pad_to_frames=0),
                                    ctc_tokenizer)
        for b, result in zip(rows, decoded):
            results[b] = result
    return results  # type: ignore[return-value]  # every row is in one group


def _decode_in_window(
    model: ASRModel, tokenizer: Tokenizer, waveforms: Tensor, lengths: Tensor, options: DecodingOptions,
    ctc_tokenizer: Optional[Tokenizer],
) -> list[Result]:
    """`decode` of recordings that share one encoder window, `options.pad_to_frames`."""
    config = model.config
    vocab = _vocabularies(config, tokenizer, ctc_tokenizer, options)
    start = time.perf_counter()
    speaker = _speaker(model, options, len(waveforms))
    enc = model.encode(waveforms, lengths, need_weights=options.return_attention, pad_to_frames=options.pad_to_frames,
                       speaker=speaker)
    log_probs = model.ctc.log_probs(enc.hidden)  # (B, T', V)
    # CTC reads the frames that hold audio: fewer than the encoder's when the input was padded.
    ctc_lengths = torch.minimum(enc.lengths, model.encoded_frames(lengths))
    valid = lengths_to_mask(ctc_lengths, log_probs.shape[1])
    speech = (1 - log_probs[..., config.blank_id].exp()) * valid
    timing = FrameTiming.of(model)
    window = max(1, round(NO_SPEECH_WINDOW_SECONDS / timing.shift))
    speech_probs = densest_stretch(speech.cpu().numpy(), ctc_lengths.cpu().numpy(), window).tolist()
    encoded = time.perf_counter()

    # Utterances under the no-speech gate skip the search and decode to nothing.
    kept = [b for b, p in enumerate(speech_probs) if p >= options.no_speech_threshold or options.prefix]
    silent = (log_probs[..., config.blank_id] * valid).sum(1).tolist()  # log P_ctc(nothing)
    best = [Hypothesis((), score, ctc_score=score) for score in silent]
    no_speech: list[Optional[float]] = [None] * len(silent)
    if kept:
        index = torch.tensor(kept, device=enc.hidden.device)
        seconds = (lengths[index] / config.frontend.sample_rate).tolist()
        limits = ([math.ceil(options.max_tokens_per_second * max(1.0, s)) for s in seconds]
                  if options.max_tokens_per_second else None)
        found = search(model, enc.hidden[index], enc.lengths[index], log_probs[index], options, vocab,
                       ctc_lengths[index], limits)
        for b, hyp in zip(kept, found):
            best[b] = hyp
        if decoder_rule_applies(options, config):
            for b, prob in zip(kept, _decoder_no_speech_probs(model, enc.hidden[index], enc.lengths[index])):
                no_speech[b] = prob
                if decoder_hears_no_speech(prob, best[b].score, len(best[b].tokens),
                                           options.decoder_no_speech_threshold, options.logprob_threshold):
                    best[b] = Hypothesis((), silent[b], ctc_score=silent[b])
    searched = time.perf_counter()

    # What each hypothesis is in either vocabulary: text, CTC labels to align, decoder tokens.
    in_ctc_labels = vocab.shared or options.mode in CTC_MODES
    searched_tokenizer = vocab.ctc if in_ctc_labels else vocab.decoder
    texts = [searched_tokenizer.decode(hyp.tokens) for hyp in best]
    labels = [list(h.tokens) if in_ctc_labels else vocab.ctc.encode(t) for h, t in zip(best, texts)]
    decoder_tokens = [h.tokens if not in_ctc_labels or vocab.shared else None for h in best]

    log_probs_cpu, frame_counts = log_probs.cpu().numpy(), ctc_lengths.tolist()
    durations = [n / config.frontend.sample_rate for n in lengths.tolist()]
    aligned = [
        # Words of the decoder's text, which the CTC head times in its own spelling, as the text writes them.
        time_stamps(log_probs_cpu[b, :n], labels[b], vocab.ctc, timing, durations[b], config.blank_id,
                    None if in_ctc_labels else texts[b])
        for b, n in enumerate(frame_counts)
    ]
    align_done = time.perf_counter()

    cross: list[Optional[Tensor]] = [None] * len(frame_counts)
    encoder_attention: list[Optional[Tensor]] = [None] * len(frame_counts)
    if options.return_attention:
        cross = _cross_attention(model, enc.hidden, enc.lengths, decoder_tokens)
        batch, frames = log_probs.shape[:2]
        stacked = (  # (B, layers, heads, T', T'); an encoder may have no self-attention layers
            torch.stack(enc.self_attention, dim=1).float().cpu() if enc.self_attention
            else torch.zeros(batch, 0, config.encoder.num_heads, frames, frames)
        )
        encoder_attention = [stacked[b, :, :, :n, :n] for b, n in enumerate(frame_counts)]
    finished = time.perf_counter()

    timings = Timings(encoded - start, searched - encoded, align_done - searched, finished - align_done)
    results = []
    for b, hyp in enumerate(best):
        token_times, words, alignment, path_score = aligned[b]
        results.append(Result(
            text=texts[b],
            tokens=list(hyp.tokens),
            pieces=[searched_tokenizer.piece(t) for t in hyp.tokens],
            score=hyp.score,
            token_times=token_times,
            words=words,
            alignment=alignment,
            alignment_score=path_score,
            frame_timing=timing,
            duration=durations[b],
            speech_prob=speech_probs[b],
            timings=timings,
            cross_attention=cross[b],
            encoder_attention=encoder_attention[b],
            no_speech_prob=no_speech[b],
        ))
    return results


def _decoder_no_speech_probs(model: ASRModel, memory: Tensor, memory_lengths: Tensor) -> list[float]:
    """Per utterance, the decoder's probability of its no-speech token right after <sos> (Whisper's
    no_speech_prob), before any token is suppressed."""
    batch, device = len(memory), memory.device
    sos = torch.full((batch, 1), model.config.sos_id, dtype=torch.long, device=device)
    states = model.decoder.states(sos, torch.ones(batch, dtype=torch.long, device=device), memory,
                                  lengths_to_mask(memory_lengths, memory.shape[1])).states
    probs = torch.softmax(model.decoder.project(states[:, 0]).float(), dim=-1)
    return probs[:, model.config.no_speech_id].tolist()


def _speaker(model: ASRModel, options: DecodingOptions, batch: int) -> Optional[Tensor]:
    """options.speaker as a (batch, embedding_dim) tensor for the encoder; None when no one is enrolled."""
    if not options.speaker:
        return None
    conditioning = speaker_conditioning(model.config)
    if len(options.speaker) != conditioning.embedding_dim:
        raise EnrollmentError(f"a speaker embedding has {conditioning.embedding_dim} numbers for this model, "
                              f"got {len(options.speaker)}")
    device = next(model.parameters()).device
    return torch.tensor(options.speaker, device=device)[None].expand(batch, -1)


def _vocabularies(config, tokenizer: Tokenizer, ctc_tokenizer: Optional[Tokenizer],
                  options: DecodingOptions) -> Vocabularies:
    if ctc_shares_vocabulary(config):
        return Vocabularies(tokenizer, tokenizer)
    if ctc_tokenizer is None and options.mode != "attention":
        raise ConfigError(
            f"decoding mode {options.mode!r} needs the tokenizer of this model's CTC head, which has its own "
            f"vocabulary of {config.ctc_vocab_size} labels (an imported Whisper model?): use mode 'attention'"
        )
    if options.mode == "joint":
        raise ConfigError("one-pass joint decoding needs CTC and decoder to share a vocabulary; this model's "
                          "do not: use 'rescore' (both n-best lists ranked by both models) instead")
    return Vocabularies(tokenizer, ctc_tokenizer or tokenizer)


def search(
    model: ASRModel, memory: Tensor, memory_lengths: Tensor, log_probs: Tensor, options: DecodingOptions,
    vocab: Vocabularies, ctc_lengths: Tensor, token_limits: Optional[list[int]] = None,
) -> list[Hypothesis]:
    """The best hypothesis per utterance under options.mode. memory (B, T', d), log_probs (B, T', V);
    the decoder attends to memory_lengths frames, CTC reads ctc_lengths (fewer when padded); the
    attention search stops at `token_limits` tokens per utterance when given.

    Hypotheses hold CTC labels in the CTC modes, decoder tokens in the others."""
    config = model.config
    ctc_eos = config.eos_id if vocab.shared else vocab.ctc.eos_id
    if not vocab.shared and options.mode == "rescore":
        ctc_nbest = ctc_prefix_beam_search(log_probs, ctc_lengths, options.beam_size, config.blank_id, ctc_eos)
        attention_nbest = beam_search(model, memory, memory_lengths, options.beam_size,
                                      length_penalty=options.length_penalty, max_length_ratio=options.max_length_ratio,
                                      token_limits=token_limits)
        return cross_vocabulary_rescore(model, memory, memory_lengths, log_probs, ctc_nbest, attention_nbest,
                                        vocab.decoder, vocab.ctc, options.ctc_weight, options.length_penalty,
                                        ctc_lengths)
    if options.mode == "ctc_greedy":
        sequences = ctc_greedy_search(log_probs, ctc_lengths, config.blank_id)
        scores = best_path_scores(log_probs, ctc_lengths)
        return [Hypothesis(tuple(s), score, ctc_score=score) for s, score in zip(sequences, scores)]
    if options.mode in ("ctc_beam", "rescore"):
        nbest = ctc_prefix_beam_search(log_probs, ctc_lengths, options.beam_size, config.blank_id, ctc_eos)
        if options.mode == "rescore":
            nbest = attention_rescore(model, memory, memory_lengths, nbest, options.ctc_weight, options.length_penalty)
        return [hyps[0] for hyps in nbest]
    nbest = beam_search(
        model, memory, memory_lengths, options.beam_size, forced=options.prefix,
        ctc_log_probs=log_probs if options.mode == "joint" else None,
        ctc_weight=options.ctc_weight if options.mode == "joint" else 0.0,
        length_penalty=options.length_penalty,
        max_length_ratio=options.max_length_ratio,
        ctc_lengths=ctc_lengths,
        length_norm=options.length_norm,
        token_limits=token_limits,
    )
    best = [hyps[0] for hyps in nbest]
    if options.mode == "attention" and len(options.temperatures) > 1 and not options.prefix:
        best = with_fallback(best, lambda hyp: vocab.decoder.decode(list(hyp.tokens)), model, memory, memory_lengths,
                             options.temperatures, options.best_of, options.compression_ratio_threshold,
                             options.logprob_threshold, options.max_length_ratio, token_limits)
    return [dataclasses.replace(hyp, tokens=options.prefix + hyp.tokens) for hyp in best]


def _cross_attention(
    model: ASRModel, memory: Tensor, memory_lengths: Tensor, sequences: list[Optional[tuple[int, ...]]]
) -> list[Optional[Tensor]]:
    """(layers, heads, len(tokens), frames) per utterance, from one teacher-forced pass with weights;
    None for an utterance without decoder tokens (a CTC mode with a CTC vocabulary of its own)."""
    limit = max_tokens(model)
    fits = [b for b, seq in enumerate(sequences) if seq is not None and len(seq) <= limit]
    out: list[Optional[Tensor]] = [None] * len(sequences)
    if fits:
        forced = teacher_force(model, memory, memory_lengths, fits, [sequences[b] for b in fits], need_weights=True)
        for b, weights in zip(fits, forced.cross_attention):
            out[b] = weights[:, :, : len(sequences[b])].cpu()  # the <eos> row predicts no token
    return out
