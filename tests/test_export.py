"""Export to ONNX, OpenVINO and .pt2, verified in each runtime against PyTorch."""

import json

import numpy as np
import pytest
import torch

from edgetran.errors import ExportError
from edgetran.export import (
    ExportSpec,
    ExportWrapper,
    OnnxRuntimeRunner,
    OpenVinoRunner,
    RunnerError,
    TorchRunner,
    create_runner,
    export_model,
    random_inputs,
)
from edgetran.model import (
    FlexiBertConfig,
    FlexiBertForMaskedLM,
    FlexiBertForSequenceClassification,
    FlexiBertModel,
)
from edgetran.space import Architecture, homogeneous

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")

SEQ = 16
VOCAB = 97


def build(cls, arch, **kwargs):
    torch.manual_seed(0)
    return cls(FlexiBertConfig(arch, vocab_size=VOCAB, max_position_embeddings=64, **kwargs))


HEADS = {"mlm": FlexiBertForMaskedLM, "cls": FlexiBertForSequenceClassification}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """``exported(head, fmt)``: that head of the all-ops model exported to that format, once
    for the module and only when a test asks (the slow combinations cost nothing otherwise)."""
    from tests.conftest import tiny_hetero_architecture

    arch = tiny_hetero_architecture()
    models = {head: build(cls, arch, num_labels=3) for head, cls in HEADS.items()}
    results = {}

    def export(head: str, fmt: str):
        if (head, fmt) not in results:
            out = tmp_path_factory.mktemp(f"{head}-{fmt}")
            spec = ExportSpec(fmt, batch_size=2, seq_len=SEQ)
            results[head, fmt] = (models[head], export_model(models[head], out, spec, verify=True))
        return results[head, fmt]

    return export


#: Every format with the classifier; the MLM head (another output, tied embeddings) in pt2 in
#: `make test`, in the other two under `make test-slow`: their exporters take the MLM head by
#: the same wrapper as the classifier, and the ONNX one is the slowest (10 s on 2 cores).
HEADS_AND_FORMATS = [
    ("cls", "onnx"),
    ("cls", "openvino"),
    ("cls", "pt2"),
    ("mlm", "pt2"),
    pytest.param("mlm", "onnx", marks=pytest.mark.slow),
    pytest.param("mlm", "openvino", marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("head", "fmt"), HEADS_AND_FORMATS)
def test_every_head_and_format_verifies(exported, head, fmt):
    model, result = exported(head, fmt)
    verification = result.verification
    assert verification["passed"] and verification["max_abs_diff"] <= 1e-4
    metadata = json.loads((result.artifact.parent / "metadata.json").read_text())
    assert metadata["format"] == fmt and metadata["head"] == type(model).__name__
    assert metadata["inputs"][0] == {"name": "input_ids", "dtype": "int64", "shape": [2, SEQ]}
    assert metadata["outputs"][0]["name"] == "logits"
    assert Architecture.from_dict(metadata["architecture"]) == model.config.arch
    assert metadata["verification"]["passed"]
    if fmt == "onnx":
        assert metadata["opset"] >= 18
    if fmt == "openvino":
        assert verification["bf16_max_abs_diff"] is not None
        assert verification["bf16_precision"] in ("f32", "bf16")


def test_onnx_graph_has_named_io_and_no_dft(exported):
    import onnx

    _, result = exported("cls", "onnx")  # the encoder's graph is the same under either head
    graph = onnx.load(str(result.artifact)).graph
    assert [i.name for i in graph.input] == ["input_ids", "attention_mask"]
    assert [o.name for o in graph.output] == ["logits"]
    assert all(i.type.tensor_type.elem_type == onnx.TensorProto.INT64 for i in graph.input)
    ops = {node.op_type for node in graph.node}
    assert "DFT" not in ops and "STFT" not in ops


def test_runners_agree_and_report_their_device(exported):
    model, onnx_result = exported("cls", "onnx")
    _, ov_result = exported("cls", "openvino")
    _, pt2_result = exported("cls", "pt2")
    ids, mask = random_inputs(2, SEQ, VOCAB, seed=5)
    runners = [
        TorchRunner(ExportWrapper(model)),
        create_runner("onnxruntime", onnx_result.artifact),
        create_runner("openvino", ov_result.artifact, precision="f32"),
        create_runner("torch", pt2_result.artifact),
    ]
    outputs = [runner(ids, mask) for runner in runners]
    for output in outputs[1:]:
        np.testing.assert_allclose(output, outputs[0], atol=1e-4)
    assert [r.device for r in runners] == ["cpu", "cpu", "CPU", "cpu"]
    assert [r.runtime for r in runners] == ["torch", "onnxruntime", "openvino", "torch"]
    assert isinstance(runners[1], OnnxRuntimeRunner) and isinstance(runners[2], OpenVinoRunner)
    assert runners[2].precision == "f32"


def test_onnx_dynamic_batch(tmp_path):
    model = build(FlexiBertModel, homogeneous(2, 32, 4, 37))  # one head group per layer
    spec = ExportSpec("onnx", batch_size=2, seq_len=SEQ, dynamic_batch=True)
    result = export_model(model, tmp_path, spec, verify=True)
    assert result.verification["passed"] and result.verification["batch_sizes"] == [2, 3]
    runner = OnnxRuntimeRunner(result.artifact)
    for batch in (1, 5):
        ids, mask = random_inputs(batch, SEQ, VOCAB, seed=batch)
        assert runner(ids, mask).shape == (batch, SEQ, 32)
    assert result.metadata["inputs"][0]["shape"] == ["batch", SEQ]


def test_runner_errors(tmp_path):
    with pytest.raises(RunnerError, match="no such ONNX file"):
        OnnxRuntimeRunner(tmp_path / "missing.onnx")
    with pytest.raises(RunnerError, match=r"missing\.xml: no such OpenVINO IR \(\.xml\) file"):
        OpenVinoRunner(tmp_path / "missing.xml")
    with pytest.raises(RunnerError, match=r"missing\.pt2: no such \.pt2 file"):
        TorchRunner(str(tmp_path / "missing.pt2"))
    with pytest.raises(RunnerError, match="runtime 'tvm' is unknown"):
        create_runner("tvm", tmp_path)
    with pytest.raises(RunnerError, match=r"allowed: cpu, cuda\[:N\]"):
        OnnxRuntimeRunner(__file__, device="npu")


def test_export_spec_validation():
    with pytest.raises(ExportError, match="format='tflite' is invalid"):
        ExportSpec("tflite")
    with pytest.raises(ExportError, match="seq_len=0"):
        ExportSpec("onnx", seq_len=0)
    with pytest.raises(ExportError, match="opset=12"):
        ExportSpec("onnx", opset=12)


def test_cli_export_saved_model_and_architecture(run_cli, tmp_path):
    model = build(FlexiBertForSequenceClassification, homogeneous(2, 32, 2, 48), num_labels=2)
    model.save_pretrained(tmp_path / "saved")
    code, _, err = run_cli(
        "export",
        tmp_path / "saved",
        "--format",
        "pt2",
        "--out",
        tmp_path / "pt2",
        "--seq-len",
        SEQ,
        "--verify",
    )
    assert code == 0 and "verification passed" in err, err
    metadata = json.loads((tmp_path / "pt2" / "metadata.json").read_text())
    assert metadata["head"] == "FlexiBertForSequenceClassification"
    arch_file = tmp_path / "arch.json"
    arch_file.write_text(homogeneous(2, 32, 2, 48).to_json())
    code, _, err = run_cli(
        "export",
        arch_file,
        "--format",
        "openvino",
        "--out",
        tmp_path / "ov",
        "--seq-len",
        SEQ,
        "--vocab-size",
        VOCAB,
        "--verify",
    )
    assert code == 0 and "bf16 hint" in err, err
    assert (tmp_path / "ov" / "model.xml").is_file() and (tmp_path / "ov" / "model.bin").is_file()


def test_cli_failed_verification_exits_nonzero_with_the_difference(run_cli, tmp_path):
    code, _, err = run_cli(
        "export",
        "bert-tiny",
        "--format",
        "openvino",
        "--out",
        tmp_path,
        "--seq-len",
        8,
        "--vocab-size",
        VOCAB,
        "--verify",
        "--tolerance",
        0,
    )
    if "max |Δ| = 0 " in err:
        pytest.skip("the runtime matched PyTorch bit for bit")
    assert code == 1 and "verification FAILED: max |Δ| = " in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("bert-tiny", "--format", "tflite"), "--format 'tflite' is invalid"),
        (("missing/model_dir", "--format", "onnx"), "not a saved model directory"),
    ],
)
def test_cli_export_bad_input(run_cli, tmp_path, args, message):
    code, _, err = run_cli("export", *args, "--out", tmp_path / "out")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_cli_export_unwritable_output(run_cli, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    code, _, err = run_cli("export", "bert-tiny", "--format", "onnx", "--out", blocker / "sub")
    assert code == 2 and "cannot write there" in err
