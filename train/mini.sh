#!/usr/bin/env bash
# How the bundled `dmcodec-mini` model was made: prep -> train (no teacher) -> export -> roundtrip on
# speakers it never heard.
#   train/mini.sh TRAIN_MINI_DIR SPEECH_DIR WORK_DIR
# TRAIN_MINI_DIR: the 56-minute train-mini corpus; SPEECH_DIR: the 51-clip speech set, of which the 13 clips
# of the 12 speakers absent from train-mini are the evaluation set. STEPS (default 20000) bounds the run.
# The bundled model is this run stopped at 2,260 steps, then continued by train/campaign.sh (the model card
# in README.md and docs/training.md say how far).
set -euo pipefail
CORPUS=${1:?train-mini folder}
SPEECH=${2:?speech folder}
WORK=${3:?work folder}
STEPS=${STEPS:-20000}

# 1. 3 s segments, 16 kHz mono FLAC, 3 % of the speakers held out for validation during training
dmcodec prep "$CORPUS" -o "$WORK/prep" --segment-seconds 3 --valid-fraction 0.03
# 2. no teacher: no HuBERT / ASR model can be had offline here, and too few segments keep a transcript
#    for the bundled all-MiniLM-L6-v2 LM teacher to matter (see the model card)
OMP_NUM_THREADS=2 dmcodec train --config train/configs/dmcodec_mini.json --data "$WORK/prep/manifest.jsonl" \
  -o "$WORK/run" --teacher none --max-steps "$STEPS" --device cpu
# 3. export the best generator (lowest validation mel error) in float16 without the EMA statistics
dmcodec convert "$WORK/run/best" -o dmcodec_cli/models/dmcodec-mini --fp16 --inference-only
# 4. quality at 1, 2, 4 and 8 codebooks on the unseen speakers
mkdir -p "$WORK/eval"
for clip in "$SPEECH"/librispeech_train-clean-100_* "$SPEECH"/librispeech_dev-clean_2412-* "$SPEECH"/cmu_arctic_*; do
  cp "$clip" "$WORK/eval/"
done
dmcodec roundtrip "$WORK/eval" --model dmcodec-mini --n-q 1,2,4,8 -o "$WORK/roundtrip" \
  --json-file "$WORK/roundtrip.json" --summary-only
