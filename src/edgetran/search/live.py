"""Live co-search wiring: the store's measurements of each device, its surrogate, and the
accuracy oracle, assembled into a :class:`~edgetran.search.evaluators.LiveEvaluator`.

A device is named as the store names it (``a100``, an imported file's device), or as
``HARDWARE/RUNTIME`` (``cpu/onnxruntime``) for what the profiler measured on one runtime.
One device's measurements are of one runtime and one input shape (the first stored, unless
``shape`` is given): a surrogate never learns from a mix.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from edgetran.devices import split_device
from edgetran.errors import SearchError
from edgetran.search.evaluators import Accuracy, LiveEvaluator
from edgetran.search.fidelity import RUNG_FRACTIONS
from edgetran.search.objectives import ReferenceCost
from edgetran.space import REFERENCE_SPACE, Architecture, DesignSpace
from edgetran.store import Measurement, Store


def device_measurements(
    store: Store, device: str, shape: tuple[int, int] | None = None
) -> list[Measurement]:
    """``device``'s stored measurements of one runtime and ``(batch_size, seq_len)``.

    Raises:
        SearchError: the store holds none.
    """
    items = store.measurements(device)
    if not items and "/" in device:
        forms = "HARDWARE/RUNTIME (e.g. cpu/torch) or a device name in the store"
        hardware, runtime = split_device(device, error=SearchError, forms=forms)
        items = store.measurements(hardware, runtime=runtime)
    if shape is not None:
        items = [m for m in items if (m.batch_size, m.seq_len) == shape]
    if not items:
        where = "" if shape is None else f" at batch × sequence {shape[0]} × {shape[1]}"
        raise SearchError(
            f"no measurements of device {device!r}{where} in the store (profile it first)"
        )
    first = items[0]
    key = (first.runtime, first.batch_size, first.seq_len)
    return [m for m in items if (m.runtime, m.batch_size, m.seq_len) == key]


def per_sequence(measurement: Measurement) -> dict[str, float]:
    """The costs of one measurement under :data:`~edgetran.metrics.COST_KEYS` (per
    sequence: the store's ``…_per_seq`` fields; peak power in W)."""
    return {
        "latency_s": measurement.latency_s_per_seq,
        "energy_j": measurement.energy_j_per_seq,
        "peak_power_w": measurement.peak_power_w,
    }


def stored_reference_costs(
    store: Store, devices: Sequence[str], shape: tuple[int, int] | None = None
) -> list[ReferenceCost]:
    """The scale of ``--norms run`` for a live search, per sequence
    (:func:`~edgetran.search.objectives.run_scale_norms`): the named references' (``bert-tiny``
    …) stored costs on ``devices``; where the store holds none, the largest cost stored on
    them, named ``largest stored``.

    Raises:
        SearchError: the store holds no measurement of the devices.
    """
    from edgetran.space import NAMED_ARCHITECTURES
    from edgetran.space.costs import estimate_costs

    names = {arch.hash: name for name, arch in NAMED_ARCHITECTURES.items()}
    costs, quiet = [], []
    for device in devices:
        for m in device_measurements(store, device, shape):
            if m.contended:
                continue
            quiet.append((device, m))
            if m.hash in names:
                arch = NAMED_ARCHITECTURES[names[m.hash]]
                costs.append(
                    ReferenceCost(
                        names[m.hash], device, estimate_costs(arch).parameters,
                        m.latency_s_per_seq, m.energy_j_per_seq, m.peak_power_w,
                    )
                )  # fmt: skip
    if costs or not quiet:
        return costs
    device, slowest = max(quiet, key=lambda item: item[1].latency_s_per_seq)
    return [
        ReferenceCost(
            "the largest stored costs", device, 0, slowest.latency_s_per_seq,
            max(m.energy_j_per_seq for _, m in quiet), max(m.peak_power_w for _, m in quiet),
        )
    ]  # fmt: skip


def measured_costs(
    device: str, items: Sequence[Measurement]
) -> tuple[dict[tuple[str, str], dict[str, float]], set[tuple[str, str]]]:
    """``(hash, device) → metrics`` of a device's measurements ``items``, and the keys whose
    measurement was contended (the last stored of an architecture counts, in both)."""
    measured, contended = {}, set()
    for m in items:
        key = (m.hash, device)
        measured[key] = per_sequence(m)
        if m.contended:
            contended.add(key)
        else:
            contended.discard(key)
    return measured, contended


def device_costs(
    store: Store,
    devices: Sequence[str],
    shape: tuple[int, int] | None = None,
    surrogate_options: dict | None = None,
):
    """``(measured, surrogates, contended)`` for a :class:`LiveEvaluator`: ``(hash, device)
    → metrics`` of every stored measurement, each device's surrogate fitted on them, and the
    keys of ``measured`` whose measurement was contended."""
    from edgetran.surrogate import DeviceSurrogate

    measured, surrogates, contended = {}, {}, set()
    for device in devices:
        items = device_measurements(store, device, shape)
        costs, crowded = measured_costs(device, items)
        measured |= costs
        contended |= crowded
        surrogates[device] = DeviceSurrogate(model_options=surrogate_options).fit(items)
    return measured, surrogates, contended


def oracle_accuracy(
    task: str,
    store: Store,
    budget: str = "quick",
    *,
    workspace: str | Path | None = None,
    seed: int = 0,
    keep_models: bool = False,
    cluster=None,
    rungs: Sequence[float] = RUNG_FRACTIONS,
) -> Callable[..., Accuracy]:
    """``(arch, run=0, on_rung=None) → Accuracy`` from the accuracy oracle (trained once per
    run, then read from the store): run ``k`` trains at seed ``seed + k``; the standard
    deviation is the oracle's ``accuracy_std`` (a bootstrap of the test examples).
    ``keep_models`` keeps each fine-tuned classifier in the workspace
    (:func:`edgetran.train.oracle.kept_classifier`). ``on_rung(rung, fidelity, accuracy)`` is
    called at each of ``rungs`` (fractions of the fine-tuning, for a pruner; what it raises
    stops the training, and nothing is stored). With ``cluster``
    (:class:`edgetran.cluster.Cluster`), training runs on its workers and the results are
    stored here, by this process (the store takes concurrent writers, so a parallel search may
    ask from several threads); the function then takes no ``on_rung``, as a callback cannot
    reach a worker."""
    from edgetran.train import BUDGETS, DEFAULT_WORKSPACE, evaluate

    if budget not in BUDGETS:
        raise SearchError(f"accuracy budget {budget!r} is invalid; allowed: {', '.join(BUDGETS)}")

    # a parallel search may ask for one architecture on two devices at once: the second
    # waits for the first's training and reads it from the store, instead of training the
    # same folders concurrently
    locks: dict[tuple[str, int], threading.Lock] = {}
    guard = threading.Lock()

    def accuracy(arch: Architecture, run: int = 0, on_rung=None) -> Accuracy:
        with guard:
            lock = locks.setdefault((arch.hash, run), threading.Lock())
        with lock:
            return _evaluate(arch, run, on_rung)

    def _evaluate(arch: Architecture, run: int, on_rung) -> Accuracy:
        result = evaluate(
            arch, task, budget, store=store, workspace=workspace or DEFAULT_WORKSPACE,
            seed=seed + run, keep_model=keep_models and run == 0, cluster=cluster,
            device="auto" if cluster is not None else "cpu",
            rungs=rungs if on_rung is not None else (), on_rung=on_rung,
        )  # fmt: skip
        return Accuracy(result["accuracy"], result.get("accuracy_std"))

    def on_cluster(arch: Architecture, run: int = 0) -> Accuracy:
        return accuracy(arch, run)

    return accuracy if cluster is None else on_cluster


def live_evaluator(
    task: str,
    devices: Sequence[str],
    store: Store,
    *,
    accuracy_budget: str = "quick",
    space: DesignSpace = REFERENCE_SPACE,
    workspace: str | Path | None = None,
    seed: int = 0,
    cluster=None,
) -> LiveEvaluator:
    """Accuracy from the oracle (trained on ``cluster``'s workers when given); hardware
    measured in the store, else from a surrogate fitted on the store's measurements of that
    device."""
    if not devices:
        raise SearchError("a live search needs devices with measurements in the store")
    accuracy = oracle_accuracy(
        task, store, accuracy_budget, workspace=workspace, seed=seed, cluster=cluster
    )
    measured, surrogates, contended = device_costs(store, devices)
    return LiveEvaluator(accuracy, measured, surrogates, space, contended)
