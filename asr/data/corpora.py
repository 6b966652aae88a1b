"""Corpus importers: real corpus layouts on disk to manifests.

Speech corpora become utterance manifests (JSONL, asr.data.manifest): LibriSpeech, Common Voice
and Kaldi data directories. Noise and impulse-response collections become bank manifests
(asr.data.noise): MUSAN, RIRS_NOISES and folders of recorded music. `write_noisy_copies` makes a noisy test set from a clean
manifest and held-out noise. Transcripts are kept exactly as each corpus writes them; text
normalisation is the tokenizer's job.

Command line, used by the recipes:
    python -m asr.data.corpora download NAME_OR_URL... --dir DIR [--extract-to DIR]
    python -m asr.data.corpora librispeech OUT.jsonl SUBSET_DIR...
    python -m asr.data.corpora commonvoice OUT.jsonl RELEASE_DIR SPLIT
    python -m asr.data.corpora kaldi OUT.jsonl DATA_DIR
    python -m asr.data.corpora musan OUT.jsonl MUSAN_DIR [--categories music noise speech]
    python -m asr.data.corpora rirs-noises RIRS_NOISES_DIR --rirs OUT.jsonl --noises OUT.jsonl
    python -m asr.data.corpora music OUT.jsonl FOLDER...
    python -m asr.data.corpora noisy OUT.jsonl CLEAN_MANIFEST --noise BANK.jsonl... --snr DB --audio-dir DIR
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
import soundfile as sf

from asr.audio import SAMPLE_RATE, load_audio
from asr.data.augment import fit_to_length, mix_at_snr
from asr.data.download import Resource, download, extract
from asr.data.manifest import Utterance, read_kaldi_dir, read_manifest, write_jsonl
from asr.data.noise import TEST, BankEntry, NoiseBank, write_bank_manifest
from asr.errors import AsrError, ManifestError

log = logging.getLogger(__name__)

OPENSLR = "https://www.openslr.org/resources"
# MD5 sums as published in each resource's md5sum.txt on openslr.org; the SLR12 SHA-256 sums are
# the ones torchaudio pins for the same archives.
RESOURCES = {
    "dev-clean-2": Resource(f"{OPENSLR}/31/dev-clean-2.tar.gz", md5="6d7ab67ac6a1d2c993d050e16d61080d"),
    "train-clean-5": Resource(f"{OPENSLR}/31/train-clean-5.tar.gz", md5="5df7d4e78065366204ca6845bb08f490"),
    "dev-clean": Resource(f"{OPENSLR}/12/dev-clean.tar.gz", md5="42e2234ba48799c1f50f24a7926300a1",
                          sha256="76f87d090650617fca0cac8f88b9416e0ebf80350acb97b343a85fa903728ab3"),
    "dev-other": Resource(f"{OPENSLR}/12/dev-other.tar.gz", md5="c8d0bcc9cca99d4f8b62fcc847357931",
                          sha256="12661c48e8c3fe1de2c1caa4c3e135193bfb1811584f11f569dd12645aa84365"),
    "test-clean": Resource(f"{OPENSLR}/12/test-clean.tar.gz", md5="32fa31d27d2e1cad72775fee3f4849a9",
                           sha256="39fde525e59672dc6d1551919b1478f724438a95aa55f874b576be21967e6c23"),
    "test-other": Resource(f"{OPENSLR}/12/test-other.tar.gz", md5="fb5a50374b501bb3bac4815ee91d3135",
                           sha256="d09c181bba5cf717b3dee7d4d592af11a3ee3a09e08ae025c5506f6ebe961c29"),
    "train-clean-100": Resource(f"{OPENSLR}/12/train-clean-100.tar.gz", md5="2a93770f6d5c6c964bc36631d331a522",
                                sha256="d4ddd1d5a6ab303066f14971d768ee43278a5f2a0aa43dc716b0e64ecbbbf6e2"),
    "train-clean-360": Resource(f"{OPENSLR}/12/train-clean-360.tar.gz", md5="c0e676e450a7ff2f54aeade5171606fa",
                                sha256="146a56496217e96c14334a160df97fffedd6e0a04e66b9c5af0d40be3c792ecf"),
    "train-other-500": Resource(f"{OPENSLR}/12/train-other-500.tar.gz", md5="d1a0fd59409feb2c614ce4d30c387708",
                                sha256="ddb22f27f96ec163645d53215559df6aa36515f26e01dd70798188350adcb6d2"),
    "musan": Resource(f"{OPENSLR}/17/musan.tar.gz", md5="0c472d4fc0c5141eca47ad1ffeb2a7df"),
    "rirs_noises": Resource(f"{OPENSLR}/28/rirs_noises.zip", md5="e6f48e257286e05de56413b4779d8ffb"),
}

MUSAN_CATEGORIES = ("music", "noise", "speech")
MUSIC_SUFFIXES = (".flac", ".mp3", ".ogg", ".opus", ".wav")


def _duration(audio: Path) -> float:
    try:
        info = sf.info(str(audio))
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        raise ManifestError(f"{audio}: not a readable audio file ({err})") from None
    return info.frames / info.samplerate


def _existing(audio: Path, listed_in: Path) -> Path:
    if not audio.is_file():
        raise ManifestError(f"{listed_in}: lists {audio.name}, but {audio} does not exist")
    return audio


# --- speech corpora ------------------------------------------------------------------------------

def librispeech(subset_dir: str | Path) -> list[Utterance]:
    """One LibriSpeech subset folder (e.g. LibriSpeech/train-clean-100): SPEAKER/CHAPTER/ holds
    SPEAKER-CHAPTER.trans.txt ("UTTERANCE-ID TRANSCRIPT" lines) and UTTERANCE-ID.flac files."""
    subset_dir = Path(subset_dir)
    transcripts = sorted(subset_dir.glob("*/*/*.trans.txt"))
    if not transcripts:
        raise ManifestError(f"{subset_dir}: no SPEAKER/CHAPTER/*.trans.txt; give a subset folder "
                            "such as LibriSpeech/train-clean-100")
    utterances = []
    for trans in transcripts:
        speaker = trans.parent.parent.name
        for number, line in enumerate(trans.read_text(encoding="utf-8").splitlines(), 1):
            utt_id, _, text = line.strip().partition(" ")
            if not utt_id:
                continue
            if not text:
                raise ManifestError(f"{trans}:{number}: expected 'UTTERANCE-ID TRANSCRIPT'")
            audio = _existing(trans.parent / f"{utt_id}.flac", trans)
            utterances.append(Utterance(utt_id, str(audio), text, _duration(audio), speaker))
    return utterances


def commonvoice(release_dir: str | Path, split: str) -> list[Utterance]:
    """One split of a Common Voice release folder (the language folder holding clips/ and the
    TSV files): `split` is train, dev, test, validated, other or invalidated. Speaker = client_id."""
    release_dir = Path(release_dir)
    tsv = release_dir / f"{split}.tsv"
    if not tsv.is_file():
        raise ManifestError(f"{release_dir}: no {split}.tsv; give the language folder of a Common Voice release")
    durations = _commonvoice_durations(release_dir / "clip_durations.tsv")
    utterances = []
    with tsv.open(encoding="utf-8", newline="") as f:
        # Sentences contain quote characters that are text, not CSV quoting.
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        missing = {"client_id", "path", "sentence"} - set(reader.fieldnames or [])
        if missing:
            raise ManifestError(f"{tsv}: missing columns {sorted(missing)}")
        for row in reader:
            audio = _existing(release_dir / "clips" / row["path"], tsv)
            duration = durations.get(row["path"])
            utterances.append(Utterance(Path(row["path"]).stem, str(audio), row["sentence"],
                                        duration if duration is not None else _duration(audio), row["client_id"]))
    return utterances


def _commonvoice_durations(path: Path) -> dict[str, float]:
    """clip_durations.tsv ("clip", "duration[ms]"), shipped by newer releases; saves decoding every MP3."""
    if not path.is_file():
        return {}
    with path.open(encoding="utf-8", newline="") as f:
        return {row[0]: int(row[1]) / 1000 for row in csv.reader(f, delimiter="\t") if row and row[1].isdigit()}


# --- noise and impulse responses -----------------------------------------------------------------

def musan(musan_dir: str | Path, categories: Sequence[str] = ("music", "noise")) -> list[BankEntry]:
    """MUSAN recordings (musan/CATEGORY/SOURCE/*.wav) as bank entries of kind "musan_CATEGORY"."""
    musan_dir = Path(musan_dir)
    entries = []
    for category in categories:
        if category not in MUSAN_CATEGORIES:
            raise ManifestError(f"unknown MUSAN category {category!r}; choose from {MUSAN_CATEGORIES}")
        files = sorted((musan_dir / category).glob("*/*.wav"))
        if not files:
            raise ManifestError(f"{musan_dir / category}: no SOURCE/*.wav files; give the musan folder")
        entries += [BankEntry(wav.stem, str(wav), _duration(wav), f"musan_{category}",
                              f"MUSAN {category}/{wav.parent.name}") for wav in files]
    return entries


def music_folders(folders: Sequence[str | Path]) -> list[BankEntry]:
    """Every audio file under `folders` as a bank entry of kind "recorded_music", for music under a free
    licence such as Debian's game soundtracks (recipes/whisper_ctc/README.md). The id is the file's
    path below the folder's parent, so the hashed train/test split does not depend on where the
    folder is. A file that cannot be read is left out with a warning, not the whole folder."""
    entries = []
    for folder in map(Path, folders):
        files = sorted(f for f in folder.rglob("*") if f.suffix.lower() in MUSIC_SUFFIXES and f.is_file())
        if not files:
            raise ManifestError(f"{folder}: no audio files ({', '.join(MUSIC_SUFFIXES)}) in it or below it")
        for audio in files:
            try:
                duration = _duration(audio)
            except ManifestError as err:
                log.warning("left out: %s", err)
                continue
            entries.append(BankEntry(audio.relative_to(folder.parent).as_posix(), str(audio.resolve()), duration,
                                     "recorded_music", str(folder)))
    return entries


def rirs_noises(rirs_dir: str | Path) -> tuple[list[BankEntry], list[BankEntry]]:
    """(impulse responses, noises) of an unpacked rirs_noises.zip (OpenSLR 28), as listed by its
    simulated_rirs/*/rir_list, real_rirs_isotropic_noises/{rir,noise}_list and pointsource_noises/noise_list.

    RIR kinds are "simulated_<room size>" or "real"; noise kinds are the list's --noise-type.
    """
    rirs_dir = Path(rirs_dir)
    rir_lists = sorted(rirs_dir.glob("simulated_rirs/*/rir_list")) + [rirs_dir / "real_rirs_isotropic_noises/rir_list"]
    noise_lists = [rirs_dir / "real_rirs_isotropic_noises/noise_list", rirs_dir / "pointsource_noises/noise_list"]
    rirs = [e for path in rir_lists for e in _read_rirs_list(path, rirs_dir, "--rir-id")]
    noises = [e for path in noise_lists for e in _read_rirs_list(path, rirs_dir, "--noise-id")]
    return rirs, noises


def _read_rirs_list(path: Path, rirs_dir: Path, id_option: str) -> list[BankEntry]:
    """Lines like "--rir-id ID --room-id ROOM RIRS_NOISES/simulated_rirs/.../x.wav" (paths relative
    to the folder holding RIRS_NOISES). A file listed twice (once per microphone) is kept once, so
    that the split, which goes by id, can never put one recording on both sides."""
    if not path.is_file():
        raise ManifestError(f"{path}: missing; give the RIRS_NOISES folder of an unpacked rirs_noises.zip")
    entries, seen = [], set()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        tokens = line.split()
        if not tokens:
            continue
        options = dict(zip(tokens[:-1:2], tokens[1:-1:2]))
        if id_option not in options or len(tokens) % 2 == 0:
            raise ManifestError(f"{path}:{number}: expected '{id_option} ID [--option value]... FILE'")
        audio = _existing(rirs_dir.parent / tokens[-1], path)
        if audio in seen:
            continue
        seen.add(audio)
        if id_option == "--rir-id":
            room = path.parent.name
            kind = f"simulated_{room}" if path.parent.parent.name == "simulated_rirs" else "real"
        else:
            kind = options.get("--noise-type", "noise")
        entries.append(BankEntry(options[id_option], str(audio), _duration(audio), kind,
                                 f"RIRS_NOISES {path.parent.name}"))
    return entries


# --- noisy test sets -----------------------------------------------------------------------------

def write_noisy_copies(utterances: Sequence[Utterance], noise: NoiseBank, snr_db: float, audio_dir: str | Path,
                       seed: int, sample_rate: int = SAMPLE_RATE) -> list[dict]:
    """Mixes each utterance with a noise recording at `snr_db`, writes 16-bit FLAC files into
    `audio_dir` and returns their manifest rows (with "clean_id", "noise" and "snr_db" added).

    Noise choice and offset depend on (seed, utterance position) only, so sets made at different
    SNRs differ in noise level alone. A mixture louder than full scale is scaled down as a whole,
    which leaves the SNR unchanged, instead of being clipped.
    """
    if not noise:
        raise ManifestError("no noise recordings to mix with")
    audio_dir = Path(audio_dir)
    audio_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for position, utt in enumerate(utterances):
        rng = np.random.default_rng([seed, position])
        speech = load_audio(utt.audio, sample_rate)
        entry, recording = noise.choose(rng)
        mixed = mix_at_snr(speech, fit_to_length(recording, len(speech), rng), snr_db, sample_rate)
        peak = float(np.max(np.abs(mixed)))
        if peak > 1.0:
            mixed *= 0.99 / peak
        noisy_id = f"{utt.id}__{entry.id}__snr{snr_db:g}"
        path = audio_dir / f"{noisy_id}.flac"
        sf.write(path, mixed, sample_rate, subtype="PCM_16")
        rows.append({"id": noisy_id, "audio": str(path), "text": utt.text,
                     "duration": round(len(mixed) / sample_rate, 3), "speaker": utt.speaker,
                     "clean_id": utt.id, "noise": entry.id, "snr_db": snr_db})
    return rows


def write_rows(rows: Iterable[dict], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")


# --- command line --------------------------------------------------------------------------------

def _fetch(args: argparse.Namespace) -> int:
    for item in args.items:
        if "://" in item:
            resource = Resource(item, args.md5, args.sha256)
        elif item in RESOURCES:
            resource = RESOURCES[item]
            if args.mirror:
                url = resource.url.replace(OPENSLR, args.mirror.rstrip("/"))
                resource = Resource(url, resource.md5, resource.sha256)
        else:
            raise ManifestError(f"unknown resource {item!r}; known: {', '.join(RESOURCES)} (or give a URL)")
        archive = download(resource, args.dir)
        if args.extract_to:
            extract(archive, args.extract_to)
        print(archive)
    return 0


def _speech(utterances: list[Utterance], out: str) -> int:
    write_jsonl(utterances, out)
    print(f"{out}: {len(utterances)} utterances, {sum(u.duration for u in utterances) / 3600:.2f} h")
    return 0


def _bank(entries: list[BankEntry], out: str) -> int:
    write_bank_manifest(entries, out)
    print(f"{out}: {len(entries)} recordings, {sum(e.duration for e in entries) / 3600:.2f} h")
    return 0


def _rirs_noises(args: argparse.Namespace) -> int:
    rirs, noises = rirs_noises(args.rirs_dir)
    _bank(rirs, args.rirs)
    return _bank(noises, args.noises)


def _noisy(args: argparse.Namespace) -> int:
    bank = NoiseBank.from_manifests(args.noise, TEST, kinds=args.kinds)
    rows = write_noisy_copies(read_manifest(args.manifest), bank, args.snr, args.audio_dir, args.seed)
    write_rows(rows, args.out)
    print(f"{args.out}: {len(rows)} utterances at {args.snr:g} dB SNR with held-out noise")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m asr.data.corpora", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("download", help="download (and extract) archives by name or URL")
    p.add_argument("items", nargs="+", metavar="NAME_OR_URL", help=f"one of {', '.join(RESOURCES)}, or a URL")
    p.add_argument("--dir", required=True, help="where the archives go")
    p.add_argument("--extract-to", help="unpack each archive here")
    p.add_argument("--mirror", help=f"replaces {OPENSLR}, e.g. https://openslr.trmal.net/resources")
    p.add_argument("--md5", help="checksum of a URL given on the command line")
    p.add_argument("--sha256", help="checksum of a URL given on the command line")
    p.set_defaults(run=_fetch)

    p = sub.add_parser("librispeech", help="LibriSpeech subset folders to one manifest")
    p.add_argument("out")
    p.add_argument("subset_dirs", nargs="+")
    p.set_defaults(run=lambda a: _speech([u for d in a.subset_dirs for u in librispeech(d)], a.out))

    p = sub.add_parser("commonvoice", help="one split of a Common Voice release to a manifest")
    p.add_argument("out")
    p.add_argument("release_dir")
    p.add_argument("split")
    p.set_defaults(run=lambda a: _speech(commonvoice(a.release_dir, a.split), a.out))

    p = sub.add_parser("kaldi", help="a Kaldi data directory to a JSONL manifest")
    p.add_argument("out")
    p.add_argument("data_dir")
    p.set_defaults(run=lambda a: _speech(read_kaldi_dir(Path(a.data_dir)), a.out))

    p = sub.add_parser("musan", help="MUSAN to a noise bank manifest")
    p.add_argument("out")
    p.add_argument("musan_dir")
    p.add_argument("--categories", nargs="+", default=["music", "noise"], choices=MUSAN_CATEGORIES)
    p.set_defaults(run=lambda a: _bank(musan(a.musan_dir, a.categories), a.out))

    p = sub.add_parser("rirs-noises", help="RIRS_NOISES to RIR and noise bank manifests")
    p.add_argument("rirs_dir")
    p.add_argument("--rirs", required=True, help="RIR bank manifest to write")
    p.add_argument("--noises", required=True, help="noise bank manifest to write")
    p.set_defaults(run=_rirs_noises)

    p = sub.add_parser("music", help="folders of recorded music to a bank manifest")
    p.add_argument("out")
    p.add_argument("folders", nargs="+")
    p.set_defaults(run=lambda a: _bank(music_folders(a.folders), a.out))

    p = sub.add_parser("noisy", help="noisy copies of a manifest at one SNR, with held-out (test) noise")
    p.add_argument("out")
    p.add_argument("manifest")
    p.add_argument("--noise", nargs="+", required=True, help="noise bank manifests; their test split is used")
    p.add_argument("--kinds", nargs="+", help="only these noise kinds")
    p.add_argument("--snr", type=float, required=True, help="dB, measured on active speech")
    p.add_argument("--audio-dir", required=True, help="where the noisy FLAC files go")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=_noisy)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return args.run(args)
    except AsrError as err:
        print(f"{args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
