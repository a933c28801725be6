"""Precision is part of the design (issue 40, item 5): the int8 runtimes, each on its own
runtime's quantiser; label agreement as int8's verification; a classifier's accuracy as it
runs in a runtime, cached; profiling the quantised artifact; a missing quantiser as one line."""

import json
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from edgetran.errors import ExportError, VerificationError
from edgetran.export import (
    DYNAMIC_INT8,
    ExportSpec,
    LabelAgreementError,
    RunnerError,
    create_runner,
    export_model,
    random_inputs,
    require_runtime,
    verify_labels,
)
from edgetran.export.verify import (
    label_agreement,
    predicted_labels,
    reference_outputs,
    runner_outputs,
)
from edgetran.model import FlexiBertConfig, FlexiBertForSequenceClassification, load_model
from edgetran.plugins import RUNTIMES, list_runtimes
from edgetran.store import Store
from edgetran.testing.runtimes import QUANTIZED_RELATIVE_ERROR
from edgetran.train.data import TokenisedTexts
from edgetran.train.tasks import load_task
from tests.test_profile import TINY
from tests.test_train import TINY_BUDGETS, tiny_arch, write_task

pytest.importorskip("onnxruntime")

INT8 = {"onnxruntime-int8": "onnxruntime", "openvino-int8": "openvino", "litert-int8": "litert"}
SEQ = 16
VOCAB = 97


def skip_unless_usable(name: str) -> None:
    why = RUNTIMES.why_not(name)
    if why:
        pytest.skip(f"runtime {name!r} is not usable here: {why}")


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """A tiny classifier fine-tuned on an easy two-class task (sure of its labels), saved with
    its tokenizer as train_classifier saves the co-design's models; and the task file."""
    from edgetran.train import oracle
    from edgetran.train.oracle import train_classifier

    folder = tmp_path_factory.mktemp("classifier")
    task = write_task(folder / "task.csv")
    budget = replace(TINY_BUDGETS["quick"], finetune_steps=120, eval_every=120, word_vectors=False)
    with pytest.MonkeyPatch.context() as patch, Store(folder / "ws.db") as store:
        patch.setitem(oracle.BUDGETS, "quick", budget)
        train_classifier(
            tiny_arch(), str(task), "quick", store=store, workspace=folder / "ws",
            out=folder / "model",
        )  # fmt: skip
    return folder / "model", task


def tokenised(model_dir, task, split: str):
    from transformers import AutoTokenizer

    examples = getattr(load_task(str(task)), split)
    data = TokenisedTexts(AutoTokenizer.from_pretrained(model_dir), examples.texts, SEQ)
    return data.input_ids.numpy(), data.attention_mask.numpy()


# -- the runtimes -------------------------------------------------------------------------------
def test_each_int8_runtime_is_its_base_runtime_on_dynamic_int8():
    for name, base in INT8.items():
        assert name in list_runtimes()
        runtime, float32 = RUNTIMES.get(name), RUNTIMES.get(base)
        assert (runtime.format, runtime.artifact_name) == (float32.format, float32.artifact_name)
        assert runtime.quantize == DYNAMIC_INT8 and float32.quantize == "none"
        spec = ExportSpec.for_runtime(name, batch_size=2, seq_len=8)
        assert (spec.format, spec.quantize, spec.batch_size) == (float32.format, DYNAMIC_INT8, 2)
    # the export command's formats are unchanged: int8 is a quantisation of each
    assert ExportSpec("onnx", quantize=DYNAMIC_INT8).quantize == DYNAMIC_INT8
    with pytest.raises(Exception, match="quantize='dynamic-int8' is invalid for format 'pt2'"):
        ExportSpec("pt2", quantize=DYNAMIC_INT8)


@pytest.mark.parametrize("name", ["onnxruntime-int8", "openvino-int8"])
def test_every_head_operation_runs_quantised(name, tmp_path):
    """DFT/DCT basis matmuls, convolutions and relative keys survive each quantiser (LiteRT's
    in tests/test_export_litert.py); the artifact holds int8 weights and says what it is."""
    from tests.conftest import tiny_hetero_architecture

    skip_unless_usable(name)
    torch.manual_seed(0)
    config = FlexiBertConfig(
        tiny_hetero_architecture(), vocab_size=VOCAB, max_position_embeddings=64, num_labels=3
    )
    model = FlexiBertForSequenceClassification(config).eval()
    spec = ExportSpec.for_runtime(name, batch_size=2, seq_len=SEQ)
    result = export_model(model, tmp_path, spec, verify=True)
    metadata = json.loads((tmp_path / "metadata.json").read_text())
    assert metadata["runtime"] == name and metadata["quantize"] == DYNAMIC_INT8
    assert result.verification["passed"] and result.verification["tolerance"] is None
    runner = create_runner(name, result.artifact)
    assert runner.describe()["quantize"] == DYNAMIC_INT8
    ids, mask = random_inputs(2, SEQ, VOCAB, seed=3)
    expected = reference_outputs(model, ids, mask)
    error = np.linalg.norm(runner(ids, mask) - expected) / np.linalg.norm(expected)
    assert error <= QUANTIZED_RELATIVE_ERROR
    assert _int8_weights(name, result.artifact)


def _int8_weights(name: str, artifact) -> bool:
    if name == "onnxruntime-int8":
        import onnx

        graph = onnx.load(str(artifact)).graph
        kinds = {node.op_type for node in graph.node}
        return {"MatMulInteger", "ConvInteger", "DynamicQuantizeLinear"} <= kinds
    import openvino as ov

    model = ov.Core().read_model(str(artifact))
    return any(op.get_element_type().get_type_name() in ("u8", "i8") for op in model.get_ops())


# -- a missing quantiser ------------------------------------------------------------------------
def test_a_missing_quantiser_is_one_line_naming_the_extra(monkeypatch, run_cli, tmp_path):
    monkeypatch.setitem(sys.modules, "nncf", None)
    extra = "pip install 'edgetran[openvino-int8]'"
    assert extra in RUNTIMES.why_not("openvino-int8")
    with pytest.raises(RunnerError, match=r"edgetran\[openvino-int8\]"):
        require_runtime("openvino-int8")
    arch = tmp_path / "tiny.json"
    arch.write_text(json.dumps(TINY.to_model_dict()))
    commands = [
        ("profile", "--runtime", "openvino-int8", "--arch", arch, "--seq-len", 8,
         "--meter", "estimate", "--idle", 0, "--db", tmp_path / "p.db"),
        ("export", arch, "--format", "openvino", "--quantize", DYNAMIC_INT8,
         "--out", tmp_path / "export"),
        ("codesign", "--devices", "cpu/torch,cpu/openvino-int8", "--out", tmp_path / "run",
         "--db", tmp_path / "c.db", "--workspace", tmp_path / "ws"),
    ]  # fmt: skip
    for command in commands:
        code, _, err = run_cli(*command)
        assert code == 2 and extra in err and len(err.strip().splitlines()) == 1, (command, err)
    assert not (tmp_path / "run").exists()  # refused before any work
    code, out, _ = run_cli("env")
    assert code == 0 and "openvino-int8" in out and extra in out


# -- label agreement ----------------------------------------------------------------------------
def test_label_agreement_passes_int8_and_fails_a_broken_runner(classifier, tmp_path):
    model_dir, task = classifier
    model = load_model(model_dir).eval()
    ids, mask = tokenised(model_dir, task, "dev")
    spec = ExportSpec.for_runtime("onnxruntime-int8", seq_len=SEQ)
    artifact = export_model(model, tmp_path / "int8", spec).artifact
    check = verify_labels(model, artifact, "onnxruntime-int8", ids, mask)
    assert check.passed and check.agreement >= 0.99 and check.examples == len(ids)
    assert (check.quantize, check.batch_size, check.threshold) == (DYNAMIC_INT8, 1, 0.99)

    broken = create_runner("onnxruntime-int8", artifact)
    broken.to_numpy = lambda output: -np.asarray(output, dtype=np.float32)  # the least likely
    failed = label_agreement(broken, model, ids, mask)
    assert not failed.passed and failed.agreement < 0.99
    assert "label agreement FAILED" in str(LabelAgreementError(failed))
    with pytest.raises(VerificationError, match="classifier"):
        predicted_labels(np.zeros((3, 1), dtype=np.float32))  # a regression head


def test_runner_outputs_fill_a_static_batch_and_drop_the_filling():
    seen = []

    def runner(ids, mask):  # an artifact of a static batch of 2
        assert ids.shape == (2, 3)
        seen.append(ids[:, 0].tolist())
        return ids.astype(np.float32)

    ids = np.arange(15).reshape(5, 3)
    outputs = runner_outputs(runner, ids, np.ones_like(ids), batch_size=2)
    assert np.array_equal(outputs, ids) and seen == [[0, 3], [6, 9], [12, 12]]


# -- accuracy in a runtime ----------------------------------------------------------------------
def test_artifact_accuracy_is_scored_in_the_runtime_and_cached(classifier, tmp_path, monkeypatch):
    import edgetran.codesign.runtime_accuracy as module

    model_dir, task = classifier
    kwargs = dict(workspace=tmp_path / "ws", seq_len=SEQ)
    with Store(tmp_path / "a.db") as store:
        first = module.artifact_accuracy(model_dir, "onnxruntime-int8", str(task), store=store,
                                         **kwargs)  # fmt: skip
        assert first["cached"] is False and first["runtime"] == "onnxruntime-int8"
        assert first["quantize"] == DYNAMIC_INT8 and first["metric"] == "accuracy"
        assert first["examples"] == len(load_task(str(task)).test)
        assert 0 <= first["accuracy"] <= 1 and first["accuracy_std"] >= 0
        # the gate is the dev check; agreement on the scored split is recorded, not gated: on
        # 20 test examples one flipped label (int8 kernels differ between CPUs) is 0.95
        assert first["verification"]["passed"] and first["verification"]["agreement"] >= 0.99
        assert 0.9 <= first["agreement"] <= 1
        assert abs(first["accuracy"] - first["torch_accuracy"]) <= 1 - first["agreement"] + 1e-9

        def no_work(*args, **kwargs):
            raise AssertionError("a cached accuracy repeats no work")

        monkeypatch.setattr(module, "export_model", no_work)
        monkeypatch.setattr(module, "label_agreement", no_work)
        again = module.artifact_accuracy(model_dir, "onnxruntime-int8", str(task), store=store,
                                         **kwargs)  # fmt: skip
        assert again["cached"] is True
        assert {k: v for k, v in again.items() if k != "cached"} == {
            k: v for k, v in first.items() if k != "cached"
        }
    # killed after the export and the dev check, before the score was stored: the resumed
    # call only scores
    with Store(tmp_path / "resumed.db") as store:
        resumed = module.artifact_accuracy(model_dir, "onnxruntime-int8", str(task),
                                           store=store, **kwargs)  # fmt: skip
        assert resumed["cached"] is False and resumed["accuracy"] == first["accuracy"]


def test_a_failed_agreement_is_stored_and_raised_again(classifier, tmp_path, monkeypatch):
    import edgetran.codesign.runtime_accuracy as module
    import edgetran.export.verify as verify

    model_dir, task = classifier
    real = verify.runner_outputs
    monkeypatch.setattr(verify, "runner_outputs", lambda *a, **k: -real(*a, **k))  # broken
    with Store(tmp_path / "a.db") as store:
        kwargs = dict(store=store, workspace=tmp_path / "ws", seq_len=SEQ)
        with pytest.raises(LabelAgreementError) as failed:
            module.artifact_accuracy(model_dir, "onnxruntime", str(task), **kwargs)
        assert not failed.value.agreement.passed and failed.value.agreement.agreement < 0.99
        monkeypatch.setattr(module, "export_model", None)  # a second call exports nothing
        with pytest.raises(LabelAgreementError):
            module.artifact_accuracy(model_dir, "onnxruntime", str(task), **kwargs)


def test_artifact_accuracy_refuses_bad_input(classifier, tmp_path):
    from edgetran.codesign.runtime_accuracy import artifact_accuracy
    from edgetran.errors import InvalidInputError, ModelNotFoundError

    model_dir, task = classifier
    with Store(tmp_path / "a.db") as store:
        kwargs = dict(store=store, workspace=tmp_path / "ws", seq_len=SEQ)
        with pytest.raises(InvalidInputError, match="split='val' is invalid; allowed: train"):
            artifact_accuracy(model_dir, "onnxruntime-int8", str(task), split="val", **kwargs)
        with pytest.raises(ModelNotFoundError, match=r"no config\.json"):
            artifact_accuracy(tmp_path, "onnxruntime-int8", str(task), **kwargs)
        with pytest.raises(RunnerError, match="runtime 'npu' is unknown"):
            artifact_accuracy(model_dir, "npu", str(task), **kwargs)


# -- profiling ----------------------------------------------------------------------------------
def test_profile_measures_the_quantised_artifact(run_cli, tmp_path):
    arch = tmp_path / "tiny.json"
    arch.write_text(json.dumps(TINY.to_model_dict()))
    code, out, err = run_cli(
        "profile", "--runtime", "onnxruntime-int8", "--arch", arch, "--seq-len", 16,
        "--meter", "estimate", "--idle", 0, "--max-time", 0.5, "--threads", 1,
        "--db", tmp_path / "p.db", "--json",
    )  # fmt: skip
    assert code == 0, err
    measured = json.loads(out)
    assert measured["runtime"] == "onnxruntime-int8" and measured["latency_s"] > 0
    with Store(tmp_path / "p.db") as store:
        (stored,) = store.measurements("cpu")
    assert stored.runtime == "onnxruntime-int8"
    assert stored.environment["versions"]["onnxruntime"]


def test_codesign_takes_int8_devices():
    from edgetran.codesign.config import parse_device

    for name in INT8:
        assert parse_device(f"cpu/{name}").runtime == name


def test_codesign_exports_an_int8_winner_quantised(classifier, tmp_path):
    """The export stage exports the winner as its device was profiled: quantised."""
    import shutil

    from edgetran.codesign.conclude import export_answer
    from edgetran.codesign.config import CodesignConfig, parse_device
    from edgetran.codesign.context import RunContext

    model_dir, task = classifier
    # its own task: the labels' check scores the split it was trained for (the bundled
    # tweets, the default, take seconds more to tokenise and score)
    config = CodesignConfig(
        devices=("cpu/onnxruntime-int8",), task=str(task), seq_len=SEQ, out=str(tmp_path),
        workspace=str(tmp_path / "ws"),  # not ./edgetran-workspace in the repository
    )  # fmt: skip
    shutil.copytree(model_dir, tmp_path / "model")
    with Store(tmp_path / "c.db") as store:
        run = RunContext(config, store, tmp_path, print)
        exported = export_answer(run, parse_device("cpu/onnxruntime-int8"), None)
    metadata = json.loads((tmp_path / "export" / "metadata.json").read_text())
    assert (metadata["runtime"], metadata["quantize"]) == ("onnxruntime-int8", DYNAMIC_INT8)
    assert exported["verification"]["passed"] and exported["verification"]["quantize"] == (
        DYNAMIC_INT8
    )


def test_onnxruntime_and_its_int8_share_one_float_export(tmp_path, monkeypatch):
    """One dynamo export per model and shape in a process: the float artifact and the int8
    one of the same weights reuse it; other weights or shapes export again."""
    from edgetran.export import exporters

    skip_unless_usable("onnxruntime-int8")
    monkeypatch.setattr(exporters, "FLOAT32_ONNX", exporters._ExportCache())
    calls = []
    real = exporters._dynamo_export
    monkeypatch.setattr(exporters, "_dynamo_export", lambda *a: calls.append(1) or real(*a))
    torch.manual_seed(0)
    config = FlexiBertConfig(tiny_arch(), vocab_size=VOCAB, max_position_embeddings=64)
    model = FlexiBertForSequenceClassification(config).eval()
    spec = ExportSpec.for_runtime("onnxruntime", batch_size=1, seq_len=8)
    first = export_model(model, tmp_path / "f32", spec, verify=True)
    again = export_model(model, tmp_path / "again", spec, verify=True)
    int8 = export_model(model, tmp_path / "int8", replace(spec, quantize=DYNAMIC_INT8))
    assert len(calls) == 1 and first.verification["passed"] and again.verification["passed"]
    assert again.artifact.read_bytes() == first.artifact.read_bytes()
    assert create_runner("onnxruntime-int8", int8.artifact).describe()["quantize"] == DYNAMIC_INT8
    assert sorted(p.name for p in (tmp_path / "int8").iterdir()) == ["metadata.json", "model.onnx"]

    def asked(*args):  # a miss asks the exporter; running it would only take 5 s more a shape
        calls.append(1)
        raise RuntimeError("exporter asked")

    monkeypatch.setattr(exporters, "_dynamo_export", asked)
    with pytest.raises(ExportError, match="exporter asked"):
        export_model(model, tmp_path / "longer", replace(spec, seq_len=16))
    with torch.no_grad():
        model.classifier.weight.add_(1.0)  # other weights: another program
    with pytest.raises(ExportError, match="exporter asked"):
        export_model(model, tmp_path / "other", spec)
    assert len(calls) == 3
