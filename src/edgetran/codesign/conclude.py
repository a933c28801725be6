"""The co-design stages that conclude: ``promotion``, ``decision``, ``growprune``,
``final_training``, ``verdict``, ``export`` and ``final_measurement``.

Each stage is a function of the run (:class:`~edgetran.codesign.context.RunContext`) and the
records of the stages it needs (``prior``, by name) to its own record, which the stage table
(:mod:`edgetran.codesign.stages`) stores in the workspace database.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgetran.codesign.config import CodesignError, DeviceSpec
from edgetran.codesign.context import RunContext, Scored
from edgetran.space import NAMED_ARCHITECTURES, Architecture

Prior = Mapping[str, dict[str, Any]]


# -- promotion ----------------------------------------------------------------------------------
def promotion(ctx: RunContext, prior: Prior) -> dict[str, Any]:
    """The search's ``promote`` best distinct pairs, trained at the final budget (each
    training stored by the oracle, so a killed stage repeats none), or why none is."""
    c = ctx.config
    if not c.promote:
        return {"skipped": "no --promote"}
    chosen = promoted_records(prior["search"]["records"], c.promote)
    accuracy = ctx.accuracy(c.final_budget)
    pairs = []
    for record in chosen:
        arch = Architecture.from_dict(record["arch"])
        final = accuracy(arch)
        pairs.append({
            "arch": record["arch"], "arch_hash": arch.hash, "device": record["device"],
            "objective": record["objective"],
            "search_accuracy": record["metrics"]["accuracy"],
            "search_accuracy_std": record["accuracy_std"],
            "accuracy": final.value, "accuracy_std": final.std,
        })  # fmt: skip
        ctx.emit(
            f"  promoted {arch.hash[:10]} on {record['device']}: acc "
            f"{record['metrics']['accuracy']:.3f} ({c.budget}) → {final.value:.3f} "
            f"± {final.std or 0:.3f} ({c.final_budget})"
        )
    return {"budget": c.final_budget, "asked": c.promote, "pairs": pairs}


def promoted_records(records: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    """The ``k`` best distinct pairs of a search's records by objective, feasible ones first,
    of those trained to the full budget (a pruned record never; fewer when fewer remain)."""
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for record in records:
        if record.get("fidelity", 1.0) < 1.0:
            continue
        key = (Architecture.from_dict(record["arch"]).hash, record["device"])
        if key not in best or _rank(record) > _rank(best[key]):
            best[key] = record
    return sorted(best.values(), key=_rank, reverse=True)[:k]


def _rank(record: dict[str, Any]) -> tuple[bool, float]:
    return bool(record["feasible"]), float(record["objective"])


# -- decision -----------------------------------------------------------------------------------
def decision(ctx: RunContext, prior: Prior) -> dict[str, Any]:
    """The answer (:mod:`edgetran.codesign.decision`): the candidates a rule needs
    measured are measured on their live devices first, so that it is chosen on measured
    latency, not on a prediction. After a promotion, the candidates are the promoted
    architectures and the references, all at the final budget."""
    from edgetran.codesign.decision import choose

    search = prior["search"]
    promoted = (prior.get("promotion") or {}).get("pairs")
    if promoted:
        found = promoted_candidates(ctx, search, promoted, prior["references"])
        budget = ctx.config.final_budget
    else:
        found = candidates(ctx, search, prior["references"])
        budget = ctx.config.budget
    rule, measured_now, failed = ctx.config.choose, 0, []
    while True:
        chosen = choose(list(found.values()), rule, ctx.value)
        if chosen is None:
            return {
                "winner": None,
                "message": search.get("message")
                or f"no pair met the budgets ({ctx.config.constraints().describe()})",
            }
        unscored = _to_score(ctx, chosen, found)
        if unscored is not None:
            _score_in_runtime(ctx, unscored, found, failed, budget)
            continue
        pending = _to_measure(ctx, chosen, found)
        if pending is None:
            break
        found[pending.key] = _measured(ctx, pending)
        measured_now += 1
    ctx.emit(f"  answer: {chosen.winner.label} ({chosen.why})")
    return {
        "winner": chosen.winner.to_dict(),
        "decision": chosen.to_dict(),
        "pairs_scored": len(found),
        "measured_now": measured_now,
        "failed": failed,
    }


def need_a_winner(ctx: RunContext, record: dict[str, Any]) -> None:
    """A decision without a winner ends the run, saying why.

    Raises:
        CodesignError: no pair met the budgets.
    """
    if record.get("winner") is None:
        search = ctx.done.get("search", {})
        raise CodesignError(record.get("message") or search.get("message", "no pair"))


def candidates(
    ctx: RunContext, search: dict[str, Any], refs: dict[str, Any]
) -> dict[tuple[str, str], Any]:
    """Every evaluated architecture and every reference on every device, keyed by
    ``(hash, device)``: the search's accuracy (the mean of its runs; accuracy does not
    depend on the device), the hardware stored or predicted (a training is never repeated,
    a prediction costs nothing)."""
    names = {NAMED_ARCHITECTURES[n].hash: n for n in ctx.config.references}
    by_arch: dict[str, dict[str, Any]] = {}
    for record in search["records"]:  # the record whose accuracy rests on most runs
        if record.get("fidelity", 1.0) < 1.0:  # pruned: its accuracy is a rung's
            continue
        key = Architecture.from_dict(record["arch"]).hash
        if record["accuracy_runs"] > by_arch.get(key, {}).get("accuracy_runs", 0):
            by_arch[key] = record
    evaluated = {(Architecture.from_dict(r["arch"]).hash, r["device"]) for r in search["records"]}
    found: dict[tuple[str, str], Any] = {}
    for key, record in by_arch.items():
        arch = Architecture.from_dict(record["arch"])
        accuracy = record["metrics"]["accuracy"]
        for device in ctx.names:
            source = "search" if (key, device) in evaluated else "device choice"
            found[(key, device)] = ctx.candidate(
                arch, device, accuracy, record["accuracy_std"], name=names.get(key),
                source=source, runs=record["accuracy_runs"],
            )  # fmt: skip
    _add_references(found, refs["rows"])
    return found


def promoted_candidates(
    ctx: RunContext, search: dict[str, Any], promoted: list[dict[str, Any]], refs: dict[str, Any]
) -> dict[tuple[str, str], Any]:
    """The promoted architectures on every device at their final-budget accuracy, and the
    references at theirs: one budget for every accuracy the rule compares."""
    names = {NAMED_ARCHITECTURES[n].hash: n for n in ctx.config.references}
    evaluated = {(Architecture.from_dict(r["arch"]).hash, r["device"]) for r in search["records"]}
    found: dict[tuple[str, str], Any] = {}
    for row in promoted:
        arch = Architecture.from_dict(row["arch"])
        for device in ctx.names:
            if (arch.hash, device) in found:  # two promoted pairs of one architecture
                continue
            source = "search" if (arch.hash, device) in evaluated else "device choice"
            found[(arch.hash, device)] = ctx.candidate(
                arch, device, row["accuracy"], row["accuracy_std"], name=names.get(arch.hash),
                source=source,
            )  # fmt: skip
    final_rows = [
        row | {"metrics": row["metrics"] | {"accuracy": row["final_accuracy"]},
               "accuracy_std": row["final_accuracy_std"]}
        for row in refs["rows"]
    ]  # fmt: skip
    _add_references(found, final_rows)
    return found


def _add_references(found: dict[tuple[str, str], Any], rows: list[dict[str, Any]]) -> None:
    """The references' rows into ``found``: a failed one out; one the search knows only by a
    prediction, or scored in its runtime, in place of the search's."""
    from edgetran.codesign.decision import Candidate

    for row in rows:
        known = found.get((row["arch_hash"], row["device"]))
        reference = Candidate(**candidate_fields(row))
        if row.get("failed"):  # its artifact's labels disagree with PyTorch's
            found.pop(reference.key, None)
        elif (
            known is None
            or "latency_s" not in known.measured
            or (reference.accuracy_from != "pytorch")
        ):
            found[reference.key] = reference


def _measured(ctx: RunContext, pending) -> Any:
    """``pending`` again, measured now on its live device."""
    return ctx.candidate(
        Architecture.from_dict(pending.arch), pending.device,
        pending.metrics["accuracy"], pending.accuracy_std, name=pending.name,
        source=pending.source, measure=True, runs=pending.accuracy_runs,
    )  # fmt: skip


def _to_score(ctx: RunContext, chosen, found) -> Any:
    """A pair on a quantised device within one std of the most accurate whose accuracy is
    still PyTorch's: it must be scored as its runtime runs it before it may be chosen."""
    within = set(chosen.within)
    return next(
        (
            c
            for c in found.values()
            if c.key in within and c.accuracy_from == "pytorch" and ctx.quantised(c.device)
        ),
        None,
    )


def _score_in_runtime(ctx: RunContext, candidate, found, failed: list, budget: str) -> None:
    """``candidate``'s accuracy as its runtime runs it (its classifier at ``budget``), in
    ``found``; a failed label check takes it out and into ``failed``."""
    from dataclasses import replace

    from edgetran.export.verify import LabelAgreementError

    arch = Architecture.from_dict(candidate.arch)
    try:
        scored = ctx.scored_in_runtime(arch, candidate.device, budget)
    except LabelAgreementError as err:
        ctx.emit(f"  {candidate.label}: failed ({err})")
        failed.append({"arch": candidate.arch, "device": candidate.device, "reason": str(err)})
        del found[candidate.key]
        return
    metrics = candidate.metrics | {"accuracy": scored.value}
    made = replace(
        candidate, metrics=metrics, accuracy_std=scored.std, accuracy_from=scored.source
    )
    found[candidate.key] = replace(made, objective=ctx.value(made))


def _to_measure(ctx: RunContext, chosen, found) -> Any:
    """The next unmeasured pair on a live device that could change the decision: the
    winner itself, or (one-std) a pair of the candidate set whose predicted latency's lower
    end is below the winner's latency; ``None`` when there is none."""

    def unmeasured(c) -> bool:
        return "latency_s" not in c.measured and ctx.spec(c.device).live

    winner = chosen.winner
    if unmeasured(winner):
        return winner
    if chosen.rule != "one-std":
        return None
    within = set(chosen.within)
    rivals = [
        c
        for c in found.values()
        if c.key in within and unmeasured(c) and _fastest_possible(c) < winner.metrics["latency_s"]
    ]
    return min(rivals, key=_fastest_possible) if rivals else None


def _fastest_possible(candidate) -> float:
    """The lower end of a candidate's latency interval (its latency when it has none)."""
    interval = candidate.latency_ci95_s
    return interval[0] if interval else candidate.metrics["latency_s"]


def candidate_fields(row: dict[str, Any]) -> dict[str, Any]:
    """The :class:`~edgetran.codesign.decision.Candidate` fields of a stored row."""
    from dataclasses import fields

    from edgetran.codesign.decision import Candidate

    names = {f.name for f in fields(Candidate)}
    out = {k: v for k, v in row.items() if k in names}
    for name in ("measured", "estimated", "predicted"):
        out[name] = tuple(out.get(name) or ())
    if out.get("latency_ci95_s"):
        out["latency_ci95_s"] = tuple(out["latency_ci95_s"])
    return out


# -- growprune ----------------------------------------------------------------------------------
def growprune(ctx: RunContext, prior: Prior) -> dict[str, Any]:
    """GPTran's grow-and-prune of the winner on its device, or why it is skipped."""
    skipped = _growprune_skipped(ctx)
    if skipped:
        return {"skipped": skipped}
    from edgetran.growprune import grow_and_prune

    winner = prior["decision"]["winner"]
    result = grow_and_prune(
        Architecture.from_dict(winner["arch"]),
        ctx.config.task,
        _growprune_device(ctx, winner["device"]),
        _growprune_settings(ctx),
        store=ctx.store,
        out=ctx.out / "growprune",
        resume=True,
        on_event=ctx.emit,
    )
    return {
        "final": {"arch": result.final["model_dict"], "loss": result.final.get("loss")},
        "root": {"arch": result.root["model_dict"], "loss": result.root.get("loss")},
        "iterations": result.iterations,
        "stopped": result.stopped,
    }


def _growprune_skipped(ctx: RunContext) -> str | None:
    """Why grow-and-prune does not run (``None``: it does)."""
    c = ctx.config
    if not c.growprune:
        return "grow-and-prune switched off"
    from edgetran.train import BUDGETS

    if BUDGETS[c.budget].pretrain_steps or _mlm_trained_model(ctx):
        return None
    # measured in the demo: a quick root at MLM loss 8.96 ≈ ln(vocabulary), children
    # within 0.02 of it, and a grown child accepted on that noise
    return (
        f"grow-and-prune ranks children by MLM loss; the {c.budget} budget "
        "trains no MLM steps and the workspace holds no MLM-trained model to start the "
        "root from, so every loss would be an untrained model's (`edgetran train "
        "parent` makes one)"
    )


def _growprune_device(ctx: RunContext, device: str):
    """What grow-and-prune measures on: the live device, or the recorded one's surrogate."""
    from edgetran.growprune import LiveDevice

    spec = ctx.spec(device)
    if not spec.live:
        return ctx.surrogates[device]
    return LiveDevice(ctx.profile_settings(spec), ctx.store, ctx.profiler(spec), spec.hardware)


def _growprune_settings(ctx: RunContext):
    """The run's grow-and-prune settings: its budget, iterations and the device budgets."""
    from edgetran.growprune import GrowPruneSettings

    c = ctx.config
    return GrowPruneSettings(
        budget=c.budget,
        iterations=c.growprune_iterations,
        seed=c.seed,
        max_latency_ms=c.max_latency_ms,
        max_energy_mj=c.max_energy_mj,
        max_peak_power_w=c.max_peak_power_w,
        workspace=c.workspace,
    )


def _mlm_trained_model(ctx: RunContext) -> bool:
    """Whether the workspace holds a model with MLM steps (a parent) to start a root from."""
    return any(m["steps"] and Path(m["path"]).is_dir() for m in ctx.store.trained_models())


def final_arch(prior: Prior) -> Architecture:
    """The architecture trained at the final budget: grow-and-prune's, else the winner."""
    winner = prior["decision"]["winner"]
    return Architecture.from_dict(prior["growprune"].get("final", winner)["arch"])


# -- final training -----------------------------------------------------------------------------
def final_training(ctx: RunContext, prior: Prior) -> dict[str, Any]:
    """The final architecture trained at ``final_budget`` into ``OUT/model``."""
    return train_final(ctx, final_arch(prior))


def train_final(ctx: RunContext, arch: Architecture) -> dict[str, Any]:
    """``arch``'s classifier at the final budget in ``OUT/model``: the one kept by the search
    when it trained there (same budget and seed), else trained now (on the cluster's worker
    when there is one)."""
    from edgetran.train.oracle import kept_classifier, train_classifier

    c = ctx.config
    kept = kept_classifier(arch, c.task, c.final_budget, store=ctx.store, seed=c.seed)
    if kept is not None:  # trained at this budget and seed already: that model
        ctx.emit(f"  reusing the classifier trained during the search: {kept['model']}")
        return _copied_model(ctx, kept)
    if ctx.cluster is not None:  # the model folder must be shared with the worker
        from edgetran.train.remote import train_on_cluster

        return train_on_cluster(
            ctx.cluster, arch, c.task, c.final_budget, store=ctx.store,
            workspace=c.workspace, seed=c.seed, out=ctx.out / "model",
        )  # fmt: skip
    return train_classifier(
        arch, c.task, c.final_budget, store=ctx.store, workspace=c.workspace, seed=c.seed,
        out=ctx.out / "model",
    )  # fmt: skip


def _copied_model(ctx: RunContext, kept: dict[str, Any]) -> dict[str, Any]:
    """A kept classifier copied to ``OUT/model`` (over what a killed attempt left there)."""
    target = ctx.out / "model"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(kept["model"], target)
    return {**kept, "model": str(target), "reused_from": kept["model"]}


# -- verdict ------------------------------------------------------------------------------------
def verdict(ctx: RunContext, prior: Prior) -> dict[str, Any]:
    """The answer against every reference pair, all at the final budget and on the same
    measurements: a reference that dominates the answer (no less accurate within one std,
    measurably faster) is the answer instead, with its classifier as the model."""
    from edgetran.codesign.decision import best_reference, dominating_reference, headline

    winner = prior["decision"]["winner"]
    answer = _final_answer(ctx, winner, final_arch(prior), prior["final_training"])
    references = final_references(prior["references"])
    switched = dominating_reference(answer, references)
    final_training = None
    if switched is not None:
        ctx.emit(f"  {switched.label} dominates {answer.label}: it is the answer")
        final_training = _reference_model(ctx, switched)
        answer = switched
    others = [r for r in references if r.key != answer.key]
    chosen_from = best_reference(others, ctx.config.choose, ctx.value)
    return {
        "answer": answer.to_dict(),
        "switched_from": None if switched is None else winner,
        "final_training": final_training,
        "versus_references": _versus(answer, others),
        "best_reference": None if chosen_from is None else chosen_from.to_dict(),
        "headline": headline(
            answer, chosen_from, ctx.config.choose, is_reference=answer.name is not None
        ),
    }


def _versus(answer, others) -> list[dict[str, Any]]:
    """How the answer stands against each other reference pair."""
    from edgetran.codesign.decision import compare_with_reference

    return [compare_with_reference(answer, r) for r in others]


def _final_answer(ctx: RunContext, winner, arch: Architecture, trained: dict[str, Any]):
    """The winner as trained at the final budget (its runtime's accuracy on a quantised
    device), measured on its device."""
    final = Scored(trained["accuracy"], trained.get("accuracy_std"), "pytorch")
    if ctx.quantised(winner["device"]):  # the final model as its runtime runs it
        final = ctx.scored_in_runtime(
            arch, winner["device"], ctx.config.final_budget, ctx.out / "model"
        )
    return ctx.candidate(
        arch, winner["device"], final.value, final.std,
        name=winner.get("name") if arch.hash == winner["arch_hash"] else None,
        source=winner["source"], measure=True, accuracy_from=final.source,
    )  # fmt: skip


def final_references(refs: dict[str, Any]) -> list:
    """The references' pairs at the final budget (a failed one left out)."""
    from edgetran.codesign.decision import Candidate

    return [
        Candidate(
            **candidate_fields(row)
            | {"metrics": row["metrics"] | {"accuracy": row["final_accuracy"]}}
            | {"accuracy_std": row["final_accuracy_std"]}
        )
        for row in refs["rows"]
        if not row.get("failed")
    ]


def _reference_model(ctx: RunContext, reference) -> dict[str, Any]:
    """A reference's classifier at the final budget, copied to ``OUT/model`` (it was
    trained for the references stage; trained now if it was not kept)."""
    from edgetran.train.oracle import kept_classifier

    c = ctx.config
    arch = Architecture.from_dict(reference.arch)
    kept = kept_classifier(arch, c.task, c.final_budget, store=ctx.store, seed=c.seed)
    shutil.rmtree(ctx.out / "model", ignore_errors=True)
    if kept is None:
        return train_final(ctx, arch)
    return _copied_model(ctx, kept)


# -- export -------------------------------------------------------------------------------------
def export(ctx: RunContext, prior: Prior) -> dict[str, Any]:
    """The answer's model exported to its device's runtime and verified against PyTorch."""
    answer = prior["verdict"]["answer"]
    return export_answer(ctx, ctx.spec(answer["device"]), answer["arch_hash"])


def export_answer(ctx: RunContext, spec: DeviceSpec, answer: str | None) -> dict[str, Any]:
    """``OUT/model`` (which must hold the architecture hashed ``answer``, when given)
    exported for ``spec``'s runtime and verified; skipped on a recorded device.

    Raises:
        CodesignError: the folder holds another model, or the artifact differs from PyTorch.
    """
    if not spec.live:
        return {"skipped": f"{spec.name} is a recorded device: no runtime here to export to"}
    from edgetran.export import ExportSpec, export_model
    from edgetran.model import FlexiBertForSequenceClassification

    model_dir = ctx.out / "model"
    model = FlexiBertForSequenceClassification.from_pretrained(model_dir)
    if answer is not None and model.config.arch.hash != answer:
        raise CodesignError(
            f"{model_dir} holds {model.config.arch.hash[:10]}, not the answer "
            f"{answer[:10]}: the folder changed since the verdict; run the same command with "
            "--restart"
        )
    # an int8 device's winner is exported quantised, as its device was profiled
    export_spec = ExportSpec.for_runtime(
        spec.runtime, batch_size=ctx.config.batch_size, seq_len=ctx.config.seq_len
    )
    result = export_model(
        model, ctx.out / "export", export_spec, verify=True, seed=ctx.config.seed
    )
    verification = _verified(ctx, spec, result.verification or {})
    out = {"artifact": str(result.artifact), "format": export_spec.format}
    out["verification"] = verification
    if ctx.quantised(spec.name):  # no tensor tolerance fits int8: PyTorch's labels do
        scored = ctx.runtime_accuracy(
            model.config.arch, spec.name, ctx.config.final_budget, model_dir
        )
        out["labels"] = scored["verification"]
    return out


def _verified(ctx: RunContext, spec: DeviceSpec, verification: dict[str, Any]) -> dict:
    """The export's verification, when it passed.

    Raises:
        CodesignError: the artifact's outputs differ from PyTorch's.
    """
    if not verification.get("passed"):
        raise CodesignError(
            f"the exported {spec.runtime} artifact differs from PyTorch (max |Δ| "
            f"{verification.get('max_abs_diff')}); see {ctx.out / 'export/metadata.json'}"
        )
    return verification


# -- final measurement --------------------------------------------------------------------------
def final_measurement(ctx: RunContext, prior: Prior) -> dict[str, Any]:
    """The exported artifact profiled on its live device (on its worker, on a cluster)."""
    exported = prior["export"]
    if exported.get("skipped"):
        return {"skipped": exported["skipped"]}
    from edgetran.codesign.measure import (
        contention_note,
        measure_artifact,
        measure_artifact_job,
    )

    spec = ctx.spec(prior["verdict"]["answer"]["device"])
    settings = ctx.profile_settings(spec)
    if ctx.cluster is not None:  # on the device's worker; the artifact folder is shared
        artifact = str(Path(exported["artifact"]).resolve())
        from edgetran.profile.remote import worker_for

        device = worker_for(ctx.cluster, spec.hardware, spec.runtime)
        measured = ctx.cluster.run_profile(
            device, measure_artifact_job, artifact, settings.to_dict()
        )
    else:
        measured = measure_artifact(Path(exported["artifact"]), settings, ctx.meter(spec))
    note = contention_note(measured)
    if note:
        ctx.emit(f"  {note}")
    return measured
