#!/usr/bin/env bash
# lambda_SM / lambda_LM sweep and RVQ-layer ablations on one feature file.
#   train/sweep.sh WORK_DIR [PATTERN]   (PATTERN: a glob over train/configs, default "sweep_*")
set -euo pipefail
WORK=${1:?work folder holding prep/manifest.jsonl and features.h5}
for RECIPE in train/configs/${2:-sweep_*}.json; do
  NAME=$(basename "$RECIPE" .json)
  dmcodec train --config "$RECIPE" --data "$WORK/prep/manifest.jsonl" --features "$WORK/features.h5" \
    -o "$WORK/exp-$NAME" --resume
done
