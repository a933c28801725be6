"""GPTran's grow-and-prune loop, hardware-aware, as a resumable search tree (reference §6).

Each iteration takes the next mode of the schedule, proposes children of the current node,
gives each its parent's weights (ordered transfer; new layer projections start as the identity
on the shared dimensions), continues MLM pretraining for the mode's steps at the mode's rate,
and scores it by its MLM loss on held-out text of the task (one fixed mask, so every node is
measured alike; the reference took the mean of the last training losses).

Acceptance (``acceptance="hardware"``, the default). A child is *feasible* when its latency,
energy and peak power on the target device (measured where the device is live, else the upper
end of the surrogate's 90% interval) are within the budgets.

- A grow child is accepted when it is feasible and lowers the parent's loss (the lowest-loss
  such child); one over budget is not trained.
- A prune child is accepted when it is feasible, its loss is within ``loss_tolerance`` of its
  parent's and it lowers a cost (latency, energy or peak power; see below which are compared).
- While the current node violates a budget (the root can), grow modes are skipped, and a prune
  child is accepted when it reduces the violation (the sum over budgets of the relative excess),
  whatever its loss, or when it lowers a cost at a loss within the tolerance.

A cost is lowered when a compared metric is lower or, failing that, the analytic FLOPs are: one
prune step saves a few percent, below what a live latency on a busy CPU resolves (measured
benchmark: ±10%), so prune children are always trained and judged on both.

The *best* node is the cheapest feasible accepted node (mean cost relative to the root) among
those whose loss is within ``loss_tolerance`` of the lowest feasible loss; costs are compared on
the metrics measured, where there are any (a live CPU measures latency; its energy and peak
power are estimates), else on the predicted ones; while none is feasible, the one closest to
the budgets. When no child is accepted, the search backtracks to the best node; it stops after
``iterations`` iterations, or after ``patience`` iterations in a row that leave the best node
unchanged (a change resets the count).

``acceptance="loss"`` is the reference's rule, for comparison: a grow child is accepted when its
loss is the lowest in the tree, a prune child always (its "soft reduction"), costs are recorded
but not checked, and the best node is the lowest loss. Its bugs stay fixed: a failed grow step
backtracks instead of raising, and the patience count is reset on improvement.

Every node and every finished iteration is stored in the workspace database as soon as it
exists; a killed search resumes (``resume=True``) where it stopped, and a child trained before
the kill, or killed while training, is not trained again (pretraining resumes from its own
checkpoint).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgetran.configs import JsonConfig
from edgetran.errors import ModelNotFoundError, read_json_file
from edgetran.growprune.costs import (
    COST_METRICS,
    CostEstimate,
    DeviceCosts,
    SurrogateDevice,
    resolve_device,
)
from edgetran.growprune.modes import GrowPruneError, Mode, Proposal
from edgetran.growprune.schedule import DEFAULT_SCHEDULE, build_schedule
from edgetran.model import FlexiBertForMaskedLM, saved_model_config
from edgetran.model.transfer import transfer_weights
from edgetran.seeding import torch_seeded
from edgetran.space import Architecture
from edgetran.space.costs import count_parameters, estimate_costs
from edgetran.store import Store
from edgetran.train.data import TokenisedTexts
from edgetran.train.oracle import BUDGETS, DEFAULT_WORKSPACE, budget_settings, model_dir
from edgetran.train.pretrain import (
    PretrainSettings,
    build_mlm_model,
    max_positions,
    mlm_eval_loss,
    pretrain,
)
from edgetran.train.tasks import Task, load_task, task_key

#: A budget scales the reference's extra steps per mode by this factor (ratios are kept).
STEP_SCALES = {"quick": 1e-3, "standard": 1e-2, "full": 1e-1}
#: The reference pretrained at 1e-4 and grew at 1e-5 to 5e-5; a budget's own pretraining rate
#: scales the modes' rates by the same ratio.
REFERENCE_PRETRAIN_LR = 1e-4
#: The reference warmed up each child for 1,000 steps.
REFERENCE_WARMUP_STEPS = 1000
ACCEPTANCE = ("hardware", "loss")
TRANSFER_MODES = ("ordered", "random_projection")
#: Budget option → (cost metric, factor from the option's unit to the metric's).
BUDGET_OPTIONS = {
    "max_latency_ms": ("latency_s", 1e-3),
    "max_energy_mj": ("energy_j", 1e-3),
    "max_peak_power_w": ("peak_power_w", 1.0),
}
_UNITS = {"latency_s": (1e3, "ms"), "energy_j": (1e3, "mJ"), "peak_power_w": (1.0, "W")}


@dataclass(frozen=True)
class GrowPruneSettings(JsonConfig):
    """How to grow and prune; validated on construction, JSON round-tripping.

    Attributes:
        budget: ``quick``, ``standard`` or ``full``: the root's pretraining (when it is an
            architecture) and each mode's steps (the reference's × :data:`STEP_SCALES`).
        iterations: iterations at most.
        patience: stop after this many iterations in a row without a new best node.
        loss_tolerance: a pruned child may raise its parent's loss by this share.
        acceptance: ``hardware`` (budgets and costs) or ``loss`` (the reference's rule).
        max_latency_ms, max_energy_mj, max_peak_power_w: budgets per sequence (``None``: none).
        schedule: mode names or ``{mode: NAME, PARAM: VALUE}`` entries (see ``schedule``).
        children: children of each grow step (``None``: each mode's own, 5 by default).
        transfer_mode: ``ordered`` or ``random_projection`` (the reference's).
        step_scale: the share of the reference's steps each mode trains (``None``: the
            budget's, :data:`STEP_SCALES`); tests and smoke runs set it lower.
        continue_schedule: a child's learning rate continues its parent's schedule from the
            parent's cumulative step (the reference's rule: a child of a long-trained parent
            trains at a small share of the mode's rate); ``False`` gives each child its own
            warm-up and decay over its extra steps.
        eval_texts: held-out texts (the task's dev split) the MLM loss is measured on.
        seed: seed of the proposals, transfers and training.
        workspace: folder of tokenizers and checkpoints (as the accuracy oracle's).
        tokenizer: a local tokenizer for an architecture root (default: WordPiece trained here).
    """

    config_error = GrowPruneError
    setting_name = "grow-and-prune setting"

    budget: str = "quick"
    iterations: int = 8
    patience: int = 5
    loss_tolerance: float = 0.01
    acceptance: str = "hardware"
    max_latency_ms: float | None = None
    max_energy_mj: float | None = None
    max_peak_power_w: float | None = None
    schedule: tuple[Any, ...] = DEFAULT_SCHEDULE
    children: int | None = None
    transfer_mode: str = "ordered"
    step_scale: float | None = None
    continue_schedule: bool = True
    eval_texts: int = 512
    seed: int = 0
    workspace: str = DEFAULT_WORKSPACE
    tokenizer: str | None = None

    def __post_init__(self) -> None:
        if self.budget not in STEP_SCALES:
            raise GrowPruneError(
                f"budget={self.budget!r} is invalid; allowed: {', '.join(STEP_SCALES)}"
            )
        for name in ("iterations", "patience", "eval_texts"):
            _positive_int(name, getattr(self, name))
        if self.children is not None:
            _positive_int("children", self.children)
        if self.step_scale is not None and (not _number(self.step_scale) or self.step_scale <= 0):
            raise GrowPruneError(
                f"step_scale={self.step_scale!r} is invalid; allowed: a number > 0"
            )
        if not _number(self.loss_tolerance) or not 0 <= self.loss_tolerance < 1:
            raise GrowPruneError(
                f"loss_tolerance={self.loss_tolerance!r} is invalid; allowed: a number in [0, 1)"
            )
        for name, allowed in (("acceptance", ACCEPTANCE), ("transfer_mode", TRANSFER_MODES)):
            if getattr(self, name) not in allowed:
                raise GrowPruneError(
                    f"{name}={getattr(self, name)!r} is invalid; allowed: {', '.join(allowed)}"
                )
        for name in BUDGET_OPTIONS:
            value = getattr(self, name)
            if value is not None and (not _number(value) or value <= 0):
                raise GrowPruneError(f"{name}={value!r} is invalid; allowed: a number > 0")
        schedule = self.schedule
        if isinstance(schedule, str) or not isinstance(schedule, Sequence):
            raise GrowPruneError("schedule: expected a non-empty list of modes")
        object.__setattr__(self, "schedule", tuple(schedule))
        self.modes()  # unknown modes and parameters fail here, before any work

    def modes(self) -> list[Mode]:
        """The schedule's modes, built (unknown modes or parameters raise)."""
        return build_schedule(self.schedule, children=self.children)

    @property
    def limits(self) -> dict[str, float]:
        """Cost metric → budget, in the metric's unit."""
        return {
            metric: getattr(self, option) * factor
            for option, (metric, factor) in BUDGET_OPTIONS.items()
            if getattr(self, option) is not None
        }


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise GrowPruneError(f"{name}={value!r} is invalid; allowed: an integer ≥ 1")


def mode_pretrain_settings(
    mode: Mode, budget: str, seed: int, step_scale: float | None = None, start_step: int = 0
) -> PretrainSettings:
    """The continued MLM of a child of ``mode``: the reference's steps and rate, scaled; the
    batch and sequence length of the budget's pretraining (whatever its number of steps); the
    schedule entered at ``start_step`` (the parent's cumulative step) with the reference's
    1,000 warm-up steps (scaled) counted from step 0."""
    b = BUDGETS[budget]
    scale = STEP_SCALES[budget] if step_scale is None else step_scale
    steps = max(1, round(mode.reference_steps * scale))
    return PretrainSettings(
        steps=steps,
        batch_size=b.pretrain_batch_size,
        max_length=b.max_length,
        learning_rate=mode.reference_learning_rate
        * b.pretrain_learning_rate
        / REFERENCE_PRETRAIN_LR,
        warmup_ratio=min(0.5, REFERENCE_WARMUP_STEPS / mode.reference_steps),
        checkpoint_every=max(10, steps // 10),
        seed=seed,
        start_step=start_step,
    )


# -- results ------------------------------------------------------------------------------------
@dataclass
class GrowPruneResult:
    """What :func:`grow_and_prune` found.

    Attributes:
        run: the search's key in the database.
        root, final: node records (``model_dict``, ``hash``, ``loss``, ``parameters`` (base
            encoder and pooler, with the model's own vocabulary), ``costs`` with
            measured/predicted flags, ``path`` …).
        iterations: one record per iteration: ``mode``, ``parent``, ``children`` (node records
            with ``accepted`` and ``why``), ``accepted`` (node id or ``None``), ``best``.
        stopped: ``iterations`` or ``patience``.
        root_violates: the budgets the root violates (it is pruned towards them).
        out: the output folder, if one was written.
    """

    run: str
    device: str
    settings: dict[str, Any]
    root: dict[str, Any]
    final: dict[str, Any]
    iterations: list[dict[str, Any]]
    stopped: str
    root_violates: list[str] = field(default_factory=list)
    out: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The result as a JSON-ready dict."""
        return asdict(self)


# -- the root -----------------------------------------------------------------------------------
@dataclass
class _Root:
    path: Path
    tokenizer: Any
    tokenizer_id: str
    arch: Architecture
    trained_steps: int
    max_length: int


def _root_from_dir(directory: Path) -> tuple[Any, str]:
    """A saved FlexiBERT model's tokenizer and its identifier; typed errors otherwise."""
    from transformers import AutoTokenizer

    config = saved_model_config(directory)
    try:
        tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    except (OSError, ValueError):
        raise ModelNotFoundError(
            f"{directory}: holds no tokenizer; save the model with its tokenizer "
            "(edgetran train pretrain does)"
        ) from None
    vocab = config.get("vocab_size")
    if vocab != len(tokenizer):
        raise ModelNotFoundError(
            f"{directory}: the model's vocab_size {vocab} differs from its tokenizer's "
            f"{len(tokenizer)}"
        )
    record = directory / "pretrain.json"
    tokenizer_id = None
    if record.is_file():
        tokenizer_id = read_json_file(record, ModelNotFoundError).get("tokenizer")
    return tokenizer, tokenizer_id or f"dir:{directory.resolve()}"


def _max_length(positions: int, budget: str) -> int:
    """The sequence length children train at: the budget's, unless the root's position table
    asks for another (children must have the root's, or relative distances would shift)."""
    wanted = BUDGETS[budget].max_length
    if max_positions(wanted) == positions:
        return wanted
    if positions == 64:  # every length up to 62 builds 64 positions
        return min(wanted, 62)
    if positions > 64:
        return positions - 2
    raise GrowPruneError(
        f"the root has max_position_embeddings={positions}; grow-and-prune needs 64 or more "
        "(a model pretrained by edgetran has them)"
    )


def _prepare_root(
    model: str | Path | Architecture,
    task: Task,
    settings: GrowPruneSettings,
    store: Store,
    emit: Callable[[str], None],
) -> _Root:
    """A saved model directory as it is, or an architecture pretrained in the workspace at the
    settings' budget (reused when the workspace already holds it)."""
    from edgetran.model import load_model
    from edgetran.space import load_architecture
    from edgetran.train.oracle import pretrain_in_workspace
    from edgetran.train.tokenizer import load_tokenizer

    if not isinstance(model, Architecture) and Path(model).is_dir():
        directory = Path(model)
        tokenizer, tokenizer_id = _root_from_dir(directory)
        loaded = load_model(directory)
        steps = 0
        record = directory / "pretrain.json"
        if record.is_file():
            steps = int(read_json_file(record, ModelNotFoundError).get("steps") or 0)
        positions = loaded.config.max_position_embeddings
        return _Root(
            directory, tokenizer, tokenizer_id, loaded.config.arch, steps,
            _max_length(positions, settings.budget),
        )  # fmt: skip
    arch = model if isinstance(model, Architecture) else load_architecture(str(model))
    workspace = Path(settings.workspace)
    tokenizer, tokenizer_id = load_tokenizer(
        settings.tokenizer, task.corpus(), workspace / "tokenizers"
    )
    root_settings = budget_settings(settings.budget, settings.seed)[0]
    out = model_dir(workspace, arch, tokenizer_id, settings.budget) / "pretrain"
    emit(f"pretraining the root {arch.hash[:12]} ({root_settings.steps} steps) in {out}")
    texts = task.train.subset(root_settings.steps * root_settings.batch_size, settings.seed).texts
    result = pretrain_in_workspace(arch, texts, tokenizer, tokenizer_id, out, root_settings, store)
    return _Root(out, tokenizer, tokenizer_id, arch, result.steps, root_settings.max_length)


# -- the search ---------------------------------------------------------------------------------
def _node_id(parent: str | None, arch: Architecture, salt: str = "") -> str:
    return hashlib.sha256(f"{parent}:{arch.hash}:{salt}".encode()).hexdigest()[:16]


def _seed_of(node: str, seed: int) -> int:
    return (int(node[:8], 16) + seed) % 2**31


def _error_text(step: str, err: Exception) -> str:
    return f"{step} failed: {type(err).__name__}: {' '.join(str(err).split())}"[:500]


def _identity_projections(child: FlexiBertForMaskedLM, parent: FlexiBertForMaskedLM) -> None:
    """A projection between layers that the parent did not have starts as the identity on the
    dimensions the two layers share (the narrowed layer keeps the leading ones)."""
    pairs = zip(child.flexibert.encoder.layer, parent.flexibert.encoder.layer, strict=False)
    for layer, old in pairs:
        projection = layer.projection
        if projection is not None and old.projection is None:
            with torch.no_grad():
                projection.weight.copy_(torch.eye(*projection.weight.shape))
                projection.bias.zero_()


class _Search:
    """One grow-and-prune search: its state, the database and the workspace folders."""

    def __init__(self, root: _Root, task: Task, device: DeviceCosts, settings: GrowPruneSettings,
                 store: Store, emit: Callable[[str], None]) -> None:  # fmt: skip
        self.root_info, self.task, self.device = root, task, device
        self.settings, self.store, self.emit = settings, store, emit
        self.modes = settings.modes()
        self.limits = settings.limits
        self.root_id = _node_id(None, root.arch, str(root.path.resolve()))
        key = {
            "root": self.root_id,
            "task": task_key(task),  # its content: an edited file is another search
            "device": device.name,
            "tokenizer": root.tokenizer_id,
            **{k: v for k, v in settings.to_dict().items() if k not in ("iterations", "patience")},
        }
        self.run = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
        self.key = key
        self.folder = Path(settings.workspace) / "growprune" / self.run[:16]
        rows = settings.eval_texts
        self.eval_data = TokenisedTexts(
            root.tokenizer, task.dev.subset(rows, settings.seed).texts, root.max_length
        )
        self.nodes: dict[str, dict[str, Any]] = {}
        self.models: dict[str, FlexiBertForMaskedLM] = {}

    # -- storage --------------------------------------------------------------------------------
    def open(self, resume: bool) -> list[dict[str, Any]]:
        """Register the run (or reload it with ``resume``); its stored iterations."""
        if self.store.growprune_run(self.run) is not None and not resume:
            done = len(self.store.growprune_iterations(self.run))
            raise GrowPruneError(
                f"the database already holds this grow-and-prune search ({done} iterations, "
                f"run {self.run[:12]}); pass --resume to continue it"
            )
        self.store.add_growprune_run(self.run, self.key)
        self.nodes = {n["node"]: n for n in self.store.growprune_nodes(self.run)}
        return self.store.growprune_iterations(self.run)

    def _keep(self, record: dict[str, Any]) -> dict[str, Any]:
        self.store.add_growprune_node(self.run, record["node"], record)
        self.nodes[record["node"]] = record
        return record

    def model(self, node: str) -> FlexiBertForMaskedLM:
        if node not in self.models:
            self.models.clear()  # one parent in memory at a time
            self.models[node] = FlexiBertForMaskedLM.from_pretrained(self.nodes[node]["path"])
        return self.models[node]

    # -- nodes ----------------------------------------------------------------------------------
    def costs(self, arch: Architecture) -> CostEstimate:
        return self.device.estimate([arch])[0]

    def child_costs(self, arch: Architecture) -> tuple[CostEstimate, str | None]:
        """A child's costs, or unknown costs and why (a failed measurement fails the child,
        not the search)."""
        try:
            return self.costs(arch), None
        except Exception as err:
            if isinstance(err, KeyboardInterrupt):
                raise
            unknown = dict.fromkeys(COST_METRICS)
            return CostEstimate(unknown, dict(unknown), (), "failed"), _error_text("costs", err)

    def violation(self, costs: dict[str, Any]) -> float:
        """Sum over budgets of the relative excess of the upper end (0: within budgets)."""
        total = 0.0
        for metric, limit in self.limits.items():
            upper = costs[metric]["upper"]
            if upper is None:
                return math.inf
            total += max(0.0, upper / limit - 1.0)
        return total

    def over_budget(self, costs: dict[str, Any]) -> list[str]:
        reasons = []
        for metric, limit in self.limits.items():
            upper = costs[metric]["upper"]
            scale, unit = _UNITS[metric]
            if upper is None:
                reasons.append(f"{metric} unknown on {self.device.name}")
            elif upper > limit:
                how = "measured" if costs[metric]["measured"] else "upper 90%"
                reasons.append(
                    f"{metric} {upper * scale:.4g} {unit} ({how}) > {limit * scale:.4g} {unit}"
                )
        return reasons

    def root(self) -> dict[str, Any]:
        if self.root_id in self.nodes:
            return self.nodes[self.root_id]
        info = self.root_info
        self.emit(f"measuring the root {info.arch.hash[:12]} on {self.device.name}")
        model = FlexiBertForMaskedLM.from_pretrained(info.path)
        record = self._record(self.root_id, None, 0, None, "root", info.arch)
        record.update(
            path=str(info.path), trained=True, steps=info.trained_steps,
            loss=mlm_eval_loss(model, self.eval_data, info.tokenizer, seed=self.settings.seed),
        )  # fmt: skip
        return self._keep(record)

    def _record(self, node, parent, iteration, mode, change, arch, costs=None) -> dict[str, Any]:
        costs = (costs or self.costs(arch)).to_dict()
        return {
            "node": node,
            "parent": parent,
            "iteration": iteration,
            "mode": mode,
            "change": change,
            "hash": arch.hash,
            "model_dict": arch.to_model_dict(),
            "flops": estimate_costs(arch).flops,
            "parameters": count_parameters(
                arch,
                vocab_size=len(self.root_info.tokenizer),
                max_position_embeddings=max_positions(self.root_info.max_length),
            ),
            "costs": costs,
            "feasible": not self.over_budget(costs),
            "violation": self.violation(costs),
            "loss": None,
            "steps": None,
            "trained": False,
            "path": None,
            "error": None,
            "seconds": 0.0,
        }

    def child(self, parent: dict[str, Any], mode: Mode, proposal: Proposal, iteration: int,
              train: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:  # fmt: skip
        """The child's node: reused if stored, else costed and (if ``train`` says so) trained."""
        node = _node_id(parent["node"], proposal.arch)
        if node in self.nodes:
            return self.nodes[node]
        costs, error = self.child_costs(proposal.arch)
        record = self._record(node, parent["node"], iteration, mode.name, proposal.change,
                              proposal.arch, costs)  # fmt: skip
        if error is not None:
            record["error"] = error
            return self._keep(record)
        if not train(record):
            return self._keep(record)
        began = time.perf_counter()
        try:
            self._train(record, parent, mode, proposal)
        except Exception as err:  # a failed step is recorded and the search goes on
            if isinstance(err, KeyboardInterrupt):
                raise
            record["error"] = _error_text("training", err)
        record["seconds"] = time.perf_counter() - began
        return self._keep(record)

    def _train(self, record, parent, mode: Mode, proposal: Proposal) -> None:
        info = self.root_info
        arch = proposal.arch
        seed = _seed_of(record["node"], self.settings.seed)
        start = (parent["steps"] or 0) if self.settings.continue_schedule else 0
        settings = mode_pretrain_settings(
            mode, self.settings.budget, seed, self.settings.step_scale, start
        )
        out = self.folder / record["node"]
        init = out / "init"
        if not (out / "pretrain.json").is_file() and not (init / "config.json").is_file():
            with torch_seeded(seed):
                model = build_mlm_model(arch, info.tokenizer, info.max_length)
            share = transfer_weights(
                proposal.source, model, mode=self.settings.transfer_mode, seed=seed
            )
            _identity_projections(model, self.model(parent["node"]))
            partial = out / "init.partial"  # a kill while saving leaves no half-written init
            shutil.rmtree(partial, ignore_errors=True)
            model.save_pretrained(partial)
            (partial / "transfer.json").write_text(json.dumps({"transferred_share": share}))
            os.replace(partial, init)
        texts = self.task.train.subset(settings.steps * settings.batch_size, seed).texts
        result = pretrain(arch, texts, info.tokenizer, info.tokenizer_id, out, settings,
                          init_from=init if init.is_dir() else None)  # fmt: skip
        if init.is_dir():
            shutil.copy(init / "transfer.json", out / "transfer.json")
            shutil.rmtree(init)
        model = FlexiBertForMaskedLM.from_pretrained(out)
        share = json.loads((out / "transfer.json").read_text())["transferred_share"]
        record.update(
            path=str(out),
            trained=True,
            steps=(parent["steps"] or 0) + result.steps,
            train_loss=result.loss,
            transferred_share=share,
            loss=mlm_eval_loss(model, self.eval_data, info.tokenizer, seed=self.settings.seed),
        )


# -- acceptance ---------------------------------------------------------------------------------
def _compared(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The cost metrics two nodes are compared on: those measured on both, if any (a CPU's
    estimated energy and peak power only add the estimate's noise to a measured latency),
    else those both have values for."""
    measured = [m for m in COST_METRICS if a["costs"][m]["measured"] and b["costs"][m]["measured"]]
    return measured or [
        m for m in COST_METRICS if a["costs"][m]["value"] is not None and b["costs"][m]["value"]
    ]


def _lowers_a_cost(child: dict[str, Any], parent: dict[str, Any]) -> bool:
    """A compared cost is lower, or the analytic FLOPs are: one prune step saves a few percent,
    which a live latency on a busy CPU may not resolve."""
    if any(
        child["costs"][m]["value"] < parent["costs"][m]["value"] for m in _compared(child, parent)
    ):
        return True
    flops = child.get("flops"), parent.get("flops")
    return None not in flops and flops[0] < flops[1]


def _relative_cost(node: dict[str, Any], root: dict[str, Any]) -> float:
    ratios = [node["costs"][m]["value"] / root["costs"][m]["value"] for m in _compared(node, root)]
    return float(np.mean(ratios)) if ratios else 1.0


def best_node(accepted: list[dict[str, Any]], root: dict[str, Any], settings) -> dict[str, Any]:
    """The best of the accepted nodes (see the module docstring)."""
    if settings.acceptance == "loss":
        return min(accepted, key=lambda n: n["loss"])
    feasible = [n for n in accepted if n["feasible"]]
    if not feasible:
        return min(accepted, key=lambda n: (n["violation"], n["loss"]))
    lowest = min(n["loss"] for n in feasible)
    band = [n for n in feasible if n["loss"] <= lowest * (1 + settings.loss_tolerance)]
    return min(band, key=lambda n: (_relative_cost(n, root), n["loss"]))


def decide(
    parent: dict[str, Any],
    children: list[dict[str, Any]],
    mode: Mode,
    best: dict[str, Any],
    settings: GrowPruneSettings,
) -> tuple[str | None, dict[str, str]]:
    """The accepted child (or ``None``) and, for every child, why it was or was not."""
    why: dict[str, str] = {}
    candidates = []
    tolerance = settings.loss_tolerance
    for c in children:
        if c["error"]:
            why[c["node"]] = c["error"]
        elif not c["trained"]:
            why[c["node"]] = c.get("why") or "not trained"
        elif settings.acceptance == "loss":
            if mode.kind == "prune" or c["loss"] < best["loss"]:
                candidates.append(c)
            else:
                why[c["node"]] = f"loss {c['loss']:.4f} is not below the best {best['loss']:.4f}"
        elif not parent["feasible"]:
            within = c["loss"] <= parent["loss"] * (1 + tolerance)
            if c["violation"] < parent["violation"] or (within and _lowers_a_cost(c, parent)):
                candidates.append(c)
            else:
                why[c["node"]] = (
                    "neither reduces the budget violation nor lowers a cost within the loss "
                    "tolerance"
                )
        elif not c["feasible"]:
            why[c["node"]] = "over budget: " + "; ".join(c.get("over", []))
        elif mode.kind == "grow":
            if c["loss"] < parent["loss"]:
                candidates.append(c)
            else:
                why[c["node"]] = (
                    f"loss {c['loss']:.4f} does not lower the parent's {parent['loss']:.4f}"
                )
        elif c["loss"] > parent["loss"] * (1 + tolerance):
            why[c["node"]] = (
                f"loss {c['loss']:.4f} exceeds the parent's {parent['loss']:.4f} by more than "
                f"{tolerance:.1%}"
            )
        elif not _lowers_a_cost(c, parent):
            why[c["node"]] = "lowers no cost"
        else:
            candidates.append(c)
    if not candidates:
        return None, why
    chosen = min(candidates, key=lambda c: c["loss"])
    for c in candidates:
        why[c["node"]] = "accepted" if c is chosen else "a sibling has a lower loss"
    if settings.acceptance == "hardware" and not parent["feasible"]:
        how = "reduces" if chosen["violation"] < parent["violation"] else "lowers a cost towards"
        why[chosen["node"]] = (
            f"accepted: {how} the budget violation {parent['violation']:.3f} → "
            f"{chosen['violation']:.3f}"
        )
    return chosen["node"], why


# -- the loop -----------------------------------------------------------------------------------
@dataclass
class _State:
    current: str
    best: str
    accepted: list[str]
    stale: int = 0
    mode_index: int = 0
    iteration: int = 0


def _next_mode(search: _Search, state: _State) -> tuple[Mode, int]:
    """The next mode of the cycle; grow modes are skipped while the current node violates a
    budget (hardware acceptance)."""
    modes = search.modes
    current = search.nodes[state.current]
    for step in range(len(modes)):
        index = (state.mode_index + step) % len(modes)
        if (
            search.settings.acceptance == "loss"
            or current["feasible"]
            or (modes[index].kind == "prune")
        ):
            return modes[index], index
    raise GrowPruneError("no prune mode in the schedule to bring the model within its budgets")


def _apply(state: _State, record: dict[str, Any], index: int) -> None:
    state.iteration = record["iteration"]
    state.mode_index = index + 1
    if record["accepted"] is not None:
        state.accepted.append(record["accepted"])
        state.current = record["accepted"]
    else:
        state.current = record["best"]
    state.stale = 0 if record["improved"] else state.stale + 1
    state.best = record["best"]


def _iterate(search: _Search, state: _State, iteration: int) -> dict[str, Any]:
    mode, index = _next_mode(search, state)
    settings = search.settings
    parent = search.nodes[state.current]
    rng = np.random.default_rng([settings.seed, iteration])
    proposals = mode.propose(search.model(parent["node"]), rng)
    search.emit(
        f"iteration {iteration}: {mode.name} from {parent['node'][:8]} "
        f"(loss {parent['loss']:.4f}), {len(proposals)} children"
    )

    def worth_training(record: dict[str, Any]) -> bool:
        record["over"] = search.over_budget(record["costs"])
        if settings.acceptance == "loss" or mode.kind == "prune":
            return True
        if not record["feasible"]:
            record["why"] = "over budget (not trained): " + "; ".join(record["over"])
            return False
        return True

    children = []
    for k, proposal in enumerate(proposals, start=1):
        child = search.child(parent, mode, proposal, iteration, worth_training)
        children.append(child)
        search.emit(f"  child {k}/{len(proposals)} {proposal.change}: {_summary(child)}")
    accepted, why = decide(parent, children, mode, search.nodes[state.best], settings)
    pool = [search.nodes[n] for n in (*state.accepted, accepted) if n is not None]
    best = best_node(pool, search.nodes[search.root_id], settings)["node"]
    record = {
        "iteration": iteration,
        "mode": mode.name,
        "parent": parent["node"],
        "children": [c["node"] for c in children],
        "why": why,
        "accepted": accepted,
        "best": best,
        "improved": best != state.best,
    }
    search.store.add_growprune_iteration(search.run, iteration, {**record, "mode_index": index})
    verdict = f"accepted {accepted[:8]}" if accepted else f"none accepted, back to {best[:8]}"
    search.emit(f"  {verdict}; best {best[:8]} (loss {search.nodes[best]['loss']:.4f})")
    _apply(state, record, index)
    return record


def _summary(node: dict[str, Any]) -> str:
    if node["error"]:
        return node["error"]
    parts = [f"loss {node['loss']:.4f}"] if node["trained"] else [node.get("why", "not trained")]
    for metric in COST_METRICS:
        entry = node["costs"][metric]
        if entry["value"] is not None:
            scale, unit = _UNITS[metric]
            how = "measured" if entry["measured"] else "est."
            parts.append(f"{metric.split('_')[0]} {entry['value'] * scale:.4g} {unit} ({how})")
    return ", ".join(parts)


def grow_and_prune(
    model: str | Path | Architecture,
    task: str | Task,
    device: str | DeviceCosts | Any,
    settings: GrowPruneSettings = GrowPruneSettings(),
    *,
    store: Store,
    out: str | Path | None = None,
    resume: bool = False,
    on_event: Callable[[str], None] | None = None,
) -> GrowPruneResult:
    """Grow and prune a trained model for a device, within budgets (see the module docstring).

    Args:
        model: a saved FlexiBERT model directory (with its tokenizer), or an architecture (an
            :class:`Architecture`, a name or a JSON file) pretrained first in the workspace at
            the settings' budget.
        task: the task whose text the children are pretrained and scored on.
        device: the target device: a name as ``codesign`` gives it (``cpu/torch``, or a
            device with measurements in ``store``; :func:`~edgetran.growprune.resolve_device`),
            a :class:`DeviceCosts` (``LiveDevice``, ``SurrogateDevice``), or a fitted
            :class:`~edgetran.surrogate.DeviceSurrogate` (predicted costs only).
        settings: see :class:`GrowPruneSettings`.
        store: the workspace database (the tree, live measurements, trained models).
        out: if given, the final model is saved in ``out/model`` (``save_pretrained``, with its
            tokenizer) and the tree in ``out/tree.json``.
        resume: continue the search these arguments define, if the database holds it.
        on_event: called with one line of progress at a time.

    Raises:
        GrowPruneError: the search exists and ``resume`` is not set; a root over budget with
            no prune mode in the schedule.
        ModelNotFoundError: ``model`` is a folder without a FlexiBERT model and tokenizer.
    """
    emit = on_event or (lambda _line: None)
    if isinstance(device, str):
        device = resolve_device(device, store)
    elif not isinstance(device, DeviceCosts):
        device = SurrogateDevice(getattr(device, "device_", "device"), device)
    task = load_task(task) if isinstance(task, str) else task
    root_info = _prepare_root(model, task, settings, store, emit)
    search = _Search(root_info, task, device, settings, store, emit)
    stored = search.open(resume)
    root = search.root()
    violates = search.over_budget(root["costs"])
    if violates and settings.acceptance == "hardware":
        if not any(m.kind == "prune" for m in search.modes):
            raise GrowPruneError(
                "the root is over budget (" + "; ".join(violates) + ") and the schedule has "
                "no prune mode to bring it within"
            )
        emit("the root is over budget (" + "; ".join(violates) + "): pruning towards it")
    state = _State(root["node"], root["node"], [root["node"]])
    for record in stored:
        _apply(state, record, record["mode_index"])
    records = list(stored)
    while state.iteration < settings.iterations and state.stale < settings.patience:
        records.append(_iterate(search, state, state.iteration + 1))
    stopped = "patience" if state.stale >= settings.patience else "iterations"
    final = search.nodes[state.best]
    _register(search, final)
    result = GrowPruneResult(
        run=search.run,
        device=device.name,
        settings=settings.to_dict(),
        root=_public(root),
        final=_public(final),
        iterations=[_iteration_view(search, r) for r in records],
        stopped=stopped,
        root_violates=violates,
    )
    if out is not None:
        result.out = str(_write_outputs(Path(out), search, final, result))
    return result


def _register(search: _Search, node: dict[str, Any]) -> None:
    """The final model joins the workspace's trained models, so that the accuracy oracle (and
    ``codesign``'s final training) start from GPTran's weights, not from a neighbour's."""
    if node["trained"] and node["path"]:
        search.store.add_trained_model(
            Architecture.from_dict(node["model_dict"]).to_dict(), node["hash"],
            tokenizer=search.root_info.tokenizer_id, path=node["path"], steps=node["steps"],
            loss=node["loss"],
        )  # fmt: skip


def _public(node: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in node.items() if k not in ("over", "why")} | (
        {"why": node["why"]} if "why" in node else {}
    )


def _iteration_view(search: _Search, record: dict[str, Any]) -> dict[str, Any]:
    children = []
    for node in record["children"]:
        view = _public(search.nodes[node])
        view["accepted"] = node == record["accepted"]
        view["why"] = record["why"].get(node, "")
        children.append(view)
    return {k: v for k, v in record.items() if k not in ("why", "mode_index")} | {
        "children": children
    }


def _write_outputs(out: Path, search: _Search, final: dict[str, Any], result) -> Path:
    from edgetran.errors import prepare_output_dir

    prepare_output_dir(out, GrowPruneError)
    model = FlexiBertForMaskedLM.from_pretrained(final["path"])
    model.save_pretrained(out / "model")
    search.root_info.tokenizer.save_pretrained(out / "model")
    tree = {
        "run": search.run,
        "key": search.key,
        "nodes": [_public(n) for n in search.nodes.values()],
        "iterations": result.iterations,
        "root": result.root["node"],
        "final": final["node"],
    }
    (out / "tree.json").write_text(json.dumps(tree, indent=1))
    return out
