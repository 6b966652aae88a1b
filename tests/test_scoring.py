import json

import pytest

from asr.errors import ManifestError
from asr.evaluate import evaluate_hypotheses
from asr.scoring import (
    Edit,
    ErrorCounts,
    format_alignment,
    most_frequent_confusions,
    read_hypotheses,
    score,
    score_report,
    score_utterance,
    write_report,
)

# One substitution (quick/quack), one deletion (fox), one insertion (lazy); any other alignment costs more.
REF = "the quick brown fox jumps over the dog"
HYP = "the quack brown jumps over the lazy dog"


def test_error_counts_on_a_constructed_example():
    u = score_utterance("u1", REF, HYP)
    assert u.words == ErrorCounts(hits=6, substitutions=1, deletions=1, insertions=1)
    assert u.words.reference_length == 8 and u.words.hypothesis_length == 8
    assert u.wer == pytest.approx(3 / 8)
    assert [e.op for e in u.alignment] == ["C", "S", "C", "D", "C", "C", "C", "I", "C"]
    assert u.alignment[1] == Edit("S", "quick", "quack")
    assert u.alignment[3] == Edit("D", "fox", None) and u.alignment[7] == Edit("I", None, "lazy")
    assert (u.chars.reference_length, u.chars.hypothesis_length) == (len(REF), len(HYP))  # spaces count


@pytest.mark.parametrize(
    "ref, hyp, wer",
    [
        ("hello world", "hello world", 0.0),
        ("hello world", "hello", 0.5),
        ("a b c d", "a x c d e", 0.5),
        ("one", "", 1.0),
        ("", "", 0.0),
    ],
)
def test_raw_wer_of_known_pairs(ref, hyp, wer):
    assert score([("u", ref, hyp)], normalizer=None).wer == pytest.approx(wer)


def test_wer_on_an_empty_reference_is_undefined_not_infinite():
    assert score_utterance("u", "", "something").wer is None


@pytest.mark.parametrize(
    "ref, hyp",
    [
        ("The colour is GREY.", "the color is gray"),
        ("I can't pay $5.50", "i cannot pay five dollars and fifty cents"),
        ("It's 1984, Mr. Smith", "it is nineteen eighty four mister smith"),
        ("uh well-known [noise] facts", "well known facts"),
    ],
)
def test_written_forms_are_not_errors_after_normalisation(ref, hyp):
    assert score([("u", ref, hyp)]).wer == 0.0
    assert score([("u", ref, hyp)], normalizer=None).wer > 0.0


def test_corpus_wer_pools_words_not_utterance_rates():
    triples = [("a", "one two three four", "one two three four"), ("b", "five six", "five")]
    result = score(triples, normalizer=None)
    assert result.words == ErrorCounts(hits=5, deletions=1)
    assert result.wer == pytest.approx(1 / 6)  # not the mean of 0 and 1/2
    assert result.sentence_error_rate == 0.5
    assert result.cer == pytest.approx(4 / 26)  # " six": 4 of 18 + 8 characters


def test_alignment_lines_mark_errors_like_sclite():
    ref, hyp, marks = format_alignment(score_utterance("u1", REF, HYP).alignment)
    assert ref == "the QUICK brown FOX jumps over the **** dog"
    assert hyp == "the QUACK brown *** jumps over the LAZY dog"
    assert marks == "    S           D                  I"


def test_confusions_count_and_rank():
    triples = [
        ("1", "a cat sat", "a bat sat"),
        ("2", "the cat ran", "the bat ran away"),
        ("3", "a dog", "a"),
    ]
    confusions = most_frequent_confusions(score(triples, normalizer=None), top=5)
    assert confusions.substitutions == (("cat", "bat", 2),)
    assert confusions.deletions == (("dog", 1),)
    assert confusions.insertions == (("away", 1),)


def test_write_report(tmp_path):
    triples = [("u1", "The colour is grey.", "the color is green"), ("u2", "Hello", "hello")]
    report = score_report(triples, missing=["u2"])
    write_report(report, tmp_path / "eval")
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["normalized"]["wer"] == pytest.approx(1 / 5)
    assert summary["normalized"]["words"] == {
        "reference": 5, "hits": 4, "substitutions": 1, "deletions": 0, "insertions": 0
    }
    assert summary["raw"]["wer"] == pytest.approx(4 / 5)  # The, colour, grey., Hello
    assert summary["confusions"]["substitutions"] == [{"ref": "gray", "hyp": "green", "count": 1}]
    assert summary["missing_hypotheses"] == ["u2"]
    rows = [json.loads(line) for line in (tmp_path / "eval" / "per_utt.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["u1", "u2"]
    assert rows[0]["ref"] == "The colour is grey." and rows[0]["normalized"]["ref"] == "the color is gray"
    assert rows[1]["normalized"]["wer"] == 0.0 and rows[1]["raw"]["wer"] == 1.0
    text = (tmp_path / "eval" / "alignments.txt").read_text()
    assert "id: u1\nScores: (#C #S #D #I) 3 1 0 0" in text
    assert "REF:  the color is GRAY\nHYP:  the color is GREEN\nEval:              S\n" in text
    assert "1  gray -> green" in text


def test_read_jsonl_hypotheses(tmp_path):
    path = tmp_path / "hyp.jsonl"
    path.write_text('{"id": "a", "text": "hello world"}\n\n{"id": "b", "text": null}\n')
    assert read_hypotheses(path) == {"a": "hello world", "b": ""}
    path.write_text('{"audio": "/data/a.flac", "text": "hi"}\n')  # `asr transcribe` output
    assert read_hypotheses(path) == {"/data/a.flac": "hi"}


def test_read_kaldi_text_hypotheses(tmp_path):
    path = tmp_path / "text"
    path.write_text("utt1 hello  world\nutt2\tgood bye\nutt3\n")
    assert read_hypotheses(path) == {"utt1": "hello  world", "utt2": "good bye", "utt3": ""}


@pytest.mark.parametrize(
    "content", ['{"text": "no key"}\n', '{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n', "{not json\n"]
)
def test_malformed_hypotheses_are_named_errors(tmp_path, content):
    path = tmp_path / "hyp.jsonl"
    path.write_text(content)
    with pytest.raises(ManifestError, match="hyp.jsonl:"):
        read_hypotheses(path)


def test_evaluate_hypotheses_against_a_manifest(tmp_path):
    manifest = tmp_path / "manifest.jsonl"
    rows = [
        {"id": "a", "audio": "audio/a.flac", "text": "Twenty one guns", "duration": 1.0},
        {"id": "b", "audio": "audio/b.flac", "text": "hello there", "duration": 1.0},
        {"id": "c", "audio": "audio/c.flac", "text": "not hypothesised", "duration": 1.0},
        {"id": "d", "audio": "audio/d.flac", "text": None, "duration": 1.0},
    ]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    hyps = tmp_path / "hyp.jsonl"  # one keyed by id, one by audio path as `asr transcribe` writes it
    hyps.write_text(
        json.dumps({"id": "a", "text": "21 guns"}) + "\n"
        + json.dumps({"audio": str(tmp_path / "audio" / "b.flac"), "text": "hello their"}) + "\n"
        + json.dumps({"id": "zzz", "text": "stray"}) + "\n"
    )
    report = evaluate_hypotheses(manifest, hyps, tmp_path / "out")
    assert [u.id for u in report.normalized.utterances] == ["a", "b", "c"]
    assert report.missing == ("c",) and report.extra == ("zzz",)
    assert report.normalized.words == ErrorCounts(hits=3, substitutions=1, deletions=2)
    written = {p.name for p in (tmp_path / "out").iterdir()}
    assert written == {"summary.json", "per_utt.jsonl", "alignments.txt"}

    kaldi = tmp_path / "text"
    kaldi.write_text("a twenty-one guns\nb hello there\nc not hypothesised\n")
    assert evaluate_hypotheses(manifest, kaldi, tmp_path / "out2").normalized.wer == 0.0
