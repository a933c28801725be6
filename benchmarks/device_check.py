"""The prepared GPU device check (issue 44): one JSON summary of what only a GPU can show.

Run through ``benchmarks/device_check.sh SUMMARY.json`` (docs/benchmarks/device-check.md).
It is written for a bare machine lent for minutes, holding PyTorch, transformers and
onnxruntime and nothing downloadable, so it

1. installs from the wheel folder (``make device-wheels``) only the distributions the
   interpreter lacks, into a folder of its own put first on ``PYTHONPATH`` beside this tree's
   ``src`` (nothing of the image's is replaced);
2. runs each part in a child process group under its own time limit and the whole check's
   deadline: a part that fails or hangs records why, and the next part runs;
3. rewrites the summary after every part, so even a killed run leaves one.

``--dry-run`` runs the same parts on this CPU (``cpu`` for ``cuda``) at tiny budgets, installs
nothing, and skips what needs a GPU, saying why. The parent needs only the standard library;
``device_check.py --part NAME --config JSON --result FILE`` is a part's child.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("bert-tiny", "bert-mini", "bert-small")
#: The parts in the order they run (most telling first) and the summary's keys.
PARTS = (
    "gpu_tests",
    "profile_cuda_torch",
    "latency_vs_cuda_events",
    "train_bert_mini",
    "profile_cuda_onnxruntime",
    "codesign",
)
#: Per mode: the device, each part's time limit, the budgets. A GPU run fits five minutes
#: (the deadline cuts the last parts short rather than overrun); the dry run only has to finish.
MODES: dict[str, dict[str, Any]] = {
    "gpu": {
        "device": "cuda:0", "hardware": "cuda", "meter": "gpu:0", "deadline_s": 300.0,
        "timeouts_s": {"setup": 60, "gpu_tests": 45, "profile_cuda_torch": 60,
                       "latency_vs_cuda_events": 30, "train_bert_mini": 60,
                       "profile_cuda_onnxruntime": 50, "codesign": 150},
        "profile": {"seq_len": 128, "max_time_s": 1.0, "idle_s": 1.0, "repeats": 3},
        "events": {"warmup": 20, "repeats": 200},
        "train": {"precision": "bfloat16"},  # the quick budget itself, in bfloat16
        "codesign_args": ["--profile-max-time", "0.5", "--idle-s", "0.3"],
        "codesign_budget": {"min_finetune_steps": 200, "finetune_steps": 200,
                            "dev_examples": 300, "test_examples": 1000, "eval_every": 100},
    },
    "dry": {
        "device": "cpu", "hardware": "cpu", "meter": "estimate", "deadline_s": 900.0,
        "timeouts_s": {"setup": 120, "gpu_tests": 120, "profile_cuda_torch": 150,
                       "latency_vs_cuda_events": 10, "train_bert_mini": 180,
                       "profile_cuda_onnxruntime": 180, "codesign": 360},
        "profile": {"seq_len": 16, "max_time_s": 0.1, "idle_s": 0.1, "repeats": 2},
        "events": {"warmup": 2, "repeats": 10},
        "train": {"precision": "bfloat16", "min_finetune_steps": 1, "finetune_steps": 8,
                  "dev_examples": 40, "test_examples": 100, "eval_every": 4,
                  "word_vectors": False},
        "codesign_args": ["--profile-max-time", "0.05", "--idle-s", "0", "--seq-len", "16"],
        "codesign_budget": {"min_finetune_steps": 1, "finetune_steps": 4, "dev_examples": 30,
                            "test_examples": 60, "eval_every": 2, "word_vectors": False},
    },
}  # fmt: skip
#: Two-sided 95% Student t quantiles by degrees of freedom (repeats − 1).
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571}
#: Modules the probe imports after the set-up (a failure is reported, not fatal).
OUTCOMES = ("passed", "failed", "skipped")
PROBED = ("torch", "transformers", "onnxruntime", "onnxscript", "optuna", "lightgbm",
          "sqlalchemy", "zeus.device", "edgetran.cli.main")  # fmt: skip


class PartError(Exception):
    """A part's command failed; ``output`` is what it printed."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output


class PartTimeout(Exception):
    """A part ran past its limit."""


class PartSkipped(Exception):
    """A part cannot run here; the message says why."""


class Completed(NamedTuple):
    returncode: int
    timed_out: bool
    output: str


class Check:
    """One run of the check: its mode, work folder, child environment, deadline, summary."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.dry = args.dry_run
        self.mode = MODES["dry" if self.dry else "gpu"]
        # absolute (the parts run in the work folder), but not resolved: a venv's is a link
        self.python = os.path.abspath(args.python) if os.sep in args.python else args.python
        self.wheels = Path(args.wheels)
        self.summary_path = Path(args.summary)
        self.log_path = self.summary_path.with_suffix(".log")
        self.work = Path(args.work or tempfile.mkdtemp(prefix="edgetran-device-check-"))
        self.work.mkdir(parents=True, exist_ok=True)
        self.site = self.work / "site"
        self.began = time.monotonic()
        self.deadline_s = args.deadline_s or self.mode["deadline_s"]
        self.env = child_environment(self.site, self.work)
        self.summary: dict[str, Any] = {
            "dry_run": self.dry, "started": now(), "device": self.mode["device"],
            "host": platform.node(), "deadline_s": self.deadline_s, "work": str(self.work),
            "setup": None, "parts": {name: {"status": "pending"} for name in PARTS},
        }  # fmt: skip

    def remaining_s(self) -> float:
        return self.deadline_s - (time.monotonic() - self.began)

    def write(self) -> None:
        """The summary so far, replaced whole (a kill mid-write leaves the last one)."""
        self.summary["elapsed_s"] = round(time.monotonic() - self.began, 1)
        self.summary_path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.summary_path.with_suffix(".partial")
        partial.write_text(json.dumps(self.summary, indent=1, default=str) + "\n")
        partial.replace(self.summary_path)

    def log(self, text: str) -> None:
        print(text, flush=True)
        with self.log_path.open("a") as handle:
            handle.write(text + "\n")

    def run(self, cmd: list[str], timeout_s: float, env: dict | None = None) -> Completed:
        self.log(f"$ {' '.join(cmd)}  (limit {timeout_s:.0f} s)")
        done = run_limited(cmd, timeout_s, env or self.env, self.work)
        self.log(done.output.rstrip())
        return done

    def child(self, part: str, config: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        """This file's ``--part`` in a child process; its JSON result."""
        result = self.work / f"{part}.json"
        result.unlink(missing_ok=True)
        cmd = [self.python, str(Path(__file__).resolve()), "--part", part,
               "--config", json.dumps(config), "--result", str(result)]  # fmt: skip
        done = self.run(cmd, timeout_s)
        if done.timed_out:
            raise PartTimeout()
        if not result.is_file():
            raise PartError(f"exit code {done.returncode}", done.output)
        return json.loads(result.read_text())

    def part(self, name: str, body: Callable[[float], dict[str, Any]]) -> None:
        """Run one part under its limit (or what the deadline leaves); record how it ended."""
        limit = min(self.mode["timeouts_s"][name], self.remaining_s())
        record: dict[str, Any] = {"status": "running", "limit_s": round(limit, 1)}
        self.summary["parts"][name] = record
        self.log(f"== {name}")
        began = time.monotonic()
        try:
            if limit < 5:
                raise PartSkipped("the check's deadline had passed")
            self.write()
            record.update({"status": "ok", **body(limit)})
        except PartTimeout:
            record.update(status="timeout", reason=f"ran past its limit of {limit:.0f} s")
        except PartSkipped as err:
            record.update(status="skipped", reason=str(err))
        except PartError as err:
            record.update(status="failed", reason=str(err), output_tail=err.output[-3000:])
        except Exception as err:  # a bug here must not cost the other parts
            record.update(status="error", reason=f"{type(err).__name__}: {err}",
                          traceback=traceback.format_exc(limit=4))  # fmt: skip
        record["seconds"] = round(time.monotonic() - began, 1)
        self.log(f"   {name}: {record['status']} ({record['seconds']} s)")
        self.write()

    def setup(self, limit: float) -> dict[str, Any]:
        """Install the wheels the interpreter lacks (none in a dry run); probe the result."""
        wheels = sorted(self.wheels.glob("*.whl")) if self.wheels.is_dir() else []
        present = self.installed()
        missing = [w for w in wheels if wheel_distribution(w) not in present]
        outcome: dict[str, Any] = {
            "wheels": str(self.wheels),
            "offered": [w.name for w in wheels],
            "missing": [w.name for w in missing],
            "installed": [],
        }
        if missing and not self.dry:  # the dry run's interpreter has every dependency
            pip = [self.python, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps",
                   "--no-compile", "--no-cache-dir", "--disable-pip-version-check",
                   "--target", str(self.site), *map(str, missing)]  # fmt: skip
            done = self.run(pip, limit)
            if done.returncode:
                raise PartError("pip could not install the wheels", done.output)
            outcome["installed"] = outcome["missing"]
        return outcome | {"probe": self.child("probe", {"models": MODELS}, limit)}

    def installed(self) -> set[str]:
        """The interpreter's own distributions (normalised names), before the set-up."""
        code = (
            "import importlib.metadata as m, json\n"
            "print(json.dumps([d.metadata['Name'] or '' for d in m.distributions()]))"
        )
        env = {k: v for k, v in self.env.items() if k != "PYTHONPATH"}
        done = self.run([self.python, "-c", code], 60, env)
        names = json.loads(done.output.strip().splitlines()[-1]) if done.returncode == 0 else []
        return {normalise(name) for name in names}

    def probe(self) -> dict[str, Any]:
        return (self.summary.get("setup") or {}).get("probe") or {}

    def gpu_tests(self, limit: float) -> dict[str, Any]:
        """``pytest -m gpu`` on the test files that hold such tests (collecting every file
        would import what this image may lack)."""
        files = [str(p) for p in sorted((ROOT / "tests").glob("test_*.py"))
                 if "mark.gpu" in p.read_text()]  # fmt: skip
        report = self.work / "gpu-tests.xml"
        cmd = [self.python, "-m", "pytest", "-m", "gpu", "-p", "no:cacheprovider", "-q",
               "--rootdir", str(ROOT), f"--junitxml={report}", *files]  # fmt: skip
        done = self.run(cmd, limit)
        if done.timed_out:
            raise PartTimeout()
        if not report.is_file():
            raise PartError(f"pytest wrote no report (exit code {done.returncode})", done.output)
        tests = junit_outcomes(report)
        counts = {k: sum(t["outcome"] == k for t in tests) for k in OUTCOMES}
        status = "ok" if done.returncode in (0, 5) and not counts["failed"] else "failed"
        return {"status": status, "counts": counts, "tests": tests}

    def profile(self, runtime: str, limit: float) -> dict[str, Any]:
        """The three models through ``edgetran profile``, ``repeats`` times (``--force``)."""
        hashes = self.probe().get("model_hashes")
        if not hashes:
            raise PartSkipped("the probe found no model hashes (edgetran did not import)")
        providers = self.probe().get("onnxruntime_providers") or []
        if runtime == "onnxruntime" and not self.dry and "CUDAExecutionProvider" not in providers:
            raise PartSkipped(f"onnxruntime has no CUDA provider here ({providers})")
        settings = self.mode["profile"]
        cmd = [self.python, "-m", "edgetran.cli.main", "profile", "--device",
               self.mode["device"], "--runtime", runtime, "--meter", self.mode["meter"],
               "--seq-len", str(settings["seq_len"]), "--max-time", str(settings["max_time_s"]),
               "--idle", str(settings["idle_s"]), "--force", "--json",
               "--db", str(self.work / f"profile-{runtime}.db")]  # fmt: skip
        for model in MODELS:
            cmd += ["--arch", model]
        by_hash = {digest: model for model, digest in hashes.items()}
        runs: dict[str, list[dict[str, Any]]] = {model: [] for model in MODELS}
        stop = time.monotonic() + limit
        for _ in range(settings["repeats"]):
            done = self.run(cmd, stop - time.monotonic())
            if done.timed_out:
                raise PartTimeout()
            if done.returncode:
                raise PartError(f"edgetran profile exited {done.returncode}", done.output)
            for record in json_lines(done.output):
                runs[by_hash[record["hash"]]].append(record)
        models = {model: profile_statistics(records) for model, records in runs.items()}
        return {"runtime": runtime, "meter": self.mode["meter"], "settings": settings,
                "models": models}  # fmt: skip

    def cuda_events(self, limit: float) -> dict[str, Any]:
        if self.dry:
            raise PartSkipped("CUDA events need a CUDA GPU (dry run on the CPU)")
        profiled = self.summary["parts"]["profile_cuda_torch"].get("models", {}).get("bert-mini")
        if not profiled or not profiled.get("repeats"):
            raise PartSkipped("profile_cuda_torch has no bert-mini latency to compare")
        config = {"model": "bert-mini", "device": self.mode["device"],
                  "seq_len": self.mode["profile"]["seq_len"], **self.mode["events"]}  # fmt: skip
        timed = self.child("cuda_events", config, limit)
        return timed | {
            "profiled_latency_s": profiled["latency_s"],
            "ratio_profiled_to_events": profiled["latency_s"] / timed["event_median_s"],
        }

    def train(self, limit: float) -> dict[str, Any]:
        config = {"model": "bert-mini", "device": self.mode["hardware"],
                  "workspace": str(self.work / "train"), "budget": self.mode["train"]}  # fmt: skip
        return self.child("train", config, limit)

    def codesign(self, limit: float) -> dict[str, Any]:
        argv = ["codesign", "--devices", f"{self.mode['hardware']}/torch,cpu/onnxruntime",
                "--evaluations", "3", "--profile-budget", "8", "--references", "bert-tiny",
                "--no-growprune", "--meter", "auto", "--out", str(self.work / "codesign"),
                "--db", str(self.work / "codesign.db"),
                "--workspace", str(self.work / "codesign-workspace"), "--force", "--json",
                *self.mode["codesign_args"]]  # fmt: skip
        config = {"argv": argv, "budget": self.mode["codesign_budget"]}
        return self.child("codesign", config, limit)

    def main(self) -> int:
        self.log(f"device check ({'dry run' if self.dry else 'GPU'}), work folder {self.work}")
        began = time.monotonic()
        try:
            self.summary["setup"] = self.setup(self.mode["timeouts_s"]["setup"])
        except Exception as err:  # the parts still run, and fail saying what is missing
            self.summary["setup"] = {"error": f"{type(err).__name__}: {err}"[:3000]}
        self.summary["setup"]["seconds"] = round(time.monotonic() - began, 1)
        self.write()
        bodies = {
            "gpu_tests": self.gpu_tests,
            "profile_cuda_torch": lambda limit: self.profile("torch", limit),
            "latency_vs_cuda_events": self.cuda_events,
            "train_bert_mini": self.train,
            "profile_cuda_onnxruntime": lambda limit: self.profile("onnxruntime", limit),
            "codesign": self.codesign,
        }
        for name in PARTS:
            self.part(name, bodies[name])
        statuses = {name: part["status"] for name, part in self.summary["parts"].items()}
        self.summary |= {"finished": now(), "statuses": statuses}
        self.write()
        self.log(f"summary: {self.summary_path} {json.dumps(statuses)}")
        return 0 if all(s in ("ok", "skipped") for s in statuses.values()) else 1


def run_limited(cmd: list[str], timeout_s: float, env: dict[str, str], cwd: Path) -> Completed:
    """``cmd`` in a new session; past ``timeout_s`` its whole process group is killed (a CLI's
    own children too), so one hang cannot hold the check."""
    process = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        errors="replace", start_new_session=True,
    )  # fmt: skip
    try:
        output, _ = process.communicate(timeout=max(timeout_s, 1))
        return Completed(process.returncode, False, output)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        return Completed(-9, True, output)


def child_environment(site: Path, work: Path) -> dict[str, str]:
    """The parts' environment: the installed wheels and this tree's ``src`` first, no hub."""
    paths = [str(site), str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]
    return os.environ | {
        "PYTHONPATH": os.pathsep.join(p for p in paths if p), "PYTHONUNBUFFERED": "1",
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
        "EDGETRAN_LOG_DIR": str(work / "logs"), "COLUMNS": "100",
    }  # fmt: skip


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def normalise(name: str) -> str:
    """A distribution name as PEP 503 compares them (``SQLAlchemy`` → ``sqlalchemy``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_distribution(wheel: Path) -> str:
    return normalise(wheel.name.split("-")[0])


def json_lines(output: str) -> list[dict[str, Any]]:
    """The JSON objects a ``--json`` command printed one a line, among its other lines."""
    records = []
    for line in output.splitlines():
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                records.append(json.loads(line))
    return records


def junit_outcomes(report: Path) -> list[dict[str, Any]]:
    """Each test of a JUnit XML report: name, outcome, seconds, why it failed or skipped."""
    tests = []
    for case in ElementTree.parse(report).iter("testcase"):
        outcome, message = "passed", None
        for tag in ("failure", "error", "skipped"):
            found = case.find(tag)
            if found is not None:
                outcome = "skipped" if tag == "skipped" else "failed"
                message = (found.get("message") or "")[:300]
        tests.append({"name": case.get("name"), "outcome": outcome,
                      "seconds": float(case.get("time") or 0), "message": message})  # fmt: skip
    return tests


def mean_ci95(values: list[float]) -> dict[str, Any]:
    """Mean and 95% Student-t interval over the repeats (no interval from one value)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return {"mean": mean, "ci95": None}
    half = T95.get(len(values) - 1, 1.96) * statistics.stdev(values) / math.sqrt(len(values))
    return {"mean": mean, "ci95": [mean - half, mean + half]}


def profile_statistics(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One model's repeats: latency, energy and peak power, each with a 95% interval over the
    repeats, and the same with the idle power taken off (``dynamic_…``)."""
    if not runs:
        return {"repeats": 0}
    return {
        "repeats": len(runs),
        "latency_s": statistics.median(r["latency_s"] for r in runs),
        "latency": mean_ci95([r["latency_s"] for r in runs]),
        "run_latency_ci95_s": [r["latency_ci95_s"] for r in runs],
        "energy_j": mean_ci95([r["energy_j"] for r in runs]),
        "dynamic_energy_j": mean_ci95([r["dynamic_energy_j"] for r in runs]),
        "idle_power_w": mean_ci95([r["idle_power_w"] for r in runs]),
        "peak_power_w": mean_ci95([r["peak_power_w"] for r in runs]),
        "dynamic_peak_power_w": mean_ci95([r["peak_power_w"] - r["idle_power_w"] for r in runs]),
        "meter": runs[0]["meter"],
        "meter_kind": runs[0]["meter_kind"],
        "power_samples": [r["power_samples"] for r in runs],
    }


# -- the children: one part each, the heavy imports here -----------------------------------------
def part_probe(config: dict[str, Any]) -> dict[str, Any]:
    """What the interpreter offers after the set-up: imports, the GPU, ONNX Runtime's
    providers, and the models' hashes (``edgetran profile``'s output is read by them)."""
    import importlib

    imports = {}
    for module in PROBED:
        try:
            imported = importlib.import_module(module)
            imports[module] = getattr(imported, "__version__", "ok")
        except Exception as err:  # a failure is a finding, not a crash
            imports[module] = f"error: {type(err).__name__}: {err}"[:300]
    import torch

    probe: dict[str, Any] = {"python": sys.version.split()[0], "imports": imports}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        probe["gpu"] = {
            "name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
            "bf16": torch.cuda.is_bf16_supported(including_emulation=False),
            "torch_cuda": torch.version.cuda,
        }  # fmt: skip
    with contextlib.suppress(Exception):
        import onnxruntime

        probe["onnxruntime_providers"] = onnxruntime.get_available_providers()
    from edgetran.space import load_architecture

    probe["model_hashes"] = {m: load_architecture(m).hash for m in config["models"]}
    return probe


def part_cuda_events(config: dict[str, Any]) -> dict[str, Any]:
    """The profiler's runner for ``model``: its forward timed by CUDA events and by the wall
    clock around ``runner.run`` (what the profiler times), in one process."""
    import torch

    from edgetran.export import random_inputs
    from edgetran.profile import ProfileSettings
    from edgetran.profile.protocol import build_runner
    from edgetran.space import load_architecture

    settings = ProfileSettings(device=config["device"], seq_len=config["seq_len"])
    with tempfile.TemporaryDirectory() as tmp:
        runner = build_runner(load_architecture(config["model"]), settings, Path(tmp))
        ids, mask = random_inputs(1, settings.seq_len, settings.vocab_size, settings.seed)
        prepared = runner.prepare(ids, mask * 0 + 1)  # full sequences, as profiled
        for _ in range(config["warmup"]):
            runner.run(prepared)
        events, walls = [], []
        for _ in range(config["repeats"]):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            began = time.perf_counter()
            start.record()
            runner.run(prepared)
            end.record()
            end.synchronize()
            walls.append(time.perf_counter() - began)
            events.append(start.elapsed_time(end) / 1e3)
    return {
        "model": config["model"], "repeats": config["repeats"],
        "event_median_s": statistics.median(events), "wall_median_s": statistics.median(walls),
    }  # fmt: skip


def quick_budget(changes: dict[str, Any]) -> dict[str, Any]:
    """The ``quick`` budget with ``changes``, in this process only; returns it."""
    from dataclasses import asdict, replace

    from edgetran.train import oracle

    oracle.BUDGETS["quick"] = replace(oracle.BUDGETS["quick"], **changes)
    return asdict(oracle.BUDGETS["quick"])


def part_train(config: dict[str, Any]) -> dict[str, Any]:
    """One quick training of ``model`` on tweet-sentiment at ``device``, every step timed."""
    from edgetran.space import load_architecture
    from edgetran.store import Store
    from edgetran.train.oracle import train_classifier

    budget = quick_budget(config["budget"])
    stamps: list[float] = []
    workspace = Path(config["workspace"])
    workspace.mkdir(parents=True, exist_ok=True)
    with Store(workspace / "train.db") as store:
        result = train_classifier(
            load_architecture(config["model"]), "tweet-sentiment", "quick", store=store,
            workspace=workspace, device=config["device"], transfer=False,
            on_step=lambda *_: stamps.append(time.perf_counter()),
        )  # fmt: skip
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    keep = ("accuracy", "finetune_steps", "precision", "device", "batch_size", "train_seconds")
    return {
        "model": config["model"], "budget": budget, **{key: result.get(key) for key in keep},
        "bf16": result.get("precision") == "bfloat16",
        # the median step leaves out the dev evaluations between steps; the overall rate not
        "steps_per_s": 1 / statistics.median(gaps) if gaps else None,
        "steps_per_s_overall": len(gaps) / (stamps[-1] - stamps[0]) if gaps else None,
    }  # fmt: skip


def part_codesign(config: dict[str, Any]) -> dict[str, Any]:
    """``edgetran codesign`` through its CLI, in this process so that the shortened quick
    budget holds; the result's scalars and answer (the whole one stays in the work folder)."""
    import io

    from edgetran.cli.main import main

    budget = quick_budget(config["budget"])
    sys.argv = ["edgetran", *config["argv"]]
    stdout, code = io.StringIO(), 0
    with contextlib.redirect_stdout(stdout):
        try:
            main()
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
    printed = stdout.getvalue()
    print(printed[-4000:])
    if code:
        raise RuntimeError(f"edgetran codesign exited {code}")
    result = json.loads(printed[printed.index("{") :])
    best = {k: v for k, v in (result.get("best") or {}).items() if k != "arch"}
    brief = {k: result.get(k) for k in ("headline", "devices", "stages", "failed")}
    evaluations = len(result.get("evaluations") or [])
    return {"budget": budget, "evaluations": evaluations, "best": best, **brief}


CHILDREN: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "probe": part_probe,
    "cuda_events": part_cuda_events,
    "train": part_train,
    "codesign": part_codesign,
}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("summary", nargs="?", help="where the JSON summary goes")
    parser.add_argument("--dry-run", action="store_true", help="on this CPU, tiny budgets")
    parser.add_argument("--wheels", default=str(ROOT / "build" / "device-wheels"))
    parser.add_argument("--work", help="work folder (default: a new temporary one)")
    parser.add_argument("--deadline-s", type=float, help="the whole check's time limit")
    parser.add_argument("--python", default=sys.executable, help="the parts' interpreter")
    parser.add_argument("--part", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.part and not args.summary:
        parser.error("the summary path is required")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if not args.part:
        return Check(args).main()
    result = CHILDREN[args.part](json.loads(args.config))
    Path(args.result).write_text(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
