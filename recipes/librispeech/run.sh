#!/usr/bin/env bash
# LibriSpeech: download -> manifests -> noisy test sets -> train -> evaluate.
#
#   ./run.sh [--stage N] [--stop-stage N] [--subset mini|100|960] [--corpus-dir DIR] ...
#
# Every variable below can be set as an option: --stop-stage 1 sets stop_stage=1.
# Stages: 0 download, 1 manifests, 2 noisy test sets, 3 train, 4 average + evaluate.
set -euo pipefail
cd "$(dirname "$0")"

stage=0
stop_stage=4
subset=mini        # mini: train-clean-5 (5 h, openslr 31) | 100: train-clean-100 | 960: all of openslr 12
corpus_dir=corpus  # archives go to $corpus_dir/archives, LibriSpeech unpacks to $corpus_dir/LibriSpeech
mirror=            # e.g. https://openslr.trmal.net/resources when www.openslr.org is slow
data_dir=${ASR_DATA_DIR:-$(cd ../.. && pwd)/../shared/data}  # the project's noise and RIR collections
snrs="0 5 10"      # dB, measured on active speech; one noisy copy of each test set per value
config=            # default: conf/train_transformer_mini.yaml, _.yaml or _large.yaml by subset
ngpu=1             # more than 1 trains with DistributedDataParallel through torchrun
average_num=5      # checkpoints averaged into the model that is evaluated

while [ $# -gt 0 ]; do
  case "$1" in
    --*=*) echo "use '--name value', not '$1'" >&2; exit 1 ;;
    --*)
      name=${1#--}; name=${name//-/_}
      if [ -z "${!name+set}" ] || [ $# -lt 2 ]; then echo "unknown option or missing value: $1" >&2; exit 1; fi
      printf -v "$name" '%s' "$2"; shift 2 ;;
    *) echo "unexpected argument: $1" >&2; exit 1 ;;
  esac
done

case "$subset" in
  mini) train_sets="train-clean-5"; dev_sets="dev-clean-2"; test_sets="test-clean"
        config=${config:-conf/train_transformer_mini.yaml} ;;
  100)  train_sets="train-clean-100"; dev_sets="dev-clean"; test_sets="test-clean test-other"
        config=${config:-conf/train_transformer.yaml} ;;
  960)  train_sets="train-clean-100 train-clean-360 train-other-500"; dev_sets="dev-clean dev-other"
        test_sets="test-clean test-other"; config=${config:-conf/train_transformer_large.yaml} ;;
  *) echo "--subset must be mini, 100 or 960" >&2; exit 1 ;;
esac
subset_dirs() { for s in "$@"; do echo "$corpus_dir/LibriSpeech/$s"; done; }
exp_dir=$(python -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["exp_dir"])' "$config")

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  echo "stage 0: download $train_sets $dev_sets $test_sets (md5-checked, resumable)"
  python -m asr.data.corpora download $train_sets $dev_sets $test_sets \
    --dir "$corpus_dir/archives" --extract-to "$corpus_dir" ${mirror:+--mirror "$mirror"}
fi

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  echo "stage 1: manifests in data/"
  mkdir -p data
  python -m asr.data.corpora librispeech data/train.jsonl $(subset_dirs $train_sets)
  python -m asr.data.corpora librispeech data/dev.jsonl $(subset_dirs $dev_sets)
  for t in $test_sets; do
    python -m asr.data.corpora librispeech "data/${t//-/_}.jsonl" $(subset_dirs "$t")
  done
  # Noise and impulse responses come from the shared data, which asr.data.noise splits into
  # training and held-out recordings; the links keep the configs free of machine-specific paths.
  ln -sfn "$(cd "$data_dir" && pwd)/noise/manifest.jsonl" data/noise.jsonl
  ln -sfn "$(cd "$data_dir" && pwd)/rir/manifest.jsonl" data/rir.jsonl
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  echo "stage 2: noisy copies of the test sets at $snrs dB with held-out noise"
  for t in $test_sets; do
    for snr in $snrs; do
      name="${t//-/_}_snr$snr"
      python -m asr.data.corpora noisy "data/$name.jsonl" "data/${t//-/_}.jsonl" \
        --noise data/noise.jsonl --snr "$snr" --audio-dir "$corpus_dir/noisy/$name" --seed 0
    done
  done
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  echo "stage 3: train $config -> $exp_dir"
  if [ "$ngpu" -gt 1 ]; then
    torchrun --standalone --nproc_per_node "$ngpu" -m asr.cli train "$config" --resume
  else
    asr train "$config" --resume
  fi
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  model=$(asr average "$exp_dir" --num "$average_num")
  echo "stage 4: evaluate $model"
  for t in $test_sets; do
    for name in "${t//-/_}" $(for snr in $snrs; do echo "${t//-/_}_snr$snr"; done); do
      asr eval --model "$model" --manifest "data/$name.jsonl" --out "$exp_dir/eval/$name"
    done
  done
fi
