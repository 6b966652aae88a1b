import dataclasses
import hashlib
import io
import json
import shutil
import tarfile
import threading
import typing
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from asr.audio import load_audio
from asr.config import TrainConfig, load_yaml
from asr.data.augment import active_speech_power
from asr.data.corpora import (
    commonvoice,
    librispeech,
    main,
    musan,
    rirs_noises,
    write_noisy_copies,
)
from asr.data.download import DownloadError, Resource, download, extract
from asr.data.manifest import read_manifest
from asr.data.noise import TEST, NoiseBank, RirBank, normalize_rir, read_bank_manifest
from asr.errors import ManifestError

REPO = Path(__file__).resolve().parents[1]


def rows(data_dir: Path, set_name: str) -> list[dict]:
    set_dir = data_dir / "speech" / set_name
    return [{**json.loads(line), "audio": str(set_dir / json.loads(line)["audio"])}
            for line in (set_dir / "manifest.jsonl").read_text().splitlines()]


def frames_seconds(path: Path) -> float:
    info = sf.info(str(path))
    return info.frames / info.samplerate


# --- speech corpora ------------------------------------------------------------------------------

def test_librispeech_layout(data_dir, tmp_path):
    subset = tmp_path / "LibriSpeech" / "test-clean"
    expected = {}
    by_chapter: dict[tuple[str, str], list[dict]] = {}
    for row in rows(data_dir, "librispeech_mini"):
        speaker, chapter, _ = row["id"].split("-")
        by_chapter.setdefault((speaker, chapter), []).append(row)
    # A second reader, made of LJ Speech clips renamed the LibriSpeech way.
    for n, row in enumerate(rows(data_dir, "ljspeech_subset")[:2]):
        renamed = {**row, "id": f"121-121726-{n:04d}", "text": row["text"].upper()}
        by_chapter.setdefault(("121", "121726"), []).append(renamed)
    for (speaker, chapter), chapter_rows in by_chapter.items():
        folder = subset / speaker / chapter
        folder.mkdir(parents=True)
        lines = []
        for row in chapter_rows:
            shutil.copy(row["audio"], folder / f"{row['id']}.flac")
            lines.append(f"{row['id']} {row['text']}")
            expected[row["id"]] = (row["text"], speaker, row["duration"])
        (folder / f"{speaker}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")

    utterances = librispeech(subset)
    assert {u.id: (u.text, u.speaker, round(u.duration, 3)) for u in utterances} == expected
    for u in utterances:
        assert Path(u.audio) == subset / u.speaker / u.id.split("-")[1] / f"{u.id}.flac"

    out = tmp_path / "test_clean.jsonl"
    assert main(["librispeech", str(out), str(subset)]) == 0
    assert read_manifest(out) == [dataclasses.replace(u, duration=round(u.duration, 3)) for u in utterances]

    (subset / "121" / "121726" / "121-121726-0001.flac").unlink()
    with pytest.raises(ManifestError, match="121-121726-0001.flac"):
        librispeech(subset)
    with pytest.raises(ManifestError, match="subset folder"):
        librispeech(tmp_path / "LibriSpeech")


CV_HEADER = ["client_id", "path", "sentence_id", "sentence", "sentence_domain", "up_votes", "down_votes",
             "age", "gender", "accents", "variant", "locale", "segment"]


def write_cv_release(data_dir: Path, release: Path) -> dict[str, list[dict]]:
    """A Common Voice language folder: MP3 clips and the split TSVs, in the release's column layout."""
    (release / "clips").mkdir(parents=True)
    # LJ Speech sentences with quotation marks, which must survive as text.
    quoted = min((r for r in rows(data_dir, "ljspeech_subset") if '"' in r["text"]), key=lambda r: r["duration"])
    sources = rows(data_dir, "speechbrain_asr")[:3] + [quoted]
    clips = []
    for n, row in enumerate(sources):
        path = f"common_voice_en_{4000 + n}.mp3"
        audio, rate = sf.read(row["audio"], dtype="float32")
        sf.write(release / "clips" / path, audio, rate, format="MP3", subtype="MPEG_LAYER_III")
        clips.append({"client_id": hashlib.sha256(row["speaker"].encode()).hexdigest(), "path": path,
                      "sentence": row["text"], "source_duration": row["duration"]})
    splits = {"train": clips[:2] + clips[3:], "dev": clips[2:3], "test": [], "validated": clips}
    for split, members in splits.items():
        lines = ["\t".join(CV_HEADER)]
        for c in members:
            values = {**dict.fromkeys(CV_HEADER, ""), **c, "up_votes": "2", "down_votes": "0", "locale": "en"}
            lines.append("\t".join(values[k] for k in CV_HEADER))
        (release / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return splits


def test_commonvoice_layout(data_dir, tmp_path):
    assert "MP3" in sf.available_formats()
    release = tmp_path / "cv-corpus-17.0-2024-03-15" / "en"
    splits = write_cv_release(data_dir, release)
    for split in ("train", "dev", "test", "validated"):
        utterances = commonvoice(release, split)
        assert [(u.id, u.text, u.speaker) for u in utterances] == [
            (Path(c["path"]).stem, c["sentence"], c["client_id"]) for c in splits[split]]
        for u, clip in zip(utterances, splits[split]):
            assert Path(u.audio) == release / "clips" / clip["path"]
            assert u.duration == pytest.approx(frames_seconds(Path(u.audio)))
            assert abs(u.duration - clip["source_duration"]) < 0.15  # MP3 adds a few ms of padding
    assert any('"' in u.text for u in commonvoice(release, "train"))

    # Newer releases list durations in clip_durations.tsv; those are used instead of decoding.
    (release / "clip_durations.tsv").write_text(
        "clip\tduration[ms]\n" + "".join(f"{c['path']}\t{1000 + i}\n" for i, c in enumerate(splits["validated"])))
    assert [u.duration for u in commonvoice(release, "validated")] == [1.0, 1.001, 1.002, 1.003]

    with pytest.raises(ManifestError, match="other.tsv"):
        commonvoice(release, "other")
    (release / "clips" / splits["dev"][0]["path"]).unlink()
    with pytest.raises(ManifestError, match="does not exist"):
        commonvoice(release, "dev")


def test_kaldi_data_dir_to_jsonl(data_dir, tmp_path):
    kaldi = tmp_path / "data" / "train"
    wavs = tmp_path / "wavs"
    kaldi.mkdir(parents=True)
    wavs.mkdir()
    chosen = [r for r in rows(data_dir, "fsdd") if r["id"].endswith("_0")][:6]
    scp, text, utt2spk = [], [], []
    for row in chosen:
        audio, rate = sf.read(row["audio"], dtype="int16")
        sf.write(wavs / f"{row['id']}.wav", audio, rate, subtype="PCM_16")
        scp.append(f"{row['id']} {wavs / (row['id'] + '.wav')}")
        text.append(f"{row['id']} {row['text']}")
        utt2spk.append(f"{row['id']} {row['speaker']}")
    for name, lines in (("wav.scp", scp), ("text", text), ("utt2spk", utt2spk)):
        (kaldi / name).write_text("\n".join(lines) + "\n")

    out = tmp_path / "train.jsonl"
    assert main(["kaldi", str(out), str(kaldi)]) == 0
    converted = read_manifest(out)
    assert [(u.id, u.text, u.speaker, u.duration) for u in converted] == [
        (r["id"], r["text"], r["speaker"], r["duration"]) for r in chosen]
    assert [Path(u.audio) for u in converted] == [wavs / f"{r['id']}.wav" for r in chosen]


# --- noise and impulse responses -----------------------------------------------------------------

def noise_rows(data_dir: Path) -> list[dict]:
    return [{**json.loads(line), "audio": str(data_dir / "noise" / json.loads(line)["audio"])}
            for line in (data_dir / "noise" / "manifest.jsonl").read_text().splitlines()]


def write_wav(src: str, dst: Path, channels: int = 1, seconds: float = 1.5) -> np.ndarray:
    audio = load_audio(src)[: int(seconds * 16000)]
    data = np.stack([audio * (0.5 ** c) for c in range(channels)], axis=1)
    dst.parent.mkdir(parents=True, exist_ok=True)
    sf.write(dst, data, 16000, subtype="PCM_16")
    return data


def test_musan_layout(data_dir, tmp_path):
    root = tmp_path / "musan"
    noise = noise_rows(data_dir)
    layout = {
        "music/fma/music-fma-0000.wav": noise[-12]["audio"],
        "music/rfm/music-rfm-0001.wav": noise[-11]["audio"],
        "noise/free-sound/noise-free-sound-0000.wav": noise[0]["audio"],
        "noise/sound-bible/noise-sound-bible-0003.wav": noise[1]["audio"],
        "speech/librivox/speech-librivox-0000.wav": rows(data_dir, "librispeech_mini")[0]["audio"],
    }
    for relative, source in layout.items():
        write_wav(source, root / relative)
    for category in ("music", "noise", "speech"):
        for source_dir in (root / category).iterdir():
            (source_dir / "ANNOTATIONS").write_text("file\n")
            (source_dir / "LICENSE").write_text("CC\n")

    entries = musan(root)
    assert [(e.id, e.kind, Path(e.audio)) for e in entries] == [
        ("music-fma-0000", "musan_music", root / "music/fma/music-fma-0000.wav"),
        ("music-rfm-0001", "musan_music", root / "music/rfm/music-rfm-0001.wav"),
        ("noise-free-sound-0000", "musan_noise", root / "noise/free-sound/noise-free-sound-0000.wav"),
        ("noise-sound-bible-0003", "musan_noise", root / "noise/sound-bible/noise-sound-bible-0003.wav"),
    ]
    assert all(e.duration == pytest.approx(frames_seconds(Path(e.audio))) for e in entries)
    assert [e.kind for e in musan(root, ["speech"])] == ["musan_speech"]

    out = tmp_path / "musan.jsonl"
    assert main(["musan", str(out), str(root), "--categories", "music", "noise", "speech"]) == 0
    banked = NoiseBank.from_manifests([out], None)
    assert [e.id for e in banked.entries] == [e.id for e in musan(root, ["music", "noise", "speech"])]
    assert np.allclose(banked.load(0), load_audio(root / "music/fma/music-fma-0000.wav"))
    with pytest.raises(ManifestError):
        musan(tmp_path / "nothing-here")


def test_rirs_noises_layout(data_dir, tmp_path):
    root = tmp_path / "RIRS_NOISES"
    rir_rows = [{**json.loads(line), "audio": str(data_dir / "rir" / json.loads(line)["audio"])}
                for line in (data_dir / "rir" / "manifest.jsonl").read_text().splitlines()]
    noise = noise_rows(data_dir)
    simulated = {"smallroom": ["Room001-00001", "Room001-00002"], "mediumroom": ["Room002-00001"]}
    for n, (room, names) in enumerate(simulated.items()):
        lines = []
        for k, name in enumerate(names):
            relative = f"RIRS_NOISES/simulated_rirs/{room}/{name.split('-')[0]}/{name}.wav"
            write_wav(rir_rows[n * 2 + k]["audio"], tmp_path / relative)
            lines.append(f"--rir-id {room}-{name} --room-id {room}-{name.split('-')[0]} {relative}")
        (root / "simulated_rirs" / room / "rir_list").write_text("\n".join(lines) + "\n")
    real = root / "real_rirs_isotropic_noises"
    two_mics = write_wav(rir_rows[5]["audio"], real / "RVB2014_type1_rir_largeroom1_near_anglb.wav", channels=2)
    write_wav(noise[3]["audio"], real / "RVB2014_type1_noise_largeroom1_1.wav", channels=2)
    (real / "rir_list").write_text(
        "--rir-id RVB2014_type1_rir_largeroom1_near_anglb_1 --room-id largeroom1 "
        "RIRS_NOISES/real_rirs_isotropic_noises/RVB2014_type1_rir_largeroom1_near_anglb.wav\n"
        "--rir-id RVB2014_type1_rir_largeroom1_near_anglb_2 --room-id largeroom1 "
        "RIRS_NOISES/real_rirs_isotropic_noises/RVB2014_type1_rir_largeroom1_near_anglb.wav\n")
    (real / "noise_list").write_text(
        "--noise-id RVB2014_type1_noise_largeroom1_1 --noise-type isotropic --room-linkage largeroom1 "
        "RIRS_NOISES/real_rirs_isotropic_noises/RVB2014_type1_noise_largeroom1_1.wav\n")
    write_wav(noise[4]["audio"], root / "pointsource_noises" / "noise-free-sound-0001.wav")
    (root / "pointsource_noises" / "noise_list").write_text(
        "--noise-id noise-free-sound-0001 --noise-type point-source --bg-fg-type foreground "
        "RIRS_NOISES/pointsource_noises/noise-free-sound-0001.wav\n")

    rirs, noises = rirs_noises(root)
    assert [(e.id, e.kind) for e in rirs] == [
        ("mediumroom-Room002-00001", "simulated_mediumroom"),
        ("smallroom-Room001-00001", "simulated_smallroom"),
        ("smallroom-Room001-00002", "simulated_smallroom"),
        ("RVB2014_type1_rir_largeroom1_near_anglb_1", "real"),  # listed once per microphone, kept once
    ]
    assert [(e.id, e.kind) for e in noises] == [
        ("RVB2014_type1_noise_largeroom1_1", "isotropic"), ("noise-free-sound-0001", "point-source")]

    rir_out, noise_out = tmp_path / "rirs.jsonl", tmp_path / "noises.jsonl"
    assert main(["rirs-noises", str(root), "--rirs", str(rir_out), "--noises", str(noise_out)]) == 0
    bank = RirBank.from_manifests([rir_out], None)
    assert len(bank) == 4 and len(read_bank_manifest(noise_out)) == 2
    first_mic = normalize_rir(two_mics[:, 0].astype(np.float32))  # not the average of both microphones
    assert np.allclose(bank.load(3), first_mic, atol=2e-4)

    (real / "rir_list").write_text("--rir-id broken RIRS_NOISES/real_rirs_isotropic_noises/missing.wav\n")
    with pytest.raises(ManifestError, match="missing.wav"):
        rirs_noises(root)


def test_noisy_copies_have_the_requested_snr(data_dir, tmp_path):
    clean = [u for u in read_manifest(data_dir / "speech" / "librispeech_mini" / "manifest.jsonl")][:2]
    bank = NoiseBank.from_manifests([data_dir / "noise" / "manifest.jsonl"], TEST, kinds=["babble", "street"])
    made = {}
    for snr in (0.0, 10.0):
        made[snr] = write_noisy_copies(clean, bank, snr, tmp_path / "audio", seed=3)
        for row, utt in zip(made[snr], clean):
            noisy = load_audio(row["audio"])
            speech = load_audio(utt.audio)
            assert len(noisy) == len(speech) and row["text"] == utt.text and row["snr_db"] == snr
            added = noisy.astype(np.float64) - speech
            scale = 1.0
            if np.max(np.abs(noisy)) >= 0.98:  # scaled down to stay under full scale: same SNR
                scale = float(np.dot(noisy, speech) / np.dot(speech, speech))
                added = noisy.astype(np.float64) / scale - speech
            assert abs(10 * np.log10(active_speech_power(speech) / np.mean(added**2)) - snr) < 0.5
    assert [r["noise"] for r in made[0.0]] == [r["noise"] for r in made[10.0]]
    assert all(bank.split_of(e) == TEST for e in bank.entries)


# --- downloads -----------------------------------------------------------------------------------

class ArchiveServer:
    """A local HTTP server for one payload that honours Range requests (or, if told, ignores them)
    and can cut the connection after a number of bytes."""

    def __init__(self, payload: bytes):
        self.payload = payload
        self.ranges: list[str | None] = []
        self.honour_range = True
        self.cut_after: int | None = None
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                requested = self.headers.get("Range")
                server.ranges.append(requested)
                start = 0
                if requested and server.honour_range:
                    start = int(requested.removeprefix("bytes=").split("-")[0])
                    if start >= len(server.payload):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(server.payload)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(server.payload) - 1}/{len(server.payload)}")
                else:
                    self.send_response(200)
                body = server.payload[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut_after is not None:
                    self.wfile.write(body[: server.cut_after])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/corpus/part-1.tar.gz"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def tar_payload(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


@pytest.fixture
def server(data_dir):
    flac = (data_dir / "speech" / "librispeech_mini" / "audio" / "1089-134686-0001.flac").read_bytes()
    s = ArchiveServer(tar_payload({"Corpus/a/1089-134686-0001.flac": flac, "Corpus/README": b"read me\n"}))
    yield s
    s.close()


def test_download_verifies_checksums_and_extracts(server, tmp_path):
    md5 = hashlib.md5(server.payload).hexdigest()
    sha256 = hashlib.sha256(server.payload).hexdigest()
    archive = download(Resource(server.url, md5=md5, sha256=sha256), tmp_path / "dl")
    assert archive == tmp_path / "dl" / "part-1.tar.gz" and archive.read_bytes() == server.payload
    assert server.ranges == [None]
    assert download(Resource(server.url, md5=md5), tmp_path / "dl") == archive  # present: no new request
    assert server.ranges == [None]
    extract(archive, tmp_path / "corpus")
    assert (tmp_path / "corpus" / "Corpus" / "README").read_bytes() == b"read me\n"
    assert sf.info(str(tmp_path / "corpus" / "Corpus" / "a" / "1089-134686-0001.flac")).samplerate == 16000


def test_download_resumes_a_partial_file(server, tmp_path):
    md5 = hashlib.md5(server.payload).hexdigest()
    server.cut_after = 5000  # the connection drops after 5000 bytes
    with pytest.raises(DownloadError, match="rerun to resume"):
        download(Resource(server.url, md5=md5), tmp_path)
    part = tmp_path / "part-1.tar.gz.part"
    assert part.stat().st_size == 5000 and not (tmp_path / "part-1.tar.gz").exists()
    server.cut_after = None
    archive = download(Resource(server.url, md5=md5), tmp_path)
    assert archive.read_bytes() == server.payload and not part.exists()
    assert server.ranges == [None, "bytes=5000-"]

    # A partial file that is in fact complete: the server answers 416 and the file is verified.
    archive.rename(part)
    assert download(Resource(server.url, md5=md5), tmp_path).read_bytes() == server.payload
    assert server.ranges[-1] == f"bytes={len(server.payload)}-"


def test_download_restarts_when_the_server_ignores_range(server, tmp_path):
    (tmp_path / "part-1.tar.gz.part").write_bytes(server.payload[:777])
    server.honour_range = False
    archive = download(Resource(server.url, sha256=hashlib.sha256(server.payload).hexdigest()), tmp_path)
    assert archive.read_bytes() == server.payload


def test_download_rejects_a_wrong_checksum(server, tmp_path):
    with pytest.raises(DownloadError, match="md5 of the download is"):
        download(Resource(server.url, md5="0" * 32), tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing half-trusted left behind


def test_file_url_without_checksum_records_one(tmp_path):
    source = tmp_path / "src" / "cv-corpus-en.tar.gz"
    source.parent.mkdir()
    source.write_bytes(tar_payload({"cv/en/validated.tsv": b"client_id\tpath\tsentence\n"}))
    archive = download(Resource(source.as_uri()), tmp_path / "dl")
    sidecar = tmp_path / "dl" / "cv-corpus-en.tar.gz.sha256"
    assert archive.read_bytes() == source.read_bytes()
    assert sidecar.read_text().split()[0] == hashlib.sha256(source.read_bytes()).hexdigest()
    with archive.open("r+b") as f:  # later corruption is caught against the recorded digest
        f.seek(10)
        f.write(b"\x00\x01\x02")
    with pytest.raises(DownloadError, match="sha256"):
        download(Resource(source.as_uri()), tmp_path / "dl")
    assert not archive.exists()
    with pytest.raises(DownloadError):
        download(Resource((tmp_path / "absent.tar.gz").as_uri()), tmp_path / "dl")


def test_extract_refuses_members_outside_the_target(tmp_path):
    evil = tmp_path / "evil.tar.gz"
    evil.write_bytes(tar_payload({"../escaped.txt": b"x"}))
    with pytest.raises(DownloadError, match="cannot extract"):
        extract(evil, tmp_path / "out")
    assert not (tmp_path / "escaped.txt").exists()

    archive = tmp_path / "rirs_noises.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("RIRS_NOISES/pointsource_noises/noise_list", "--noise-id a x.wav\n")
        z.writestr("../../zip-escaped.txt", "x")
    extract(archive, tmp_path / "zip")
    assert (tmp_path / "zip" / "RIRS_NOISES" / "pointsource_noises" / "noise_list").is_file()
    assert not (tmp_path / "zip-escaped.txt").exists() and not (tmp_path.parent / "zip-escaped.txt").exists()
    (tmp_path / "zip" / "RIRS_NOISES" / "pointsource_noises" / "noise_list").unlink()
    extract(archive, tmp_path / "zip")  # done once: the stamp file makes a rerun a no-op
    assert not (tmp_path / "zip" / "RIRS_NOISES" / "pointsource_noises" / "noise_list").exists()
    with pytest.raises(DownloadError, match="neither"):
        extract(tmp_path / "zip" / ".rirs_noises.zip.extracted", tmp_path / "x")


# --- recipes -------------------------------------------------------------------------------------

def field_names(cls) -> dict:
    """The nested key structure of a config dataclass; Optional sections count as present."""
    names = {}
    for name, hint in typing.get_type_hints(cls).items():
        inner = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
        names[name] = field_names(inner[0]) if dataclasses.is_dataclass(inner[0]) else None
    return names


def keys_of(data: dict, like: dict) -> dict:
    """data's nested key structure; a section written as null (an Optional one turned off, such as
    speaker adapters) counts as present, and load_yaml checks that it may be null."""
    return {k: keys_of(v, like[k]) if isinstance(v, dict) and like.get(k) else
            like.get(k) if v is None else None for k, v in data.items()}


RECIPE_CONFIGS = sorted(p for recipe in ("librispeech", "commonvoice")
                        for p in REPO.glob(f"recipes/{recipe}/conf/train_*.yaml"))


@pytest.mark.parametrize("config", RECIPE_CONFIGS, ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_recipe_configs_match_train_config_exactly(config):
    data = yaml.safe_load(config.read_text())
    assert keys_of(data, field_names(TrainConfig)) == field_names(TrainConfig)
    loaded = load_yaml(TrainConfig, config)  # unknown keys or wrong types raise here
    augment = loaded.data.augment
    # run.sh's stage 1 writes (or links) every manifest the config names into data/.
    for manifest in loaded.data.train + loaded.data.dev + augment.noise_manifests + augment.rir_manifests:
        assert manifest.startswith("data/") and manifest.endswith(".jsonl")


def test_there_are_recipe_configs():
    assert {p.parent.parent.name for p in RECIPE_CONFIGS} == {"librispeech", "commonvoice"}
