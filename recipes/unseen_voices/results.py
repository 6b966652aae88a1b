"""Stage 2 of the unseen-voices benchmark: RESULTS.md from each set's sweep results.

    python recipes/unseen_voices/results.py --out exp/unseen_voices --sets speechocean762_test,commonvoice \
        --command "recipes/unseen_voices/run.sh ..." > recipes/unseen_voices/RESULTS.md
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

from asr.evaluate import cpu_model, git_revision


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="exp/unseen_voices")
    parser.add_argument("--sets", required=True, help="comma-separated set names, as run.sh ran them")
    parser.add_argument("--command", required=True, help="the command that produced the results")
    parser.add_argument("--results", default="", help="each set's results lie in OUT/SET/RESULTS (default: OUT/SET)")
    parser.add_argument("--title", default="Unseen voices: results")
    args = parser.parse_args()
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    print(f"# {args.title}\n")
    print(f"Produced by `{args.command}` (written at git {git_revision() or 'unknown'}, {today}, "
          f"CPU: {cpu_model()}).")
    print("Every speaker here is one no model of this project was trained, tuned or calibrated on; the")
    print("noise is the test split of the noise bank. Intervals are 95 % bootstrap intervals over speakers;")
    print("a difference whose interval holds 0 is no difference. The files behind each table are in")
    print(f"`{Path(args.out) / '<set>' / args.results}`.\n")
    for name in args.sets.split(","):
        results = Path(args.out) / name / args.results / "results.md"
        print(f"## {name}\n")
        if not results.is_file():
            print(f"Not run: {results} is missing.\n")
            continue
        setup = json.loads((results.parent / "results.json").read_text()).get("setup", {})
        print(f"Manifest `{setup.get('manifest')}`; tables written at git {setup.get('git_revision') or 'unknown'}.\n")
        # The set's heading is the section; the sweep's own headings go one level down.
        for line in results.read_text().strip().splitlines():
            print("#" + line if line.startswith("## ") else line)
        print()


if __name__ == "__main__":
    main()
