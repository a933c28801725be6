"""Profile a list of architectures into a store, resumably: what the store holds is not redone."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from edgetran.profile.meters import Meter
from edgetran.profile.protocol import ProfileSettings, profile_architecture
from edgetran.space import Architecture
from edgetran.store import Measurement, Store


def profile_into_store(
    archs: Iterable[Architecture],
    settings: ProfileSettings,
    store: Store,
    meter: Meter | None = None,
    *,
    force: bool = False,
    profiler: Callable[..., Measurement] | None = None,
    device: str | None = None,
) -> Iterator[tuple[Measurement, bool]]:
    """``(measurement, cached)`` for every requested architecture, in order.

    ``profiler`` measures one architecture (default :func:`profile_architecture`, here; a
    :func:`~edgetran.profile.remote.remote_profiler` measures on a lab's device worker), and
    ``device`` is the hardware name its measurements are stored under (default
    ``settings.device``; a lab node's name).

    An architecture the store already measured with these settings' device, runtime and input
    shape is not profiled again (unless ``force``): its stored measurement comes back with
    ``cached=True``. A stored measurement flagged *contended* (other processes crowded the
    cores while it was timed) is not reused: it measured them, so the architecture is profiled
    again. Each new measurement is stored before it is yielded, so an interrupted run loses at
    most the architecture being profiled.
    """
    stored: dict[str, Measurement] = (
        {}
        if force
        else {m.hash: m for m in stored_measurements(store, settings, device) if not m.contended}
    )
    profiler = profiler or profile_architecture
    for arch in archs:
        if arch.hash in stored:
            yield stored[arch.hash], True
            continue
        measurement = profiler(arch, settings, meter)
        store.add(measurement)
        stored[arch.hash] = measurement
        yield measurement, False


def stored_measurements(
    store: Store, settings: ProfileSettings, device: str | None = None
) -> list[Measurement]:
    """The store's measurements of these settings' device (or ``device``, a lab node's
    name), runtime and input shape."""
    return store.measurements(
        device or settings.device,
        runtime=settings.runtime,
        batch_size=settings.batch_size,
        seq_len=settings.seq_len,
    )
