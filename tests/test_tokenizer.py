import pytest

from asr.config import TokenizerConfig
from asr.errors import TokenizerError
from asr.tokenizer import CharTokenizer, SentencePieceTokenizer, load_tokenizer, train_tokenizer

TEXTS = ["The child almost hurt the small dog", "stuff it into you his belly counselled him",
         "in being comparatively modern", "produced the block books which were the immediate predecessors"] * 5


def test_char_tokenizer_round_trip_and_layout():
    tok = train_tokenizer(TEXTS, TokenizerConfig(kind="char"))
    assert isinstance(tok, CharTokenizer)
    assert (tok.blank_id, tok.unk_id, tok.sos_id) == (0, 1, tok.vocab_size - 1)
    ids = tok.encode("The  small DOG ")
    assert tok.decode(ids) == "the small dog"
    assert 0 not in ids and tok.sos_id not in ids
    assert tok.words(ids) == [("the", [0, 1, 2]), ("small", [4, 5, 6, 7, 8]), ("dog", [10, 11, 12])]
    assert tok.unknown_symbols("the café") == {"é"}
    assert tok.encode("é") == [tok.unk_id]


@pytest.mark.parametrize("kind", ["bpe", "unigram"])
def test_sentencepiece_tokenizer_round_trip(kind, tmp_path):
    tok = train_tokenizer(TEXTS, TokenizerConfig(kind=kind, vocab_size=40))
    assert isinstance(tok, SentencePieceTokenizer)
    ids = tok.encode("the small dog")
    assert tok.decode(ids) == "the small dog"
    assert min(ids) >= 2 and max(ids) < tok.sos_id  # blank, unk and sos/eos never come out of text
    assert [w for w, _ in tok.words(ids)] == ["the", "small", "dog"]
    assert tok.unknown_symbols("the dog") == set()
    assert tok.unknown_symbols("the dog \u00e9") == {"\u00e9"}
    again = load_tokenizer(tmp_path, tok.save(tmp_path))
    assert again.encode("the small dog") == ids and again.vocab_size == tok.vocab_size


def test_char_tokenizer_saves_and_loads(tmp_path):
    tok = train_tokenizer(TEXTS, TokenizerConfig(kind="char", lowercase=False))
    again = load_tokenizer(tmp_path, tok.save(tmp_path))
    assert again.symbols == tok.symbols and again.decode(again.encode("The dog")) == "The dog"


def test_bad_tokenizer_settings_are_named():
    with pytest.raises(TokenizerError, match="vocab_size"):
        train_tokenizer(TEXTS, TokenizerConfig(kind="bpe", vocab_size=0))
    with pytest.raises(TokenizerError, match="unknown tokenizer kind"):
        train_tokenizer(TEXTS, TokenizerConfig(kind="words"))
