"""The host rule, enforced where jobs run: a profile holds its host alone; trainings share it.

A measurement must not share its machine with other work, whose load would be measured as the
model's cost. So every job routed by :class:`~edgetran.cluster.Cluster` runs inside one of two
wrappers, on the worker, around the submitted function:

* :func:`run_exclusive` (profiles) holds the host exclusively: no other profile and no training
  runs on the same host while it runs;
* :func:`run_shared` (trainings) holds a shared slot: any number of trainings run side by side,
  but never beside a profile.

It is a writer-preferring readers–writer lock built from two primitives the Dask scheduler
keeps for every host (named after ``socket.gethostname()``, so that all workers of a machine
share them, whichever address they listen on):

* a *turnstile* (``distributed.Lock``): a profile holds it for its whole run; a training holds
  it only for the instant it takes its slot, so that no training starts once a profile waits;
* a *slot counter* (``distributed.Semaphore`` with practically unlimited leases): a training
  holds one lease while it runs; a profile, holding the turnstile, waits until no lease is left.

Both are leases on the scheduler that the worker refreshes; a worker that dies stops refreshing
and its leases expire after ``distributed.scheduler.locks.lease-timeout`` (30 s by default, the
scheduler checks every ``lease-validation-interval``, 10 s), so a dead worker blocks its host
for at most about 40 s, never forever. A job that waits for its host checks every second
whether it was cancelled (e.g. its result timed out) and then gives up without running.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

from edgetran.errors import ClusterError

#: Leases of a host's slot counter: the most trainings that may share one host.
MAX_SHARED_JOBS = 1_000_000
#: How often a waiting job checks whether it was cancelled, in seconds.
WAIT_STEP_S = 1.0
#: How often a profile holding the turnstile checks whether the last training has left.
DRAIN_POLL_S = 0.05


def host_key() -> str:
    """The name of this host's lock (the machine's host name)."""
    return socket.gethostname()


def run_exclusive(fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
    """``fn(*args, **kwargs)`` with this host to itself (no other edgetran job beside it)."""
    turnstile, slots = _host_primitives()
    _acquire(turnstile)
    try:
        while slots.get_value() > 0:
            _raise_if_cancelled()
            time.sleep(DRAIN_POLL_S)
        _raise_if_cancelled()
        return fn(*args, **kwargs)
    finally:
        turnstile.release()


def run_shared(fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
    """``fn(*args, **kwargs)`` beside other trainings, never beside a profile."""
    turnstile, slots = _host_primitives()
    _acquire(turnstile)
    try:
        _acquire(slots)
    finally:
        turnstile.release()
    try:
        _raise_if_cancelled()
        return fn(*args, **kwargs)
    finally:
        slots.release()


def _host_primitives() -> tuple[Any, Any]:
    from distributed import Lock, Semaphore

    host = host_key()
    return (
        Lock(f"edgetran-host-turnstile:{host}"),
        Semaphore(max_leases=MAX_SHARED_JOBS, name=f"edgetran-host-slots:{host}"),
    )


def _acquire(primitive: Any) -> None:
    """Acquire a lock or one lease, checking between tries that the job is still wanted."""
    while not primitive.acquire(timeout=WAIT_STEP_S):
        _raise_if_cancelled()


def _raise_if_cancelled() -> None:
    """Stop a job whose result nobody waits for any more (cancelled on the scheduler)."""
    from distributed import get_worker

    try:
        worker = get_worker()
        key = worker.get_current_task()
    except (ValueError, AttributeError):  # not inside a Dask task
        return
    task = worker.state.tasks.get(key)
    if task is None or task.state in ("cancelled", "released", "forgotten"):
        raise ClusterError(f"job {key} was cancelled while it waited for its host")
