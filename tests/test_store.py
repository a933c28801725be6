"""The measurement store and the measurement files."""

import json
import math
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from edgetran.errors import InvalidInputError
from edgetran.profile import read_measurements, write_measurements
from edgetran.space import Architecture, Layer, homogeneous
from edgetran.store import Measurement, Store


def make(hash_suffix: int = 0, device: str = "cpu", **overrides) -> Measurement:
    arch = homogeneous(2, 32 + hash_suffix, 2, 64)
    values = dict(
        hash=arch.hash,
        model_dict=arch.to_model_dict(),
        device=device,
        runtime="torch",
        batch_size=2,
        seq_len=16,
        latency_s=0.02,
        latency_s_per_seq=0.01,
        meter="fake",
        meter_kind="measured",
        latency_ci95_s=[0.019, 0.021],
        energy_j=0.5,
        energy_j_per_seq=0.25,
        dynamic_energy_j=0.3,
        idle_power_w=10.0,
        peak_power_w=30.0,
        power_samples=9,
        power_period_s=0.05,
        threads=2,
        repeats=30,
        warmup=3,
        environment={"cpu_model": "x"},
        extra={"note": "é"},
    )
    values.update(overrides)
    return Measurement(**values)


def test_add_and_read_back(tmp_path):
    with Store(tmp_path / "w.db") as store:
        first = make(0)
        store.add(first)
        store.add(make(0, device="rpi"))
        store.add(make(1))
        assert store.count() == 3
        cpu = store.measurements("cpu")
        assert [m.hash for m in cpu] == [first.hash, make(1).hash]
        assert cpu[0].to_dict() | {"id": None, "created_at": None} == first.to_dict() | {
            "id": None,
            "created_at": None,
        }
        assert {d["name"] for d in store.iter_devices()} == {"cpu", "rpi"}
        assert store.summary()[0]["count"] == 2


def test_runs_are_registered_once_and_their_records_stored_once(tmp_path):
    with Store(tmp_path / "w.db") as store:
        assert store.growprune_run("g") is None and store.codesign_run("c") is None
        store.add_growprune_run("g", {"mode": 1})
        store.add_growprune_run("g", {"mode": 2})  # the first row stays
        store.add_codesign_run("c", {"task": "t"})
        assert store.growprune_run("g") == {"mode": 1}
        assert store.codesign_run("c") == {"task": "t"}
        assert store.add_growprune_node("g", "root", {"a": 1})
        assert not store.add_growprune_node("g", "root", {"a": 2})
        assert store.add_growprune_iteration("g", 0, {"i": 0})
        assert store.add_codesign_stage("c", "profile", {"s": 1})
        assert not store.add_codesign_stage("c", "profile", {"s": 2})
        assert store.growprune_nodes("g") == [{"a": 1}]
        assert store.growprune_iterations("g") == [{"i": 0}]
        assert store.codesign_stages("c") == {"profile": {"s": 1}}
    with sqlite3.connect(tmp_path / "w.db") as conn:
        schema = dict(conn.execute("SELECT name, sql FROM sqlite_master").fetchall())
    for table, key in (
        ("growprune_nodes", "node"),
        ("growprune_iterations", "iteration"),
        ("codesign_stages", "stage"),
    ):
        index = schema[f"uq_{table.split('_')[0]}_{key}"]
        assert index.startswith("CREATE UNIQUE INDEX") and f"ON {table} (run, {key})" in index


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("latency_s", -1.0),
        ("energy_j", math.nan),
        ("peak_power_w", math.inf),
        ("batch_size", 0),
        ("meter_kind", "guessed"),
    ],
)
def test_impossible_values_are_rejected_naming_the_field(field, value):
    with pytest.raises(InvalidInputError, match=field):
        make(**{field: value})


def _writer(path: str, offset: int, count: int) -> None:
    with Store(path) as store:
        for i in range(count):
            # Half the architectures are shared by both writers (insert-or-ignore path).
            store.add(make(i % 10, device=f"dev{offset}", extra={"i": i}))


def test_two_concurrent_writer_processes_lose_nothing(tmp_path):
    path = str(tmp_path / "shared.db")
    Store(path).close()
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(path, k, 40)) for k in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
        assert w.exitcode == 0
    with Store(path) as store:
        assert store.count() == 80
        assert len({m.hash for m in store.measurements()}) == 10


def test_killed_profiling_run_leaves_a_consistent_database(tmp_path, run_cli):
    archs = []
    for i in range(6):
        path = tmp_path / f"arch{i}.json"
        path.write_text(Architecture((Layer(16 + 8 * i, ("sa_sdp", "c_5"), 8, (32,)),)).to_json())
        archs += ["--arch", str(path)]
    db = tmp_path / "killed.db"
    command = [
        sys.executable,
        "-m",
        "edgetran.cli.main",
        "profile",
        *archs,
        "--db",
        str(db),
        "--meter",
        "estimate",
        "--max-time",
        "1",
        "--idle",
        "0",
        "--seq-len",
        "16",
        "--threads",
        "1",
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.time() + 120
    rows = 0
    while time.time() < deadline and rows == 0:
        time.sleep(0.2)
        if db.exists():
            try:
                with sqlite3.connect(db, timeout=5) as conn:
                    rows = conn.execute("SELECT COUNT(*) FROM measurements").fetchone()[0]
            except sqlite3.OperationalError:
                rows = 0  # tables not created yet
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert rows >= 1
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        orphans = conn.execute(
            "SELECT COUNT(*) FROM measurements m LEFT JOIN architectures a ON m.hash = a.hash "
            "WHERE a.hash IS NULL"
        ).fetchone()[0]
        assert orphans == 0
    with Store(db) as store:
        kept = store.measurements()
        assert 1 <= len(kept) < 6 and all(m.latency_s > 0 for m in kept)
    # Resuming profiles only what is missing (in this process, sparing an interpreter's start).
    code, _, err = run_cli(*command[3:])
    assert code == 0, err
    assert f"{len(kept)} already in the store" in err
    with Store(db) as store:
        assert store.count() == 6


# -- files --------------------------------------------------------------------------------------
def test_protran_round_trip_is_lossless(protran_files, tmp_path):
    for path in protran_files:
        measurements = read_measurements(path, "protran", None)
        assert measurements[0].device == path.stem
        with Store(tmp_path / "p.db") as store:
            store.add_many(measurements)
            stored = store.measurements(path.stem)
        out = tmp_path / path.name
        write_measurements(stored, out, "protran")
        assert json.loads(out.read_text()) == json.loads(path.read_text()), path.name


def test_protran_batch_and_units(protran_files):
    a100 = next(p for p in protran_files if "a100" in p.name)
    first = read_measurements(a100, "protran", "a100")[0]
    original = next(iter(json.loads(a100.read_text()).values()))
    assert first.batch_size == 128
    assert first.latency_s_per_seq == original["performance"]["latency"]
    assert first.latency_s == pytest.approx(128 * first.latency_s_per_seq)
    assert first.dynamic_energy_j is None and "idle not subtracted" in first.extra["caveat"]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_table_round_trip_is_lossless(tmp_path, fmt):
    original = [
        make(0, source_key="m1.json#k0"),
        make(1, dynamic_energy_j=None, threads=None, latency_ci95_s=None),
    ]
    path = tmp_path / f"m.{fmt}"
    write_measurements(original, path, fmt)
    back = read_measurements(path, fmt, None)
    # A row keeps the key of the file it was first imported from, else it gets this file's.
    assert [m.to_dict() for m in back] == [
        original[0].to_dict(),
        original[1].to_dict() | {"source_key": f"m.{fmt}#row 2"},
    ]


BAD_PROTRAN = {
    "not json": ("{oops", "not valid JSON"),
    "missing performance": (json.dumps({"k1": {"model_dict": {}}}), "entry k1"),
    "negative": (
        json.dumps(
            {
                "k2": {
                    "model_dict": homogeneous(2, 32, 2, 64).to_model_dict(),
                    "performance": {"latency": -1, "energy": 1, "peak_power": 1},
                }
            }
        ),
        "entry k2",
    ),
    "nan": (
        '{"k3": {"model_dict": '
        + json.dumps(homogeneous(2, 32, 2, 64).to_model_dict())
        + ', "performance": {"latency": 1, "energy": NaN, "peak_power": 1}}}',
        "entry k3",
    ),
    "missing field": (
        json.dumps(
            {
                "k4": {
                    "model_dict": homogeneous(2, 32, 2, 64).to_model_dict(),
                    "performance": {"latency": 1, "energy": 1},
                }
            }
        ),
        "k4: performance.peak_power is missing",
    ),
    "bad head": (
        json.dumps(
            {
                "k5": {
                    "model_dict": {"l": 1, "o": [["zz_8"]], "h": [8], "f": [[8]]},
                    "performance": {"latency": 1, "energy": 1, "peak_power": 1},
                }
            }
        ),
        "entry k5",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_PROTRAN))
def test_bad_protran_files_name_the_entry(tmp_path, case):
    text, message = BAD_PROTRAN[case]
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(InvalidInputError, match=message):
        read_measurements(path, "protran", "dev")


def test_bad_csv_rows_name_the_row(tmp_path):
    import csv

    path = tmp_path / "m.csv"
    write_measurements([make(0), make(1)], path, "csv")
    with path.open() as stream:
        rows = list(csv.reader(stream))
    rows[2][rows[0].index("latency_s")] = "-3"
    with path.open("w", newline="") as stream:
        csv.writer(stream).writerows(rows)
    with pytest.raises(
        InvalidInputError, match=r"row 2: latency_s='-3'; expected a finite value > 0"
    ):
        read_measurements(path, "csv", None)


def test_measurements_cli(run_cli, protran_files, tmp_path):
    rpi = next(p for p in protran_files if "rpi" in p.name)
    db = tmp_path / "cli.db"
    code, _, err = run_cli(
        "measurements", "import", rpi, "--format", "protran", "--device", "rpi4", "--db", db
    )
    assert code == 0, err
    code, out, _ = run_cli("measurements", "list", "--json", "--db", db)
    assert code == 0 and json.loads(out)[0]["count"] == 81
    for fmt in ("protran", "csv", "parquet"):
        code, _, err = run_cli(
            "measurements",
            "export",
            "--device",
            "rpi4",
            "--format",
            fmt,
            "--out",
            tmp_path / f"rpi.{fmt}",
            "--db",
            db,
        )
        assert code == 0, err
    assert json.loads((tmp_path / "rpi.protran").read_text()) == json.loads(rpi.read_text())
    code, _, err = run_cli(
        "measurements",
        "export",
        "--device",
        "nope",
        "--format",
        "csv",
        "--out",
        tmp_path / "x.csv",
        "--db",
        db,
    )
    assert code == 2 and "no measurements for device 'nope'" in err
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    code, _, err = run_cli("measurements", "import", bad, "--format", "protran", "--db", db)
    assert code == 2 and "expected a JSON object" in err and len(err.strip().splitlines()) == 1


def test_profile_cli_json_fields(run_cli, tmp_path):
    arch = tmp_path / "a.json"
    arch.write_text(homogeneous(2, 32, 2, 64).to_json())
    code, out, err = run_cli(
        "profile",
        "--arch",
        arch,
        "--arch",
        "bert-tiny",
        "--seq-len",
        16,
        "--meter",
        "estimate",
        "--max-time",
        0.5,
        "--idle",
        0.1,
        "--json",
        "--db",
        tmp_path / "p.db",
        "--threads",
        1,
    )
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) == 2
    for key in (
        "hash",
        "device",
        "runtime",
        "batch_size",
        "seq_len",
        "latency_s",
        "latency_s_per_seq",
        "latency_ci95_s",
        "energy_j",
        "dynamic_energy_j",
        "peak_power_w",
        "meter",
        "threads",
    ):
        assert key in records[0]
    assert records[0]["meter_kind"] == "estimated"
    code, _, err = run_cli("profile", "--db", tmp_path / "p.db")
    assert code == 2 and "--arch" in err
    code, _, err = run_cli("env", "--json")
    assert code == 0


def test_profile_active_cli_stores_and_resumes(run_cli, tmp_path):
    space = tmp_path / "space.json"
    space.write_text(
        json.dumps(
            {
                "layers": [1, 2],
                "hidden_sizes": [16, 32],
                "head_counts": [2],
                "ff_depths": [1],
                "ff_widths": [32, 64],
            }
        )
    )
    common = ["--space", space, "--seq-len", 8, "--meter", "estimate", "--max-time", 0.02,
              "--idle", 0, "--threads", 1, "--db", tmp_path / "a.db", "--json"]  # fmt: skip
    code, out, err = run_cli("profile", "--active", "--budget", 12, "--initial", 8, *common)
    assert code == 0, err
    assert len(out.splitlines()) == 12 and "stopped (budget)" in err
    code, out, err = run_cli("profile", "--active", "--budget", 13, "--initial", 8, *common)
    assert code == 0, err
    assert "resuming: 12" in err and len(out.splitlines()) == 1
    with Store(tmp_path / "a.db") as store:
        assert len({m.hash for m in store.measurements()}) == 13
    code, _, err = run_cli("profile", "--active", *common)
    assert code == 2 and "--budget" in err
    code, _, err = run_cli("profile", "--active", "--budget", 14, "--acquisition", "x", *common)
    assert code == 2 and "acquisition 'x' is unknown" in err
