"""What a co-design run is asked to do: one frozen, JSON round-tripping configuration.

A device is a (hardware, runtime) pair. ``HARDWARE/RUNTIME`` (``cpu/torch``,
``cpu/onnxruntime``, ``cpu/openvino``, ``cuda:0/torch``) is a *live* device: this machine,
profiled here. A measurement file (ProTran ``.json``, ``.csv`` or ``.parquet``) is a *recorded*
device: its measurements are imported into the workspace and its costs come from a surrogate
fitted on them, flagged ``predicted``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgetran.configs import JsonConfig
from edgetran.errors import EdgeTranError, SearchError
from edgetran.search.settings import OBJECTIVES, parse_norms

if TYPE_CHECKING:
    from edgetran.space import Architecture

#: This CPU under the three runtimes, and ONNX Runtime's dynamic int8: the runtime and the
#: precision are part of the co-design. One int8 runtime keeps `make demo` within 10 minutes
#: (OpenVINO's and LiteRT's int8 are devices to name: ``cpu/openvino-int8``, ``cpu/litert-int8``).
CPU_DEVICES = ("cpu/torch", "cpu/onnxruntime", "cpu/openvino", "cpu/onnxruntime-int8")
#: A CPU-sized corner of the reference space, where the quick budget trains in minutes.
CPU_SPACE: dict[str, list[Any]] = {
    "layers": [2, 4],
    "hidden_sizes": [128, 256],
    "head_counts": [2, 4],
    "ff_depths": [1, 2],
    "ff_widths": [256, 512, 1024],
}
#: Named BERTs measured beside the winner, on every device and under the same budget.
REFERENCES = ("bert-tiny", "bert-mini")
#: Measurement file suffix → format of :func:`edgetran.profile.read_measurements`.
FILE_FORMATS = {".json": "protran", ".csv": "csv", ".parquet": "parquet"}
BUDGET_NAMES = ("quick", "standard", "full")
#: How the answer is chosen from the evaluated pairs (``edgetran.codesign.decision``): the
#: cheapest by measured latency among those within one accuracy std of the most accurate, or
#: the plain maximum of the objective.
CHOICES = ("one-std", "best")
#: Measurements a device surrogate needs (``edgetran.surrogate.base.MIN_SAMPLES``, which
#: imports NumPy and friends; the configuration stays light).
MIN_SURROGATE_SAMPLES = 8


class CodesignError(EdgeTranError, ValueError):
    """A co-design configuration or run cannot be used as given."""


@dataclass(frozen=True)
class DeviceSpec:
    """One device of a run: live (``hardware`` and ``runtime``) or recorded (``path``)."""

    name: str
    hardware: str | None = None
    runtime: str | None = None
    path: str | None = None
    #: A lab node (``rpi4/onnxruntime``): a ``hardware`` that names no device of this machine,
    #: measured on the cluster worker that offers it (its runs use the node's CPU).
    node: bool = False

    @property
    def live(self) -> bool:
        """Whether the device is measured here (not read from a measurement file)."""
        return self.path is None

    @property
    def runner(self) -> str | None:
        """The device the runs use where they run: the hardware, or a lab node's CPU."""
        return "cpu" if self.node else self.hardware


def parse_device(text: str) -> DeviceSpec:
    """``HARDWARE/RUNTIME`` or a measurement file.

    Raises:
        CodesignError: neither, naming what is allowed.
    """
    from edgetran.devices import runtime_forms, split_device
    from edgetran.plugins import list_runtimes

    suffix = Path(text).suffix.lower()
    if suffix in FILE_FORMATS:
        if not Path(text).is_file():
            raise CodesignError(f"device file {text}: no such file")
        return DeviceSpec(Path(text).stem, path=text)
    runtimes = list_runtimes()
    forms = f"{runtime_forms(runtimes)} or a measurement file ({', '.join(FILE_FORMATS)})"
    hardware, runtime = split_device(text, error=CodesignError, runtimes=runtimes, forms=forms)
    from edgetran.export.runners import RunnerError, check_device

    try:
        check_device(runtime, hardware)
    except RunnerError:  # a lab node's name: usable on a cluster only (run_codesign checks)
        if not _NODE_NAME.fullmatch(hardware) or hardware.lower() in _DEVICE_WORDS:
            raise  # a device kind of a machine (npu, gpu …), not a node's name
        return DeviceSpec(text, hardware, runtime, node=True)
    return DeviceSpec(text, hardware, runtime)


def check_local_devices(specs: list[DeviceSpec]) -> None:
    """Refuse, without a cluster, a lab node's device (one this machine does not have), and a
    live device whose runtime cannot run here (a quantiser or runtime package missing: the
    message names the extra to install)."""
    from edgetran.export.runners import check_device, require_runtime

    for spec in specs:
        if spec.live and not spec.node:
            require_runtime(spec.runtime)
        if spec.node:
            try:
                check_device(spec.runtime, spec.hardware)
            except EdgeTranError as err:
                raise CodesignError(
                    f"{err}; a lab node ({spec.name}) is measured on its worker: pass --scheduler"
                ) from None


#: Names of device kinds, which a lab node's name must not be: ``npu/litert`` is a device this
#: machine lacks, refused at once, not a node.
_DEVICE_WORDS = {"cpu", "gpu", "npu", "cuda", "mps", "auto", "xpu", "tpu"}
#: A lab node's name as ``edgetran worker --device NAME`` offers it.
_NODE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class CodesignConfig(JsonConfig):
    """A co-design run. Validated on construction; :meth:`to_dict`/:meth:`from_dict` round-trip
    through JSON. Defaults are the embedded demo: this CPU's three runtimes, the bundled
    tweet-sentiment task, a CPU-sized space and the quick budget.

    Attributes:
        task: the accuracy task (``tweet-sentiment``, ``glue/…``, a CSV/JSONL file).
        devices: live ``HARDWARE/RUNTIME`` pairs and measurement files.
        max_latency_ms, max_energy_mj, max_peak_power_w, min_accuracy: budgets (per sequence).
        budget: the accuracy oracle's budget during the search; ``final_budget`` trains the
            winner (and the references it is compared with).
        evaluations: co-search evaluations (failed ones included).
        sampler, compare: the search's sampler, and one more run on the same evaluations for
            the report's convergence plot (``None``: none).
        space: the design space (``DesignSpace.to_dict()``).
        profile_budget: measurements per live device (active learning) before the search.
        batch_size, seq_len: the input shape every device is measured at, and the winner is
            exported for: at most the final model's positions (66 at quick and standard: the
            budgets train on tweets cut at 64 tokens).
        profile_max_time_s, idle_s, meter, threads: the ProTran protocol's settings.
        require_quiet: every live measurement waits (up to a minute) for other processes to
            leave the cores it needs, else fails as a candidate does; without it a crowded
            timing is stored, flagged ``contended``, and left out of surrogate fits.
        objective: what the search maximises: ``paper`` (the reference's weighted objective),
            ``pareto`` or ``accuracy`` (the most accurate pair within the budgets).
        norms: the paper objective's cost normalisers: ``run`` (the largest reference's
            measured costs on the slowest live device), ``reference`` (1000 s, 2000 J, 300 W)
            or ``"LATENCY_S,ENERGY_J,PEAK_POWER_W"``.
        choose: how the answer is chosen: ``one-std`` (among the feasible pairs within one
            accuracy std of the most accurate, the cheapest by measured latency, then energy)
            or ``best`` (the objective's maximum).
        references: named BERTs measured beside the winner.
        references_first: the references that lie in ``space`` are the profile's first
            measurements and the search's first evaluations (known anchors for the sampler,
            and compared with the winner without training or measuring them twice).
        growprune: refine the winner with GPTran's grow-and-prune; ``growprune_iterations``.
        eval_timeout_s: an accuracy evaluation running longer fails (``None``: no limit).
        pruner: Optuna's pruner that stops a search's weak trainings at a rung (``none``,
            ``median``, ``sha``, ``hyperband``; :mod:`edgetran.search.fidelity`).
        promote: after the search, its ``promote`` best distinct pairs trained to the full
            search budget (never pruned ones) are trained at ``final_budget``, and the answer
            is chosen among them and the references on final-budget accuracies (``None``: the
            search's accuracies decide).
        seed: seed of every stage.
        workspace: tokenizers and checkpoints.
        out: the output folder (``result.json``, ``model/``, ``export/``, ``report.html``).
        db: the workspace database (SQLAlchemy URL or SQLite file; default ``edgetran.db``).
    """

    config_error = CodesignError
    setting_name = "co-design setting"

    task: str = "tweet-sentiment"
    devices: tuple[str, ...] = CPU_DEVICES
    max_latency_ms: float | None = None
    max_energy_mj: float | None = None
    max_peak_power_w: float | None = None
    min_accuracy: float | None = None
    budget: str = "quick"
    final_budget: str = "quick"
    evaluations: int = 6
    sampler: str = "boshcode"
    compare: str | None = None
    objective: str = "paper"
    norms: str = "run"
    choose: str = "one-std"
    space: dict[str, Any] = field(default_factory=lambda: dict(CPU_SPACE))
    profile_budget: int = 10
    batch_size: int = 1
    seq_len: int = 64
    profile_max_time_s: float = 1.0
    idle_s: float = 0.5
    meter: str = "auto"
    threads: int | None = None
    require_quiet: bool = False
    references: tuple[str, ...] = REFERENCES
    references_first: bool = True
    growprune: bool = True
    growprune_iterations: int = 1
    eval_timeout_s: float | None = None
    pruner: str = "none"
    promote: int | None = None
    seed: int = 0
    workspace: str = "edgetran-workspace"
    out: str = "codesign-out"
    db: str | None = None

    def __post_init__(self) -> None:
        from edgetran.plugins import SAMPLERS
        from edgetran.space import NAMED_ARCHITECTURES, DesignSpace

        if not isinstance(self.task, str) or not self.task:
            raise CodesignError("task: expected a task name or file")
        object.__setattr__(self, "devices", tuple(self.devices))
        object.__setattr__(self, "references", tuple(self.references))
        if not self.devices:
            raise CodesignError("devices: expected at least one device")
        for device in self.devices:
            parse_device(device)
        if len(set(self.devices)) < len(self.devices):
            raise CodesignError(f"devices: {', '.join(self.devices)} name one device twice")
        for name in ("budget", "final_budget"):
            if getattr(self, name) not in BUDGET_NAMES:
                allowed = ", ".join(BUDGET_NAMES)
                raise CodesignError(
                    f"{name}={getattr(self, name)!r} is invalid; allowed: {allowed}"
                )
        for name in (
            "evaluations",
            "profile_budget",
            "batch_size",
            "seq_len",
            "growprune_iterations",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise CodesignError(f"{name}={value!r} is invalid; allowed: an integer ≥ 1")
        if self.profile_budget < MIN_SURROGATE_SAMPLES:
            raise CodesignError(
                f"profile_budget={self.profile_budget}; a surrogate needs at least "
                f"{MIN_SURROGATE_SAMPLES} measurements of a device"
            )
        SAMPLERS.validate(self.sampler)
        if self.compare is not None:
            SAMPLERS.validate(self.compare)
        self._check_choice("objective", OBJECTIVES)
        self._check_choice("choose", CHOICES)
        try:
            parse_norms(self.norms)
        except SearchError as err:
            raise CodesignError(str(err)) from None
        if not isinstance(self.require_quiet, bool):
            raise CodesignError(f"require_quiet={self.require_quiet!r}; allowed: true or false")
        if not isinstance(self.references_first, bool):
            raise CodesignError(
                f"references_first={self.references_first!r}; allowed: true or false"
            )
        for name in ("profile_max_time_s", "idle_s"):
            if not _finite(getattr(self, name)) or getattr(self, name) < 0:
                raise CodesignError(f"{name}={getattr(self, name)!r}; allowed: a number ≥ 0")
        if self.eval_timeout_s is not None and (
            not _finite(self.eval_timeout_s) or self.eval_timeout_s <= 0
        ):
            raise CodesignError(f"eval_timeout_s={self.eval_timeout_s!r}; allowed: a number > 0")
        self._check_pruning()
        unknown = [r for r in self.references if r not in NAMED_ARCHITECTURES]
        if unknown:
            raise CodesignError(
                f"references: {unknown[0]!r} is unknown; allowed: {', '.join(NAMED_ARCHITECTURES)}"
            )
        object.__setattr__(self, "space", DesignSpace.from_dict(self.space).to_dict())
        self.constraints()  # budgets are checked where the search checks them

    def _check_pruning(self) -> None:
        """``pruner`` one of the search's; ``promote`` at least 1, at most ``evaluations``, and
        to a ``final_budget`` other than ``budget``."""
        from edgetran.search.fidelity import PRUNERS

        self._check_choice("pruner", PRUNERS)
        if self.pruner != "none" and self.objective == "pareto":
            raise CodesignError(
                f"pruner={self.pruner!r} compares one value per rung; allowed with it: "
                "objective paper or accuracy"
            )
        k = self.promote
        if k is None:
            return
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise CodesignError(f"promote={k!r} is invalid; allowed: an integer ≥ 1")
        if k > self.evaluations:
            raise CodesignError(
                f"promote={k} is invalid; allowed: at most evaluations ({self.evaluations}), "
                "the distinct pairs a search can hold"
            )
        if self.final_budget == self.budget:
            raise CodesignError(
                f"promote={k} trains at final_budget, which is budget ({self.budget}); "
                "allowed: a final_budget other than budget (e.g. --final-budget standard)"
            )

    def _check_choice(self, name: str, allowed: tuple[str, ...]) -> None:
        if getattr(self, name) not in allowed:
            raise CodesignError(
                f"{name}={getattr(self, name)!r} is invalid; allowed: {', '.join(allowed)}"
            )

    def constraints(self):
        """The budgets as the search's :class:`~edgetran.search.Constraints`."""
        from edgetran.search import Constraints

        return Constraints(
            self.max_latency_ms, self.max_energy_mj, self.max_peak_power_w, self.min_accuracy
        )

    def design_space(self):
        """The run's design space (``space``) as a :class:`~edgetran.space.DesignSpace`."""
        from edgetran.space import DesignSpace

        return DesignSpace.from_dict(self.space)

    def references_in_space(self) -> list[Architecture]:
        """The references the search and the profile start from (``references_first``)."""
        from edgetran.space import NAMED_ARCHITECTURES

        if not self.references_first:
            return []
        space = self.design_space()
        return [a for a in (NAMED_ARCHITECTURES[r] for r in self.references) if space.contains(a)]

    def device_specs(self) -> list[DeviceSpec]:
        """The run's devices, parsed (:func:`parse_device`)."""
        return [parse_device(d) for d in self.devices]


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
