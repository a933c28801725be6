"""``edgetran codesign``: configuration, the pipeline end to end on a tiny task and space with
this CPU (fast settings) and a recorded device, resume, the CLI, the report in a real browser,
and kill -9 at three stages followed by --resume."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from edgetran.codesign import CPU_DEVICES, CodesignConfig, CodesignError, run_codesign
from edgetran.codesign.context import time_limit
from edgetran.codesign.pipeline import STAGES, EvaluationTimeout
from edgetran.errors import EdgeTranError, Interrupted
from edgetran.space import NAMED_ARCHITECTURES
from edgetran.store import Store
from edgetran.train.tasks import task_key
from tests.conftest import onnx_by_torchscript, profile_under_torch
from tests.test_metrics import assert_unit_names

ROOT = Path(__file__).resolve().parents[1]
TINY_SPACE = {"layers": [1], "hidden_sizes": [16], "head_counts": [2], "ff_depths": [1],
              "ff_widths": [32, 64]}  # fmt: skip
#: Run in a fresh interpreter before the CLI: training, surrogates and the contention check
#: shrunk to what a test can afford (timing does not matter here); then, with EDGETRAN_KILL_AT
#: set to ``PREFIX|n``, the process kills itself (SIGKILL) at the n-th progress line that starts
#: with PREFIX.
BOOT = """
import os, signal, sys
from edgetran.train import oracle
from edgetran.profile.contention import Contention
import edgetran.codesign.pipeline as pipeline
from edgetran.codesign import explore, stages
oracle.BUDGETS["quick"] = oracle.Budget(4, 8, 16, 1, 5, (8,), 20, 20, 2e-4, (3e-4, 1e-3))
Contention.contended = lambda self, threads, cores=None: False
explore.SURROGATE_OPTIONS = {"n_models": 2, "n_estimators": 40}
stages.PROGRESS_S = 0.2
prefix, _, count = os.environ.get("EDGETRAN_KILL_AT", "").rpartition("|")
seen = []
emit = pipeline._Run.__init__
def patched(self, config, store, out, on_event, *rest):
    def event(line):
        on_event(line)
        if prefix and line.startswith(prefix):
            seen.append(line)
            if len(seen) >= int(count):
                os.kill(os.getpid(), signal.SIGKILL)
    emit(self, config, store, out, event, *rest)
pipeline._Run.__init__ = patched
from edgetran.cli.main import main
sys.argv = ["edgetran", *sys.argv[1:]]
main()
"""


def _tiny(monkeypatch) -> None:
    from edgetran.train import oracle
    from tests.conftest import read_machine_as_quiet

    monkeypatch.setitem(
        oracle.BUDGETS, "quick", oracle.Budget(4, 8, 16, 1, 5, (8,), 20, 20, 2e-4, (3e-4, 1e-3))
    )
    read_machine_as_quiet(monkeypatch)
    # one training thread: two beside other work spin-wait (tests.conftest.one_torch_thread)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setattr(
        "edgetran.codesign.explore.SURROGATE_OPTIONS", {"n_models": 2, "n_estimators": 40}
    )


def _inputs(folder: Path) -> tuple[Path, Path, Path]:
    from edgetran.profile import write_measurements
    from tests.conftest import fake_device
    from tests.test_train import write_task

    folder.mkdir(parents=True, exist_ok=True)
    task = write_task(folder / "task.csv", n=60)
    board = folder / "board.csv"
    write_measurements(fake_device(12, "board", seed=3), board, "csv")
    space = folder / "space.json"
    space.write_text(json.dumps(TINY_SPACE))
    return task, board, space


def _args(folder: Path, task: Path, board: Path, space: Path, compare: bool = True) -> list:
    """CLI arguments of the tiny run (``_config`` is the same run as a configuration)."""
    return [
        "codesign", "--task", task, "--devices", f"cpu/torch,{board}", "--evaluations", 4,
        "--sampler", "random", *(["--compare", "tpe"] if compare else []), "--space", space,
        "--profile-budget", 8,
        "--seq-len", 8, "--meter", "estimate", "--threads", 1, "--idle-s", 0,
        "--profile-max-time", 0.02, "--references", "bert-tiny", "--growprune-iterations", 1,
        "--workspace", folder / "ws", "--out", folder / "out", "--db", folder / "w.db",
    ]  # fmt: skip


def _config(folder: Path, task: Path, board: Path, **changes) -> CodesignConfig:
    values = dict(
        task=str(task), devices=("cpu/torch", str(board)), evaluations=4, sampler="random",
        compare="tpe", space=TINY_SPACE, profile_budget=8, seq_len=8, meter="estimate",
        threads=1, idle_s=0.0, profile_max_time_s=0.02, references=("bert-tiny",),
        growprune_iterations=1, workspace=str(folder / "ws"), out=str(folder / "out"),
        db=str(folder / "w.db"),
    )  # fmt: skip
    return CodesignConfig(**(values | changes))


@pytest.fixture(scope="module")
def codesigned(tmp_path_factory):
    """One tiny co-design run: (folder, its inputs, the result, the progress lines)."""
    folder = tmp_path_factory.mktemp("codesign")
    task, board, space = _inputs(folder)
    events: list[str] = []
    with pytest.MonkeyPatch.context() as monkeypatch:
        _tiny(monkeypatch)
        result = run_codesign(_config(folder, task, board), on_event=events.append)
    return folder, (task, board, space), result, events


# -- configuration ------------------------------------------------------------------------------
def test_config_round_trips_through_json(tmp_path):
    config = CodesignConfig(max_latency_ms=5.0, compare="tpe", references=("bert-mini",))
    again = CodesignConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config and again.devices == CPU_DEVICES
    assert "cpu/onnxruntime-int8" in CPU_DEVICES  # precision is part of the design


def test_require_quiet_reaches_every_live_measurement(tmp_path):
    from types import SimpleNamespace

    from edgetran.codesign.config import parse_device
    from edgetran.codesign.context import RunContext

    config = CodesignConfig(require_quiet=True, out=str(tmp_path / "out"))
    context = SimpleNamespace(config=config)
    settings = RunContext.profile_settings(context, parse_device("cpu/torch"))
    assert settings.require_quiet is True and settings.runtime == "torch"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"devices": ("gpu/fast",)}, "device 'gpu/fast' is invalid; allowed: HARDWARE/RUNTIME"),
        ({"devices": ("missing.csv",)}, "device file missing.csv: no such file"),
        ({"devices": ("cpu/torch", "cpu/torch")}, "name one device twice"),
        ({"budget": "huge"}, "budget='huge' is invalid; allowed: quick, standard, full"),
        ({"references": ("bert-huge",)}, "references: 'bert-huge' is unknown"),
        ({"profile_budget": 3}, "a surrogate needs at least 8"),
        ({"max_latency_ms": -1.0}, "max_latency_ms=-1.0 is invalid"),
        ({"eval_timeout_s": 0}, "eval_timeout_s=0"),
        ({"require_quiet": "yes"}, "require_quiet='yes'; allowed: true or false"),
        ({"references_first": 1}, "references_first=1; allowed: true or false"),
        ({"growprune_iterations": 0}, "growprune_iterations=0 is invalid; allowed: an integer"),
    ],
)
def test_config_refuses_bad_values(change, message):
    with pytest.raises(EdgeTranError, match=re.escape(message)):
        CodesignConfig(**change)
    with pytest.raises(CodesignError, match="unknown co-design setting 'colour'"):
        CodesignConfig.from_dict({"colour": 1})


def test_the_decision_moves_an_architecture_to_the_device_where_it_is_fastest():
    """Accuracy is the device's as well (the search's, the oracle not asked again): the
    search's architecture, evaluated on a slow device only, is the answer on the fast one; an
    infeasible device is not taken; a search with nothing feasible is rescued on another."""
    from edgetran.codesign.conclude import decision
    from edgetran.codesign.context import RunContext
    from edgetran.search import Evaluation

    arch = NAMED_ARCHITECTURES["bert-tiny"]
    latency = {"slow": 0.05, "fast": 0.005, "capped": 0.0001}

    class Devices:
        def __init__(self, accuracy):
            self.accuracy = accuracy

        def evaluate(self, pair):
            metrics = {"accuracy": self.accuracy(pair.arch).value}
            metrics |= {"latency_s": latency[pair.device], "energy_j": 0.1}
            return Evaluation(metrics | {"peak_power_w": 100.0 if pair.device == "capped" else 5})

    run = RunContext.__new__(RunContext)
    run.config = CodesignConfig(max_peak_power_w=50.0, references=())
    run.names, run.emit, run.specs = ["slow", "fast", "capped"], lambda line: None, []
    run.evaluator, run.store = Devices, None
    run.stored_measurement = lambda arch, device: None
    run.done = {
        "objective": {"norms": {"latency_s": 0.05, "energy_j": 0.1, "peak_power_w": 10}},
    }
    record = {
        "arch": arch.to_model_dict(), "device": "slow", "accuracy_std": 0.01,
        "accuracy_runs": 1, "metrics": {"accuracy": 0.75}, "objective": 0.5,
    }  # fmt: skip
    no_references = {"rows": []}
    search = {"best": record, "records": [record]}
    choice = decision(run, {"search": search, "references": no_references})
    assert choice["pairs_scored"] == 3
    best = choice["winner"]
    assert best["device"] == "fast" and best["source"] == "device choice"
    assert best["metrics"]["accuracy"] == 0.75
    assert not next(c for c in choice["decision"]["candidates"] if c["device"] == "capped")[
        "feasible"
    ]
    run.config = CodesignConfig(max_latency_ms=10.0, references=())  # 50 ms is infeasible
    search = {"best": None, "records": [record]}
    rescued = decision(run, {"search": search, "references": no_references})["winner"]
    assert rescued["device"] in ("fast", "capped") and rescued["source"] == "device choice"


def test_a_length_the_final_model_cannot_take_is_refused_before_any_work(tmp_path, monkeypatch):
    task, board, _ = _inputs(tmp_path)
    _tiny(monkeypatch)
    with pytest.raises(CodesignError, match=r"seq_len=65 is invalid; allowed: at most 64"):
        run_codesign(_config(tmp_path, task, board, seq_len=65))
    assert not (tmp_path / "out").exists() and not (tmp_path / "w.db").exists()


def _bad_task(folder: Path) -> Path:
    (folder / "bad.csv").write_text("sentence,label\nfine,pos\nbad,neg\n")
    return folder / "bad.csv"


def _recorded(folder: Path, n: int) -> Path:
    from edgetran.profile import write_measurements
    from tests.conftest import fake_device

    path = folder / f"few{n}.json"
    if n:
        write_measurements(fake_device(n, "few", seed=1), path, "protran")
    else:  # a ProTran file with no entry
        path.write_text("{}")
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: {"task": str(f / "missing.csv")}, "missing.csv: no such file"),
        (lambda f: {"task": "tweets"}, "task 'tweets' is unknown; allowed: "),
        (lambda f: {"task": str(_bad_task(f))}, "bad.csv: no column 'text'"),
        (lambda f: {"devices": (str(_recorded(f, 0)),)}, "few0.json: no measurements"),
        (
            lambda f: {"devices": (str(_recorded(f, 3)),)},
            "3 measurements of few3; allowed: at least 8",
        ),
        (lambda f: {"meter": "sundial"}, "meter 'sundial' is unknown"),
    ],
)
def test_what_would_fail_later_is_refused_before_any_work(tmp_path, change, message):
    """The task is loaded (not trained on), recorded files read and meters made before any
    profiling: the run leaves no folder and no database behind."""
    task, board, _ = _inputs(tmp_path)
    with pytest.raises(EdgeTranError, match=re.escape(message)):
        changes = {"task": task, **change(tmp_path)}
        run_codesign(_config(tmp_path, changes.pop("task"), board, **changes))
    assert not (tmp_path / "out").exists() and not (tmp_path / "w.db").exists()


def test_the_cli_refuses_a_missing_task_and_resume_with_restart(tmp_path, run_cli):
    task, board, space = _inputs(tmp_path)
    code, _, err = run_cli(*_args(tmp_path, tmp_path / "gone.csv", board, space))
    assert code == 2 and "gone.csv: no such file" in err and "Traceback" not in err
    code, _, err = run_cli(*_args(tmp_path, task, board, space), "--resume", "--restart")
    assert code == 2 and "resume and restart exclude each other" in err
    assert not (tmp_path / "w.db").exists()


def test_every_reason_a_device_is_left_out_is_said():
    from edgetran.codesign.explore import _reasons
    from edgetran.codesign.explore import said as _said
    from edgetran.errors import JobTimeoutError

    assert _said(JobTimeoutError()) == "JobTimeoutError (without a message)"
    assert _said(JobTimeoutError("no answer in 60 s")) == "no answer in 60 s"
    info = {"rpi4/onnxruntime": {"kind": "unavailable", "reason": ""}, "b": {"kind": "gone"}}
    assert _reasons(info) == (
        "rpi4/onnxruntime: unavailable, no reason recorded; b: gone, no reason recorded"
    )


def test_time_limit_raises_a_typed_timeout():
    import time

    with pytest.raises(EvaluationTimeout, match=r"eval_timeout_s=0\.05"), time_limit(0.05):
        time.sleep(1)
    with time_limit(None):
        pass


# -- the pipeline -------------------------------------------------------------------------------
def test_codesign_writes_every_output(codesigned):
    folder, _, result, events = codesigned
    out = folder / "out"
    data = json.loads((out / "result.json").read_text())
    best = data["best"]
    assert set(best["metrics"]) == {"accuracy", "latency_s", "energy_j", "peak_power_w"}
    assert best["device"] in ("cpu/torch", "board")
    assert set(data["stages"]) >= {"profile", "surrogates", "search", "references", "export"}
    assert len(data["growprune"]["iterations"]) == 1 and "growprune" not in data["skipped"]
    assert data["growprune"]["iterations"][0]["children"]
    search = data["search"]
    searched = [r for r in data["evaluations"] if r["how"] not in ("device choice", "reference")]
    assert len(searched) + len(data["failed"]) + search["reevaluations"] == 4
    assert best["search"]["accuracy_runs"] >= 1 and best["search"]["accuracy_std"] > 0
    assert all(r["accuracy_runs"] >= 1 for r in data["evaluations"])
    assert {(r["name"], r["device"]) for r in data["references"]} == {
        ("bert-tiny", "cpu/torch"), ("bert-tiny", "board")
    }  # fmt: skip
    # final budget = search budget: the references' final accuracy is their search accuracy
    assert all(r["final_accuracy"] == r["metrics"]["accuracy"] for r in data["references"])
    assert all(r["accuracy_std"] > 0 for r in data["references"])
    compare = data["compare"]
    assert compare["sampler"] == "tpe"
    assert len(compare["history"]) + compare["reevaluations"] == 4
    assert (out / "model" / "config.json").is_file()
    if data["growprune"]["final"]["arch"] == best["search"]["arch"]:  # trained in the search
        assert data["final_training"]["reused_from"]
    assert {"torch", "onnxruntime", "openvino", "ai-edge-litert"} <= set(
        data["environment"]["versions"]
    )  # every runtime a device can name
    if best["device"] == "cpu/torch":  # live: exported, verified and measured there
        assert best["measured"] == ["accuracy", "latency_s"]  # the estimate meter: no energy
        metadata = json.loads((out / "export" / "metadata.json").read_text())
        assert metadata["verification"]["passed"] and (out / "export" / "model.pt2").is_file()
        assert data["final_measurement"]["latency_s"] == best["metrics"]["latency_s"]
        assert data["final_measurement"]["contended"] is False
    else:
        assert data["skipped"]["export"].startswith("board is a recorded device")
    assert any(line.startswith("  search   1") for line in events)
    # 12 recorded measurements make five folds of at least 8; the 8 live ones none at all
    assert data["surrogates"]["board"]["method"] == "held-out"
    assert data["surrogates"]["cpu/torch"] == {"n": 8}
    assert result.best == data["best"]
    # whether other processes crowded a measurement, everywhere (read as quiet here)
    assert best["contended"] is False and best["search"]["contended"] is False
    assert all(r["contended"] is False for r in data["evaluations"] + data["references"])
    # every evaluated architecture and every reference scored on every device
    evaluated = {(json.dumps(r["arch"]), r["device"]) for r in searched}
    archs = {arch for arch, _ in evaluated} | {json.dumps(r["arch"]) for r in data["references"]}
    assert data["device_choice"]["pairs_scored"] == 2 * len(archs)
    assert {(json.dumps(r["arch"]), r["device"]) for r in data["evaluations"]} == {
        (a, d) for a in archs for d in ("cpu/torch", "board")
    }
    # one name per quantity, with its unit, everywhere
    for row in [*data["evaluations"], *data["references"], data["best"]]:
        assert set(row["metrics"]) == {"accuracy", "latency_s", "energy_j", "peak_power_w"}
    assert_unit_names(data)  # no key, and no name in a list of names, without its unit
    # the objective at this run's scale, the decision and the references, said
    objective = data["objective"]
    assert objective["rule"] == "paper" and objective["norms_source"] == "run"
    assert objective["norms_basis"].startswith("bert-tiny on ")
    decision = data["decision"]
    assert decision["rule"] == "one-std" and sum(c["chosen"] for c in decision["candidates"]) == 1
    assert decision["why"] and data["headline"]
    assert {(v["reference"], v["device"]) for v in data["versus_references"]} <= {
        ("bert-tiny", "cpu/torch"), ("bert-tiny", "board")
    }  # fmt: skip
    verdicts = {v["verdict"] for v in data["versus_references"]}
    assert verdicts <= {"dominates", "trades", "dominated"}
    if best["device"] == "cpu/torch":  # a live answer is chosen on a measurement
        assert "latency_s" in decision["winner"]["measured"]


def test_references_at_the_final_budget_and_no_growprune_without_mlm(tmp_path, monkeypatch):
    """References are trained at the final budget beside the winner; a search budget without
    MLM steps (and no parent in the workspace) skips grow-and-prune, saying why."""
    from edgetran.train import oracle

    task, board, _ = _inputs(tmp_path)
    _tiny(monkeypatch)
    _no_parity_folds(monkeypatch)
    _no_report(monkeypatch)
    no_mlm = oracle.Budget(0, 8, 16, 1, 5, (8,), 20, 20, 2e-4, (3e-4, 1e-3))
    standard = oracle.Budget(0, 8, 16, 1, 7, (8,), 20, 20, 2e-4, (3e-4, 1e-3))
    monkeypatch.setitem(oracle.BUDGETS, "quick", no_mlm)
    monkeypatch.setitem(oracle.BUDGETS, "standard", standard)
    config = _config(tmp_path, task, board, final_budget="standard", compare=None, evaluations=2)
    run_codesign(config)
    data = json.loads((tmp_path / "out" / "result.json").read_text())
    assert "trains no MLM steps" in data["skipped"]["growprune"]
    store = Store(f"sqlite:///{tmp_path / 'w.db'}")
    tiny = NAMED_ARCHITECTURES["bert-tiny"]
    quick = store.evaluation(tiny.hash, task=task_key(str(task)), budget="quick", seed=0)
    final = store.evaluation(tiny.hash, task=task_key(str(task)), budget="standard", seed=0)
    for row in data["references"]:
        assert row["metrics"]["accuracy"] == quick["accuracy"]  # beside the search's points
        assert row["final_accuracy"] == final["accuracy"]  # beside the winner's
    assert data["final_training"]["budget"] == "standard"


def test_report_is_one_self_contained_file(codesigned):
    from tests.test_report import check_self_contained

    folder = codesigned[0]
    text = (folder / "out" / "report.html").read_text()
    page = check_self_contained(text)
    assert len(page.images()) >= 4
    for heading in ("Accuracy against latency and energy", "Convergence", "Surrogates",
                    "Model card", "Grow-and-prune", "Measured and estimated"):  # fmt: skip
        assert any(h.startswith(heading) for h in page.text["h2"]), heading
    assert "estimated" in text and "bert-tiny" in text and "Root loss" in text
    assert "held-out" in page.text["td"]  # the recorded board's 12 measurements


def test_the_report_is_rebuilt_from_result_json_alone(codesigned, run_cli, tmp_path):
    """Issue 41, item 2: a folder holding the run's result.json and nothing else rebuilds
    the run's report, byte for byte (the run writes its report from that file too)."""
    out = codesigned[0] / "out"
    shutil.copy(out / "result.json", tmp_path / "result.json")
    code, printed, err = run_cli("report", tmp_path)
    assert code == 0, err
    assert printed.strip() == str(tmp_path / "report.html")
    assert (tmp_path / "report.html").read_bytes() == (out / "report.html").read_bytes()


def test_the_stage_table_keeps_the_stored_names_and_builds_on_earlier_stages():
    """Issue 41, item 2: one ordered table; its names are those earlier versions stored (so
    their workspaces resume), and a stage needs only stages before it."""
    from edgetran.codesign.stages import TABLE

    assert STAGES == (
        "profile", "surrogates", "objective", "search", "compare", "references", "promotion",
        "decision", "growprune", "final_training", "verdict", "export", "final_measurement",
    )  # fmt: skip
    earlier: set[str] = set()
    for stage in TABLE:
        assert set(stage.needs) <= earlier, stage.name
        earlier.add(stage.name)


def test_a_stage_stored_earlier_is_skipped_and_gives_the_next_what_it_needs(tmp_path):
    """The runner: a stored record is not made again (its ``then`` still runs); a new one is
    made from the records it needs, timed, stored and announced."""
    from edgetran.codesign.context import RunContext
    from edgetran.codesign.stages import Stage, run_stages

    config = CodesignConfig(devices=("cpu/torch",), out=str(tmp_path / "out"))
    seen, events = [], []

    def again(ctx, prior):
        pytest.fail("a stored stage made again")

    def fit(ctx, prior):
        return {"parity": prior["profile"]["devices"]}

    table = (
        Stage("profile", again, then=lambda ctx, record: seen.append(record)),
        Stage("surrogates", fit, ("profile",)),
    )
    with Store(tmp_path / "w.db") as store:
        ctx = RunContext(config, store, tmp_path / "out", events.append)
        store.add_codesign_run(ctx.key, config.to_dict())
        store.add_codesign_stage(ctx.key, "profile", {"devices": ["board"], "seconds": 2.0})
        ctx.done = store.codesign_stages(ctx.key)
        run_stages(ctx, table)
        stored = store.codesign_stages(ctx.key)
    assert seen == [{"devices": ["board"], "seconds": 2.0}]
    assert stored["surrogates"]["parity"] == ["board"] and stored["surrogates"]["seconds"] >= 0
    assert events[0] == "profile: done earlier (2.0 s), skipped"
    assert events[1] == "surrogates: started" and events[2].startswith("surrogates: finished in")


def test_resume_skips_finished_stages_and_refuses_a_changed_run(codesigned, monkeypatch):
    folder, (task, board, _), _, _ = codesigned
    _tiny(monkeypatch)
    _no_report(monkeypatch)
    with pytest.raises(CodesignError, match=r"exists in the workspace \(.*\); pass --resume"):
        run_codesign(_config(folder, task, board))
    with pytest.raises(CodesignError, match=r"other settings \(evaluations differ\)"):
        run_codesign(_config(folder, task, board, evaluations=5), resume=True)
    events: list[str] = []
    again = run_codesign(_config(folder, task, board), resume=True, on_event=events.append)
    assert all("done earlier" in line for line in events) and len(events) == len(STAGES)
    assert again.best == codesigned[2].best


class _Stop(Exception):
    """Ends a run at a progress line, where a test has seen what it needs."""


def _stop_at(prefix: str, events: list[str]) -> Callable[[str], None]:
    def on_event(line: str) -> None:
        events.append(line)
        if line.startswith(prefix):
            raise _Stop(line)

    return on_event


def _fast(monkeypatch, fail: Callable[[int], None] = lambda n: None, seconds: float = 0.0):
    """No training and no parity folds: the search's accuracy is a fixed function of the
    architecture, taking ``seconds``; ``fail(n)`` may raise at the n-th evaluation."""
    from edgetran.codesign.context import RunContext
    from edgetran.search import Accuracy

    calls: list[str] = []

    def accuracy(self, budget):
        def oracle(arch, run=0):
            calls.append(arch.hash)
            fail(len(calls))
            time.sleep(seconds)
            return Accuracy(0.5 + int(arch.hash[:4], 16) / 2**18, 0.01)

        return oracle

    monkeypatch.setattr(RunContext, "accuracy", accuracy)
    _no_parity_folds(monkeypatch)


def _no_parity_folds(monkeypatch) -> None:
    """The surrogates skip their held-out parity check (2 s a run): for tests about other
    stages (test_codesign_writes_every_output checks the folds)."""
    monkeypatch.setattr("edgetran.codesign.explore._parity", lambda items, seed: {"n": 0})


def _no_report(monkeypatch) -> None:
    """The finished run writes no report.html (figures: 2-3 s a run): for tests that read
    result.json only (the codesigned runs, the masked-password run and test_report.py check
    reports)."""
    monkeypatch.setattr("edgetran.codesign.report.report_run", lambda out: None)


def _recorded_run(folder: Path, **changes) -> CodesignConfig:
    """A run on the recorded board alone (nothing to profile live), without a comparison."""
    task, board, _ = _inputs(folder)
    changes = {"evaluations": 2, **changes}
    return _config(folder, task, board, devices=(str(board),), compare=None, **changes)


def _stages(config: CodesignConfig) -> dict:
    from edgetran.codesign.pipeline import run_key

    with Store(config.db) as store:
        return store.codesign_stages(run_key(config))


def test_a_search_whose_evaluations_all_failed_is_not_finished(tmp_path, monkeypatch):
    """The stage stays unrecorded and the error says what to do; the same command with
    --resume then tries the failed pairs again."""
    _tiny(monkeypatch)

    def broken(n: int) -> None:
        raise RuntimeError("no tokenizer (simulated)")

    _fast(monkeypatch, fail=broken)
    config = _recorded_run(tmp_path)
    with pytest.raises(CodesignError, match=re.escape(
        "search: all 2 of its evaluations failed (RuntimeError: no tokenizer (simulated)); "
        "the stage is not finished: fix the cause and run the same command with --resume"
    )):  # fmt: skip
        run_codesign(config)
    assert list(_stages(config)) == ["profile", "surrogates", "objective"]
    with pytest.raises(CodesignError, match=re.escape(
        "(profile, surrogates, objective finished); pass --resume to continue it, --restart to "
        "start it"
    )):  # fmt: skip
        run_codesign(config)
    _fast(monkeypatch)
    events: list[str] = []
    with pytest.raises(_Stop):
        run_codesign(config, resume=True, on_event=_stop_at("references: started", events))
    assert any(line.startswith("search: started again (") for line in events)
    lines = [line for line in events if line.startswith("  search ")]
    assert len(lines) == 2 and not any("failed" in line for line in lines)
    search = _stages(config)["search"]
    assert search["evaluations"] == 2 and search["failed"] == []


def test_restart_discards_the_runs_record_and_starts_it_again(tmp_path, monkeypatch):
    _tiny(monkeypatch)
    _fast(monkeypatch)
    config = _recorded_run(tmp_path)
    with pytest.raises(_Stop):
        run_codesign(config, on_event=_stop_at("references: started", []))
    changed = _recorded_run(tmp_path, evaluations=3)
    with pytest.raises(CodesignError, match=re.escape(
        "(evaluations differ); cannot resume: pass its settings, --restart to start it again"
    )):  # fmt: skip
        run_codesign(changed, resume=True)
    events: list[str] = []
    with pytest.raises(_Stop):
        run_codesign(changed, restart=True, on_event=_stop_at("references: started", events))
    assert events[0] == (
        f"restart: the run into {changed.out} starts again (5 finished stages discarded)"
    )
    assert "profile: started" in events and not any("stored" in line for line in events)
    assert sum(line.startswith("  search ") for line in events) == 3
    assert _stages(changed)["search"]["evaluations"] == 3
    with pytest.raises(CodesignError, match="resume and restart exclude each other"):
        run_codesign(changed, resume=True, restart=True)


def test_a_run_that_finished_no_stage_starts_again_with_the_same_command(tmp_path, monkeypatch):
    """No "exists, pass --resume" trap when nothing was finished, even with other settings."""
    from edgetran.codesign.pipeline import run_key

    _tiny(monkeypatch)
    _fast(monkeypatch)
    config = _recorded_run(tmp_path)
    with pytest.raises(_Stop):
        run_codesign(config, on_event=_stop_at("profile: started", []))
    changed = _recorded_run(tmp_path, evaluations=3)
    events: list[str] = []
    with pytest.raises(_Stop):
        run_codesign(changed, on_event=_stop_at("profile: started", events))
    assert (
        events[0] == f"the run into {changed.out} finished no stage: it starts with these settings"
    )
    with pytest.raises(_Stop):
        run_codesign(changed, on_event=_stop_at("surrogates: started", []))
    with Store(changed.db) as store:
        assert store.codesign_run(run_key(changed)) == changed.to_dict()
    assert list(_stages(changed)) == ["profile"]


def test_a_resumed_run_prints_stored_evaluations_and_counts_every_attempts_time(
    tmp_path, monkeypatch
):
    """The interrupted attempt's seconds count in the stage's; the evaluation it stored is
    printed again, marked "(stored)", in the format it was printed in first."""
    from edgetran.codesign.pipeline import run_key

    _tiny(monkeypatch)

    def interrupt(n: int) -> None:
        if n == 2:
            raise KeyboardInterrupt

    _fast(monkeypatch, fail=interrupt, seconds=0.2)
    config = _recorded_run(tmp_path, evaluations=3)
    first: list[str] = []
    with pytest.raises(Interrupted):  # Ctrl-C, said with what the run kept
        run_codesign(config, on_event=first.append)
    (fresh,) = [line for line in first if line.startswith("  search   1")]
    _fast(monkeypatch)
    events: list[str] = []
    with pytest.raises(_Stop):
        run_codesign(config, resume=True, on_event=_stop_at("references: started", events))
    lines = [line for line in events if line.startswith("  search ")]
    assert lines[0] == fresh + " (stored)" and len(lines) == 3
    started = next(line for line in events if line.startswith("search: started again ("))
    earlier = float(re.search(r"again \(([0-9.]+) s before\)", started).group(1))
    assert earlier >= 0.2
    with Store(config.db) as store:
        total = store.codesign_stage_seconds(run_key(config), "search")
    assert _stages(config)["search"]["seconds"] == pytest.approx(total, abs=0.05)
    assert total >= earlier


def test_a_stage_records_its_seconds_as_it_goes(tmp_path, monkeypatch):
    """What a kill -9 leaves: the seconds recorded by the last beat of the stage's clock."""
    from edgetran.codesign.stages import StageClock

    monkeypatch.setattr("edgetran.codesign.stages.PROGRESS_S", 0.05)
    with Store(tmp_path / "w.db") as store:
        store.add_codesign_run("r", {})
        with StageClock(store, "r", "profile"):
            time.sleep(0.4)
            during = store.codesign_stage_seconds("r", "profile")
        after = store.codesign_stage_seconds("r", "profile")
        assert 0.2 <= during <= after
        with StageClock(store, "r", "profile") as clock:
            pass
        assert store.codesign_stage_seconds("r", "profile") == pytest.approx(after + clock.seconds)


def test_a_run_from_before_a_new_setting_resumes_at_its_default(tmp_path):
    from edgetran.codesign.pipeline import _Run, run_key

    task, board, _ = _inputs(tmp_path)
    config = _config(tmp_path, task, board)
    older = {k: v for k, v in config.to_dict().items() if k != "references_first"}
    with Store(f"sqlite:///{tmp_path / 'w.db'}") as store:
        store.add_codesign_run(run_key(config), older)
        store.add_codesign_stage(run_key(config), "profile", {"seconds": 1.0})
        _Run(config, store, tmp_path / "out", print).open(resume=True)  # no error
        changed = _config(tmp_path, task, board, references_first=False)
        with pytest.raises(CodesignError, match=r"\(references_first differ\)"):
            _Run(changed, store, tmp_path / "out", print).open(resume=True)


def test_codesign_cli_resumes_and_prints_json(codesigned, run_cli, monkeypatch):
    folder, inputs, _, _ = codesigned
    _tiny(monkeypatch)
    _no_report(monkeypatch)
    code, out, err = run_cli(*_args(folder, *inputs), "--resume", "--json")
    assert code == 0, err
    assert json.loads(out)["best"] == codesigned[2].best
    code, _, err = run_cli("codesign", "--devices", "tpu/fast", "--out", folder / "x")
    assert code == 2 and "device 'tpu/fast' is invalid" in err and "Traceback" not in err
    code, _, err = run_cli(*_args(folder, *inputs), "--seq-len", 65, "--out", folder / "y")
    assert code == 2 and "seq_len=65 is invalid" in err and "Traceback" not in err


def _as_run_on(codesigned, folder: Path, url: str, monkeypatch) -> CodesignConfig:
    """The finished tiny run, copied to ``folder`` (database and output folder), as if it had
    been started with ``--db url``; opening ``url`` opens the copy (no server here)."""
    from edgetran.codesign import pipeline
    from edgetran.codesign.pipeline import run_key

    source, (task, board, _), _, _ = codesigned
    for file in source.glob("w.db*"):
        shutil.copy(file, folder / file.name)
    shutil.copytree(source / "out", folder / "out")
    config = _config(source, task, board, out=str(folder / "out"), db=url)
    old, new = run_key(_config(source, task, board)), run_key(config)
    with sqlite3.connect(folder / "w.db") as conn:
        conn.execute("UPDATE codesign_stages SET run = ? WHERE run = ?", (new, old))
        conn.execute(
            "UPDATE codesign_runs SET run = ?, config = ? WHERE run = ?",
            (new, json.dumps(config.to_dict()), old),
        )
    monkeypatch.setattr(pipeline, "Store", lambda _db: Store(folder / "w.db"))
    return config


def test_result_json_report_and_json_output_mask_the_database_password(
    codesigned, run_cli, monkeypatch, tmp_path
):
    """Issue 39, item 1: what is written or shown holds the URL masked; the run's record in
    the database keeps it as given, so that --resume compares the settings as given."""
    from edgetran.codesign.pipeline import run_key

    _tiny(monkeypatch)
    url = "postgresql+psycopg://user:S3cretPW@127.0.0.1:55432/x?sslpassword=S3cret2"
    masked = "postgresql+psycopg://user:***@127.0.0.1:55432/x?sslpassword=***"
    config = _as_run_on(codesigned, tmp_path, url, monkeypatch)
    result = run_codesign(config, resume=True)
    assert result.result["config"]["db"] == masked
    for name in ("result.json", "report.html"):
        assert "S3cret" not in (tmp_path / "out" / name).read_text()
    assert json.loads((tmp_path / "out" / "result.json").read_text())["config"]["db"] == masked
    with Store(tmp_path / "w.db") as store:
        assert store.codesign_run(run_key(config))["db"] == url
    folder, inputs, _, _ = codesigned
    _no_report(monkeypatch)  # the page is checked above; the CLI's JSON is checked below
    args = [*_args(folder, *inputs)[:-4], "--out", tmp_path / "out", "--db", url]
    code, out, err = run_cli(*args, "--resume", "--json")
    assert code == 0, err
    assert "S3cret" not in out + err and json.loads(out)["config"]["db"] == masked
    other = url.replace("S3cretPW", "0therPW")  # another password is another setting …
    with pytest.raises(CodesignError, match=r"\(db differ\)") as refused:
        run_codesign(replace(config, db=other), resume=True)
    assert "PW" not in str(refused.value)  # … and the refusal shows neither


@pytest.mark.skipif(shutil.which("chromium") is None, reason="no chromium here (make browser)")
def test_report_renders_in_a_headless_browser(codesigned, tmp_path):
    """Every image loads, the page logs no error and fits 1280 px, in a real browser; the
    screenshot is kept as OUT/report.png (and in .pytest_cache/edgetran/)."""
    from tests.test_report import WIDTH, render_in_browser

    state = render_in_browser(codesigned[0] / "out" / "report.html", tmp_path)
    assert state["images"] >= 4 and state["loaded"] == state["images"] and state["errors"] == []
    assert state["width"] <= WIDTH
    assert (codesigned[0] / "out" / "report.png").is_file()


# -- faults ---------------------------------------------------------------------------------------
def _run_killed(args: list, kill_at: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "EDGETRAN_KILL_AT": kill_at, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", BOOT, *map(str, args)], capture_output=True,
                          text=True, timeout=600, env=env, cwd=cwd)  # fmt: skip


# slow (three fresh interpreters, 40 s on 2 cores): in make test, the in-process stops above and
# test_store's SIGKILL of a profiling run cover resuming and a killed writer
@pytest.mark.slow
def test_kill_at_three_stages_then_resume_loses_and_repeats_nothing(tmp_path, monkeypatch):
    """kill -9 while profiling, while searching and while exporting; each --resume continues
    (the last one in this process, to spare an interpreter's start-up): no measurement,
    evaluation or stage is lost or done twice."""
    task, board, space = _inputs(tmp_path)
    args = _args(tmp_path, task, board, space, compare=False)
    killed = _run_killed(args, "  cpu/torch:|3", tmp_path)  # once the third profile is stored
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    with Store(tmp_path / "w.db") as store:
        assert len(store.measurements("cpu", runtime="torch")) == 3
    killed = _run_killed([*args, "--resume"], "  search |2", tmp_path)  # the second evaluation
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert "profile: finished" in killed.stderr
    killed = _run_killed([*args, "--resume"], "export: started|1", tmp_path)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert "search: finished" in killed.stderr
    _tiny(monkeypatch)
    events: list[str] = []
    config = _config(tmp_path, task, board, compare=None)
    result = run_codesign(config, resume=True, on_event=events.append).result
    assert [line.split(":")[0] for line in events if "done earlier" in line] == [
        "profile", "surrogates", "objective", "search", "compare", "references", "promotion",
        "decision", "growprune", "final_training", "verdict",
    ]  # fmt: skip
    with Store(tmp_path / "w.db") as store:
        profiles = store.measurements("cpu", runtime="torch")
        stages = store.codesign_stages(next(iter(_runs(store))))
        attempts = {stage: _attempts(store, stage) for stage in ("profile", "search")}
    # the killed attempts' seconds count in their stages' (recorded as the stages went)
    for stage, seconds in attempts.items():
        assert len(seconds) == 2 and min(seconds) > 0
        assert stages[stage]["seconds"] == pytest.approx(sum(seconds), abs=0.01)
    # 8 profiles, the reference and grow-and-prune's children: each architecture once
    hashes = [m.hash for m in profiles]
    assert len(hashes) == len(set(hashes)) >= 9
    searched = [r for r in result["evaluations"] if r["how"] not in ("device choice", "reference")]
    keys = [(json.dumps(r["arch"], sort_keys=True), r["device"]) for r in searched]
    spent = len(keys) + len(result["failed"]) + result["search"]["reevaluations"]
    assert spent == 4 and len(set(keys)) == len(keys)
    assert list(stages)[:4] == ["profile", "surrogates", "objective", "search"]
    assert "export" in stages and "final_measurement" in stages


def _attempts(store: Store, stage: str) -> list[float]:
    from sqlalchemy import select

    from edgetran.store.database import codesign_progress

    query = select(codesign_progress.c.seconds).where(codesign_progress.c.stage == stage)
    with store.engine.connect() as conn:
        return [row[0] for row in conn.execute(query)]


def _runs(store: Store) -> list[str]:
    from sqlalchemy import select

    from edgetran.store.database import codesign_runs

    with store.engine.connect() as conn:
        return [row[0] for row in conn.execute(select(codesign_runs.c.run))]


def test_references_in_the_space_start_the_profile_and_the_search(tmp_path, monkeypatch):
    """BERT-Tiny lies in this space: it is the profile's first measurement and the search's
    first evaluation, and the references stage neither trains nor measures it again."""
    task, board, _ = _inputs(tmp_path)
    _tiny(monkeypatch)
    _no_parity_folds(monkeypatch)
    _no_report(monkeypatch)
    space = {"layers": [2], "hidden_sizes": [128], "head_counts": [2], "ff_depths": [1],
             "ff_widths": [512]}  # fmt: skip
    config = _config(tmp_path, task, board, space=space, evaluations=2, compare=None,
                     growprune=False)  # fmt: skip
    events: list[str] = []
    run_codesign(config, on_event=events.append)
    tiny = NAMED_ARCHITECTURES["bert-tiny"]
    data = json.loads((tmp_path / "out" / "result.json").read_text())
    first = data["evaluations"][0]
    assert first["how"] == "start" and first["arch"] == tiny.to_model_dict()
    profiled = [line for line in events if line.startswith("  cpu/torch: ")]
    assert profiled[0].startswith(f"  cpu/torch: {tiny.hash[:10]}") and len(profiled) == 8
    store = Store(f"sqlite:///{tmp_path / 'w.db'}")
    assert sum(m.hash == tiny.hash for m in store.measurements("cpu", runtime="torch")) == 1
    quick = store.evaluation(tiny.hash, task=task_key(str(task)), budget="quick", seed=0)
    assert all(r["metrics"]["accuracy"] == quick["accuracy"] for r in data["references"])
    off = _config(tmp_path, task, board, space=space, references_first=False)
    assert off.references_in_space() == [] and config.references_in_space() == [tiny]


# -- int8 devices -------------------------------------------------------------------------------
def test_an_int8_device_scores_its_pairs_in_its_runtime_and_resumes_without_repeats(
    tmp_path, monkeypatch
):
    """Precision is part of the design: an int8 pair's accuracy is its classifier's as the
    runtime runs it (checked against PyTorch's labels first), cached, so that a run killed
    during the scoring repeats none of it when resumed."""
    from edgetran.codesign import runtime_accuracy

    _tiny(monkeypatch)
    profile_under_torch(monkeypatch)
    onnx_by_torchscript(monkeypatch)
    _no_parity_folds(monkeypatch)
    _no_report(monkeypatch)
    task, board, _ = _inputs(tmp_path)
    config = _config(tmp_path, task, board, devices=("cpu/onnxruntime-int8", str(board)),
                     compare=None, evaluations=2, growprune=False)  # fmt: skip
    fresh: list[tuple[str, str]] = []
    real = runtime_accuracy.artifact_accuracy

    def counted(model_dir, runtime, *args, **kwargs):
        result = real(model_dir, runtime, *args, **kwargs)
        if not result["cached"]:
            fresh.append((result["artifact"], runtime))
        return result

    monkeypatch.setattr(runtime_accuracy, "artifact_accuracy", counted)

    def stop_after_one_scoring(line: str) -> None:
        if "on cpu/onnxruntime-int8: accuracy" in line:
            raise _Stop(line)

    with pytest.raises(_Stop):
        run_codesign(config, on_event=stop_after_one_scoring)
    first = list(fresh)
    assert len(first) == 1
    result = run_codesign(config, resume=True).result
    assert first[0] not in fresh[1:]  # the killed run's scoring is not repeated
    assert len(fresh) == len(set(fresh))
    rows = [r for r in result["references"] if r["device"] == "cpu/onnxruntime-int8"]
    assert rows and all(r["accuracy_from"] == "onnxruntime-int8" for r in rows)
    within = [c for c in result["decision"]["candidates"] if c["within_one_std"]]
    assert all(
        c["accuracy_from"] == "onnxruntime-int8"
        for c in within
        if c["device"] == "cpu/onnxruntime-int8"
    )
    if result["best"]["device"] == "cpu/onnxruntime-int8":
        assert result["best"]["accuracy_from"] == "onnxruntime-int8"
        assert result["export"]["labels"]["passed"]


def test_an_int8_artifact_that_disagrees_with_pytorch_is_a_failed_pair(tmp_path, monkeypatch):
    """A failed label check takes the pair out of the answer and into ``failed``; the run
    goes on."""
    from edgetran.codesign.context import RunContext
    from edgetran.export.verify import LabelAgreement, LabelAgreementError

    _tiny(monkeypatch)
    profile_under_torch(monkeypatch)
    _fast(monkeypatch)
    task, board, _ = _inputs(tmp_path)
    config = _config(tmp_path, task, board, devices=("cpu/onnxruntime-int8", str(board)),
                     compare=None, evaluations=2, growprune=False)  # fmt: skip

    def disagrees(self, arch, device, budget, model=None):
        raise LabelAgreementError(
            LabelAgreement(0.5, 10, False, 0.99, "onnxruntime-int8", "cpu", "dynamic-int8", 1)
        )

    monkeypatch.setattr(RunContext, "runtime_accuracy", disagrees)
    result = run_codesign(config).result
    failed = [f for f in result["failed"] if f["device"] == "cpu/onnxruntime-int8"]
    assert failed and all("0.5" in f["reason"] or "agree" in f["reason"] for f in failed)
    assert result["best"]["device"] != "cpu/onnxruntime-int8"


def test_the_export_refuses_a_model_folder_that_no_longer_holds_the_answer(tmp_path):
    """A folder changed under a finished verdict (another answer's classifier in it) is never
    exported as the answer."""
    from edgetran.codesign.conclude import export_answer
    from edgetran.codesign.config import parse_device
    from edgetran.codesign.context import RunContext
    from edgetran.model import FlexiBertConfig, FlexiBertForSequenceClassification

    tiny = NAMED_ARCHITECTURES["bert-tiny"]
    model = FlexiBertForSequenceClassification(FlexiBertConfig(tiny, vocab_size=100))
    model.save_pretrained(tmp_path / "model")
    run = RunContext.__new__(RunContext)
    run.config, run.out = CodesignConfig(devices=("cpu/torch",), seq_len=8), tmp_path
    answer = NAMED_ARCHITECTURES["bert-mini"].hash
    with pytest.raises(CodesignError, match=r"not the answer .*--restart"):
        export_answer(run, parse_device("cpu/torch"), answer)
