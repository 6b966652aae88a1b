"""Decoding: every search against a brute-force or independent reference, and the public API."""

import itertools
import math
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F

import asr
from asr.audio import load_audio
from asr.cli import main as cli_main
from asr.decoding.align import BLANK_POSITION, forced_align, path_log_prob
from asr.decoding.vocabulary import never_emitted
from asr.decoding.ctc import ctc_prefix_beam_search
from asr.decoding.decode import decode
from asr.decoding.hypothesis import Hypothesis
from asr.decoding.prefix_score import CTCPrefixScorer
from asr.decoding.rescore import attention_rescore
from asr.decoding.sampling import compression_ratio, sample
from asr.decoding.teacher_forcing import teacher_force
from asr.errors import CheckpointError, ConfigError
from asr.model.asr_model import ASRModel
from asr.model.encoder import lengths_to_mask
from asr.recognizer import Recognizer
from asr.tokenizer import BLANK, SOS_EOS, UNK, WORD_MARK, CharTokenizer
from asr.train import train
from tests.conftest import fsdd_rows, tiny_model_config, tiny_train_config, write_manifest

MODES = ["ctc_greedy", "ctc_beam", "attention", "joint", "rescore"]
SAMPLE_RATE = 16000


# --- brute force over CTC alignments ------------------------------------------------------------

def collapse(path, blank=0):
    return tuple(p for i, p in enumerate(path) if p != blank and (i == 0 or p != path[i - 1]))


def labelling_log_probs(log_probs, labels):
    """log P(labelling) for every labelling reachable with `labels`, summing all paths; log_probs (T, V)."""
    totals = {}
    for path in itertools.product(labels, repeat=log_probs.shape[0]):
        score = float(sum(log_probs[t, p] for t, p in enumerate(path)))
        key = collapse(path)
        totals[key] = float(np.logaddexp(totals.get(key, -math.inf), score))
    return totals


def test_prefix_scorer_matches_brute_force_sum_over_alignments():
    torch.manual_seed(0)
    vocab, eos = 4, 3  # blank, two tokens, <eos>
    log_probs = torch.randn(2, 5, vocab).log_softmax(-1)
    lengths = torch.tensor([5, 3])  # the second utterance is padded
    scorer = CTCPrefixScorer(log_probs, lengths, blank_id=0, eos_id=eos)
    candidates = torch.tensor([[1, 2, eos]] * 2)
    for b in range(2):
        totals = labelling_log_probs(log_probs[b, : lengths[b]], range(vocab))
        for prefix in [(), (1,), (2, 2), (1, 2), (2, 1, 1)]:
            state = scorer.initial_state(torch.tensor([b]))
            for token in prefix:
                extension = scorer.extend(state, torch.tensor([[token]]))
                state = scorer.select(state, extension, torch.tensor([0]), torch.tensor([0]))
            scores = scorer.extend(state, candidates[:1]).score[0].tolist()
            for token, score in zip([1, 2, eos], scores):
                if token == eos:  # the output is exactly the prefix
                    expected = totals.get(prefix, -math.inf)
                else:  # the output starts with prefix + token
                    starts = [v for k, v in totals.items() if k[: len(prefix) + 1] == prefix + (token,)]
                    expected = float(np.logaddexp.reduce(starts)) if starts else -math.inf
                assert score == pytest.approx(expected, abs=1e-4), (b, prefix, token)


def test_ctc_prefix_beam_search_with_a_wide_beam_is_exact():
    torch.manual_seed(1)
    log_probs = torch.randn(1, 6, 4).log_softmax(-1)  # blank, two tokens, <eos> (never a label)
    nbest = ctc_prefix_beam_search(log_probs, torch.tensor([6]), beam_size=200, blank_id=0, eos_id=3)[0]
    totals = labelling_log_probs(log_probs[0], range(3))
    ranked = sorted(totals.items(), key=lambda kv: kv[1], reverse=True)
    assert nbest[0].tokens == ranked[0][0]
    assert [h.tokens for h in nbest[:5]] == [k for k, _ in ranked[:5]]
    for hyp in nbest:
        assert hyp.score == pytest.approx(totals[hyp.tokens], abs=1e-4)


def test_forced_alignment_is_the_best_path_spelling_the_tokens_and_scores_it():
    torch.manual_seed(2)
    log_probs = torch.randn(6, 4).log_softmax(-1)
    for tokens in [(1, 2), (2, 2), (1, 3, 1), ()]:
        paths = [p for p in itertools.product(range(4), repeat=6) if collapse(p) == tokens]
        best = max(paths, key=lambda p: float(sum(log_probs[t, s] for t, s in enumerate(p))))
        alignment = forced_align(log_probs, tokens, blank_id=0)
        # Read the best path as token positions: a token starts where the label changes to it.
        position, expected = -1, []
        for t, label in enumerate(best):
            if label != 0 and (t == 0 or label != best[t - 1]):
                position += 1
            expected.append(position if label != 0 else BLANK_POSITION)
        assert alignment == expected, tokens
        best_score = float(sum(log_probs[t, s] for t, s in enumerate(best)))
        assert path_log_prob(log_probs.numpy(), tokens, alignment) == pytest.approx(best_score, abs=1e-5)
    assert forced_align(log_probs[:2], (1, 1, 2), blank_id=0) is None  # "1 _ 1 2" needs 4 frames


def test_options_are_checked():
    for bad in [dict(mode="wfst"), dict(beam_size=0), dict(ctc_weight=1.5), dict(max_length_ratio=0.0)]:
        with pytest.raises(ConfigError):
            asr.DecodingOptions(**bad)


def test_a_recording_a_second_shorter_than_the_short_window_is_padded_to_it():
    options = asr.DecodingOptions(pad_to_frames=3000, short_pad_to_frames=1000)
    assert [options.window_frames(n) for n in (1, 900, 901, 2999, 3000)] == [1000, 1000, 3000, 3000, 3000]
    assert asr.DecodingOptions(pad_to_frames=3000).window_frames(10) == 3000
    assert asr.DecodingOptions().window_frames(10) == 0  # the real length, unpadded
    for bad in [dict(pad_to_frames=3000, short_pad_to_frames=3000), dict(short_pad_to_frames=1000),
                dict(pad_to_frames=3000, short_pad_to_frames=-1)]:
        with pytest.raises(ConfigError, match="short_pad_to_frames"):
            asr.DecodingOptions(**bad)


# --- an untrained model: searches against independent references ---------------------------------

@pytest.fixture(scope="module")
def random_model():
    torch.manual_seed(0)
    model = ASRModel(tiny_model_config(vocab=12)).eval()
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([8000, 5600])
    waves = torch.randn(2, 8000, generator=g) * 0.1
    waves[1, 5600:] = 0.0
    with torch.no_grad():
        enc = model.encode(waves, lengths)
    return model, waves, lengths, enc


@torch.no_grad()
def greedy_without_cache(model, memory, mask, max_tokens):
    """Attention greedy search that reruns the whole decoder each step: no cache, no beam code."""
    config = model.config
    prefix, out, score = [config.sos_id, *config.decoder_prompt], [], 0.0
    while len(out) < max_tokens:
        tokens = torch.tensor([prefix + out])
        logits = model.decoder(tokens, torch.tensor([tokens.shape[1]]), memory, mask).logits[0, -1]
        log_probs = logits.float().log_softmax(-1)
        log_probs[never_emitted(config)] = -math.inf
        token = int(log_probs.argmax())
        score += float(log_probs[token])
        if token == config.eos_id:
            break
        out.append(token)
    return out, score


@pytest.mark.parametrize("prompt", [[], [4, 7]])
def test_attention_beam_of_one_is_greedy_decoding(random_model, prompt):
    model, waves, lengths, enc = random_model
    model.config.decoder_prompt = prompt
    try:
        options = asr.DecodingOptions(mode="attention", beam_size=1)
        results = decode(model, tokenizer_for(model), waves, lengths, options)
        for b, result in enumerate(results):
            n = int(enc.lengths[b])
            tokens, score = greedy_without_cache(model, enc.hidden[b : b + 1, :n], enc.mask[b : b + 1, :n], n)
            assert result.tokens == tokens
            assert result.score == pytest.approx(score, abs=1e-3)
    finally:
        model.config.decoder_prompt = []


def test_joint_with_ctc_weight_zero_is_attention_beam_search(random_model):
    model, waves, lengths, _ = random_model
    tokenizer = tokenizer_for(model)
    attention = decode(model, tokenizer, waves, lengths, asr.DecodingOptions(mode="attention", beam_size=4))
    joint = decode(model, tokenizer, waves, lengths, asr.DecodingOptions(mode="joint", beam_size=4, ctc_weight=0.0))
    assert [r.tokens for r in joint] == [r.tokens for r in attention]
    assert [r.score for r in joint] == pytest.approx([r.score for r in attention], abs=1e-4)


@torch.no_grad()
def attention_score_step_by_step(model, memory, tokens, with_eos: bool = True):
    """log P_att(tokens <eos>) (or of the tokens alone) fed one token at a time through the key/value cache."""
    config = model.config
    mask = torch.ones(1, memory.shape[1], dtype=torch.bool)
    cache = model.decoder.init_cache(memory)
    logits, cache, _ = model.decoder.step(torch.tensor([[config.sos_id, *config.decoder_prompt]]), cache, mask)
    total = 0.0
    for token in [*tokens, config.eos_id] if with_eos else tokens:
        total += float(logits[0, -1].float().log_softmax(-1)[token])
        logits, cache, _ = model.decoder.step(torch.tensor([[token]]), cache, mask)
    return total


def test_attention_rescoring_picks_the_best_combined_score(random_model):
    model, _, _, enc = random_model
    rng = random.Random(0)
    weight = 0.4
    nbest, expected = [], []
    for b in range(2):
        memory = enc.hidden[b : b + 1, : int(enc.lengths[b])]
        seqs = [tuple(rng.randrange(2, 11) for _ in range(rng.randrange(1, 6))) for _ in range(5)]
        attention = [attention_score_step_by_step(model, memory, s) for s in seqs]
        # CTC ranks the hypotheses in the reverse order of the attention decoder, but by less,
        # so the combined score follows attention and the CTC favourite loses.
        nbest.append([Hypothesis(s, -0.1 * a, ctc_score=-0.1 * a) for s, a in zip(seqs, attention)])
        expected.append({s: weight * (-0.1 * a) + (1 - weight) * a for s, a in zip(seqs, attention)})
    rescored = attention_rescore(model, enc.hidden, enc.lengths, nbest, ctc_weight=weight)
    for hyps, before, scores in zip(rescored, nbest, expected):
        assert hyps[0].tokens == max(scores, key=scores.__getitem__)
        assert hyps[0].tokens != max(before, key=lambda h: h.score).tokens
        assert {h.tokens: h.score for h in hyps} == pytest.approx(scores, abs=1e-4)


@pytest.mark.parametrize("prompt", [[], [4, 7]])
def test_teacher_forcing_scores_every_token_as_a_whole_decoder_pass_does(random_model, prompt):
    """Teacher forcing projects each distinct state once; shared beginnings, repeated and empty
    sequences and two utterances must still score exactly as one decoder pass per sequence."""
    model, _, _, enc = random_model
    model.config.decoder_prompt = prompt
    try:
        utterance = [0, 0, 0, 0, 1, 1, 1]
        sequences = [[3, 4, 5], [3, 4, 6], [3, 4, 5], [], [3, 4], [7], [3, 4, 5, 6, 8]]
        forced = teacher_force(model, enc.hidden, enc.lengths, utterance, sequences)
        for u, seq, got in zip(utterance, sequences, forced.token_log_probs):
            n = int(enc.lengths[u])
            tokens = torch.tensor([[model.config.sos_id, *prompt, *seq]])
            with torch.no_grad():
                logits = model.decoder(tokens, torch.tensor([tokens.shape[1]]), enc.hidden[u : u + 1, :n],
                                       enc.mask[u : u + 1, :n]).logits[0]
            log_probs = logits.float().log_softmax(-1)[len(prompt) :]  # from the position predicting seq[0]
            expected = log_probs[torch.arange(len(seq) + 1), torch.tensor([*seq, model.config.eos_id])]
            assert torch.allclose(got, expected, atol=1e-5)
    finally:
        model.config.decoder_prompt = []


def test_decoder_step_can_project_its_last_position_only(random_model):
    model, _, _, enc = random_model
    mask = enc.mask[:1]
    tokens = torch.tensor([[model.config.sos_id, 4, 7]])
    with torch.no_grad():
        every, _, _ = model.decoder.step(tokens, model.decoder.init_cache(enc.hidden[:1]), mask)
        last, cache, _ = model.decoder.step(tokens, model.decoder.init_cache(enc.hidden[:1]), mask, last_only=True)
    assert last.shape == (1, 1, model.config.vocab_size) and cache.length == 3
    assert torch.allclose(last[0, 0], every[0, -1], atol=1e-5)


def tokenizer_for(model):
    """A character tokenizer with the model's vocabulary size (only its layout matters here)."""
    symbols = [BLANK, UNK, WORD_MARK, *"abcdefghijklmnopqrstuvwxyz"][: model.config.vocab_size - 1]
    return CharTokenizer([*symbols, SOS_EOS])


# --- a trained tiny model on digits with known silences -----------------------------------------

@dataclass
class Clip:
    path: Path
    text: str
    spans: list[tuple[str, float, float]]  # (word, start, end) in seconds


@dataclass
class Digits:
    recognizer: Recognizer
    model_dir: Path
    clips: list[Clip]
    silence: Path


def two_digit_clips(data_dir: Path, folder: Path) -> list[Clip]:
    """All 20 recordings of `fsdd_rows`, paired into 10 clips: silence, digit, silence, digit, silence."""
    recordings = [(row["text"], load_audio(row["audio"])) for row in fsdd_rows(data_dir)]
    rng = random.Random(0)
    rng.shuffle(recordings)
    clips = []
    for c in range(len(recordings) // 2):
        lead, gap, tail = (int(rng.uniform(lo, hi) * SAMPLE_RATE) for lo, hi in [(0.2, 0.4), (0.4, 0.7), (0.2, 0.4)])
        (w1, a1), (w2, a2) = recordings[2 * c : 2 * c + 2]
        silence = lambda n: np.zeros(n, np.float32)  # noqa: E731
        audio = np.concatenate([silence(lead), a1, silence(gap), a2, silence(tail)])
        start2 = lead + len(a1) + gap
        spans = [(w1, lead / SAMPLE_RATE, (lead + len(a1)) / SAMPLE_RATE),
                 (w2, start2 / SAMPLE_RATE, (start2 + len(a2)) / SAMPLE_RATE)]
        path = folder / f"clip{c}.wav"
        sf.write(path, audio, SAMPLE_RATE)
        clips.append(Clip(path, f"{w1} {w2}", spans))
    return clips


@pytest.fixture(scope="module")
def digits(data_dir, tmp_path_factory) -> Digits:
    """A tiny model that memorises 10 two-digit clips (about 100 s of one CPU core on AMD EPYC, the
    slowest set-up in the suite: 1,200 steps, a checkpoint each epoch).

    Its encoder has no self-attention layers and no absolute positions added (relative ones live
    only in self-attention), so each frame's CTC posterior depends only on the ~85 ms of audio
    under the subsampler: a tiny encoder that memorises a few clips is otherwise free to put its
    CTC spikes anywhere (in the digital silences, by their position), and where it puts them would
    depend on the CPU's float kernels. The attention decoder still sees the whole utterance.
    """
    folder = tmp_path_factory.mktemp("digits")
    clips = two_digit_clips(data_dir, folder)
    rows = [{"id": c.path.stem, "audio": str(c.path), "text": c.text, "duration": c.spans[-1][2] + 0.4} for c in clips]
    config = tiny_train_config(
        folder / "exp", [write_manifest(rows, folder / "train.jsonl")],
        model={"ctc_weight": 0.6, "encoder": {"num_layers": 0, "positional": "rel"}},
        data={"dev": [], "max_batch_seconds": 4.0},
        optim={"max_epochs": 120, "lr": 0.005, "warmup_steps": 20},
    )
    model_dir = train(config)
    sf.write(folder / "silence.wav", np.zeros(SAMPLE_RATE, np.float32), SAMPLE_RATE)
    return Digits(asr.load_model(model_dir), model_dir, clips, folder / "silence.wav")


def digits_encoded(digits: Digits, count: int = 4):
    """The digits model, a batch of its clips and their encoder output."""
    model = digits.recognizer.model
    waves = [load_audio(c.path) for c in digits.clips[:count]]
    lengths = torch.tensor([len(w) for w in waves])
    batch = torch.zeros(len(waves), int(lengths.max()))
    for i, w in enumerate(waves):
        batch[i, : len(w)] = torch.from_numpy(w)
    with torch.no_grad():
        enc = model.encode(batch, lengths)
    return model, batch, lengths, enc


def test_a_forced_prefix_is_continued_and_a_token_rate_caps_the_length(digits):
    model, waves, lengths, _ = digits_encoded(digits)
    tokenizer = digits.recognizer.tokenizer
    greedy = decode(model, tokenizer, waves, lengths, asr.DecodingOptions(mode="attention", beam_size=1))
    assert all(len(r.tokens) >= 3 for r in greedy), [r.text for r in greedy]
    for b, result in enumerate(greedy):
        # Forced to greedy search's own first tokens, greedy search goes on as it did.
        forced = asr.DecodingOptions(mode="attention", beam_size=1, prefix=tuple(result.tokens[:2]))
        again = decode(model, tokenizer, waves[b : b + 1, : int(lengths[b])], lengths[b : b + 1], forced)[0]
        assert again.tokens == result.tokens
    prefix = tuple(tokenizer.encode("nine"))
    other = decode(model, tokenizer, waves[:1], lengths[:1], asr.DecodingOptions(mode="attention", prefix=prefix))[0]
    assert tuple(other.tokens[: len(prefix)]) == prefix and other.text.startswith("nine")
    capped = decode(model, tokenizer, waves, lengths, asr.DecodingOptions(mode="attention", max_tokens_per_second=2.0))
    seconds = [max(1.0, n / SAMPLE_RATE) for n in lengths.tolist()]
    assert all(len(r.tokens) <= math.ceil(2.0 * s) for r, s in zip(capped, seconds))
    with pytest.raises(ConfigError, match="prefix"):
        asr.DecodingOptions(mode="joint", prefix=(1,))


def test_sampling_at_a_vanishing_temperature_is_greedy_search(digits):
    model, waves, lengths, enc = digits_encoded(digits)
    greedy = decode(model, digits.recognizer.tokenizer, waves, lengths,
                    asr.DecodingOptions(mode="attention", beam_size=1))
    sampled = sample(model, enc.hidden, enc.lengths, temperature=1e-4, best_of=3,
                     generator=torch.Generator().manual_seed(1))
    assert [list(h.tokens) for h in sampled] == [r.tokens for r in greedy]
    assert [h.score for h in sampled] == pytest.approx([r.score for r in greedy], abs=1e-3)


def test_failing_transcripts_are_sampled_again_and_the_rest_kept(digits):
    model, waves, lengths, enc = digits_encoded(digits)
    tokenizer = digits.recognizer.tokenizer
    kept = decode(model, tokenizer, waves, lengths, asr.DecodingOptions(mode="attention", beam_size=2))
    # Nothing fails without thresholds: the beam's transcripts stand.
    lenient = asr.DecodingOptions(mode="attention", beam_size=2, temperatures=(0.0, 0.5), logprob_threshold=None,
                                  compression_ratio_threshold=0.0)
    assert [r.tokens for r in decode(model, tokenizer, waves, lengths, lenient)] == [r.tokens for r in kept]
    # Everything fails when no mean log P can pass: sampled at a high temperature, the same way twice,
    # each scored by the decoder's own log P of its tokens and <eos>.
    strict = asr.DecodingOptions(mode="attention", beam_size=2, temperatures=(0.0, 5.0), logprob_threshold=0.0,
                                 best_of=1)
    first = decode(model, tokenizer, waves, lengths, strict)
    assert [r.tokens for r in first] == [r.tokens for r in decode(model, tokenizer, waves, lengths, strict)]
    assert [r.tokens for r in first] != [r.tokens for r in kept]
    for b, result in enumerate(first):
        n = int(enc.lengths[b])
        ended = len(result.tokens) < n  # else cut at one token per encoder frame, before any <eos>
        expected = attention_score_step_by_step(model, enc.hidden[b : b + 1, :n], result.tokens, with_eos=ended)
        assert result.score == pytest.approx(expected, abs=1e-3)


def test_compression_ratio_tells_a_loop_from_speech():
    assert compression_ratio("one, " * 40) > 2.4
    assert compression_ratio("The child almost hurt the small dog.") < 2.4
    assert compression_ratio("") == 0.0


def test_time_stamps_fall_inside_the_true_word_spans(digits):
    tolerance = 0.08  # two encoder frames; the silences between words are 0.4 s or more
    results = digits.recognizer.transcribe_batch([c.path for c in digits.clips], mode="ctc_beam", beam_size=4)
    for clip, result in zip(digits.clips, results):
        assert result.text == clip.text
        assert [w.word for w in result.words] == clip.text.split()
        for word, (_, start, end) in zip(result.words, clip.spans):
            assert start - tolerance <= word.start < word.end <= end + tolerance, (clip.text, word, start, end)
            assert 0.0 < word.confidence <= 1.0
        # One alignment entry per encoder frame, emitting every token in order; token times ordered.
        model = digits.recognizer.model
        feature_frames = model.frontend.num_frames(torch.tensor(round(result.duration * SAMPLE_RATE)))
        assert len(result.alignment) == int(model.encoder.subsampling.output_lengths(feature_frames))
        emitted = [p for p in result.alignment if p != BLANK_POSITION]
        assert sorted(set(emitted)) == list(range(len(result.tokens))) and emitted == sorted(emitted)
        assert all(a[1] <= b[0] + 1e-9 for a, b in zip(result.token_times, result.token_times[1:]))


@pytest.mark.parametrize("mode", MODES)
def test_batched_decoding_equals_one_at_a_time(digits, mode):
    paths = [c.path for c in digits.clips[:4]]
    options = asr.DecodingOptions(mode=mode, beam_size=3)
    batched = digits.recognizer.transcribe_batch(paths, options, batch_size=4)
    for path, together in zip(paths, batched):
        alone = digits.recognizer.transcribe(path, options)
        assert together.tokens == alone.tokens
        assert together.score == pytest.approx(alone.score, abs=1e-3)
        assert together.alignment == alone.alignment
        assert [w[:3] for w in together.words] == [w[:3] for w in alone.words]


def test_a_batch_decodes_each_recording_in_its_own_window(digits, monkeypatch):
    """Recordings that fit the short window and those that do not, in one batch: each group is
    encoded in its window, and each recording comes out as alone."""
    recognizer = digits.recognizer
    paths = [c.path for c in digits.clips[:6]]
    frames = [len(load_audio(p)) // 160 + 1 for p in paths]
    short = sorted(frames)[2] + 100  # the three shortest fit with their second of margin
    options = asr.DecodingOptions(mode="attention", beam_size=3, pad_to_frames=short + 400, short_pad_to_frames=short)
    windows = [options.window_frames(n) for n in frames]
    assert sorted(windows) == [short] * 3 + [short + 400] * 3
    encoded = []
    encode = recognizer.model.encode
    monkeypatch.setattr(recognizer.model, "encode", lambda waves, lengths, **kw: encoded.append(
        (len(waves), kw["pad_to_frames"])) or encode(waves, lengths, **kw))
    batched = recognizer.transcribe_batch(paths, options, batch_size=6)
    assert sorted(encoded) == [(3, short), (3, short + 400)]
    for path, window, together in zip(paths, windows, batched):
        alone = recognizer.transcribe(path, options)
        assert together.tokens == alone.tokens and together.score == pytest.approx(alone.score, abs=1e-3)
        in_window = recognizer.transcribe(path, options, pad_to_frames=window, short_pad_to_frames=0)
        assert together.tokens == in_window.tokens and together.score == pytest.approx(in_window.score, abs=1e-3)


def test_ctc_beam_of_one_is_greedy_decoding(digits):
    paths = [c.path for c in digits.clips]
    greedy = digits.recognizer.transcribe_batch(paths, mode="ctc_greedy")
    beam = digits.recognizer.transcribe_batch(paths, mode="ctc_beam", beam_size=1)
    assert [r.tokens for r in beam] == [r.tokens for r in greedy]


def test_joint_with_ctc_weight_one_is_ctc_prefix_beam_search(digits):
    paths = [c.path for c in digits.clips]
    ctc = digits.recognizer.transcribe_batch(paths, mode="ctc_beam", beam_size=4)
    joint = digits.recognizer.transcribe_batch(paths, mode="joint", beam_size=4, ctc_weight=1.0)
    assert [r.tokens for r in joint] == [r.tokens for r in ctc]
    # The joint score is then the exact CTC log-likelihood of the tokens.
    model = digits.recognizer.model
    for path, result in zip(paths, joint):
        wave = torch.from_numpy(load_audio(path))[None]
        with torch.no_grad():
            enc = model.encode(wave, torch.tensor([wave.shape[1]]))
            nll = F.ctc_loss(model.ctc.log_probs(enc.hidden).transpose(0, 1), torch.tensor([result.tokens]),
                             enc.lengths, torch.tensor([len(result.tokens)]), reduction="sum")
        assert result.score == pytest.approx(-float(nll), abs=1e-3)


def test_attention_weights_have_the_documented_shape_and_sum_to_one(digits):
    recognizer = digits.recognizer
    config = recognizer.model.config
    paths = [digits.clips[0].path, digits.clips[1].path]
    results = recognizer.transcribe_batch(paths, mode="joint", beam_size=2, return_attention=True)
    for result in results:
        frames = len(result.alignment)
        assert result.cross_attention.shape == (config.decoder.num_layers, config.decoder.num_heads,
                                                len(result.tokens), frames)
        torch.testing.assert_close(result.cross_attention.sum(-1), torch.ones(result.cross_attention.shape[:-1]))
        assert result.encoder_attention is not None and result.encoder_attention.shape[0] == config.encoder.num_layers
    plain = recognizer.transcribe(paths[0], mode="joint", beam_size=2)
    assert plain.cross_attention is None and plain.encoder_attention is None


def test_no_speech_gate_decodes_silence_to_nothing(digits):
    paths = [digits.clips[0].path, digits.silence]
    ungated = digits.recognizer.transcribe_batch(paths, mode="attention")
    speech, silence = digits.recognizer.transcribe_batch(paths, mode="attention", no_speech_threshold=0.05)
    assert speech.speech_prob > 0.05 and speech.tokens == ungated[0].tokens
    assert silence.speech_prob < 0.05
    assert silence.text == "" and silence.tokens == [] and silence.words == []


def test_transcribe_command_names_bad_files_and_fails(digits, tmp_path, capsys):
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    code = cli_main(["transcribe", str(digits.clips[0].path), str(bad), "--model", str(digits.model_dir),
                     "--decode", "rescore", "--beam", "3", "--ctc-weight", "0.5"])
    out, err = capsys.readouterr()
    assert code == 1
    assert out.splitlines() == [f"{digits.clips[0].path}\t{digits.clips[0].text}"]
    assert err.strip().count("\n") == 0 and "AudioError" in err and str(bad) in err and "Traceback" not in err
    assert cli_main(["transcribe", str(digits.clips[0].path), "--model", str(tmp_path / "missing")]) == 1
    assert "CheckpointError" in capsys.readouterr().err


def test_recognizer_takes_arrays_and_checks_names(digits):
    samples = load_audio(digits.clips[0].path)
    assert digits.recognizer.transcribe(samples, mode="ctc_greedy").text == digits.clips[0].text
    assert digits.recognizer.transcribe(torch.from_numpy(samples[:50]), mode="attention").duration > 0
    with pytest.raises(ConfigError, match="beam"):
        digits.recognizer.transcribe(samples, beam=3)
    with pytest.raises(CheckpointError, match="unknown model"):
        asr.load_model("whisper-large-v9")


def test_the_no_speech_gate_measures_the_densest_stretch_of_speech():
    from asr.decoding.no_speech import densest_stretch

    generator = torch.Generator().manual_seed(0)
    lengths = torch.tensor([250, 30, 1, 0, 120])
    speech = torch.rand(5, 250, generator=generator) * lengths_to_mask(lengths, 250)
    window = 50
    expected = []
    for row, n in zip(speech, lengths.tolist()):
        width = max(1, min(window, n))
        means = [float(row[t : t + width].mean()) for t in range(0, n - width + 1)]
        expected.append(max(means, default=0.0))
    assert densest_stretch(speech, lengths, window).tolist() == pytest.approx(expected, abs=1e-5)
    # One short word (three non-blank frames) in five seconds of silence: the mean over the clip
    # is under 0.02, its densest second is not.
    word = torch.zeros(1, 250)
    word[0, 100:103] = 0.9
    assert float(word.mean()) < 0.02 and float(densest_stretch(word, torch.tensor([250]), 50)[0]) == pytest.approx(0.054)


def test_the_decoders_no_speech_rule_is_whispers():
    """Drop a transcript when the decoder finds no speech likely and does not follow what it heard."""
    from asr.decoding.no_speech import decoder_hears_no_speech

    # Two tokens and <eos> summing to -3.0: a mean of -1.0 per token.
    assert decoder_hears_no_speech(0.5, -3.0, 2, threshold=0.4, logprob_threshold=-0.9)
    assert not decoder_hears_no_speech(0.5, -2.4, 2, threshold=0.4, logprob_threshold=-0.9)  # mean -0.8
    assert not decoder_hears_no_speech(0.4, -30.0, 2, threshold=0.4, logprob_threshold=-0.9)  # not above it
    assert not decoder_hears_no_speech(0.9, -30.0, 2, threshold=0.0, logprob_threshold=-0.9)  # the rule is off
    assert decoder_hears_no_speech(0.5, -0.1, 2, threshold=0.4, logprob_threshold=None)  # the probability alone
    with pytest.raises(ConfigError, match="decoder_no_speech_threshold"):
        asr.DecodingOptions(decoder_no_speech_threshold=1.5)


def test_a_model_whose_no_speech_rule_could_never_act_is_refused(digits, tmp_path):
    """A folder that sets the decoder's no-speech rule for a model without a no-speech token (a student
    of a teacher written before the token was recorded) would decode as if the rule were off."""
    import shutil

    import yaml

    folder = Path(shutil.copytree(digits.model_dir, tmp_path / "model"))
    meta = yaml.safe_load((folder / "model.yaml").read_text())
    assert meta["model"].get("no_speech_id", -1) < 0
    meta.setdefault("decoding", {})["decoder_no_speech_threshold"] = 0.1
    (folder / "model.yaml").write_text(yaml.safe_dump(meta))
    with pytest.raises(CheckpointError, match="no_speech_id"):
        asr.load_model(folder)


def test_length_normalised_search_waits_for_a_full_beam_and_ranks_per_token(digits):
    """Whisper's rule: summed log-probabilities favour early endings, so rank by score per token."""
    from asr.decoding.beam_search import beam_search

    model = digits.recognizer.model
    waveforms = [torch.from_numpy(load_audio(c.path)) for c in digits.clips[:3]]
    lengths = torch.tensor([len(w) for w in waveforms])
    batch = torch.nn.utils.rnn.pad_sequence(waveforms, batch_first=True)
    with torch.no_grad():
        enc = model.encode(batch, lengths)
    found = beam_search(model, enc.hidden, enc.lengths, beam_size=3, length_norm=True)
    for hyps in found:
        assert len(hyps) >= 3
        per_token = [h.score / max(1, len(h.tokens)) for h in hyps]
        assert per_token == sorted(per_token, reverse=True)
    summed = beam_search(model, enc.hidden, enc.lengths, beam_size=3)
    assert any(len(a) > len(b) for a, b in zip(found, summed))  # it searched on past the first endings
