import json
import re

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from asr.analysis.hallucination import ALL, hallucination_by_kind
from asr.analysis.noise_sweep import SweepResult
from asr.analysis.wer_table import WerTable
from asr.audio import SAMPLE_RATE, load_audio
from asr.cli import main
from asr.data.augment import active_speech_power
from asr.data.manifest import read_manifest
from asr.data.noise import TEST, noise_split, read_bank_manifest
from asr.evaluate import decoding_options, transcribe_utterances
from asr.noisy import clip_kinds, make_noisy_sets
from asr.recognizer import load_model
from tests.conftest import write_manifest

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def few_digits(fsdd_manifest, tmp_path_factory):
    """Three of the tiny model's training digits: enough to exercise everything, quick to decode."""
    rows = [json.loads(line) for line in fsdd_manifest.read_text().splitlines()][:3]
    return write_manifest(rows, tmp_path_factory.mktemp("digits") / "test.jsonl")


@pytest.fixture(scope="module")
def padded_digits(few_digits, tmp_path_factory):
    """The same digits between 0.3 s of silence: FSDD clips are cut so tight that every frame is
    speech, which leaves the focus analysis nothing to tell apart."""
    folder = tmp_path_factory.mktemp("padded")
    rows = []
    for u in read_manifest(few_digits):
        silence = np.zeros(int(0.3 * SAMPLE_RATE), dtype=np.float32)
        audio = folder / f"{u.id}.flac"
        sf.write(audio, np.concatenate([silence, load_audio(u.audio), silence]), SAMPLE_RATE)
        rows.append({"id": u.id, "audio": str(audio), "text": u.text, "duration": u.duration + 0.6})
    return write_manifest(rows, folder / "test.jsonl")


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_noisy_copies_have_the_snr_asked_for_on_active_speech(few_digits, data_dir, tmp_path):
    sets = make_noisy_sets(few_digits, data_dir / "noise", ["babble", "white"], [10.0, 0.0, -5.0], tmp_path,
                           clip_seconds=1.0, clips_per_kind=1)
    assert [c.name for c in sets.conditions] == ["babble_10", "babble_0", "babble_-5", "white_10", "white_0",
                                                 "white_-5"]
    for condition in sets.conditions:
        for row in _rows(sets.manifests[condition.name]):
            noisy = load_audio(tmp_path / row["audio"])
            clean = load_audio(row["clean_audio"])
            noise = noisy / row["gain"] - clean  # the mixture is scaled as a whole to stay below full scale
            snr = 10 * np.log10(active_speech_power(clean) / np.mean(noise.astype(np.float64) ** 2))
            assert snr == pytest.approx(condition.snr_db, abs=0.5)


def test_noisy_sets_are_deterministic_and_use_test_noise_only(few_digits, data_dir, tmp_path):
    def make(folder, seed):
        return make_noisy_sets(few_digits, data_dir / "noise", ["street"], [None, 5.0, 0.0], tmp_path / folder,
                               seed=seed, clip_seconds=1.0, clips_per_kind=2)

    first, again, other = make("a", 0), make("b", 0), make("c", 1)
    for name in ["street_5", "street_0"]:
        for row in _rows(first.manifests[name]):
            same = (again.directory / row["audio"]).read_bytes()
            assert (first.directory / row["audio"]).read_bytes() == same
            assert (other.directory / row["audio"]).read_bytes() != same
    for clip in _rows(first.noise_only):
        assert (first.directory / clip["audio"]).read_bytes() == (again.directory / clip["audio"]).read_bytes()
    # At every SNR an utterance gets the same noise recording: conditions differ in level only.
    assert [r["noise"] for r in _rows(first.manifests["street_5"])] == \
        [r["noise"] for r in _rows(first.manifests["street_0"])]
    bank = {e.id: e for e in read_bank_manifest(data_dir / "noise" / "manifest.jsonl")}
    assert all(noise_split(bank[r["noise"]]) == TEST for r in _rows(first.manifests["street_0"]))
    assert [u.id for u in read_manifest(first.manifests["clean"])] == [u.id for u in read_manifest(few_digits)]
    assert clip_kinds(first.noise_only) == {"street_0": "street", "street_1": "street",
                                            "silence_0": "silence", "silence_1": "silence"}


def test_noise_only_babble_is_a_crowd_of_recordings(few_digits, data_dir, tmp_path):
    from asr.noisy import CROWD_RECORDINGS, held_out_noise

    sets = make_noisy_sets(few_digits, data_dir / "noise", ["babble"], [None], tmp_path, clip_seconds=1.0,
                           clips_per_kind=3)
    bank = held_out_noise(data_dir / "noise" / "manifest.jsonl", ["babble"])["babble"]
    assert len(bank) > CROWD_RECORDINGS
    recordings = [load_audio(e.audio) for e in bank.entries]
    for row in _rows(sets.noise_only):
        if row["kind"] != "babble":
            continue
        clip = load_audio(sets.directory / row["audio"])
        # No single recording explains the clip: at its best offset each correlates with it only in part
        # (about 1/sqrt(CROWD_RECORDINGS)), where a crop of one recording would correlate fully.
        best = max(_best_normalised_correlation(clip, r) for r in recordings)
        assert 0.2 < best < 0.8


def _best_normalised_correlation(clip: np.ndarray, recording: np.ndarray) -> float:
    from scipy.signal import correlate

    n = len(clip)
    dots = correlate(recording.astype(np.float64), clip.astype(np.float64), mode="valid", method="fft")
    energy = np.concatenate([[0.0], np.cumsum(recording.astype(np.float64) ** 2)])
    window_norms = np.sqrt(np.maximum(energy[n:] - energy[:-n], 1e-12))
    return float(np.max(np.abs(dots) / (window_norms * np.linalg.norm(clip))))


def test_hallucination_counts_normalised_words():
    kinds = {"b0": "babble", "b1": "babble", "s0": "silence"}
    report = hallucination_by_kind(kinds, {"b0": "Uh, the the.", "b1": "...", "s0": ""})
    assert list(report) == ["babble", "silence", ALL]
    assert (report["babble"].clips, report["babble"].clips_with_words, report["babble"].words) == (2, 1, 2)
    assert report["babble"].share == 0.5 and report["babble"].words_per_clip == 1.0
    assert report[ALL].clips == 3 and report[ALL].share == pytest.approx(1 / 3)


def test_a_sweep_without_noise_only_clips_prints_no_hallucination_table(tmp_path):
    table = WerTable(["babble"], [None], {"a": {}})
    counted = SweepResult({}, table, {"a": hallucination_by_kind({"b0": "babble"}, {"b0": "hello"})}, {}, tmp_path)
    none_asked = SweepResult({}, table, {"a": hallucination_by_kind({}, {})}, {}, tmp_path)
    assert "## Hallucinations" in counted.markdown() and "| a | 100% / 1.00 | 100% / 1.00 |" in counted.markdown()
    assert "Hallucinations" not in none_asked.markdown() and "## WER" in none_asked.markdown()


def test_hallucination_report_of_the_tiny_model(tiny_model_dir, few_digits, data_dir, tmp_path):
    sets = make_noisy_sets(few_digits, data_dir / "noise", ["music", "white"], [None], tmp_path,
                           clip_seconds=1.0, clips_per_kind=2)
    recognizer = load_model(tiny_model_dir)
    clips = read_manifest(sets.noise_only)
    hypotheses, audio_seconds, _ = transcribe_utterances(
        recognizer, clips, decoding_options(recognizer, {"mode": "ctc_greedy"}))
    assert set(hypotheses) == {c.id for c in clips} and audio_seconds > 0
    report = hallucination_by_kind(clip_kinds(sets.noise_only), hypotheses)
    assert list(report) == ["music", "white", "silence", ALL]
    assert [report[k].clips for k in report] == [2, 2, 2, 6]
    for counts in report.values():
        assert 0.0 <= counts.share <= 1.0 and counts.words >= counts.clips_with_words


def test_eval_decodes_and_scores_a_manifest(tiny_model_dir, few_digits, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["eval", "--manifest", str(few_digits), "--model", str(tiny_model_dir), "--decode", "joint",
                 "--beam", "3", "--batch-size", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "normalized" in printed and "95% CI" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"]["name"] == str(tiny_model_dir) and len(summary["model"]["weights_sha256"]) == 64
    assert summary["decoding"]["mode"] == "joint" and summary["decoding"]["beam_size"] == 3
    assert summary["decoding"]["batch_size"] == 2
    assert summary["real_time_factor"] > 0 and summary["audio_seconds"] > 0
    assert "git_revision" in summary  # a commit hash, or null outside a git checkout
    assert summary["normalized"]["utterances"] == 3 and 0.0 <= summary["normalized"]["wer"] <= 1.0
    interval = summary["normalized"]["wer_interval"]  # resampling the manifest's speakers
    assert interval["lo"] <= summary["normalized"]["wer"] <= interval["hi"]
    assert interval["clusters"] == len({u.speaker for u in read_manifest(few_digits)})
    per_utt = _rows(out / "per_utt.jsonl")
    assert [r["id"] for r in per_utt] == [u.id for u in read_manifest(few_digits)]
    assert {r["id"] for r in _rows(out / "hyp.jsonl")} == {r["id"] for r in per_utt}
    alignments = (out / "alignments.txt").read_text()
    assert alignments.count("\nREF:  ") == 3 and "normalized" in alignments


def test_eval_scores_an_external_hypothesis_file_with_the_normaliser(tmp_path):
    rows = [{"id": i, "audio": f"{i}.flac", "text": text, "duration": 1.0}
            for i, text in [("a", "zero"), ("b", "one"), ("c", "three")]]
    manifest = write_manifest(rows, tmp_path / "test.jsonl")
    (tmp_path / "text").write_text("a ZERO!\nb one\nc tree\n")  # Kaldi text from another toolkit
    assert main(["eval", "--manifest", str(manifest), "--hyp", str(tmp_path / "text"),
                 "--out", str(tmp_path / "out")]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["normalized"]["wer"] == pytest.approx(1 / 3)  # "ZERO!" is "zero" after normalising
    assert summary["raw"]["wer"] == pytest.approx(2 / 3)
    assert summary["normalized"]["wer_interval"]["clusters"] == 3  # no speakers: each utterance its own
    assert summary["hypotheses"] == str(tmp_path / "text")


def test_eval_noise_with_focus_and_a_peer(tiny_model_dir, padded_digits, data_dir, tmp_path):
    # A peer that wrote perfect transcripts of the clean set and nothing else.
    peer = tmp_path / "hyps" / "oracle"
    peer.mkdir(parents=True)
    (peer / "clean.jsonl").write_text("".join(json.dumps({"id": u.id, "text": u.text}) + "\n"
                                              for u in read_manifest(padded_digits)))
    out = tmp_path / "sweep"
    assert main(["eval-noise", "--manifest", str(padded_digits), "--noise-dir", str(data_dir / "noise"),
                 "--model", f"tiny={tiny_model_dir}", "--hyp-dir", str(tmp_path / "hyps"), "--snrs", "clean,10,0",
                 "--kinds", "white,babble", "--focus", "--beam", "2", "--clip-seconds", "1",
                 "--clips-per-kind", "1", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    wer = results["wer"]["systems"]
    assert list(wer) == ["tiny", "oracle"]
    assert list(wer["tiny"]) == ["white", "babble", "average"]
    assert list(wer["tiny"]["average"]) == ["clean", "10", "0"]
    assert all(isinstance(wer["tiny"][k][s], float) for k in wer["tiny"] for s in ["clean", "10", "0"])
    assert wer["tiny"]["average"]["0"] == pytest.approx((wer["tiny"]["white"]["0"] + wer["tiny"]["babble"]["0"]) / 2)
    assert wer["oracle"]["white"]["clean"] == 0.0 and wer["oracle"]["white"]["10"] is None
    intervals = results["wer"]["intervals"]
    assert all(intervals["tiny"][k][s]["lo"] <= wer["tiny"][k][s] <= intervals["tiny"][k][s]["hi"]
               for k in wer["tiny"] for s in ["clean", "10", "0"])
    assert intervals["oracle"]["white"]["clean"] == {"lo": 0.0, "hi": 0.0}
    assert intervals["oracle"]["white"]["10"] is None
    differences = results["wer"]["differences"]
    assert differences["baseline"] == "tiny" and list(differences["systems"]) == ["oracle"]
    oracle_clean = differences["systems"]["oracle"]["white"]["clean"]
    assert oracle_clean["estimate"] == pytest.approx(-wer["tiny"]["white"]["clean"])
    assert oracle_clean["lo"] <= oracle_clean["estimate"] <= oracle_clean["hi"] <= 0.0
    assert set(results["hallucination"]) == {"tiny"}  # the peer gave no noise_only file
    assert results["hallucination"]["tiny"]["all"]["clips"] == 3  # white, babble, silence
    assert (out / "systems" / "tiny" / "babble_0" / "summary.json").is_file()
    assert (out / "noisy" / "white_10.jsonl").is_file()

    # Focus per layer and head of the tiny model: decoder 1 layer x 2 heads, encoder 2 layers x 2 heads.
    focus = results["focus"]["tiny"]
    for attention, shape in [("cross", (1, 2)), ("encoder", (2, 2))]:
        table = focus[attention]
        assert (table["layers"], table["heads"]) == shape
        assert list(table["by_snr"]) == ["clean", "10", "0"]
        assert set(table["by_condition"]) == {"clean", "white_10", "white_0", "babble_10", "babble_0"}
        assert np.array(table["by_snr"]["0"]["per_head"]["speech_share"]).shape == shape
        assert np.array(table["wer_correlation"]["pooled"], dtype=float).shape == shape
        assert len(table["wer_correlation"]["within_condition_per_layer"]) == shape[0]
        assert 0.2 < table["by_snr"]["clean"]["chance"] < 0.8  # the padding is not speech
    markdown = (out / "results.md").read_text()
    assert "## Attention focus: tiny, cross attention" in markdown
    assert re.search(r"\| tiny \| white \| \d+\.\d \[\d+\.\d, \d+\.\d\] \|", markdown)
    assert "| oracle | white | 0.0 [0.0, 0.0] | n/a | n/a |" in markdown
    assert "| oracle - tiny | white |" in markdown
    assert "| 1.2 |" in markdown and "| **2** (mean) |" in markdown

    for png in [out / "wer_vs_snr.png", out / "systems" / "tiny" / "attention_example.png"]:
        assert png.read_bytes()[:8] == PNG_SIGNATURE
        with Image.open(png) as image:
            image.verify()
