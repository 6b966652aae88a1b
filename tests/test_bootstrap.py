import json
import re

import numpy as np
import pytest

from asr.analysis.bootstrap import (
    Interval,
    UtteranceErrors,
    speaker_clusters,
    wer_difference_interval,
    wer_interval,
)
from asr.analysis.wer_table import AVERAGE, WerTable
from asr.scoring import format_summary, score_report, summary, write_report


def _speakers(wers: list[float], utterances_each: int = 5, words_each: int = 20) -> UtteranceErrors:
    """Speakers s0, s1, ... whose utterances all have `words_each` words and the speaker's WER."""
    ids, errors, words, speakers = [], [], [], []
    for s, wer in enumerate(wers):
        for u in range(utterances_each):
            ids.append(f"s{s}_u{u}")
            errors.append(round(wer * words_each))
            words.append(words_each)
            speakers.append(f"s{s}")
    return UtteranceErrors.of(ids, errors, words, speakers)


def _random_set(seed: int = 0, speakers: int = 30) -> UtteranceErrors:
    rng = np.random.default_rng(seed)
    n = 10 * speakers
    words = rng.integers(3, 40, n)
    rates = rng.uniform(0.02, 0.3, speakers)[np.arange(n) % speakers]  # speakers differ
    return UtteranceErrors.of([f"u{i}" for i in range(n)], rng.binomial(words, rates), words,
                              [f"s{i % speakers}" for i in range(n)])


def test_interval_holds_the_point_estimate():
    for seed in range(5):
        data = _random_set(seed)
        interval = data.interval()
        assert interval.estimate == pytest.approx(data.errors.sum() / data.words.sum())
        assert interval.lo < interval.estimate < interval.hi
        assert interval.estimate in interval
        assert (interval.level, interval.resamples, interval.clusters) == (0.95, 1000, 30)


def test_interval_is_the_point_when_every_speaker_has_the_same_wer():
    # Speakers of different sizes and utterances of different lengths, all at a WER of 1/10.
    errors, words = [1, 2, 0, 3, 5], [10, 20, 10, 20, 50]
    speakers = ["a", "a", "b", "b", "c"]  # a: 3/30, b: 3/30, c: 5/50
    assert wer_interval(errors, words, speakers) == Interval(0.1, 0.1, 0.1, clusters=3)


def test_interval_widens_with_fewer_speakers():
    pattern = [0.05, 0.1, 0.15, 0.25]
    many, few = _speakers(pattern * 10).interval(), _speakers(pattern * 2).interval()
    assert many.estimate == few.estimate == pytest.approx(0.1375)
    assert few.hi - few.lo > 1.5 * (many.hi - many.lo)
    # Told apart by speaker, the same utterances give a wider interval than each on its own: the
    # utterances of one speaker do not vary independently.
    data = _speakers(pattern * 2)
    alone = UtteranceErrors.of(data.ids, data.errors, data.words).interval()
    assert alone.clusters == len(data) and few.clusters == 8
    assert few.hi - few.lo > alone.hi - alone.lo


def test_interval_is_deterministic_for_a_seed():
    data = _random_set()
    assert data.interval(seed=3) == data.interval(seed=3)
    assert data.interval(seed=3) != data.interval(seed=4)
    wide, narrow = data.interval(level=0.99), data.interval(level=0.5)
    assert wide.lo < narrow.lo < narrow.hi < wide.hi


def test_utterances_without_a_speaker_are_their_own_clusters():
    assert speaker_clusters(["a", "b", "c"], ["x", None, "x"]) == [("speaker", "x"), ("utterance", "b"),
                                                                  ("speaker", "x")]
    # A speaker named like an utterance is not that utterance.
    assert len(set(speaker_clusters(["a", "b"], [None, "a"]))) == 2
    assert UtteranceErrors.of(["a", "b", "c"], [1, 0, 2], [5, 5, 5], ["x", None, "x"]).interval().clusters == 2


def test_undefined_wer_has_no_interval():
    assert wer_interval([], []) is None
    assert wer_interval([2, 0], [0, 0]) is None
    # A cluster without reference words (an empty reference) is resampled, but cannot make a WER alone.
    interval = wer_interval([1, 0, 3], [0, 10, 10])
    assert interval is not None and interval.estimate == 0.2 and np.isfinite([interval.lo, interval.hi]).all()


def test_paired_difference_of_a_system_with_itself_is_zero():
    data = _random_set()
    assert data.difference(data) == Interval(0.0, 0.0, 0.0, clusters=30)
    shuffled = UtteranceErrors.of(data.ids[::-1], data.errors[::-1], data.words[::-1], data.speakers[::-1])
    assert data.difference(shuffled) == Interval(0.0, 0.0, 0.0, clusters=30)  # matched by id, not order


def test_paired_difference_sees_what_separate_intervals_cannot():
    a = _random_set()
    # b makes one error fewer in every fifth utterance: a small, consistent improvement.
    fewer = np.where((np.arange(len(a)) % 5 == 0) & (a.errors > 0), a.errors - 1, a.errors)
    b = UtteranceErrors.of(a.ids, fewer, a.words, a.speakers)
    separate_a, separate_b = a.interval(), b.interval()
    assert separate_b.hi > separate_a.lo  # the two intervals overlap ...
    difference = b.difference(a)
    assert difference.estimate == pytest.approx(b.wer - a.wer)
    assert difference.hi < 0 and difference.excludes_zero  # ... but b is better all the same
    assert a.difference(b).lo > 0
    assert wer_difference_interval(b.errors, a.errors, b.words, clusters=b.clusters) == difference
    with pytest.raises(ValueError, match="same utterances"):
        a.difference(UtteranceErrors.of(a.ids[1:], a.errors[1:], a.words[1:]))


def test_report_carries_speakers_and_the_wer_interval(tmp_path):
    triples = [("a1", "one two three", "one two three"), ("a2", "four five", "four five"),
               ("b1", "six seven", "six eleven"), ("c1", "eight nine", "")]
    report = score_report(triples, speakers={"a1": "A", "a2": "A", "b1": "B"})
    assert [u.speaker for u in report.normalized.utterances] == ["A", "A", "B", None]
    interval = report.normalized.wer_interval
    assert interval.estimate == report.normalized.wer == pytest.approx(3 / 9)
    assert interval.clusters == 3 and interval.lo <= interval.estimate <= interval.hi
    view = summary(report)["normalized"]
    assert view["wer_interval"] == {"lo": interval.lo, "hi": interval.hi, "level": 0.95, "resamples": 1000,
                                    "clusters": 3}
    printed = format_summary(report)
    assert "95% CI" in printed and f"[{100 * interval.lo:.2f}, {100 * interval.hi:.2f}]" in printed
    assert "over 3 clusters" in printed
    write_report(report, tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "per_utt.jsonl").read_text().splitlines()]
    assert [r["speaker"] for r in rows] == ["A", "A", "B", None]
    assert json.loads((tmp_path / "summary.json").read_text())["normalized"]["wer_interval"]["clusters"] == 3


def _table() -> WerTable:
    """Two systems on eight speakers' utterances: `good` makes errors only at 0 dB, `bad` everywhere."""
    pattern = [0.05, 0.1, 0.15, 0.25] * 2
    clean, noisy = _speakers([0.0] * 8), _speakers(pattern)
    worse = _speakers([min(1.0, w + 0.1) for w in pattern])
    errors = {
        "good": {"clean": clean, "white_10": clean, "babble_10": clean, "white_0": noisy, "babble_0": noisy},
        "bad": {"clean": noisy, "white_10": noisy, "babble_10": noisy, "white_0": worse, "babble_0": None},
    }
    return WerTable(["white", "babble"], [None, 10.0, 0.0], errors)


def test_wer_table_carries_an_interval_in_every_cell():
    table = _table()
    for system in table.systems:
        for kind in ["white", "babble", AVERAGE]:
            for snr in table.snrs:
                wer, interval = table.cell(system, kind, snr), table.interval(system, kind, snr)
                if wer is None:
                    assert interval is None and (system, snr) == ("bad", 0.0) and kind != "white"
                else:
                    assert interval.lo <= wer <= interval.hi and interval.clusters == 8
    assert table.interval("good", "white", 10.0) == Interval(0.0, 0.0, 0.0, clusters=8)
    # The average pools the kinds (one cluster per speaker across kinds): the mean of equal halves.
    assert table.cell("good", AVERAGE, 0.0) == pytest.approx(0.1375)
    assert table.interval("good", AVERAGE, 0.0) == table.interval("good", "white", 0.0)
    assert table.difference("bad", "good", "white", 10.0).excludes_zero


def test_wer_table_summary_and_markdown_show_intervals():
    table = _table()
    results = json.loads(json.dumps(table.summary()))
    assert results["systems"]["good"]["white"]["0"] == pytest.approx(0.1375)
    bounds = results["intervals"]["good"]["white"]["0"]
    assert set(bounds) == {"lo", "hi"} and bounds["lo"] < 0.1375 < bounds["hi"]
    assert results["intervals"]["bad"]["babble"]["0"] is None
    assert results["differences"]["baseline"] == "good"
    difference = results["differences"]["systems"]["bad"]["white"]["clean"]
    assert difference["estimate"] == pytest.approx(0.1375) and difference["lo"] > 0
    assert results["differences"]["systems"]["bad"]["average"]["0"] is None

    markdown = table.markdown()
    good_white = next(line for line in markdown.splitlines() if line.startswith("| good | white |"))
    cells = [c.strip() for c in good_white.strip("|").split("|")][2:]
    interval = table.interval("good", "white", 0.0)
    assert cells == ["0.0 [0.0, 0.0]", "0.0 [0.0, 0.0]", interval.format()]
    assert re.fullmatch(r"13\.8 \[\d+\.\d, \d+\.\d\]", cells[2])
    assert "| bad | babble | 13.8 [" in markdown and "| n/a |" in markdown  # babble_0 not scored
    assert "bootstrap interval over speakers" in markdown
    # The paired differences, bold where the interval leaves out 0.
    assert "Difference in WER to good" in markdown
    assert "| bad - good | white | **+13.8 [" in markdown
    single = WerTable(["white"], [None], {"good": {"clean": _speakers([0.1] * 3)}})
    assert "Difference" not in single.markdown() and single.summary()["differences"]["systems"] == {}


def test_one_speaker_gets_no_interval_and_no_verdict():
    one = UtteranceErrors.of(["a", "b", "c"], [1, 0, 2], [5, 4, 6], ["S", "S", "S"])
    other = UtteranceErrors.of(["a", "b", "c"], [0, 0, 0], [5, 4, 6], ["S", "S", "S"])
    interval, difference = one.interval(), one.difference(other)
    assert not interval.defined and interval.format() == "20.0 [one speaker]"
    assert difference.estimate > 0 and not difference.excludes_zero  # however large: one voice says nothing
    two = UtteranceErrors.of(["a", "b", "c"], [1, 0, 2], [5, 4, 6], ["S", "S", "T"])
    assert two.interval().defined
