"""Fine-tuning a pretrained FlexiBERT encoder, with Optuna's TPE choosing the learning rate and
batch size (reference ``flexibert-gptran.md`` §5: log-uniform learning rate in [2e-5, 5e-4],
batch size from a small set, a configurable number of trials). The first trial is the middle
of the range (geometric mean learning rate, largest batch size), so a one-trial budget trains
at a sensible point instead of a random one.

Each trial trains for ``steps`` optimiser steps, or fewer where ``flops_budget`` runs out first
(but at least ``min_steps``): a budget in training FLOPs gives every architecture the same
compute, so a large model is not given minutes where a small one gets seconds, and the floor
keeps a large one from being judged on a handful of steps. The dev split is scored every
``eval_every`` steps and the best state is kept (early stopping after ``patience`` scores
without improvement; ``None``: every trial runs to its last step). A trial whose loss turns NaN
or infinite fails; the fine-tuning fails only when every trial did.

With ``reference_width`` set, the learning-rate range is for a model of that hidden width and a
wider model's range is scaled down by ``reference_width / width`` (its widest layer): Adam moves
every weight by about the learning rate, so a wider layer's output moves proportionally more
(the µP rule for hidden weights). Measured: BERT-Mini fine-tuned 145 steps at 1e-3 stayed at the
majority class; at 3e-4 it reached 0.67 (BENCHMARKS.md).

The reference's fine-tuning script discarded the pretrained weights (``from_pretrained`` called
on an instance), so it fine-tuned fresh models. Here the encoder is copied with a strict check:
every encoder tensor except the pooler must come from the checkpoint, or
:class:`~edgetran.train.pretrain.TrainingError` is raised.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase, get_linear_schedule_with_warmup

from edgetran.model import FlexiBertForMaskedLM, FlexiBertForSequenceClassification
from edgetran.seeding import torch_seeded
from edgetran.space import Architecture
from edgetran.space.costs import estimate_costs
from edgetran.train.data import TokenisedTexts
from edgetran.train.metrics import bootstrap_std, score
from edgetran.train.pretrain import TrainingError
from edgetran.train.tasks import Task

RESULT = "finetune.json"
#: ``FinetuneSettings.precision``: the training steps' matrix products in float32, in bfloat16
#: (autocast: the weights, their gradients and Adam's state stay float32), or ``auto``:
#: bfloat16 on a GPU that has it, else float32 (:func:`training_dtype`).
PRECISIONS = ("float32", "bfloat16", "auto")
#: ``finetune``'s ``on_step(step, steps, loss, model)``.
OnStep = Callable[[int, int, float, torch.nn.Module], None]
#: ``finetune``'s ``on_rung(rung, fidelity, accuracy)``: rung index, the fraction of the
#: fine-tuning's step schedule done, the best dev score so far.
OnRung = Callable[[int, float, float], None]


def check_precision(precision: str) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else a :class:`TrainingError` naming
    them."""
    if precision not in PRECISIONS:
        raise TrainingError(f"precision={precision!r}; allowed: {', '.join(PRECISIONS)}")
    return precision


@dataclass(frozen=True)
class FinetuneSettings:
    """Fine-tuning settings; each Optuna trial trains at most ``steps`` steps (fewer when
    ``flops_budget``, the training FLOPs of one trial, runs out first) and scores the dev set
    every ``eval_every`` steps (``None``: once, at the end), keeping the best state; it stops
    after ``patience`` scores without a gain (``None``: never before its last step).
    ``precision`` is the training steps' (:data:`PRECISIONS`); dev and test are scored in
    float32, as the model is exported."""

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
    flops_budget: float | None = None
    eval_every: int | None = None
    patience: int | None = 2
    reference_width: int | None = None
    group_by_length: bool = False
    min_steps: int = 1
    precision: str = "float32"
    seed: int = 0

    def __post_init__(self) -> None:
        check_precision(self.precision)
        for name in ("trials", "steps", "max_length", "min_steps"):
            if getattr(self, name) < 1:
                raise TrainingError(f"{name}={getattr(self, name)}; expected an integer ≥ 1")
        for name in ("patience", "eval_every", "reference_width"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise TrainingError(f"{name}={value}; expected an integer ≥ 1 or None")
        if self.flops_budget is not None and not self.flops_budget > 0:
            raise TrainingError(f"flops_budget={self.flops_budget}; expected > 0 or None")
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
    """Scores of the best trial (by dev score) and every trial's parameters.

    ``test_std`` is the bootstrap standard deviation of ``test_score`` over the
    ``test_examples`` scored; ``steps`` is the best trial's length (its best state may be
    from an earlier step: ``best_step``); ``precision`` is the one the steps ran in
    (``settings.precision`` resolved on the device)."""

    metric: str
    dev_score: float
    test_score: float
    test_std: float
    test_examples: int
    learning_rate: float
    batch_size: int
    steps: int
    best_step: int
    trials: list[dict[str, Any]]
    seconds: float
    precision: str = "float32"
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The result as a JSON-ready dict."""
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


def check_rungs(rungs: Sequence[float]) -> tuple[float, ...]:
    """``rungs`` as a tuple if they are increasing fractions in (0, 1], else a
    :class:`TrainingError` saying so."""
    rungs = tuple(float(r) for r in rungs)
    if any(not 0 < r <= 1 for r in rungs) or any(a >= b for a, b in itertools.pairwise(rungs)):
        raise TrainingError(f"rungs={list(rungs)}; expected increasing fractions in (0, 1]")
    return rungs


class _Rungs:
    """The rungs of a fine-tuning of ``trials`` trials: its schedule is the trials one after
    the other, so that rung ``f`` falls in trial ``floor(f × trials)``, at that trial's step
    ``(f × trials − trial) × steps``. ``on_rung`` gets the best dev score so far."""

    def __init__(self, fractions: tuple[float, ...], on_rung: OnRung, trials: int) -> None:
        self.fractions, self.on_rung, self.trials = fractions, on_rung, trials
        self.next, self.best = 0, -np.inf

    def steps_in(self, trial: int, steps: int) -> frozenset[int]:
        """The steps of trial ``trial`` (``steps`` long) at which a rung falls."""
        ends = (
            (f * self.trials - trial) * steps
            for f in self.fractions[self.next :]
            if trial < f * self.trials <= trial + 1 + 1e-9
        )
        return frozenset(min(steps, max(1, math.ceil(end - 1e-9))) for end in ends)

    def reached(self, position: float, dev_score: float = -np.inf) -> None:
        """The fine-tuning reached ``position`` (a fraction of its schedule) with
        ``dev_score``: report every rung passed (none before a first score)."""
        self.best = max(self.best, dev_score)
        while (
            self.next < len(self.fractions)
            and self.fractions[self.next] <= position + 1e-9
            and self.best > -np.inf
        ):
            self.on_rung(self.next, self.fractions[self.next], float(self.best))
            self.next += 1


def finetune(
    pretrained: str | Path | FlexiBertForMaskedLM,
    task: Task,
    tokenizer: PreTrainedTokenizerBase,
    settings: FinetuneSettings = FinetuneSettings(),
    out: str | Path | None = None,
    device: str = "cpu",
    on_step: OnStep | None = None,
    rungs: Sequence[float] = (),
    on_rung: OnRung | None = None,
) -> FinetuneResult:
    """Tune learning rate and batch size with TPE; keep, score and (optionally) save the best.

    Args:
        pretrained: a directory written by :func:`~edgetran.train.pretrain.pretrain`, or
            such a model in memory.
        out: where to ``save_pretrained`` the best fine-tuned model (and ``finetune.json``).
        device: where to train (``cpu``, ``cuda``, ``cuda:1`` …).
        on_step: called after every optimiser step of every trial with ``(step, steps, loss,
            model)`` (``steps``: the trial's length): progress, or a benchmark's own look at
            the model in training (it must leave the model's weights and mode as it found
            them).
        rungs: increasing fractions of the step schedule (its trials one after the other) at
            which ``on_rung(rung, fidelity, accuracy)`` is told the best dev score so far
            (dev is scored there too; those scores neither choose the state kept nor count
            towards patience, so the result is the one without rungs). A trial that stops
            early reports the rungs left in it with its best score. An exception raised by
            ``on_rung`` (e.g. a pruner's) stops the fine-tuning and propagates as it is.

    Raises:
        TrainingError: every trial diverged, or the rungs are not increasing fractions.
    """
    import optuna

    tracker = _Rungs(check_rungs(rungs), on_rung, settings.trials) if on_rung else None

    began = time.perf_counter()
    mlm = (
        pretrained
        if isinstance(pretrained, FlexiBertForMaskedLM)
        else FlexiBertForMaskedLM.from_pretrained(pretrained)
    )
    train, dev, test = (
        _encode(tokenizer, split.subset(n, settings.seed), settings.max_length)
        for split, n in (
            (task.train, settings.train_examples),
            (task.dev, settings.dev_examples),
            (task.test, settings.test_examples),
        )
    )
    lr_range = learning_rate_range(mlm.config.arch, settings)
    dtype = training_dtype(settings.precision, device)
    best: dict[str, Any] = {"score": -np.inf}

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("learning_rate", *lr_range, log=True)
        batch_size = trial.suggest_categorical("batch_size", list(settings.batch_sizes))
        seq_len = train.mean_batch_width(batch_size, settings.seed, settings.group_by_length)
        steps = trial_steps(mlm.config.arch, settings, batch_size, seq_len)
        seed = settings.seed + trial.number
        rung_steps, scored = frozenset(), None
        if tracker is not None:
            rung_steps = tracker.steps_in(trial.number, steps)

            def scored(done: int, dev_score: float) -> None:
                tracker.reached((trial.number + done / steps) / settings.trials, dev_score)

        with torch_seeded(seed):  # the new pooler and classifier, and dropout
            model = classifier_from_pretrained(mlm, task.num_labels).to(device)
            try:
                dev_score, best_step, trained = _train(
                    model, train, dev, task, lr, batch_size, steps, settings, seed, device,
                    dtype, on_step, rung_steps, scored,
                )  # fmt: skip
            except TrainingError as err:
                trial.set_user_attr("error", str(err))
                _trial_done(tracker, trial.number, settings.trials)
                raise
        _trial_done(tracker, trial.number, settings.trials)
        trial.set_user_attr("steps", steps)
        trial.set_user_attr("best_step", best_step)
        trial.set_user_attr("trained_steps", trained)
        if dev_score > best["score"]:
            best.update(score=dev_score, state=copy.deepcopy(model.state_dict()), model=model)
        return dev_score

    sampler = optuna.samplers.TPESampler(seed=settings.seed)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.enqueue_trial(
        {"learning_rate": float(np.sqrt(np.prod(lr_range))),
         "batch_size": max(settings.batch_sizes)}
    )  # fmt: skip
    # ask and tell rather than optimize: optimize logs every failed trial's traceback, a
    # diverged trial's (recorded in its attributes), a time limit's and Ctrl-C's included
    for _ in range(settings.trials):
        trial = study.ask()
        try:
            study.tell(trial, objective(trial))
        except TrainingError:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not completed:
        reasons = "; ".join(str(t.user_attrs.get("error", "failed")) for t in study.trials)
        raise TrainingError(f"fine-tuning failed in every trial ({reasons})")
    model = best["model"]
    model.load_state_dict(best["state"])
    predictions = predict_split(model, test, task.num_labels, device)
    labels = test.labels.numpy()
    chosen = study.best_trial
    result = FinetuneResult(
        metric=task.metric,
        dev_score=float(study.best_value),
        test_score=score(task.metric, labels, predictions),
        test_std=bootstrap_std(task.metric, labels, predictions, seed=settings.seed),
        test_examples=len(test),
        learning_rate=float(chosen.params["learning_rate"]),
        batch_size=int(chosen.params["batch_size"]),
        steps=int(chosen.user_attrs["steps"]),
        best_step=int(chosen.user_attrs["best_step"]),
        trials=[
            {
                "number": t.number,
                **t.params,
                "dev_score": t.value,
                "state": t.state.name,
                **t.user_attrs,
            }
            for t in study.trials
        ],
        seconds=time.perf_counter() - began,
        precision=str(dtype).removeprefix("torch."),
        settings=asdict(settings),
    )
    if out is not None:
        out = Path(out)
        model.config.id2label = dict(enumerate(task.label_names)) or {0: "score"}
        model.config.label2id = {v: k for k, v in model.config.id2label.items()}
        model.cpu().save_pretrained(out)
        tokenizer.save_pretrained(out)
        (out / RESULT).write_text(json.dumps({**result.to_dict(), "task": task.name}, indent=1))
    return result


def _trial_done(tracker: _Rungs | None, trial: int, trials: int) -> None:
    """A trial ended (at its last step, early or diverged): its rungs are passed."""
    if tracker is not None:
        tracker.reached((trial + 1) / trials)


def training_dtype(precision: str, device: str = "cpu") -> torch.dtype:
    """The dtype of the training steps' matrix products for ``precision`` on ``device``.

    ``auto`` is bfloat16 on a CUDA GPU that has it and float32 on a CPU: even one with
    AVX512-BF16, where bfloat16 took BERT-Mini's step from 102 to 81 ms, the varying widths
    of length-grouped batches made oneDNN rebuild its kernels for a model of many small heads
    (sampled-0: 79 ms in float32, 114-119 ms in bfloat16; BENCHMARKS.md)."""
    check_precision(precision)
    if precision == "auto":
        on_gpu = torch.device(device).type == "cuda" and torch.cuda.is_available()
        # emulated bfloat16 (GPUs before Ampere) is slower than float32
        native = on_gpu and torch.cuda.is_bf16_supported(including_emulation=False)
        return torch.bfloat16 if native else torch.float32
    return torch.bfloat16 if precision == "bfloat16" else torch.float32


def learning_rate_range(arch: Architecture, settings: FinetuneSettings) -> tuple[float, float]:
    """The range TPE searches for ``arch``: ``settings.learning_rate_range``, scaled down for a
    model wider than ``settings.reference_width``."""
    low, high = settings.learning_rate_range
    if settings.reference_width is None:
        return low, high
    scale = min(1.0, settings.reference_width / max(layer.hidden for layer in arch.layers))
    return low * scale, high * scale


def trial_steps(
    arch: Architecture, settings: FinetuneSettings, batch_size: int, seq_len: float
) -> int:
    """Optimiser steps of one trial: ``settings.steps``, or fewer where
    ``settings.flops_budget`` runs out first (a training step costs about three forward
    passes of a ``(batch_size, seq_len)`` batch; ``seq_len``: the batches' mean width), but
    never fewer than ``settings.min_steps``: a large model is not judged on a handful of
    steps (BERT-Small at quick's FLOPs alone: 63 steps, the majority class)."""
    if settings.flops_budget is None:
        return settings.steps
    step_flops = 3 * estimate_costs(arch, batch_size=batch_size, seq_len=round(seq_len)).flops
    by_flops = int(settings.flops_budget // step_flops)
    return max(1, min(settings.steps, max(settings.min_steps, by_flops)))


def predict_split(
    model: FlexiBertForSequenceClassification,
    data: TokenisedTexts,
    num_labels: int,
    device: str = "cpu",
    batch_size: int = 128,
) -> np.ndarray:
    """Class ids (or regression values) that ``model`` predicts for ``data``, shape (N,).

    Rows are batched in order of length, so that each trimmed batch carries little padding
    (on the tweets: 1.7× fewer tokens than batches in split order)."""
    model.eval()
    order = np.argsort(data.lengths, kind="stable")
    outputs = []
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            batch = data.batch(order[start : start + batch_size])
            logits = model(  # (B, labels)
                batch["input_ids"].to(device), batch["attention_mask"].to(device)
            ).logits
            outputs.append((logits.squeeze(-1) if num_labels == 1 else logits.argmax(-1)).cpu())
    model.train()
    predictions = torch.cat(outputs).numpy()
    unsorted = np.empty_like(predictions)
    unsorted[order] = predictions
    return unsorted


def evaluate_split(
    model: FlexiBertForSequenceClassification,
    data: TokenisedTexts,
    metric: str,
    num_labels: int,
    device: str = "cpu",
) -> float:
    """The task metric of ``model`` on ``data``."""
    return score(metric, data.labels.numpy(), predict_split(model, data, num_labels, device))


def _train(model, train: TokenisedTexts, dev: TokenisedTexts, task: Task, lr: float,
           batch_size: int, steps: int, settings: FinetuneSettings, seed: int,
           device: str, dtype: torch.dtype = torch.float32,
           on_step: OnStep | None = None, rung_steps: frozenset[int] = frozenset(),
           scored: Callable[[int, float], None] | None = None
           ) -> tuple[float, int, int]:  # fmt: skip
    """Train ``steps`` steps, scoring dev every ``settings.eval_every``; leave ``model`` in its
    best-scoring state and return ``(dev score, step it was reached at, steps trained)``.
    Dev is also scored at ``rung_steps``, for ``scored(step, dev score)`` only (told every
    score)."""
    # fused AdamW and foreach clipping: one kernel over every tensor instead of a Python loop
    # per tensor, 9-12% of a step on this CPU (BENCHMARKS.md)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=lr, weight_decay=settings.weight_decay, fused=True
    )
    warmup = round(settings.warmup_ratio * steps)
    scheduler = get_linear_schedule_with_warmup(optimizer, warmup, steps)
    every = settings.eval_every or steps
    # the forward pass in ``dtype`` (the backward follows it); weights stay float32
    autocast = torch.autocast(
        torch.device(device).type, dtype=dtype, enabled=dtype != torch.float32
    )
    best_score, best_step, best_state, stale = -np.inf, 0, None, 0
    model.train()
    for step in range(steps):
        batch = train.batch(train.rows(step, batch_size, seed, settings.group_by_length))
        with autocast:
            loss = model(**{k: v.to(device) for k, v in batch.items()}).loss
        if not torch.isfinite(loss):
            raise TrainingError(
                f"fine-tuning diverged at step {step + 1} (loss {loss.item()}, learning rate "
                f"{lr:.3g})"
            )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=True)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        done = step + 1
        if on_step is not None:
            on_step(done, steps, loss.item(), model)
        scheduled = not done % every or done == steps
        if not scheduled and done not in rung_steps:
            continue
        dev_score = evaluate_split(model, dev, task.metric, task.num_labels, device)
        if scored is not None:
            scored(done, dev_score)
        if not scheduled:  # a rung's score: the training goes on as it would without it
            continue
        if dev_score > best_score:
            best_score, best_step, stale = dev_score, done, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
            if settings.patience is not None and stale >= settings.patience:
                break
    model.load_state_dict(best_state)
    return float(best_score), best_step, done


def _encode(tokenizer, split, max_length: int) -> TokenisedTexts:
    return TokenisedTexts(tokenizer, split.texts, max_length, split.pairs, split.labels)
