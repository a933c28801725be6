"""The five GPTran modes: each proposes children of a trained parent (reference §6).

A :class:`Mode` looks at a parent (its architecture and, for pruning, its weights) and returns
:class:`Proposal` s: a child architecture, a one-line description of the change, and the
model its weights are transferred from. Grow modes transfer from the parent itself. Prune
modes transfer from a copy of the parent whose heads or neurons are reordered (the outputs do
not change) so that the weakest come last in their group, where the ordered transfer drops
them; the reference dropped whatever came last.

Contract (checked by :func:`edgetran.testing.check_mode`): ``propose`` returns at most the
mode's children, each a valid architecture that differs from the parent and from the others;
the same generator state gives the same proposals; grow children have more parameters than
the parent and prune children fewer; a proposal's ``source`` computes what the parent computes,
and the parent is left as it was. A mode that has nothing to propose returns ``[]``.

Fixes of the reference's bugs: the heads to prune are removed by identity (its second
``list.pop`` was off by one when both were in one layer); the weakest encoder layer is scored
from that layer's own heads and FF layers (it averaged flattened lists indexed by layer); a
pruned layer's heads keep their count, with ``d = h // n`` (it reset every head to ``h/12``).
"""

from __future__ import annotations

import abc
import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from edgetran.errors import EdgeTranError
from edgetran.model.modeling import FlexiBertAttention, FlexiBertPreTrainedModel
from edgetran.space import REFERENCE_OPS, Architecture, Layer
from edgetran.space.ops import is_valid_op, op_type


class GrowPruneError(EdgeTranError, ValueError):
    """Grow-and-prune settings, schedules or inputs are unusable."""


@dataclass
class Proposal:
    """One child: its architecture, what changed, and the model its weights come from."""

    arch: Architecture
    change: str
    source: FlexiBertPreTrainedModel


class Mode(abc.ABC):
    """A grow or prune step. Subclasses set the class attributes and implement ``propose``.

    Attributes:
        name: the registered name (``grow_attn_head`` …).
        kind: ``grow`` or ``prune``.
        reference_steps, reference_learning_rate: the reference's extra MLM steps and rate for
            this mode (§6); a budget scales them, keeping their ratios.
    """

    name: ClassVar[str]
    kind: ClassVar[str]
    reference_steps: ClassVar[int]
    reference_learning_rate: ClassVar[float]

    @abc.abstractmethod
    def propose(
        self, parent: FlexiBertPreTrainedModel, rng: np.random.Generator
    ) -> list[Proposal]:
        """The children of ``parent`` (``[]`` when the mode cannot apply)."""

    def _keep_counts(self, **counts: int) -> None:
        """Keep integer parameters, each checked to be ≥ 1 (the error names the bad one)."""
        for name, value in counts.items():
            _check_count(name, value)
            setattr(self, name, value)

    def describe(self) -> dict:
        """The mode's name and parameters, JSON-ready (recorded with the search)."""
        return {"mode": self.name, **{k: _plain(v) for k, v in vars(self).items()}}


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def _arch(model: FlexiBertPreTrainedModel) -> Architecture:
    return model.config.arch


def _base(model: nn.Module):
    return getattr(model, "flexibert", model)


def _with_layer(arch: Architecture, index: int, layer: Layer) -> Architecture:
    layers = list(arch.layers)
    layers[index] = layer
    return Architecture(tuple(layers))


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise GrowPruneError(f"{name}={value!r} is invalid; allowed: an integer ≥ 1")


# -- grow ---------------------------------------------------------------------------------------
class GrowAttnHead(Mode):
    """Append one head of a random operation, with the layer's ``d``, to a random layer; each
    (layer, operation) pair at most once per step; ``h`` is kept.

    Args:
        children: children per step (at most layers × operations).
        ops: the operations to draw from (default: the reference's seven).
    """

    name = "grow_attn_head"
    kind = "grow"
    reference_steps = 20_000
    reference_learning_rate = 1e-5

    def __init__(self, children: int = 5, ops: Sequence[str] = REFERENCE_OPS) -> None:
        _check_count("children", children)
        ops = tuple(ops)
        bad = [op for op in ops if not isinstance(op, str) or not is_valid_op(op)]
        if not ops or bad:
            raise GrowPruneError(
                f"ops={list(ops)!r} is invalid; allowed: a non-empty list of "
                f"{', '.join(REFERENCE_OPS)} or c_K"
            )
        self.children, self.ops = children, ops

    def propose(self, parent, rng) -> list[Proposal]:
        """One child per (layer, operation) drawn, each with one head added."""
        arch = _arch(parent)
        pairs = [(i, op) for i in range(arch.num_layers) for op in self.ops]
        picks = rng.choice(len(pairs), size=min(self.children, len(pairs)), replace=False)
        proposals = []
        for k in sorted(int(p) for p in picks):
            i, op = pairs[k]
            layer = arch.layers[i]
            child = _with_layer(arch, i, layer.replace(ops=(*layer.ops, op)))
            proposals.append(Proposal(child, f"layer {i}: +{op}", parent))
        return proposals


class GrowFFNN(Mode):
    """Append a feed-forward layer of a grow width to a random layer's stack, where that
    stack's last width is at most ``max_last_width``; each (layer, width) at most once.

    Args:
        children: children per step.
        widths: widths of the appended layer (reference 1024; grow-only variant 1024, 512, 256).
        max_last_width: only stacks whose last width is at most this grow.
    """

    name = "grow_ffnn"
    kind = "grow"
    reference_steps = 50_000
    reference_learning_rate = 1e-5

    def __init__(
        self, children: int = 5, widths: Sequence[int] = (1024,), max_last_width: int = 1024
    ) -> None:
        _check_count("children", children)
        widths = tuple(widths)
        if not widths:
            raise GrowPruneError("widths=[] is invalid; allowed: a non-empty list of integers ≥ 1")
        for width in widths:
            _check_count("widths", width)
        _check_count("max_last_width", max_last_width)
        self.children, self.widths, self.max_last_width = children, widths, max_last_width

    def propose(self, parent, rng) -> list[Proposal]:
        """One child per (stack, width) drawn, each with an FF layer appended."""
        arch = _arch(parent)
        pairs = [
            (i, width)
            for i, layer in enumerate(arch.layers)
            if layer.ff[-1] <= self.max_last_width
            for width in self.widths
        ]
        if not pairs:
            return []
        picks = rng.choice(len(pairs), size=min(self.children, len(pairs)), replace=False)
        proposals = []
        for k in sorted(int(p) for p in picks):
            i, width = pairs[k]
            layer = arch.layers[i]
            child = _with_layer(arch, i, layer.replace(ff=(*layer.ff, width)))
            proposals.append(Proposal(child, f"layer {i}: +FF {width}", parent))
        return proposals


# -- importance scores ---------------------------------------------------------------------------
@torch.no_grad()
def head_importance(model: FlexiBertPreTrainedModel) -> list[tuple[int, int, float]]:
    """``(layer, head, score)`` for every head: the mean of the head's mean squared Q, K and V
    weights, with the mean squared ``W`` of an ``sa_wma`` head, or for a convolution head the
    mean of its depthwise/pointwise, kernel-generator and output weights (reference §6)."""
    scores = []
    for i, (layer, block) in enumerate(zip(_arch(model).layers, _base(model).encoder.layer,
                                           strict=True)):  # fmt: skip
        attention: FlexiBertAttention = block.attention
        d = layer.head_dim
        for j, op in enumerate(layer.ops):
            rows = slice(j * d, (j + 1) * d)
            parts = [
                float(getattr(attention, name).weight[rows].pow(2).mean())
                for name in ("query", "key", "value")
            ]
            group = layer.ops[:j].count(op)
            if op == "sa_wma":
                parts.append(float(attention.wma[group].pow(2).mean()))
            if op_type(op) == "c":
                conv = attention.conv[op]
                channels = slice(group * d, (group + 1) * d)
                separable = (
                    float(conv.depthwise.weight[channels].pow(2).mean())
                    + float(conv.pointwise.weight[channels].pow(2).mean())
                ) / 2
                parts += [
                    separable,
                    float(conv.kernel_weight[group].pow(2).mean()),
                    float(conv.out_weight[group].pow(2).mean()),
                ]
            scores.append((i, j, float(np.mean(parts))))
    return scores


@torch.no_grad()
def ff_importance(model: FlexiBertPreTrainedModel) -> list[tuple[int, int, float]]:
    """``(layer, FF layer, score)``: the mean absolute weight of each FF Linear (reference)."""
    return [
        (i, f, float(linear.weight.abs().mean()))
        for i, block in enumerate(_base(model).encoder.layer)
        for f, linear in enumerate(block.feed_forward.intermediate)
    ]


# -- function-preserving reordering ------------------------------------------------------------
def _take(param: torch.Tensor, index: torch.Tensor, dim: int = 0) -> None:
    with torch.no_grad():
        param.copy_(param.index_select(dim, index))


def reorder_heads(model: FlexiBertPreTrainedModel, layer_index: int, last: set[int]) -> None:
    """Move the heads ``last`` of a layer to the end of their operation's group, in place; the
    model's outputs do not change (heads of one operation are interchangeable)."""
    layer = _arch(model).layers[layer_index]
    attention = _base(model).encoder.layer[layer_index].attention
    d = layer.head_dim
    order: list[int] = []
    for op in dict.fromkeys(layer.ops):
        members = [j for j, o in enumerate(layer.ops) if o == op]
        local = [m for m in members if m not in last] + [m for m in members if m in last]
        order += local
        within = torch.tensor([members.index(m) for m in local])
        if op == "sa_wma":
            _take(attention.wma, within)
        if op_type(op) == "c":
            conv = attention.conv[op]
            channels = torch.cat([torch.arange(g * d, (g + 1) * d) for g in within.tolist()])
            _take(conv.depthwise.weight, channels)
            _take(conv.pointwise.weight, channels)
            for name in ("conv_bias", "kernel_weight", "kernel_bias", "out_weight", "out_bias"):
                _take(getattr(conv, name), within)
    rows = torch.cat([torch.arange(j * d, (j + 1) * d) for j in order])
    for name in ("query", "key", "value"):
        _take(getattr(attention, name).weight, rows)
        _take(getattr(attention, name).bias, rows)
    _take(attention.dense.weight, rows, dim=1)


def reorder_neurons(
    model: FlexiBertPreTrainedModel, layer_index: int, ff_index: int, order: torch.Tensor
) -> None:
    """Permute the neurons of one FF layer (and the inputs of the next Linear) in place; the
    model's outputs do not change."""
    ff = _base(model).encoder.layer[layer_index].feed_forward
    linear = ff.intermediate[ff_index]
    following = ff.intermediate[ff_index + 1] if ff_index + 1 < len(ff.intermediate) else ff.output
    _take(linear.weight, order)
    _take(linear.bias, order)
    _take(following.weight, order, dim=1)


# -- prune --------------------------------------------------------------------------------------
class PruneAttnHead(Mode):
    """Remove the ``heads`` globally weakest heads (one child); every layer keeps one head.

    Args:
        heads: heads removed per step (reference 2).
    """

    name = "prune_attn_head"
    kind = "prune"
    reference_steps = 30_000
    reference_learning_rate = 5e-5

    def __init__(self, heads: int = 2) -> None:
        self._keep_counts(heads=heads)

    def propose(self, parent, rng) -> list[Proposal]:
        """The one child without the globally weakest heads (``[]`` when none can go)."""
        arch = _arch(parent)
        remaining = [layer.num_heads for layer in arch.layers]
        chosen: dict[int, set[int]] = {}
        for i, j, _ in sorted(head_importance(parent), key=lambda s: s[2]):
            if sum(map(len, chosen.values())) == self.heads:
                break
            if remaining[i] > 1:
                remaining[i] -= 1
                chosen.setdefault(i, set()).add(j)
        if not chosen:
            return []
        source = copy.deepcopy(parent)
        layers = list(arch.layers)
        changes = []
        for i, heads in sorted(chosen.items()):
            reorder_heads(source, i, heads)
            ops = list(layers[i].ops)
            for j in sorted(heads, reverse=True):
                changes.append(f"layer {i}: -{ops.pop(j)}")
            layers[i] = layers[i].replace(ops=tuple(ops))
        return [Proposal(Architecture(tuple(layers)), ", ".join(changes), source)]


class PruneFFNN(Mode):
    """Remove ``neurons`` neurons from each of the ``layers`` weakest FF layers (one child);
    within a layer the neurons with the smallest mean absolute incoming weight go.

    Args:
        layers: FF layers pruned per step (reference 2).
        neurons: neurons removed from each (reference 128; 1024 → 896 is off the grid).
    """

    name = "prune_ffnn"
    kind = "prune"
    reference_steps = 20_000
    reference_learning_rate = 1e-5

    def __init__(self, layers: int = 2, neurons: int = 128) -> None:
        self._keep_counts(layers=layers, neurons=neurons)

    def propose(self, parent, rng) -> list[Proposal]:
        """The one child with the weakest neurons removed from the weakest FF layers."""
        arch = _arch(parent)
        chosen = [
            (i, f)
            for i, f, _ in sorted(ff_importance(parent), key=lambda s: s[2])
            if arch.layers[i].ff[f] > self.neurons
        ][: self.layers]
        if not chosen:
            return []
        source = copy.deepcopy(parent)
        layers = list(arch.layers)
        for i, f in sorted(chosen):
            linear = _base(source).encoder.layer[i].feed_forward.intermediate[f]
            strength = linear.weight.detach().abs().mean(dim=1)
            reorder_neurons(source, i, f, torch.argsort(strength, descending=True, stable=True))
            ff = list(layers[i].ff)
            ff[f] -= self.neurons
            layers[i] = layers[i].replace(ff=tuple(ff))
        changes = ", ".join(
            f"layer {i}: FF[{f}] {arch.layers[i].ff[f]}→{layers[i].ff[f]}"
            for i, f in sorted(chosen)
        )
        return [Proposal(Architecture(tuple(layers)), changes, source)]


class PruneEncoderLayer(Mode):
    """Lower the hidden size of the weakest layer by ``hidden`` (one child); its heads keep
    their number with ``d = h // n``. A layer's score is the mean of its own head and FF
    scores; a layer whose hidden size would fall below its head count is skipped.

    Args:
        hidden: hidden units removed (reference 48).
    """

    name = "prune_encoder_layer"
    kind = "prune"
    reference_steps = 15_000
    reference_learning_rate = 5e-5

    def __init__(self, hidden: int = 48) -> None:
        self._keep_counts(hidden=hidden)

    def propose(self, parent, rng) -> list[Proposal]:
        """The one child with the weakest layer narrowed (``[]`` when no layer can be)."""
        arch = _arch(parent)
        heads, ffs = head_importance(parent), ff_importance(parent)
        # Head and FF scores differ in scale (squares vs absolute values): rank each kind
        # across the model first, then average a layer's ranks.
        ranked = _ranks([s for *_, s in heads]), _ranks([s for *_, s in ffs])
        per_layer: dict[int, list[float]] = {}
        for (i, *_), rank in zip(heads + ffs, np.concatenate(ranked), strict=True):
            per_layer.setdefault(i, []).append(float(rank))
        order = sorted(per_layer, key=lambda i: (np.mean(per_layer[i]), i))
        for i in order:
            layer = arch.layers[i]
            new_hidden = layer.hidden - self.hidden
            if new_hidden < layer.num_heads:
                continue
            child = _with_layer(
                arch, i, layer.replace(hidden=new_hidden, head_dim=new_hidden // layer.num_heads)
            )
            change = (
                f"layer {i}: hidden {layer.hidden}→{new_hidden}, "
                f"d {layer.head_dim}→{new_hidden // layer.num_heads}"
            )
            return [Proposal(child, change, parent)]
        return []


def _ranks(values: list[float]) -> np.ndarray:
    """Ranks in [0, 1] (0 = weakest)."""
    if len(values) < 2:
        return np.zeros(len(values))
    return np.argsort(np.argsort(values)) / (len(values) - 1)


#: The built-in modes, by name (registered in :data:`edgetran.plugins.MODES`).
BUILT_IN_MODES: dict[str, type[Mode]] = {
    cls.name: cls for cls in (GrowAttnHead, GrowFFNN, PruneAttnHead, PruneFFNN, PruneEncoderLayer)
}
