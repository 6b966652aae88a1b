import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asr.spellings import BRITISH_TO_AMERICAN
from asr.text import normalize


@pytest.mark.parametrize(
    "text, expected",
    [
        ("twenty one", "21"),
        ("Twenty-one", "21"),
        ("a hundred and five", "105"),
        ("two thousand and five", "2005"),
        ("one million two hundred thousand and one", "1200001"),
        ("one two three", "1 2 3"),
        ("zero", "0"),
        ("1,000,000 people", "1000000 people"),
        ("2.5 million", "2500000"),
        ("two point five million", "2500000"),
        ("three point one four", "3.14"),
        ("three point oh five", "3.05"),
        ("5 hundred", "500"),
    ],
)
def test_cardinal_numbers_become_digits(text, expected):
    assert normalize(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("first", "1st"),
        ("the second one", "the 2nd 1"),
        ("twenty-first", "21st"),
        ("twenty second", "22nd"),
        ("eleventh hour", "11th hour"),
        ("one hundred and third", "103rd"),
        ("the 2nd", "the 2nd"),
    ],
)
def test_ordinals(text, expected):
    assert normalize(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("nineteen eighty four", "1984"),
        ("nineteen oh five", "1905"),
        ("twenty twenty one", "2021"),
        ("ten sixty six", "1066"),
        ("nineteen hundred", "1900"),
        ("in 1984", "in 1984"),
    ],
)
def test_years(text, expected):
    assert normalize(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("$5", "5 dollars"),
        ("$1", "1 dollar"),
        ("one dollar", "1 dollar"),
        ("$5.50", "5.50 dollars"),
        ("five dollars and fifty cents", "5.50 dollars"),
        ("five dollars fifty cents", "5.50 dollars"),
        ("£3.50", "3.50 pounds"),
        ("three pounds fifty pence", "3.50 pounds"),
        ("€20", "20 euros"),
        ("$2 million", "2000000 dollars"),
        ("50¢", "50 cents"),
        ("50%", "50 percent"),
        ("fifty per cent", "50 percent"),
        ("fifty percent", "50 percent"),
    ],
)
def test_money_and_percent(text, expected):
    assert normalize(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("won't", "will not"),
        ("can't", "can not"),
        ("cannot", "can not"),
        ("don't", "do not"),
        ("they're", "they are"),
        ("we'll", "we will"),
        ("I've", "i have"),
        ("I'm", "i am"),
        ("I'd go", "i would go"),
        ("I'd been", "i had been"),
        ("it's", "it is"),
        ("It’s", "it is"),  # typographic apostrophe
        ("he's been", "he has been"),
        ("let's", "let us"),
        ("john's", "johns"),  # possessive: the apostrophe goes, the s stays
        ("gonna", "going to"),
    ],
)
def test_contractions(text, expected):
    assert normalize(text) == expected


@pytest.mark.parametrize(
    "british, american",
    [
        ("colour", "color"),
        ("favourite", "favorite"),
        ("realised", "realized"),
        ("organisation", "organization"),
        ("analysing", "analyzing"),
        ("centre", "center"),
        ("catalogue", "catalog"),
        ("defence", "defense"),
        ("COUNSELLED", "counseled"),
        ("grey", "gray"),
        ("programme", "program"),
    ],
)
def test_british_spellings_become_american(british, american):
    assert normalize(british) == american


def test_spelling_table_is_one_way():
    # A value that was also a key would be rewritten again on a second pass.
    assert not set(BRITISH_TO_AMERICAN) & set(BRITISH_TO_AMERICAN.values())
    assert all(key == key.lower() and " " not in key for key in BRITISH_TO_AMERICAN)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Hello, World!", "hello world"),
        ("well-known", "well known"),
        ('"Quoted" (aside); end.', "quoted aside end"),
        ("rock & roll", "rock and roll"),
        ("Café naïve", "cafe naive"),
        ("Straße", "strasse"),
        ("uh I um think hmm", "i think"),
        ("[noise] yes <unk> no", "yes no"),
        ("  lots\tof \n space ", "lots of space"),
        ("Mr. Smith and Dr. Jones", "mister smith and doctor jones"),
        ("", ""),
        ("...", ""),
    ],
)
def test_case_punctuation_and_noise_words(text, expected):
    assert normalize(text) == expected


def test_written_and_spoken_forms_meet():
    assert normalize("Mr. Smith's 2nd car cost $5.50 in 1984!") == normalize(
        "mister smiths second car cost five dollars and fifty cents in nineteen eighty four"
    )


# Text that looks like transcripts, so the number and contraction rules get exercised, mixed
# with arbitrary unicode.
_transcript_words = st.sampled_from(
    "one twenty hundred thousand million first second oh point and a nineteen eighty $5 50% 3.5 "
    "1,000 dollars cents per cent won't it's john's colour um [noise] - . , ' Mr. gonna".split()
)
_texts = st.one_of(
    st.text(), st.lists(st.one_of(_transcript_words, st.text(max_size=3)), max_size=12).map(" ".join)
)


@settings(max_examples=300, deadline=None)
@given(_texts)
def test_normalize_is_idempotent(text):
    once = normalize(text)
    assert normalize(once) == once


@settings(max_examples=300, deadline=None)
@given(_texts)
def test_output_has_no_upper_case_punctuation_or_extra_space(text):
    out = normalize(text)
    assert not any(c.isupper() for c in out)
    for i, c in enumerate(out):
        if c == ".":  # decimal points stay
            assert out[i - 1].isdigit() and out[i + 1].isdigit()
        else:
            assert unicodedata.category(c)[0] not in "PS", repr(c)
    assert out == " ".join(out.split())
