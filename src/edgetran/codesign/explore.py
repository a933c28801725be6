"""The co-design stages that explore: ``profile``, ``surrogates``, ``objective``, ``search``,
``compare`` and ``references``.

Each stage is a function of the run (:class:`~edgetran.codesign.context.RunContext`) and the
records of the stages it needs (``prior``, by name) to its own record, which the stage table
(:mod:`edgetran.codesign.stages`) stores in the workspace database.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgetran.codesign.config import FILE_FORMATS, CodesignConfig, CodesignError, DeviceSpec
from edgetran.codesign.context import RunContext, Scored
from edgetran.space import NAMED_ARCHITECTURES, Architecture

#: Folds of the held-out predictions behind the parity plots.
PARITY_FOLDS = 5
#: Ensemble settings of the surrogates fitted here (the active-learning loop's lighter ones).
SURROGATE_OPTIONS = {"n_models": 3, "n_estimators": 200, "learning_rate": 0.06}

Prior = Mapping[str, dict[str, Any]]


# -- profile ------------------------------------------------------------------------------------
def profile(ctx: RunContext, prior: Prior) -> dict[str, Any]:
    """Each live device profiled (a device whose worker did not answer is tried again after
    the others, then left out); each recorded device's file imported."""
    check_workers(ctx)
    devices: list[str] = []
    info: dict[str, Any] = {}
    for spec in ctx.specs:
        if spec.live:
            devices.append(spec.name)
            info[spec.name] = profile_live(ctx, spec)
        else:
            found = import_recorded(ctx, spec)
            devices += list(found)
            info |= found
    for name in [d for d in devices if info[d].get("kind") == "unanswered"]:
        info[name] = profile_again(ctx, ctx.spec(name), info[name]["reason"])
        if info[name]["kind"] == "unavailable":
            devices.remove(name)
    if not devices:  # a recorded file read empty since the run was checked has no info
        reasons = _reasons(info) or "the recorded devices' files hold no measurements"
        raise CodesignError("no device could be profiled: " + reasons)
    return {"devices": devices, "info": info}


def use_devices(ctx: RunContext, record: dict[str, Any]) -> None:
    """The devices the profile kept are the run's."""
    ctx.names = record["devices"]


def check_workers(ctx: RunContext) -> None:
    """On a cluster, a live device no worker offers is refused before any work."""
    if ctx.cluster is None:
        return
    from edgetran.profile.remote import worker_for

    live = [s for s in ctx.specs if s.live]
    ctx.cluster.check_devices([worker_for(ctx.cluster, s.hardware, s.runtime) for s in live])


def import_recorded(ctx: RunContext, spec: DeviceSpec) -> dict[str, Any]:
    """A recorded device file's measurements, into the store; the info of each device in it."""
    from edgetran.profile import read_measurements

    path = Path(spec.path)
    items = read_measurements(path, FILE_FORMATS[path.suffix.lower()], None)
    ctx.store.add_many(items)
    return {
        name: {
            "kind": "recorded",
            "file": spec.path,
            "measurements": sum(m.device == name for m in items),
        }
        for name in sorted({m.device for m in items})
    }


def profile_live(ctx: RunContext, spec: DeviceSpec) -> dict[str, Any]:
    """Active profiling of one live device, here or on its worker; a worker that stops
    answering leaves the device ``unanswered`` (with the reason) for a later try."""
    from edgetran.errors import JobTimeoutError
    from edgetran.surrogate.active import profile_actively

    profiler = ctx.profiler(spec)
    meter = None if profiler else ctx.meter(spec)  # a worker measures with its own
    c = ctx.config
    try:
        result = profile_actively(
            ctx.profile_settings(spec),
            meter,
            c.design_space(),
            ctx.store,
            c.profile_budget,
            initial=min(10, c.profile_budget),
            first=c.references_in_space(),
            on_measured=lambda m, d=spec.name: ctx.emit(
                f"  {d}: {m.hash[:10]} {m.latency_s_per_seq * 1e3:.2f} ms/seq"
            ),
            profiler=profiler,
            device=spec.hardware,
        )
    except JobTimeoutError as err:
        ctx.emit(f"  {spec.name}: {said(err)}; trying again after the other devices")
        return {"kind": "unanswered", "reason": said(err)}
    return {
        "kind": "live",
        "measurements": len(result.measurements),
        "meter": meter.name if meter else "the device worker's",
        "meter_kind": meter.kind if meter else _meter_kind(result.measurements),
    }


def profile_again(ctx: RunContext, spec: DeviceSpec, reason: str) -> dict[str, Any]:
    """The second try of a device whose worker did not answer: when a worker offers it
    again (the stored measurements count, so it resumes); else it is left out."""
    offered = ctx.cluster.offered_devices() if ctx.cluster is not None else {}
    if spec.name in offered or spec.hardware in offered:
        info = profile_live(ctx, spec)
        if info["kind"] == "live":
            return info
        reason = info["reason"]
    ctx.emit(f"  {spec.name}: left out of the search ({reason})")
    return {"kind": "unavailable", "reason": reason}


def _meter_kind(measurements) -> str:
    """The kind of meter a device worker measured with (``measured``, ``estimated``)."""
    kinds = sorted({m.meter_kind for m in measurements})
    return ", ".join(kinds) or "unknown"


def _reasons(info: dict[str, Any]) -> str:
    """Why each device is out; a device whose record says no reason is named by its kind."""
    return "; ".join(
        f"{name}: {i.get('reason') or i.get('kind', 'unknown') + ', no reason recorded'}"
        for name, i in info.items()
    )


def said(err: BaseException) -> str:
    """An error as one line: its message, or its kind when it has none."""
    return str(err).strip() or f"{type(err).__name__} (without a message)"


# -- surrogates ---------------------------------------------------------------------------------
def surrogates(ctx: RunContext, prior: Prior) -> dict[str, Any]:
    """One surrogate per device, saved in ``OUT/surrogates``, and its held-out predictions."""
    from edgetran.search import device_measurements
    from edgetran.surrogate import DeviceSurrogate

    folder = ctx.out / "surrogates"
    folder.mkdir(parents=True, exist_ok=True)
    parity = {}
    for device in ctx.names:
        items = device_measurements(ctx.store, device, ctx.shape(device))
        surrogate = DeviceSurrogate(model_options=SURROGATE_OPTIONS, random_state=0)
        surrogate.fit(items).save(folder / _file_name(device))
        parity[device] = _parity(items, ctx.config.seed)
    return {"parity": parity}


def load_surrogates(ctx: RunContext, record: dict[str, Any]) -> None:
    """The saved surrogates, into the run (fitted again when the output folder lost them)."""
    from edgetran.surrogate import DeviceSurrogate

    for device in ctx.names:
        path = ctx.out / "surrogates" / _file_name(device)
        if not path.is_file():  # the output folder was cleared after the stage
            surrogates(ctx, {})
        ctx.surrogates[device] = DeviceSurrogate.load(path)


def _file_name(device: str) -> str:
    """A device's surrogate file name (its name, with what a path cannot hold replaced)."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in device) + ".pkl"


def _parity(items, seed: int) -> dict[str, Any]:
    """Held-out predictions (mean and 90% interval) of each metric against the measured values:
    a point is never predicted by a model that saw it.

    Grouped folds (``method``: ``held-out``) when every fold leaves :data:`MIN_SAMPLES` to fit
    on; with fewer measurements, leave-one-out (``leave-one-out``: each architecture predicted
    by a model fitted on all the others), so that a small profile still shows its surrogate's
    errors. Without :data:`MIN_SAMPLES` beside any architecture, only ``n``.
    """
    from edgetran.surrogate.base import MIN_SAMPLES, grouped_folds

    groups = [m.hash for m in items]
    folds = min(PARITY_FOLDS, len(set(groups)))
    out: dict[str, Any] = {"n": len(items)}
    if folds < 2:
        return out
    held_out = grouped_folds(groups, folds, np.random.default_rng(seed))
    method = "held-out"
    if any(len(items) - len(held) < MIN_SAMPLES for held in held_out):
        held_out = [np.flatnonzero(np.asarray(groups) == g) for g in dict.fromkeys(groups)]
        held_out = [held for held in held_out if len(items) - len(held) >= MIN_SAMPLES]
        method = "leave-one-out"
    if not held_out:
        return out
    rows: dict[str, list] = {}
    for held in held_out:
        for metric, points in _predict_held_out(items, held).items():
            rows.setdefault(metric, []).extend(points)
    return out | {"method": method} | rows  # per measured batch


def _predict_held_out(items, held) -> dict[str, list[list[float]]]:
    """``[measured, predicted mean, lower, upper]`` of the ``held`` items, per metric (named
    as the measurement's per-batch field: ``latency_s`` …), by a surrogate fitted on the
    others."""
    from edgetran.surrogate import DeviceSurrogate
    from edgetran.surrogate.device import METRICS, targets

    train = [items[i] for i in np.setdiff1d(np.arange(len(items)), held)]
    surrogate = DeviceSurrogate(model_options=SURROGATE_OPTIONS).fit(train)
    test = [items[i] for i in held]
    predictions = surrogate.predict([Architecture.from_dict(m.model_dict) for m in test])
    return {
        METRICS[metric]: [
            [float(y), float(mean), float(low), float(high)]
            for y, mean, low, high in zip(
                targets(test, metric), p.mean, p.lower, p.upper, strict=True
            )
        ]
        for metric, p in predictions.items()
    }


# -- objective ----------------------------------------------------------------------------------
def objective(ctx: RunContext, prior: Prior) -> dict[str, Any]:
    """The objective's rule, weights and norms (``run``: from the references' costs)."""
    from edgetran.search import paper_with_norms
    from edgetran.search.settings import parse_norms

    paper, described = paper_with_norms(
        parse_norms(ctx.config.norms), lambda: reference_costs(ctx)
    )
    ctx.emit(f"  norms: {described['norms']} ({described['norms_basis']})")
    return {"rule": ctx.config.objective, "weights": paper.weights, **described}


def reference_costs(ctx: RunContext) -> list:
    """Every reference's costs per sequence on every live device, measured (stored ones
    are reused: the profile measured those in the space first); predicted on the
    recorded devices when no device is live."""
    from edgetran.search import ReferenceCost
    from edgetran.space.costs import estimate_costs

    live = [d for d in ctx.names if ctx.spec(d).live]
    costs = []
    for name in ctx.config.references:
        arch = NAMED_ARCHITECTURES[name]
        for device in live or ctx.names:
            hardware = ctx.hardware(arch, device, measure=True)["metrics"]
            costs.append(
                ReferenceCost(
                    name, device, estimate_costs(arch).parameters, hardware["latency_s"],
                    hardware["energy_j"], hardware["peak_power_w"],
                )
            )  # fmt: skip
    return costs


# -- search and compare -------------------------------------------------------------------------
def search(ctx: RunContext, prior: Prior) -> dict[str, Any]:
    """The co-search with the configured sampler."""
    return run_search_stage(ctx, ctx.config.sampler, "search")


def compare(ctx: RunContext, prior: Prior) -> dict[str, Any]:
    """A second sampler's search on the same number of evaluations (skipped without one)."""
    if not ctx.config.compare:
        return {"skipped": "no --compare sampler"}
    return run_search_stage(ctx, ctx.config.compare, "compare")


def run_search_stage(ctx: RunContext, sampler: str, name: str) -> dict[str, Any]:
    """One search of the run (its study resumed from the database), as its stage's record.

    Raises:
        CodesignError: none of its evaluations succeeded (the stage is not finished).
    """
    from edgetran.search import BoshcodeSettings, run_search

    c = ctx.config
    settings = ctx.search_settings(
        sampler=sampler,
        budget=c.evaluations,
        seed=c.seed,
        boshcode=BoshcodeSettings(n_initial=initial_design(c, len(ctx.names))),
        start=start_pairs(ctx),
        pruner=c.pruner,
    )
    report, failed, replay = _progress(ctx, name)
    result = run_search(
        ctx.evaluator(),
        settings,
        storage=ctx.store.url,
        study_name=f"{ctx.key}-{name}-{sampler}",
        resume=True,
        on_evaluation=report,
        on_failure=failed,
        on_stored=replay,
        parallel=ctx.parallel,
    )
    if not result.records:  # not finished: the stage stays unrecorded, resume retries it
        raise CodesignError(_no_success(name, result.failures))
    out = result.to_dict()
    out["sampler"] = sampler
    out["records"] = [_search_record(r) for r in result.records]
    return out


def _progress(ctx: RunContext, name: str):
    """The search's callbacks: an evaluation, a failure, and a stored item of a resumed one."""
    from edgetran.search.study import Failure

    def report(n: int, record, stored: str = "") -> None:
        ctx.evaluated = n
        m = record.evaluation.metrics
        flag = " (predicted)" if record.evaluation.predicted else ""
        ctx.emit(
            f"  {name} {n:3d} {record.pair.device:>16} {record.pair.arch.hash[:10]} "
            f"acc {m['accuracy']:.3f} lat {m['latency_s'] * 1e3:.2f} ms{flag} "
            f"→ {record.value:.4f}{'' if record.feasible else ' infeasible'}{stored}"
        )

    def failed(n: int, failure, stored: str = "") -> None:
        ctx.evaluated = n
        ctx.emit(f"  {name} {n:3d} failed: {failure.reason}{stored}")

    def replay(n: int, item) -> None:  # what a resumed search holds already
        (failed if isinstance(item, Failure) else report)(n, item, " (stored)")

    return report, failed, replay


def _search_record(r) -> dict[str, Any]:
    """One evaluated pair as the stage records it."""
    return {
        "arch": r.pair.arch.to_model_dict(),
        "device": r.pair.device,
        "metrics": r.evaluation.metrics,
        "predicted": r.evaluation.predicted,
        "lower": r.evaluation.lower,
        "upper": r.evaluation.upper,
        "accuracy_std": r.evaluation.accuracy_std,
        "accuracy_runs": len(r.evaluation.accuracy_runs) or 1,
        "objective": r.value,
        "feasible": r.feasible,
        "how": r.how,
        "contended": r.evaluation.contended,
        # below 1: the pruner stopped its training (its metrics are its last rung's)
        "fidelity": getattr(r, "fidelity", 1.0),
    }


def start_pairs(ctx: RunContext) -> tuple:
    """The references in the space, on the devices in turn, as the search's first
    evaluations (no more than half the budget: the search must also search)."""
    from edgetran.search import Pair

    archs = ctx.config.references_in_space()[: ctx.config.evaluations // 2]
    # live devices first: a reference is measured on each of them anyway
    names = sorted(ctx.names, key=lambda d: not ctx.spec(d).live)
    return tuple(Pair(a, names[i % len(names)]) for i, a in enumerate(archs))


def initial_design(config: CodesignConfig, devices: int) -> int:
    """BOSHCODE's random initial evaluations: its default 10, but at most half of a small
    budget (so its surrogate proposes the rest), and at least one per device."""
    return max(devices, min(10, config.evaluations // 2))


def _no_success(name: str, failures: list) -> str:
    """Why a search stage is not finished: none of its evaluations succeeded."""
    reasons = list(dict.fromkeys(f.reason for f in failures))
    said = "; ".join(reasons[:3]) + (f"; and {len(reasons) - 3} more" if len(reasons) > 3 else "")
    what = (
        f"all {len(failures)} of its evaluations failed ({said})"
        if failures
        else "no pair was evaluated"
    )
    return (
        f"{name}: {what}; the stage is not finished: fix the cause and run the same command "
        "with --resume (the failed pairs are tried again)"
    )


# -- references ---------------------------------------------------------------------------------
def references(ctx: RunContext, prior: Prior) -> dict[str, Any]:
    """Every reference on every device: its accuracy at the search's budget (the decision
    weighs it against the search's pairs) and at the final budget (the verdict weighs it
    against the answer), its costs measured on the live devices. On a quantised device
    both accuracies are its classifiers' as that runtime runs them; an artifact whose
    labels disagree with PyTorch's is a failed pair (``failed``: why), never an answer."""
    c = ctx.config
    search_accuracy = ctx.accuracy(c.budget)
    final = ctx.accuracy(c.final_budget)
    rows = []
    for name in c.references:
        arch = NAMED_ARCHITECTURES[name]
        at_search = search_accuracy(arch)
        # the winner is trained at the final budget: so is what it is compared with
        at_final = at_search if c.final_budget == c.budget else final(arch)
        for device in ctx.names:
            rows.append(_reference_row(ctx, name, arch, device, at_search, at_final))
    return {"rows": rows}


def _reference_row(ctx: RunContext, name, arch, device, at_search, at_final) -> dict[str, Any]:
    """One reference on one device, as the references stage records it."""
    accuracy, final_accuracy, failed = _reference_accuracy(ctx, arch, device, at_search, at_final)
    made = ctx.candidate(
        arch, device, accuracy.value, accuracy.std, name=name, source="reference",
        measure=True, accuracy_from=accuracy.source,
    )  # fmt: skip
    row = made.to_dict() | {
        "final_accuracy": final_accuracy.value,
        "final_accuracy_std": final_accuracy.std,
    }
    if failed:
        row |= {"feasible": False, "failed": failed}
    ctx.emit(
        f"  {name} on {device}: acc {accuracy.value:.3f} (final "
        f"{final_accuracy.value:.3f}) lat {made.metrics['latency_s'] * 1e3:.2f} ms"
        + (f" failed: {failed}" if failed else "")
    )
    return row


def _reference_accuracy(ctx: RunContext, arch, device, at_search, at_final):
    """A reference's accuracy at the search's and the final budget on ``device`` (its
    runtime's on a quantised one), and why its artifact failed (``None``: it did not)."""
    from edgetran.export.verify import LabelAgreementError

    c = ctx.config
    accuracy = Scored(at_search.value, at_search.std, "pytorch")
    final_accuracy = Scored(at_final.value, at_final.std, "pytorch")
    if not ctx.quantised(device):
        return accuracy, final_accuracy, None
    try:
        accuracy = ctx.scored_in_runtime(arch, device, c.budget)
        final_accuracy = (
            accuracy
            if c.final_budget == c.budget
            else ctx.scored_in_runtime(arch, device, c.final_budget)
        )
    except LabelAgreementError as err:
        return accuracy, final_accuracy, str(err)
    return accuracy, final_accuracy, None
