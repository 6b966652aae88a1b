"""English text normalisation for scoring, applied alike to references and hypotheses.

Two transcripts of the same speech often differ only in how they are written: "Mr. Smith's 2nd
car cost $5" and "mister smiths second car cost five dollars". Word error rate should count
recognition errors, not these, so both sides go through `normalize` first. Its canonical form:

- lower case, accents removed, no punctuation or symbols (a decimal point between digits stays);
- numbers in digits: "twenty one" -> "21", "a hundred and five" -> "105", "twenty first" -> "21st",
  "nineteen eighty four" -> "1984", "three point one four" -> "3.14", "1,000" -> "1000",
  "2.5 million" -> "2500000";
- money and percent as a number and a word: "$5" -> "5 dollars", "£3.50" -> "3.50 pounds",
  "five dollars and fifty cents" -> "5.50 dollars", "50%" and "fifty per cent" -> "50 percent";
- contractions expanded: "won't" -> "will not", "it's" -> "it is"; other apostrophes are dropped,
  so the possessive "john's" becomes "johns" on both sides;
- British spellings in their American form ("colour" -> "color", table in `asr.spellings`);
- a few spoken or abbreviated forms written out: "mr" -> "mister", "gonna" -> "going to";
- hyphens and other punctuation split words ("well-known" -> "well known");
- hesitations (uh, um, hmm, ...) and bracketed annotations ("[noise]", "<unk>") removed;
- runs of whitespace collapsed to one space.

`normalize` is idempotent (normalised text comes back unchanged) and never raises.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from decimal import Decimal
from typing import Optional

from asr.spellings import BRITISH_TO_AMERICAN


def normalize(text: str) -> str:
    """Canonical lower-case form of an English transcript for scoring (see the module docstring)."""
    text = _fold_characters(text)
    text = _ANNOTATION.sub(" ", text)
    text = _symbols_to_words(text)
    text = _expand_contractions(text)
    words = _strip_punctuation(text).split()
    words = _rewrite_words(words)
    words = _spoken_numbers(words)
    return _join_amounts(" ".join(words))


# ---------------------------------------------------------------- characters

# Apostrophe look-alikes, so that contractions are found whichever one a writer used ("ŉ" holds one).
_APOSTROPHES = str.maketrans({c: "'" for c in "\u2018\u2019\u02bc\u2032\u0060\u00b4"})


def _fold_characters(text: str) -> str:
    # NFKD splits accents off letters and turns compatibility forms ("ﬁ", "²", full-width letters)
    # into plain ones; casefold is a stronger lower() ("ß" -> "ss"), and lower() after it because
    # casefold maps Cherokee to upper case. Casefolding can produce characters that decompose
    # further, so the steps run twice: after that the text is stable, which keeps `normalize`
    # idempotent.
    for _ in range(2):
        text = unicodedata.normalize("NFKD", text.translate(_APOSTROPHES))
        text = "".join(
            str(unicodedata.decimal(c)) if unicodedata.category(c) == "Nd" else c
            for c in text
            if unicodedata.category(c) != "Mn"
        )
        text = text.casefold().lower()
    return text


# Transcriber annotations such as "[noise]", "[laughter]" or a decoder's "<unk>" are not words.
_ANNOTATION = re.compile(r"\[[^\]]*\]|<[^>]*>")

_THOUSANDS_COMMA = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_SCALE_WORD = r"(?:hundred|thousand|million|billion|trillion)"
_CURRENCY = re.compile(r"([$£€])\s?(\d+(?:\.\d+)?)((?:\s" + _SCALE_WORD + r")*)\b")
_CURRENCY_UNITS = {"$": "dollar", "£": "pound", "€": "euro"}


def _symbols_to_words(text: str) -> str:
    """Symbols that are read aloud become the words a speaker says ("$5" -> "5 dollars")."""
    text = _THOUSANDS_COMMA.sub("", text)
    text = _CURRENCY.sub(_currency_amount, text)
    return text.replace("¢", " cents ").replace("%", " percent ").replace("&", " and ")


def _currency_amount(match: re.Match) -> str:
    symbol, amount, scale = match.groups()
    unit = _CURRENCY_UNITS[symbol]
    plural = "" if amount == "1" and not scale else "s"
    return f"{amount}{scale} {unit}{plural}"


# Order matters: the irregular forms come before the general suffix rules.
_CONTRACTIONS = [
    (r"\bwon't\b", "will not"),
    (r"\bcan't\b", "can not"),
    (r"\bshan't\b", "shall not"),
    (r"\bain't\b", "aint"),  # am/is/are/has/have not: no single expansion is right
    (r"\blet's\b", "let us"),
    (r"\by'all\b", "you all"),
    (r"\bma'am\b", "madam"),
    (r"(?<!\w)'cause\b", "because"),
    (r"(?<!\w)'em\b", "them"),
    (r"n't\b", " not"),
    (r"'re\b", " are"),
    (r"'ll\b", " will"),
    (r"'ve\b", " have"),
    (r"'m\b", " am"),
    (r"'d(?= (?:been|had|gone)\b)", " had"),
    (r"'d\b", " would"),
    (r"'s(?= (?:been|got|gone)\b)", " has"),
    # "'s" is "is" only after words that cannot take a possessive; "john's" stays a possessive.
    (r"\b(it|that|what|there|here|he|she|where|who|how|when|why)'s\b", r"\1 is"),
]
_CONTRACTION_PATTERNS = [(re.compile(pattern), replacement) for pattern, replacement in _CONTRACTIONS]


def _expand_contractions(text: str) -> str:
    for pattern, replacement in _CONTRACTION_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


# Anything but letters and digits (`\w` less "_"), except a point between two digits.
_NOT_A_WORD_CHARACTER = re.compile(r"[^\w.]|_|(?<!\d)\.|\.(?!\d)")


def _strip_punctuation(text: str) -> str:
    """Apostrophes join ("john's" -> "johns"); other punctuation and symbols split words."""
    return _NOT_A_WORD_CHARACTER.sub(" ", text.replace("'", ""))


# ---------------------------------------------------------------- words

_FILLERS = frozenset("uh uhh uhm um umm hm hmm hmmm mm mmm mhm er erm".split())

# Abbreviations and informal spellings, written out. No value contains a key, which keeps
# `normalize` idempotent.
_WORD_FORMS = {
    "mr": "mister",
    "mrs": "missus",
    "dr": "doctor",
    "jr": "junior",
    "sr": "senior",
    "vs": "versus",
    "ok": "okay",
    "cannot": "can not",
    "gonna": "going to",
    "wanna": "want to",
    "gotta": "got to",
    "gimme": "give me",
    "lemme": "let me",
    "kinda": "kind of",
    "sorta": "sort of",
    "outta": "out of",
}


def _rewrite_words(words: list[str]) -> list[str]:
    out: list[str] = []
    for word in words:
        if word in _FILLERS:
            continue
        if word == "cent" and out and out[-1] == "per":
            out[-1] = "percent"
            continue
        word = BRITISH_TO_AMERICAN.get(word, word)
        out.extend(_WORD_FORMS.get(word, word).split())
    return out


# ---------------------------------------------------------------- numbers

def _numbered(words: str, first: int, step: int = 1) -> dict[str, int]:
    return {word: first + step * i for i, word in enumerate(words.split())}


_ONES = _numbered("zero one two three four five six seven eight nine", 0)
_TEENS = _numbered("ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen", 10)
_TENS = _numbered("twenty thirty forty fifty sixty seventy eighty ninety", 20, step=10)
_SCALES = {"thousand": 10**3, "million": 10**6, "billion": 10**9, "trillion": 10**12}
_ORDINALS = {
    "first": "one", "second": "two", "third": "three", "fourth": "four", "fifth": "five",
    "sixth": "six", "seventh": "seven", "eighth": "eight", "ninth": "nine", "tenth": "ten",
    "eleventh": "eleven", "twelfth": "twelve", "thirteenth": "thirteen", "fourteenth": "fourteen",
    "fifteenth": "fifteen", "sixteenth": "sixteen", "seventeenth": "seventeen",
    "eighteenth": "eighteen", "nineteenth": "nineteen", "twentieth": "twenty", "thirtieth": "thirty",
    "fortieth": "forty", "fiftieth": "fifty", "sixtieth": "sixty", "seventieth": "seventy",
    "eightieth": "eighty", "ninetieth": "ninety", "hundredth": "hundred", "thousandth": "thousand",
    "millionth": "million", "billionth": "billion", "trillionth": "trillion",
}
_DIGIT_WORDS = {**_ONES, "oh": 0}


def _kind(word: str) -> Optional[str]:
    if word in _ONES:
        return "ones"
    if word in _TEENS:
        return "teens"
    if word in _TENS:
        return "tens"
    if word == "hundred":
        return "hundred"
    if word in _SCALES:
        return "scale"
    return None


# Which kind of number word may follow which ("twenty one" yes, "one twenty" no: that is two numbers).
_MAY_FOLLOW = {
    "ones": {None, "tens", "hundred", "scale", "and"},
    "teens": {None, "hundred", "scale", "and"},
    "tens": {None, "hundred", "scale", "and"},
    "hundred": {"ones", "teens", "tens"},
    "scale": {"ones", "teens", "tens", "hundred"},
}


@dataclass(frozen=True)
class _Number:
    """A spelled-out number read from a word list."""

    value: int
    end: int  # index of the first word after it
    ordinal: bool
    two_digit: bool  # 10..99 said as one pair ("nineteen", "eighty four"), which can be half of a year


def _read_number(words: list[str], start: int) -> Optional[_Number]:
    """The longest well-formed spelled number starting at words[start], or None."""
    total, group, smallest_scale = 0, 0, None
    last: Optional[str] = None
    kinds: list[str] = []
    i = start
    while i < len(words):
        word = words[i]
        following = words[i + 1] if i + 1 < len(words) else ""
        # "and" belongs to the number only between a hundred or a scale and what follows it.
        next_kind = _kind(_ORDINALS.get(following, following))
        if word == "and" and last in ("hundred", "scale") and next_kind in ("ones", "teens", "tens"):
            last = "and"
            i += 1
            continue
        if word == "a" and i == start and _kind(following) in ("hundred", "scale"):
            group, last = 1, "ones"  # "a hundred", "a million"
            kinds.append("a")
            i += 1
            continue
        ordinal = word in _ORDINALS
        base = _ORDINALS.get(word, word)
        kind = _kind(base)
        if kind is None or last not in _MAY_FOLLOW[kind]:
            break
        if kind == "hundred" and group >= 100:
            break
        if kind == "scale" and smallest_scale is not None and _SCALES[base] >= smallest_scale:
            break
        if kind == "ones":
            group += _ONES[base]
        elif kind == "teens":
            group += _TEENS[base]
        elif kind == "tens":
            group += _TENS[base]
        elif kind == "hundred":
            group *= 100
        else:
            smallest_scale = _SCALES[base]
            total, group = total + group * smallest_scale, 0
        last = kind
        kinds.append(kind)
        i += 1
        if ordinal:
            break
    if not kinds:
        return None
    value = total + group
    two_digit = 10 <= value <= 99 and set(kinds) <= {"ones", "teens", "tens"}
    return _Number(value, i, ordinal=words[i - 1] in _ORDINALS, two_digit=two_digit)


def _ordinal(value: int) -> str:
    suffix = "th" if value % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(value % 10, "th")
    return f"{value}{suffix}"


def _spoken_numbers(words: list[str]) -> list[str]:
    """Spelled-out numbers become digits; other words pass through."""
    out: list[str] = []
    i = 0
    while i < len(words):
        number = _read_number(words, i)
        if number is None:
            out.append(words[i])
            i += 1
            continue
        i = number.end
        if number.ordinal:
            out.append(_ordinal(number.value))
            continue
        # Years and the like are said in pairs: "nineteen eighty four", "nineteen oh five".
        after = words[i : i + 2]
        if number.two_digit and len(after) == 2 and after[0] == "oh" and _ONES.get(after[1], 0) > 0:
            out.append(f"{number.value}0{_ONES[after[1]]}")
            i += 2
            continue
        second_half = _read_number(words, i) if number.two_digit else None
        if second_half is not None and second_half.two_digit:
            joined = number.value * 100 + second_half.value
            out.append(_ordinal(joined) if second_half.ordinal else str(joined))
            i = second_half.end
            continue
        # Decimals are read digit by digit after "point": "three point one four".
        digits = ""
        if i < len(words) and words[i] == "point":
            j = i + 1
            while j < len(words) and words[j] in _DIGIT_WORDS:
                digits += str(_DIGIT_WORDS[words[j]])
                j += 1
            if digits:
                i = j
        out.append(f"{number.value}.{digits}" if digits else str(number.value))
    return out


# Digits followed by scale words, whether the number was written or spoken: "2.5 million".
_SCALED = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)((?: " + _SCALE_WORD + r")+)\b")
# "5 dollars and 50 cents" is how "$5.50" is said.
_DOLLARS_AND_CENTS = re.compile(
    r"(?<![\d.])(\d+) (dollar|pound|euro)s? (?:and )?(\d{1,2}) (?:cents?|pence)\b"
)


def _join_amounts(text: str) -> str:
    text = _SCALED.sub(_scaled_number, text)
    return _DOLLARS_AND_CENTS.sub(lambda m: f"{m[1]}.{int(m[3]):02d} {m[2]}s", text)


def _scaled_number(match: re.Match) -> str:
    value = Decimal(match[1])
    for scale in match[2].split():
        value *= 100 if scale == "hundred" else _SCALES[scale]
    return format(value.normalize(), "f")
