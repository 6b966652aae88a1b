#!/usr/bin/env bash
# Common Voice (one language): download -> manifests -> noisy test sets -> train -> evaluate.
#
#   ./run.sh --cv-url URL [--cv-sha256 HEX] [--lang en] [--stage N] [--stop-stage N] ...
#   ./run.sh --release-dir /data/cv-corpus-17.0-2024-03-15/en --stage 1     # already on disk
#
# Every variable below can be set as an option: --stop-stage 1 sets stop_stage=1.
# Stages: 0 download, 1 manifests, 2 noisy test sets, 3 train, 4 average + evaluate.
set -euo pipefail
cd "$(dirname "$0")"

stage=0
stop_stage=4
lang=en
cv_url=            # the release archive link (Common Voice hands it out after you accept its terms)
cv_sha256=         # its checksum if the download page gives one; otherwise one is recorded at first download
corpus_dir=corpus  # the archive goes to $corpus_dir/archives and unpacks to $corpus_dir/cv-corpus-*/$lang
release_dir=       # the language folder (clips/, train.tsv, ...); default: found under $corpus_dir
data_dir=${ASR_DATA_DIR:-$(cd ../.. && pwd)/../shared/data}  # the project's noise and RIR collections
snrs="0 5 10"      # dB, measured on active speech; one noisy copy of the test set per value
config=conf/train_transformer.yaml
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

exp_dir=$(python -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["exp_dir"])' "$config")

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  if [ -z "$cv_url" ]; then
    echo "stage 0 needs --cv-url: the download link of a Common Voice release for '$lang'" >&2
    echo "(or put the release on disk and start at --stage 1 with --release-dir)" >&2
    exit 1
  fi
  echo "stage 0: download and unpack $cv_url"
  python -m asr.data.corpora download "$cv_url" ${cv_sha256:+--sha256 "$cv_sha256"} \
    --dir "$corpus_dir/archives" --extract-to "$corpus_dir"
fi

if [ -z "$release_dir" ]; then
  release_dir=$(ls -d "$corpus_dir"/cv-corpus-*/"$lang" 2>/dev/null | sort | tail -n 1 || true)
fi

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  if [ ! -f "$release_dir/train.tsv" ]; then
    echo "no Common Voice release for '$lang' at '${release_dir:-$corpus_dir/cv-corpus-*/$lang}'; set --release-dir" >&2
    exit 1
  fi
  echo "stage 1: manifests in data/ from $release_dir"
  mkdir -p data
  for split in train dev test; do
    python -m asr.data.corpora commonvoice "data/$split.jsonl" "$release_dir" "$split"
  done
  # Noise and impulse responses come from the shared data, which asr.data.noise splits into
  # training and held-out recordings; the links keep the config free of machine-specific paths.
  ln -sfn "$(cd "$data_dir" && pwd)/noise/manifest.jsonl" data/noise.jsonl
  ln -sfn "$(cd "$data_dir" && pwd)/rir/manifest.jsonl" data/rir.jsonl
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  echo "stage 2: noisy copies of the test set at $snrs dB with held-out noise"
  for snr in $snrs; do
    python -m asr.data.corpora noisy "data/test_snr$snr.jsonl" data/test.jsonl \
      --noise data/noise.jsonl --snr "$snr" --audio-dir "$corpus_dir/noisy/test_snr$snr" --seed 0
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
  for name in test $(for snr in $snrs; do echo "test_snr$snr"; done); do
    asr eval --model "$model" --manifest "data/$name.jsonl" --out "$exp_dir/eval/$name"
  done
fi
