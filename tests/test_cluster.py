"""The Dask layer: routing, the host rule, faults, TLS, local clusters, SLURM scripts, the CLI.

Everything listens on 127.0.0.1. The lab tests come last (their workers idle until the module
ends): one scheduler runs in this process, and the workers are `start_worker` subprocesses, so
that a test can kill one. Leases expire after 2 s there (30 s by default), so that a killed job
frees its host quickly.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("distributed", reason="the Dask layer needs edgetran[lab]")

from edgetran.cluster import (
    ClusterError,
    ClusterOptions,
    JobTimeoutError,
    device_resource,
    open_cluster,
    slurm_job_script,
    worker_device,
)
from edgetran.cores import WORKER_THREADS_ENV, usable_cores
from edgetran.errors import InvalidInputError

ROOT = Path(__file__).resolve().parents[1]
LEASES = {
    "distributed.scheduler.locks.lease-timeout": "2s",
    "distributed.scheduler.locks.lease-validation-interval": "200ms",
}
WORKER = """
import sys
from edgetran.cluster import start_worker
scheduler, name, device, environment = sys.argv[1], sys.argv[2], sys.argv[3] or None, sys.argv[4]
start_worker(scheduler, device=device, gpus=int(sys.argv[5]), name=name,
             environment={"who": environment}, connect_timeout_s=30)
"""


# -- jobs (run on the workers, imported there from this module) -----------------------------------
def where(sleep_s: float = 0.0, marks: str | None = None, together: int = 0) -> dict:
    """Which worker ran the job, and when; a line in ``marks`` once it started. With
    ``together``, the job then waits (up to a minute) until that many jobs have started, so
    that jobs allowed to run at once overlap however loaded the machine is."""
    from distributed import get_worker

    start = time.time()
    if marks is not None:
        with open(marks, "a") as handle:
            handle.write(f"{start}\n")
        deadline = time.monotonic() + 60
        while len(Path(marks).read_text().splitlines()) < together and time.monotonic() < deadline:
            time.sleep(0.05)
    time.sleep(sleep_s)
    return {"worker": get_worker().name, "start": start, "end": time.time(), "pid": os.getpid()}


def first_attempt_hangs(marks: str, sleep_s: float) -> dict:
    """Note each attempt in ``marks``; the first one sleeps (to be killed), later ones not."""
    from distributed import get_worker

    with open(marks, "a") as handle:
        handle.write(json.dumps({"worker": get_worker().name, "pid": os.getpid()}) + "\n")
    if len(Path(marks).read_text().splitlines()) == 1:
        time.sleep(sleep_s)
    return where()


def thread_environment() -> dict:
    """What a job sees of the thread counts its worker was started with."""
    from edgetran.cores import WORKER_THREADS_ENV

    return {name: os.environ.get(name) for name in ("OMP_NUM_THREADS", WORKER_THREADS_ENV)}


def raises(error: str) -> None:
    if error == "typed":
        raise InvalidInputError("bad input from the job")
    raise ValueError("first line\nsecond line")


# -- options --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"scheduler": "udp://127.0.0.1:1"}, "scheduler"),
        ({"scheduler": "tcp://127.0.0.1"}, "scheduler"),
        ({"scheduler": "tcp://127.0.0.1:70000"}, "scheduler"),
        ({"scheduler": "local:0"}, "scheduler"),
        ({"scheduler": "local:two"}, "scheduler"),
        ({"scheduler": "local:2", "job_timeout_s": 0}, "job_timeout_s"),
        ({"scheduler": "local:2", "connect_timeout_s": float("nan")}, "connect_timeout_s"),
        ({"scheduler": "tcp://h:1", "local_devices": ["cpu/torch"]}, "local_devices"),
    ],
)
def test_bad_options_name_the_field(kwargs, field):
    with pytest.raises(ClusterError, match=field):
        ClusterOptions(**kwargs)


def test_device_names():
    assert device_resource("cpu/onnxruntime") == "device:cpu/onnxruntime"
    assert worker_device("cpu", "onnxruntime") == "cpu/onnxruntime"
    assert worker_device("cuda:0/torch") == worker_device("cuda:0/torch", "torch")
    assert worker_device(None) is None
    with pytest.raises(ClusterError, match="names runtime 'torch'"):
        worker_device("cpu/torch", "openvino")


# -- SLURM ----------------------------------------------------------------------------------------
def test_slurm_job_script_runs_edgetran_worker():
    script = slurm_job_script(
        "tcp://login1:8786",
        insecure=True,
        device="cuda:0/torch",
        gpus=1,
        cores=4,
        memory="16GB",
        walltime="02:00:00",
        queue="gpu",
        extra=["--constraint=a100"],
        meter="command:read-watts --now",
        prologue=["source ~/venv/bin/activate"],
    )
    lines = script.splitlines()
    command = next(line for line in lines if "worker --scheduler" in line)
    assert (
        command.split()[0].endswith("edgetran")
        and " worker --scheduler tcp://login1:8786 " in command
    )
    assert "--device cuda:0/torch" in command and "--gpus 1" in command
    assert "--insecure" in command  # plain TCP off loopback: the worker must be told so
    assert "--meter 'command:read-watts --now'" in command and "--nthreads 4" in command
    for directive in (
        "-p gpu",
        "-t 02:00:00",
        "--cpus-per-task=4",
        "--gres=gpu:1",
        "--constraint=a100",
    ):
        assert f"#SBATCH {directive}" in lines
    assert lines.index("source ~/venv/bin/activate") < lines.index(command)


def test_slurm_job_script_options_parse_as_edgetran_worker():
    """Every option dask-jobqueue writes is one `edgetran worker` accepts."""
    from typer.main import get_command

    from edgetran.cli.main import app

    tls = {"tls_ca_file": "/c/ca.pem", "tls_cert": "/c/n.pem", "tls_key": "/c/n.key"}
    script = slurm_job_script("tls://10.0.0.1:8786", device="cpu/onnxruntime", **tls)
    command = next(line for line in script.splitlines() if "worker --scheduler" in line)
    args = command.split()[command.split().index("worker") + 1 :]
    worker = get_command(app).commands["worker"]
    context = worker.make_context("worker", args)
    assert context.params["scheduler"] == "tls://10.0.0.1:8786"
    assert (
        context.params["device"] == "cpu/onnxruntime" and context.params["tls_key"] == "/c/n.key"
    )


def test_slurm_job_script_refuses_bad_arguments():
    with pytest.raises(ClusterError, match="scheduler 'local:2' is invalid"):
        slurm_job_script("local:2")
    with pytest.raises(ClusterError, match="missing: tls_ca_file, tls_cert, tls_key"):
        slurm_job_script("tls://h:8786")
    with pytest.raises(ClusterError, match="gpus=-1"):
        slurm_job_script("tcp://h:8786", gpus=-1)
    with pytest.raises(ClusterError, match=r"without TLS: any client .* or --insecure"):
        slurm_job_script("tcp://login1:8786")
    assert "--insecure" not in slurm_job_script("tcp://127.0.0.1:8786")


# -- CLI ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--device", "cpu", "--runtime", "nope"],
            "error: runtime 'nope' is unknown; allowed: torch",
        ),
        (
            ["--device", "cpu/torch", "--meter", "nope"],
            "error: meter 'nope' is unknown; allowed: auto",
        ),
        (["--meter", "auto"], "error: --meter needs --device"),
        (["--runtime", "torch"], "error: runtime needs a device"),
    ],
)
def test_worker_refuses_bad_runtime_or_meter_before_connecting(run_cli, args, message):
    code, out, err = run_cli("worker", "--scheduler", "tcp://127.0.0.1:1", *args)
    assert code == 2 and out == ""
    assert err.startswith(message) and err.count("\n") == 1


def test_worker_with_an_unreachable_scheduler_is_one_line(run_cli):
    port = _free_port()
    code, out, err = run_cli(
        "worker",
        "--scheduler",
        f"tcp://127.0.0.1:{port}",
        "--gpus",
        "0",
        "--connect-timeout-s",
        "1",
    )
    assert (code, out) == (2, "")
    assert err == f"error: cannot reach scheduler tcp://127.0.0.1:{port}: no answer within 1 s\n"


def test_scheduler_on_a_taken_port_is_one_line(run_cli):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out, err = run_cli("scheduler", "--port", port)
    assert (code, out) == (2, "")
    assert err.startswith(f"error: cannot listen on 127.0.0.1:{port}: ") and err.count("\n") == 1


def _serve_nothing(monkeypatch) -> list[str]:
    """Stand-ins for the Dask servers: which one would have started; nothing listens."""
    served: list[str] = []

    async def scheduler(options, on_ready):
        served.append("scheduler")
        on_ready(f"tcp://{options['host']}:{options['port']}")

    async def worker(address, options, timeout_s, on_ready, log_level):
        served.append("worker")
        on_ready(f"tcp://{options['host']}:1", "w")

    monkeypatch.setattr("edgetran.cluster.serve._serve_scheduler", scheduler)
    monkeypatch.setattr("edgetran.cluster.serve._serve_worker", worker)
    return served


OFF_LOOPBACK = [
    ["scheduler", "--host", "0.0.0.0"],
    ["scheduler", "--host", "lab.example"],
    ["worker", "--scheduler", "tcp://10.0.0.1:8786"],  # it listens where it reaches 10.0.0.1
    ["worker", "--scheduler", "tcp://127.0.0.1:8786", "--listen-host", "0.0.0.0"],
    ["worker", "--scheduler", "tcp://localhost:8786", "--interface", "eth0"],
]


@pytest.mark.parametrize("args", OFF_LOOPBACK, ids=lambda a: " ".join(a[:3]))
def test_plain_tcp_off_loopback_needs_insecure_and_then_says_why(run_cli, monkeypatch, args):
    """Dask sends pickles: whoever reaches a scheduler or worker runs code on the workers."""
    served = _serve_nothing(monkeypatch)
    extra = ["--gpus", "0"] if args[0] == "worker" else []
    code, out, err = run_cli(*args, *extra)
    assert (code, out, served) == (2, "", []) and err.count("\n") == 1
    assert err.startswith("error: ")
    assert "without TLS: any client that reaches it runs arbitrary code" in err
    assert "tls://" in err and "--insecure" in err
    code, out, err = run_cli(*args, *extra, "--insecure")
    assert (code, served) == (0, [args[0]]), err
    assert err.count("\n") == 1 and err.startswith("warning: ")
    assert "without TLS (--insecure): any client that reaches it runs arbitrary code" in err


def test_loopback_or_tls_needs_no_insecure(run_cli, monkeypatch, tmp_path):
    served = _serve_nothing(monkeypatch)
    tls = []
    for option in ("--tls-ca-file", "--tls-cert", "--tls-key"):  # checked to exist, not read
        (tmp_path / option).write_text("")
        tls += [option, tmp_path / option]
    for args in (
        ["scheduler"],
        ["scheduler", "--host", "::1"],
        ["scheduler", "--host", "0.0.0.0", *tls],
        ["worker", "--scheduler", "tcp://localhost:8786", "--gpus", "0"],
    ):
        code, _, err = run_cli(*args)
        assert (code, err) == (0, ""), args
    assert served == ["scheduler"] * 3 + ["worker"]


def test_open_cluster_with_an_unreachable_scheduler():
    port = _free_port()
    with pytest.raises(ClusterError, match=f"cannot reach scheduler tcp://127.0.0.1:{port}: "):
        open_cluster(ClusterOptions(f"tcp://127.0.0.1:{port}", connect_timeout_s=0.5))


def test_cluster_options_helper(run_cli):
    from edgetran.cli.cluster_cmds import cluster_options

    assert cluster_options(None) is None
    options = cluster_options("local:2", job_timeout_s=5, local_devices=["cpu/torch"])
    assert options == ClusterOptions("local:2", job_timeout_s=5, local_devices=("cpu/torch",))


# -- light imports --------------------------------------------------------------------------------
def test_importing_the_package_and_the_cli_imports_no_dask():
    probe = (
        "import sys, json\n"
        "import edgetran.cluster, edgetran.cli.cluster_cmds\n"
        "from edgetran.cli.main import main\n"
        "for args in (['--help'], ['worker', '--help'], ['scheduler', '--help']):\n"
        "    sys.argv = ['edgetran', *args]\n"
        "    try:\n"
        "        main()\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed', 'torch')]\n"
        "print('PROBE' + json.dumps(heavy))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    line = next(x for x in done.stdout.splitlines() if x.startswith("PROBE"))
    assert json.loads(line.removeprefix("PROBE")) == []


# -- TLS ------------------------------------------------------------------------------------------
def _certificates(folder: Path) -> tuple[str, str, str]:
    """A throw-away CA and a certificate it signed, for 127.0.0.1."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl binary to make test certificates")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for args in (
        ["req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
         "-subj", "/CN=edgetran test CA"],
        ["req", *ec, "-keyout", "node.key", "-out", "node.csr", "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", "node.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
         "-CAcreateserial", "-out", "node.pem", "-days", "2"],
    ):  # fmt: skip
        subprocess.run([openssl, *args], cwd=folder, check=True, capture_output=True)
    return str(folder / "ca.pem"), str(folder / "node.pem"), str(folder / "node.key")


def test_tls_scheduler_worker_and_client(tmp_path):
    ca, cert, key = _certificates(tmp_path)
    tls = ["--tls-ca-file", ca, "--tls-cert", cert, "--tls-key", key]
    cli = [sys.executable, "-m", "edgetran.cli.main"]
    address = f"tls://127.0.0.1:{_free_port()}"
    worker_args = ["worker", "--scheduler", address, "--gpus", "0", "--name", "secure", *tls]
    scheduler_args = ["scheduler", "--port", address.rpartition(":")[2], *tls]
    # Both at once: the worker waits for the scheduler (up to --connect-timeout-s).
    procs = [
        subprocess.Popen([*cli, *args], stdout=subprocess.PIPE, text=True, cwd=ROOT)
        for args in (scheduler_args, worker_args)
    ]
    try:
        assert procs[0].stdout.readline() == f"scheduler listening on {address}\n"
        assert procs[1].stdout.readline().startswith("worker secure at tls://127.0.0.1:")
        with open_cluster(ClusterOptions(address, ca, cert, key)) as cluster:
            assert cluster.run_training(os.getpid) != os.getpid()
        plain = address.replace("tls", "tcp")
        with pytest.raises(ClusterError, match=f"cannot reach scheduler {plain}"):
            open_cluster(ClusterOptions(plain, connect_timeout_s=2))
    finally:
        for proc in reversed(procs):
            proc.terminate()
            assert proc.wait(timeout=30) == 0
            assert proc.stdout.read().strip().endswith("stopped")


def test_tls_address_needs_the_three_files(tmp_path):
    with pytest.raises(
        ClusterError,
        match=r"tls_ca_file, tls_cert, tls_key.*missing: tls_ca_file, tls_cert, tls_key",
    ):
        ClusterOptions("tls://127.0.0.1:8786")
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    with pytest.raises(ClusterError, match="missing: tls_ca_file, tls_key"):
        ClusterOptions("tls://127.0.0.1:8786", tls_cert=str(cert))
    with pytest.raises(ClusterError, match=r"tls_key='nope\.pem': no such file"):
        ClusterOptions("tls://127.0.0.1:8786", str(cert), str(cert), "nope.pem")
    with pytest.raises(ClusterError, match="apply only to tls://"):
        ClusterOptions("tcp://127.0.0.1:8786", tls_cert=str(cert))


# -- local:N --------------------------------------------------------------------------------------
def test_local_cluster_listens_on_loopback_and_offers_local_devices():
    options = ClusterOptions("local:2", local_devices=["cpu/fake"], job_timeout_s=60)
    with open_cluster(options) as cluster:
        local = cluster._local_cluster
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        workers = cluster.workers()
        assert len(workers) == 2
        assert all(address.startswith("tcp://127.0.0.1:") for address in workers)
        assert [len(names) for names in cluster.offered_devices().values()] == [2]
        assert _listening_hosts() == {"127.0.0.1"}  # the scheduler, workers, nannies, HTTP
        assert cluster.run_profile("cpu/fake", where)["pid"] != os.getpid()
        assert cluster.run_training(where)["pid"] != os.getpid()
        # each training keeps to its worker's share of the cores; Dask's OMP_NUM_THREADS=1
        # would read as the user's own count, so it is not set (a user's still passes)
        assert cluster.run_training(thread_environment) == {
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            WORKER_THREADS_ENV: str(max(1, usable_cores() // 2)),
        }
    assert local.status.name == "closed"


def test_a_lost_local_worker_is_said_and_its_job_finishes_on_the_other(tmp_path):
    import dask

    lines: list[str] = []
    marks = tmp_path / "attempts.jsonl"
    options = ClusterOptions("local:2", local_devices=["cpu/fake"], job_timeout_s=60)
    with dask.config.set(LEASES), open_cluster(options, on_event=lines.append) as cluster:
        future = cluster.submit_profile("cpu/fake", first_attempt_hangs, str(marks), 60)
        first = json.loads(_wait_for_lines(marks, 1)[0])
        os.kill(first["pid"], signal.SIGKILL)
        done = cluster.result(future, what="profile of M on cpu/fake")
    assert done["pid"] != first["pid"]
    assert len(marks.read_text().splitlines()) == 2  # run once more, not more
    (line,) = lines
    assert line.startswith("profile of M on cpu/fake: worker tcp://127.0.0.1:")
    assert "was lost mid-job; it runs again on a worker offering cpu/fake" in line


def test_a_job_whose_worker_is_lost_twice_is_given_up():
    from edgetran.cluster.client import Cluster

    class Future:
        key, cancelled = "edgetran-profile-1", False

        def done(self):
            return False

        def cancel(self):
            self.cancelled = True

    lines: list[str] = []
    cluster = Cluster.__new__(Cluster)
    cluster.on_event, cluster._told = lines.append, {}
    cluster._jobs = {Future.key: ("profile", "fake/a")}
    cluster._lost = {Future.key: ["tcp://a"]}
    cluster.offered_devices = lambda: {}
    future = Future()
    cluster._say_lost(future, "profile P", deadline=time.monotonic() + 30)
    assert lines == [
        "profile P: worker tcp://a was lost mid-job; no worker offers fake/a now: waiting up "
        "to 30 s for one"
    ]
    cluster._say_lost(future, "profile P", deadline=0)  # nothing new: nothing said
    assert len(lines) == 1 and not future.cancelled
    cluster._lost[Future.key].append("tcp://b")
    with pytest.raises(ClusterError, match=r"profile P: its worker was lost 2 times \(tcp://a"):
        cluster._say_lost(future, "profile P", deadline=0)
    assert future.cancelled


# -- the module's lab: a scheduler here, workers in subprocesses ----------------------------------
class Lab:
    def __init__(self, scheduler: str, logs: Path) -> None:
        self.scheduler, self.logs = scheduler, logs
        self.procs: dict[str, subprocess.Popen] = {}
        self.cluster = None

    def spawn(self, name: str, device: str | None = None, gpus: int = 0) -> None:
        env = dict(
            os.environ,
            PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            DASK_DISTRIBUTED__SCHEDULER__LOCKS__LEASE_TIMEOUT=LEASES[
                "distributed.scheduler.locks.lease-timeout"
            ],
        )
        with open(self.logs / f"{name}.log", "w") as log:
            self.procs[name] = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    WORKER,
                    self.scheduler,
                    name,
                    device or "",
                    name,
                    str(gpus),
                ],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_for(self, *names: str, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while not set(names) <= set(self.cluster.environments()):
            for name in names:
                if self.procs[name].poll() is not None:
                    log = (self.logs / f"{name}.log").read_text()
                    raise AssertionError(f"worker {name} exited:\n{log}")
            assert time.monotonic() < deadline, f"workers {names} did not join"
            time.sleep(0.1)

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(sig)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        deadline = time.monotonic() + 20
        while name in self.cluster.environments() and time.monotonic() < deadline:
            time.sleep(0.1)

    def close(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    import logging

    import dask
    from distributed import LocalCluster

    with dask.config.set(LEASES):
        scheduler = LocalCluster(
            n_workers=0,
            processes=False,
            protocol="tcp://",
            host="127.0.0.1",
            scheduler_port=0,
            dashboard_address=None,
            scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
            silence_logs=logging.ERROR,
        )
        lab = Lab(scheduler.scheduler_address, tmp_path_factory.mktemp("workers"))
        try:
            lab.spawn("dev-a", "fake/a")
            lab.spawn("dev-b", "fake/b")
            lab.spawn("train-1")
            lab.spawn("train-2")
            lab.cluster = open_cluster(ClusterOptions(lab.scheduler, job_timeout_s=60))
            lab.wait_for("dev-a", "dev-b", "train-1", "train-2")
            yield lab
        finally:
            lab.close()
            if lab.cluster is not None:
                lab.cluster.close()
            scheduler.close()


# -- routing --------------------------------------------------------------------------------------
def test_profiles_run_on_their_devices_worker(lab):
    cluster = lab.cluster
    assert cluster.offered_devices() == {"fake/a": ["dev-a"], "fake/b": ["dev-b"]}
    assert cluster.run_profile("fake/a", where)["worker"] == "dev-a"
    assert cluster.run_profile("fake/b", where)["worker"] == "dev-b"
    futures = [cluster.submit_profile(d, where) for d in ("fake/b", "fake/a", "fake/b")]
    ran = [cluster.result(f, what="routing")["worker"] for f in futures]
    assert ran == ["dev-b", "dev-a", "dev-b"]
    assert cluster.environments()["dev-a"] == {"who": "dev-a"}
    assert cluster.gpus() == 0


def test_a_device_no_worker_offers_is_refused(lab):
    lab.cluster.check_devices(["fake/a", "fake/b"])
    with pytest.raises(
        ClusterError, match=r"no worker offers device nope/x; offered: fake/a, fake/b"
    ):
        lab.cluster.check_devices(["fake/a", "nope/x"])


def test_job_errors_are_one_clear_error(lab):
    with pytest.raises(ClusterError, match=r"failed on a worker: ValueError: first line$"):
        lab.cluster.run_training(raises, "plain")
    with pytest.raises(InvalidInputError, match="bad input from the job"):
        lab.cluster.run_training(raises, "typed")


# -- the host rule --------------------------------------------------------------------------------
def test_a_profile_never_overlaps_a_training_but_trainings_overlap(lab, tmp_path):
    cluster = lab.cluster
    marks = tmp_path / "started"
    first = [cluster.submit_training(where, 1.0, str(marks), 2) for _ in range(2)]
    _wait_for_lines(marks, 2)  # both run: the profile must wait for them
    profile = cluster.submit_profile("fake/a", where, 0.5)
    later = [cluster.submit_training(where, 1.0) for _ in range(2)]
    trainings = [cluster.result(f, what="training") for f in first + later]
    measured = cluster.result(profile, what="profile")

    def overlap(a: dict, b: dict) -> bool:
        return a["start"] < b["end"] and b["start"] < a["end"]

    assert not any(overlap(measured, t) for t in trainings)
    assert overlap(trainings[0], trainings[1])  # trainings share a host


def test_a_profile_cancelled_while_it_waits_for_its_host_never_runs(lab, tmp_path):
    marks = tmp_path / "started"
    training = lab.cluster.submit_training(where, 2.0, str(marks))
    _wait_for_lines(marks, 1)
    with open_cluster(ClusterOptions(lab.scheduler, job_timeout_s=0.5)) as short:
        profile = short.submit_profile("fake/b", where, 0, str(marks))
        with pytest.raises(JobTimeoutError, match=r"assigned to worker dev-b, which did not"):
            short.result(profile, what="profile")
    lab.cluster.result(training, what="training")
    time.sleep(1.5)  # the waiting profile notices its cancellation within a second
    assert len(marks.read_text().splitlines()) == 1
    assert lab.cluster.run_profile("fake/b", where)["worker"] == "dev-b"


# -- GPU routing ----------------------------------------------------------------------------------
def test_trainings_go_to_gpu_workers_when_there_are_any(lab):
    lab.spawn("gpu-1", gpus=1)
    lab.wait_for("gpu-1")
    try:
        assert lab.cluster.gpus() == 1
        ran = [lab.cluster.submit_training(where, 0.2) for _ in range(3)]
        assert {lab.cluster.result(f, what="training")["worker"] for f in ran} == {"gpu-1"}
    finally:
        lab.stop("gpu-1")


# -- a device worker lost mid-profile -------------------------------------------------------------
def test_lost_device_worker_times_out_then_the_retry_runs_on_its_replacement(lab, tmp_path):
    (victim,) = lab.cluster.offered_devices()["fake/a"]
    marks = tmp_path / "attempts.jsonl"
    with open_cluster(ClusterOptions(lab.scheduler, job_timeout_s=2)) as short:
        future = short.submit_profile("fake/a", first_attempt_hangs, str(marks), 60)
        _wait_for_lines(marks, 1)
        lab.stop(victim, signal.SIGKILL)
        with pytest.raises(JobTimeoutError) as caught:
            short.result(future, what="profile of model M on device fake/a")
        message = str(caught.value)
        assert message.startswith("profile of model M on device fake/a: no result after 2 s;")
        assert "waiting for a worker offering fake/a" in message
        assert message.endswith("workers offering fake/a now: none")
        assert not short.wait_for_device("fake/a", timeout_s=0)
    lab.spawn(f"{victim}-again", "fake/a")
    assert lab.cluster.wait_for_device("fake/a", timeout_s=60)
    # The dead worker's hold on the host expires after the lease timeout (2 s here).
    retried = lab.cluster.run_profile("fake/a", first_attempt_hangs, str(marks), 60)
    assert retried["worker"] == f"{victim}-again"


# -- a training worker lost mid-job (the lab's last test: it leaves one worker fewer) -------------
def test_lost_training_worker_reruns_the_job_elsewhere(lab, tmp_path):
    marks = tmp_path / "attempts.jsonl"
    future = lab.cluster.submit_training(first_attempt_hangs, str(marks), 60)
    first = json.loads(_wait_for_lines(marks, 1)[0])
    lab.stop(first["worker"], signal.SIGKILL)
    done = lab.cluster.result(future, what="training")
    attempts = [json.loads(line) for line in marks.read_text().splitlines()]
    assert len(attempts) == 2
    assert done["worker"] == attempts[1]["worker"] != first["worker"]


# -- helpers --------------------------------------------------------------------------------------
def _wait_for_lines(path: Path, n: int, timeout_s: float = 60) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= n:
            return lines
        time.sleep(0.05)
    raise AssertionError(f"{path} did not reach {n} lines")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _listening_hosts() -> set[str]:
    """The addresses this process and its children listen on."""
    import psutil

    me = psutil.Process()
    hosts = set()
    for process in (me, *me.children(recursive=True)):
        with contextlib.suppress(psutil.Error):
            for conn in process.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    hosts.add(conn.laddr.ip)
    return hosts
