"""The winner's final training (saved with its tokenizer) and the measurement of its exported
artifact on the live device."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from edgetran.space import Architecture
from edgetran.store import Store


def train_final(
    arch: Architecture,
    task: str,
    budget: str,
    *,
    store: Store,
    workspace: str | Path,
    seed: int,
    out: Path,
) -> dict[str, Any]:
    """Pretrain ``arch`` at ``budget`` where the accuracy oracle would (from the nearest trained
    neighbour, resuming a killed run from its checkpoint), fine-tune it, and save the best
    classifier and the tokenizer in ``out``. Returns the scores and where the model is."""
    from edgetran.train.finetune import finetune
    from edgetran.train.oracle import budget_settings, model_dir, pretrain_in_workspace
    from edgetran.train.tasks import load_task
    from edgetran.train.tokenizer import load_tokenizer

    pre_settings, fine_settings = budget_settings(budget, seed)
    loaded = load_task(task)
    workspace = Path(workspace)
    tok, tokenizer_id = load_tokenizer(None, loaded.corpus(), workspace / "tokenizers")
    pretrained = model_dir(workspace, arch, tokenizer_id, budget) / "pretrain"
    texts = loaded.train.subset(pre_settings.steps * pre_settings.batch_size, seed).texts
    pre = pretrain_in_workspace(arch, texts, tok, tokenizer_id, pretrained, pre_settings, store)
    fine = finetune(pretrained, loaded, tok, fine_settings, out)
    return {
        "accuracy": fine.test_score,
        "metric": fine.metric,
        "dev_score": fine.dev_score,
        "budget": budget,
        "pretrain_loss": pre.loss,
        "pretrain_steps": pre.steps,
        "transferred_from": pre.transferred_from,
        "learning_rate": fine.learning_rate,
        "batch_size": fine.batch_size,
        "model": str(out),
    }


def measure_artifact(artifact: Path, settings, meter) -> dict[str, Any]:
    """The ProTran protocol on the exported artifact itself, in its runtime (measured, per
    sequence; energy and peak power flagged by the meter's kind)."""
    from edgetran.export import create_runner, random_inputs
    from edgetran.profile.protocol import profile_runner

    metadata = json.loads((artifact.parent / "metadata.json").read_text())
    options: dict[str, Any] = {"threads": settings.pinned_threads}
    if settings.runtime == "torch":  # threads are torch's global setting, as the profiler pins
        import torch

        torch.set_num_threads(options.pop("threads"))
    if settings.runtime == "openvino":
        options["precision"] = "f32"
    runner = create_runner(settings.runtime, artifact, settings.device, **options)
    ids, mask = random_inputs(
        settings.batch_size, settings.seq_len, metadata["config"]["vocab_size"], settings.seed
    )
    result = profile_runner(runner, runner.prepare(ids, np.ones_like(mask)), meter, settings)
    batch = settings.batch_size
    return {
        "artifact": str(artifact),
        "runtime": settings.runtime,
        "device": runner.device,
        "batch_size": batch,
        "seq_len": settings.seq_len,
        "latency_s": result.latency_s / batch,
        "latency_ci95_s": [v / batch for v in result.latency_ci95_s],
        "energy_j": result.energy_j / batch,
        "peak_power_w": result.peak_power_w,
        "repeats": result.repeats,
        "meter": meter.name,
        "meter_kind": meter.kind,
    }
