"""A connected Dask client that routes edgetran's jobs: profiles to their device, trainings to
GPUs, and both under the host rule of :mod:`edgetran.cluster.hostlock`.

Faults. Dask keeps a job that no live worker can take (its device's worker is gone) waiting,
and re-runs a job whose worker died on another worker that offers what it asks for (a device,
a GPU). What the client adds: a line (``on_event``) as soon as a job's worker is lost, saying
where it runs again or that no worker offers its device now; one re-run only (a job whose
worker is lost twice is cancelled: it may be what kills them, e.g. out of memory); and the time
limit: :meth:`Cluster.result` waits at most ``job_timeout_s``, then cancels the job and raises
:class:`~edgetran.errors.JobTimeoutError` saying why (running on which worker, or waiting for
a worker offering the device). A profile re-run on the same machine waits until the lost
worker's hold on the host expires (:mod:`edgetran.cluster.hostlock`, about 40 s). To retry a
profile later, submit it again once :meth:`Cluster.offered_devices` shows its device, e.g.::

    try:
        result = cluster.run_profile("cpu/onnxruntime", measure, arch)
    except JobTimeoutError:
        skipped.append(arch)  # go on with the other devices …
    # … and later:
    if cluster.wait_for_device("cpu/onnxruntime", timeout_s=0):
        result = cluster.run_profile("cpu/onnxruntime", measure, arch)

A job that raised is reported as one :class:`~edgetran.errors.ClusterError` naming the remote
exception's type and first line; an :class:`~edgetran.errors.EdgeTranError` raised by the job
(a bad architecture, a runtime that cannot run here) is re-raised as it is, so that callers
handle it as they would locally.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import CancelledError
from typing import TYPE_CHECKING, Any

from edgetran.cluster.hostlock import run_exclusive, run_shared
from edgetran.cluster.options import (
    DEVICE_PREFIX,
    ENVIRONMENT_KEY,
    GPU_RESOURCE,
    LOOPBACK_HTTP,
    ClusterOptions,
    device_resource,
    require_distributed,
    security,
)
from edgetran.errors import ClusterError, EdgeTranError, JobTimeoutError

if TYPE_CHECKING:
    import distributed

#: How often :meth:`Cluster.wait_for_device` asks the scheduler, in seconds.
POLL_S = 0.25
#: How often :meth:`Cluster.result` looks whether its job's worker was lost, in seconds.
LOST_POLL_S = 0.25
#: Re-runs of a job whose worker was lost; at the next loss it is cancelled.
RERUNS = 1
#: The thread counts Dask's nanny sets to 1 in the workers it starts.
NANNY_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


class Cluster:
    """A client connected to a Dask scheduler (or to a ``local:N`` cluster it started).

    A context manager; :meth:`close` disconnects and stops a local cluster it started.

    Attributes:
        client: the ``distributed.Client``.
        options: what it was opened with.
        on_event: called with a line when a job's worker is lost (default: a warning of the
            ``edgetran.cluster`` logger, which Python prints when nothing is configured).
    """

    def __init__(
        self,
        client: distributed.Client,
        options: ClusterOptions,
        local_cluster: distributed.LocalCluster | None = None,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        self.client, self.options, self._local_cluster = client, options, local_cluster
        self.on_event = on_event or logging.getLogger("edgetran.cluster").warning
        self._jobs: dict[Any, tuple[str, str | None]] = {}  # future key → (kind, device)
        self._lost: dict[Any, list[str]] = {}  # future key → workers lost while running it
        self._told: dict[Any, int] = {}  # future key → losses said
        self.client.subscribe_topic("all", self._note_lost_worker)

    # -- lifetime -------------------------------------------------------------------------------
    def close(self) -> None:
        """Disconnect; stop the local cluster if this object started it."""
        try:
            with contextlib.suppress(Exception):  # a scheduler already gone
                self.client.unsubscribe_topic("all")
            self.client.close()
        finally:
            if self._local_cluster is not None:
                self._local_cluster.close()
                self._local_cluster = None

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def scheduler_address(self) -> str:
        """The address of the scheduler this client is connected to."""
        return str(self.client.scheduler.address)

    # -- what the workers offer -----------------------------------------------------------------
    def workers(self) -> dict[str, dict[str, Any]]:
        """The scheduler's information on every worker, by address."""
        # Recent releases report only a few workers unless told; older ones know no n_workers.
        every = {"n_workers": -1} if "n_workers" in _parameters(self.client.scheduler_info) else {}
        return dict(self.client.scheduler_info(**every).get("workers", {}))

    def offered_devices(self) -> dict[str, list[str]]:
        """Device → the names of the workers offering it (sorted)."""
        offered: dict[str, list[str]] = {}
        for address, info in self.workers().items():
            for resource, amount in _resources(info).items():
                if resource.startswith(DEVICE_PREFIX) and amount > 0:
                    device = resource.removeprefix(DEVICE_PREFIX)
                    offered.setdefault(device, []).append(_name(address, info))
        return {device: sorted(names) for device, names in sorted(offered.items())}

    def check_devices(self, devices: Sequence[str]) -> None:
        """Raise :class:`ClusterError` unless some worker offers each of ``devices``."""
        offered = self.offered_devices()
        missing = [device for device in devices if device not in offered]
        if missing:
            raise ClusterError(
                f"no worker offers device {', '.join(missing)}; "
                f"offered: {', '.join(offered) or 'none'}"
            )

    def wait_for_device(self, device: str, timeout_s: float) -> bool:
        """Whether a worker offers ``device`` now or within ``timeout_s`` seconds."""
        deadline = time.monotonic() + timeout_s
        while device not in self.offered_devices():
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_S)
        return True

    def gpus(self) -> int:
        """The GPUs offered over all workers."""
        return _gpus(self.workers())

    def environments(self) -> dict[str, dict[str, Any]]:
        """Worker name → the environment snapshot it was started with (``{}`` if none)."""
        return {
            _name(address, info): dict(info.get(ENVIRONMENT_KEY) or {})
            for address, info in self.workers().items()
        }

    # -- jobs -----------------------------------------------------------------------------------
    def submit_profile(
        self, device: str, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> distributed.Future:
        """Run ``fn(*args, **kwargs)`` on a worker offering ``device``, alone on its host.

        It waits (on the scheduler) while no worker offers the device; it takes the device's
        one unit, so a device runs one job at a time.
        """
        future = self.client.submit(
            run_exclusive,
            fn,
            args,
            kwargs,
            key=_key("profile"),
            resources={device_resource(device): 1},
            pure=False,
        )
        self._jobs[future.key] = ("profile", device)
        return future

    def submit_training(
        self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> distributed.Future:
        """Run ``fn(*args, **kwargs)`` on a GPU worker (one GPU) if any worker has a GPU, else
        on any worker, preferring workers that offer no device; it shares its host with
        other trainings, never with a profile."""
        workers = self.workers()
        placement: dict[str, Any] = {}
        if _gpus(workers) > 0:
            placement["resources"] = {GPU_RESOURCE: 1}
        else:
            plain = [address for address, info in workers.items() if not _devices(info)]
            if plain and len(plain) < len(workers):
                placement.update(workers=plain, allow_other_workers=True)
        future = self.client.submit(
            run_shared, fn, args, kwargs, key=_key("training"), pure=False, **placement
        )
        self._jobs[future.key] = ("training", None)
        return future

    def result(
        self, future: distributed.Future, *, what: str, timeout_s: float | None = None
    ) -> Any:
        """``future``'s result, waiting at most ``timeout_s`` (default ``job_timeout_s``) from
        this call.

        Raises:
            JobTimeoutError: no result in time; the job is cancelled (a function already
                running on a worker cannot be interrupted and runs to its end there).

        The future is released afterwards: ask for each result once.
            ClusterError: the job raised (its type and first line), its workers kept dying, or
                it was cancelled.
            EdgeTranError: the job raised one (re-raised as it is).
        """
        limit = self.options.job_timeout_s if timeout_s is None else timeout_s
        try:
            return self._result(future, what, limit)
        finally:
            self._jobs.pop(future.key, None)
            self._lost.pop(future.key, None)
            self._told.pop(future.key, None)
            # Done with: Dask would re-run a finished job whose result dies with its worker
            # while a future still refers to it, and a profile must not run twice.
            future.release()

    def run_profile(
        self, device: str, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> Any:
        """:meth:`submit_profile` and :meth:`result`."""
        future = self.submit_profile(device, fn, *args, **kwargs)
        return self.result(future, what=f"profile job {_fn_name(fn)} on device {device}")

    def run_training(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """:meth:`submit_training` and :meth:`result`."""
        future = self.submit_training(fn, *args, **kwargs)
        return self.result(future, what=f"training job {_fn_name(fn)}")

    # -- helpers --------------------------------------------------------------------------------
    def _result(self, future: distributed.Future, what: str, limit: float) -> Any:
        distributed = require_distributed()
        try:
            if not self._wait(future, what, limit):
                reason = self._why_unfinished(future)
                future.cancel()
                raise JobTimeoutError(f"{what}: no result after {limit:g} s; {reason}")
            return future.result()
        except EdgeTranError:
            raise
        except distributed.KilledWorker as err:
            raise ClusterError(
                f"{what}: the workers running it died too often ({_one_line(err)})"
            ) from err
        except CancelledError as err:
            reason = _one_line(err) or "no reason given"
            raise ClusterError(f"{what}: cancelled ({reason})") from err
        except Exception as err:
            failure: BaseException = err
        raise ClusterError(
            f"{what} failed on a worker: {type(failure).__name__}: {_first_line(failure)}"
        ) from failure

    def _wait(self, future: distributed.Future, what: str, limit: float) -> bool:
        """Whether ``future`` finished within ``limit`` seconds; meanwhile, each loss of its
        worker is said (:meth:`_say_lost`)."""
        deadline = time.monotonic() + limit
        while True:
            self._say_lost(future, what, deadline)
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                future.result(timeout=min(LOST_POLL_S, left))
            except TimeoutError:
                if not future.done():  # ours, not the job's own TimeoutError
                    continue
            except Exception:  # the job failed: the caller reads how
                pass
            self._say_lost(future, what, deadline)
            return True

    def _note_lost_worker(self, event: tuple[float, Any]) -> None:
        """(On the client's event loop.) The scheduler removed a worker: note the jobs of ours
        it was running, for the thread that waits for them to say."""
        message = event[1]
        if not isinstance(message, dict) or message.get("action") != "remove-worker":
            return
        for key in message.get("processing-tasks", ()):
            if key in self._jobs:
                self._lost.setdefault(key, []).append(str(message.get("worker", "?")))

    def _say_lost(self, future: distributed.Future, what: str, deadline: float) -> None:
        """A line for each new loss of ``future``'s worker; past :data:`RERUNS` re-runs, the job
        is cancelled and :class:`ClusterError` raised."""
        lost = list(self._lost.get(future.key, ()))
        told = self._told.get(future.key, 0)
        if len(lost) <= told:
            return
        self._told[future.key] = len(lost)
        if len(lost) > RERUNS:
            future.cancel()
            raise ClusterError(
                f"{what}: its worker was lost {len(lost)} times ({', '.join(lost)}); given up "
                "(a job that kills its workers, e.g. out of memory?)"
            )
        if future.done():
            where = "it ran again and finished"
        else:
            device = self._jobs.get(future.key, ("job", None))[1]
            where = self._where_again(device, deadline)
        self.on_event(f"{what}: worker {lost[-1]} was lost mid-job; {where}")

    def _where_again(self, device: str | None, deadline: float) -> str:
        """Where a job whose worker was lost runs again, in words."""
        left = max(0.0, deadline - time.monotonic())
        if device is None:
            return f"it runs again on another worker ({len(self.workers())} now)"
        offering = self.offered_devices().get(device, [])
        if not offering:
            return f"no worker offers {device} now: waiting up to {left:.0f} s for one"
        return f"it runs again on a worker offering {device} ({', '.join(offering)})"

    def _why_unfinished(self, future: distributed.Future) -> str:
        """Where a late job stands: running (or queued) on which worker, or waiting for one."""
        device = self._jobs.get(future.key, ("job", None))[1]
        try:
            workers = self.workers()
            on = [
                _name(address, workers.get(address, {}))
                for address, keys in self.client.processing().items()
                if future.key in keys
            ]
            if on:
                where = f"assigned to worker {', '.join(on)}, which did not finish it"
            elif device is not None:
                where = f"not started (waiting for a worker offering {device})"
            else:
                where = "not started (waiting for a free worker)"
            if device is not None:
                offering = self.offered_devices().get(device, [])
                return f"{where}; workers offering {device} now: {', '.join(offering) or 'none'}"
            return f"{where}; workers now: {len(workers)} ({_gpus(workers)} GPUs)"
        except Exception as err:  # the scheduler itself may be the problem
            return f"the scheduler does not answer ({type(err).__name__}: {_one_line(err)})"


def open_cluster(
    options: ClusterOptions, on_event: Callable[[str], None] | None = None
) -> Cluster:
    """Connect to ``options.scheduler``, or start ``local:N`` here (on 127.0.0.1 only);
    ``on_event`` gets a line when a job's worker is lost (:class:`Cluster`).

    Raises:
        ClusterError: the scheduler cannot be reached (naming it and why).
        MissingDependencyError: distributed is not installed.
    """
    distributed = require_distributed()
    if options.is_local:
        return _open_local(options, on_event)
    try:
        client = distributed.Client(
            options.scheduler,
            timeout=options.connect_timeout_s,
            security=security("client", options.tls_ca_file, options.tls_cert, options.tls_key),
            set_as_default=False,
        )
    except (OSError, TimeoutError, ValueError, RuntimeError) as err:
        raise ClusterError(
            f"cannot reach scheduler {options.scheduler}: {_one_line(err)}"
        ) from None
    return Cluster(client, options, on_event=on_event)


def _open_local(options: ClusterOptions, on_event: Callable[[str], None] | None) -> Cluster:
    """A LocalCluster of N single-threaded worker processes on 127.0.0.1, no dashboard, no
    memory limit (a training may need the machine's memory; Dask would pause or kill it).

    A job's torch threads: the cores free when it starts (:func:`edgetran.cores.choose_threads`),
    a training's at most this machine's cores / N (trainings run side by side; a profile holds
    the machine alone). Dask's nanny would set ``OMP_NUM_THREADS=1`` in its workers, which
    reads as the user's own count; it is left unset (a count the user set still passes)."""
    import dask

    from edgetran.cores import WORKER_THREADS_ENV, usable_cores

    distributed = require_distributed()
    resources = {device_resource(device): 1 for device in options.local_devices}
    share = max(1, usable_cores() // options.local_workers)
    unset = {f"distributed.nanny.pre-spawn-environ.{name}": None for name in NANNY_THREAD_VARS}
    with dask.config.set(unset):
        cluster = distributed.LocalCluster(
            n_workers=options.local_workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            scheduler_port=0,
            dashboard_address=None,
            scheduler_kwargs={"dashboard": False, "dashboard_address": LOOPBACK_HTTP},
            protocol="tcp://",
            memory_limit=0,
            silence_logs=logging.ERROR,
            resources=resources or None,
            env={WORKER_THREADS_ENV: str(share)},
        )
    try:
        client = distributed.Client(cluster, set_as_default=False)
    except BaseException:
        cluster.close()
        raise
    return Cluster(client, options, cluster, on_event)


def _name(address: str, info: dict[str, Any]) -> str:
    return str(info.get("name", address))


def _parameters(method: Callable[..., Any]) -> Mapping[str, inspect.Parameter]:
    return inspect.signature(method).parameters


def _resources(info: dict[str, Any]) -> dict[str, float]:
    return dict(info.get("resources") or {})


def _devices(info: dict[str, Any]) -> list[str]:
    return [r for r, n in _resources(info).items() if r.startswith(DEVICE_PREFIX) and n > 0]


def _gpus(workers: dict[str, dict[str, Any]]) -> int:
    return int(sum(_resources(info).get(GPU_RESOURCE, 0) for info in workers.values()))


def _key(kind: str) -> str:
    return f"edgetran-{kind}-{uuid.uuid4().hex}"


def _fn_name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or type(fn).__name__


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


def _first_line(err: BaseException) -> str:
    """The first non-blank line of a (remote) error message, trimmed."""
    return next((line.strip() for line in str(err).splitlines() if line.strip()), "")
