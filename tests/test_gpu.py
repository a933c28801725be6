"""What only an NVIDIA GPU can show: the CUDA runners, the NVML meter, bfloat16 training steps.

Marked ``gpu``: each test skips, saying why, where CUDA is absent (as in ``make test`` on
a CPU); ``benchmarks/device_check.sh`` runs them (``pytest -m gpu``) on a lent GPU.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgetran.export import ExportSpec, ExportWrapper, create_runner, export_model, random_inputs
from edgetran.model import FlexiBertConfig, FlexiBertModel
from edgetran.space import homogeneous

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here"),
]

SEQ, VOCAB = 32, 512
TINY = homogeneous(2, 64, 2, 128)


def tiny_model() -> FlexiBertModel:
    torch.manual_seed(0)
    config = FlexiBertConfig(TINY, vocab_size=VOCAB, max_position_embeddings=64)
    return FlexiBertModel(config).eval()


def outputs(runner) -> np.ndarray:
    inputs = random_inputs(1, SEQ, VOCAB, seed=0)
    return runner.to_numpy(runner.run(runner.prepare(*inputs)))


def test_torch_runner_on_cuda_agrees_with_the_cpu():
    model = ExportWrapper(tiny_model())
    on_cpu = outputs(create_runner("torch", model, "cpu"))
    runner = create_runner("torch", model, "cuda:0")
    assert runner.device == "cuda:0"
    np.testing.assert_allclose(outputs(runner), on_cpu, atol=2e-3)


def test_onnxruntime_runs_the_exported_model_on_cuda(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip(f"onnxruntime has no CUDA provider ({ort.get_available_providers()})")
    spec = ExportSpec("onnx", batch_size=1, seq_len=SEQ)
    artifact = export_model(tiny_model(), tmp_path, spec).artifact
    on_cpu = outputs(create_runner("onnxruntime", artifact, "cpu"))
    runner = create_runner("onnxruntime", artifact, "cuda:0")
    assert runner.device == "cuda:0"
    np.testing.assert_allclose(outputs(runner), on_cpu, atol=2e-3)


def test_the_nvml_meter_reads_the_gpu():
    from edgetran.profile.meters import create_meter

    meter = create_meter("auto", "cuda:0")
    reading = meter.read()
    assert meter.kind == "measured" and "gpu" in meter.name
    assert (reading.power_w or 0) > 0 or reading.energy_j is not None


def test_a_cuda_profile_is_measured_not_estimated():
    from edgetran.profile import ProfileSettings, profile_architecture

    settings = ProfileSettings(
        device="cuda:0", seq_len=SEQ, vocab_size=VOCAB, max_time_s=0.5, idle_s=0.2, warmup=2
    )
    m = profile_architecture(TINY, settings)
    assert m.meter_kind == "measured" and m.extra["runner_device"] == "cuda:0"
    assert 0 < m.latency_s < 0.1 and m.energy_j > 0
    assert m.peak_power_w > 0 and m.idle_power_w > 0  # NVML averages: peak may match idle
    assert m.environment["gpu_name"]


def test_training_steps_take_bfloat16_on_a_gpu_that_has_it():
    from edgetran.train.finetune import training_dtype

    native = torch.cuda.is_bf16_supported(including_emulation=False)
    expected = torch.bfloat16 if native else torch.float32
    assert training_dtype("auto", "cuda:0") is expected
