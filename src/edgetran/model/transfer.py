"""Weight transfer from a trained model to a neighbouring architecture (reference §4).

Every tensor of the target receives the leading block it shares with the matching tensor of the
source. Differences from the reference, which fix its bugs:

- Q/K/V are always transferred (the reference did so only with ``debug=True``);
- head slices follow each model's own head dimension (the reference used the target's ``d``);
- heads are matched by operation first (the k-th ``sa_wma`` head of the target receives the
  k-th ``sa_wma`` head of the source), then by family (sa/l/c), so inserting a head in canonical
  order does not shift the heads after it;
- ``sa_wma`` matrices are copied, never shared between models;
- layer projections, the pooler and task heads are transferred where shapes allow;
- ``random_projection`` is seeded: where an input axis differs in size, the source block is
  multiplied by a Gaussian matrix with N(0, 1/m) entries (``m`` the target size) instead of
  being truncated or zero-padded. Feed-forward layers are always copied in order, as in the
  reference.

:func:`transfer_weights` returns the share of target elements that received a source value.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from edgetran.model.modeling import (
    ConvHeads,
    FlexiBertAttention,
    FlexiBertModel,
    FlexiBertPreTrainedModel,
)
from edgetran.space import Layer
from edgetran.space.ops import op_type

TransferMode = Literal["ordered", "random_projection"]
Index = tuple[int | slice, ...]


class _Writer:
    """Writes source blocks into target parameters and remembers which elements were written."""

    def __init__(self, target: nn.Module, mode: TransferMode, seed: int) -> None:
        if mode not in ("ordered", "random_projection"):
            raise ValueError(f"mode={mode!r} is invalid; allowed: ordered, random_projection")
        self.mode = mode
        self.generator = torch.Generator().manual_seed(seed)
        self.masks = {id(p): torch.zeros_like(p, dtype=torch.bool) for p in target.parameters()}

    def block(
        self,
        dst: torch.Tensor,
        src: torch.Tensor,
        dst_lead: Index = (),
        src_lead: Index = (),
        project: bool = False,
    ) -> None:
        """Copy the shared leading block of ``src[src_lead]`` into ``dst[dst_lead]``.

        With ``project`` and mode ``random_projection``, a last axis of different size is
        mapped through a seeded Gaussian matrix instead of being cut.
        """
        target_view = dst.data[dst_lead]
        source = src.detach()[src_lead].to(dst.dtype)
        if (
            project
            and self.mode == "random_projection"
            and target_view.shape[-1] != source.shape[-1]
        ):
            m = target_view.shape[-1]
            gaussian = torch.randn(source.shape[-1], m, generator=self.generator) / math.sqrt(m)
            source = source @ gaussian.to(source.dtype)
        region = tuple(
            slice(0, min(a, b)) for a, b in zip(target_view.shape, source.shape, strict=True)
        )
        with torch.no_grad():
            target_view[region] = source[region]
        self.masks[id(dst)][dst_lead][region] = True

    def module(self, dst: nn.Module, src: nn.Module, project: bool = False) -> None:
        """Block-copy every parameter of ``dst`` that ``src`` has under the same name."""
        sources = dict(src.named_parameters())
        for name, param in dst.named_parameters():
            if name in sources and param.dim() == sources[name].dim():
                self.block(param, sources[name], project=project and param.dim() == 2)

    def share(self) -> float:
        written = sum(int(mask.sum()) for mask in self.masks.values())
        total = sum(mask.numel() for mask in self.masks.values())
        return written / total if total else 1.0


def _base(model: nn.Module) -> FlexiBertModel:
    return model if isinstance(model, FlexiBertModel) else model.flexibert


def match_heads(target: Layer, source: Layer) -> list[tuple[int, int]]:
    """Pairs ``(target head, source head)``: same operation first, then same family."""
    pairs: list[tuple[int, int]] = []
    free_source = list(range(source.num_heads))
    unmatched = []
    by_op: dict[str, list[int]] = defaultdict(list)
    for j in free_source:
        by_op[source.ops[j]].append(j)
    for j, op in enumerate(target.ops):
        if by_op[op]:
            pairs.append((j, by_op[op].pop(0)))
        else:
            unmatched.append(j)
    used = {s for _, s in pairs}
    remaining = [s for s in free_source if s not in used]
    for j in unmatched:
        family = [s for s in remaining if op_type(source.ops[s]) == op_type(target.ops[j])]
        if family:
            pairs.append((j, family[0]))
            remaining.remove(family[0])
    return sorted(pairs)


def _group_position(layer: Layer, head: int) -> tuple[str, int]:
    """(operation, index of the head within its operation's group)."""
    op = layer.ops[head]
    return op, layer.ops[:head].count(op)


def _transfer_attention(
    w: _Writer,
    dst: FlexiBertAttention,
    src: FlexiBertAttention,
    dst_layer: Layer,
    src_layer: Layer,
) -> None:
    dt, ds = dst_layer.head_dim, src_layer.head_dim
    if hasattr(dst, "distance_embedding") and hasattr(src, "distance_embedding"):
        w.block(dst.distance_embedding.weight, src.distance_embedding.weight, project=True)
    for jt, js in match_heads(dst_layer, src_layer):
        rows_t, rows_s = slice(jt * dt, (jt + 1) * dt), slice(js * ds, (js + 1) * ds)
        for name in ("query", "key", "value"):
            w.block(
                getattr(dst, name).weight, getattr(src, name).weight, (rows_t,), (rows_s,), True
            )
            w.block(getattr(dst, name).bias, getattr(src, name).bias, (rows_t,), (rows_s,))
        w.block(dst.dense.weight, src.dense.weight, (slice(None), rows_t), (slice(None), rows_s))
        op_t, gt = _group_position(dst_layer, jt)
        op_s, gs = _group_position(src_layer, js)
        if op_t == op_s == "sa_wma":
            w.block(dst.wma, src.wma, (gt,), (gs,))
        if op_type(op_t) == op_type(op_s) == "c":
            _transfer_conv_head(w, dst.conv[op_t], src.conv[op_s], gt, gs)
    w.block(dst.dense.bias, src.dense.bias)
    w.module(dst.LayerNorm, src.LayerNorm)


def _transfer_conv_head(w: _Writer, dst: ConvHeads, src: ConvHeads, gt: int, gs: int) -> None:
    dt, ds = dst.head_dim, src.head_dim
    channels_t, channels_s = slice(gt * dt, (gt + 1) * dt), slice(gs * ds, (gs + 1) * ds)
    depthwise = src.depthwise.weight.detach()[channels_s]  # (d, 1, k)
    if src.kernel != dst.kernel:
        depthwise = F.interpolate(depthwise, size=dst.kernel, mode="nearest")
    w.block(dst.depthwise.weight, depthwise, (channels_t,))
    w.block(dst.pointwise.weight, src.pointwise.weight, (channels_t,), (channels_s,))
    for name in ("conv_bias", "kernel_weight", "kernel_bias", "out_weight", "out_bias"):
        w.block(getattr(dst, name), getattr(src, name), (gt,), (gs,))


def _transfer_feed_forward(w: _Writer, dst, src) -> None:
    for dst_linear, src_linear in zip(dst.intermediate, src.intermediate, strict=False):
        w.module(dst_linear, src_linear)
    w.module(dst.output, src.output)
    w.module(dst.LayerNorm, src.LayerNorm)


def transfer_weights(
    source: FlexiBertPreTrainedModel,
    target: FlexiBertPreTrainedModel,
    *,
    mode: TransferMode = "random_projection",
    seed: int = 0,
) -> float:
    """Initialise ``target`` in place from ``source``; returns the share of target elements
    (over all its parameters, task heads included) that received source values.

    Args:
        source: a trained FlexiBERT model (any head).
        target: the model to initialise (any head); its other weights are left as they are.
        mode: ``ordered`` (copy leading blocks) or ``random_projection`` (seeded projections
            where an input axis differs in size).
        seed: seed of the random projections.
    """
    w = _Writer(target, mode, seed)
    base_t, base_s = _base(target), _base(source)
    w.module(base_t.embeddings, base_s.embeddings, project=True)
    arch_t, arch_s = base_t.config.arch, base_s.config.arch
    for i, (lt, ls) in enumerate(zip(base_t.encoder.layer, base_s.encoder.layer, strict=False)):
        _transfer_attention(w, lt.attention, ls.attention, arch_t.layers[i], arch_s.layers[i])
        _transfer_feed_forward(w, lt.feed_forward, ls.feed_forward)
        if lt.projection is not None and ls.projection is not None:
            w.module(lt.projection, ls.projection)
    if base_t.pooler is not None and base_s.pooler is not None:
        w.module(base_t.pooler, base_s.pooler)
    for head in ("lm_head", "classifier"):
        if hasattr(target, head) and hasattr(source, head):
            w.module(getattr(target, head), getattr(source, head), project=True)
    return w.share()
