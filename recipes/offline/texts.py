"""Sentences for the offline corpus: public-domain prose plus spoken digits, numbers, dates, times
and short commands, split into train/dev/test sentences with a fixed seed.

Prose comes from `text/ljspeech_metadata.csv` in the shared data (13,100 LJ Speech transcripts,
public domain) when it is there; the LJ Speech clips that the recipe tests on are left out. Where
that file is missing, the transcripts of the LJ Speech training clips in `speech/ljspeech_subset`
stand in for it. The other sentences are generated from templates, written the way a transcript
writes them (words, not digits), so the character tokenizer sees every number spelt out.

More training prose comes from the example quotations in the GNU Collaborative International
Dictionary of English (Debian's `dict-gcide`, GPL; the quotations are from Webster's 1913, public
domain): tens of thousands of distinct sentences, so that a small model cannot learn the training
texts by heart and has to listen.
"""

from __future__ import annotations

import csv
import gzip
import json
import random
import re
from pathlib import Path

ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen " \
       "sixteen seventeen eighteen nineteen".split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
MONTHS = "January February March April May June July August September October November December".split()
ORDINALS = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
            "nine": "ninth", "twelve": "twelfth"}
COMMANDS = [
    "turn {onoff} the {room} lights", "set a timer for {number} minutes", "call {name} at {time}",
    "remind me to {task} on {date}", "play the next song", "stop the music", "what time is it",
    "open the {room} window", "turn the volume {updown}", "send a message to {name}",
    "how is the weather {when}", "wake me up at {time}", "cancel my meeting {when}",
    "add {number} {item} to the shopping list", "read my new messages", "go back to the start",
    "move the meeting with {name} to {date}", "dial {digits}", "my code is {digits}",
    "the room number is {number}", "take the {ordinal} exit", "book a table for {small} at {time}",
]
SLOTS = {
    "onoff": ["on", "off"], "updown": ["up", "down"], "when": ["today", "tomorrow", "this evening", "on Monday"],
    "room": ["kitchen", "bedroom", "bathroom", "office", "living room", "garage"],
    "name": ["Anna", "David", "Maria", "John", "Sarah", "Peter", "Linda", "James"],
    "task": ["buy milk", "call the doctor", "pay the rent", "water the plants", "feed the cat"],
    "item": ["apples", "eggs", "bottles of water", "loaves of bread", "bananas"],
}


def number_words(n: int) -> str:
    """English words for 0 <= n < 10000, British style ("three hundred and twelve")."""
    if n < 20:
        return ONES[n]
    if n < 100:
        return TENS[n // 10] + ("" if n % 10 == 0 else "-" + ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return ONES[n // 100] + " hundred" + ("" if rest == 0 else " and " + number_words(rest))
    rest = n % 1000
    joiner = " and " if 0 < rest < 100 else " "
    return number_words(n // 1000) + " thousand" + ("" if rest == 0 else joiner + number_words(rest))


def ordinal_words(n: int) -> str:
    words = number_words(n)
    head, _, last = words.rpartition("-") if "-" in words else ("", "", words)
    if last in ORDINALS:
        last = ORDINALS[last]
    else:
        last = last[:-1] + "ieth" if last.endswith("y") else last + "th"
    return f"{head}-{last}" if head else last


def year_words(year: int) -> str:
    if 2000 <= year < 2010:
        return number_words(year)
    high, low = divmod(year, 100)
    return number_words(high) + " " + ("hundred" if low == 0 else ("oh " + ONES[low] if low < 10 else number_words(low)))


def time_words(rng: random.Random) -> str:
    hour, minute = rng.randint(1, 12), rng.choice([0, 0, 5, 10, 15, 20, 30, 45, 50])
    if minute == 0:
        return f"{number_words(hour)} o'clock"
    if minute == 15:
        return f"quarter past {number_words(hour)}"
    if minute == 30:
        return f"half past {number_words(hour)}"
    return f"{number_words(hour)} {number_words(minute)}"


def date_words(rng: random.Random) -> str:
    day, month = ordinal_words(rng.randint(1, 28)), rng.choice(MONTHS)
    return f"the {day} of {month}" if rng.random() < 0.5 else f"{month} {day}"


def digits_words(rng: random.Random, count: int) -> str:
    return " ".join(ONES[rng.randint(0, 9)] for _ in range(count))


def template_sentence(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.2:
        return digits_words(rng, rng.randint(3, 9)).capitalize() + "."
    if kind < 0.35:
        return number_words(rng.randint(0, 9999)).capitalize() + "."
    if kind < 0.5:
        return f"It happened on {date_words(rng)}, {year_words(rng.randint(1800, 2029))}."
    fill = {k: rng.choice(v) for k, v in SLOTS.items()}
    fill.update(number=number_words(rng.randint(2, 60)), time=time_words(rng), date=date_words(rng),
                digits=digits_words(rng, rng.randint(4, 7)), ordinal=ordinal_words(rng.randint(1, 9)),
                small=number_words(rng.randint(2, 8)))
    sentence = rng.choice(COMMANDS).format(**fill)
    return sentence[0].upper() + sentence[1:] + ("?" if sentence.startswith(("what", "how")) else ".")


def prose(data_dir: Path, held_out_ids: set[str]) -> tuple[list[str], str]:
    """Public-domain sentences, never one that a held-out LJ Speech clip reads; and where they came from."""
    metadata = data_dir / "text" / "ljspeech_metadata.csv"
    if metadata.is_file():
        with metadata.open(newline="") as f:
            rows = list(csv.reader(f, delimiter="|", quoting=csv.QUOTE_NONE))
        return [r[2] for r in rows if len(r) >= 3 and r[0] not in held_out_ids and r[2].strip()], str(metadata)
    manifest = data_dir / "speech" / "ljspeech_subset" / "manifest.jsonl"
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    return [r["text"] for r in rows if r["id"] not in held_out_ids], f"{manifest} (text/ljspeech_metadata.csv is missing)"


GCIDE = Path("/usr/share/dictd/gcide.dict.dz")  # dictzip is gzip-compatible
_QUOTATION_INDENT = 10  # quotations sit deeper than definitions (3-6 spaces) in the dictd text
_SPEAKABLE = re.compile(r"[A-Z][A-Za-z ,;:'!?-]*[.!?]")


def dictionary_quotations(path: Path = GCIDE, min_words: int = 5, max_words: int = 20) -> list[str]:
    """Distinct example quotations from the GCIDE dictd file, without their "--Author" credit, in
    file order; only plain sentences of letters and punctuation ([] if the file is missing)."""
    if not path.is_file():
        return []
    quotations, block = [], []
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.strip() and len(line) - len(line.lstrip(" ")) >= _QUOTATION_INDENT:
                block.append(line.strip())
                continue
            if block:
                quotations.append(" ".join(block))
                block = []
    sentences = []
    for quotation in quotations:
        text = re.sub(r"\s*--\s*[A-Z][\w. ]*$", "", quotation)  # the author's name
        text = re.sub(r"\s+", " ", text.replace(". . .", " ")).strip()
        if _SPEAKABLE.fullmatch(text) and min_words <= len(text.split()) <= max_words:
            sentences.append(text)
    return list(dict.fromkeys(sentences))


def split_sentences(data_dir: Path, held_out_ids: set[str], templated: int, dev: int, test: int,
                    seed: int) -> dict[str, list[str]]:
    """Disjoint train/dev/test sentence lists. Test takes only templated sentences: the held-out
    prose is the LJ Speech test clips' own text, read by the held-out voices (see synthesize.py)."""
    rng = random.Random(seed)
    sentences, _ = prose(data_dir, held_out_ids)
    generated = list(dict.fromkeys(template_sentence(rng) for _ in range(templated)))
    rng.shuffle(sentences)
    rng.shuffle(generated)
    dev_prose = sentences[: dev // 2]
    return {
        "test": generated[:test],
        "dev": dev_prose + generated[test : test + dev - len(dev_prose)],
        "train": sentences[dev // 2 :] + generated[test + dev - len(dev_prose) :],
    }
