"""What a child costs on the target device: measured where the device is live, else predicted.

Costs depend on the architecture only, so they are known before a child is trained, and a
grow child over the budgets is never trained. Values are per sequence (latency, energy) and
per run (peak power). A predicted value comes with the upper end of the surrogate's 90%
interval, which is what budgets are checked against; a measured value is its own upper end.
An energy or peak power from a model of the CPU (the ``estimate`` meter) is not called
measured.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from edgetran.growprune.modes import GrowPruneError
from edgetran.space import Architecture

if TYPE_CHECKING:
    from edgetran.profile import ProfileSettings
    from edgetran.store import Measurement, Store
    from edgetran.surrogate import DeviceSurrogate

#: Cost metrics, in the units of their names (per sequence where that applies).
COST_METRICS = ("latency_s", "energy_j", "peak_power_w")
#: Surrogate metric → cost metric.
_SURROGATE_METRICS = {"latency": "latency_s", "energy": "energy_j", "peak_power": "peak_power_w"}
#: The interval whose upper end budgets are checked against.
LEVEL = 0.9


@dataclass(frozen=True)
class CostEstimate:
    """One architecture's costs on one device.

    Attributes:
        value: metric → measured value, else predicted mean (``None``: unknown here).
        upper: metric → the upper end of the 90% interval (the value itself where measured).
        measured: the metrics that were measured (the rest are predicted or estimated).
    """

    value: dict[str, float | None]
    upper: dict[str, float | None]
    measured: tuple[str, ...] = ()
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The estimate as a JSON-ready dict."""
        return {
            metric: {
                "value": self.value.get(metric),
                "upper": self.upper.get(metric),
                "measured": metric in self.measured,
            }
            for metric in COST_METRICS
        } | {"source": self.source, **self.extra}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CostEstimate:
        """The estimate stored by :meth:`to_dict`."""
        metrics = [m for m in COST_METRICS if isinstance(data.get(m), Mapping)]
        extra = {k: v for k, v in data.items() if k not in COST_METRICS and k != "source"}
        return cls(
            {m: data[m]["value"] for m in metrics},
            {m: data[m]["upper"] for m in metrics},
            tuple(m for m in metrics if data[m].get("measured")),
            data.get("source", ""),
            extra,
        )


class DeviceCosts(abc.ABC):
    """The target device: costs of architectures on it.

    Contract: ``name`` is fixed; ``estimate`` returns one :class:`CostEstimate` per
    architecture, in order, and is deterministic for an architecture (a live device measures
    once and reuses the stored measurement).
    """

    name: str
    live: bool = False

    @abc.abstractmethod
    def estimate(self, archs: Sequence[Architecture]) -> list[CostEstimate]:
        """Costs of each architecture."""


class SurrogateDevice(DeviceCosts):
    """A recorded device: stored measurements where the store has them, else the device's
    surrogate (per batch of the shape it learned from, divided here by the batch size).

    Args:
        name: the device's name.
        surrogate: a fitted :class:`~edgetran.surrogate.DeviceSurrogate`.
        measured: architecture hash → per-sequence metrics already measured.
    """

    def __init__(
        self,
        name: str,
        surrogate: DeviceSurrogate,
        measured: Mapping[str, Mapping[str, float | None]] | None = None,
    ) -> None:
        self.name, self.surrogate, self.measured = name, surrogate, dict(measured or {})

    def estimate(self, archs: Sequence[Architecture]) -> list[CostEstimate]:
        """The costs of ``archs``: measured where known, else predicted by the surrogate."""
        predictions = self.surrogate.predict(list(archs), level=LEVEL)
        batch = self.surrogate.batch_size_
        out = []
        for k, arch in enumerate(archs):
            if arch.hash in self.measured:
                values = {m: self.measured[arch.hash].get(m) for m in COST_METRICS}
                out.append(CostEstimate(values, dict(values), COST_METRICS, "store"))
                continue
            value, upper = {}, {}
            for metric, p in predictions.items():
                name = _SURROGATE_METRICS[metric]
                scale = 1.0 if name == "peak_power_w" else 1.0 / batch
                value[name], upper[name] = float(p.mean[k]) * scale, float(p.upper[k]) * scale
            out.append(CostEstimate(value, upper, (), "surrogate"))
        return out


def per_sequence(m: Measurement) -> dict[str, float | None]:
    """A measurement's per-sequence latency, energy and peak power, by key with units."""
    return {
        "latency_s": m.latency_s_per_seq,
        "energy_j": m.energy_j_per_seq,
        "peak_power_w": m.peak_power_w,
    }


def from_measurement(m: Measurement, source: str) -> CostEstimate:
    """A measurement's costs; energy and peak power count as measured only from a sensor."""
    values = per_sequence(m)
    measured = ("latency_s",) + (
        ("energy_j", "peak_power_w") if m.meter_kind == "measured" else ()
    )
    return CostEstimate(values, dict(values), measured, source, {"meter": m.meter})


class LiveDevice(DeviceCosts):
    """This machine under a runtime: each architecture is profiled once (ProTran protocol) and
    its measurement kept in the store, so a resumed search measures nothing twice.

    Args:
        settings: the profile settings (device, runtime, input shape …).
        store: where measurements are kept and looked up (``None``: not kept).
    """

    live = True

    def __init__(
        self,
        settings: ProfileSettings,
        store: Store | None = None,
        profiler: Callable[..., Any] | None = None,
        device: str | None = None,
    ) -> None:
        self.settings, self.store = settings, store
        # a lab node's worker measures (``profiler``), stored under the node's name (``device``)
        self.profiler, self.device = profiler, device
        self.name = f"{device or settings.device}/{settings.runtime}"

    def estimate(self, archs: Sequence[Architecture]) -> list[CostEstimate]:
        """The costs of ``archs``, profiled on the device (or read from the store)."""
        from edgetran.profile import profile_architecture, profile_into_store

        if self.store is None:
            profile = self.profiler or profile_architecture
            return [from_measurement(profile(a, self.settings, None), "profiled") for a in archs]
        return [
            from_measurement(m, "store" if cached else "profiled")
            for m, cached in profile_into_store(
                archs, self.settings, self.store, profiler=self.profiler, device=self.device
            )
        ]


def live_profile_settings(hardware: str, runtime: str, **overrides: Any) -> ProfileSettings:
    """Profile settings of a live pair, shorter than the profiler's default (a child is
    measured while the search waits): 10 s at most per architecture."""
    from edgetran.profile import ProfileSettings

    settings = ProfileSettings(device=hardware, runtime=runtime, max_time_s=10.0, idle_s=0.5)
    return replace(settings, **overrides) if overrides else settings


#: What :func:`resolve_device` takes, for the message on a malformed name.
_DEVICE_FORMS = "HARDWARE/RUNTIME (e.g. cpu/torch) or a device with measurements in the store"


def resolve_device(name: str, store: Store, **profile_overrides: Any) -> DeviceCosts:
    """A device as ``codesign`` names it: ``HARDWARE/RUNTIME`` (a live pair such as
    ``cpu/torch``), or a recorded device with measurements in ``store`` (surrogate fitted on
    them).

    Raises:
        GrowPruneError: neither a live pair nor a device with measurements, or a malformed
            name (an empty part around its ``/``).
    """
    from edgetran.devices import split_device
    from edgetran.plugins import list_runtimes

    hardware, runtime = split_device(name, error=GrowPruneError, forms=_DEVICE_FORMS)
    if runtime in list_runtimes():
        return LiveDevice(live_profile_settings(hardware, runtime, **profile_overrides), store)
    items = store.measurements(name)
    if not items:
        raise GrowPruneError(
            f"device {name!r}: no live runtime and no measurements in the store; give "
            f"HARDWARE/RUNTIME (runtimes: {', '.join(list_runtimes())}, e.g. cpu/torch) or a "
            "device profiled or imported into the store"
        )
    return recorded_device(name, items)


def recorded_device(name: str, items: Sequence[Measurement]) -> SurrogateDevice:
    """A :class:`SurrogateDevice` fitted on one device's measurements (of their first input
    shape)."""
    from edgetran.surrogate import DeviceSurrogate

    shape = (items[0].batch_size, items[0].seq_len)
    items = [m for m in items if (m.batch_size, m.seq_len) == shape]
    measured = {m.hash: per_sequence(m) for m in items}
    return SurrogateDevice(name, DeviceSurrogate().fit(items), measured)
