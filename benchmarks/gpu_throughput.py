"""The engine on a GPU: audio-hours per GPU-hour, peak GPU memory, and codes against the CPU's fp32 codes.

    .venv/bin/python benchmarks/gpu_throughput.py [--clips DIR] [--corpus-seconds 600] [--device cuda]
                          [--dtypes fp32,bf16] [--forms modules,time-major] [--cpu-threads N] [--json FILE]

One short command (a few minutes at most). Without CUDA it says so in one line and exits 0.

Full-size DM-Codec config with random weights and codebooks drawn from its own latents of the corpus (as
k-means starts: every code is used, so that agreement means something). The corpus: real 3-20 s clips from
--clips, repeated to --corpus-seconds. First the CPU engine (``CPU_PLAN``, fp32) encodes it: the reference
codes. Then on the GPU, for each conv form of the GPU plan (``modules``: the model's convs, cuDNN;
``time-major``: the CPU's matrix products over whole signals) and each dtype:
  encode   ``BatchEncoder`` over the corpus (after a warm-up): audio-hours per GPU-hour (wall clock, codes
           back on the host), peak GPU memory (``torch.cuda.max_memory_allocated``), the fraction of codes
           equal to the CPU's (all codebooks, the first, and whole frames), and of codes equal between the
           batched run and each utterance encoded alone (batch == alone)
  decode   ``BatchDecoder`` of the CPU's codes: audio-hours per GPU-hour, peak memory, and the largest
           difference from the CPU engine's decoding of the same codes (fp32)
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

from corpus_throughput import SPEECH, TRAIN_MINI, audio_clips

RATE = 16000


def say_no_cuda(device: str) -> bool:
    """One line and True when ``device`` cannot be used."""
    import torch

    if not torch.cuda.is_available():
        print(f"no CUDA device on this machine (torch {torch.__version__}): nothing measured")
        return True
    if torch.device(device).type != "cuda":
        print(f"--device {device} is not a CUDA device: nothing measured")
        return True
    return False


def corpus(clips: Path, seconds: float) -> list:
    """Real 3-20 s clips as float32 tensors [L], repeated until they hold ``seconds`` of audio."""
    import torch

    from dmcodec_cli.audio import load_audio

    chosen = [torch.from_numpy(load_audio(p, RATE).samples) for p in audio_clips(clips)]
    chosen = [s for s in chosen if 3 * RATE <= len(s) <= 20 * RATE] or chosen
    signals, total = [], 0
    while total < seconds * RATE:
        signal = chosen[len(signals) % len(chosen)]
        signals.append(signal)
        total += len(signal)
    return signals


def full_size_codec(signals: list):
    """Full-size model, random weights (seeded), each codebook drawn from the residuals of its latents."""
    import torch

    from dmcodec_cli.config import CodecConfig
    from dmcodec_cli.model import DMCodec
    from dmcodec_cli.quantizer import nearest_code, sample_vectors

    torch.manual_seed(0)
    model = DMCodec(CodecConfig()).eval().fold_weight_norm()
    with torch.inference_mode():
        residual = torch.cat([model.encoder(s.view(1, 1, -1))[0].t() for s in signals[:8]])  # [frames, D]
        for layer in model.quantizer.vq.layers:
            embed = sample_vectors(residual, layer._codebook.codebook_size, torch.Generator().manual_seed(1))
            layer._codebook.embed.copy_(embed)
            layer._codebook.inited.fill_(1)
            residual = residual - embed[nearest_code(residual, embed)]
    return model


def agreement(got: list, want: list) -> dict:
    """Fractions of equal codes between code lists [n_q, T_i]: all codes, the first codebook, whole frames."""
    import torch

    a, b = torch.cat(got, dim=1), torch.cat(want, dim=1)
    equal = a == b
    return {"codes": round(equal.float().mean().item(), 5), "first_codebook": round(equal[0].float().mean().item(), 5),
            "frames": round(equal.all(0).float().mean().item(), 5)}


def timed(device, work):
    """(result, wall seconds, peak GPU bytes) of ``work()``, the GPU idle before and after."""
    import torch

    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    result = work()
    torch.cuda.synchronize(device)
    return result, time.perf_counter() - start, torch.cuda.max_memory_allocated(device)


def measure(model, signals: list, reference: list, reference_audio: list, device, form: str, dtype: str) -> dict:
    """Encode and decode the corpus on the GPU with one plan and dtype (see the module's docstring)."""
    from dmcodec_cli.engine.decoder import BatchDecoder
    from dmcodec_cli.engine.encoder import BatchEncoder, EngineOptions
    from dmcodec_cli.engine.plan import CUDA_PLAN

    plan = dataclasses.replace(CUDA_PLAN, conv_form=form)
    encoder = BatchEncoder(model, EngineOptions(dtype=dtype), plan)
    encoder.encode(signals[:2])  # warm-up: cuDNN's and cuBLAS's handles, the allocator's first blocks
    codes, seconds, peak = timed(device, lambda: encoder.encode(signals))
    hours = sum(len(s) for s in signals) / RATE / 3600
    alone = [encoder.encode([s])[0] for s in signals[:16]]
    row = {"form": form, "dtype": dtype, "encode_audio_hours_per_gpu_hour": round(hours / (seconds / 3600), 1),
           "encode_seconds": round(seconds, 3), "encode_peak_gpu_mb": round(peak / 2**20, 1),
           "codes_equal_to_cpu_fp32": agreement(codes, reference),
           "batch_equal_to_alone": agreement(alone, codes[:16])}
    if dtype == "fp32":
        decoder = BatchDecoder(model, plan=plan)
        decoder.decode(reference[:2])
        audio, seconds, peak = timed(device, lambda: decoder.decode(reference))
        worst = max((a - b).abs().max().item() for a, b in zip(audio, reference_audio))
        row.update({"decode_audio_hours_per_gpu_hour": round(hours / (seconds / 3600), 1),
                    "decode_seconds": round(seconds, 3), "decode_peak_gpu_mb": round(peak / 2**20, 1),
                    "decode_max_diff_from_cpu": worst})
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=Path, default=TRAIN_MINI if TRAIN_MINI.is_dir() else SPEECH,
                        help="folder of .wav / .flac clips (default: train-mini beside the repository, else the "
                             "test fixtures)")
    parser.add_argument("--corpus-seconds", type=float, default=600.0)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtypes", default="fp32,bf16")
    parser.add_argument("--forms", default="modules,time-major")
    parser.add_argument("--cpu-threads", type=int, default=os.cpu_count(), help="for the CPU's reference codes")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if say_no_cuda(args.device):
        sys.exit(0)

    import torch

    from dmcodec_cli.engine.decoder import BatchDecoder
    from dmcodec_cli.engine.encoder import BatchEncoder

    torch.set_num_threads(args.cpu_threads)
    device = torch.device(args.device)
    signals = corpus(args.clips, args.corpus_seconds)
    model = full_size_codec(signals)
    start = time.perf_counter()
    reference = BatchEncoder(model).encode(signals)  # the CPU engine, fp32: the store's reference codes
    reference_audio = BatchDecoder(model).decode(reference)
    cpu_seconds = time.perf_counter() - start
    gpu_model = copy.deepcopy(model).to(device)
    print(f"{torch.cuda.get_device_name(device)}; torch {torch.__version__}; corpus {len(signals)} utterances, "
          f"{sum(len(s) for s in signals) / RATE:.0f} s; CPU reference (encode and decode, {args.cpu_threads} "
          f"threads) {cpu_seconds:.1f} s", flush=True)
    rows = []
    for form in args.forms.split(","):
        for dtype in args.dtypes.split(","):
            rows.append(measure(gpu_model, signals, reference, reference_audio, device, form, dtype))
            torch.cuda.empty_cache()  # the engine's weight copies and buffers of this plan go
            print(json.dumps(rows[-1]), flush=True)
    print(f"\n{'form':<12}{'dtype':<6}{'enc h/GPU-h':>12}{'peak MB':>9}{'= CPU codes':>12}{'= alone':>9}"
          f"{'dec h/GPU-h':>12}{'peak MB':>9}{'max diff':>10}")
    for r in rows:
        decode = (f"{r['decode_audio_hours_per_gpu_hour']:>12}{r['decode_peak_gpu_mb']:>9}"
                  f"{r['decode_max_diff_from_cpu']:>10.1e}" if "decode_seconds" in r else "")
        print(f"{r['form']:<12}{r['dtype']:<6}{r['encode_audio_hours_per_gpu_hour']:>12}{r['encode_peak_gpu_mb']:>9}"
              f"{r['codes_equal_to_cpu_fp32']['codes']:>12.2%}{r['batch_equal_to_alone']['codes']:>9.2%}{decode}")
    if args.json:
        args.json.write_text(json.dumps({"device": torch.cuda.get_device_name(device), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
