"""Runtime behaviour on the runtime plug-in (issue 41, item 4): threads, measurement and
verification options, tolerance and the bf16 comparison come from the registered
:class:`~edgetran.export.runners.Runtime`, and ``HARDWARE/RUNTIME`` names are split by one
parser (:func:`edgetran.devices.split_device`)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import ClassVar

import numpy as np
import pytest
import torch

from edgetran.codesign.config import CodesignError
from edgetran.devices import split_device
from edgetran.errors import InvalidInputError, SearchError
from edgetran.export import ExportSpec, ExportWrapper, Runner, Runtime, create_timed_runner
from edgetran.export.runners import TOLERANCE, get_runtime, set_torch_threads
from edgetran.export.verify import verify_artifact
from edgetran.growprune.modes import GrowPruneError
from edgetran.model import FlexiBertConfig, FlexiBertModel
from edgetran.plugins import RUNTIMES
from edgetran.profile.protocol import model_runner, torch_threads_kept
from edgetran.space import homogeneous
from edgetran.testing import ContractError, check_runtime

VOCAB = 61
SEQ = 8


def tiny_wrapper() -> ExportWrapper:
    torch.manual_seed(0)
    config = FlexiBertConfig(homogeneous(1, 16, 2, 32), vocab_size=VOCAB)
    return ExportWrapper(FlexiBertModel(config).eval()).eval()


def load_module(artifact) -> torch.nn.Module:
    """The module itself, or a tiny one with the weights saved at ``artifact`` (if any)."""
    if isinstance(artifact, torch.nn.Module):
        return artifact
    module = tiny_wrapper()
    if artifact.is_file():
        module.load_state_dict(torch.load(artifact))
    return module


class RecordingRunner(Runner):
    """Runs a PyTorch module (:func:`load_module`), adds ``offset`` to its output and records
    the options it was made with."""

    runtime = "recording"
    made: ClassVar[list[dict]] = []

    def __init__(self, artifact, device: str = "cpu", offset: float = 0.0, **options) -> None:
        self.made.append({"device": device, "offset": offset, **options})
        self.module = load_module(artifact)
        self.offset = offset
        self.precision = options.get("precision")

    @property
    def device(self) -> str:
        return "cpu"

    def prepare(self, input_ids, attention_mask):
        return tuple(torch.as_tensor(a, dtype=torch.int64) for a in (input_ids, attention_mask))

    def run(self, prepared):
        with torch.inference_mode():
            return self.module(*prepared) + self.offset

    def to_numpy(self, output) -> np.ndarray:
        return output.float().numpy()


def _export_module(wrapper, example, path, spec) -> None:
    torch.save(wrapper.state_dict(), path)


#: A plug-in that declares none of the runtime behaviour fields: every default.
PLAIN = Runtime("recording", "onnx", "model.bin", _export_module, RecordingRunner)


@pytest.fixture
def register(monkeypatch):
    """``register(runtime)`` registers a plug-in runtime for one test."""
    monkeypatch.setattr(RUNTIMES, "_built_in", dict(RUNTIMES._built_in))
    monkeypatch.setattr(RecordingRunner, "made", [])

    def add(runtime: Runtime) -> Runtime:
        RUNTIMES.register(runtime.name, runtime)
        return runtime

    return add


# -- threads --------------------------------------------------------------------------------------
def test_a_plugin_without_set_threads_gets_threads_as_a_runner_option(register):
    register(PLAIN)
    create_timed_runner("recording", tiny_wrapper(), threads=3)
    assert RecordingRunner.made == [{"device": "cpu", "offset": 0.0, "threads": 3}]
    create_timed_runner("recording", tiny_wrapper())  # no threads asked for: none passed
    assert "threads" not in RecordingRunner.made[-1]


def test_a_process_wide_thread_setting_goes_through_set_threads(register):
    pinned: list[int] = []
    options = {"mode": "fast"}
    register(replace(PLAIN, set_threads=pinned.append, measure_options=options))
    create_timed_runner("recording", tiny_wrapper(), "cpu", threads=3)
    assert pinned == [3]
    assert RecordingRunner.made == [{"device": "cpu", "offset": 0.0, "mode": "fast"}]


def test_torch_pins_its_global_threads_through_its_plugin():
    torch_runtime = get_runtime("torch")
    assert torch_runtime.set_threads is set_torch_threads and torch_runtime.runs_module
    with torch_threads_kept():
        create_timed_runner("torch", tiny_wrapper(), threads=1)
        assert torch.get_num_threads() == 1


def test_profiling_makes_its_runner_through_the_plugin(register, tmp_path):
    pinned: list[int] = []
    register(replace(PLAIN, runs_module=True, set_threads=pinned.append))
    model = tiny_wrapper().model
    runner, artifact = model_runner(
        model, "recording", None, tmp_path, threads=2, batch_size=2, seq_len=SEQ
    )
    # runs_module: the module itself, nothing exported
    assert artifact is None and runner.module.model is model and pinned == [2]
    assert not any(tmp_path.iterdir())


def test_the_final_measurement_makes_its_runner_through_the_plugin(register, tmp_path):
    from edgetran.codesign.measure import measure_artifact
    from edgetran.profile import ProfileSettings
    from edgetran.profile.meters import FunctionMeter

    register(replace(PLAIN, measure_options={"precision": "f32"}))
    (tmp_path / "metadata.json").write_text(json.dumps({"config": {"vocab_size": VOCAB}}))
    settings = ProfileSettings(
        runtime="recording", threads=1, batch_size=1, seq_len=SEQ, meter="estimate",
        warmup=1, min_repeats=3, max_repeats=3, idle_s=0.0,
    )  # fmt: skip
    measured = measure_artifact(tmp_path / "model.bin", settings, FunctionMeter(lambda _t: 1.0))
    assert measured["runtime"] == "recording"
    made = RecordingRunner.made[0]
    assert made.pop("threads") >= 1  # the cores free now, as an option (no set_threads)
    assert made == {"device": "cpu", "offset": 0.0, "precision": "f32"}


def test_built_in_runtimes_declare_their_behaviour():
    openvino, int8 = get_runtime("openvino"), get_runtime("openvino-int8")
    for runtime in (openvino, int8):
        assert runtime.measure_options == runtime.verify_options == {"precision": "f32"}
    assert openvino.bf16_options == {"precision": "bf16"} and int8.bf16_options is None
    for name in ("onnxruntime", "litert"):
        runtime = get_runtime(name)
        assert runtime.set_threads is None and not runtime.runs_module
        assert not runtime.measure_options and runtime.tolerance == TOLERANCE


# -- verification ---------------------------------------------------------------------------------
def test_verification_takes_its_options_tolerance_and_bf16_run_from_the_plugin(register):
    register(
        replace(
            PLAIN,
            verify_options={"offset": 1e-3, "precision": "f32"},
            tolerance=1e-2,
            bf16_options={"offset": 0.5, "precision": "bf16"},
        )
    )
    wrapper = tiny_wrapper()
    spec = ExportSpec("onnx", batch_size=2, seq_len=SEQ)
    result = verify_artifact(wrapper, wrapper, "recording", spec)
    assert [m["offset"] for m in RecordingRunner.made] == [1e-3, 0.5]
    assert result.passed and result.tolerance == 1e-2
    assert result.max_abs_diff == pytest.approx(1e-3, rel=1e-3)
    assert result.bf16_max_abs_diff == pytest.approx(0.5, rel=1e-3)
    assert result.bf16_precision == "bf16"
    # a tolerance given to the call still wins over the runtime's
    assert not verify_artifact(wrapper, wrapper, "recording", spec, tolerance=1e-4).passed


def test_a_plugin_with_every_default_verifies_within_the_default_tolerance(register):
    register(replace(PLAIN, verify_options={"offset": 1e-3}))
    wrapper = tiny_wrapper()
    result = verify_artifact(wrapper, wrapper, "recording", ExportSpec("onnx", 2, SEQ))
    assert result.tolerance == TOLERANCE and not result.passed
    assert result.bf16_max_abs_diff is None and len(RecordingRunner.made) == 1


# -- the contract check ---------------------------------------------------------------------------
def test_check_runtime_passes_a_plugin_that_sets_no_behaviour(register):
    register(PLAIN)
    check_runtime("recording")
    # the verification runner, the timed one (one thread, as an option)
    assert RecordingRunner.made[1]["threads"] == 1


def test_check_runtime_checks_against_the_runtimes_own_tolerance(register):
    register(replace(PLAIN, verify_options={"offset": 1e-3}, tolerance=1e-2))
    check_runtime("recording")
    with pytest.raises(ContractError, match=r"matches the reference within 0\.0001"):
        check_runtime("recording", tolerance=1e-4)


@pytest.mark.parametrize(
    ("change", "clause"),
    [({"tolerance": -1.0}, "tolerance is a positive number"),
     ({"set_threads": 4}, "set_threads is None or set_threads"),
     ({"measure_options": {"threads": 2}}, "measure_options leave threads"),
     ({"verify_options": ["precision"]}, "verify_options maps runner option names"),
     ({"bf16_options": {1: "bf16"}}, "bf16_options maps runner option names")],
)  # fmt: skip
def test_check_runtime_refuses_malformed_behaviour(register, change, clause):
    register(replace(PLAIN, **change))
    with pytest.raises(ContractError, match=clause):
        check_runtime("recording")


# -- the one parser of device names ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("device", "options", "expected"),
    [("cpu/torch", {}, ("cpu", "torch")), ("cpu", {}, ("cpu", None)),
     ("GPU.0/openvino", {"runtimes": ("openvino",)}, ("GPU.0", "openvino")),
     ("cpu", {"runtime": "torch", "runtimes": ("torch",)}, ("cpu", "torch")),
     ("lab/rpi4/onnxruntime", {}, ("lab/rpi4", "onnxruntime"))],
)  # fmt: skip
def test_split_device_accepts(device, options, expected):
    assert split_device(device, **options) == expected


@pytest.mark.parametrize(
    ("device", "options", "message"),
    [("cpu/", {}, "device 'cpu/' is invalid; allowed: HARDWARE/RUNTIME (e.g. cpu/torch), or "),
     ("/torch", {}, "device '/torch' is invalid"),
     ("cpu", {"runtimes": ("torch",)}, "allowed: HARDWARE/RUNTIME (runtimes: torch; e.g. "),
     ("gpu/fast", {"runtimes": ("torch", "openvino")}, "(runtimes: torch, openvino;"),
     ("cpu/torch", {"runtime": "openvino"}, "names runtime 'torch' but runtime 'openvino'"),
     ("x/", {"forms": "what it takes"}, "device 'x/' is invalid; allowed: what it takes")],
)  # fmt: skip
def test_split_device_refuses_with_one_message(device, options, message):
    with pytest.raises(InvalidInputError) as caught:
        split_device(device, **options)
    assert message in str(caught.value)


def test_every_caller_splits_device_names_with_the_parser(tmp_path):
    from edgetran.codesign.config import parse_device
    from edgetran.growprune.costs import resolve_device
    from edgetran.search.live import device_measurements
    from edgetran.store import Store

    with pytest.raises(CodesignError, match=r"'cpu/' is invalid; allowed: HARDWARE/RUNTIME \("):
        parse_device("cpu/")
    with pytest.raises(CodesignError, match="or a measurement file"):
        parse_device("cpu")  # codesign needs the runtime
    assert parse_device("cpu/torch").runtime == "torch"
    store = Store(tmp_path / "workspace.db")
    with pytest.raises(GrowPruneError, match="'/torch' is invalid; allowed: HARDWARE/RUNTIME"):
        resolve_device("/torch", store)
    with pytest.raises(GrowPruneError, match="'my-phone': no live runtime"):
        resolve_device("my-phone", store)  # no slash: a recorded device, as before
    assert resolve_device("cpu/torch", store).settings.runtime == "torch"
    with pytest.raises(SearchError, match="'cpu/' is invalid"):
        device_measurements(store, "cpu/")
    with pytest.raises(SearchError, match="no measurements of device 'cpu/torch'"):
        device_measurements(store, "cpu/torch")
