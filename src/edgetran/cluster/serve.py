"""The long-running processes of a lab: a Dask scheduler and edgetran's workers.

Both block until interrupted (Ctrl-C or SIGTERM, as SLURM sends at the end of a job) and then
close cleanly. A worker offers at most one device (``HARDWARE/RUNTIME``, one unit of the
resource :func:`~edgetran.cluster.device_resource`) and its GPUs (resource ``GPU``), and
carries the environment snapshot it was started with, which
:meth:`~edgetran.cluster.Cluster.environments` reads back.

A worker runs its jobs in its own process (no nanny): if it dies, the scheduler re-queues its
jobs and the process manager that started it (SLURM, systemd, a shell loop) starts it again.
A worker whose scheduler goes away stops too, raising :class:`~edgetran.errors.ClusterError`.

Dask sends pickles: any client that reaches a scheduler or a worker runs arbitrary code on
every worker. So neither listens off loopback over plain TCP unless told ``insecure``
(:func:`check_exposure`); a lab uses ``tls://``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
from collections.abc import Callable
from functools import partial
from typing import Any

from edgetran.cluster.options import (
    ENVIRONMENT_KEY,
    GPU_RESOURCE,
    LOOPBACK_HTTP,
    ClusterOptions,
    check_tls_triple,
    device_resource,
    parse_scheduler,
    require_distributed,
    security,
    worker_device,
)
from edgetran.cores import WORKER_THREADS_ENV, usable_cores
from edgetran.errors import ClusterError

#: The key of a worker's ``--meter`` in the scheduler's worker information.
METER_KEY = "edgetran_meter"
DEFAULT_PORT = 8786
#: Why a plain-TCP scheduler or worker off loopback is refused (or, ``insecure``, warned about).
EXPOSURE_RISK = (
    "any client that reaches it runs arbitrary code on every worker (Dask sends pickles)"
)


def start_worker(
    scheduler: str,
    *,
    device: str | None = None,
    runtime: str | None = None,
    meter: str | None = None,
    nthreads: int = 1,
    gpus: int | None = None,
    name: str | None = None,
    listen_host: str | None = None,
    environment: dict[str, Any] | None = None,
    tls_ca_file: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    connect_timeout_s: float = 10.0,
    memory_limit: str | int = 0,
    local_directory: str | None = None,
    interface: str | None = None,
    on_ready: Callable[[str, str], None] | None = None,
    log_level: int | str = logging.WARNING,
    insecure: bool = False,
    on_warning: Callable[[str], None] | None = None,
) -> None:
    """Run a Dask worker for ``scheduler`` until interrupted.

    Args:
        device, runtime: the device it offers, named ``HARDWARE/RUNTIME``
            (:func:`~edgetran.cluster.options.worker_device`); none: a worker for trainings.
        meter: the power meter its profiles use (kept in the worker's information).
        gpus: GPUs it offers to trainings; ``None``: ``torch.cuda.device_count()`` when
            torch is installed, else 0.
        listen_host: the address it listens on; ``None``: 127.0.0.1 when the scheduler is on
            loopback, else the interface that reaches the scheduler.
        environment: the snapshot :meth:`Cluster.environments` returns for it.
        tls_ca_file, tls_cert, tls_key: required for a ``tls://`` scheduler.
        connect_timeout_s: how long to wait for the scheduler at start.
        memory_limit: Dask's memory limit (0: none; a limit makes Dask pause the worker).
        on_ready: called with the worker's address and name once it is registered.
        insecure, on_warning: listen off loopback without TLS anyway (a ``tcp://``
            scheduler elsewhere, or ``listen_host``/``interface`` off loopback); ``on_warning``
            is then told why that is unsafe (:func:`check_exposure`).

    Its trainings take at most this machine's cores / ``nthreads`` torch threads each (the
    jobs it runs at once share them), fewer where other processes hold cores when one starts;
    a profile holds the host alone and takes the free cores (:mod:`edgetran.cores`).

    Raises:
        ClusterError: bad arguments, plain TCP off loopback without ``insecure``, the
            scheduler cannot be reached within ``connect_timeout_s``, or the worker lost its
            scheduler.
    """
    options = ClusterOptions(
        scheduler, tls_ca_file, tls_cert, tls_key, connect_timeout_s=connect_timeout_s
    )
    if options.is_local:
        raise ClusterError(
            f"scheduler {scheduler!r} is invalid for a worker; allowed: tcp://HOST:PORT or "
            "tls://HOST:PORT of a running scheduler (`edgetran scheduler`)"
        )
    if isinstance(nthreads, bool) or not isinstance(nthreads, int) or nthreads < 1:
        raise ClusterError(f"nthreads={nthreads!r} is invalid; allowed: an integer ≥ 1")
    host = listen_host or (None if interface else _loopback_host(scheduler))
    reaches = f"interface {interface}" if interface else f"the interface that reaches {scheduler}"
    where = host or reaches
    tls = scheduler.startswith("tls://")
    _warn(on_warning, check_exposure("worker", host, where, tls, insecure))
    gpus = detect_gpus() if gpus is None else gpus
    if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0:
        raise ClusterError(f"gpus={gpus!r} is invalid; allowed: an integer ≥ 0")
    offered = worker_device(device, runtime)
    resources: dict[str, float] = {}
    if offered is not None:
        resources[device_resource(offered)] = 1
    if gpus:
        resources[GPU_RESOURCE] = gpus
    worker_options = {
        "nthreads": nthreads,
        "resources": resources,
        "name": name,
        "host": host,
        "interface": interface,
        "security": security("worker", tls_ca_file, tls_cert, tls_key),
        "death_timeout": connect_timeout_s,
        "memory_limit": memory_limit,
        "local_directory": local_directory,
        "dashboard": False,
        "dashboard_address": LOOPBACK_HTTP,
        "startup_information": {
            ENVIRONMENT_KEY: partial(_constant, dict(environment or {})),
            METER_KEY: partial(_constant, meter),
        },
    }
    os.environ[WORKER_THREADS_ENV] = str(max(1, usable_cores() // nthreads))
    # Until it has joined, a failure is reported once, by the ClusterError, not by Dask's log.
    _quiet_dask(logging.CRITICAL)
    asyncio.run(_serve_worker(scheduler, worker_options, connect_timeout_s, on_ready, log_level))


def start_scheduler(
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    tls_ca_file: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    on_ready: Callable[[str], None] | None = None,
    log_level: int | str = logging.WARNING,
    insecure: bool = False,
    on_warning: Callable[[str], None] | None = None,
) -> None:
    """Run a Dask scheduler on ``host:port`` (127.0.0.1 unless told) until interrupted; with
    the three TLS files it speaks only ``tls://``. Off loopback without them it refuses,
    unless ``insecure`` (``on_warning`` is then told why that is unsafe).

    Raises:
        ClusterError: bad arguments, plain TCP off loopback without ``insecure``, or the
            address cannot be listened on.
    """
    given = {"tls_ca_file": tls_ca_file, "tls_cert": tls_cert, "tls_key": tls_key}
    tls = any(given.values())
    if tls:
        check_tls_triple(given, "a TLS scheduler")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ClusterError(f"port={port!r} is invalid; allowed: 0–65535 (0: any free port)")
    parse_scheduler(f"{'tls' if tls else 'tcp'}://{host}:{port or 1}")  # checks the host
    _warn(on_warning, check_exposure("scheduler", host, host, tls, insecure))
    _quiet_dask(log_level)
    scheduler_options = {
        "host": host,
        "port": port,
        "protocol": "tls" if tls else "tcp",
        "security": security("scheduler", tls_ca_file, tls_cert, tls_key),
        "dashboard": False,
        "dashboard_address": LOOPBACK_HTTP,
    }
    asyncio.run(_serve_scheduler(scheduler_options, on_ready))


def check_exposure(
    what: str, host: str | None, where: str, tls: bool, insecure: bool
) -> str | None:
    """Refuse a plain-TCP ``what`` (``scheduler``, ``worker``) that would listen on ``host``
    off loopback (``None``: an address Dask picks) unless ``insecure``; with it, the warning
    to show. ``None`` where there is nothing to say: TLS, or loopback.

    Raises:
        ClusterError: off loopback without TLS and without ``insecure``.
    """
    if tls or is_loopback(host):
        return None
    if not insecure:
        raise ClusterError(
            f"{what} would listen on {where} without TLS: {EXPOSURE_RISK}; use tls:// "
            "(--tls-ca-file, --tls-cert, --tls-key), or --insecure on a network you trust"
        )
    return f"{what} listens on {where} without TLS (--insecure): {EXPOSURE_RISK}"


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` is this machine only (``localhost``, 127.0.0.0/8, ``::1``); a name
    other than ``localhost`` counts as the network."""
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.removeprefix("[").removesuffix("]")).is_loopback
    except ValueError:
        return False


def _warn(on_warning: Callable[[str], None] | None, warning: str | None) -> None:
    if warning is not None and on_warning is not None:
        on_warning(warning)


def detect_gpus() -> int:
    """CUDA GPUs torch sees here; 0 without torch."""
    try:
        import torch
    except ImportError:
        return 0
    try:
        return int(torch.cuda.device_count())
    except Exception:  # a broken driver is no GPU
        return 0


async def _serve_worker(
    scheduler: str,
    options: dict[str, Any],
    connect_timeout_s: float,
    on_ready: Callable[[str, str], None] | None,
    log_level: int | str,
) -> None:
    distributed = require_distributed()
    try:
        worker = distributed.Worker(scheduler, **options)
    except (TypeError, ValueError) as err:  # e.g. a memory limit Dask cannot read
        raise ClusterError(f"cannot start a worker: {_cause(err)}") from None
    try:
        await worker
    except TimeoutError:
        raise ClusterError(
            f"cannot reach scheduler {scheduler}: no answer within {connect_timeout_s:g} s"
        ) from None
    except OSError as err:
        raise ClusterError(f"cannot reach scheduler {scheduler}: {_cause(err)}") from None
    except RuntimeError as err:  # Dask's "Worker failed to start", e.g. a name already taken
        raise ClusterError(f"cannot join scheduler {scheduler}: {_cause(err)}") from None
    # A stop does not wait for running jobs: the scheduler re-queues them elsewhere.
    stopping = _stop_on_signals(
        partial(worker.close, executor_wait=False, reason="edgetran-worker-stopped")
    )
    _quiet_dask(log_level)
    if on_ready is not None:
        on_ready(worker.address, str(worker.name))
    await worker.finished()
    if not stopping.is_set():
        raise ClusterError(f"worker {worker.name} stopped: it lost scheduler {scheduler}")


async def _serve_scheduler(
    options: dict[str, Any], on_ready: Callable[[str], None] | None
) -> None:
    distributed = require_distributed()
    scheduler = distributed.Scheduler(**options)
    try:
        await scheduler
    except (OSError, RuntimeError) as err:
        raise ClusterError(
            f"cannot listen on {options['host']}:{options['port']}: {_cause(err)}"
        ) from None
    _stop_on_signals(scheduler.close)
    if on_ready is not None:
        on_ready(scheduler.address)
    await scheduler.finished()


def _stop_on_signals(close: Callable[[], Any]) -> asyncio.Event:
    """Close the server on SIGINT/SIGTERM (where signals can be handled: the main thread of
    a POSIX process); the event tells that the stop was asked for."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    closing: list[asyncio.Task] = []  # a reference, so that the task is not collected

    def stop() -> None:
        if not stopping.is_set():
            stopping.set()
            closing.append(loop.create_task(close()))

    for number in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(number, stop)
    return stopping


def _loopback_host(scheduler: str) -> str | None:
    """127.0.0.1 for a scheduler on loopback (stay off the network), else ``None``."""
    return "127.0.0.1" if is_loopback(parse_scheduler(scheduler)[1]) else None


def _quiet_dask(level: int | str) -> None:
    """Dask logs every start and connection at INFO; the commands report for themselves.
    (After importing distributed, which sets its own levels on import.)"""
    require_distributed()
    logging.getLogger("distributed").setLevel(level)


def _cause(err: BaseException) -> str:
    """The root cause of a Dask start failure (it wraps it in "X failed to start")."""
    while err.__cause__ is not None:
        err = err.__cause__
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _constant(value: Any, _worker: Any) -> Any:
    """A worker's startup information: the same value for every call (picklable)."""
    return value
