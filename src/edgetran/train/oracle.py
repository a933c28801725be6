"""The accuracy oracle: pretrain (from the nearest trained neighbour), fine-tune, score.

:func:`evaluate` is what the co-search calls; :func:`evaluate_job` is the same with JSON-ready
inputs and outputs, for remote workers. Results are stored in the workspace database and
reused: the same architecture, task, budget and seed are never trained twice. Checkpoints live
in the workspace folder, so an interrupted evaluation resumes its pretraining.

Budgets are named presets of steps and trials (README, "Accuracy"); ``quick`` is sized for about
a minute on two CPU cores for models up to BERT-Mini.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgetran.space import REFERENCE_SPACE, Architecture
from edgetran.store import Store
from edgetran.train.finetune import FinetuneSettings, finetune
from edgetran.train.pretrain import PretrainResult, PretrainSettings, TrainingError, pretrain
from edgetran.train.tasks import GLUE_TASKS, Task, TaskOptions, load_task
from edgetran.train.tokenizer import load_tokenizer

DEFAULT_WORKSPACE = "edgetran-workspace"


@dataclass(frozen=True)
class Budget:
    """A named amount of training: MLM steps, then ``trials`` TPE trials of ``finetune_steps``."""

    pretrain_steps: int
    pretrain_batch_size: int
    max_length: int
    trials: int
    finetune_steps: int
    batch_sizes: tuple[int, ...]
    dev_examples: int | None
    test_examples: int | None
    pretrain_learning_rate: float = 5e-4
    learning_rate_range: tuple[float, float] = (2e-5, 5e-4)


#: ``quick`` trains briefly, so it searches higher fine-tuning rates than the reference range.
BUDGETS = {
    "quick": Budget(40, 32, 32, 2, 180, (8, 16), 500, 1000, 2e-4, (3e-4, 1e-3)),
    "standard": Budget(2000, 32, 64, 5, 600, (16, 32), 2000, None),
    "full": Budget(100_000, 64, 128, 10, 5000, (16, 32, 64), None, None, 1e-4),
}


def budget_settings(name: str, seed: int = 0) -> tuple[PretrainSettings, FinetuneSettings]:
    if name not in BUDGETS:
        raise TrainingError(f"budget {name!r} is unknown; allowed: {', '.join(BUDGETS)}")
    b = BUDGETS[name]
    return (
        PretrainSettings(
            steps=b.pretrain_steps,
            batch_size=b.pretrain_batch_size,
            max_length=b.max_length,
            learning_rate=b.pretrain_learning_rate,
            checkpoint_every=max(10, b.pretrain_steps // 20),
            seed=seed,
        ),
        FinetuneSettings(
            trials=b.trials,
            steps=b.finetune_steps,
            batch_sizes=b.batch_sizes,
            learning_rate_range=b.learning_rate_range,
            max_length=b.max_length,
            dev_examples=b.dev_examples,
            test_examples=b.test_examples,
            seed=seed,
        ),
    )


def nearest_trained(
    arch: Architecture, store: Store, tokenizer_id: str, exclude_path: str | None = None
) -> dict[str, Any] | None:
    """The registered checkpoint (same tokenizer) whose normalised embedding is closest."""
    candidates = [
        c
        for c in store.trained_models(tokenizer_id)
        if c["path"] != exclude_path and Path(c["path"]).is_dir()
    ]
    if not candidates:
        return None
    target = np.array(REFERENCE_SPACE.encode_normalised(arch))

    def distance(entry: dict[str, Any]) -> float:
        other = Architecture.from_dict(entry["model_dict"])
        return float(np.linalg.norm(np.array(REFERENCE_SPACE.encode_normalised(other)) - target))

    return min(candidates, key=distance)


def pretrain_in_workspace(
    arch: Architecture,
    texts: list[str],
    tokenizer,
    tokenizer_id: str,
    out: Path,
    settings: PretrainSettings,
    store: Store,
    transfer: bool = True,
    on_step=None,
) -> PretrainResult:
    """Pretrain from the nearest registered neighbour (if ``transfer``) and register the
    result, so that later models can start from it."""
    source = nearest_trained(arch, store, tokenizer_id, exclude_path=str(out))
    result = pretrain(
        arch, texts, tokenizer, tokenizer_id, out, settings,
        init_from=source["path"] if transfer and source else None, on_step=on_step,
    )  # fmt: skip
    store.add_trained_model(
        arch.to_dict(), arch.hash, tokenizer=tokenizer_id, path=str(out),
        steps=result.steps, loss=result.loss,
    )  # fmt: skip
    return result


def model_dir(workspace: Path, arch: Architecture, tokenizer_id: str, budget: str) -> Path:
    """Where the oracle trains ``arch`` at ``budget`` (its ``pretrain`` checkpoint inside)."""
    return workspace / "models" / f"{arch.hash[:16]}-{tokenizer_id.split(':')[-1][:16]}-{budget}"


def evaluate(
    arch: Architecture,
    task: str | Task,
    budget: str = "quick",
    *,
    store: Store,
    workspace: str | Path = DEFAULT_WORKSPACE,
    seed: int = 0,
    tokenizer: str | None = None,
    transfer: bool = True,
    task_options: TaskOptions | None = None,
) -> dict[str, Any]:
    """Accuracy of ``arch`` on ``task`` after ``budget`` training (cached in ``store``).

    Returns a JSON-ready dict: ``accuracy`` (the task metric, a fraction), ``metric``,
    ``pretrain_loss``, ``train_seconds``, ``transferred_from`` and more.
    """
    name = task if isinstance(task, str) else task.name
    if name == "glue/all":
        return _evaluate_glue(arch, budget, store, workspace, seed, tokenizer, transfer)
    cached = store.evaluation(arch.hash, task=name, budget=budget, seed=seed)
    if cached is not None:
        return {**cached, "cached": True}
    pre_settings, fine_settings = budget_settings(budget, seed)
    began = time.perf_counter()
    task = load_task(task, task_options) if isinstance(task, str) else task
    workspace = Path(workspace)
    tok, tokenizer_id = load_tokenizer(tokenizer, task.corpus(), workspace / "tokenizers")
    run_dir = model_dir(workspace, arch, tokenizer_id, budget)
    texts = task.train.subset(pre_settings.steps * pre_settings.batch_size, seed).texts
    pre = pretrain_in_workspace(
        arch, texts, tok, tokenizer_id, run_dir / "pretrain", pre_settings, store, transfer
    )
    fine = finetune(run_dir / "pretrain", task, tok, fine_settings)
    result = {
        "hash": arch.hash,
        "task": name,
        "budget": budget,
        "seed": seed,
        "accuracy": fine.test_score,
        "metric": fine.metric,
        "dev_score": fine.dev_score,
        "pretrain_loss": pre.loss,
        "pretrain_steps": pre.steps,
        "train_seconds": time.perf_counter() - began,
        "transferred_from": pre.transferred_from,
        "transferred_share": pre.transferred_share,
        "learning_rate": fine.learning_rate,
        "batch_size": fine.batch_size,
        "tokenizer": tokenizer_id,
        "budget_settings": asdict(BUDGETS[budget]),
    }
    store.add_evaluation(
        arch.to_dict(), arch.hash, task=name, budget=budget, seed=seed, result=result
    )
    return {**result, "cached": False}


def _evaluate_glue(arch, budget, store, workspace, seed, tokenizer, transfer) -> dict[str, Any]:
    """All eight GLUE tasks; ``accuracy`` is the GLUE score (their mean, WNLI excluded)."""
    from edgetran.train.metrics import glue_score

    parts = {
        t: evaluate(
            arch,
            f"glue/{t}",
            budget,
            store=store,
            workspace=workspace,
            seed=seed,
            tokenizer=tokenizer,
            transfer=transfer,
        )
        for t in GLUE_TASKS
    }
    return {
        "hash": arch.hash,
        "task": "glue/all",
        "budget": budget,
        "seed": seed,
        "accuracy": glue_score({t: r["accuracy"] for t, r in parts.items()}),
        "metric": "glue",
        "pretrain_loss": float(np.mean([r["pretrain_loss"] for r in parts.values()])),
        "train_seconds": sum(r["train_seconds"] for r in parts.values()),
        "transferred_from": parts["cola"]["transferred_from"],
        "tasks": {t: r["accuracy"] for t, r in parts.items()},
        "cached": all(r["cached"] for r in parts.values()),
    }


def evaluate_job(model_dict: dict, task: str, budget: str, db: str, workspace: str,
                 seed: int = 0) -> dict[str, Any]:  # fmt: skip
    """:func:`evaluate` with serialisable inputs and output (for a remote worker)."""
    with Store(db) as store:
        return evaluate(
            Architecture.from_dict(model_dict), task, budget, store=store,
            workspace=workspace, seed=seed,
        )  # fmt: skip
