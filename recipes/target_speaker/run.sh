#!/usr/bin/env bash
# Target-speaker recognition on speakers never used in training: the default model without
# enrollment, with the target enrolled, and with the other talker enrolled instead, beside
# the unchanged tiny.en (decoded as Whisper decodes) and faster-whisper (tiny.en int8, beam 5), with
# 95 % bootstrap intervals over target speakers.
#
#   recipes/target_speaker/run.sh [--stage N] [--stop-stage N] [--data-dir DIR] [--out DIR] [--speakers N]
#                                 [--split test|dev] [--model DIR] [--hyps DIR] [--previous DIR]
#
# Stages: 0 test mixtures (prepare.py); 1 the unchanged tiny.en and faster-whisper transcribe them (benchmarks/peers.py, needs
# pip install -e ".[bench]"); 2 the default model decodes them three ways and measures attention
# (evaluate.py; about 25 minutes on 2 cores); 3 RESULTS.md (results.py).
# --split dev runs it on the development speakers instead (six targets each, no crowd) and writes
# DEV_RESULTS.md: where a model or setting is chosen, never on the test speakers. --model decodes
# with a candidate model folder into --hyps; --previous (the hypotheses of the model it would
# replace) adds their paired difference with the target enrolled.
# Run from the repository root; see recipes/target_speaker/README.md.
set -euo pipefail

stage=0
stop_stage=3
data_dir=${ASR_DATA_DIR:-../shared/data}
out=
speakers=0
split=test
model=whisper-tiny-ctc
hyps=
previous=
threads=2

while [ $# -gt 0 ]; do
  case "$1" in
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    --data-dir) data_dir=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --speakers) speakers=$2; shift 2 ;;
    --split) split=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --hyps) hyps=$2; shift 2 ;;
    --previous) previous=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 1 ;;
  esac
done
run() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }
recipe=recipes/target_speaker
if [ "$split" = dev ]; then
  out=${out:-exp/target_speaker_dev}
  conditions=clean,two_talker_5,two_talker_0,three_talker_0,target_absent
  targets=6
  results=DEV_RESULTS.md
else
  out=${out:-exp/target_speaker}
  conditions=clean,two_talker_5,two_talker_0,three_talker_0,crowd_5,target_absent
  targets=1
  results=RESULTS.md
fi
hyps=${hyps:-$out/hyps}

if run 0; then
  python $recipe/prepare.py --data-dir "$data_dir" --out "$out" --split $split --speakers $speakers \
    --targets-per-speaker $targets --conditions $conditions
fi
if run 1; then
  for condition in ${conditions//,/ }; do
    python benchmarks/peers.py --manifest "$out/$condition.jsonl" --out "$out/peers/$condition" \
      --systems tiny.en-unchanged,faster-whisper-int8 --threads $threads
  done
fi
if run 2; then
  python $recipe/evaluate.py --data "$out" --out "$hyps" --model "$model" --conditions $conditions \
    --threads $threads
fi
if run 3; then
  python $recipe/results.py --data "$out" --hyps "$hyps" --split $split ${previous:+--previous "$previous"} \
    --command "recipes/target_speaker/run.sh --split $split --speakers $speakers --model $model${previous:+ --previous $previous}" \
    > $recipe/$results
fi
