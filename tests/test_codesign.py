"""``edgetran codesign``: configuration, the pipeline end to end on a tiny task and space with
this CPU (fast settings) and a recorded device, resume, the CLI, the report in a real browser,
and kill -9 at three stages followed by --resume."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from edgetran.codesign import CodesignConfig, CodesignError, run_codesign
from edgetran.codesign.pipeline import EvaluationTimeout, _time_limit
from edgetran.errors import EdgeTranError
from edgetran.space import NAMED_ARCHITECTURES
from edgetran.store import Store

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
oracle.BUDGETS["quick"] = oracle.Budget(4, 8, 16, 1, 5, (8,), 20, 20, 2e-4, (3e-4, 1e-3))
Contention.contended = lambda self, threads, cores=None: False
pipeline.SURROGATE_OPTIONS = {"n_models": 2, "n_estimators": 40}
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
    monkeypatch.setattr(
        "edgetran.codesign.pipeline.SURROGATE_OPTIONS", {"n_models": 2, "n_estimators": 40}
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
    assert again == config and again.devices == ("cpu/torch", "cpu/onnxruntime", "cpu/openvino")


def test_require_quiet_reaches_every_live_measurement(tmp_path):
    from types import SimpleNamespace

    from edgetran.codesign.config import parse_device
    from edgetran.codesign.pipeline import _Run

    config = CodesignConfig(require_quiet=True, out=str(tmp_path / "out"))
    settings = _Run.profile_settings(SimpleNamespace(config=config), parse_device("cpu/torch"))
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
    ],
)
def test_config_refuses_bad_values(change, message):
    with pytest.raises(EdgeTranError, match=re.escape(message)):
        CodesignConfig(**change)
    with pytest.raises(CodesignError, match="unknown co-design setting 'colour'"):
        CodesignConfig.from_dict({"colour": 1})


def test_device_choice_moves_an_architecture_to_the_device_where_it_scores_best():
    """Accuracy is the device's as well (the search's, the oracle not asked again): the
    search's best architecture, evaluated on a slow device only, wins on the fast one; an
    infeasible move is not taken; a search with nothing feasible is rescued on another device."""
    from edgetran.codesign.pipeline import _Run
    from edgetran.search import Evaluation

    arch = NAMED_ARCHITECTURES["bert-tiny"]
    latency = {"slow": 0.05, "fast": 0.005, "capped": 0.0001}

    class Devices:
        def __init__(self, accuracy):
            self.accuracy = accuracy

        def evaluate(self, pair):
            metrics = {"accuracy": self.accuracy(pair.arch).value}
            metrics |= {"latency": latency[pair.device], "energy": 0.1}
            return Evaluation(metrics | {"peak_power": 100.0 if pair.device == "capped" else 5})

    run = _Run.__new__(_Run)
    run.config = CodesignConfig(max_peak_power_w=50.0)
    run.names, run.emit = ["slow", "fast", "capped"], lambda line: None
    run.evaluator = Devices
    record = {
        "arch": arch.to_model_dict(), "device": "slow", "accuracy_std": 0.01,
        "accuracy_runs": 1, "metrics": {"accuracy": 0.75}, "objective": 0.5,
    }  # fmt: skip
    choice = run.device_choice({"best": record, "records": [record]})
    assert choice["pairs_scored"] == 2
    best = choice["best"]
    assert best["device"] == "fast" and best["objective"] > 0.5
    assert best["metrics"]["accuracy"] == 0.75 and best["how"].startswith("device choice")
    run.config = CodesignConfig(max_latency_ms=10.0)  # the slow device's 50 ms is infeasible
    rescued = run.device_choice({"best": None, "records": [record]})["best"]
    assert rescued["device"] in ("fast", "capped") and rescued["how"].startswith("device choice")


def test_a_length_the_final_model_cannot_take_is_refused_before_any_work(tmp_path, monkeypatch):
    task, board, _ = _inputs(tmp_path)
    _tiny(monkeypatch)
    with pytest.raises(CodesignError, match=r"seq_len=65 is invalid; allowed: at most 64"):
        run_codesign(_config(tmp_path, task, board, seq_len=65))
    assert not (tmp_path / "out").exists() and not (tmp_path / "w.db").exists()


def test_time_limit_raises_a_typed_timeout():
    import time

    with pytest.raises(EvaluationTimeout, match=r"eval_timeout_s=0\.05"), _time_limit(0.05):
        time.sleep(1)
    with _time_limit(None):
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
    assert len(data["evaluations"]) + len(data["failed"]) + search["reevaluations"] == 4
    assert best["search"]["accuracy_runs"] >= 1 and best["search"]["accuracy_std"] > 0
    assert all(r["accuracy_runs"] >= 1 for r in data["evaluations"])
    assert {(r["name"], r["device"]) for r in data["references"]} == {
        ("bert-tiny", "cpu/torch"), ("bert-tiny", "board")
    }  # fmt: skip
    # final budget = search budget: the references' final accuracy is their search accuracy
    assert all(r["final_accuracy"] == r["metrics"]["accuracy"] for r in data["references"])
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
    assert result.best == data["best"]
    # whether other processes crowded a measurement, everywhere (read as quiet here)
    assert best["contended"] is False and best["search"]["contended"] is False
    assert all(r["contended"] is False for r in data["evaluations"] + data["references"])
    # every evaluated architecture scored on the devices it was not evaluated on
    evaluated = {(json.dumps(r["arch"]), r["device"]) for r in data["evaluations"]}
    archs = {arch for arch, _ in evaluated}
    assert data["device_choice"]["pairs_scored"] == 2 * len(archs) - len(evaluated)
    assert best["search"]["objective"] >= data["device_choice"]["search_best"]["objective"]


def test_references_at_the_final_budget_and_no_growprune_without_mlm(tmp_path, monkeypatch):
    """References are trained at the final budget beside the winner; a search budget without
    MLM steps (and no parent in the workspace) skips grow-and-prune, saying why."""
    from edgetran.train import oracle

    task, board, _ = _inputs(tmp_path)
    _tiny(monkeypatch)
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
    quick = store.evaluation(tiny.hash, task=str(task), budget="quick", seed=0)
    final = store.evaluation(tiny.hash, task=str(task), budget="standard", seed=0)
    for row in data["references"]:
        assert row["metrics"]["accuracy"] == quick["accuracy"]  # beside the search's points
        assert row["final_accuracy"] == final["accuracy"]  # beside the winner's
    assert data["final_training"]["budget"] == "standard"


def test_report_is_one_self_contained_file(codesigned):
    folder = codesigned[0]
    page = (folder / "out" / "report.html").read_text()
    images = re.findall(r"<img [^>]*src='([^']*)'", page)
    assert len(images) >= 3 and all(src.startswith("data:image/png;base64,") for src in images)
    assert "http://" not in page and "https://" not in page and "<script" not in page
    for heading in ("Pareto fronts", "Convergence", "Surrogates", "Model card",
                    "Grow-and-prune", "Measured and estimated"):  # fmt: skip
        assert heading in page
    assert "estimated" in page and "bert-tiny" in page and "Root loss" in page


def test_resume_skips_finished_stages_and_refuses_a_changed_run(codesigned, monkeypatch):
    folder, (task, board, _), _, _ = codesigned
    _tiny(monkeypatch)
    with pytest.raises(CodesignError, match="exists in the workspace; pass --resume"):
        run_codesign(_config(folder, task, board))
    with pytest.raises(CodesignError, match=r"other settings \(evaluations differ\)"):
        run_codesign(_config(folder, task, board, evaluations=5), resume=True)
    events: list[str] = []
    again = run_codesign(_config(folder, task, board), resume=True, on_event=events.append)
    assert all("done earlier" in line for line in events) and len(events) == 10
    assert again.best == codesigned[2].best


def test_a_run_from_before_a_new_setting_resumes_at_its_default(tmp_path):
    from edgetran.codesign.pipeline import _Run, run_key

    task, board, _ = _inputs(tmp_path)
    config = _config(tmp_path, task, board)
    older = {k: v for k, v in config.to_dict().items() if k != "references_first"}
    with Store(f"sqlite:///{tmp_path / 'w.db'}") as store:
        store.add_codesign_run(run_key(config), older)
        _Run(config, store, tmp_path / "out", print).open(resume=True)  # no error
        changed = _config(tmp_path, task, board, references_first=False)
        with pytest.raises(CodesignError, match=r"\(references_first differ\)"):
            _Run(changed, store, tmp_path / "out", print).open(resume=True)


def test_codesign_cli_resumes_and_prints_json(codesigned, run_cli, monkeypatch):
    folder, inputs, _, _ = codesigned
    _tiny(monkeypatch)
    code, out, err = run_cli(*_args(folder, *inputs), "--resume", "--json")
    assert code == 0, err
    assert json.loads(out)["best"] == codesigned[2].best
    code, _, err = run_cli("codesign", "--devices", "tpu/fast", "--out", folder / "x")
    assert code == 2 and "device 'tpu/fast' is invalid" in err and "Traceback" not in err
    code, _, err = run_cli(*_args(folder, *inputs), "--seq-len", 65, "--out", folder / "y")
    assert code == 2 and "seq_len=65 is invalid" in err and "Traceback" not in err


@pytest.mark.skipif(shutil.which("chromium") is None, reason="no chromium browser here")
def test_report_renders_in_a_headless_browser(codesigned, tmp_path):
    """Every image loads and the page logs no error, in a real browser; the screenshot is kept
    in .pytest_cache/edgetran/report.png."""
    page = (codesigned[0] / "out" / "report.html").read_text()
    probe = (
        "<script>window.errors=[];window.onerror=(m)=>errors.push(String(m));"
        "const e=console.error;console.error=(...a)=>{errors.push(a.join(' '));e(...a)};"
        "addEventListener('load',()=>{const i=[...document.images];document.title="
        "'PROBE'+JSON.stringify({images:i.length,loaded:i.filter(x=>x.complete&&"
        "x.naturalWidth>0).length,errors})});</script>"
    )
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("<head>", "<head>" + probe, 1))
    common = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
              "--enable-logging=stderr", "--virtual-time-budget=5000"]  # fmt: skip
    done = subprocess.run([*common, "--dump-dom", probed.as_uri()], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    title = re.search(r"<title>PROBE(.*?)</title>", done.stdout)
    assert title, done.stderr[-2000:]
    state = json.loads(title.group(1).replace("&quot;", '"'))
    assert state["images"] >= 3 and state["loaded"] == state["images"] and state["errors"] == []
    assert not re.search(r"CONSOLE.*(Uncaught|ERROR)", done.stderr)
    shots = ROOT / ".pytest_cache" / "edgetran"
    shots.mkdir(parents=True, exist_ok=True)
    report = codesigned[0] / "out" / "report.html"
    subprocess.run([*common, "--window-size=1280,4000", f"--screenshot={shots / 'report.png'}",
                    report.as_uri()], capture_output=True, timeout=120, check=True)  # fmt: skip
    assert (shots / "report.png").stat().st_size > 10_000


# -- faults ---------------------------------------------------------------------------------------
def _run_killed(args: list, kill_at: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "EDGETRAN_KILL_AT": kill_at, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", BOOT, *map(str, args)], capture_output=True,
                          text=True, timeout=600, env=env, cwd=cwd)  # fmt: skip


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
        "profile", "surrogates", "search", "compare", "device_choice", "references", "growprune",
        "final_training",
    ]  # fmt: skip
    with Store(tmp_path / "w.db") as store:
        profiles = store.measurements("cpu", runtime="torch")
        stages = store.codesign_stages(next(iter(_runs(store))))
    # 8 profiles, the reference and grow-and-prune's children: each architecture once
    hashes = [m.hash for m in profiles]
    assert len(hashes) == len(set(hashes)) >= 9
    keys = [(json.dumps(r["arch"], sort_keys=True), r["device"]) for r in result["evaluations"]]
    spent = len(keys) + len(result["failed"]) + result["search"]["reevaluations"]
    assert spent == 4 and len(set(keys)) == len(keys)
    assert list(stages)[:3] == ["profile", "surrogates", "search"]
    assert "export" in stages and "final_measurement" in stages


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
    quick = store.evaluation(tiny.hash, task=str(task), budget="quick", seed=0)
    assert all(r["metrics"]["accuracy"] == quick["accuracy"] for r in data["references"])
    off = _config(tmp_path, task, board, space=space, references_first=False)
    assert off.references_in_space() == [] and config.references_in_space() == [tiny]
