#!/usr/bin/env bash
# The unseen-voices benchmark: WER of the default model, Whisper tiny.en imported unchanged and
# decoded as Whisper decodes, and faster-whisper (tiny.en int8, beam 5), side by side, on speakers
# never used in training, clean and under held-out noise, with 95 % bootstrap intervals by speaker.
#
#   recipes/unseen_voices/run.sh [--stage N] [--stop-stage N] [--data-dir DIR] [--out DIR]
#                                [--per-speaker N] [--snrs clean,20,10,5,0] [--kinds babble,music,street]
#                                [--sets speechocean762_test,commonvoice,librispeech_mini,speechbrain]
#                                [--precision-snrs 5] [--rule-snrs 5,0] [--window-snrs 5]
#                                [--candidate DIR] [--candidate-snrs 5,0]
#
# Stages: 0 test manifests (prepare.py); 1 each set through recipes/noisy_eval/run.sh (noisy audio,
# faster-whisper, our models, noise-only clips); 2 RESULTS.md from the sets' results; 3 the default
# model in each precision of the ONNX Runtime path (int8 against fp32, the default), clean and at
# --precision-snrs (default 5 dB) of each kind (PRECISION.md); 4 the decoder's no-speech rule
# (DecodingOptions.decoder_no_speech_threshold): the default on ONNX Runtime with and without it, and
# faster-whisper, clean, at --rule-snrs (default 5,0) of each kind and on the noise-only clips (NO_SPEECH_RULE.md).
# 5 the short window (DecodingOptions.short_pad_to_frames, not the default): the default on ONNX Runtime
# against itself with recordings under 9 s padded to 10 s instead of 30 s, and faster-whisper, clean,
# at --window-snrs (default 5) of each kind and on the noise-only clips (WINDOW.md).
# 6 a candidate for the default (a model folder, --candidate DIR) against the default, both on ONNX
# Runtime, with the unchanged tiny.en and faster-whisper, clean, at --candidate-snrs (default 5,0) of
# each kind and on the noise-only clips (CANDIDATE.md).
# Run from the repository root; see recipes/unseen_voices/README.md.
set -euo pipefail

stage=0
stop_stage=2
data_dir=${ASR_DATA_DIR:-../shared/data}
out=exp/unseen_voices
per_speaker=2
snrs=clean,20,10,5,0
kinds=babble,music,street
sets=speechocean762_test,commonvoice,librispeech_mini,speechbrain
clips_per_kind=10
precision_snrs=5
rule_snrs=5,0
window_snrs=5
candidate=
candidate_snrs=5,0

while [ $# -gt 0 ]; do
  case "$1" in
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    --data-dir) data_dir=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --per-speaker) per_speaker=$2; shift 2 ;;
    --snrs) snrs=$2; shift 2 ;;
    --kinds) kinds=$2; shift 2 ;;
    --sets) sets=$2; shift 2 ;;
    --clips-per-kind) clips_per_kind=$2; shift 2 ;;
    --precision-snrs) precision_snrs=$2; shift 2 ;;
    --rule-snrs) rule_snrs=$2; shift 2 ;;
    --window-snrs) window_snrs=$2; shift 2 ;;
    --candidate) candidate=$2; shift 2 ;;
    --candidate-snrs) candidate_snrs=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 1 ;;
  esac
done
run() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }
# Each of $conditions of the noisy folder $1 decoded by each of $systems (benchmarks/peers.py) into
# $2/raw/<condition>/, and the transcripts gathered as `asr eval-noise --hyp-dir $2/hyps` reads them.
decode_conditions() {
  for condition in $conditions; do
    python benchmarks/peers.py --manifest $1/$condition.jsonl --out $2/raw/$condition --systems $systems --threads 2 \
      ${candidate:+--candidate "$candidate"}
    for system in ${systems//,/ }; do
      mkdir -p $2/hyps/$system
      cp $2/raw/$condition/$system.jsonl $2/hyps/$system/$condition.jsonl
    done
  done
}
# "kind_snr" for each of $kinds at each SNR of the comma-separated $1.
noisy_conditions() {
  for k in ${kinds//,/ }; do for r in ${1//,/ }; do echo -n "${k}_$r "; done; done
}
# Per set: the same noisy audio as stage 1's (a mixture depends on the seed, utterance and kind
# alone), clean and at the SNRs $2 with $3 noise-only clips per kind, decoded by each of $systems
# under $out/<set>/$1 and scored there, paired by utterance.
paired_sets() {
  for set in ${sets//,/ }; do
    local dir=$out/$set/$1
    OMP_NUM_THREADS=2 asr eval-noise --manifest $manifests/$set.jsonl --noise-dir "$data_dir/noise" \
      --snrs clean,$2 --kinds $kinds --clips-per-kind $3 --out $dir --prepare-only
    decode_conditions $dir/noisy $dir
    asr eval-noise --manifest $manifests/$set.jsonl --noise-dir "$data_dir/noise" --snrs clean,$2 \
      --kinds $kinds --clips-per-kind $3 --out $dir --hyp-dir $dir/hyps
  done
}
# paired_sets $1 $2 $3, then the sets' tables under the title "Unseen voices: $5" as
# recipes/unseen_voices/$4, naming the stage's options $6 in its command.
compare() {
  paired_sets $1 $2 $3
  python recipes/unseen_voices/results.py --out "$out" --sets $sets --results $1 --title "Unseen voices: $5" \
    --command "recipes/unseen_voices/run.sh $6 --per-speaker $per_speaker --kinds $kinds --sets $sets" \
    > recipes/unseen_voices/$4
}
manifests=recipes/unseen_voices/data

if run 0; then
  python recipes/unseen_voices/prepare.py --data-dir "$data_dir" --out $manifests --per-speaker $per_speaker
fi
if run 1; then
  for set in ${sets//,/ }; do  # each set's sweep decodes the same noise-only clips (same seed)
    recipes/noisy_eval/run.sh --stage 0 --stop-stage 2 --data-dir "$data_dir" --manifest $manifests/$set.jsonl \
      --out "$out/$set" --peers faster-whisper-int8 --snrs $snrs --kinds $kinds --clips-per-kind $clips_per_kind --focus 0
  done
fi
if run 2; then
  python recipes/unseen_voices/results.py --out "$out" --sets $sets \
    --command "recipes/unseen_voices/run.sh --per-speaker $per_speaker --snrs $snrs --kinds $kinds --sets $sets" \
    > recipes/unseen_voices/RESULTS.md
fi
# The systems sort so that the default comes first: the others' differences are taken to it.
if run 3; then
  # (PyTorch fp32 gives what ONNX Runtime fp32 gives: PRECISION.md at d3193e5, and the parity tests.)
  systems=asr-onnx-fp32,asr-onnx-int8
  conditions="clean $(noisy_conditions $precision_snrs)"
  compare precision $precision_snrs 0 PRECISION.md "the default model in each precision and runtime" \
    "--stage 3 --stop-stage 3 --precision-snrs $precision_snrs"
fi
if run 4; then
  systems=asr-onnx-fp32,asr-onnx-fp32-without-decoder-gate,faster-whisper-int8
  conditions="clean noise_only $(noisy_conditions $rule_snrs)"
  compare no_speech_rule $rule_snrs $clips_per_kind NO_SPEECH_RULE.md "the decoder's no-speech rule" \
    "--stage 4 --stop-stage 4 --rule-snrs $rule_snrs"
fi
if run 5; then
  systems=asr-onnx-fp32,asr-onnx-fp32-10s-window,faster-whisper-int8
  conditions="clean noise_only $(noisy_conditions $window_snrs)"
  compare window $window_snrs $clips_per_kind WINDOW.md "recordings under 9 s decoded in a 10 s window" \
    "--stage 5 --stop-stage 5 --window-snrs $window_snrs"
fi
if run 6; then
  [ -n "$candidate" ] || { echo "stage 6 needs --candidate DIR" >&2; exit 1; }
  systems=asr-onnx-fp32,candidate-onnx-fp32,tiny.en-unchanged,faster-whisper-int8
  conditions="clean noise_only $(noisy_conditions $candidate_snrs)"
  compare candidate $candidate_snrs $clips_per_kind CANDIDATE.md "a candidate default ($candidate) against the default" \
    "--stage 6 --stop-stage 6 --candidate $candidate --candidate-snrs $candidate_snrs"
fi
