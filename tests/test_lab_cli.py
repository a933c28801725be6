"""The long commands' ``--scheduler`` end to end, on a real ``local:1`` cluster (loopback)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("distributed")

from edgetran.store import Store
from tests.test_profile import TINY

FAST = ["--meter", "estimate", "--threads", "1", "--idle", "0", "--max-time", "0.2",
        "--seq-len", "16"]  # fmt: skip


def test_profile_on_a_local_cluster_is_stored_here(run_cli, tmp_path):
    arch = tmp_path / "tiny.json"
    arch.write_text(json.dumps(TINY.to_model_dict()))
    db = tmp_path / "w.db"
    code, out, err = run_cli(
        "profile", "--arch", arch, *FAST, "--db", db, "--json", "--scheduler", "local:1",
        "--job-timeout-s", "120",
    )  # fmt: skip
    assert code == 0, err
    record = json.loads(out.splitlines()[0])
    assert record["hash"] == TINY.hash and record["device"] == "cpu" and not record["cached"]
    with Store(db) as store:
        (m,) = store.measurements("cpu", runtime="torch")
        assert m.extra["runner_device"] == "cpu"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--on", "rpi4"], "no worker offers device rpi4/torch"),
        (["--scheduler", "tcp://127.0.0.1:1"], "cannot reach"),
    ],
)
def test_profile_bad_lab_input_is_one_line(run_cli, monkeypatch, tmp_path, args, message):
    import distributed

    real = distributed.Client
    # a refused port is retried until the connect timeout (10 s by default): 1 s says the same
    monkeypatch.setattr(distributed, "Client", lambda *a, **k: real(*a, **{**k, "timeout": 1}))
    arch = tmp_path / "tiny.json"
    arch.write_text(json.dumps(TINY.to_model_dict()))
    extra = [] if "--scheduler" in args else ["--scheduler", "local:1"]
    code, _, err = run_cli("profile", "--arch", arch, *FAST, "--db", tmp_path / "w.db",
                           *args, *extra)  # fmt: skip
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_on_needs_a_scheduler(run_cli, tmp_path):
    code, _, err = run_cli("profile", "--arch", "bert-tiny", "--on", "rpi4")
    assert code == 2 and "--on names a lab device" in err


def test_a_replay_search_refuses_a_scheduler(run_cli, tmp_path):
    table = tmp_path / "t.jsonl"
    table.write_text("")
    code, _, err = run_cli("search", "--benchmark", table, "--scheduler", "local:1")
    assert code == 2 and "replay table" in err


def test_a_live_search_in_parallel_needs_a_scheduler(run_cli):
    code, _, err = run_cli("search", "--task", "tweet-sentiment", "--devices", "cpu/torch",
                           "--parallel", "2")  # fmt: skip
    assert code == 2 and "needs --scheduler" in err
