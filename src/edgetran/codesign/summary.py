"""``result.json``: what a finished co-design run says, made from its stages' records.

The answer (measured on its exported artifact where the device is live), how it was chosen,
how it stands against the references, and every stage's record. One name per quantity, with
its unit: ``latency_s``, ``energy_j``, ``peak_power_w`` (per sequence). The report
(:mod:`edgetran.codesign.report`) is built from this file alone.
"""

from __future__ import annotations

import json
import platform
from typing import Any

from edgetran.codesign.context import RunContext
from edgetran.codesign.stages import STAGES
from edgetran.errors import finite_for_json
from edgetran.metrics import COST_KEYS
from edgetran.space import Architecture
from edgetran.store.masking import mask_secrets

Records = dict[str, dict[str, Any]]


def write_result(ctx: RunContext) -> dict[str, Any]:
    """The run's result, written to ``OUT/result.json`` (database passwords masked: the run's
    record in the database keeps the real URL)."""
    done = ctx.done
    result = {
        **_answer(ctx, done),
        "references": done["references"]["rows"],
        "evaluations": [*done["search"]["records"], *_other_pairs(done["decision"])],
        "failed": _failed(done),
        **_searches(done),
        "surrogates": done["surrogates"]["parity"],
        # the search's best pairs trained at the final budget (absent in runs before it)
        "promotion": done.get("promotion", {"skipped": "no --promote"}),
        "growprune": done["growprune"],
        "final_training": done["verdict"].get("final_training") or done["final_training"],
        "export": done["export"],
        "final_measurement": done["final_measurement"],
        "devices": done["profile"]["info"],
        **_stage_times(done),
        "config": ctx.config.to_dict(),
        "environment": _environment(),
    }
    result = mask_secrets(result)
    (ctx.out / "result.json").write_text(json.dumps(finite_for_json(result), indent=1) + "\n")
    return result


def _answer(ctx: RunContext, done: Records) -> dict[str, Any]:
    """The headline, the answer, how it was chosen and how it stands against the references."""
    verdict = done["verdict"]
    return {
        "headline": verdict["headline"],
        "best": best(ctx, done),
        "objective": done["objective"],
        "decision": done["decision"].get("decision"),
        "versus_references": verdict["versus_references"],
        "best_reference": verdict.get("best_reference"),
    }


def best(ctx: RunContext, done: Records) -> dict[str, Any]:
    """The answer as ``result.json``'s ``best``: its metrics from the final measurement where
    its device is live (the accuracy: the final model's, where it runs)."""
    answer = done["verdict"]["answer"]
    final = done["final_measurement"]
    metrics, measured, estimated = _final_metrics(answer, final)
    return {
        "name": answer.get("name"),
        "arch": Architecture.from_dict(answer["arch"]).to_model_dict(),
        "device": answer["device"],
        "metrics": metrics,
        "accuracy_std": answer.get("accuracy_std"),
        "accuracy_from": answer.get("accuracy_from", "pytorch"),
        "measured": measured,
        "estimated": estimated,
        "predicted": [k for k in answer["predicted"] if k not in measured],
        "contended": bool(final.get("contended", answer.get("contended", False))),
        "objective": ctx.search_settings().value(metrics),
        "source": answer["source"],
        "latency_ci95_s": final.get("latency_ci95_s") or answer.get("latency_ci95_s"),
        "meter": final.get("meter"),
        "meter_kind": final.get("meter_kind"),
        "search": done["decision"]["winner"],
    }


def _final_metrics(answer: dict[str, Any], final: dict[str, Any]):
    """The answer's metrics, and which are measured and which estimated: the final
    measurement's costs where there is one (a sensor's energy and peak power are measured,
    the CPU-time estimate's are not)."""
    metrics = dict(answer["metrics"])
    measured, estimated = ["accuracy", *answer["measured"]], list(answer["estimated"])
    if final.get("skipped"):
        return metrics, measured, estimated
    metrics |= {k: final[k] for k in COST_KEYS}
    costs = ["energy_j", "peak_power_w"]
    sensed = final["meter_kind"] == "measured"
    return metrics, ["accuracy", "latency_s", *(costs if sensed else [])], [] if sensed else costs


def _failed(done: Records) -> list[dict[str, Any]]:
    """Every failed pair: the search's, the decision's and the references'."""
    return [
        *done["search"]["failed"],
        *done["decision"].get("failed", []),
        *(
            {"arch": r["arch"], "device": r["device"], "reason": r["failed"]}
            for r in done["references"]["rows"]
            if r.get("failed")
        ),
    ]


def _searches(done: Records) -> dict[str, Any]:
    """The search's and the comparison's histories, and the device choice's counts."""
    search, compare, decision = done["search"], done["compare"], done["decision"]
    kept = ("history", "evaluations", "evaluations_to_best", "reevaluations", "sampler")
    return {
        "search": {k: search.get(k) for k in kept},
        "compare": None
        if compare.get("skipped")
        else {k: compare.get(k) for k in ("sampler", "history", "reevaluations")},
        "device_choice": {
            "pairs_scored": decision.get("pairs_scored"),
            "measured_now": decision.get("measured_now"),
            "search_best": search["best"]
            and {k: search["best"][k] for k in ("device", "objective")},
        },
    }


def _stage_times(done: Records) -> dict[str, Any]:
    """Each stage's seconds, and why each skipped stage was skipped."""
    return {
        "stages": {name: done[name]["seconds"] for name in STAGES if name in done},
        "skipped": {n: done[n]["skipped"] for n in STAGES if done.get(n, {}).get("skipped")},
    }


def _other_pairs(decision: dict[str, Any]) -> list[dict[str, Any]]:
    """The decision's candidates the search did not evaluate (each evaluated architecture on
    the other devices, the references), as ``evaluations`` entries with ``how`` saying so."""
    keys = ("arch", "device", "name", "metrics", "predicted", "estimated", "accuracy_std")
    keys += ("accuracy_runs", "objective", "feasible")
    return [
        {k: c[k] for k in keys} | {"how": c["source"], "contended": c["contended"]}
        for c in (decision.get("decision") or {}).get("candidates", [])
        if c["source"] != "search"
    ]


def _environment() -> dict[str, Any]:
    """Where the run ran: Python, the platform, the CPUs and the packages' versions."""
    import os

    import edgetran
    from edgetran._versions import package_version
    from edgetran.profile.environment import PACKAGES  # the runtimes a measurement records

    packages = (*PACKAGES, "optuna", "lightgbm")
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "versions": {p: package_version(p) for p in packages} | {"edgetran": edgetran.__version__},
    }
