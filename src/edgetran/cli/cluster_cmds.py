"""``edgetran worker`` and ``edgetran scheduler``, and the cluster options other commands share.

A lab: ``edgetran scheduler --host 0.0.0.0 TLS`` on one machine; ``edgetran worker --scheduler
tls://HOST:8786 --device cpu --runtime onnxruntime TLS`` on each device to measure; ``edgetran
worker --scheduler tls://HOST:8786 TLS`` on the training machines (their GPUs are found); then
``edgetran profile|evaluate|search|codesign --scheduler tls://HOST:8786 TLS``, where ``TLS`` is
``--tls-ca-file --tls-cert --tls-key``. Off loopback, plain ``tcp://`` needs ``--insecure``
(Dask sends pickles). On one machine, ``--scheduler local:N`` starts N workers here instead.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Annotated, Any

import typer

from edgetran.cli._common import fail

if TYPE_CHECKING:
    from edgetran.cluster import Cluster, ClusterOptions


def lab_option(name: str, metavar: str, help: str, **more: Any) -> Any:
    """An option of the lab panel of --help (``--scheduler`` and the options that go with it)."""
    return typer.Option(name, metavar=metavar, help=help, rich_help_panel="Lab", **more)


SchedulerOption = Annotated[
    str | None,
    lab_option("--scheduler", "URL", "Dask cluster: tcp://HOST:PORT, tls://… or local:N."),
]
TlsCaFileOption = Annotated[
    str | None, lab_option("--tls-ca-file", "FILE", "tls://: the CA certificate file.")
]
TlsCertOption = Annotated[
    str | None, lab_option("--tls-cert", "FILE", "tls://: this side's certificate.")
]
TlsKeyOption = Annotated[str | None, lab_option("--tls-key", "FILE", "tls://: its key file.")]
JobTimeoutOption = Annotated[
    float, lab_option("--job-timeout-s", "S", "Longest wait for one job.", min=0.001)
]
InsecureOption = Annotated[
    bool,
    typer.Option(
        "--insecure",
        help="Listen off loopback without TLS anyway (a trusted network only: any client that "
        "reaches it runs arbitrary code on every worker).",
    ),
]
ConnectTimeoutOption = Annotated[
    float,
    typer.Option(
        "--connect-timeout-s",
        "--death-timeout",
        min=0.001,
        help="Longest wait for the scheduler to answer, in seconds.",
    ),
]


def cluster_options(
    scheduler: str | None,
    tls_ca_file: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    job_timeout_s: float = 3600.0,
    connect_timeout_s: float = 10.0,
    local_devices: Sequence[str] = (),
) -> ClusterOptions | None:
    """The :class:`~edgetran.cluster.ClusterOptions` of a command's ``--scheduler`` options;
    ``None`` without ``--scheduler`` (run here, as before). Bad values exit with code 2."""
    if scheduler is None:
        if tls_ca_file or tls_cert or tls_key:
            fail("--tls-ca-file/--tls-cert/--tls-key need --scheduler tls://HOST:PORT")
        return None
    from edgetran.cluster import ClusterOptions

    options = ClusterOptions(
        scheduler,
        tls_ca_file=tls_ca_file,
        tls_cert=tls_cert,
        tls_key=tls_key,
        job_timeout_s=job_timeout_s,
        connect_timeout_s=connect_timeout_s,
    )
    return offering(options, local_devices)


def lab_options(
    scheduler: SchedulerOption = None,
    tls_ca_file: TlsCaFileOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
    job_timeout_s: JobTimeoutOption = 3600.0,
) -> ClusterOptions | None:
    """The lab options (``--scheduler``, TLS, job time-out) of every command that can run on a
    cluster, declared once (:func:`~edgetran.cli._common.option_groups`): their
    :func:`cluster_options`."""
    return cluster_options(scheduler, tls_ca_file, tls_cert, tls_key, job_timeout_s)


def offering(lab: ClusterOptions | None, devices: Sequence[str]) -> ClusterOptions | None:
    """``lab`` whose ``local:N`` workers offer ``devices`` (this machine's); a remote cluster's
    workers say themselves what they offer."""
    if lab is None or not lab.is_local:
        return lab
    return replace(lab, local_devices=tuple(devices))


@contextmanager
def cluster_session(options: ClusterOptions | None) -> Iterator[Cluster | None]:
    """The cluster a command's ``--scheduler`` names, connected (or ``local:N`` started) for
    the command's duration (a job's lost worker is said on stderr); ``None`` without
    ``--scheduler``."""
    if options is None:
        yield None
        return
    from edgetran.cluster import open_cluster

    with open_cluster(options, on_event=lambda line: typer.echo(line, err=True)) as cluster:
        yield cluster


def worker(
    scheduler: Annotated[
        str, typer.Option("--scheduler", help="The scheduler: tcp://HOST:PORT or tls://HOST:PORT.")
    ],
    device: Annotated[
        str | None,
        typer.Option(
            help="The device this worker profiles: HARDWARE/RUNTIME (cpu/onnxruntime) or "
            "HARDWARE with --runtime. None: a worker for trainings."
        ),
    ] = None,
    runtime: Annotated[
        str | None, typer.Option(help="The device's runtime: torch, onnxruntime, openvino …")
    ] = None,
    meter: Annotated[
        str | None,
        typer.Option(help="The device's power meter (as `edgetran profile --meter`; auto)."),
    ] = None,
    nthreads: Annotated[int, typer.Option(min=1, help="Jobs run at once.")] = 1,
    gpus: Annotated[
        int | None, typer.Option(min=0, help="GPUs offered to trainings (default: all found).")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Worker name (default: its address).")] = None,
    listen_host: Annotated[
        str | None,
        typer.Option(help="Address to listen on (default: 127.0.0.1 for a local scheduler)."),
    ] = None,
    tls_ca_file: TlsCaFileOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
    connect_timeout_s: ConnectTimeoutOption = 10.0,
    memory_limit: Annotated[
        str, typer.Option(help="Dask memory limit, e.g. 8GB (0: none; Dask pauses above it).")
    ] = "0",
    local_directory: Annotated[
        str | None, typer.Option(help="Folder for Dask's scratch files.")
    ] = None,
    interface: Annotated[
        str | None, typer.Option(help="Network interface to listen on (e.g. eth0, ib0).")
    ] = None,
    insecure: InsecureOption = False,
) -> None:
    """Serve jobs for a scheduler until interrupted: profiles of --device, and trainings.
    Off loopback: with TLS, or --insecure."""
    from edgetran.cluster import ClusterOptions, start_worker, worker_device

    ClusterOptions(scheduler, tls_ca_file, tls_cert, tls_key, connect_timeout_s=connect_timeout_s)
    offered = worker_device(device, runtime)
    _check_runtime(offered)
    if meter is not None:
        if offered is None:
            fail("--meter needs --device (the meter of the device this worker profiles)")
        _check_meter(meter)
    environment = _environment(offered, meter) if offered is not None else {}

    def ready(address: str, worker_name: str) -> None:
        offers = f"device {offered}" if offered else "no device"
        typer.echo(f"worker {worker_name} at {address} ({offers}) joined {scheduler}")

    with _jobs_meter(meter):
        start_worker(
            scheduler,
            device=offered,
            meter=meter,
            nthreads=nthreads,
            gpus=gpus,
            name=name,
            listen_host=listen_host,
            environment=environment,
            tls_ca_file=tls_ca_file,
            tls_cert=tls_cert,
            tls_key=tls_key,
            connect_timeout_s=connect_timeout_s,
            memory_limit=int(memory_limit) if memory_limit.isdigit() else memory_limit,
            local_directory=local_directory,
            interface=interface,
            on_ready=ready,
            insecure=insecure,
            on_warning=_warn,
        )
        typer.echo("worker stopped")


def scheduler(
    host: Annotated[
        str, typer.Option(help="Address to listen on (0.0.0.0: every interface).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free one).")] = 8786,
    tls_ca_file: TlsCaFileOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
    insecure: InsecureOption = False,
) -> None:
    """Run a Dask scheduler for edgetran's workers until interrupted (off loopback: with TLS,
    or --insecure)."""
    from edgetran.cluster import start_scheduler

    start_scheduler(
        host=host,
        port=port,
        tls_ca_file=tls_ca_file,
        tls_cert=tls_cert,
        tls_key=tls_key,
        on_ready=lambda address: typer.echo(f"scheduler listening on {address}"),
        insecure=insecure,
        on_warning=_warn,
    )
    typer.echo("scheduler stopped")


def _warn(line: str) -> None:
    typer.echo(f"warning: {line}", err=True)


def _check_runtime(offered: str | None) -> None:
    """The runtime part of ``HARDWARE/RUNTIME`` must be a registered runtime."""
    if offered is None:
        return
    from edgetran.devices import split_device
    from edgetran.plugins import list_runtimes

    runtime = split_device(offered)[1]
    if runtime is not None and runtime not in list_runtimes():
        fail(f"runtime {runtime!r} is unknown; allowed: {', '.join(list_runtimes())}")


def _check_meter(meter: str) -> None:
    from edgetran.plugins import list_meters

    name = meter.partition(":")[0]
    if name not in ("auto", "zeus", *list_meters()):
        fail(
            f"meter {meter!r} is unknown; allowed: auto, zeus, {', '.join(list_meters())} "
            "(NAME:ARG passes ARG)"
        )


@contextmanager
def _jobs_meter(meter: str | None) -> Iterator[None]:
    """While the worker serves, the jobs it runs measure with its meter when theirs is
    ``auto`` (see :func:`edgetran.profile.protocol.worker_settings`); restored afterwards."""
    import os

    from edgetran.profile.meters import WORKER_METER_ENV

    before = os.environ.get(WORKER_METER_ENV)
    if meter:
        os.environ[WORKER_METER_ENV] = meter
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(WORKER_METER_ENV, None)
        else:
            os.environ[WORKER_METER_ENV] = before


def _environment(device: str, meter: str | None) -> dict:
    """The snapshot stored beside this device's measurements (as `edgetran profile` does)."""
    from edgetran.devices import split_device
    from edgetran.export.runners import RunnerError, check_device
    from edgetran.profile.environment import environment_snapshot
    from edgetran.profile.meters import create_meter

    hardware, runtime = split_device(device)
    runner = hardware  # a lab node's name (rpi4) is no runner device: its runs use the CPU
    try:
        if runtime:
            check_device(runtime, hardware)
    except RunnerError:
        runner = "cpu"
    probe = create_meter(meter or "auto", runner)
    return {**environment_snapshot(runner, runtime or "", probe.describe()), "node": hardware}
