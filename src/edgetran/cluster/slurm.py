"""SLURM job scripts that start ``edgetran worker`` on cluster nodes (through dask-jobqueue).

Typical use on a login node::

    edgetran scheduler --host 0.0.0.0 $TLS &             # or on a node of its own
    python -c 'from edgetran.cluster import slurm_job_script as s; print(s(
        "tls://login1:8786", device="cuda:0/torch", gpus=1, cores=8, memory="32GB",
        queue="gpu", prologue=["source ~/edgetran/.venv/bin/activate"],
        tls_ca_file="ca.pem", tls_cert="node.pem", tls_key="node.key"))' > worker.sh
    sbatch worker.sh   # once per worker wanted

dask-jobqueue writes the ``#SBATCH`` header and a worker command of the form
``PYTHON -m WORKER_COMMAND SCHEDULER --name … --nthreads … --memory-limit … --death-timeout …
EXTRA ARGS``. With ``WORKER_COMMAND = "edgetran.cli.main worker --scheduler"`` that is a valid
``edgetran worker`` command line (``edgetran worker`` accepts those options); the
``PYTHON -m edgetran.cli.main`` prefix is then replaced by the ``edgetran`` script of this
installation, so that the job runs ``edgetran worker --scheduler …``. Only the job script is
built: no scheduler is started here and no SLURM command is run.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from edgetran.cluster.options import LAB_EXTRA, TLS_FIELDS, parse_scheduler, worker_device
from edgetran.cluster.serve import check_exposure, is_loopback
from edgetran.errors import ClusterError, MissingDependencyError

WORKER_MODULE = "edgetran.cli.main"


def slurm_job_script(
    scheduler: str,
    *,
    device: str | None = None,
    gpus: int = 0,
    cores: int = 1,
    memory: str = "4GB",
    walltime: str = "01:00:00",
    queue: str | None = None,
    extra: Sequence[str] = (),
    runtime: str | None = None,
    meter: str | None = None,
    account: str | None = None,
    prologue: Sequence[str] = (),
    tls_ca_file: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    connect_timeout_s: float = 60.0,
    job_name: str = "edgetran-worker",
    insecure: bool = False,
) -> str:
    """A SLURM batch script that runs one ``edgetran worker`` for ``scheduler``.

    Args:
        device, runtime, meter: the device the worker offers (``HARDWARE/RUNTIME``) and its
            meter; none: a worker for trainings.
        gpus: GPUs it offers to trainings (also asked from SLURM as ``--gres=gpu:N``).
        cores, memory, walltime, queue, account: the job's resources (``#SBATCH``); the worker
            runs ``cores`` threads.
        extra: more ``#SBATCH`` directives, e.g. ``["--constraint=avx512"]``.
        prologue: shell lines run before the worker (``module load …``, activating a venv).
        tls_ca_file, tls_cert, tls_key: paths on the nodes; required for ``tls://``.
        connect_timeout_s: how long the worker waits for the scheduler.
        insecure: a ``tcp://`` scheduler off loopback is refused (the worker would listen on
            the network without TLS, :func:`~edgetran.cluster.serve.check_exposure`) unless
            this is set; the worker is then started with ``--insecure``.

    Raises:
        ClusterError: a bad argument, naming it.
        MissingDependencyError: dask-jobqueue is not installed.
    """
    scheme, host, _ = parse_scheduler(scheduler)
    if scheme == "local:":
        raise ClusterError(
            f"scheduler {scheduler!r} is invalid for a SLURM worker; allowed: tcp://HOST:PORT "
            "or tls://HOST:PORT"
        )
    offered = worker_device(device, runtime)
    for field, value, low in (("cores", cores, 1), ("gpus", gpus, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ClusterError(f"{field}={value!r} is invalid; allowed: an integer ≥ {low}")
    tls = dict(zip(TLS_FIELDS, (tls_ca_file, tls_cert, tls_key), strict=True))
    # The files are paths on the nodes: they need not exist here.
    missing = [field for field, value in tls.items() if not value]
    if scheme == "tls://" and missing:
        raise ClusterError(
            f"scheduler {scheduler} uses TLS and needs {', '.join(TLS_FIELDS)}; "
            f"missing: {', '.join(missing)}"
        )
    if scheme != "tls://" and len(missing) < len(TLS_FIELDS):
        raise ClusterError(f"TLS files apply only to tls://HOST:PORT schedulers, not {scheduler}")
    args = ["--gpus", str(gpus)]
    listen = host if is_loopback(host) else None  # as `edgetran worker` chooses
    where = f"the interface that reaches {scheduler}"
    if check_exposure("worker", listen, where, scheme == "tls://", insecure) is not None:
        args.append("--insecure")
    if offered is not None:
        args += ["--device", offered]
    if meter is not None:
        args += ["--meter", meter]
    for field, value in tls.items():
        if value:
            args += [f"--{field.replace('_', '-')}", value]
    directives = [*([f"--gres=gpu:{gpus}"] if gpus else []), *extra]
    try:
        from dask_jobqueue.slurm import SLURMJob
    except ImportError as err:
        raise MissingDependencyError(
            f"SLURM job scripts need dask-jobqueue ({err}); {LAB_EXTRA}"
        ) from None
    try:
        job = SLURMJob(
            scheduler=scheduler,
            name=f"{job_name}-$SLURM_JOB_ID",  # unique per job, expanded by the job's shell
            job_name=job_name,
            cores=cores,
            memory=memory,
            processes=1,
            walltime=walltime,
            queue=queue,
            account=account,
            death_timeout=connect_timeout_s,
            python=sys.executable,
            worker_command=f"{WORKER_MODULE} worker --scheduler",
            worker_extra_args=[shlex.quote(arg) for arg in args],
            job_extra_directives=list(directives),
            job_script_prologue=list(prologue),
        )
        script = job.job_script()
    except (ValueError, TypeError) as err:
        raise ClusterError(f"cannot build a SLURM job script: {err}") from None
    return script.replace(f"{sys.executable} -m {WORKER_MODULE} worker", f"{_edgetran()} worker")


def _edgetran() -> str:
    """The ``edgetran`` script beside this Python (a venv's bin/), else ``edgetran`` on PATH."""
    script = Path(sys.executable).with_name("edgetran")
    return shlex.quote(str(script)) if script.is_file() else "edgetran"
