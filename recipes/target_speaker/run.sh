#!/usr/bin/env bash
# Target-speaker recognition on speakers never used in training: the default model without
# enrollment, with the target enrolled, and with the other talker enrolled instead, beside
# faster-whisper (tiny.en int8, beam 5), with 95 % bootstrap intervals over target speakers.
#
#   recipes/target_speaker/run.sh [--stage N] [--stop-stage N] [--data-dir DIR] [--out DIR] [--speakers N]
#
# Stages: 0 test mixtures (prepare.py); 1 faster-whisper transcribes them (benchmarks/peers.py, needs
# pip install -e ".[bench]"); 2 the default model decodes them three ways and measures attention
# (evaluate.py; about 25 minutes on 2 cores); 3 RESULTS.md (results.py).
# Run from the repository root; see recipes/target_speaker/README.md.
set -euo pipefail

stage=0
stop_stage=3
data_dir=${ASR_DATA_DIR:-../shared/data}
out=exp/target_speaker
speakers=0
threads=2

while [ $# -gt 0 ]; do
  case "$1" in
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    --data-dir) data_dir=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --speakers) speakers=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 1 ;;
  esac
done
run() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }
recipe=recipes/target_speaker
conditions=clean,two_talker_5,two_talker_0,three_talker_0,crowd_5,target_absent

if run 0; then
  python $recipe/prepare.py --data-dir "$data_dir" --out "$out" --speakers $speakers
fi
if run 1; then
  for condition in ${conditions//,/ }; do
    python benchmarks/peers.py --manifest "$out/$condition.jsonl" --out "$out/peers/$condition" \
      --systems faster-whisper-int8 --threads $threads
  done
fi
if run 2; then
  python $recipe/evaluate.py --data "$out" --out "$out/hyps" --conditions $conditions --threads $threads
fi
if run 3; then
  python $recipe/results.py --data "$out" \
    --command "recipes/target_speaker/run.sh --speakers $speakers" > $recipe/RESULTS.md
fi
