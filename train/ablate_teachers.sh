#!/usr/bin/env bash
# Teacher ablation: {BERT, ELECTRA} x {HuBERT, wav2vec 2.0}, same training recipe, one feature file each.
#   train/ablate_teachers.sh WORK_DIR   (WORK_DIR/prep from train/pipeline.sh step 1)
set -euo pipefail
WORK=${1:?work folder holding prep/manifest.jsonl}
STT=${STT:-facebook/wav2vec2-base-960h}
for LM in bert-base-uncased google/electra-base-discriminator; do
  for SM in facebook/hubert-base-ls960 facebook/wav2vec2-base-960h; do
    NAME="$(basename "$LM")__$(basename "$SM")"
    dmcodec extract "$WORK/prep/manifest.jsonl" -o "$WORK/features-$NAME.h5" --sm "$SM" --stt "$STT" --lm "$LM"
    dmcodec train --config train/configs/ablate_teachers.json --data "$WORK/prep/manifest.jsonl" \
      --features "$WORK/features-$NAME.h5" -o "$WORK/exp-teachers-$NAME" --resume
  done
done
