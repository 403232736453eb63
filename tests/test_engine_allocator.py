"""The engine leaves the process's allocator as it finds it; the allocator policy (``engine.allocator``) is an
explicit, process-wide choice that the corpus runner and ``dmcodec encode`` make."""

from __future__ import annotations

import shutil
from unittest import mock

import torch

from conftest import REFERENCE, SPEECH
from dmcodec_cli.corpus import runner
from dmcodec_cli.engine import allocator
from dmcodec_cli.engine.decoder import BatchDecoder
from dmcodec_cli.engine.encoder import BatchEncoder, EngineOptions
from dmcodec_cli.inputs import collect_inputs
from dmcodec_cli.registry import load_model


class FakeLibc:
    def __init__(self):
        self.calls = []

    def mallopt(self, *args):
        self.calls.append(("mallopt", *args))
        return 1

    def malloc_trim(self, *args):
        self.calls.append(("malloc_trim", *args))
        return 1


def test_the_engine_never_touches_the_allocator(small_model, one_thread, monkeypatch):
    monkeypatch.setattr(allocator, "_libc", None)  # a process that did not choose the policy
    with mock.patch.object(allocator.ctypes, "CDLL") as load:
        codes = BatchEncoder(small_model).encode([torch.linspace(-0.5, 0.5, 8000), torch.zeros(700)])
        BatchDecoder(small_model).decode([c[:, :3] for c in codes])
        allocator.release_freed()
    load.assert_not_called()


def test_the_policy_is_chosen_once_and_then_trims_after_each_batch(small_model, one_thread, monkeypatch):
    monkeypatch.setattr(allocator, "_libc", None)
    monkeypatch.setattr(allocator.sys, "platform", "linux")
    libc = FakeLibc()
    with mock.patch.object(allocator.ctypes, "CDLL", return_value=libc) as load:
        assert allocator.tune_allocator() and allocator.tune_allocator()
    load.assert_called_once_with("libc.so.6")
    assert libc.calls == [("mallopt", -3, 16 << 20)]  # M_MMAP_THRESHOLD, 16 MiB
    BatchEncoder(small_model, EngineOptions(batch_seconds=0.5)).encode([torch.zeros(8000)] * 3)
    assert libc.calls[1:] == [("malloc_trim", 0)] * 3  # one per batch of 0.5 s


def test_a_refused_or_missing_policy_changes_nothing(monkeypatch):
    monkeypatch.setattr(allocator, "_libc", None)
    monkeypatch.setattr(allocator.sys, "platform", "darwin")
    assert not allocator.tune_allocator()
    monkeypatch.setattr(allocator.sys, "platform", "linux")
    with mock.patch.object(allocator.ctypes, "CDLL", side_effect=OSError("no libc.so.6")):
        assert not allocator.tune_allocator()
    refusing = FakeLibc()
    refusing.mallopt = lambda *args: 0
    with mock.patch.object(allocator.ctypes, "CDLL", return_value=refusing):
        assert not allocator.tune_allocator()
    allocator.release_freed()  # nothing to call
    assert refusing.calls == []


def test_the_corpus_runner_chooses_the_policy(one_thread, tmp_path):
    (tmp_path / "in").mkdir()
    shutil.copy(SPEECH / "ljspeech_LJ001-0002.flac", tmp_path / "in")
    model = load_model(str(REFERENCE / "dmcodec_small.pt"), "cpu")
    with mock.patch.object(runner, "tune_allocator") as tune:
        summary = runner.tokenize_corpus(model, collect_inputs(tmp_path / "in"), tmp_path / "out.h5",
                                         runner.RunOptions(workers=0))
    assert summary.encoded == 1
    tune.assert_called_once_with()
