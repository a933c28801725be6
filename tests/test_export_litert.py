"""LiteRT (issue 17): export of every head operation, verification in the interpreter, the
runner, dynamic int8, bad input, and every other format when the extra is missing."""

import json
import sys

import numpy as np
import pytest
import torch

from edgetran.errors import ExportError, MissingDependencyError
from edgetran.export import (
    ExportSpec,
    ExportWrapper,
    LiteRtRunner,
    RunnerError,
    create_runner,
    export_model,
    random_inputs,
)
from edgetran.model import FlexiBertConfig, FlexiBertForSequenceClassification, FlexiBertModel
from edgetran.plugins import RUNTIMES
from edgetran.space import Architecture, Layer, homogeneous
from edgetran.testing import check_runner

SEQ = 16
VOCAB = 97
LITERT_MODULES = (
    "litert_torch",
    "ai_edge_litert",
    "ai_edge_litert.interpreter",
    "ai_edge_quantizer",
)


#: Every head operation once, a change of width, FF stacks of depth 1–2 and n·d ≠ h (in the
#: second layer): conftest's all-ops model in two layers, as LiteRT's converter takes about
#: 1.5 s a head on 2 cores (24 s for the eleven heads of tiny_hetero_architecture, 19 s here).
ALL_OPS = Architecture(
    (
        Layer(32, ("sa_sdp", "sa_wma", "l_dft", "l_dct"), 8, (64,)),
        Layer(48, ("c_5", "c_9", "c_13"), 12, (64, 32)),
    )
)


def tiny_classifier():
    torch.manual_seed(0)
    config = FlexiBertConfig(ALL_OPS, vocab_size=VOCAB, max_position_embeddings=64, num_labels=3)
    return FlexiBertForSequenceClassification(config).eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The all-ops classifier (DFT, DCT, convolutions, relative keys), converted once."""
    for module in ("litert_torch", "ai_edge_litert", "ai_edge_quantizer"):
        pytest.importorskip(module)
    model = tiny_classifier()
    spec = ExportSpec("litert", batch_size=2, seq_len=SEQ)
    return model, export_model(model, tmp_path_factory.mktemp("litert"), spec, verify=True)


def test_every_op_converts_and_verifies_in_the_interpreter(exported):
    model, result = exported
    assert model.config.position_embedding_type == "relative_key"
    verification = result.verification
    assert verification["passed"] and verification["max_abs_diff"] <= 1e-4
    assert (verification["runtime"], verification["device"]) == ("litert", "cpu")
    metadata = json.loads((result.artifact.parent / "metadata.json").read_text())
    assert result.artifact.name == "model.tflite" and metadata["format"] == "litert"
    assert metadata["inputs"][0] == {"name": "input_ids", "dtype": "int32", "shape": [2, SEQ]}
    assert metadata["outputs"] == [{"name": "logits", "dtype": "float32"}]
    assert metadata["quantize"] == "none" and metadata["versions"]["litert-torch"]


def test_runner_keeps_the_contract_and_reports_its_threads(exported):
    model, result = exported
    wrapper = ExportWrapper(model)

    def reference(ids, mask):
        with torch.inference_mode():
            return wrapper(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()

    check_runner(
        lambda: create_runner("litert", result.artifact, threads=2),
        batch_size=2,
        seq_len=SEQ,
        vocab_size=VOCAB,
        reference=reference,
    )
    runner = create_runner("litert", result.artifact, threads=2)
    assert isinstance(runner, LiteRtRunner)
    assert runner.describe() == {"runtime": "litert", "device": "cpu", "threads": "2"}


def test_dynamic_int8_quantises_the_weights_and_still_classifies(exported, tmp_path):
    from edgetran.export.exporters import _dynamic_int8

    _, result = exported
    int8 = tmp_path / "model.tflite"
    int8.write_bytes(_dynamic_int8(result.artifact.read_bytes()))
    assert int8.stat().st_size < result.artifact.stat().st_size
    runner = LiteRtRunner(int8, threads=1)
    tensors = runner.interpreter.get_tensor_details()
    assert any(t["dtype"] == np.int8 for t in tensors)
    ids, mask = random_inputs(2, SEQ, VOCAB, seed=3)
    f32 = LiteRtRunner(result.artifact, threads=1)(ids, mask)
    np.testing.assert_allclose(runner(ids, mask), f32, atol=0.05)


@pytest.mark.slow
def test_cli_exports_and_verifies_dynamic_int8(run_cli, tmp_path):
    pytest.importorskip("litert_torch")
    model = tiny_classifier()
    model.save_pretrained(tmp_path / "saved")
    out = tmp_path / "int8"
    args = ("--seq-len", SEQ, "--quantize", "dynamic-int8", "--verify")
    code, _, err = run_cli("export", tmp_path / "saved", "--format", "litert", "--out", out, *args)
    assert code == 0 and "verification passed" in err and "no tensor tolerance" in err, err
    metadata = json.loads((out / "metadata.json").read_text())
    assert metadata["quantize"] == "dynamic-int8" and metadata["verification"]["tolerance"] is None


@pytest.mark.slow
def test_profiler_measures_the_litert_runtime(tmp_path):
    pytest.importorskip("litert_torch")
    from edgetran.profile.protocol import ProfileSettings, build_runner

    settings = ProfileSettings(runtime="litert", batch_size=1, seq_len=8, threads=1)
    runner = build_runner(homogeneous(1, 16, 2, 32), settings, tmp_path)
    assert runner.describe() == {"runtime": "litert", "device": "cpu", "threads": "1"}


def test_spec_refuses_unknown_quantisation_and_dynamic_batch():
    with pytest.raises(ExportError, match="allowed: none, dynamic-int8"):
        ExportSpec("litert", quantize="int4")
    with pytest.raises(ExportError, match="quantize='dynamic-int8' is invalid for format 'pt2'"):
        ExportSpec("pt2", quantize="dynamic-int8")
    with pytest.raises(ExportError, match="dynamic_batch=True is invalid for format 'litert'"):
        ExportSpec("litert", dynamic_batch=True)


def test_runner_refuses_other_devices_and_missing_files(tmp_path):
    pytest.importorskip("ai_edge_litert")
    with pytest.raises(RunnerError, match=r"no such \.tflite file"):
        LiteRtRunner(tmp_path / "missing.tflite")
    with pytest.raises(RunnerError, match="invalid for litert; allowed: cpu"):
        LiteRtRunner(__file__, device="gpu")


def test_codesign_accepts_cpu_litert():
    from edgetran.codesign.config import parse_device

    assert parse_device("cpu/litert").runtime == "litert"
    with pytest.raises(RunnerError, match="allowed: cpu"):
        parse_device("npu/litert")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--quantize", "int4"), "quantize='int4' is invalid for format 'litert'"),
        (("--dynamic-batch",), "dynamic_batch=True is invalid for format 'litert'"),
        (("--seq-len", "1000"), "seq_len=1000 is invalid"),
    ],
)
def test_cli_bad_input_is_one_line(run_cli, tmp_path, args, message):
    code, _, err = run_cli("export", "bert-tiny", "--format", "litert", "--out", tmp_path, *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_cli_refuses_a_model_dir_that_is_not_flexibert(run_cli, tmp_path):
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text('{"model_type": "bert", "hidden_size": 32}')
    code, _, err = run_cli(
        "export", tmp_path / "bert", "--format", "litert", "--out", tmp_path / "out"
    )
    assert code == 2 and "not a FlexiBERT model (model_type 'bert')" in err, err
    assert len(err.strip().splitlines()) == 1


def test_without_the_extra_litert_says_so_and_other_formats_work(monkeypatch, run_cli, tmp_path):
    for module in LITERT_MODULES:
        monkeypatch.setitem(sys.modules, module, None)
    assert "not installed" in RUNTIMES.why_not("litert")
    model = FlexiBertModel(FlexiBertConfig(homogeneous(1, 16, 2, 32), vocab_size=VOCAB)).eval()
    spec = ExportSpec("litert", seq_len=8)
    with pytest.raises(MissingDependencyError, match=r"pip install 'edgetran\[litert\]'"):
        export_model(model, tmp_path / "litert", spec)
    with pytest.raises(MissingDependencyError, match=r"pip install 'edgetran\[litert\]'"):
        create_runner("litert", __file__)
    result = export_model(model, tmp_path / "pt2", ExportSpec("pt2", seq_len=8), verify=True)
    assert result.verification["passed"]
    code, _, err = run_cli("export", "bert-tiny", "--format", "litert", "--out", tmp_path / "c")
    assert code == 2 and "edgetran[litert]" in err and len(err.strip().splitlines()) == 1, err


def test_dft_and_dct_heads_convert_with_absolute_positions(tmp_path):
    """At batch 1 their (1, 1, 1, S) attention probabilities made a batch matmul that LiteRT's
    converter refused ("invalid output rank")."""
    pytest.importorskip("litert_torch")
    arch = Architecture((Layer(16, ("l_dft", "l_dct"), 8, (32,)),))
    config = FlexiBertConfig(arch, vocab_size=VOCAB, position_embedding_type="absolute")
    model = FlexiBertModel(config).eval()
    spec = ExportSpec("litert", batch_size=1, seq_len=8)
    assert export_model(model, tmp_path, spec, verify=True).verification["passed"]
