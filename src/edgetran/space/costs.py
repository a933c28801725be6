"""Analytic cost model: parameters, FLOPs and bytes moved, per layer and per operation kind.

Conventions:

- ``flops`` counts multiply-accumulates of matrix products and convolutions as 2 FLOPs, the
  convention of ``torch.utils.flop_counter``; element-wise work (softmax, GELU, LayerNorm,
  additions) is not counted.
- ``bytes`` estimates memory traffic of those products: every operand read and every result
  written once, at ``bytes_per_element`` (4 for float32). It ignores caches, so it is an upper
  bound on DRAM traffic and a feature for surrogates, not a measurement.
- ``parameters`` counts the base encoder plus pooler (the reference's parameter count).

Operation kinds: ``embeddings``, ``qkv``, ``relative_position``, one kind per head operation
(``sa_sdp``, ``sa_wma``, ``l_dft``, ``l_dct``, ``c_5`` …; for ``l``/``c`` heads it includes
their attention-probability mixing), ``attention_output``, ``feed_forward``, ``projection``,
``pooler``.
"""

from __future__ import annotations

import itertools
import os
from collections import defaultdict
from dataclasses import dataclass, field

from edgetran.errors import ModelTooLargeError
from edgetran.space.architecture import Architecture, Layer
from edgetran.space.ops import conv_kernel

#: The reference configuration (``flexibert-gptran.md`` §2).
REFERENCE_VOCAB_SIZE = 50265
REFERENCE_MAX_POSITIONS = 514


@dataclass
class Cost:
    """Parameters, FLOPs and bytes of one part of the model."""

    parameters: int = 0
    flops: int = 0
    bytes: int = 0

    def __iadd__(self, other: Cost) -> Cost:
        self.parameters += other.parameters
        self.flops += other.flops
        self.bytes += other.bytes
        return self

    def to_dict(self) -> dict[str, int]:
        """The cost as a JSON-ready dict."""
        return {"parameters": self.parameters, "flops": self.flops, "bytes": self.bytes}


@dataclass
class CostReport:
    """Costs of one architecture at one batch size and sequence length.

    Attributes:
        per_layer: one ``{kind: Cost}`` per encoder layer.
        other: ``{kind: Cost}`` outside the layers (embeddings, pooler).
    """

    batch_size: int
    seq_len: int
    per_layer: list[dict[str, Cost]] = field(default_factory=list)
    other: dict[str, Cost] = field(default_factory=dict)

    def by_kind(self) -> dict[str, Cost]:
        """Costs summed by kind over the layers and the rest."""
        totals: dict[str, Cost] = defaultdict(Cost)
        for part in [self.other, *self.per_layer]:
            for kind, cost in part.items():
                totals[kind] += cost
        return dict(totals)

    @property
    def total(self) -> Cost:
        """The cost of the whole model."""
        total = Cost()
        for cost in self.by_kind().values():
            total += cost
        return total

    @property
    def parameters(self) -> int:
        """Parameters of the whole model."""
        return self.total.parameters

    @property
    def flops(self) -> int:
        """FLOPs of one forward pass of the whole model."""
        return self.total.flops

    @property
    def bytes(self) -> int:
        """Bytes moved by one forward pass of the whole model."""
        return self.total.bytes

    def to_dict(self) -> dict:
        """The report as a JSON-ready dict."""
        return {
            "batch_size": self.batch_size,
            "seq_len": self.seq_len,
            "total": self.total.to_dict(),
            "by_kind": {k: c.to_dict() for k, c in self.by_kind().items()},
            "per_layer": [{k: c.to_dict() for k, c in layer.items()} for layer in self.per_layer],
        }


def _matmul(m: int, k: int, n: int, batch: int, bpe: int) -> Cost:
    """``batch`` products of ``(m, k) @ (k, n)``."""
    return Cost(0, 2 * batch * m * k * n, bpe * batch * (m * k + k * n + m * n))


def _linear(tokens: int, fan_in: int, fan_out: int, bpe: int) -> Cost:
    cost = _matmul(tokens, fan_in, fan_out, 1, bpe)
    cost.parameters = fan_in * fan_out + fan_out
    return cost


def estimate_costs(
    arch: Architecture,
    *,
    batch_size: int = 1,
    seq_len: int = 128,
    vocab_size: int = REFERENCE_VOCAB_SIZE,
    max_position_embeddings: int = REFERENCE_MAX_POSITIONS,
    type_vocab_size: int = 1,
    relative_positions: bool = True,
    bytes_per_element: int = 4,
) -> CostReport:
    """Analytic costs of ``FlexiBertModel`` (base + pooler) on ``(batch_size, seq_len)`` inputs."""
    B, S, bpe = batch_size, seq_len, bytes_per_element
    h0 = arch.layers[0].hidden
    report = CostReport(batch_size=B, seq_len=S)
    tables = vocab_size + max_position_embeddings + type_vocab_size
    report.other["embeddings"] = Cost(h0 * tables + 2 * h0, 0, bpe * 3 * B * S * h0)
    hiddens = [*arch.hidden_sizes[1:], None]
    for layer, next_hidden in zip(arch.layers, hiddens, strict=True):
        report.per_layer.append(
            _layer_costs(
                layer, next_hidden, B, S, bpe, max_position_embeddings, relative_positions
            )
        )
    h_last = arch.layers[-1].hidden
    pooler = _linear(B, h_last, h_last, bpe)
    report.other["pooler"] = pooler
    return report


def _layer_costs(
    layer: Layer,
    next_hidden: int | None,
    B: int,
    S: int,
    bpe: int,
    max_positions: int,
    relative: bool,
) -> dict[str, Cost]:
    h, n, d, T = layer.hidden, layer.num_heads, layer.head_dim, B * S
    costs: dict[str, Cost] = defaultdict(Cost)
    for _ in range(3):
        costs["qkv"] += _linear(T, h, n * d, bpe)
    if relative:
        rel = _matmul(1, d, S, B * n * S, bpe)
        rel.parameters = (2 * max_positions - 1) * d
        costs["relative_position"] += rel
    counts: dict[str, int] = defaultdict(int)
    for op in layer.ops:
        counts[op] += 1
    for op, g in counts.items():
        costs[op] += _head_costs(op, g, d, B, S, bpe, relative)
    output = _linear(T, n * d, h, bpe)
    output.parameters += 2 * h  # LayerNorm
    costs["attention_output"] += output
    widths = (h, *layer.ff, h)
    for fan_in, fan_out in itertools.pairwise(widths):
        costs["feed_forward"] += _linear(T, fan_in, fan_out, bpe)
    costs["feed_forward"].parameters += 2 * h
    if next_hidden is not None and next_hidden != h:
        costs["projection"] += _linear(T, h, next_hidden, bpe)
    return dict(costs)


def _head_costs(op: str, g: int, d: int, B: int, S: int, bpe: int, relative: bool) -> Cost:
    """Costs of ``g`` heads of operation ``op``, including their token mixing ``P·V``."""
    heads = B * g
    cost = Cost()
    if op.startswith("sa_"):
        cost += _matmul(S, d, S, heads, bpe)  # Q·Kᵀ
        cost += _matmul(S, S, d, heads, bpe)  # P·V
        if op == "sa_wma":
            wma = _matmul(S, d, d, heads, bpe)
            wma.parameters = g * d * d
            cost += wma
        return cost
    cost += _matmul(S if relative else 1, S, d, heads, bpe)  # P·V with s = 0
    if op == "l_dft":
        cost += _matmul(S, d, 2 * d, heads, bpe)  # V·[cos | sin] along d
        cost += _matmul(S, S, d, 2 * heads, bpe)  # cos_S·(V·cos_d), sin_S·(V·sin_d)
    elif op == "l_dct":
        cost += _matmul(S, d, d, heads, bpe)
        cost += _matmul(S, S, d, heads, bpe)
    else:
        k = conv_kernel(op)
        cost += Cost(0, 2 * heads * d * S * k, bpe * heads * (2 * d * S + d * k))  # depthwise
        cost += _matmul(S, d, d, heads, bpe)  # pointwise
        cost += _matmul(S, d, k, heads, bpe)  # kernel logits
        cost += _matmul(S, d, d, heads, bpe)  # Linear(d→d)(V)
        cost += _matmul(d, k, 1, heads * S, bpe)  # window · kernel
        cost.parameters += g * (2 * d * k + 2 * d * d + 2 * d + k)
    return cost


def count_parameters(arch: Architecture, **kwargs) -> int:
    """Parameters of the base encoder plus pooler (reference configuration by default)."""
    return estimate_costs(arch, **kwargs).parameters


def physical_memory_bytes() -> int | None:
    """This machine's physical memory, or ``None`` where the platform does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def check_parameter_memory(
    arch: Architecture,
    *,
    bytes_per_element: int = 4,
    available_bytes: int | None = None,
    limit_name: str = "this machine has",
    **kwargs,
) -> int:
    """The bytes of ``arch``'s parameters; raise before anything is allocated if they exceed
    ``available_bytes`` (default: this machine's physical memory; ``limit_name`` says whose
    limit it is in the message).

    Raises:
        ModelTooLargeError: the parameters alone would not fit.
    """
    parameters = count_parameters(arch, **kwargs)
    needed = parameters * bytes_per_element
    available = physical_memory_bytes() if available_bytes is None else available_bytes
    if available is not None and needed > available:
        raise ModelTooLargeError(
            f"architecture {arch.hash[:12]} needs about {_gib(needed)} for its parameters "
            f"({float(parameters):.3g} parameters × {bytes_per_element} bytes); "
            f"{limit_name} {_gib(available)}"
        )
    return needed


def _gib(n_bytes: int) -> str:
    return f"{n_bytes / 2**30:.3g} GiB"
