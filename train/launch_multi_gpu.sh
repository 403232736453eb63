#!/usr/bin/env bash
# Multi-GPU / multi-node training with accelerate (one process per GPU; --batch-size is per process).
#   One node, 4 GPUs:     GPUS=4 train/launch_multi_gpu.sh --config C --data M --features F -o EXP
#   Two nodes of 8 GPUs:  on each node, with NODE_RANK=0|1 and MASTER=ip-of-node-0:
#     NODES=2 NODE_RANK=0 MASTER=10.0.0.1 GPUS=16 train/launch_multi_gpu.sh --config C ...
# bf16 autocast: add a recipe key "mixed_precision": "bf16" under "extra".
set -euo pipefail
GPUS=${GPUS:-$(nvidia-smi -L | wc -l)}
NODES=${NODES:-1}
ARGS=(--multi_gpu --num_processes "$GPUS" --num_machines "$NODES")
if [ "$NODES" -gt 1 ]; then
  ARGS+=(--machine_rank "${NODE_RANK:?}" --main_process_ip "${MASTER:?}" --main_process_port "${PORT:-29500}")
fi
exec accelerate launch "${ARGS[@]}" -m dmcodec_cli train "$@"
