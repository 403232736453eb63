#!/usr/bin/env bash
# prep -> extract -> train -> roundtrip, the whole DM-Codec recipe on one corpus.
#   train/pipeline.sh CORPUS_DIR WORK_DIR [RECIPE]        (RECIPE default: train/configs/dmcodec_combined.json)
# Environment: SM, STT, LM (teacher models), GPUS (processes; default 1), EXTRA (more `dmcodec train` options).
set -euo pipefail
CORPUS=${1:?corpus folder (audio files + transcripts.tsv / manifest.tsv)}
WORK=${2:?work folder}
RECIPE=${3:-train/configs/dmcodec_combined.json}
SM=${SM:-facebook/hubert-base-ls960}
STT=${STT:-facebook/wav2vec2-base-960h}
LM=${LM:-bert-base-uncased}
GPUS=${GPUS:-1}

# 1. 3 s segments at 16 kHz with a train / valid split
dmcodec prep "$CORPUS" -o "$WORK/prep" --segment-seconds 3
# 2. teacher features at 50 Hz: HuBERT (avg of layers) and BERT (avg of layers, tokens padded to the frames);
#    segments without a known text are transcribed by the CTC model first
dmcodec extract "$WORK/prep/manifest.jsonl" -o "$WORK/features.h5" --sm "$SM" --stt "$STT" --lm "$LM"
# 3. train (one process per GPU; add --resume to continue an interrupted run)
if [ "$GPUS" -gt 1 ]; then
  LAUNCH=(accelerate launch --multi_gpu --num_processes "$GPUS" -m dmcodec_cli)
else
  LAUNCH=(dmcodec)
fi
"${LAUNCH[@]}" train --config "$RECIPE" --data "$WORK/prep/manifest.jsonl" --features "$WORK/features.h5" \
  -o "$WORK/exp" ${EXTRA:-}
# 4. roundtrip a validation segment through the best model
CLIP=$(python -c "import json,sys; print(next(json.loads(l)['path'] for l in open(sys.argv[1]) if json.loads(l)['split']=='valid'))" "$WORK/prep/manifest.jsonl")
MODEL="$WORK/exp/best"; [ -d "$MODEL" ] || MODEL="$WORK/exp/last"
dmcodec encode "$WORK/prep/$CLIP" -o "$WORK/roundtrip.npy" --model "$MODEL"
dmcodec decode "$WORK/roundtrip.npy" -o "$WORK/roundtrip.wav" --model "$MODEL"
echo "model: $MODEL; listen to $WORK/roundtrip.wav"
