"""How often the engine's codes equal the reference codes: per codebook, over real speech.

    .venv/bin/python benchmarks/code_agreement.py [--model dmcodec-mini] [--clips DIR] [--device cpu] [--json FILE]

Compares, on every clip of DIR (default: ../shared/data/speech beside the repository, else the test
fixtures), encoded whole:
  engine fp32  vs  model.encode (the model's own conv path, the reference arithmetic)
  engine bf16  vs  model.encode      (and engine fp16 on a GPU)
Prints the share of identical codes per codebook and over all frames, as a table and as JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_SPEECH = REPO.parent / "shared" / "data" / "speech"
FIXTURES = REPO / "tests" / "fixtures" / "speech"


def clips(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix in (".wav", ".flac"))


@torch.inference_mode()
def agreement(model_spec: str, folder: Path, device: str) -> list[dict]:
    from dmcodec_cli.audio import load_audio
    from dmcodec_cli.engine.encoder import BatchEncoder, EngineOptions
    from dmcodec_cli.registry import load_model

    model = load_model(model_spec, device)
    signals = [torch.from_numpy(load_audio(p, model.sample_rate).samples) for p in clips(folder)]
    reference = [model.encode(s.to(device).view(1, 1, -1))[:, 0].cpu() for s in signals]
    dtypes = ["fp32", "bf16"] + (["fp16"] if device.startswith("cuda") else [])
    rows = []
    for dtype in dtypes:
        codes = BatchEncoder(model, EngineOptions(dtype=dtype)).encode(signals)
        same = torch.cat([(a == b) for a, b in zip(codes, reference)], dim=1).float()  # [n_q, frames]
        rows.append({"engine": dtype, "vs": "model.encode fp32", "clips": len(signals), "frames": same.shape[1],
                     "identical_all": round(same.mean().item(), 5),
                     "identical_per_codebook": [round(v, 5) for v in same.mean(dim=1).tolist()]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="dmcodec-mini")
    parser.add_argument("--clips", type=Path, default=SHARED_SPEECH if SHARED_SPEECH.is_dir() else FIXTURES)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = agreement(args.model, args.clips, args.device)
    print(f"model {args.model}, {rows[0]['clips']} clips from {args.clips}, {rows[0]['frames']} frames, {args.device}")
    for r in rows:
        per = " ".join(f"{100 * v:.1f}" for v in r["identical_per_codebook"])
        print(f"engine {r['engine']:<5} vs model.encode fp32: {100 * r['identical_all']:.2f} % identical; "
              f"per codebook: {per}")
    print(json.dumps(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
