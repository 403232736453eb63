"""The SEANet encoder's and decoder's inference arithmetic in time-major layout [T, C], as matrix products.

``nn.Conv1d`` on a single long signal [1, C, L] runs far below the CPU's matrix-product speed at the
high-rate layers (64-128 channels at 8-16 kHz: measured 20-55 GFLOP/s against ~150 for a large
matrix product on the same two cores). In time-major layout every conv of the encoder is a few large
matrix products over contiguous row views: a stride-1 conv of kernel k sums k products of the input
shifted by one tap, and a stride-s conv of kernel 2s (every downsampling layer) views the padded input
as rows of s samples, [T + 1, s * C], and sums two products, rows t and t + 1. A transposed conv of kernel
2s (every upsampling layer) is the mirror image: two products [T, C] x [C, s * O] give rows of s output
samples, added with a shift of one row. The LSTM is time-major already, and the quantizer takes the
latent [T, D] as it is. Same padding rules, same taps: values
differ from the conv path only by float rounding (see docs/corpus.md for the measured code agreement).
A device's plan (``plan.DevicePlan``) may instead run the model's own conv modules over whole signals
(``ModuleStep``: cuDNN on a GPU), keeping the time-major LSTM batching around them.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..modules import (
    LSTMBlock,
    PaddedConv1d,
    PaddedConvTranspose1d,
    ResidualBlock,
    SEANetDecoder,
    SEANetEncoder,
    conv_padding,
)
from .plan import CPU_PLAN, DevicePlan


def pad_time(x: Tensor, left: int, right: int) -> Tensor:
    """Reflect-pad the first axis of x [L, C], with the short-input rule of ``modules.pad1d``."""
    length = x.shape[0]
    extra = max(0, max(left, right) - length + 1)
    if extra:
        x = torch.cat([x, x.new_zeros(extra, x.shape[1])])
    padded = torch.cat([x[1:left + 1].flip(0), x, x[len(x) - 1 - right:len(x) - 1].flip(0)])
    return padded[:len(padded) - extra]


@dataclass
class TimeMajorConv:
    """A ``PaddedConv1d`` as matrix products: x [L, C] -> [ceil(L / stride), O].

    ``taps[m]`` [stride * C, O] multiplies the padded input viewed as [L_p / stride, stride * C], shifted
    by ``m * dilation`` rows. Needs stride 1 or a kernel that is a multiple of the stride.
    """

    taps: Tensor  #: [kernel / stride, stride * C, O]
    bias: Tensor  #: [O]
    kernel_size: int
    stride: int
    dilation: int

    @classmethod
    def of(cls, conv: PaddedConv1d, dtype: torch.dtype) -> "TimeMajorConv":
        inner = conv.conv.conv
        weight = inner.weight.detach()  # [O, C, k]
        out_channels, in_channels, kernel = weight.shape
        s = conv.stride
        if kernel % s or (s > 1 and conv.dilation > 1):
            raise ValueError(f"no time-major form for kernel {kernel}, stride {s}, dilation {conv.dilation}")
        taps = weight.view(out_channels, in_channels, kernel // s, s).permute(2, 3, 1, 0)
        return cls(taps.reshape(kernel // s, s * in_channels, out_channels).contiguous().to(dtype),
                   inner.bias.detach().to(dtype), kernel, s, conv.dilation)

    def __call__(self, x: Tensor, elu_first: bool = False) -> Tensor:
        """x [L, C] -> [ceil(L / stride), O]; ``elu_first`` applies ELU to x before the conv."""
        left, right = conv_padding(x.shape[0], self.kernel_size, self.stride, self.dilation)
        padded = pad_time(x, left, right) if left or right else x
        if elu_first:  # ELU commutes with padding; in place on the fresh padded copy
            padded = F.elu_(padded) if padded is not x else F.elu(x)
        rows = padded.reshape(-1, self.stride * padded.shape[1])
        frames = rows.shape[0] - (len(self.taps) - 1) * self.dilation
        if rows.shape[1] == 1 and self.dilation == 1:  # one input channel: one product over the unfolded taps
            return torch.addmm(self.bias, rows[:, 0].unfold(0, len(self.taps), 1), self.taps[:, 0])
        out = torch.addmm(self.bias, rows[:frames], self.taps[0])
        for m in range(1, len(self.taps)):
            shift = m * self.dilation
            out.addmm_(rows[shift:shift + frames], self.taps[m])
        return out

    @property
    def reach(self) -> tuple[int, int]:
        """(left, right): the input rows before and after its own that an output row of a stride-1 conv reads."""
        span = (self.kernel_size - 1) * self.dilation
        return span - span // 2, span // 2


@dataclass
class TimeMajorResidual:
    """A ``ResidualBlock``: shortcut(x) + conv(ELU(conv(ELU(x)))), x [L, C] -> [L, C]."""

    first: TimeMajorConv
    second: TimeMajorConv
    shortcut: TimeMajorConv

    def __call__(self, x: Tensor) -> Tensor:
        y = self.second(F.elu_(self.first(x, elu_first=True)))
        return y.addmm_(x, self.shortcut.taps[0]).add_(self.shortcut.bias)

    @property
    def reach(self) -> tuple[int, int]:
        return self.first.reach


@dataclass
class TimeMajorConvTranspose:
    """A ``PaddedConvTranspose1d`` of kernel 2 x stride as matrix products: x [T, C] -> [T * stride, O].

    Input row t adds ``taps[0]`` x[t] to output rows [t * s, (t + 1) * s) and ``taps[1]`` x[t] to the next
    s rows; the result [(T + 1) * s, O] is trimmed as the module trims it.
    """

    taps: Tensor  #: [2, C, stride * O], columns (sample r of the row, output channel)
    bias: Tensor  #: [stride * O]
    stride: int

    @classmethod
    def of(cls, conv: PaddedConvTranspose1d, dtype: torch.dtype) -> "TimeMajorConvTranspose":
        inner = conv.convtr.convtr
        weight = inner.weight.detach()  # [C, O, k]
        in_channels, out_channels, kernel = weight.shape
        s = inner.stride
        if kernel != 2 * s:
            raise ValueError(f"no time-major form for a transposed conv of kernel {kernel}, stride {s}")
        taps = weight.view(in_channels, out_channels, 2, s).permute(2, 0, 3, 1)
        return cls(taps.reshape(2, in_channels, s * out_channels).contiguous().to(dtype),
                   inner.bias.detach().to(dtype).repeat(s), s)

    def __call__(self, x: Tensor, elu_first: bool = False) -> Tensor:
        """x [T, C] -> [T * stride, O]; ``elu_first`` applies ELU to x before the conv."""
        if elu_first:
            x = F.elu(x)
        frames, s = x.shape[0], self.stride
        rows = x.new_empty(frames + 1, self.bias.shape[0])
        torch.addmm(self.bias, x, self.taps[0], out=rows[:frames])
        rows[frames] = self.bias
        rows[1:].addmm_(x, self.taps[1])
        samples = rows.view((frames + 1) * s, -1)
        left = s - s // 2  # the module's trim: kernel - stride = s, the larger half on the left
        return samples[left:left + frames * s]

    #: output rows [t * s, (t + 1) * s) read input rows t - 1 to t + 1 (two taps, shifted by the trim)
    reach = (1, 1)


class StreamLSTM:
    """An ``nn.LSTM``'s inference over packed streams (``SlotPlan``), each sequence's state reset where it
    starts. Weights are copied once, in ``dtype``. A call runs at most ``stretch`` steps (None: from one
    start to the next)."""

    def __init__(self, lstm: torch.nn.LSTM, dtype: torch.dtype, stretch: int | None = CPU_PLAN.stretch_steps):
        self.stretch = stretch
        directions = ("", "_reverse") if lstm.bidirectional else ("",)
        self.params = [[[getattr(lstm, f"{name}_l{layer}{d}").detach().to(dtype)
                         for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
                        for d in directions] for layer in range(lstm.num_layers)]

    def __call__(self, plan: "SlotPlan", stream: Tensor) -> Tensor:
        """The LSTM over a packed stream [length, slots, C] -> [length, slots, C'].

        Each layer runs over the stream in stretches, with a slot's state reset to zero where one of its
        sequences starts; the backward direction runs over the stream reversed in time, so it too meets
        every sequence from its (reversed) start. Measured with oneDNN's LSTM (fp32 and bf16, hidden sizes
        256 and 1024): a sequence's outputs are bit-identical in any batch of two or more, in any slot,
        beside any neighbours, and however the run is cut into stretches with the state carried over; a
        batch of one rounds differently (up to 1e-6 in fp32, enough to flip a near-tie code), so a plan
        has at least two slots.
        """
        for directions in self.params:
            hidden = directions[0][1].shape[1]
            out = stream.new_empty(plan.length, plan.slots, hidden * len(directions))
            for d, params in enumerate(directions):
                reverse = d == 1
                starts = plan.reversed_starts if reverse else plan.starts
                _run_stream(stream, starts, params, out[..., d * hidden:(d + 1) * hidden], reverse, self.stretch)
            stream = out
        return stream


def _convert_convs(layers, dtype) -> list:
    """A conv stack as callables [L, C] -> [L', C']; an ELU becomes its next conv's ``elu_first``."""
    steps: list[Any] = []  # TimeMajorResidual, or a conv step with its ELU flag bound
    elu_pending = False
    for layer in layers:
        if isinstance(layer, torch.nn.ELU):
            elu_pending = True
        elif isinstance(layer, ResidualBlock) and not elu_pending:  # an ELU only ever precedes a conv
            convs = [c for c in layer.block if isinstance(c, PaddedConv1d)]
            steps.append(TimeMajorResidual(TimeMajorConv.of(convs[0], dtype), TimeMajorConv.of(convs[1], dtype),
                                           TimeMajorConv.of(layer.shortcut, dtype)))
        elif isinstance(layer, (PaddedConv1d, PaddedConvTranspose1d)):
            step = (TimeMajorConv.of(layer, dtype) if isinstance(layer, PaddedConv1d)
                    else TimeMajorConvTranspose.of(layer, dtype))
            steps.append(functools.partial(step, elu_first=elu_pending))
            elu_pending = False
        else:
            raise TypeError(f"unexpected conv-stack layer {type(layer).__name__}")
    return steps


def _unwrap(step):
    """A conv-stack step of ``_convert_convs`` -> its conv (a plain conv is wrapped with its ``elu_first``)."""
    return step.func if isinstance(step, functools.partial) else step


def stack_margins(steps: list) -> tuple[list[int], list[tuple[int, int]]]:
    """An upsampling conv stack [T, C] -> [T * hop, C'] (``_convert_convs``): each step's output rows per
    input row of the stack, and (left, right), the rows of its output on each side of a row that the later
    steps read to make their rows of it (their reach added up at that rate, rounded up; 0 for the last)."""
    rates, rate = [], 1
    for step in steps:
        conv = _unwrap(step)
        rate *= conv.stride if isinstance(conv, TimeMajorConvTranspose) else 1
        rates.append(rate)
    reaches = [_unwrap(step).reach for step in steps]

    def later_reach(i: int, side: int) -> int:  # at the rate of step i's output
        return math.ceil(sum(Fraction(reaches[j][side] * rates[i], rates[j - 1]) for j in range(i + 1, len(steps))))

    margins = [(later_reach(i, 0), later_reach(i, 1)) for i in range(len(steps))]
    return rates, margins


def tiles(frames: int, tile: int, halo: int) -> Iterator[tuple[int, int, int, int]]:
    """Frames [0, frames) cut into tiles of ``tile`` frames (the last up to 1.5 x): (lo, start, stop, hi),
    tile [start, stop) computed over [lo, hi), ``halo`` more frames on each side where there are."""
    start = 0
    while start < frames:
        stop = frames if frames - start < 3 * tile // 2 else start + tile
        yield max(0, start - halo), start, stop, min(frames, stop + halo)
        start = stop


def run_tiled(frames: int, tile: int, halo: int, rows: int, compute: Callable[[int, int], Tensor]) -> Tensor:
    """``compute(lo, hi)`` -> ``rows`` output rows per frame of [lo, hi), over ``tiles``: the kept rows joined.

    A tile that touches an end of the signal is padded there exactly as the whole signal is, and a halo
    at least the conv stack's reach makes each kept row the same arithmetic as in one pass over the whole
    signal, up to float rounding: the matrix products' rows do not depend on how many rows there are
    (from 12 on, measured), but torch's ELU computes some elements with its scalar code, 1 ulp off its
    vector code, depending on the tensor's size. Tiles keep every intermediate a few MB, in cache and
    reused by the allocator, where one pass over a 30 s signal makes ~100 MB buffers: ~1.25x faster
    (full-size encoder, fp32), and memory does not grow with the signal.
    """
    kept = [compute(lo, hi)[(start - lo) * rows:(stop - lo) * rows]
            for lo, start, stop, hi in tiles(frames, tile, halo)]
    return kept[0] if len(kept) == 1 else torch.cat(kept)


class ModuleStep:
    """Layers of the model, [1, C, L] -> [1, C', L'], as a conv-stack step [L, C] -> [L', C'] (time-major in
    and out): the model's own convs, cuDNN's on a GPU. In float32 they are the model's modules; in another
    ``dtype``, a copy of them."""

    def __init__(self, layers: list[torch.nn.Module], dtype: torch.dtype):
        stack = torch.nn.Sequential(*layers)
        self.stack = stack if dtype == torch.float32 else copy.deepcopy(stack).to(dtype)

    def __call__(self, x: Tensor, elu_first: bool = False) -> Tensor:
        """x [L, C] -> [L', C'] (a view of the stack's [1, C', L'] output); ``elu_first``: ELU on x first."""
        return self.stack((F.elu(x) if elu_first else x).t()[None])[0].t()


class TimeMajorEncoder:
    """An ``SEANetEncoder``'s inference, split around its LSTM so that the LSTM can be batched.

    ``latents``: signals -> latents, through ``front`` (conv stack, per signal), the LSTM (batched) and
    ``finish`` (skip connection, last conv, per signal). The device's ``plan`` says how: the convs as
    time-major matrix products (weights copied once, in ``dtype``) in tiles of ``TILE_FRAMES`` frames, or
    as the model's modules over whole signals; how many LSTM slots and steps per call.
    """

    def __init__(self, encoder: SEANetEncoder, dtype: torch.dtype = torch.float32, plan: DevicePlan = CPU_PLAN):
        self.dtype, self.max_slots = dtype, plan.max_slots
        layers = list(encoder.model)
        split = next(i for i, layer in enumerate(layers) if isinstance(layer, LSTMBlock))
        lstm_block, last = layers[split], layers[-1]
        if not isinstance(lstm_block, LSTMBlock) or not isinstance(last, PaddedConv1d):
            raise TypeError("expected an encoder that ends with an LSTM block and a conv")
        self.lstm_block: LSTMBlock = lstm_block
        self.front_steps: list = ([ModuleStep(layers[:split], dtype)] if plan.conv_form == "modules"
                                  else _convert_convs(layers[:split], dtype))
        convs = [m for layer in layers[:split] for m in layer.modules() if isinstance(m, PaddedConv1d)]
        self.hop, reach = 1, 0
        for conv in convs:  # receptive field, in samples
            reach += (conv.kernel_size - 1) * conv.dilation * self.hop
            self.hop *= conv.stride
        self.halo_frames = -(-reach // self.hop)  # the whole span bounds the reach on either side
        #: frames per conv-stack tile (2 s on a CPU: intermediates of a few MB); None: whole signals
        self.TILE_FRAMES = plan.encoder_tile_frames
        self.last = (ModuleStep([last], dtype) if plan.conv_form == "modules"
                     else TimeMajorConv.of(last, dtype))
        self.lstm = StreamLSTM(self.lstm_block.lstm, dtype, plan.stretch_steps)

    def front(self, signal: Tensor) -> Tensor:
        """signal [L] -> LSTM input [ceil(L / hop), C], computed in tiles of about ``TILE_FRAMES`` frames,
        each with ``halo_frames`` (at least the conv stack's receptive field) more on each side
        (``run_tiled``), or in one pass."""
        frames = -(-len(signal) // self.hop)
        return run_tiled(frames, self.TILE_FRAMES or frames, self.halo_frames, 1,
                         lambda lo, hi: self._front_pass(signal[lo * self.hop:hi * self.hop]))

    def _front_pass(self, signal: Tensor) -> Tensor:
        x = signal.to(self.dtype)[:, None]
        for step in self.front_steps:
            x = step(x)
        return x

    def latents(self, signals: list[Tensor]) -> Iterator[Tensor]:
        """Signals [L_i] -> latents [ceil(L_i / hop), D], one by one, each bit-identical to encoding it alone.

        The conv stack's output goes straight into the LSTM's slot stream (``SlotPlan``), which then also
        serves as the skip connection: one copy of the features, not two.
        """
        plan = SlotPlan.of([-(-len(s) // self.hop) for s in signals], self.max_slots)
        like = signals[0].new_empty(0, dtype=self.dtype)
        feats = plan.pack(map(self.front, signals), self.lstm_block.lstm.input_size, like)
        lstm_out = self.lstm(plan, feats)
        for feat, out in zip(plan.unpack(feats), plan.unpack(lstm_out)):
            yield self.finish(feat, out)

    def finish(self, feat: Tensor, lstm_out: Tensor) -> Tensor:
        """LSTM input [T, C] and output [T, C'] -> latent [T, D] (skip connection, ELU, last conv)."""
        skip = torch.cat([feat, feat], dim=-1) if self.lstm_block.bidirectional else feat
        return self.last(lstm_out.add_(skip), elu_first=True)


class TimeMajorDecoder:
    """An ``SEANetDecoder``'s inference, split around its LSTM so that the LSTM can be batched.

    ``signals``: latents -> signals, through the first conv (per latent), the LSTM (batched, with its skip
    connection) and ``back`` (upsampling conv stack, per signal). The device's ``plan`` says how, as for
    ``TimeMajorEncoder``: time-major products (weights copied once, in ``dtype``) with the stack in tiles of
    ``TILE_FRAMES`` frames, or the model's modules over whole signals.
    """

    def __init__(self, decoder: SEANetDecoder, dtype: torch.dtype = torch.float32, plan: DevicePlan = CPU_PLAN):
        self.dtype, self.max_slots = dtype, plan.max_slots
        layers = list(decoder.model)
        if not (isinstance(layers[0], PaddedConv1d) and isinstance(layers[1], LSTMBlock)):
            raise TypeError("expected a decoder that starts with a conv and an LSTM block")
        self.lstm_block: LSTMBlock = layers[1]
        self.lstm = StreamLSTM(self.lstm_block.lstm, dtype, plan.stretch_steps)
        self.hop = math.prod(m.convtr.convtr.stride for layer in layers[2:] for m in layer.modules()
                             if isinstance(m, PaddedConvTranspose1d))  # samples per frame
        #: frames per upsampling-stack tile (1 s on a CPU: intermediates of at most 4 MB at full size); None: whole
        self.TILE_FRAMES = plan.decoder_tile_frames
        self.first: ModuleStep | TimeMajorConv
        if plan.conv_form == "modules":
            self.first, self.back_steps = ModuleStep([layers[0]], dtype), [ModuleStep(layers[2:], dtype)]
            return
        self.first = TimeMajorConv.of(layers[0], dtype)
        self.back_steps = _convert_convs(layers[2:], dtype)
        if not isinstance(_unwrap(self.back_steps[0]), TimeMajorConvTranspose):
            raise TypeError("expected an upsampling stack that starts with a transposed conv")
        self.rates, self.margins = stack_margins(self.back_steps)
        # the reach of the tiled steps (all but the first), in frames: the rows the first step's output must keep
        self.halo_frames = -(-max(self.margins[0]) // self.rates[0])

    def signals(self, latents: list[Tensor]) -> Iterator[Tensor]:
        """Quantized latents [T_i, D] -> signals [T_i * hop], one by one, each bit-identical to decoding it
        alone."""
        plan = SlotPlan.of([len(z) for z in latents], self.max_slots)
        like = latents[0].new_empty(0, dtype=self.dtype)
        feats = plan.pack((self.first(z.to(self.dtype)) for z in latents), self.lstm_block.lstm.input_size, like)
        lstm_out = self.lstm(plan, feats)
        for feat, out in zip(plan.unpack(feats), plan.unpack(lstm_out)):
            yield self.back(out.add_(feat))

    def back(self, x: Tensor) -> Tensor:
        """LSTM block output [T, C] -> signal [T * hop].

        The first upsampling runs over the whole input: its weights are the stack's largest (2 x 16 MB at
        full size) and its input has one row per frame, so a tile would read them again for every few rows.
        The rest runs in tiles of about ``TILE_FRAMES`` frames (``tiles``), each computed over ``halo_frames``
        more on each side, and each step's output is cut back to the rows that the later steps still read
        (``margins``): the high-rate layers, which hold most of the work, compute little beyond the tile.
        Without tiles (``TILE_FRAMES`` None) the stack runs in one pass.
        """
        if self.TILE_FRAMES is None:
            return self._back_pass(x)[:, 0]
        frames = len(x)
        x = self.back_steps[0](x)
        kept = [self._back_tile(x, frames, *tile) for tile in tiles(frames, self.TILE_FRAMES, self.halo_frames)]
        return (kept[0] if len(kept) == 1 else torch.cat(kept))[:, 0]

    def _back_tile(self, x: Tensor, frames: int, lo: int, start: int, stop: int, hi: int) -> Tensor:
        """The first step's output x [frames * rates[0], C] -> the signal's rows of frames [start, stop),
        [(stop - start) * hop, 1], computed from x's rows of frames [lo, hi).

        A side where the tile touches an end of the signal is never cut: it is padded as the whole signal is
        there. Elsewhere a step's output keeps ``margins`` rows beyond the tile, at least what the later steps
        reach, so that every kept row is the arithmetic of one pass over the whole signal (up to float
        rounding: see ``run_tiled``).
        """
        first = lo * self.rates[0]  # the signal row of y[0], at the current step's rate
        y = x[first:hi * self.rates[0]]
        for step, before, rate, (left, right) in zip(self.back_steps[1:], self.rates, self.rates[1:],
                                                     self.margins[1:]):
            y, first = step(y), first * (rate // before)
            begin = start * rate - left if lo > 0 else 0
            end = stop * rate + right if hi < frames else frames * rate
            y, first = y[max(0, begin - first):end - first], max(begin, first)
        return y[start * self.hop - first:stop * self.hop - first]

    def _back_pass(self, x: Tensor) -> Tensor:
        for step in self.back_steps:
            x = step(x)
        return x


@dataclass(frozen=True)
class SlotPlan:
    """Where each sequence sits in a batch of ``slots`` streams of ``length`` steps: slot and first step.

    Longest first, each sequence goes to the least-filled slot, so the streams end close together. The
    number of slots is the total length over the longest, between 2 and ``max_slots``: then the longest
    sequence is about one slot's share. Measured on 2 CPU cores (hidden size 1024, fp32): one LSTM step
    costs about the same for batches of 2 to 8, then grows with the batch; per sequence-step a batch of
    16 is 2.5x cheaper than a batch of one and within 5 % of a batch of 64.
    """

    slots: int
    length: int
    places: tuple[tuple[int, int], ...]  #: (slot, first step) of each sequence
    lengths: tuple[int, ...]

    MAX_SLOTS = CPU_PLAN.max_slots  #: unless a device's plan says otherwise

    @classmethod
    def of(cls, lengths: list[int], max_slots: int = MAX_SLOTS) -> "SlotPlan":
        slots = max(2, min(max_slots, sum(lengths) // max(lengths)))
        filled = [0] * slots
        places: list[tuple[int, int]] = [(0, 0)] * len(lengths)
        for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
            slot = min(range(slots), key=filled.__getitem__)
            places[i] = (slot, filled[slot])
            filled[slot] += lengths[i]
        return cls(slots, max(filled), tuple(places), tuple(lengths))

    @property
    def starts(self) -> dict[int, list[int]]:
        """Step -> slots in which a sequence starts there (step 0 excluded: the state starts at zero)."""
        return _group((first, slot) for slot, first in self.places if first > 0)

    @property
    def reversed_starts(self) -> dict[int, list[int]]:
        """The same for the stream reversed in time."""
        ends = ((self.length - first - n, slot) for (slot, first), n in zip(self.places, self.lengths))
        return _group((step, slot) for step, slot in ends if step > 0)

    def pack(self, seqs: Iterable[Tensor], channels: int, like: Tensor) -> Tensor:
        """Sequences [T_i, C] (taken one at a time) -> stream [length, slots, C] of ``like``'s dtype and
        device, zero where no sequence is."""
        stream = like.new_zeros(self.length, self.slots, channels)
        for (slot, first), s in zip(self.places, seqs):
            stream[first:first + len(s), slot] = s
        return stream

    def unpack(self, stream: Tensor) -> list[Tensor]:
        """Stream [length, slots, C'] -> each sequence's rows [T_i, C']."""
        return [stream[first:first + n, slot] for (slot, first), n in zip(self.places, self.lengths)]


def _group(pairs) -> dict[int, list[int]]:
    grouped: dict[int, list[int]] = {}
    for key, value in pairs:
        grouped.setdefault(key, []).append(value)
    return grouped


def _run_stream(stream: Tensor, starts: dict[int, list[int]], params: list[Tensor], out: Tensor,
                reverse: bool, stretch: int | None) -> None:
    """One LSTM direction over stream [L, S, C] into out [L, S, H], the state reset to zero at ``starts``.

    ``reverse``: the direction runs from the last step to the first, and ``starts`` count steps from the
    end. The run is cut into stretches of at most ``stretch`` steps, which bounds oneDNN's buffers
    (it holds every step's gates of a call) at the cost of one weight reordering per call (measured: none
    to see at 256 steps).
    """
    length, slots = stream.shape[:2]
    h = c = stream.new_zeros(1, slots, params[1].shape[1])
    cuts = sorted(set(starts) | set(range(stretch, length, stretch) if stretch else ())) + [length]
    begin = 0
    for cut in cuts:
        span = slice(length - cut, length - begin) if reverse else slice(begin, cut)
        y, h, c = torch.lstm(stream[span].flip(0) if reverse else stream[span], (h, c), params,
                             True, 1, 0.0, False, False, False)
        out[span] = y.flip(0) if reverse else y
        if cut in starts:
            h[:, starts[cut]] = 0
            c[:, starts[cut]] = 0
        begin = cut

