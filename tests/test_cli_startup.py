"""The CLI answers at once and turns every error into one line."""

import json
import subprocess
import sys

import pytest

HEAVY = (
    *("torch", "transformers", "optuna", "lightgbm", "onnxruntime", "openvino"),
    *("litert_torch", "ai_edge_litert", "dask", "distributed"),
)
GROUPS = ("space", "model", "measurements", "surrogate", "train")
COMMANDS = (
    "demo",
    "export",
    "env",
    "profile",
    "evaluate",
    "search",
    "growprune",
    "codesign",
    "worker",
    "scheduler",
)

# Runs the entry point in a fresh interpreter and reports which heavy libraries it imported.
PROBE = """
import json, sys
from edgetran.cli.main import main
args, watched = map(json.loads, sys.argv[1:3])
sys.argv = ["edgetran", *args]
try:
    main()
except SystemExit as exit_:
    code = exit_.code
heavy = [name for name in watched if name in sys.modules]
print("PROBE" + json.dumps({"code": code, "heavy": heavy}))
"""


def _probe(*args: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args), json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    line = next(x for x in done.stdout.splitlines() if x.startswith("PROBE"))
    return json.loads(line.removeprefix("PROBE"))


@pytest.mark.parametrize(
    "args",
    [(), ("--help",), *((g, "--help") for g in GROUPS), *((c, "--help") for c in COMMANDS)],
    ids=lambda a: " ".join(a) or "bare",
)
def test_help_imports_no_heavy_library(args):
    result = _probe(*args)
    assert result["code"] in (0, None)
    assert result["heavy"] == []


def test_space_commands_import_no_heavy_library():
    assert _probe("space", "size", "--json")["heavy"] == []
    assert _probe("space", "describe", "bert-mini", "--json")["heavy"] == []


def test_unexpected_error_is_one_line_and_logged(run_cli, monkeypatch, tmp_path):
    def broken(_path):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setenv("EDGETRAN_LOG_DIR", str(tmp_path))
    monkeypatch.setattr("edgetran.cli.space_cmds.resolve_space", broken)
    code, out, err = run_cli("space", "size", "--space", "postgresql://me:S3cretPW@db/x")
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("error: unexpected RuntimeError: boom second line")
    (log,) = tmp_path.glob("crash-*.log")
    assert str(log) in err
    text = log.read_text()
    assert "Traceback" in text and "RuntimeError: boom" in text and "space size" in text
    assert "S3cretPW" not in text and "me:***@db" in text


def test_library_error_is_one_line_with_exit_2(run_cli, monkeypatch):
    from edgetran.errors import InvalidInputError

    def bad(_path):
        raise InvalidInputError("space.yaml: first\n  second")

    monkeypatch.setattr("edgetran.cli.space_cmds.resolve_space", bad)
    code, _, err = run_cli("space", "size")
    assert (code, err) == (2, "error: space.yaml: first second\n")
