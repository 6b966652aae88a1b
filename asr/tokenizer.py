"""Tokenizers: characters, or sentencepiece BPE/unigram trained on the training text.

Both share one id layout: 0 is the CTC blank, 1 is <unk>, the last id is <sos/eos>.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Iterable

import sentencepiece as spm
import tokenizers

from asr.config import TokenizerConfig
from asr.errors import TokenizerError
from asr.text import normalize as english_normalize

BLANK, UNK, SOS_EOS = "<blank>", "<unk>", "<sos/eos>"
WORD_MARK = "\u2581"  # "▁", how a space is written in token lists (as sentencepiece does)

CHAR_FILE = "tokens.txt"
SP_FILE = "tokenizer.model"
HF_FILE = "tokenizer.json"


class Tokenizer:
    blank_id = 0
    unk_id = 1

    def __init__(self, lowercase: bool):
        self.lowercase = lowercase

    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    @property
    def sos_id(self) -> int:
        return self.vocab_size - 1

    @property
    def eos_id(self) -> int:
        return self.vocab_size - 1

    def normalize(self, text: str) -> str:
        text = re.sub(r"\s+", " ", text).strip()
        return text.lower() if self.lowercase else text

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def piece(self, token_id: int) -> str:
        """The token as written in the vocabulary (spaces shown as ▁)."""
        raise NotImplementedError

    def decode(self, ids: Iterable[int]) -> str:
        pieces = [self.piece(i) for i in ids if i not in (self.blank_id, self.sos_id)]
        return "".join(pieces).replace(WORD_MARK, " ").strip()

    def unknown_symbols(self, text: str) -> set[str]:
        """Characters of `text` the tokenizer can only map to <unk>."""
        raise NotImplementedError

    def words(self, ids: list[int]) -> list[tuple[str, list[int]]]:
        """Groups token positions into words: [(word, [positions in ids])]."""
        groups: list[tuple[str, list[int]]] = []
        for position, token in enumerate(ids):
            piece = self.piece(token)
            starts_word = piece.startswith(WORD_MARK) or not groups
            text = piece.replace(WORD_MARK, "")
            if starts_word:
                groups.append(("", []))
            if text:
                word, positions = groups[-1]
                groups[-1] = (word + text, positions + [position])
        return [(w, p) for w, p in groups if w]

    def save(self, directory: Path) -> dict:
        """Writes the vocabulary file into `directory`; returns the metadata to store beside it."""
        raise NotImplementedError


class CharTokenizer(Tokenizer):
    """One token per character. With `normalizer="english"` text first goes through the scoring
    normaliser (asr.text: lower case, no punctuation, numbers as digits), as a CTC head paired
    with a cased, punctuated decoder vocabulary wants."""

    def __init__(self, symbols: list[str], lowercase: bool = True, normalizer: str = "none"):
        super().__init__(lowercase)
        if normalizer not in ("none", "english"):
            raise TokenizerError(f"unknown text normalizer {normalizer!r}; choose none or english")
        self.normalizer = normalizer
        if symbols[:2] != [BLANK, UNK] or symbols[-1] != SOS_EOS:
            raise TokenizerError(f"character list must start with {BLANK}, {UNK} and end with {SOS_EOS}")
        self.symbols = symbols
        self.index = {s: i for i, s in enumerate(symbols)}

    @classmethod
    def train(cls, texts: Iterable[str], lowercase: bool = True) -> "CharTokenizer":
        chars: set[str] = set()
        probe = cls([BLANK, UNK, SOS_EOS], lowercase)
        for text in texts:
            chars.update(probe.normalize(text).replace(" ", WORD_MARK))
        return cls([BLANK, UNK, *sorted(chars), SOS_EOS], lowercase)

    @property
    def vocab_size(self) -> int:
        return len(self.symbols)

    def normalize(self, text: str) -> str:
        return super().normalize(english_normalize(text) if self.normalizer == "english" else text)

    def encode(self, text: str) -> list[int]:
        return [self.index.get(c, self.unk_id) for c in self.normalize(text).replace(" ", WORD_MARK)]

    def piece(self, token_id: int) -> str:
        return self.symbols[token_id]

    def unknown_symbols(self, text: str) -> set[str]:
        return {c for c in self.normalize(text).replace(" ", WORD_MARK) if c not in self.index}

    def words(self, ids: list[int]) -> list[tuple[str, list[int]]]:
        # Characters carry no word-start mark; a space token ends a word instead.
        groups: list[tuple[str, list[int]]] = [("", [])]
        for position, token in enumerate(ids):
            piece = self.piece(token)
            if piece == WORD_MARK:
                groups.append(("", []))
            else:
                word, positions = groups[-1]
                groups[-1] = (word + piece, positions + [position])
        return [(w, p) for w, p in groups if w]

    def save(self, directory: Path) -> dict:
        (directory / CHAR_FILE).write_text("\n".join(self.symbols) + "\n", encoding="utf-8")
        return {"kind": "char", "lowercase": self.lowercase, "normalizer": self.normalizer, "file": CHAR_FILE}


class SentencePieceTokenizer(Tokenizer):
    """sentencepiece ids shifted by one, so 0 stays the blank; sentencepiece's unk (0) becomes 1."""

    def __init__(self, model_proto: bytes, lowercase: bool = True):
        super().__init__(lowercase)
        self.proto = model_proto
        self.sp = spm.SentencePieceProcessor()
        try:
            self.sp.LoadFromSerializedProto(model_proto)
        except (RuntimeError, OSError) as err:
            raise TokenizerError(f"invalid sentencepiece model: {err}") from err

    @classmethod
    def train(cls, texts: Iterable[str], config: TokenizerConfig) -> "SentencePieceTokenizer":
        probe = cls.__new__(cls)
        Tokenizer.__init__(probe, config.lowercase)
        model = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=(probe.normalize(t) for t in texts),
            model_writer=model,
            vocab_size=config.vocab_size - 2,  # leave room for the blank and <sos/eos>
            model_type=config.kind,
            character_coverage=1.0,
            normalization_rule_name="identity",
            unk_id=0,
            bos_id=-1,
            eos_id=-1,
            pad_id=-1,
            hard_vocab_limit=False,
            minloglevel=2,
        )
        return cls(model.getvalue(), config.lowercase)

    @property
    def vocab_size(self) -> int:
        return self.sp.GetPieceSize() + 2

    def encode(self, text: str) -> list[int]:
        return [i + 1 for i in self.sp.EncodeAsIds(self.normalize(text))]

    def piece(self, token_id: int) -> str:
        if token_id == self.blank_id:
            return BLANK
        if token_id == self.sos_id:
            return SOS_EOS
        return self.sp.IdToPiece(token_id - 1)

    def unknown_symbols(self, text: str) -> set[str]:
        return {c for c in set(self.normalize(text)) - {" "} if 0 in self.sp.EncodeAsIds(c)}

    def save(self, directory: Path) -> dict:
        (directory / SP_FILE).write_bytes(self.proto)
        return {"kind": "sentencepiece", "lowercase": self.lowercase, "file": SP_FILE}


class WhisperTokenizer(Tokenizer):
    """Whisper's GPT-2 byte-level BPE (a `tokenizers` JSON file) with Whisper's own special ids.

    It has no CTC blank: models that use it for the decoder pair it with a character CTC head.
    """

    def __init__(self, tokenizer_json: str):
        super().__init__(lowercase=False)
        self.json = tokenizer_json
        try:
            self.bpe = tokenizers.Tokenizer.from_str(tokenizer_json)
        except Exception as err:  # the Rust library raises a generic Exception on bad JSON
            raise TokenizerError(f"invalid tokenizer.json: {err}") from None
        self.special = {t.content: i for i, t in self.bpe.get_added_tokens_decoder().items()}
        for name in ("<|endoftext|>", "<|startoftranscript|>", "<|notimestamps|>"):
            if name not in self.special:
                raise TokenizerError(f"tokenizer.json has no {name} token; is it a Whisper tokenizer?")

    @property
    def vocab_size(self) -> int:
        return self.bpe.get_vocab_size(with_added_tokens=True)

    @property
    def sos_id(self) -> int:
        return self.special["<|startoftranscript|>"]

    @property
    def eos_id(self) -> int:
        return self.special["<|endoftext|>"]

    @property
    def no_timestamps_id(self) -> int:
        return self.special["<|notimestamps|>"]

    @property
    def no_speech_id(self) -> int:
        """<|nospeech|>, called <|nocaptions|> in the English-only models' vocabulary; -1 if neither."""
        return self.special.get("<|nospeech|>", self.special.get("<|nocaptions|>", -1))

    def encode(self, text: str) -> list[int]:
        # Whisper writes a transcript with a leading space: " Hello world."
        return self.bpe.encode(" " + self.normalize(text), add_special_tokens=False).ids

    def piece(self, token_id: int) -> str:
        return self.bpe.decode([token_id], skip_special_tokens=False)

    def decode(self, ids: Iterable[int]) -> str:
        return self.bpe.decode([i for i in ids if i < self.eos_id]).strip()

    def unknown_symbols(self, text: str) -> set[str]:
        return set()  # byte-level: every string has a tokenization

    def words(self, ids: list[int]) -> list[tuple[str, list[int]]]:
        groups: list[tuple[str, list[int]]] = []
        for position, token in enumerate(ids):
            if token >= self.eos_id:
                continue
            piece = self.piece(token)
            if piece.startswith(" ") or not groups:
                groups.append(("", []))
            word, positions = groups[-1]
            groups[-1] = (word + piece.strip(), positions + [position])
        return [(w, p) for w, p in groups if w]

    def save(self, directory: Path) -> dict:
        (directory / HF_FILE).write_text(self.json, encoding="utf-8")
        return {"kind": "whisper", "lowercase": False, "file": HF_FILE}


def train_tokenizer(texts: list[str], config: TokenizerConfig) -> Tokenizer:
    if config.kind == "char":
        return CharTokenizer.train(texts, config.lowercase)
    if config.kind in ("bpe", "unigram"):
        if config.vocab_size < 8:
            raise TokenizerError(f"tokenizer.vocab_size must be set for {config.kind} (got {config.vocab_size})")
        return SentencePieceTokenizer.train(texts, config)
    raise TokenizerError(f"unknown tokenizer kind {config.kind!r}; choose char, bpe or unigram")


def load_tokenizer(directory: Path, meta: dict) -> Tokenizer:
    path = directory / meta["file"]
    try:
        if meta["kind"] == "char":
            symbols = path.read_text(encoding="utf-8").splitlines()
            return CharTokenizer(symbols, meta["lowercase"], meta.get("normalizer", "none"))
        if meta["kind"] == "sentencepiece":
            return SentencePieceTokenizer(path.read_bytes(), meta["lowercase"])
        if meta["kind"] == "whisper":
            return WhisperTokenizer(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise TokenizerError(f"cannot read tokenizer file {path}: {err}") from err
    raise TokenizerError(f"unknown tokenizer kind {meta['kind']!r} in {directory}")
