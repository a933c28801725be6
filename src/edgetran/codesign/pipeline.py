"""The co-design pipeline: task, devices and budgets in; the best model–device pair, trained,
exported for that device's runtime and measured there, and the evidence, out.

Stages, in order (each recorded in the workspace database when it finishes; a resumed run
skips the finished ones, and the unfinished one resumes from what the database holds):

1. ``profile``: each live device is profiled with active learning up to ``profile_budget``
   measurements (stored ones count); recorded devices' files are imported.
2. ``surrogates``: one surrogate per device, with held-out (parity) predictions for the report.
3. ``search``: the co-search (BOSHCODE or another sampler) with the accuracy oracle, under the
   budgets; ``compare`` runs a second sampler on the same number of evaluations.
4. ``device_choice``: every evaluated architecture scored on every device (its accuracy is the
   device's as well; the other devices' hardware costs a prediction, not a training); the best
   feasible pair is the winner.
5. ``references``: the named BERTs on every device: accuracy at the search's budget (for the
   Pareto plot, beside the search's points) and at ``final_budget`` (beside the winner's).
6. ``growprune``: GPTran's grow-and-prune of the winner on its device (skipped, saying why,
   when the search budget trains no MLM steps: its losses would be untrained models').
7. ``final_training``: the winner trained at ``final_budget`` and saved in ``OUT/model``.
8. ``export``: the model exported to the winning device's runtime, verified against PyTorch.
9. ``final_measurement``: the exported artifact profiled on the live device (measured).

A stage that cannot run (grow-and-prune switched off, export and final measurement of a
recorded device) is skipped and says why. Every evaluation, measurement and trained model
lives in the database or the workspace, so ``kill -9`` followed by ``resume`` repeats none.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import shutil
import signal
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgetran.codesign.config import (
    FILE_FORMATS,
    CodesignConfig,
    CodesignError,
    DeviceSpec,
    check_local_devices,
)
from edgetran.space import NAMED_ARCHITECTURES, Architecture
from edgetran.store import Store

STAGES = (
    "profile",
    "surrogates",
    "search",
    "compare",
    "device_choice",
    "references",
    "growprune",
    "final_training",
    "export",
    "final_measurement",
)
#: Folds of the held-out predictions behind the parity plots.
PARITY_FOLDS = 5
#: Ensemble settings of the surrogates fitted here (the active-learning loop's lighter ones).
SURROGATE_OPTIONS = {"n_models": 3, "n_estimators": 200, "learning_rate": 0.06}


class EvaluationTimeout(CodesignError):
    """An accuracy evaluation ran past ``eval_timeout_s``."""


@dataclass
class CodesignResult:
    """``result``: what ``OUT/result.json`` holds; ``out``: the output folder."""

    out: Path
    result: dict[str, Any]

    @property
    def best(self) -> dict[str, Any] | None:
        return self.result.get("best")


def run_key(config: CodesignConfig) -> str:
    """The run's key in the database: its output folder (one run per folder)."""
    where = str(Path(config.out).resolve())
    return "codesign-" + hashlib.sha256(where.encode()).hexdigest()[:16]


def run_codesign(
    config: CodesignConfig,
    *,
    resume: bool = False,
    on_event: Callable[[str], None] | None = None,
    cluster: Any = None,
    parallel: int = 1,
) -> CodesignResult:
    """Run (or, with ``resume``, continue) the co-design ``config`` describes.

    With ``cluster`` (:class:`edgetran.cluster.Cluster`), every measurement runs on the
    worker of its device (a live device's hardware name: ``cpu`` for this machine's
    ``local:N`` workers, a lab node's name otherwise) and every training on a training worker;
    this process stays the database's one writer. A device whose worker stops answering is
    left for later and tried again once the others are profiled; if it is still gone, the
    run goes on without it. ``parallel`` evaluations of the search are kept in flight. Neither
    is part of the run's identity: a run may resume with another cluster or ``parallel``.

    Raises:
        CodesignError: the run exists and ``resume`` is not set, or it was started with another
            configuration; no feasible pair was found.
    """
    check_input_shape(config)
    if cluster is None:
        check_local_devices(config.device_specs())
    if parallel > 1 and cluster is None:
        raise CodesignError(
            f"parallel={parallel} trains several candidates at once: it needs a cluster "
            "(--scheduler local:N or an address); here, trainings share one process's torch"
        )
    if parallel > 1 and config.eval_timeout_s is not None:
        raise CodesignError(
            "eval_timeout_s applies to one evaluation at a time; with parallel > 1 the "
            "cluster's job time limit (--job-timeout-s) bounds each training"
        )
    out = Path(config.out)
    with Store(config.db) as store:
        run = _Run(config, store, out, on_event or (lambda _line: None), cluster, parallel)
        run.open(resume)
        result = run.execute()
    from edgetran.codesign.report import write_report

    write_report(result, out / "report.html")
    return CodesignResult(out, result)


def check_input_shape(config: CodesignConfig) -> None:
    """Refuse, before any work, a measured sequence length the final model cannot take: the
    winner is exported and measured at ``seq_len``, so it must fit the model's positions."""
    from edgetran.train.oracle import BUDGETS, budget_positions

    positions = budget_positions(config.final_budget)
    if config.seq_len > positions:
        raise CodesignError(
            f"seq_len={config.seq_len} is invalid; allowed: at most {positions} (the "
            f"{config.final_budget} budget trains on texts of up to "
            f"{BUDGETS[config.final_budget].max_length} tokens; the devices are measured at the "
            "length the winner will run at)"
        )


class _Run:
    def __init__(
        self, config: CodesignConfig, store: Store, out: Path, emit, cluster=None, parallel=1
    ) -> None:
        self.config, self.store, self.out, self.emit = config, store, out, emit
        self.cluster, self.parallel = cluster, parallel
        self.key = run_key(config)
        self.specs = config.device_specs()
        self.surrogates: dict[str, Any] = {}

    # -- bookkeeping ---------------------------------------------------------------------------
    def open(self, resume: bool) -> None:
        stored = self.store.codesign_run(self.key)
        wanted = self.config.to_dict()
        if stored is not None and not resume:
            raise CodesignError(
                f"a co-design run into {self.out} exists in the workspace; pass --resume or "
                "another --out"
            )
        if stored is not None:  # a setting added since the run began counts at its default
            stored = {**_added_settings(stored), **stored}
        if stored is not None and stored != wanted:
            changed = sorted(
                k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k)
            )
            raise CodesignError(
                f"the co-design run into {self.out} was started with other settings "
                f"({', '.join(changed)} differ); cannot resume: pass its settings, or another "
                f"--out (or remove {self.out} and start again)"
            )
        self.out.mkdir(parents=True, exist_ok=True)
        self.store.add_codesign_run(self.key, wanted)
        self.done = self.store.codesign_stages(self.key)

    def stage(self, name: str, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """The stage's record: stored earlier, or made now and stored."""
        if name in self.done:
            self.emit(f"{name}: done earlier ({self.done[name]['seconds']:.1f} s), skipped")
            return self.done[name]
        self.emit(f"{name}: started")
        began = time.perf_counter()
        record = work()
        record["seconds"] = time.perf_counter() - began
        self.store.add_codesign_stage(self.key, name, record)
        self.done[name] = record
        why = f" ({record['skipped']})" if record.get("skipped") else ""
        self.emit(f"{name}: {'skipped' if why else 'finished'} in {record['seconds']:.1f} s{why}")
        return record

    # -- the pipeline --------------------------------------------------------------------------
    def execute(self) -> dict[str, Any]:
        profiled = self.stage("profile", self.profile)
        self.names = profiled["devices"]
        self.stage("surrogates", self.fit_surrogates)
        self.load_surrogates()
        search = self.stage("search", lambda: self.search(self.config.sampler, "search"))
        self.stage(
            "compare",
            lambda: (
                self.search(self.config.compare, "compare")
                if self.config.compare
                else {"skipped": "no --compare sampler"}
            ),
        )
        later = ("growprune", "final_training", "export", "final_measurement")
        if "device_choice" not in self.done and any(name in self.done for name in later):
            # a run resumed from before this stage: its later stages were made for the
            # search's best, so that stays the winner
            choice = self.stage(
                "device_choice",
                lambda: {
                    "best": search["best"],
                    "pairs_scored": 0,
                    "skipped": "the run's later stages were made before device choice existed",
                },
            )
        else:
            choice = self.stage("device_choice", lambda: self.device_choice(search))
        self.stage("references", self.references)
        if choice["best"] is None:
            raise CodesignError(search["message"])
        winner = choice["best"]
        growprune = self.stage("growprune", lambda: self.growprune(winner))
        arch = Architecture.from_dict(growprune.get("final", winner)["arch"])
        self.stage("final_training", lambda: self.final_training(arch))
        spec = self.spec(winner["device"])
        exported = self.stage("export", lambda: self.export(spec))
        self.stage("final_measurement", lambda: self.final_measurement(spec, exported))
        return self.summary(winner, arch)

    def spec(self, device: str) -> DeviceSpec:
        return next((s for s in self.specs if s.name == device), DeviceSpec(device, path="-"))

    def profile_settings(self, spec: DeviceSpec):
        from edgetran.profile import ProfileSettings

        c = self.config
        return ProfileSettings(
            device=spec.runner,
            runtime=spec.runtime,
            batch_size=c.batch_size,
            seq_len=c.seq_len,
            threads=c.threads,
            meter=c.meter,
            max_time_s=c.profile_max_time_s,
            idle_s=c.idle_s,
            require_quiet=c.require_quiet,
            seed=c.seed,
        )

    def profiler(self, spec: DeviceSpec):
        """How a live device is measured: here (``None``) or on its cluster worker."""
        if self.cluster is None:
            return None
        from edgetran.profile.remote import remote_profiler

        return remote_profiler(self.cluster, spec.hardware)

    def meter(self, spec: DeviceSpec):
        from edgetran.profile import create_meter

        settings = self.profile_settings(spec)
        return create_meter(settings.meter, settings.device, per_core_w=settings.core_watts)

    def profile(self) -> dict[str, Any]:
        from edgetran.profile import read_measurements

        if self.cluster is not None:  # a device no worker offers is refused before any work
            from edgetran.profile.remote import worker_for

            live = [s for s in self.specs if s.live]
            self.cluster.check_devices(
                [worker_for(self.cluster, s.hardware, s.runtime) for s in live]
            )

        devices: list[str] = []
        info: dict[str, Any] = {}
        for spec in self.specs:
            if not spec.live:
                items = read_measurements(
                    Path(spec.path), FILE_FORMATS[Path(spec.path).suffix.lower()], None
                )
                self.store.add_many(items)
                for name in sorted({m.device for m in items}):
                    devices.append(name)
                    info[name] = {
                        "kind": "recorded",
                        "file": spec.path,
                        "measurements": sum(m.device == name for m in items),
                    }
                continue
            devices.append(spec.name)
            info[spec.name] = self.profile_live(spec)
        for name in [d for d in devices if info[d].get("kind") == "unanswered"]:
            info[name] = self.profile_again(self.spec(name), info[name]["reason"])
            if info[name]["kind"] == "unavailable":
                devices.remove(name)
        if not devices:
            raise CodesignError("no device could be profiled: " + _reasons(info))
        return {"devices": devices, "info": info}

    def profile_live(self, spec: DeviceSpec) -> dict[str, Any]:
        """Active profiling of one live device, here or on its worker; a worker that stops
        answering leaves the device ``unanswered`` (with the reason) for a later try."""
        from edgetran.errors import JobTimeoutError
        from edgetran.surrogate.active import profile_actively

        profiler = self.profiler(spec)
        meter = None if profiler else self.meter(spec)  # a worker measures with its own
        try:
            result = profile_actively(
                self.profile_settings(spec),
                meter,
                self.config.design_space(),
                self.store,
                self.config.profile_budget,
                initial=min(10, self.config.profile_budget),
                first=self.config.references_in_space(),
                on_measured=lambda m, d=spec.name: self.emit(
                    f"  {d}: {m.hash[:10]} {m.latency_s_per_seq * 1e3:.2f} ms/seq"
                ),
                profiler=profiler,
                device=spec.hardware,
            )
        except JobTimeoutError as err:
            self.emit(f"  {spec.name}: {err}; trying again after the other devices")
            return {"kind": "unanswered", "reason": str(err)}
        return {
            "kind": "live",
            "measurements": len(result.measurements),
            "meter": meter.name if meter else "the device worker's",
            "meter_kind": meter.kind if meter else _meter_kind(result.measurements),
        }

    def profile_again(self, spec: DeviceSpec, reason: str) -> dict[str, Any]:
        """The second try of a device whose worker did not answer: when a worker offers it
        again (the stored measurements count, so it resumes); else it is left out."""
        offered = self.cluster.offered_devices() if self.cluster is not None else {}
        if spec.name in offered or spec.hardware in offered:
            info = self.profile_live(spec)
            if info["kind"] == "live":
                return info
            reason = info["reason"]
        self.emit(f"  {spec.name}: left out of the search ({reason})")
        return {"kind": "unavailable", "reason": reason}

    def shape(self, device: str) -> tuple[int, int] | None:
        live = self.spec(device).live
        return (self.config.batch_size, self.config.seq_len) if live else None

    def fit_surrogates(self) -> dict[str, Any]:
        from edgetran.search import device_measurements
        from edgetran.surrogate import DeviceSurrogate

        folder = self.out / "surrogates"
        folder.mkdir(parents=True, exist_ok=True)
        parity = {}
        for device in self.names:
            items = device_measurements(self.store, device, self.shape(device))
            surrogate = DeviceSurrogate(model_options=SURROGATE_OPTIONS, random_state=0)
            surrogate.fit(items).save(folder / _file_name(device))
            parity[device] = _parity(items, self.config.seed)
        return {"parity": parity}

    def load_surrogates(self) -> None:
        from edgetran.surrogate import DeviceSurrogate

        for device in self.names:
            path = self.out / "surrogates" / _file_name(device)
            if not path.is_file():  # the output folder was cleared after the stage
                self.done.pop("surrogates", None)
                self.fit_surrogates()
            self.surrogates[device] = DeviceSurrogate.load(path)

    def accuracy(self, budget: str) -> Callable[..., Any]:
        """``(arch, run=0) → Accuracy`` at ``budget``: the oracle under ``eval_timeout_s``,
        a NaN refused. At the final budget the classifiers are kept, so the final training of
        an architecture already trained there is that model (same budget and seed)."""
        from edgetran.search import oracle_accuracy

        c = self.config
        oracle = oracle_accuracy(
            c.task,
            self.store,
            budget,
            workspace=c.workspace,
            seed=c.seed,
            keep_models=budget == c.final_budget,
            cluster=self.cluster,
        )

        def accuracy(arch: Architecture, run: int = 0):
            # on a cluster the job's time limit bounds a training (an alarm here would leave
            # the job running on its worker)
            limit = c.eval_timeout_s if self.cluster is None else None
            with _time_limit(limit):
                result = oracle(arch, run=run)
            if not math.isfinite(result.value):
                raise CodesignError(
                    f"accuracy of {arch.hash[:10]} is {result.value} (a NaN loss?)"
                )
            return result

        return accuracy

    def evaluator(self, accuracy: Callable[..., Any] | None = None):
        """The search's evaluator: ``accuracy`` (default: the oracle at the search budget),
        hardware stored or predicted."""
        from edgetran.search import LiveEvaluator, device_measurements
        from edgetran.search.live import per_sequence

        accuracy = accuracy or self.accuracy(self.config.budget)
        measured = {
            (m.hash, device): per_sequence(m)
            for device in self.names
            for m in device_measurements(self.store, device, self.shape(device))
        }
        return LiveEvaluator(accuracy, measured, self.surrogates, self.config.design_space())

    def search(self, sampler: str, name: str) -> dict[str, Any]:
        from edgetran.search import BoshcodeSettings, SearchSettings, run_search

        settings = SearchSettings(
            sampler=sampler,
            budget=self.config.evaluations,
            seed=self.config.seed,
            constraints=self.config.constraints(),
            boshcode=BoshcodeSettings(n_initial=initial_design(self.config, len(self.names))),
            start=self.start_pairs(),
        )

        def report(n: int, record) -> None:
            m = record.evaluation.metrics
            flag = " (predicted)" if record.evaluation.predicted else ""
            self.emit(
                f"  {name} {n:3d} {record.pair.device:>16} {record.pair.arch.hash[:10]} "
                f"acc {m['accuracy']:.3f} lat {m['latency'] * 1e3:.2f} ms{flag} "
                f"→ {record.value:.4f}{'' if record.feasible else ' infeasible'}"
            )

        result = run_search(
            self.evaluator(),
            settings,
            storage=self.store.url,
            study_name=f"{self.key}-{name}-{sampler}",
            resume=True,
            on_evaluation=report,
            on_failure=lambda n, f: self.emit(f"  {name} {n:3d} failed: {f.reason}"),
            parallel=self.parallel,
        )
        out = result.to_dict()
        out["sampler"] = sampler
        out["records"] = [
            {
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
            }
            for r in result.records
        ]
        return out

    def start_pairs(self) -> tuple:
        """The references in the space, on the devices in turn, as the search's first
        evaluations (no more than half the budget: the search must also search)."""
        from edgetran.search import Pair

        archs = self.config.references_in_space()[: self.config.evaluations // 2]
        # live devices first: a reference is measured on each of them anyway
        names = sorted(self.names, key=lambda d: not self.spec(d).live)
        return tuple(Pair(a, names[i % len(names)]) for i, a in enumerate(archs))

    def device_choice(self, search: dict[str, Any]) -> dict[str, Any]:
        """The best feasible pair of every evaluated architecture on every device.

        Accuracy does not depend on the device, and an evaluated architecture's hardware on
        another device costs a surrogate's prediction (or a stored measurement), not a
        training. So after the search each evaluated architecture is scored on every device,
        with the accuracy the search gave it (the mean of its runs), and the best feasible
        pair wins; the search's own best stays in ``search``.
        """
        from edgetran.search import Accuracy, Pair
        from edgetran.search.study import SearchSettings, score

        hashed = [(Architecture.from_dict(r["arch"]).hash, r) for r in search["records"]]
        evaluated = {(key, r["device"]) for key, r in hashed}
        by_arch: dict[str, dict[str, Any]] = {}
        for key, record in hashed:  # the record whose accuracy rests on most runs
            if record["accuracy_runs"] > by_arch.get(key, {}).get("accuracy_runs", 0):
                by_arch[key] = record
        # the search's accuracy, never the oracle's again (that could train: a stale cache)
        evaluator = self.evaluator(
            lambda arch: Accuracy(by_arch[arch.hash]["metrics"]["accuracy"])
        )
        settings = SearchSettings(constraints=self.config.constraints())
        best = None if search["best"] is None else {**search["best"], "how": "search"}
        scored = 0
        for key, record in by_arch.items():
            arch = Architecture.from_dict(record["arch"])
            for device in self.names:
                if (key, device) in evaluated:
                    continue
                evaluation = evaluator.evaluate(Pair(arch, device))
                value, feasible = score(evaluation, settings)
                scored += 1
                if feasible and (best is None or value > best["objective"]):
                    best = {
                        **{k: record[k] for k in ("arch", "accuracy_std", "accuracy_runs")},
                        "device": device,
                        "metrics": evaluation.metrics,
                        "predicted": evaluation.predicted,
                        "objective": value,
                        "how": f"device choice (evaluated on {record['device']})",
                    }
        if best is not None and best["how"] != "search":
            was = search["best"]["objective"] if search["best"] else None
            self.emit(
                f"  {Architecture.from_dict(best['arch']).hash[:10]} scores best on "
                f"{best['device']}: {best['objective']:.4f} (the search's best: "
                f"{'none feasible' if was is None else f'{was:.4f}'})"
            )
        return {"best": best, "pairs_scored": scored}

    def references(self) -> dict[str, Any]:
        from edgetran.profile import profile_into_store
        from edgetran.search import Pair
        from edgetran.search.live import per_sequence
        from edgetran.search.study import SearchSettings, score

        c = self.config
        evaluator = self.evaluator()
        settings = SearchSettings(constraints=c.constraints())
        final = self.accuracy(c.final_budget)
        rows = []
        for name in c.references:
            arch = NAMED_ARCHITECTURES[name]
            accuracy = evaluator.accuracy(arch).value
            # the winner is trained at the final budget: so is what it is compared with
            final_accuracy = accuracy if c.final_budget == c.budget else final(arch).value
            for device in self.names:
                spec = self.spec(device)
                if spec.live:
                    shape = self.profile_settings(spec)
                    profiler = self.profiler(spec)
                    measurement, _ = next(
                        profile_into_store(
                            [arch], shape, self.store, profiler=profiler, device=spec.hardware
                        )
                    )
                    metrics = {"accuracy": accuracy, **per_sequence(measurement)}
                    evaluation = _evaluation(metrics)
                    ci = [v / measurement.batch_size for v in measurement.latency_ci95_s or []]
                else:
                    evaluation = evaluator.evaluate(Pair(arch, device))
                    ci = []
                value, feasible = score(evaluation, settings)
                rows.append(
                    {
                        "name": name,
                        "device": device,
                        "arch": arch.to_model_dict(),
                        "metrics": evaluation.metrics,
                        "final_accuracy": final_accuracy,
                        "predicted": evaluation.predicted,
                        "latency_ci95_s": ci,
                        "objective": value,
                        "feasible": feasible,
                    }
                )
                self.emit(
                    f"  {name} on {device}: acc {accuracy:.3f} (final {final_accuracy:.3f}) "
                    f"lat {evaluation.metrics['latency'] * 1e3:.2f} ms"
                )
        return {"rows": rows}

    def growprune(self, winner: dict[str, Any]) -> dict[str, Any]:
        if not self.config.growprune:
            return {"skipped": "grow-and-prune switched off"}
        from edgetran.growprune import GrowPruneSettings, LiveDevice, grow_and_prune
        from edgetran.train import BUDGETS

        c = self.config
        if not BUDGETS[c.budget].pretrain_steps and not self._mlm_trained_model():
            # measured in the demo: a quick root at MLM loss 8.96 ≈ ln(vocabulary), children
            # within 0.02 of it, and a grown child accepted on that noise
            return {
                "skipped": f"grow-and-prune ranks children by MLM loss; the {c.budget} budget "
                "trains no MLM steps and the workspace holds no MLM-trained model to start the "
                "root from, so every loss would be an untrained model's (`edgetran train "
                "parent` makes one)"
            }
        spec = self.spec(winner["device"])
        device = (
            LiveDevice(self.profile_settings(spec), self.store, self.profiler(spec), spec.hardware)
            if spec.live
            else self.surrogates[winner["device"]]
        )
        settings = GrowPruneSettings(
            budget=c.budget,
            iterations=c.growprune_iterations,
            seed=c.seed,
            max_latency_ms=c.max_latency_ms,
            max_energy_mj=c.max_energy_mj,
            max_peak_power_w=c.max_peak_power_w,
            workspace=c.workspace,
        )
        result = grow_and_prune(
            Architecture.from_dict(winner["arch"]),
            c.task,
            device,
            settings,
            store=self.store,
            out=self.out / "growprune",
            resume=True,
            on_event=self.emit,
        )
        return {
            "final": {"arch": result.final["model_dict"], "loss": result.final.get("loss")},
            "root": {"arch": result.root["model_dict"], "loss": result.root.get("loss")},
            "iterations": result.iterations,
            "stopped": result.stopped,
        }

    def _mlm_trained_model(self) -> bool:
        """Whether the workspace holds a model with MLM steps (a parent) to start a root from."""
        return any(m["steps"] and Path(m["path"]).is_dir() for m in self.store.trained_models())

    def final_training(self, arch: Architecture) -> dict[str, Any]:
        from edgetran.train.oracle import kept_classifier, train_classifier

        c = self.config
        kept = kept_classifier(arch, c.task, c.final_budget, store=self.store, seed=c.seed)
        if kept is not None:  # trained at this budget and seed already: that model
            target = self.out / "model"
            shutil.rmtree(target, ignore_errors=True)  # what a killed final training left
            shutil.copytree(kept["model"], target)
            self.emit(f"  reusing the classifier trained during the search: {kept['model']}")
            return {**kept, "model": str(target), "reused_from": kept["model"]}
        if self.cluster is not None:  # the model folder must be shared with the worker
            from edgetran.train.remote import train_on_cluster

            return train_on_cluster(
                self.cluster, arch, c.task, c.final_budget, store=self.store,
                workspace=c.workspace, seed=c.seed, out=self.out / "model",
            )  # fmt: skip
        return train_classifier(
            arch,
            c.task,
            c.final_budget,
            store=self.store,
            workspace=c.workspace,
            seed=c.seed,
            out=self.out / "model",
        )

    def export(self, spec: DeviceSpec) -> dict[str, Any]:
        if not spec.live:
            return {"skipped": f"{spec.name} is a recorded device: no runtime here to export to"}
        from edgetran.export import ExportSpec, export_model
        from edgetran.model import FlexiBertForSequenceClassification

        model = FlexiBertForSequenceClassification.from_pretrained(self.out / "model")
        # an int8 device's winner is exported quantised, as its device was profiled
        export_spec = ExportSpec.for_runtime(
            spec.runtime, batch_size=self.config.batch_size, seq_len=self.config.seq_len
        )
        result = export_model(
            model, self.out / "export", export_spec, verify=True, seed=self.config.seed
        )
        verification = result.verification or {}
        if not verification.get("passed"):
            raise CodesignError(
                f"the exported {spec.runtime} artifact differs from PyTorch (max |Δ| "
                f"{verification.get('max_abs_diff')}); see {self.out / 'export/metadata.json'}"
            )
        return {
            "artifact": str(result.artifact),
            "format": export_spec.format,
            "verification": verification,
        }

    def final_measurement(self, spec: DeviceSpec, exported: dict[str, Any]) -> dict[str, Any]:
        if exported.get("skipped"):
            return {"skipped": exported["skipped"]}
        from edgetran.codesign.measure import measure_artifact, measure_artifact_job

        settings = self.profile_settings(spec)
        if self.cluster is not None:  # on the device's worker; the artifact folder is shared
            artifact = str(Path(exported["artifact"]).resolve())
            from edgetran.profile.remote import worker_for

            device = worker_for(self.cluster, spec.hardware, spec.runtime)
            return self.cluster.run_profile(
                device, measure_artifact_job, artifact, settings.to_dict()
            )
        return measure_artifact(Path(exported["artifact"]), settings, self.meter(spec))

    # -- the result ----------------------------------------------------------------------------
    def summary(self, winner: dict[str, Any], arch: Architecture) -> dict[str, Any]:
        """``result.json``: the winner (``arch`` after grow-and-prune) and every stage's record."""
        from edgetran.search import PaperObjective

        trained, final = self.done["final_training"], self.done["final_measurement"]
        search, compare, choice = (
            self.done["search"],
            self.done["compare"],
            self.done["device_choice"],
        )

        metrics = {"accuracy": trained["accuracy"]}
        measured = ["accuracy"]
        if final.get("skipped"):
            predicted = self.surrogates[winner["device"]].predict([arch])
            per = self.surrogates[winner["device"]].batch_size_
            metrics |= {
                "latency_s": float(predicted["latency"].mean[0]) / per,
                "energy_j": float(predicted["energy"].mean[0]) / per,
                "peak_power_w": float(predicted["peak_power"].mean[0]),
            }
        else:
            metrics |= {k: final[k] for k in ("latency_s", "energy_j", "peak_power_w")}
            measured.append("latency_s")
            if final["meter_kind"] == "measured":
                measured += ["energy_j", "peak_power_w"]
        objective = PaperObjective().value(
            {
                "accuracy": metrics["accuracy"],
                "latency": metrics["latency_s"],
                "energy": metrics["energy_j"],
                "peak_power": metrics["peak_power_w"],
            }
        )
        best = {
            "arch": arch.to_model_dict(),
            "device": winner["device"],
            "metrics": metrics,
            "measured": measured,
            "objective": objective,
            "latency_ci95_s": final.get("latency_ci95_s"),
            "meter": final.get("meter"),
            "meter_kind": final.get("meter_kind"),
            # the search's view of the winner; accuracy_runs = 1: its accuracy rests on one seed
            "search": {
                k: winner.get(k)
                for k in (
                    "arch",
                    "metrics",
                    "predicted",
                    "objective",
                    "accuracy_std",
                    "accuracy_runs",
                    "how",
                )
            },
        }
        result = {
            "best": best,
            "references": self.done["references"]["rows"],
            "evaluations": search["records"],
            "failed": search["failed"],
            "search": {
                k: search.get(k)
                for k in (
                    "history",
                    "evaluations",
                    "evaluations_to_best",
                    "reevaluations",
                    "sampler",
                )
            },
            "compare": None
            if compare.get("skipped")
            else {k: compare.get(k) for k in ("sampler", "history", "reevaluations")},
            "device_choice": {
                "pairs_scored": choice["pairs_scored"],
                "search_best": search["best"]
                and {k: search["best"][k] for k in ("device", "objective")},
            },
            "surrogates": self.done["surrogates"]["parity"],
            "growprune": self.done["growprune"],
            "final_training": trained,
            "export": self.done["export"],
            "final_measurement": final,
            "devices": self.done["profile"]["info"],
            "stages": {name: self.done[name]["seconds"] for name in STAGES if name in self.done},
            "skipped": {
                n: self.done[n]["skipped"] for n in STAGES if self.done.get(n, {}).get("skipped")
            },
            "config": self.config.to_dict(),
            "environment": _environment(),
        }
        (self.out / "result.json").write_text(json.dumps(_finite(result), indent=1) + "\n")
        return result


def _meter_kind(measurements) -> str:
    """The kind of meter a device worker measured with (``measured``, ``estimated``)."""
    kinds = sorted({m.meter_kind for m in measurements})
    return ", ".join(kinds) or "unknown"


def _reasons(info: dict[str, Any]) -> str:
    return "; ".join(f"{name}: {i.get('reason', '?')}" for name, i in info.items())


def _added_settings(stored: dict[str, Any]) -> dict[str, Any]:
    """The default of each setting a stored run's configuration does not name."""
    defaults = CodesignConfig().to_dict()
    return {k: v for k, v in defaults.items() if k not in stored}


def initial_design(config: CodesignConfig, devices: int) -> int:
    """BOSHCODE's random initial evaluations: its default 10, but at most half of a small
    budget (so its surrogate proposes the rest), and at least one per device."""
    return max(devices, min(10, config.evaluations // 2))


def _evaluation(metrics: dict[str, float]):
    from edgetran.search import Evaluation

    return Evaluation(dict(metrics))


def _file_name(device: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in device) + ".pkl"


def _parity(items, seed: int) -> dict[str, Any]:
    """Held-out predictions (mean and 90% interval) of each metric against the measured values,
    over grouped folds: a point is never predicted by a model that saw it."""
    from edgetran.surrogate import DeviceSurrogate
    from edgetran.surrogate.base import MIN_SAMPLES, grouped_folds
    from edgetran.surrogate.device import targets

    folds = min(PARITY_FOLDS, len({m.hash for m in items}))
    out: dict[str, Any] = {"n": len(items)}
    if folds < 2:
        return out
    held_out = grouped_folds([m.hash for m in items], folds, np.random.default_rng(seed))
    rows: dict[str, list] = {"latency": [], "energy": [], "peak_power": []}
    for held in held_out:
        train = [items[i] for i in np.setdiff1d(np.arange(len(items)), held)]
        if len(train) < MIN_SAMPLES:
            continue
        surrogate = DeviceSurrogate(model_options=SURROGATE_OPTIONS).fit(train)
        test = [items[i] for i in held]
        predictions = surrogate.predict([Architecture.from_dict(m.model_dict) for m in test])
        for metric, p in predictions.items():
            for y, mean, low, high in zip(
                targets(test, metric), p.mean, p.lower, p.upper, strict=True
            ):
                rows[metric].append([float(y), float(mean), float(low), float(high)])
    out |= rows
    return out


@contextmanager
def _time_limit(seconds: float | None):
    """Raise :class:`EvaluationTimeout` in the main thread after ``seconds`` (POSIX timers;
    elsewhere, or in another thread, no limit)."""
    usable = (
        seconds is not None
        and hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
    )
    if not usable:
        yield
        return

    def expire(_signum, _frame):
        raise EvaluationTimeout(f"the evaluation ran past eval_timeout_s={seconds:g}")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _environment() -> dict[str, Any]:
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


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: such numbers become ``null``."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
