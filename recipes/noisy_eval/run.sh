#!/usr/bin/env bash
# Noise robustness of the default model against Whisper tiny.en and the peers: WER under held-out
# noise at six SNRs, words output on noise-only and silent clips, and where attention goes.
#
#   recipes/noisy_eval/run.sh [--stage N] [--stop-stage N] [--data-dir DIR] [--manifest M] [--out DIR]
#                             [--peers faster-whisper-int8,pocketsphinx] [--threads N] [--unchanged-tiny 0|1]
#                             [--snrs clean,20,10,5,0] [--kinds babble,music,street] [--clips-per-kind N]
#                             [--focus 0|1]
#
# Stages: 0 noisy test audio, 1 peers transcribe it (needs pip install -e ".[bench]"),
# 2 the sweep (our models + peers' hypotheses, with the attention-focus analysis),
# 3 results.md -> recipes/noisy_eval/RESULTS.md.
# Run from the repository root; see recipes/noisy_eval/README.md for what each number means.
set -euo pipefail

stage=0
stop_stage=3
data_dir=${ASR_DATA_DIR:-../shared/data}
manifest=recipes/whisper_ctc/data/test_heldout_mix.jsonl  # written by recipes/whisper_ctc/run.sh --stop-stage 0
out=exp/noisy_eval
snrs=clean,20,10,5,0
kinds=babble,music,street
peers=faster-whisper-int8,pocketsphinx
extra_models=      # more of our models, e.g. "--model base=exp/whisper_ctc_base/no_speech/model"
unchanged_tiny=1   # 0 leaves out Whisper tiny.en imported unchanged (asr import), decoded as Whisper does
tiny_dir=exp/whisper_ctc/whisper_tiny_en
clips_per_kind=10  # noise-only clips per noise kind, and as many silent ones
threads=2
focus=1            # 0 leaves out the attention-focus analysis (faster)

while [ $# -gt 0 ]; do
  case "$1" in
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    --data-dir) data_dir=$2; shift 2 ;;
    --manifest) manifest=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --peers) peers=$2; shift 2 ;;
    --extra-models) extra_models=$2; shift 2 ;;
    --clips-per-kind) clips_per_kind=$2; shift 2 ;;
    --snrs) snrs=$2; shift 2 ;;
    --kinds) kinds=$2; shift 2 ;;
    --focus) focus=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --unchanged-tiny) unchanged_tiny=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 1 ;;
  esac
done
run() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }
sweep=(--manifest "$manifest" --noise-dir "$data_dir/noise" --snrs $snrs --kinds $kinds --out "$out"
       --clips-per-kind $clips_per_kind)
# True when every peer has already transcribed exactly the utterances of manifest $1 (a rerun resumes).
transcribed() {
  python - "$1" "$out/hyps" ${peers//,/ } <<'PY'
import json, sys
from pathlib import Path
manifest, hyps, systems = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
ids = lambda path: {json.loads(line)["id"] for line in path.read_text().splitlines() if line.strip()}
wanted = ids(manifest)
done = all((hyps / s / manifest.name).is_file() and ids(hyps / s / manifest.name) == wanted for s in systems)
sys.exit(0 if done else 1)
PY
}

if run 0; then
  asr eval-noise "${sweep[@]}" --prepare-only
fi
if run 1; then
  # benchmarks/peers.py writes <dir>/<system>.jsonl per manifest; the sweep reads <system>/<condition>.jsonl.
  for m in "$out"/noisy/*.jsonl; do
    condition=$(basename "$m" .jsonl)
    transcribed "$m" && continue
    python benchmarks/peers.py --manifest "$m" --out "$out/peers/$condition" --systems $peers --threads $threads
    for system in ${peers//,/ }; do
      mkdir -p "$out/hyps/$system"
      cp "$out/peers/$condition/$system.jsonl" "$out/hyps/$system/$condition.jsonl"
    done
  done
fi
if run 2; then
  models=(--model whisper-tiny-ctc)
  if [ "$unchanged_tiny" != 0 ]; then
    [ -d $tiny_dir ] || asr import tiny.en $tiny_dir
    models+=(--model tiny.en-unchanged=$tiny_dir)
  fi
  hyps=()
  [ -d "$out/hyps" ] && hyps=(--hyp-dir "$out/hyps")
  OMP_NUM_THREADS=$threads asr eval-noise "${sweep[@]}" "${models[@]}" $extra_models \
    "${hyps[@]}" $([ "$focus" != 0 ] && echo --focus) --batch-size 4
fi
if run 3; then
  {
    echo "# Noisy evaluation: results"
    echo
    echo "Produced by \`recipes/noisy_eval/run.sh\` (git $(git rev-parse --short HEAD 2>/dev/null || echo unknown)," \
         "$(date -u +%Y-%m-%d)) on \`$manifest\`; the files behind these tables are in \`$out/\`."
    echo
    cat "$out/results.md"
  } > recipes/noisy_eval/RESULTS.md
fi
