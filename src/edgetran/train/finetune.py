"""Fine-tuning a pretrained FlexiBERT encoder, with Optuna's TPE choosing the learning rate and
batch size (reference ``flexibert-gptran.md`` §5: log-uniform learning rate in [2e-5, 5e-4],
batch size from a small set, a configurable number of trials).

The reference's fine-tuning script discarded the pretrained weights (``from_pretrained`` called
on an instance), so it fine-tuned fresh models. Here the encoder is copied with a strict check:
every encoder tensor except the pooler must come from the checkpoint, or
:class:`~edgetran.train.pretrain.TrainingError` is raised.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase, get_linear_schedule_with_warmup

from edgetran.model import FlexiBertForMaskedLM, FlexiBertForSequenceClassification
from edgetran.seeding import torch_seeded
from edgetran.train.data import TokenisedTexts
from edgetran.train.metrics import score
from edgetran.train.pretrain import TrainingError
from edgetran.train.tasks import Task

RESULT = "finetune.json"


@dataclass(frozen=True)
class FinetuneSettings:
    """Fine-tuning settings; each Optuna trial trains ``steps`` steps and scores the dev set."""

    trials: int = 5
    steps: int = 200
    learning_rate_range: tuple[float, float] = (2e-5, 5e-4)
    batch_sizes: tuple[int, ...] = (16, 32)
    max_length: int = 64
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    train_examples: int | None = None
    dev_examples: int | None = None
    test_examples: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("trials", "steps", "max_length"):
            if getattr(self, name) < 1:
                raise TrainingError(f"{name}={getattr(self, name)}; expected an integer ≥ 1")
        low, high = self.learning_rate_range
        if not 0 < low <= high:
            raise TrainingError(
                f"learning_rate_range={self.learning_rate_range}; expected 0 < low ≤ high"
            )
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise TrainingError(f"batch_sizes={self.batch_sizes}; expected integers ≥ 1")
        object.__setattr__(self, "learning_rate_range", tuple(self.learning_rate_range))
        object.__setattr__(self, "batch_sizes", tuple(self.batch_sizes))


@dataclass
class FinetuneResult:
    """Scores of the best trial (by dev score) and every trial's parameters."""

    metric: str
    dev_score: float
    test_score: float
    learning_rate: float
    batch_size: int
    trials: list[dict[str, Any]]
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def classifier_from_pretrained(
    pretrained: str | Path | FlexiBertForMaskedLM, num_labels: int
) -> FlexiBertForSequenceClassification:
    """A sequence classifier whose encoder is exactly the pretrained one (pooler and
    classifier newly initialised)."""
    mlm = (
        pretrained
        if isinstance(pretrained, FlexiBertForMaskedLM)
        else FlexiBertForMaskedLM.from_pretrained(pretrained)
    )
    config = copy.deepcopy(mlm.config)
    config.num_labels = num_labels
    model = FlexiBertForSequenceClassification(config)
    missing, unexpected = model.flexibert.load_state_dict(mlm.flexibert.state_dict(), strict=False)
    missing = [k for k in missing if not k.startswith("pooler.")]
    if missing or unexpected:
        raise TrainingError(
            f"the pretrained encoder does not match the classifier: missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}"
        )
    return model


def finetune(
    pretrained: str | Path,
    task: Task,
    tokenizer: PreTrainedTokenizerBase,
    settings: FinetuneSettings = FinetuneSettings(),
    out: str | Path | None = None,
) -> FinetuneResult:
    """Tune learning rate and batch size with TPE; keep, score and (optionally) save the best.

    Args:
        pretrained: a directory written by :func:`~edgetran.train.pretrain.pretrain`.
        out: where to ``save_pretrained`` the best fine-tuned model (and ``finetune.json``).
    """
    import optuna

    began = time.perf_counter()
    mlm = FlexiBertForMaskedLM.from_pretrained(pretrained)
    train, dev, test = (
        _encode(tokenizer, split.subset(n, settings.seed), settings.max_length)
        for split, n in (
            (task.train, settings.train_examples),
            (task.dev, settings.dev_examples),
            (task.test, settings.test_examples),
        )
    )
    best: dict[str, Any] = {"score": -np.inf}

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("learning_rate", *settings.learning_rate_range, log=True)
        batch_size = trial.suggest_categorical("batch_size", list(settings.batch_sizes))
        seed = settings.seed + trial.number
        with torch_seeded(seed):  # the new pooler and classifier, and dropout
            model = classifier_from_pretrained(mlm, task.num_labels)
            _train(model, train, lr, batch_size, settings, seed)
        dev_score = evaluate_split(model, dev, task.metric, task.num_labels)
        if dev_score > best["score"]:
            best.update(score=dev_score, state=copy.deepcopy(model.state_dict()), model=model)
        return dev_score

    sampler = optuna.samplers.TPESampler(seed=settings.seed)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(objective, n_trials=settings.trials)
    model = best["model"]
    model.load_state_dict(best["state"])
    result = FinetuneResult(
        metric=task.metric,
        dev_score=float(study.best_value),
        test_score=evaluate_split(model, test, task.metric, task.num_labels),
        learning_rate=float(study.best_params["learning_rate"]),
        batch_size=int(study.best_params["batch_size"]),
        trials=[{"number": t.number, **t.params, "dev_score": t.value} for t in study.trials],
        seconds=time.perf_counter() - began,
        settings=asdict(settings),
    )
    if out is not None:
        out = Path(out)
        model.config.id2label = dict(enumerate(task.label_names)) or {0: "score"}
        model.config.label2id = {v: k for k, v in model.config.id2label.items()}
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        (out / RESULT).write_text(json.dumps({**result.to_dict(), "task": task.name}, indent=1))
    return result


def evaluate_split(
    model: FlexiBertForSequenceClassification,
    data: TokenisedTexts,
    metric: str,
    num_labels: int,
    batch_size: int = 128,
) -> float:
    """The task metric of ``model`` on ``data``."""
    model.eval()
    outputs = []
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            batch = data.batch(np.arange(start, min(start + batch_size, len(data))))
            logits = model(batch["input_ids"], batch["attention_mask"]).logits  # (B, labels)
            outputs.append(logits.squeeze(-1) if num_labels == 1 else logits.argmax(-1))
    model.train()
    return score(metric, data.labels.numpy(), torch.cat(outputs).numpy())


def _train(model, data: TokenisedTexts, lr: float, batch_size: int, settings, seed: int):
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=settings.weight_decay)
    warmup = round(settings.warmup_ratio * settings.steps)
    scheduler = get_linear_schedule_with_warmup(optimizer, warmup, settings.steps)
    model.train()
    for step in range(settings.steps):
        batch = data.batch(data.rows(step, batch_size, seed))
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)


def _encode(tokenizer, split, max_length: int) -> TokenisedTexts:
    return TokenisedTexts(tokenizer, split.texts, max_length, split.pairs, split.labels)
