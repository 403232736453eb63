"""The device plan (``engine.plan``): which plan a device gets, as data, and the GPU plan's arithmetic (the
model's own convs over whole signals, more LSTM slots, calls from one start to the next) run on the CPU:
codes equal ``model.encode``, batch equal to alone, decoding within 1e-4 of ``model.decode``. No GPU needed."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from conftest import SPEECH, golden
from dmcodec_cli.audio import load_audio
from dmcodec_cli.engine.decoder import BatchDecoder
from dmcodec_cli.engine.device import exact_convs, to_device, to_host
from dmcodec_cli.engine.encoder import BatchEncoder, EngineOptions
from dmcodec_cli.engine.plan import CPU_PLAN, CUDA_PLAN, DevicePlan

INPUTS = ["a", "b", "c", "len1", "len320", "len321", "len700"]


def test_each_device_gets_its_plan():
    for device in ("cpu", torch.device("cpu"), "meta"):
        assert DevicePlan.for_device(device) == CPU_PLAN
    for device in ("cuda", "cuda:1", torch.device("cuda", 0)):
        assert DevicePlan.for_device(device) == CUDA_PLAN
    assert dataclasses.asdict(CPU_PLAN) == {"conv_form": "time-major", "encoder_tile_frames": 100,
                                            "decoder_tile_frames": 50, "max_slots": 16, "stretch_steps": 256,
                                            "pinned": False}
    assert dataclasses.asdict(CUDA_PLAN) == {"conv_form": "modules", "encoder_tile_frames": None,
                                             "decoder_tile_frames": None, "max_slots": 64, "stretch_steps": None,
                                             "pinned": True}


def test_plans_that_cannot_be_meant_are_refused():
    for field, bad in [("conv_form", "cudnn"), ("encoder_tile_frames", 0), ("decoder_tile_frames", 2.5),
                       ("stretch_steps", -1), ("max_slots", 1), ("max_slots", "16")]:
        with pytest.raises(ValueError, match=field):
            dataclasses.replace(CPU_PLAN, **{field: bad})
    with pytest.raises(ValueError, match="whole signals"):
        dataclasses.replace(CUDA_PLAN, encoder_tile_frames=100)


@pytest.fixture(scope="module")
def clips() -> list[torch.Tensor]:
    return [torch.from_numpy(load_audio(p, 16000).samples) for p in sorted(SPEECH.glob("*.flac"))]


@torch.inference_mode()
def test_the_gpu_plan_run_on_the_cpu_encodes_as_the_model_does_batch_or_alone(small_model, one_thread, clips):
    engine = BatchEncoder(small_model, plan=CUDA_PLAN)  # on the CPU: pinned copies do not apply
    assert engine.plan == CUDA_PLAN and engine.encoder.TILE_FRAMES is None
    together = engine.encode(clips)
    equal = frames = 0
    for clip, codes in zip(clips, together, strict=True):
        assert torch.equal(engine.encode([clip])[0], codes)
        alone = small_model.encode(clip.view(1, 1, -1))[:, 0]
        equal, frames = equal + (alone == codes).all(0).sum().item(), frames + codes.shape[1]
    assert equal == frames  # the model's own convs; measured: every frame of these clips
    assert torch.equal(BatchEncoder(small_model, EngineOptions(batch_seconds=5.0), CUDA_PLAN).encode(clips)[3],
                       together[3])


@torch.inference_mode()
def test_the_gpu_plan_run_on_the_cpu_decodes_within_the_tolerance(small_model, one_thread):
    rows = [(tag, b) for tag in INPUTS for b in range(golden(f"codes8_{tag}").shape[1])]
    codes = [golden(f"codes8_{tag}")[:, b] for tag, b in rows]
    decoder = BatchDecoder(small_model, plan=CUDA_PLAN)
    for (tag, b), signal, c in zip(rows, decoder.decode(codes), codes, strict=True):
        torch.testing.assert_close(signal, golden(f"dec8_{tag}")[b, 0], rtol=0, atol=1e-4, msg=f"{tag}[{b}]")
        assert torch.equal(decoder.decode([c])[0], signal), f"{tag}[{b}]: batch != alone"


def test_moving_a_batch_keeps_every_tensor_and_exact_flags_come_back():
    tensors = [torch.arange(n, dtype=torch.float32).view(1, -1).repeat(3, 1) for n in (4, 1, 7)]
    moved = to_device(tensors, torch.device("cpu"), pinned=True)  # no CUDA: each as it is
    assert all(a is b for a, b in zip(moved, tensors, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(to_host(tensors), tensors, strict=True))
    before = (torch.backends.cudnn.deterministic, torch.backends.cudnn.allow_tf32)
    with exact_convs(torch.device("cuda")):  # the flags only: no GPU needed
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.allow_tf32
    assert (torch.backends.cudnn.deterministic, torch.backends.cudnn.allow_tf32) == before
    with exact_convs(torch.device("cpu")):
        assert (torch.backends.cudnn.deterministic, torch.backends.cudnn.allow_tf32) == before
