"""The offline recipe's sentence generator and synthesiser (recipes/offline)."""

import json
import random
import shutil
import sys
from pathlib import Path

import pytest
import soundfile as sf

from asr.text import normalize
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "recipes" / "offline"))
import synthesize  # noqa: E402
import texts  # noqa: E402


@pytest.mark.parametrize("number, words", [
    (0, "zero"), (13, "thirteen"), (40, "forty"), (42, "forty-two"), (100, "one hundred"),
    (312, "three hundred and twelve"), (1005, "one thousand and five"), (2024, "two thousand and twenty-four"),
    (9999, "nine thousand nine hundred and ninety-nine"),
])
def test_number_words(number, words):
    assert texts.number_words(number) == words
    assert normalize(words) == str(number)  # the scorer reads them back as the number


@pytest.mark.parametrize("number, words", [(1, "first"), (2, "second"), (5, "fifth"), (12, "twelfth"),
                                           (20, "twentieth"), (21, "twenty-first"), (28, "twenty-eighth")])
def test_ordinal_words(number, words):
    assert texts.ordinal_words(number) == words


def test_years_are_read_as_people_say_them():
    assert [texts.year_words(y) for y in (1905, 1800, 1992, 2003)] == [
        "nineteen oh five", "eighteen hundred", "nineteen ninety-two", "two thousand and three"]


def test_templated_sentences_are_words_only_and_reproducible():
    first = [texts.template_sentence(random.Random(7)) for _ in range(3)]
    sentences = [texts.template_sentence(random.Random(seed)) for seed in range(300)]
    assert first == [texts.template_sentence(random.Random(7)) for _ in range(3)]
    assert not any(ch.isdigit() for s in sentences for ch in s)
    assert all(s[0].isupper() and s[-1] in ".?" for s in sentences)


def test_sentence_splits_are_disjoint_and_keep_held_out_clips_out(data_dir):
    lj = [json.loads(l) for l in (data_dir / "speech/ljspeech_subset/manifest.jsonl").read_text().splitlines()]
    held_out = {r["id"] for r in lj[-10:]}
    splits = texts.split_sentences(data_dir, held_out, templated=400, dev=20, test=30, seed=0)
    train, dev, test = (set(splits[k]) for k in ("train", "dev", "test"))
    assert not (train & dev) and not (train & test) and not (dev & test)
    assert len(test) == 30 and len(dev) == 20
    assert not {r["text"] for r in lj[-10:]} & train
    assert splits == texts.split_sentences(data_dir, held_out, templated=400, dev=20, test=30, seed=0)


DICTD_SAMPLE = """\
Affect \\Af*fect"\\, v. t. [L. affectus.]
   1. To act upon; to produce an effect or change upon.
      [1913 Webster]

            The climate affected their health and spirits.
                                                  --Macaulay.
      [1913 Webster]

            As for Queen Katharine, he rather respected than
            affected, rather honored than loved, her. --Fuller.
      [1913 Webster]

            The confluence . . . of all true joys.
      [1913 Webster]

            Too short.
      [1913 Webster]

            [bracketed {markup} is not speakable].
      [1913 Webster]
"""


def test_dictionary_quotations_are_plain_sentences_without_credits(tmp_path):
    import gzip

    path = tmp_path / "gcide.dict.dz"
    with gzip.open(path, "wt") as f:
        f.write(DICTD_SAMPLE + DICTD_SAMPLE)  # a repeated quotation is kept once
    assert texts.dictionary_quotations(path) == [
        "The climate affected their health and spirits.",
        "As for Queen Katharine, he rather respected than affected, rather honored than loved, her.",
        "The confluence of all true joys.",
    ]
    assert texts.dictionary_quotations(tmp_path / "missing.dz") == []


def test_quotations_are_extra_training_texts_that_leave_the_plan_unchanged(tmp_path):
    sentences = {"train": [f"Train {i}." for i in range(40)], "dev": ["Dev one.", "Quote two."],
                 "test": [f"Test {i}." for i in range(20)]}
    base = synthesize.plan(sentences, ["Held out."], 3, 1, 2, tmp_path, seed=0)
    quotations = [f"Quote {word}." for word in ("one", "two", "three", "four", "five")] * 10
    quotations = list(dict.fromkeys(quotations)) + [f"Quote {i}." for i in range(100)]
    extended = synthesize.plan(sentences, ["Held out."], 3, 1, 2, tmp_path, 0, quotations, quotations_per_voice=4)
    assert extended["dev"] == base["dev"] and extended["test"] == base["test"]
    assert extended["train"][: len(base["train"])] == base["train"]
    extra = extended["train"][len(base["train"]) :]
    train_voices = [v for v in synthesize.VOICES if v.split == "train"]
    assert len(extra) == 4 * len(train_voices) and {j.voice for j in extra} == set(train_voices)
    assert len({j.text for j in extra}) == len(extra)  # every quotation is read once
    assert "Quote two." not in {j.text for j in extra}  # a dev sentence stays out of training
    assert len({j.id for j in extended["train"]}) == len(extended["train"])


def test_every_engine_keeps_a_voice_out_of_training():
    engines = {v.engine for v in synthesize.VOICES}
    assert engines == {"espeak", "flite", "festival", "piper"}
    for engine in engines:
        assert any(v.split == "test" for v in synthesize.VOICES if v.engine == engine)
    train = {(v.engine, v.name) for v in synthesize.VOICES if v.split == "train"}
    assert not train & {(v.engine, v.name) for v in synthesize.VOICES if v.split == "test"}


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (apt-get install espeak-ng)")
def test_synthesis_writes_16k_flac_once_and_reports_failures(tmp_path):
    voice = synthesize.Voice("espeak", "en-us", "train")
    job = synthesize.Job("u1", voice, "Turn on the kitchen lights.", seed=3, path=str(tmp_path / "u1.flac"))
    row = synthesize.build(job)
    info = sf.info(row["audio"])
    assert info.samplerate == 16000 and info.channels == 1 and 0.8 < info.duration < 4.0
    assert row["duration"] == pytest.approx(info.duration, abs=1e-3) and row["speaker"] == "espeak-en-us"
    written = Path(row["audio"]).stat().st_mtime_ns
    assert synthesize.build(job)["duration"] == pytest.approx(row["duration"], abs=1e-3)  # resumed, not redone
    assert Path(row["audio"]).stat().st_mtime_ns == written
    assert list(tmp_path.iterdir()) == [tmp_path / "u1.flac"]  # no partial files left behind

    broken = synthesize.Job("u2", synthesize.Voice("espeak", "nosuchvoice", "train"), "Hello.", 1, str(tmp_path / "u2.flac"))
    failure = synthesize.build(broken)
    assert isinstance(failure, str) and failure.startswith("u2:") and "does not exist" in failure
    assert not (tmp_path / "u2.flac").exists()
