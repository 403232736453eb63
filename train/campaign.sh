#!/usr/bin/env bash
# The dmcodec-mini training campaign: a long CPU run that survives interruptions.
#   train/campaign.sh TRAIN_MINI_DIR SPEECH_DIR          (run it under nohup; see docs/training.md)
# State lives outside the work tree, in $CAMPAIGN (default ~/.cache/dmcodec/campaign-mini): the prepared
# segments, the run folder (RUN) and CURVE (default RUN.curve.jsonl; one line per chunk: step, seconds, validation
# mel error, STOI / PESQ-wb / SI-SDR / mel distance / ViSQOL of `last/` on the 13 unseen-speaker clips at 8
# codebooks).
# A trial is another RUN, RECIPE and CURVE beside the main run, e.g. started from the main run's `last/`:
#   RUN=$CAMPAIGN/trial-x RECIPE=... INIT=$CAMPAIGN/run-export CURVE=$CAMPAIGN/trial-x.curve.jsonl STEPS=N
# Each chunk trains CHUNK steps with --resume, then evaluates. Without a run folder (a new machine) the run
# starts from INIT (default: the bundled dmcodec-mini, the last committed export). `touch $CAMPAIGN/STOP`
# ends the campaign after the current chunk; a kill loses at most the steps since the last checkpoint.
set -euo pipefail
CORPUS=${1:?train-mini folder}
SPEECH=${2:?speech folder}
CAMPAIGN=${CAMPAIGN:-$HOME/.cache/dmcodec/campaign-mini}
RECIPE=${RECIPE:-train/configs/mini_campaign_recon100.json}
RUN=${RUN:-$CAMPAIGN/run-recon100}
INIT=${INIT:-dmcodec_cli/models/dmcodec-mini}
CHUNK=${CHUNK:-500}
STEPS=${STEPS:-200000}
CURVE=${CURVE:-$RUN.curve.jsonl}
DMCODEC=${DMCODEC:-dmcodec}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$CAMPAIGN"

# The evaluation set: the 13 clips of the 12 speakers of SPEECH absent from train-mini. Never trained on.
is_eval() { case "$(basename "$1")" in librispeech_train-clean-100_*|librispeech_dev-clean_2412-*|cmu_arctic_*) return 0;; esac; return 1; }
if [ ! -d "$CAMPAIGN/eval" ]; then
  mkdir -p "$CAMPAIGN/eval.tmp" "$CAMPAIGN/extra.tmp"
  for clip in "$SPEECH"/*.flac "$SPEECH"/*.wav; do
    if is_eval "$clip"; then cp "$clip" "$CAMPAIGN/eval.tmp/"; else cp "$clip" "$CAMPAIGN/extra.tmp/"; fi
  done
  mv "$CAMPAIGN/extra.tmp" "$CAMPAIGN/extra" && mv "$CAMPAIGN/eval.tmp" "$CAMPAIGN/eval"
fi
# Training data: train-mini plus the other speech clips (speakers of train-mini), 3 s segments.
if [ ! -f "$CAMPAIGN/prep/manifest.jsonl" ]; then
  rm -rf "$CAMPAIGN/prep"
  $DMCODEC prep "$CORPUS" "$CAMPAIGN/extra" -o "$CAMPAIGN/prep" --segment-seconds 3 --valid-fraction 0.03
fi

last_step() { ls "$RUN/checkpoints" 2>/dev/null | sed -n 's/^step-0*\([0-9][0-9]*\)$/\1/p' | sort -n | tail -1 || true; }

while [ ! -e "$CAMPAIGN/STOP" ]; do
  step=$(last_step); step=${step:-0}
  [ "$step" -ge "$STEPS" ] && break
  target=$(( (step / CHUNK + 1) * CHUNK ))
  start=$(date +%s)
  # a run started from a model resumes with the same --init (recorded beside it: INIT may change later)
  [ -f "$RUN/run.json" ] && resume=--resume || { resume=; mkdir -p "$RUN"; echo "$INIT" > "$RUN.init"; }
  nice -n 19 $DMCODEC train --config "$RECIPE" --data "$CAMPAIGN/prep/manifest.jsonl" -o "$RUN" --teacher none \
    --init "$(cat "$RUN.init")" $resume --max-steps "$target" --device cpu --quiet
  seconds=$(( $(date +%s) - start ))
  nice -n 19 $DMCODEC roundtrip "$CAMPAIGN/eval" --model "$RUN/last" --n-q 8 --summary-only \
    --skip dnsmos,speaker --jobs 1 --json-file "$RUN.eval-$target.json" >/dev/null
  if [ -d "$RUN/ema" ]; then  # the recipe keeps a moving average of the weights (ema_decay): score it too
    nice -n 19 $DMCODEC roundtrip "$CAMPAIGN/eval" --model "$RUN/ema" --n-q 8 --summary-only \
      --skip dnsmos,speaker --jobs 1 --json-file "$RUN.eval-ema-$target.json" >/dev/null
  fi
  python3 - "$RUN" "$CURVE" "$target" "$seconds" <<'EOF'
import json, os, sys
run, curve, step, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
valid = [r for r in map(json.loads, open(f"{run}/metrics.jsonl")) if r.get("split") == "valid" and r["step"] <= step]
row = {"step": step, "chunk_seconds": seconds, "valid_mel_error": valid[-1]["mel_error"] if valid else None}
metrics = ("stoi", "pesq_wb", "si_sdr", "mel_distance", "visqol")
for prefix, name in (("", f"{run}.eval-{step}.json"), ("ema_", f"{run}.eval-ema-{step}.json")):
    if not os.path.isfile(name):
        continue
    summary = json.load(open(name))["summary"]
    summary = summary.get("8", summary)  # roundtrip summaries are per --n-q; files written before were pooled
    row.update({prefix + k: summary[k]["mean"] for k in metrics if k in summary})
if valid and "ema_mel_error" in valid[-1]:
    row["ema_valid_mel_error"] = valid[-1]["ema_mel_error"]
with open(curve, "a") as f:
    f.write(json.dumps(row) + "\n")
print(json.dumps(row))
EOF
done
