"""The co-search benchmark suite: one recorded table, several accuracy landscapes.

A replay table's hardware metrics are measured, but its accuracy is a stand-in (the reference
has GLUE scores for 13 models only). A sampler tuned to one stand-in can lose where users are,
so the suite keeps the hardware and swaps the accuracy for landscapes that differ in kind,
each a deterministic function of the architecture and :data:`SUITE_SEED`:

``stand-in``
    the replay table's own accuracy (:func:`stand_in_accuracy`): smooth in the parameter count,
    plus a little per-architecture noise (σ = 0.004).
``smooth``, ``rugged``
    a random function of the architecture's descriptors (:func:`descriptors`, standardised
    over the table): random Fourier features of a Gaussian-kernel GP with a long (4) and a
    short (1) length scale, scaled to σ = 0.04 around 0.72, plus noise σ = 0.003.
``ops-depth``
    an interaction of operation mix and depth: attention helps deep models, convolutions
    shallow ones, spectral heads the middle; size adds a little.
``noisy``
    the stand-in's mean with heavy noise (σ = 0.02, five times the stand-in's).
``size-blind``
    a random function of the operation mix and layer shape only (length scale 1.5); size adds
    at most 0.005.

Each landscape is searched with the paper objective; the ``capped`` problem searches the
stand-in under a latency cap (:data:`CAP_MS`) that excludes the unconstrained best pair.

The shaped problems (issue 43, :data:`SHAPED_PROBLEMS`) are generated from the ProTran
measurements themselves (:func:`shaped_table`) and shaped like real co-design tables, one
:class:`RealShape` parameter each: ``sparse-devices``, ``needle``, ``reference-norms`` and
``noisy-boards``; ``real-shaped``, all four at once, is the suite's hardest problem.

Learning curves (issue 42, :func:`with_curves`) give a table's rows the accuracy at each rung of
the training, so a search with a pruner replays in seconds.

:func:`suite_run` runs one sampler on one problem and :func:`summarise` aggregates runs into
simple regret after each of :data:`MARKS`, evaluations to within :data:`EPSILON` of the best and
to the best pair itself (a run that never evaluated it counts as ``budget + 1`` and a miss).
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgetran.metrics import COST_KEYS, with_unit_keys
from edgetran.search.evaluators import ReplayEvaluator
from edgetran.search.objectives import Constraints, PaperObjective
from edgetran.search.settings import BoshcodeSettings
from edgetran.space import Architecture
from edgetran.space.costs import estimate_costs
from edgetran.space.ops import op_type

#: The seed every landscape is drawn from (the issue number that asked for the suite).
SUITE_SEED = 14
LANDSCAPES = ("stand-in", "smooth", "rugged", "ops-depth", "noisy", "size-blind")
#: Latency cap of the ``capped`` problem (ms per sequence): the stand-in's best pair, on the
#: M1 Pro GPU, takes longer; the A100's pairs and the quicker M1 GPU pairs remain.
CAP_MS = 10.0
#: Evaluations after which the suite reports the simple regret.
MARKS = (25, 50, 100, 150)
#: Training costs (full trainings) at which the time-to-quality benchmark reports the regret.
COST_MARKS = (10, 25, 50, 100)
#: "Within ε of the best" (objective units) of the evaluations-to-ε count; the exact best pair
#: is counted by key.
EPSILON = 0.001

_CENTRE, _SCALE, _NOISE = 0.72, 0.04, 0.003
_FOURIER_FEATURES = 256


@dataclass(frozen=True)
class RealShape:
    """How a table generated from the ProTran measurements (:func:`shaped_table`) is shaped like
    a real co-design table; all ``False`` is the clean dense table (every architecture on every
    board, costs on the boards' trends, the objective normalised by the table's costs).

    Attributes:
        sparse_devices: each architecture offered only where ProTran measured it (16 of 675
            on all five boards, the rest on one), as in the reference's 670 of 686.
        needle: the accuracies above their 75th percentile squeezed into a plateau
            :data:`PLATEAU_WIDTH` wide, and the best pair's architecture lifted
            :data:`NEEDLE_GAP` above it: one best model.
        reference_norms: the paper objective with the reference's normalisers (1000 s,
            2000 J, 300 W), under which accuracy and peak power carry almost all the variation.
        noisy_boards: each cost times ``exp(N(0, σ))``, σ the board's spread between
            near-identical models (:func:`board_noise`).
    """

    sparse_devices: bool = False
    needle: bool = False
    reference_norms: bool = False
    noisy_boards: bool = False

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, bool):
                raise ValueError(f"{name}={value!r}; allowed: true, false")


@dataclass(frozen=True)
class Problem:
    """A landscape searched with the paper objective under ``constraints``; with ``shape``, on
    a table generated from the ProTran measurements (:func:`shaped_table`)."""

    name: str
    landscape: str
    constraints: Constraints = field(default_factory=Constraints)
    shape: RealShape | None = None


LANDSCAPE_PROBLEMS = (
    *(Problem(name, name) for name in LANDSCAPES),
    Problem("capped", "stand-in", Constraints(max_latency_ms=CAP_MS)),
)
SHAPED_PROBLEMS = (
    Problem("sparse-devices", "stand-in", shape=RealShape(sparse_devices=True)),
    Problem("needle", "stand-in", shape=RealShape(needle=True)),
    Problem("reference-norms", "stand-in", shape=RealShape(reference_norms=True)),
    Problem("noisy-boards", "stand-in", shape=RealShape(noisy_boards=True)),
    Problem("real-shaped", "stand-in", shape=RealShape(True, True, True, True)),
)
PROBLEMS = (*LANDSCAPE_PROBLEMS, *SHAPED_PROBLEMS)


# -- landscapes ---------------------------------------------------------------------------------
def stand_in_accuracy(arch: Architecture) -> float:
    """The replay table's accuracy: ``0.60 + 0.20·σ((log10(params) − 7.6)/0.25) + 0.03·(share
    of attention heads) + 0.01·(share of DFT/DCT heads) − 0.01·|layers − 8|/8 + N(0, 0.004)``
    seeded by the architecture hash."""
    noise = np.random.default_rng(int(arch.hash[:8], 16)).normal(0, 0.004)
    return _stand_in_mean(arch) + noise


def _stand_in_mean(arch: Architecture) -> float:
    params = estimate_costs(arch, batch_size=1, seq_len=128).parameters
    shares = _op_shares(arch)
    size = 1 / (1 + math.exp(-(math.log10(params) - 7.6) / 0.25))
    depth = abs(arch.num_layers - 8) / 8
    return 0.60 + 0.20 * size + 0.03 * shares["sa"] + 0.01 * shares["l"] - 0.01 * depth


def _op_shares(arch: Architecture) -> dict[str, float]:
    ops = [op for layer in arch.layers for op in layer.ops]
    return {kind: sum(op_type(op) == kind for op in ops) / len(ops) for kind in ("sa", "l", "c")}


#: Names of :func:`descriptors`' columns; the first ``len(SHAPE_DESCRIPTORS)`` ignore size.
SHAPE_DESCRIPTORS = (
    "share_sa_sdp",
    "share_sa_wma",
    "share_l_dft",
    "share_l_dct",
    "share_conv",
    "heads_per_layer",
    "hidden_relative_spread",
    "attention_in_second_half",
)
DESCRIPTORS = (*SHAPE_DESCRIPTORS, "layers", "log10_parameters", "hidden_mean", "log_ff_width")


def descriptors(arch: Architecture) -> np.ndarray:
    """The architecture as :data:`DESCRIPTORS`: operation shares, shape and size."""
    ops = [op for layer in arch.layers for op in layer.ops]
    kinds = ["conv" if op_type(op) == "c" else op for op in ops]
    hidden = np.array(arch.hidden_sizes, dtype=float)
    half = arch.layers[len(arch.layers) // 2 :]
    late_ops = [op for layer in half for op in layer.ops]
    params = estimate_costs(arch, batch_size=1, seq_len=128).parameters
    return np.array(
        [
            *(kinds.count(kind) / len(ops) for kind in ("sa_sdp", "sa_wma", "l_dft", "l_dct")),
            kinds.count("conv") / len(ops),
            len(ops) / arch.num_layers,
            float(hidden.std() / hidden.mean()),
            sum(op_type(op) == "sa" for op in late_ops) / len(late_ops),
            arch.num_layers,
            math.log10(params),
            float(hidden.mean()),
            math.log(np.mean([sum(layer.ff) for layer in arch.layers])),
        ]
    )


def landscape_accuracies(
    archs: Sequence[Architecture], landscape: str, seed: int = SUITE_SEED
) -> dict[str, float]:
    """``architecture hash → accuracy`` on ``landscape``, deterministic for the architectures
    and ``seed`` (descriptors are standardised over ``archs``)."""
    if landscape not in LANDSCAPES:
        raise ValueError(f"landscape {landscape!r}; allowed: {', '.join(LANDSCAPES)}")
    archs = list({a.hash: a for a in archs}.values())
    if landscape == "stand-in":
        return {a.hash: stand_in_accuracy(a) for a in archs}
    noise = _noise(archs, landscape, seed, 0.02 if landscape == "noisy" else _NOISE)
    if landscape == "noisy":
        mean = np.array([_stand_in_mean(a) for a in archs])
    else:
        mean = _CENTRE + _SCALE * _standardised(_signal(archs, landscape, seed))
    return {a.hash: float(np.clip(m + e, 0.0, 1.0)) for a, m, e in zip(archs, mean, noise,
                                                                        strict=True)}  # fmt: skip


def _signal(archs: list[Architecture], landscape: str, seed: int) -> np.ndarray:
    X = np.stack([descriptors(a) for a in archs])
    Z = (X - X.mean(axis=0)) / np.where(X.std(axis=0) > 0, X.std(axis=0), 1.0)
    size = Z[:, DESCRIPTORS.index("log10_parameters")]
    rng = np.random.default_rng([seed, LANDSCAPES.index(landscape)])
    if landscape == "smooth":
        return _fourier(Z, 4.0, rng)
    if landscape == "rugged":
        return _fourier(Z, 1.0, rng)
    if landscape == "size-blind":
        shape = Z[:, : len(SHAPE_DESCRIPTORS)]
        return _standardised(_fourier(shape, 1.5, rng)) + 0.005 / _SCALE * np.tanh(size)
    # ops-depth: depth in [-1, 1] over the table
    layers = X[:, DESCRIPTORS.index("layers")]
    depth = 2 * (layers - layers.min()) / max(np.ptp(layers), 1) - 1
    attention = X[:, 0] + X[:, 1]
    spectral = X[:, 2] + X[:, 3]
    conv = X[:, 4]
    interaction = depth * (attention - conv) + 0.5 * spectral * (1 - depth**2)
    return _standardised(interaction) + 0.25 * size


def _fourier(Z: np.ndarray, length_scale: float, rng: np.random.Generator) -> np.ndarray:
    """A draw of a zero-mean GP with a Gaussian kernel of ``length_scale`` at the rows of Z
    (random Fourier features)."""
    omega = rng.normal(0, 1 / length_scale, (Z.shape[1], _FOURIER_FEATURES))
    phase = rng.uniform(0, 2 * np.pi, _FOURIER_FEATURES)
    weights = rng.normal(0, 1, _FOURIER_FEATURES)
    return np.cos(Z @ omega + phase) @ weights


def _standardised(v: np.ndarray) -> np.ndarray:
    return (v - v.mean()) / (v.std() or 1.0)


def _noise(archs: list[Architecture], landscape: str, seed: int, sigma: float) -> np.ndarray:
    return np.array([
        np.random.default_rng([seed, LANDSCAPES.index(landscape), int(a.hash[:8], 16)]).normal(
            0, sigma)
        for a in archs
    ])  # fmt: skip


def landscape_rows(rows: Sequence[dict], landscape: str, seed: int = SUITE_SEED) -> list[dict]:
    """Replay-table rows (see :mod:`edgetran.search.table`) with the accuracy of
    ``landscape``; the hardware metrics are kept, named with their units (a table with the
    older names comes out with the new ones)."""
    archs = [Architecture.from_dict(row["arch"]) for row in rows]
    accuracy = landscape_accuracies(archs, landscape, seed)
    return [
        {
            **row,
            "metrics": {**with_unit_keys(row["metrics"]), "accuracy": round(accuracy[a.hash], 6)},
        }
        for row, a in zip(rows, archs, strict=True)
    ]


def write_landscape_tables(table: Path, out_dir: Path, seed: int = SUITE_SEED) -> dict[str, Path]:
    """``landscape → path`` of the table rescored on every landscape, written to ``out_dir``."""
    rows = [json.loads(line) for line in table.read_text().splitlines() if line.strip()]
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for landscape in LANDSCAPES:
        path = out_dir / f"{table.stem}-{landscape}.jsonl"
        lines = [json.dumps(row) for row in landscape_rows(rows, landscape, seed)]
        path.write_text("\n".join(lines) + "\n")
        paths[landscape] = path
    return paths


# -- learning curves -----------------------------------------------------------------------------
#: How far below its end a typical curve starts (accuracy at the first rung), and the spread of
#: that gap between architectures (log-normal σ).
CURVE_GAP, CURVE_GAP_SPREAD = 0.08, 0.25
#: The noise of each rung's accuracy (σ), shrinking along the curve to none at its end (the
#: table's accuracy).
CURVE_NOISE = (0.012, 0.008, 0.004, 0.0)
#: A slow starter's gap, times a typical one's; its curve rises late (progress squared).
SLOW_GAP = 3.0


def with_curves(
    rows: Sequence[dict], crossings: float = 0.1, seed: int = SUITE_SEED
) -> list[dict]:
    """``rows`` (a replay table's) with a learning curve each (``curve``: the accuracy at each
    of :data:`~edgetran.search.fidelity.RUNG_FRACTIONS`, the last the row's accuracy), one
    per architecture, deterministic in ``seed``: it rises by a gap of about
    :data:`CURVE_GAP` (log-normal across architectures) over the rungs (geometric, so evenly
    in log steps), with noise :data:`CURVE_NOISE` shrinking along it. A ``crossings`` share of
    the architectures are slow starters, drawn among the most accurate twice as many: their
    gap is :data:`SLOW_GAP` times larger and they rise late, so their curves cross others'
    (they end among the best but start below)."""
    from edgetran.search.fidelity import RUNG_FRACTIONS

    if not 0.0 <= crossings <= 1.0:
        raise ValueError(f"crossings={crossings!r}; expected a share in [0, 1]")
    final = {}
    for row in rows:
        final.setdefault(Architecture.from_dict(row["arch"]).hash, []).append(
            float(with_unit_keys(row["metrics"])["accuracy"])
        )
    ranked = sorted(final, key=lambda h: -max(final[h]))
    n_slow = round(crossings * len(ranked))
    top = ranked[: min(len(ranked), 2 * n_slow)]
    chosen = np.random.default_rng([seed, 42]).permutation(len(top))[:n_slow]
    slow = {top[i] for i in chosen}
    progress = 1.0 + np.log2(RUNG_FRACTIONS) / np.log2(1 / RUNG_FRACTIONS[0])
    out = []
    for row in rows:
        h = Architecture.from_dict(row["arch"]).hash
        rng = np.random.default_rng([seed, 42, int(h[:8], 16)])
        gap = CURVE_GAP * float(np.exp(rng.normal(0.0, CURVE_GAP_SPREAD)))
        rise = progress**2 if h in slow else progress
        gap *= SLOW_GAP if h in slow else 1.0
        noise = rng.normal(0.0, 1.0, len(progress)) * np.array(CURVE_NOISE)
        end = float(with_unit_keys(row["metrics"])["accuracy"])
        curve = np.clip(end - gap * (1.0 - rise) + noise, 0.0, 1.0)
        curve[-1] = end
        out.append({**row, "curve": [round(float(a), 6) for a in curve]})
    return out


# -- tables shaped like real ones ---------------------------------------------------------------
#: The needle's lead over the next model's accuracy, as in the reference's GLUE table.
NEEDLE_GAP = 0.01
#: Accuracies above this quantile are squeezed into the plateau.
PLATEAU_QUANTILE = 0.75
#: How wide the plateau under the needle is (accuracy).
PLATEAU_WIDTH = 0.003

Boards = dict[str, list[tuple[Architecture, dict[str, float]]]]


@dataclass(frozen=True)
class ShapedTable:
    """A generated table: replay-table ``rows``, the objective it is searched with, and the
    needle architecture's hash (``None`` without ``needle``)."""

    rows: list[dict]
    paper: PaperObjective
    needle: str | None = None


def read_boards(data: Path) -> Boards:
    """``device → [(architecture, per-sequence costs)]`` of the ProTran files in ``data``
    (``DEVICE_bB_rR.json``; the device is the file's stem).

    Raises:
        FileNotFoundError: ``data`` holds no ProTran ``*.json`` file.
    """
    from edgetran.profile import read_measurements
    from edgetran.search.live import per_sequence

    files = sorted(Path(data).glob("*.json"))
    if not files:
        raise FileNotFoundError(f"{data}: no ProTran *.json files")
    return {
        path.stem: [
            (Architecture.from_dict(m.model_dict), per_sequence(m))
            for m in read_measurements(path, "protran", None)
        ]
        for path in files
    }


@functools.cache
def _size(arch: Architecture) -> np.ndarray:
    """The trend's regressors: a constant, log FLOPs and log parameters."""
    costs = estimate_costs(arch, batch_size=1, seq_len=128)
    return np.array([1.0, math.log(costs.flops), math.log(costs.parameters)])


def board_trends(boards: Boards) -> dict[str, np.ndarray]:
    """Per device, the least-squares coefficients (one column per cost of :data:`COST_KEYS`) of
    the log costs on a constant, log FLOPs and log parameters."""
    trends = {}
    for device, measured in boards.items():
        X = np.stack([_size(arch) for arch, _ in measured])
        Y = np.log([[costs[k] for k in COST_KEYS] for _, costs in measured])
        trends[device] = np.linalg.lstsq(X, Y, rcond=None)[0]
    return trends


def board_noise(boards: Boards) -> dict[str, np.ndarray]:
    """Per device, the measurement noise σ of each log cost (:data:`COST_KEYS` order), read
    from near-identical models: every model's nearest neighbour on the board in (log FLOPs,
    log parameters) stands in for a repeated measurement (ProTran keeps no repeats), and
    ``σ = median |Δ log cost| / (0.6745·√2)`` (the median absolute difference of two draws)."""
    noise = {}
    for device, measured in boards.items():
        X = np.stack([_size(arch)[1:] for arch, _ in measured])
        Y = np.log([[costs[k] for k in COST_KEYS] for _, costs in measured])
        distance = ((X[:, None] - X[None]) ** 2).sum(axis=-1)
        np.fill_diagonal(distance, np.inf)
        nearest = distance.argmin(axis=1)
        noise[device] = np.median(np.abs(Y - Y[nearest]), axis=0) / (0.6745 * math.sqrt(2))
    return noise


def shaped_table(boards: Boards, shape: RealShape, seed: int = SUITE_SEED) -> ShapedTable:
    """A replay table generated from the ProTran measurements ``boards`` (:func:`read_boards`)
    and shaped by ``shape``; deterministic for ``boards``, ``shape`` and ``seed``.

    Every architecture ProTran measured is offered on every board (``sparse_devices``: only
    where it was measured) at the board's trend (:func:`board_trends`), so that each of
    ``shape``'s departures is the only one; accuracy is the stand-in
    (:func:`stand_in_accuracy`). Without ``reference_norms`` each cost is normalised by its
    largest value in the dense table, so each term of the objective spans its weight.
    """
    archs = {arch.hash: arch for measured in boards.values() for arch, _ in measured}
    size = {h: _size(arch) for h, arch in archs.items()}
    trends = board_trends(boards)
    clean = {(h, d): np.exp(size[h] @ trends[d]) for h in archs for d in boards}
    paper = PaperObjective()
    if not shape.reference_norms:
        paper = paper.with_norms(*np.max(list(clean.values()), axis=0).tolist())
    offered = clean
    if shape.sparse_devices:
        measured = {(arch.hash, d) for d, pairs in boards.items() for arch, _ in pairs}
        offered = {pair: costs for pair, costs in clean.items() if pair in measured}
    if shape.noisy_boards:
        offered = _with_noise(offered, board_noise(boards), seed)
    accuracy = {h: round(stand_in_accuracy(arch), 6) for h, arch in archs.items()}
    needle = None
    if shape.needle:
        accuracy, needle = _needle(accuracy, offered, paper)
    rows = [
        {"arch": archs[h].to_model_dict(), "device": d, "metrics": _metrics(accuracy[h], costs)}
        for (h, d), costs in offered.items()
    ]
    return ShapedTable(rows, paper, needle)


def _with_noise(
    costs: dict[tuple[str, str], np.ndarray], noise: dict[str, np.ndarray], seed: int
) -> dict[tuple[str, str], np.ndarray]:
    """Each pair's costs times ``exp(N(0, σ))``, σ its board's (one draw per pair and seed)."""
    devices = sorted(noise)

    def draw(h: str, d: str) -> np.ndarray:
        rng = np.random.default_rng([seed, devices.index(d), int(h[:8], 16)])
        return np.exp(rng.normal(0, noise[d]))

    return {(h, d): c * draw(h, d) for (h, d), c in costs.items()}


def _metrics(accuracy: float, costs: np.ndarray) -> dict[str, float]:
    """A pair's metrics from its accuracy and its costs in :data:`COST_KEYS` order."""
    return {"accuracy": accuracy, **dict(zip(COST_KEYS, costs.tolist(), strict=True))}


def _needle(
    accuracy: dict[str, float], offered: dict[tuple[str, str], np.ndarray], paper: PaperObjective
) -> tuple[dict[str, float], str]:
    """The accuracies on a plateau with one needle above it, and the needle's hash: the
    architecture of the best pair once the plateau is flat (so it is the best pair after)."""
    values = np.array(list(accuracy.values()))
    floor, top = float(np.quantile(values, PLATEAU_QUANTILE)), float(values.max())
    squeezed = {
        h: round(floor + PLATEAU_WIDTH * (a - floor) / (top - floor), 6) if a > floor else a
        for h, a in accuracy.items()
    }

    def value(pair: tuple[str, str]) -> float:
        return paper.value(_metrics(squeezed[pair[0]], offered[pair]))

    needle = max(offered, key=value)[0]
    squeezed[needle] = round(max(a for h, a in squeezed.items() if h != needle) + NEEDLE_GAP, 6)
    return squeezed, needle


def write_shaped_tables(
    data: Path, out_dir: Path, seed: int = SUITE_SEED
) -> dict[str, tuple[Path, PaperObjective]]:
    """``problem name → (path, objective)`` of every shaped problem's table
    (:data:`SHAPED_PROBLEMS`) from the ProTran files in ``data``, written to ``out_dir``."""
    boards = read_boards(data)
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = {}
    for problem in SHAPED_PROBLEMS:
        table = shaped_table(boards, problem.shape, seed)
        path = out_dir / f"shaped-{problem.name}.jsonl"
        path.write_text("\n".join(json.dumps(row) for row in table.rows) + "\n")
        tables[problem.name] = (path, table.paper)
    return tables


# -- runs ---------------------------------------------------------------------------------------
def best_pair(
    evaluator: ReplayEvaluator, constraints: Constraints, paper: PaperObjective | None = None
) -> tuple[str, float]:
    """The key and paper objective (``paper``, default the reference's) of the table's best
    pair within ``constraints``."""
    objective = paper or PaperObjective()
    feasible = [k for k, (_, m) in evaluator.table.items() if not constraints.violations(m)]
    key = max(feasible, key=lambda k: objective.value(evaluator.table[k][1]))
    return key, objective.value(evaluator.table[key][1])


def suite_run(
    evaluator: ReplayEvaluator,
    problem: Problem,
    sampler: str,
    seed: int,
    budget: int,
    boshcode: BoshcodeSettings | None = None,
    label: str | None = None,
    paper: PaperObjective | None = None,
) -> dict[str, Any]:
    """One search of ``problem``'s table under ``paper`` (default the reference's objective);
    ``history`` holds each evaluation's objective (None where it broke the constraints),
    ``best`` the table's best feasible objective and ``to_best_pair`` the 1-based evaluation
    at which that pair was first evaluated (None when never)."""
    from edgetran.search.study import SearchSettings, run_search

    paper = paper or PaperObjective()
    best_key, best = best_pair(evaluator, problem.constraints, paper)
    settings = SearchSettings(
        sampler=sampler,
        budget=budget,
        seed=seed,
        paper=paper,
        constraints=problem.constraints,
        boshcode=boshcode or BoshcodeSettings(),
    )
    began = time.perf_counter()
    result = run_search(evaluator, settings)
    keys = [r.pair.key for r in result.records]
    history = [r.value if r.feasible else None for r in result.records]
    return {
        "problem": problem.name,
        "sampler": label or sampler,
        "seed": seed,
        "budget": budget,
        "to_best_pair": keys.index(best_key) + 1 if best_key in keys else None,
        "best": best,
        "history": history,
        "seconds": time.perf_counter() - began,
        "seconds_per_proposal": float(np.mean(result.seconds_per_proposal)),
    }


class _Spent(Exception):
    """The cost budget of a :func:`cost_run` is spent (stops the search from its callback)."""


def cost_run(
    evaluator: ReplayEvaluator,
    problem: Problem,
    sampler: str,
    pruner: str,
    seed: int,
    cost: float,
    boshcode: BoshcodeSettings | None = None,
    paper: PaperObjective | None = None,
) -> dict[str, Any]:
    """One search of ``problem``'s table (with learning curves) under ``pruner`` until its
    training cost reaches ``cost`` full trainings: each evaluation costs the fidelity it
    reached (1.0 complete, a pruned one its rung's fraction). ``history`` holds each
    evaluation's objective (None where it broke the constraints or was pruned: a pruned pair
    is never an answer), ``costs`` each evaluation's cost, ``best`` the table's best feasible
    objective; ``sampler`` is labelled ``sampler+pruner``."""
    from edgetran.search.fidelity import RUNG_FRACTIONS
    from edgetran.search.study import SearchSettings, run_search

    paper = paper or PaperObjective()
    _, best = best_pair(evaluator, problem.constraints, paper)
    budget = min(len(evaluator.table), math.ceil(cost / RUNG_FRACTIONS[0]))
    settings = SearchSettings(
        sampler=sampler, budget=budget, seed=seed, paper=paper,
        constraints=problem.constraints, boshcode=boshcode or BoshcodeSettings(), pruner=pruner,
    )  # fmt: skip
    records: list = []

    def spend(_: int, record) -> None:
        records.append(record)
        if sum(r.fidelity for r in records) >= cost - 1e-9:
            raise _Spent

    began = time.perf_counter()
    with contextlib.suppress(_Spent):
        run_search(evaluator, settings, on_evaluation=spend)
    return {
        "problem": problem.name,
        "sampler": f"{sampler}+{pruner}",
        "seed": seed,
        "cost": cost,
        "best": best,
        "history": [None if r.pruned or not r.feasible else r.value for r in records],
        "costs": [r.fidelity for r in records],
        "distinct": len({r.pair.key for r in records}),
        "seconds": time.perf_counter() - began,
    }


def regret_at_cost(run: dict[str, Any], cost: float) -> float | None:
    """Simple regret once ``cost`` full trainings are spent: the table's best minus the best
    complete, feasible value among the evaluations finished within it (infinite while none;
    None when the run spent less)."""
    spent = np.cumsum(run["costs"])
    if not len(spent) or spent[-1] < cost - 1e-9:
        return None
    within = int(np.searchsorted(spent, cost + 1e-9))
    found = best_after(run["history"], within)
    return math.inf if found is None else max(run["best"] - found, 0.0)


def cost_to_regret(run: dict[str, Any], regret: float) -> float:
    """The training cost after which the run's regret is at most ``regret`` (inf: never)."""
    spent = np.cumsum(run["costs"])
    for i, value in enumerate(run["history"]):
        if value is not None and run["best"] - value <= regret + 1e-12:
            return float(spent[i])
    return math.inf


def cost_summary(
    runs: Iterable[dict[str, Any]], marks: Sequence[float] = COST_MARKS
) -> list[dict[str, Any]]:
    """One row per (problem, sampler+pruner) of :func:`cost_run`'s runs: the median regret at
    each cost mark; ``target``, the median final regret of the same sampler's runs without a
    pruner (``sampler+none``); ``to_target``, the median cost to reach it (inf when over half
    never did) and ``ratio``, that cost over the no-pruner runs' own; and the median number of
    distinct candidates evaluated."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for run in runs:
        groups.setdefault((run["problem"], run["sampler"]), []).append(run)
    rows = []
    for (problem, label), mine in groups.items():
        sampler = label.rsplit("+", 1)[0]
        base = groups.get((problem, f"{sampler}+none"), [])
        finals = [regret_at_cost(r, r["cost"]) for r in base]
        target = float(np.median(finals)) if base and None not in finals else None
        to_target = (
            None if target is None
            else float(np.median([cost_to_regret(r, target) for r in mine]))
        )  # fmt: skip
        own = (
            None if target is None
            else float(np.median([cost_to_regret(r, target) for r in base]))
        )  # fmt: skip
        regret = _median_regrets(mine, marks, regret_at_cost)
        rows.append({
            "problem": problem,
            "sampler": label,
            "runs": len(mine),
            "regret": regret,
            "target": target,
            "to_target": to_target,
            "ratio": to_target / own if own and math.isfinite(own) else None,
            "distinct": float(np.median([r["distinct"] for r in mine])),
        })  # fmt: skip
    return rows


def _median_regrets(
    runs: Sequence[dict[str, Any]],
    marks: Sequence[float],
    regret: Callable[[dict[str, Any], float], float | None],
) -> dict[float, float | None]:
    """``mark → the runs' median regret there`` (``None`` where a run did not get so far)."""
    out: dict[float, float | None] = {}
    for mark in marks:
        values = [regret(r, mark) for r in runs]
        out[mark] = None if None in values else float(np.median(values))
    return out


def cost_table(rows: Sequence[dict[str, Any]]) -> str:
    """:func:`cost_summary`'s rows as a Markdown table."""
    marks = list(rows[0]["regret"]) if rows else list(COST_MARKS)
    lines = [
        "| problem | sampler+pruner | runs | "
        + " | ".join(f"median regret at cost {m:g}" for m in marks)
        + " | no-pruner median final regret | median cost to reach it | × no-pruner's | "
        "median distinct candidates |",
        "|---|---|---|" + "---|" * len(marks) + "---|---|---|---|",
    ]
    for row in rows:
        regret = " | ".join(_regret_cell(row["regret"][m]) for m in marks)
        target = _regret_cell(row["target"])
        to = "–" if row["to_target"] is None else f"{row['to_target']:.3g}"
        ratio = "–" if row["ratio"] is None else f"{row['ratio']:.2f}"
        lines.append(
            f"| {row['problem']} | {row['sampler']} | {row['runs']} | {regret} | {target} | "
            f"{to} | {ratio} | {row['distinct']:g} |"
        )
    return "\n".join(lines)


def run_key(run: dict[str, Any]) -> tuple[str, str, int]:
    """What identifies a run in a results file: problem, sampler label and seed."""
    return run["problem"], run["sampler"], run["seed"]


def read_runs(path: Path) -> list[dict[str, Any]]:
    """The runs of a JSON Lines results file (none when it does not exist yet)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def best_after(history: Sequence[float | None], evaluations: int) -> float | None:
    """The best feasible value among the first ``evaluations`` (None when none is feasible)."""
    feasible = [v for v in history[:evaluations] if v is not None]
    return max(feasible) if feasible else None


def regret_after(run: dict[str, Any], evaluations: int) -> float | None:
    """Simple regret after ``evaluations``: the table's best minus the best feasible value
    found so far (infinite while none is feasible; None when the run is shorter)."""
    if len(run["history"]) < evaluations:
        return None
    found = best_after(run["history"], evaluations)
    return math.inf if found is None else max(run["best"] - found, 0.0)


def to_within(run: dict[str, Any], epsilon: float) -> int | None:
    """The 1-based evaluation that first came within ``epsilon`` of the best (None: never)."""
    best = run["best"] - epsilon
    return next((i + 1 for i, v in enumerate(run["history"]) if v is not None and v >= best), None)


def summarise(
    runs: Iterable[dict[str, Any]], marks: Sequence[int] = MARKS
) -> list[dict[str, Any]]:
    """One row per (problem, sampler), in first-seen order: ``runs``; ``regret``, the median
    simple regret after each of ``marks`` (None where a run is shorter); ``to_epsilon`` and
    ``to_best``, the median evaluations to within :data:`EPSILON` of the best and to the best
    pair, a run that never got there counted as ``budget + 1``; ``to_best_p90``, the 90th
    percentile of the latter (the tail a user of one seed risks); ``misses``, the runs that
    never evaluated the best pair; and the mean seconds per proposal."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for run in runs:
        groups.setdefault((run["problem"], run["sampler"]), []).append(run)
    rows = []
    for (problem, sampler), mine in groups.items():
        regret = _median_regrets(mine, marks, regret_after)
        to_best = [r["to_best_pair"] or r["budget"] + 1 for r in mine]
        rows.append({
            "problem": problem,
            "sampler": sampler,
            "runs": len(mine),
            "budget": max(r["budget"] for r in mine),
            "regret": regret,
            "to_epsilon": float(np.median([to_within(r, EPSILON) or r["budget"] + 1
                                           for r in mine])),
            "to_best": float(np.median(to_best)),
            "to_best_p90": float(np.percentile(to_best, 90)),
            "misses": sum(r["to_best_pair"] is None for r in mine),
            "seconds_per_proposal": float(np.mean([r["seconds_per_proposal"] for r in mine])),
        })  # fmt: skip
    return rows


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """:func:`summarise`'s rows as the Markdown table of BENCHMARKS.md (a median beyond the
    budget, i.e. over half the runs missed, shows as ``> budget``)."""
    marks = list(rows[0]["regret"]) if rows else list(MARKS)
    lines = [
        "| problem | sampler | runs | "
        + " | ".join(f"median regret after {m}" for m in marks)
        + f" | median evaluations to within {EPSILON:g} | median evaluations to best pair | "
        "90th percentile | misses | s/proposal |",
        "|---|---|---|" + "---|" * len(marks) + "---|---|---|---|---|",
    ]
    for row in rows:
        regret = " | ".join(_regret_cell(row["regret"][m]) for m in marks)
        lines.append(
            f"| {row['problem']} | {row['sampler']} | {row['runs']} | {regret} | "
            f"{_evaluations_cell(row['to_epsilon'], row['budget'])} | "
            f"{_evaluations_cell(row['to_best'], row['budget'])} | "
            f"{_evaluations_cell(row['to_best_p90'], row['budget'])} | {row['misses']} | "
            f"{row['seconds_per_proposal']:.3f} |"
        )
    return "\n".join(lines)


def _regret_cell(regret: float | None) -> str:
    if regret is None:
        return "–"
    return "∞" if math.isinf(regret) else f"{regret:.5f}"


def _evaluations_cell(median: float, budget: int) -> str:
    return f"{median:g}" if median <= budget else f"> {budget}"
