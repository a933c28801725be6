"""Profile a list of architectures into a store, resumably: what the store holds is not redone."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

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
) -> Iterator[tuple[Measurement, bool]]:
    """``(measurement, cached)`` for every requested architecture, in order.

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
        else {m.hash: m for m in stored_measurements(store, settings) if not m.contended}
    )
    for arch in archs:
        if arch.hash in stored:
            yield stored[arch.hash], True
            continue
        measurement = profile_architecture(arch, settings, meter)
        store.add(measurement)
        stored[arch.hash] = measurement
        yield measurement, False


def stored_measurements(store: Store, settings: ProfileSettings) -> list[Measurement]:
    """The store's measurements of these settings' device, runtime and input shape."""
    return store.measurements(
        settings.device,
        runtime=settings.runtime,
        batch_size=settings.batch_size,
        seq_len=settings.seq_len,
    )
