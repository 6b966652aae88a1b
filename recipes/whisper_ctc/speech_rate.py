"""The longest transcript the default model may write: a cap in tokens per second of audio, set
from the fastest speech of the training voices and checked on development speakers in training noise.

A Whisper decoder that loses its way in music or babble can repeat a phrase until its window ends:
hundreds of words for a few seconds of speech. Whisper samples such transcripts again at higher
temperatures; a cap on the search's length is deterministic, costs nothing, and holds on both
runtimes (DecodingOptions.max_tokens_per_second). It is MARGIN times the fastest rate, in the
decoder's tokens per second, of any training transcript, so no speech the model was trained on
comes near it. No test speaker and no test noise is read here.

    python recipes/whisper_ctc/speech_rate.py --model whisper-tiny-ctc --out recipes/whisper_ctc/SPEECH_RATE.md
"""

from __future__ import annotations

import argparse
import math
import subprocess
from collections import defaultdict
from pathlib import Path

import numpy as np

from asr.data.manifest import Utterance
from asr.tokenizer import Tokenizer

MARGIN = 1.5  # over the fastest training transcript: a fast unseen speaker keeps every word


def tokens_per_second(utterances: list[Utterance], tokenizer: Tokenizer) -> dict[str, np.ndarray]:
    """Per corpus (the folder under speech/), the decoder's tokens per second of each transcript,
    written as the decoder writes (an all-capitals transcript in sentence case), over at least one
    second, as the cap counts it."""
    rates: dict[str, list[float]] = defaultdict(list)
    for utt in utterances:
        text = utt.text.capitalize() if utt.text.isupper() else utt.text
        corpus = Path(utt.audio).parts[Path(utt.audio).parts.index("speech") + 1]
        rates[corpus].append(len(tokenizer.encode(" " + text)) / max(1.0, utt.duration))
    return {corpus: np.array(values) for corpus, values in sorted(rates.items())}


def training_rates(data_dir: Path, tokenizer: Tokenizer, dev_speakers: int, seed: int) -> dict[str, np.ndarray]:
    """tokens_per_second of every transcribed training utterance (gate_head.speech_sets)."""
    from gate_head import speech_sets

    train, _ = speech_sets(data_dir, per_speaker=1000, dev_speakers=dev_speakers, seed=seed)
    return tokens_per_second(train, tokenizer)


def token_cap(rates: dict[str, np.ndarray]) -> float:
    """MARGIN times the fastest rate, rounded up to a whole token per second."""
    return float(math.ceil(MARGIN * max(float(r.max()) for r in rates.values())))


def rates_table(rates: dict[str, np.ndarray]) -> list[str]:
    lines = ["| training corpus | utterances | median | 99th percentile | fastest |", "|---|---|---|---|---|"]
    for corpus, r in rates.items():
        lines.append(f"| {corpus} | {len(r)} | {np.median(r):.2f} | {np.percentile(r, 99):.2f} | {r.max():.2f} |")
    return lines


def dev_check(model: str, dev: list[Utterance], train: list[Utterance], data_dir: Path, cap: float,
              seed: int) -> list[str]:
    """WER on the development speakers in training noise at 5 and 0 dB (dev_noise.py), decoded
    without and with the cap."""
    from asr.audio import load_audio
    from asr.recognizer import load_model
    from asr.scoring import score
    from dev_noise import KINDS, SNRS, mixtures

    recognizer = load_model(model)
    clean = [load_audio(u.audio) for u in dev]
    lines = ["| condition | cap | WER % | insertions | transcripts at the cap |", "|---|---|---|---|---|"]
    for kind in KINDS:
        for snr in SNRS:
            noisy = mixtures(clean, [u.audio for u in train], data_dir, kind, snr, seed)
            for limit in (0.0, cap):
                results = recognizer.transcribe_batch(noisy, batch_size=4, max_tokens_per_second=limit)
                view = score([(u.id, u.text, r.text) for u, r in zip(dev, results)])
                at_cap = sum(len(r.tokens) >= math.ceil(cap * max(1.0, r.duration)) for r in results)
                lines.append(f"| {kind} {snr:g} dB | {limit:g} | {100 * view.wer:.1f} | {view.words.insertions} | "
                             f"{at_cap} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--model", default="whisper-tiny-ctc", help="whose tokenizer counts, and whose decoding is checked")
    parser.add_argument("--per-speaker", type=int, default=10, help="development utterances per speaker")
    parser.add_argument("--dev-speakers", type=int, default=10, help="as gate_head.py and distill.py")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="write this report (else only print the cap)")
    args = parser.parse_args()

    import torch

    from asr.model_folder import read_description, resolve_model
    from gate_head import speech_sets

    torch.set_num_threads(args.threads)
    data_dir = Path(args.data_dir)
    _, _, tokenizer = read_description(resolve_model(args.model))
    train, _ = speech_sets(data_dir, per_speaker=1000, dev_speakers=args.dev_speakers, seed=args.seed)
    rates = tokens_per_second(train, tokenizer)  # as training_rates, with the utterances kept for babble
    cap = token_cap(rates)
    print(f"max_tokens_per_second: {cap:g}")
    if args.out is None:
        return
    _, dev = speech_sets(data_dir, args.per_speaker, args.dev_speakers, args.seed)
    revision = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    report = [
        "# The token cap: how long a transcript may be", "",
        f"Command: `python recipes/whisper_ctc/speech_rate.py --model {args.model} --out {args.out}`  ",
        f"git {revision}; training voices only (gate_head.speech_sets); development speakers: "
        f"{args.dev_speakers} speechocean762 train-split speakers, {len(dev)} utterances.", "",
        "## Speech rate of the training transcripts, in decoder tokens per second", "",
        *rates_table(rates), "",
        f"Cap: {MARGIN:g} x the fastest, rounded up: **{cap:g} tokens per second** (at least one second's worth).", "",
        f"## {args.model} on the development speakers in training noise, without and with the cap", "",
        *dev_check(args.model, dev, train, data_dir, cap, args.seed), "",
    ]
    args.out.write_text("\n".join(report))
    print(args.out)


if __name__ == "__main__":
    main()
