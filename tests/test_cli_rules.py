"""Regression tests of issue 39, items 5, 6 and 14a: one ``--force`` rule for every command
that writes; Ctrl-C and an evaluation's time limit as one line, never a traceback; one parser
of device names (``HARDWARE/RUNTIME``) for every command that takes one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgetran.codesign import CodesignConfig, CodesignError, run_codesign
from edgetran.devices import split_device
from edgetran.errors import (
    InvalidInputError,
    clear_output_dir,
    prepare_output_dir,
    prepare_output_file,
)
from tests.test_codesign import BOOT, ROOT, _args, _inputs
from tests.test_train import tiny_arch, write_task


def _one_line(err: str) -> bool:
    return len(err.strip().splitlines()) == 1 and "Traceback" not in err


# -- item 5: a non-empty output folder or an existing file only with --force --------------------
def _folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "notes.txt").write_text("mine")
    return path


def _file(path: Path) -> Path:
    path.write_text("mine")
    return path


#: Every command that writes a folder or a file: (kind of target, its arguments with {out}).
WRITERS = {
    "export": ("folder", ["export", "bert-tiny", "--format", "onnx", "--out", "{out}"]),
    "codesign": ("folder", ["codesign", "--devices", "cpu/torch", "--out", "{out}",
                            "--db", "{tmp}/c.db", "--workspace", "{tmp}/ws"]),
    "growprune": ("folder", ["growprune", "--task", "{task}", "--device", "cpu/torch",
                             "--arch", "bert-tiny", "--out", "{out}", "--db", "{tmp}/g.db"]),
    "pretrain": ("folder", ["train", "pretrain", "--arch", "bert-tiny", "--task", "{task}",
                            "--out", "{out}"]),
    "finetune": ("folder", ["train", "finetune", "--model", "{tmp}/model", "--task", "{task}",
                            "--out", "{out}"]),
    "model init": ("folder", ["model", "init", "bert-tiny", "--out", "{out}"]),
    "import-hf": ("folder", ["model", "import-hf", "{tmp}", "{out}"]),
    "measurements export": ("file", ["measurements", "export", "--device", "cpu", "--format",
                                     "csv", "--out", "{out}", "--db", "{tmp}/m.db"]),
    "space sample": ("file", ["space", "sample", "--n", "2", "--out", "{out}"]),
    "surrogate fit": ("file", ["surrogate", "fit", "--measurements", "{tmp}/m.csv",
                               "--format", "csv", "--device", "cpu", "--out", "{out}"]),
}  # fmt: skip


@pytest.mark.parametrize("command", WRITERS)
def test_every_writer_refuses_what_exists_without_force(run_cli, tmp_path, command):
    kind, args = WRITERS[command]
    task = write_task(tmp_path / "task.csv", n=20)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    target = (_folder if kind == "folder" else _file)(tmp_path / "target")
    values = {"out": target, "tmp": tmp_path, "task": task}
    code, out, err = run_cli(*(arg.format(**values) for arg in args))
    assert code == 2 and out == "" and _one_line(err), err
    assert str(target) in err and "--force" in err
    kept = target / "notes.txt" if kind == "folder" else target
    assert kept.read_text() == "mine"
    assert sorted(p.name for p in target.iterdir()) == ["notes.txt"] if kind == "folder" else True


#: The commands that write a folder, by their path under ``edgetran`` (issue 41).
FOLDER_WRITERS = {
    "export": ("export",),
    "codesign": ("codesign",),
    "growprune": ("growprune",),
    "pretrain": ("train", "pretrain"),
    "finetune": ("train", "finetune"),
}


@pytest.mark.parametrize("command", FOLDER_WRITERS)
def test_every_folder_writer_has_one_force_and_one_refusal(run_cli, tmp_path, command):
    import click
    import typer

    from edgetran.cli._common import FORCE_HELP
    from edgetran.cli.main import app

    group: click.Command = typer.main.get_command(app)
    for name in FOLDER_WRITERS[command]:
        group = group.commands[name]  # type: ignore[attr-defined]
    (force,) = [p for p in group.params if p.name == "force"]
    assert force.opts == ["--force"] and force.help == FORCE_HELP
    task = write_task(tmp_path / "task.csv", n=20)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    target = _folder(tmp_path / "target")
    _, args = WRITERS[command]
    values = {"out": target, "tmp": tmp_path, "task": task}
    code, _, err = run_cli(*(arg.format(**values) for arg in args))
    assert code == 2 and _one_line(err)
    assert err.startswith(f"error: {target}: directory is not empty (use --force to overwrite")


def test_force_overwrites_a_file(run_cli, tmp_path):
    target = _file(tmp_path / "archs.jsonl")
    code, _, err = run_cli("space", "sample", "--n", "2", "--out", target, "--force")
    assert code == 0, err
    assert len(target.read_text().splitlines()) == 2


def test_codesign_refuses_resume_with_force(run_cli, tmp_path):
    code, _, err = run_cli("codesign", "--out", tmp_path / "x", "--resume", "--force")
    assert code == 2 and _one_line(err) and "--force starts afresh" in err


def test_codesign_force_starts_afresh_keeping_its_database_and_workspace(tmp_path, monkeypatch):
    """A folder that holds an earlier run's files (and this run's database and workspace, as
    ``make demo`` keeps them) is refused; with force it is cleared but those two."""
    from edgetran.codesign.pipeline import _Run

    out = tmp_path / "run"
    (out / "model").mkdir(parents=True)
    (out / "model" / "model.safetensors").write_bytes(b"an earlier run's model")
    (out / "result.json").write_text("{}")
    (out / "ws").mkdir()
    (out / "ws" / "cache.bin").write_bytes(b"kept")
    config = CodesignConfig(devices=("cpu/torch",), out=str(out), db=str(out / "w.db"),
                            workspace=str(out / "ws"))  # fmt: skip

    def stop(self):
        raise RuntimeError("stopped after opening the run")

    monkeypatch.setattr(_Run, "execute", stop)
    with pytest.raises(CodesignError, match=r"run: directory is not empty \(use --force"):
        run_codesign(config)
    assert (out / "model" / "model.safetensors").is_file()
    with pytest.raises(RuntimeError, match="stopped after opening"):
        run_codesign(config, force=True)
    assert not (out / "model").exists() and not (out / "result.json").exists()
    assert (out / "w.db").is_file() and (out / "ws" / "cache.bin").read_bytes() == b"kept"


def test_a_folder_with_only_the_runs_database_counts_as_empty(tmp_path):
    out = tmp_path / "demo"
    out.mkdir()
    for name in ("edgetran.db", "edgetran.db-wal", "edgetran.db-journal"):
        (out / name).write_bytes(b"")
    prepare_output_dir(out, empty=True, keep=[out / "edgetran.db"])
    with pytest.raises(InvalidInputError, match="not empty"):
        prepare_output_dir(out, empty=True)
    (out / "edgetran.db.old").write_bytes(b"")  # no companion of the database
    with pytest.raises(InvalidInputError, match="not empty"):
        prepare_output_dir(out, empty=True, keep=[out / "edgetran.db"])


def test_clear_output_dir_refuses_the_current_folder_and_those_above(tmp_path, monkeypatch):
    here = tmp_path / "a" / "b"
    _folder(here)
    monkeypatch.chdir(here)
    for folder in (here, tmp_path / "a", Path(".")):
        with pytest.raises(InvalidInputError, match="refusing to clear the current folder"):
            clear_output_dir(folder)
    assert (here / "notes.txt").is_file()


def test_prepare_output_file(tmp_path):
    with pytest.raises(InvalidInputError, match="is a directory"):
        prepare_output_file(tmp_path)
    existing = _file(tmp_path / "x.csv")
    with pytest.raises(InvalidInputError, match=r"x.csv: file exists \(use --force"):
        prepare_output_file(existing)
    assert prepare_output_file(existing, force=True) == existing
    with pytest.raises(InvalidInputError, match="cannot write there"):
        prepare_output_file(tmp_path / "missing" / "x.csv")


def test_pretrain_resumes_in_a_folder_holding_its_pretraining(tmp_path):
    from edgetran.train.pretrain import CHECKPOINT, RESULT, holds_pretraining

    assert not holds_pretraining(tmp_path / "none")
    for name in (CHECKPOINT, RESULT):
        folder = tmp_path / name
        folder.mkdir()
        (folder / name).write_bytes(b"")
        assert holds_pretraining(folder)


# -- item 6: Ctrl-C and a time limit as one line ----------------------------------------------
#: Prepended to test_codesign's BOOT: the first training outlives its time limit (the limit's
#: alarm is brought forward to fire inside the training, as a slow one's would), and Ctrl-C
#: arrives during the second; with FAULT_ONLY_INTERRUPT set, during the first. The surrogates
#: skip their parity folds (2 s of a run that is about the search's faults).
FAULTS = """
import importlib, os, signal, time
signal.signal(signal.SIGINT, signal.default_int_handler)  # a runner started with & ignores it
importlib.import_module("edgetran.codesign.explore")._parity = lambda items, seed: {"n": 0}
finetune = importlib.import_module("edgetran.train.finetune")
train, calls = finetune._train, []
def faulty(*args, **kwargs):
    calls.append(1)
    interrupt_at = 1 if os.environ.get("FAULT_ONLY_INTERRUPT") else 2
    if len(calls) == 1 and interrupt_at == 2:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        time.sleep(60)
    if len(calls) == interrupt_at:
        os.kill(os.getpid(), signal.SIGINT)
    return train(*args, **kwargs)
finetune._train = faulty
"""


def _run(args: list, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", FAULTS + BOOT, *map(str, args)], capture_output=True, text=True,
        timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT), **env}, cwd=cwd,
    )  # fmt: skip


def test_codesign_timeout_is_one_failed_evaluation_and_ctrl_c_one_line(tmp_path):
    """An evaluation past --eval-timeout-s is a failed evaluation of one line; Ctrl-C in the
    next one's training ends the run with one line saying what is kept, exit code 130."""
    task, board, space = _inputs(tmp_path)
    args = [*_args(tmp_path, task, board, space, compare=False), "--eval-timeout-s", 600]
    done = _run(args, tmp_path)
    assert done.returncode == 130, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "Trial" not in done.stderr
    timeout = "search 1 failed: EvaluationTimeout: the evaluation ran past eval_timeout_s=600"
    assert timeout in " ".join(done.stderr.split())  # progress lines are wrapped at 80
    lines = done.stderr.strip().splitlines()
    assert lines[-1] == (
        f"interrupted: during the search stage: {tmp_path / 'w.db'} keeps 3 finished stages "
        "and 1 evaluation; run the same command with --resume to continue"
    )


def test_evaluate_ctrl_c_is_one_line(tmp_path):
    """Ctrl-C during an evaluation's training (inside the fine-tuning's TPE study)."""
    task = write_task(tmp_path / "task.csv", n=40)
    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps(tiny_arch().to_dict()))
    args = ["evaluate", "--arch", arch, "--task", task, "--db", tmp_path / "e.db",
            "--workspace", tmp_path / "ws"]  # fmt: skip
    done = _run(args, tmp_path, FAULT_ONLY_INTERRUPT="1")
    assert done.returncode == 130, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "Trial" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"interrupted: an evaluation is stored in {tmp_path / 'e.db'}")
    assert last.endswith("run the same command again to continue")


def test_ctrl_c_elsewhere_is_one_line_too(run_cli, tmp_path, monkeypatch):
    """A command that keeps something says what; any other says it was interrupted."""
    import edgetran.cli.profile_cmds as profile_cmds
    import edgetran.space

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(profile_cmds, "_profile_listed", interrupt)
    code, out, err = run_cli("profile", "--arch", "bert-tiny", "--meter", "estimate", "--db",
                             tmp_path / "p.db")  # fmt: skip
    assert code == 130 and out == "" and _one_line(err)
    assert err.startswith(f"interrupted: the measurements made so far are stored in {tmp_path}")
    monkeypatch.setattr(edgetran.space, "sample", interrupt)
    code, out, err = run_cli("space", "sample", "--n", "2", "--out", tmp_path / "s.jsonl")
    assert code == 130 and out == "" and err == "interrupted\n"


# -- item 14a: HARDWARE/RUNTIME wherever a device is named -------------------------------------
@pytest.mark.parametrize(
    ("device", "runtime", "expected"),
    [("cpu", None, ("cpu", None)), ("cpu", "openvino", ("cpu", "openvino")),
     ("cpu/torch", None, ("cpu", "torch")), ("cuda:0/onnxruntime", "onnxruntime",
     ("cuda:0", "onnxruntime"))],
)  # fmt: skip
def test_split_device(device, runtime, expected):
    assert split_device(device, runtime) == expected


@pytest.mark.parametrize(
    ("device", "runtime", "message"),
    [("cpu/torch", "onnxruntime", "names runtime 'torch' but runtime 'onnxruntime'"),
     ("/torch", None, "'/torch' is invalid"), ("cpu/", None, "'cpu/' is invalid")],
)  # fmt: skip
def test_split_device_refuses(device, runtime, message):
    with pytest.raises(InvalidInputError, match=message):
        split_device(device, runtime)


def test_profile_takes_hardware_slash_runtime(run_cli, tmp_path, monkeypatch):
    import edgetran.cli.profile_cmds as profile_cmds

    seen = []
    monkeypatch.setattr(
        profile_cmds, "_profile_listed", lambda archs, settings, *rest: seen.append(settings)
    )
    common = ["--arch", "bert-tiny", "--meter", "estimate", "--db", tmp_path / "p.db"]
    code, _, err = run_cli("profile", "--device", "cpu/onnxruntime", *common)
    assert code == 0, err
    assert (seen[0].device, seen[0].runtime) == ("cpu", "onnxruntime")
    code, out, err = run_cli("profile", "--device", "cpu/torch", "--runtime", "onnxruntime",
                             *common)  # fmt: skip
    assert code == 2 and out == "" and _one_line(err) and "names runtime 'torch'" in err
    assert len(seen) == 1
