"""The accuracy oracle: pretrain (from the nearest trained neighbour), fine-tune, score.

:func:`evaluate` is what the co-search calls; :func:`evaluate_job` is the same with JSON-ready
inputs and outputs, for remote workers. Results are stored in the workspace database and
reused: the same architecture, task, budget and seed are never trained twice (a task is its
content, :func:`~edgetran.train.tasks.task_key`: an edited file is another task). Checkpoints
live in the workspace folder, so an interrupted evaluation resumes its pretraining.

Budgets are named presets of steps and trials (README, "Accuracy"); ``quick`` is sized for one to
three minutes on two CPU cores for models up to BERT-Mini.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from edgetran.cores import choose_threads, torch_threads
from edgetran.space import REFERENCE_SPACE, Architecture, Layer
from edgetran.space.costs import check_parameter_memory
from edgetran.store import Store
from edgetran.train.finetune import RESULT, FinetuneSettings, OnRung, OnStep, check_rungs, finetune
from edgetran.train.pretrain import (
    CHECKPOINT,
    PretrainResult,
    PretrainSettings,
    TrainingError,
    initial_model,
    max_positions,
    pretrain,
)
from edgetran.train.remote import TrainingCluster, train_on_cluster
from edgetran.train.tasks import GLUE_TASKS, Task, TaskOptions, load_task, task_key
from edgetran.train.tokenizer import load_tokenizer

DEFAULT_WORKSPACE = "edgetran-workspace"


@dataclass(frozen=True)
class Budget:
    """A named amount of training.

    ``pretrain_steps`` MLM steps (0: none — the model starts from the nearest trained model in
    the workspace, or from scratch), then ``trials`` TPE trials, each of at most
    ``finetune_steps`` steps and ``finetune_flops`` training FLOPs (but at least
    ``min_finetune_steps``), scored on dev every
    ``eval_every`` steps (early stopping after ``patience`` scores without gain; ``None``:
    none, the best state of the whole trial is kept).
    Learning rates are for a model ``reference_width`` wide and scaled down for wider ones
    (:func:`~edgetran.train.finetune.learning_rate_range`). With ``word_vectors``, a model
    that starts from scratch takes its word embeddings from the task's training text
    (:mod:`edgetran.train.word_vectors`). ``max_training_bytes`` bounds the
    training memory of the weights, their gradients and Adam's two moments (16 bytes per
    parameter); ``None``: this machine's memory. ``precision`` is the fine-tuning steps'
    (:data:`~edgetran.train.finetune.PRECISIONS`).
    """

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
    finetune_flops: float | None = None
    eval_every: int | None = None
    patience: int | None = 2
    max_training_bytes: int | None = None
    reference_width: int | None = None
    group_by_length: bool = False
    min_finetune_steps: int = 1
    word_vectors: bool = False
    precision: str = "float32"


GIB = 2**30
#: ``quick`` (a few minutes on two CPU cores up to BERT-Mini) and ``standard`` (about ten minutes
#: for BERT-Mini) fine-tune from the nearest trained model (a parent, see :func:`train_parent`) or
#: from scratch, on the same training FLOPs for every model; they spend no MLM steps: a few hundred
#: from a weak start left BERT-Mini worse than none (BENCHMARKS.md). ``quick``'s FLOPs are a
#: quarter of ``standard``'s, so that it gives every model a quarter to a half of the examples
#: ``standard`` gives it: at an eighth, the models the cap held back most (BERT-Mini's size)
#: trailed their ``standard`` accuracy by 0.055–0.079 and the small ones by at most 0.017, and
#: quick ranked the eight unlike standard (Spearman 0.31 against standard's two-seed mean; 0.52 at
#: a quarter, seeds 0 and 1). ``quick`` takes batches of 16, twice the steps of batches of 32 on
#: the same examples and FLOPs, as a wide model trained from scratch needs updates more than
#: examples to take off; such a model starts ``quick`` with word vectors from the task's text
#: (:mod:`edgetran.train.word_vectors`), +0.02 accuracy on average over eight models, hetero-a
#: +0.08 (BENCHMARKS.md). Both train every model at least 1,000 steps, whatever its FLOPs: a model
#: the cap held to fewer was still taking off when it ended, and its seed decided how far it got
#: (sampled-1 at 635 quick steps scored 0.718 and 0.657 at two seeds, at 1,000 0.733, 0.733 and
#: 0.721; BERT-Small at 509 standard steps 0.731, at 1,000 0.758). Standard's floor is quick's
#: in batches twice as large, so at the floor quick sees half of standard's examples. Quick does
#: not stop early: two scores without a gain on 1,000 dev tweets are noise more often than a
#: plateau, and the one run of 24 that stopped (sampled-0, seed 1, at 1,250 steps) scored 0.738
#: where running on to its 2,200 steps gave 0.758 (its other seeds 0.760, 0.757). Quick keeps
#: dropout and float32 steps: without dropout hetero-a collapsed to 0.612 at seed 1, and bfloat16
#: steps, 1.6x faster for BERT-Mini, were 1.5x slower for models of many small heads on
#: batches of every width (BENCHMARKS.md). ``full`` is the reference's scale (GPU), where
#: ``precision="auto"`` takes bfloat16. Tweets are at most ~70 tokens, so 64 keeps all but the
#: longest whole; batches are grouped by length and trimmed to their longest row.
BUDGETS = {
    "quick": Budget(
        0, 32, 64, 1, 2200, (16,), 1000, None, 5e-4, (5e-4, 2e-3),
        finetune_flops=1e13, eval_every=250, patience=None, max_training_bytes=1 * GIB,
        reference_width=128, group_by_length=True, min_finetune_steps=1000, word_vectors=True,
    ),
    "standard": Budget(
        0, 32, 64, 1, 2500, (32,), 2000, None, 5e-4, (5e-4, 2e-3),
        finetune_flops=4e13, eval_every=250, patience=3, max_training_bytes=4 * GIB,
        reference_width=128, group_by_length=True, min_finetune_steps=1000,
    ),
    "full": Budget(
        100_000, 64, 128, 10, 5000, (16, 32, 64), None, None, 1e-4, (2e-5, 5e-4),
        eval_every=500, patience=4, precision="auto",
    ),
}  # fmt: skip
BYTES_PER_TRAINED_PARAMETER = 16


def check_budget(name: str) -> Budget:
    """The budget named ``name``; an unknown name is an error naming the allowed ones."""
    if name not in BUDGETS:
        raise TrainingError(f"budget {name!r} is unknown; allowed: {', '.join(BUDGETS)}")
    return BUDGETS[name]


def budget_positions(name: str) -> int:
    """The longest input (tokens) a model trained at budget ``name`` takes."""
    return max_positions(check_budget(name).max_length)


def budget_settings(name: str, seed: int = 0) -> tuple[PretrainSettings, FinetuneSettings]:
    """The pretraining and fine-tuning settings of budget ``name``."""
    b = check_budget(name)
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
            flops_budget=b.finetune_flops,
            eval_every=b.eval_every,
            patience=b.patience,
            reference_width=b.reference_width,
            group_by_length=b.group_by_length,
            min_steps=b.min_finetune_steps,
            precision=b.precision,
            seed=seed,
        ),
    )


def check_training_memory(arch: Architecture, budget: str) -> int:
    """Refuse, before anything is built, an architecture whose training state would not fit
    the budget's memory (or this machine's); returns the estimate in bytes."""
    limit = check_budget(budget).max_training_bytes
    return check_parameter_memory(
        arch, bytes_per_element=BYTES_PER_TRAINED_PARAMETER, available_bytes=limit,
        limit_name="this machine has" if limit is None else f"the {budget} budget allows",
    )  # fmt: skip


def check_training_device(device: str) -> str:
    """``device`` if torch can train there (``auto``: the GPU when there is one, else the
    CPU), else a :class:`TrainingError` naming the choices."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if device == "cuda" or device.startswith("cuda:"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = device[5:]  # "" or the digits after "cuda:"
        if (index == "" and count) or (index.isdigit() and int(index) < count):
            return device
        allowed = ", ".join(["cpu", *(f"cuda:{i}" for i in range(count))])
        raise TrainingError(f"device {device!r} is not available here; allowed: {allowed}")
    raise TrainingError(f"device {device!r} is invalid; allowed: auto, cpu, cuda or cuda:N")


#: The default parent: four layers as wide as the CPU-sized space (``edgetran demo``'s), every
#: head operation in each, two feed-forward layers of its widest width, so that weight transfer
#: reaches every head type and size a model of that space can have.
PARENT_OPS = ("sa_sdp", "sa_sdp", "sa_wma", "l_dft", "l_dct", "c_5", "c_9", "c_13")
PARENT_ARCHITECTURE = Architecture(
    tuple(Layer(256, PARENT_OPS, 64, (1024, 1024)) for _ in range(4))
)
#: MLM steps of a parent per budget (batch 32 × 64 tokens; the tweets' training split is ~30k).
PARENT_STEPS = {"quick": 400, "standard": 2000, "full": 20_000}


def parent_settings(budget: str, seed: int = 0) -> PretrainSettings:
    """MLM settings of a parent at ``budget``."""
    if budget not in PARENT_STEPS:
        raise TrainingError(f"budget {budget!r} is unknown; allowed: {', '.join(PARENT_STEPS)}")
    steps = PARENT_STEPS[budget]
    return PretrainSettings(
        steps=steps, batch_size=32, max_length=64, learning_rate=5e-4,
        checkpoint_every=max(1, steps // 40), seed=seed,
    )  # fmt: skip


def train_parent(
    task: str | Task,
    budget: str = "standard",
    arch: Architecture | None = None,
    *,
    store: Store,
    workspace: str | Path = DEFAULT_WORKSPACE,
    seed: int = 0,
    tokenizer: str | None = None,
    task_options: TaskOptions | None = None,
    on_step=None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Pretrain a parent once per workspace and tokenizer (MLM on the task's training text,
    from scratch) and register it, so that every later evaluation starts from it, or from a
    nearer trained model, by weight transfer (reference §5, §7). An interrupted run resumes
    from its last checkpoint; a finished one is returned as it is.

    Returns a JSON-ready dict: ``hash``, ``model_dict``, ``path``, ``steps``, ``loss``,
    ``seconds`` (of training, over all attempts), ``tokenizer``, ``budget``, ``resumed``.
    """
    arch = arch or PARENT_ARCHITECTURE
    settings = parent_settings(budget, seed)
    check_training_memory(arch, "full")
    device = check_training_device(device)
    task = load_task(task, task_options) if isinstance(task, str) else task
    workspace = Path(workspace)
    tok, tokenizer_id = load_tokenizer(tokenizer, task.corpus(), workspace / "tokenizers")
    out = workspace / "parents" / _run_name(arch, tokenizer_id, budget, seed)
    resumed = (out / CHECKPOINT).is_file()
    result = pretrain(
        arch, task.corpus(), tok, tokenizer_id, out, settings, on_step=on_step, device=device
    )
    store.add_trained_model(
        arch.to_dict(), arch.hash, tokenizer=tokenizer_id, path=str(out),
        steps=result.steps, loss=result.loss,
    )  # fmt: skip
    return {
        "hash": arch.hash,
        "model_dict": arch.to_dict(),
        "path": str(out),
        "steps": result.steps,
        "loss": result.loss,
        "seconds": result.seconds,
        "tokenizer": tokenizer_id,
        "budget": budget,
        "resumed": resumed,
    }


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
    device: str = "cpu",
) -> PretrainResult:
    """Pretrain from the nearest registered neighbour (if ``transfer``) and register the
    result, so that later models can start from it (a zero-step run is not registered: it
    holds nothing its source does not)."""
    source = nearest_trained(arch, store, tokenizer_id, exclude_path=str(out))
    result = pretrain(
        arch, texts, tokenizer, tokenizer_id, out, settings,
        init_from=source["path"] if transfer and source else None, on_step=on_step,
        device=device,
    )  # fmt: skip
    if result.steps:
        store.add_trained_model(
            arch.to_dict(), arch.hash, tokenizer=tokenizer_id, path=str(out),
            steps=result.steps, loss=result.loss,
        )  # fmt: skip
    return result


def model_dir(
    workspace: Path, arch: Architecture, tokenizer_id: str, budget: str, seed: int = 0
) -> Path:
    """Where the oracle trains ``arch`` at ``budget`` and ``seed`` (its ``pretrain``
    checkpoint inside)."""
    return Path(workspace) / "models" / _run_name(arch, tokenizer_id, budget, seed)


def _classifier_dir(workspace: str | Path, arch: Architecture, key: str, budget: str, seed: int):
    """Where :func:`evaluate` keeps a fine-tuned classifier (``keep_model``) of the evaluation
    stored under ``key`` (:func:`evaluation_key`)."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:8]
    return Path(workspace) / "classifiers" / f"{arch.hash[:16]}-{digest}-{budget}-s{seed}"


def _run_name(arch: Architecture, tokenizer_id: str, budget: str, seed: int) -> str:
    """A training run's folder name: architecture, tokenizer, budget (and seed when not 0).

    A trained WordPiece's id ends in the key of the text it learnt, which names the folder;
    any other id (a Hugging Face tokenizer's carries that key after its name) is digested
    whole, so that runs on two texts never share a folder."""
    kind, _, tag = tokenizer_id.partition(":")
    if kind != "wordpiece":
        tag = hashlib.sha256(tokenizer_id.encode()).hexdigest()
    name = f"{arch.hash[:16]}-{tag[:16]}-{budget}"
    return f"{name}-s{seed}" if seed else name


def evaluation_key(task: str, tokenizer: str | None = None) -> str:
    """What an evaluation is stored under: the task's key (:func:`~edgetran.train.tasks.task_key`,
    its content) and the tokenizer asked for (none: WordPiece trained on the task)."""
    return task if tokenizer is None else f"{task}|tokenizer={tokenizer}"


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
    device: str = "cpu",
    keep_model: bool = False,
    cluster: TrainingCluster | None = None,
    rungs: Sequence[float] = (),
    on_rung: OnRung | None = None,
) -> dict[str, Any]:
    """Accuracy of ``arch`` on ``task`` after ``budget`` training (cached in ``store`` under the
    task's content, :func:`evaluation_key`: an edited file or other columns train again).

    The model starts from the nearest trained model of the workspace (a parent from
    :func:`train_parent`, or an earlier evaluation's pretraining) when ``transfer``.
    ``keep_model`` saves the fine-tuned classifier in the workspace (``model`` in the result;
    :func:`kept_classifier` finds it again), e.g. for a final model chosen later. With
    ``cluster`` (e.g. :class:`edgetran.cluster.Cluster`), the training runs on its training
    worker (:func:`edgetran.train.remote.train_on_cluster`; ``device`` is the worker's, and
    ``"auto"`` picks its GPU when it has one) and the result is stored here.

    ``rungs`` and ``on_rung`` go to :func:`~edgetran.train.finetune.finetune` (dev accuracy at
    fractions of the fine-tuning's schedule, for a pruner). An exception ``on_rung`` raises
    stops the training and propagates as it is: nothing is stored, and the next call trains
    that evaluation again from its start. A cached result is returned without rungs.

    Returns a JSON-ready dict: ``accuracy`` (the task metric on ``test_examples`` test
    examples, a fraction), ``accuracy_std`` (its bootstrap standard deviation over those
    examples: ``accuracy_std_source`` says so), ``metric``, ``pretrain_loss``,
    ``train_seconds``, ``transferred_from``, ``transferred_share`` and more.

    Raises:
        TrainingError: unknown budget or device, training diverged in every trial, or rungs
            asked of a training on a cluster or of ``glue/all``.
        ModelTooLargeError: the architecture's training state exceeds the budget's memory.
    """
    name = task if isinstance(task, str) else task.name
    if on_rung is not None:
        check_rungs(rungs)
        check_rungs_local(name, cluster)
    if name == "glue/all":
        return _evaluate_glue(
            arch, budget, store, workspace, seed, tokenizer, transfer, device, cluster
        )
    check_budget(budget)
    check_training_memory(arch, budget)
    if cluster is None:  # a worker checks its own device
        device = check_training_device(device)
    key = task_key(task, task_options)
    stored_as = evaluation_key(key, tokenizer)
    cached = store.evaluation(arch.hash, task=stored_as, budget=budget, seed=seed)
    if cached is not None and _still_valid(cached, arch, budget, store, transfer):
        return {**cached, "cached": True}
    out = None
    if keep_model:
        out = _classifier_dir(workspace, arch, stored_as, budget, seed).resolve()
    if cluster is not None:
        if not isinstance(task, str):
            raise TrainingError(
                "training on a cluster takes a task by name or file path, not a Task object"
            )
        result = train_on_cluster(
            cluster, arch, name, budget, store=store, workspace=workspace, seed=seed,
            device=device, out=out, tokenizer=tokenizer, transfer=transfer,
            task_options=task_options,
        )  # fmt: skip
    else:
        result = train_classifier(
            arch, task, budget, store=store, workspace=workspace, seed=seed,
            tokenizer=tokenizer, transfer=transfer, task_options=task_options, device=device,
            out=out, rungs=rungs, on_rung=on_rung,
        )  # fmt: skip
    # stored under the key of the data the training read: the file may have changed since,
    # and a cluster's worker reads the file at that path on its own machine
    stored_as = evaluation_key(result.get("task_key", key), tokenizer)
    store.add_evaluation(
        arch.to_dict(), arch.hash, task=stored_as, budget=budget, seed=seed, result=result
    )
    return {**result, "cached": False}


def check_rungs_local(task: str, cluster: TrainingCluster | None) -> None:
    """Refuse rungs where :func:`evaluate` cannot report them: a cluster's worker (the
    callback cannot cross processes) or ``glue/all`` (eight trainings, not one schedule)."""
    if cluster is not None:
        raise TrainingError(
            "pruning needs the training in this process: its rung callbacks cannot reach a "
            "cluster's workers (use --pruner none with a cluster)"
        )
    if task == "glue/all":
        raise TrainingError(
            "pruning is not supported for glue/all (eight trainings); "
            "use --pruner none or one GLUE task"
        )


def train_classifier(
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
    device: str = "cpu",
    out: str | Path | None = None,
    on_step: OnStep | None = None,
    threads: int | None = None,
    rungs: Sequence[float] = (),
    on_rung: OnRung | None = None,
) -> dict[str, Any]:
    """Train ``arch`` at ``budget`` as :func:`evaluate` does, without its cache, saving the
    best classifier and the tokenizer in ``out`` when given (e.g. a final model to export);
    ``on_step``, ``rungs`` and ``on_rung`` go to :func:`~edgetran.train.finetune.finetune`.
    Returns :func:`evaluate`'s
    result (without ``cached``).

    torch's intra-op ``threads`` default to ``OMP_NUM_THREADS`` when set, else to the cores
    other processes leave free when the training starts (:func:`edgetran.cores.choose_threads`:
    beside one busy process, a quick training took 253 s on every core and 25 s on the one left
    free); the result records them (``threads``, ``threads_from``). The thread count changes
    the numerics: a seed repeats its accuracy at the same count."""
    count, chosen_from = choose_threads(threads)
    with torch_threads(count):
        result = _train_classifier(
            arch, task, budget, store=store, workspace=workspace, seed=seed,
            tokenizer=tokenizer, transfer=transfer, task_options=task_options, device=device,
            out=out, on_step=on_step, rungs=rungs, on_rung=on_rung,
        )  # fmt: skip
    return {**result, "threads": count, "threads_from": chosen_from}


def _train_classifier(
    arch: Architecture,
    task: str | Task,
    budget: str,
    *,
    store: Store,
    workspace: str | Path,
    seed: int,
    tokenizer: str | None,
    transfer: bool,
    task_options: TaskOptions | None,
    device: str,
    out: str | Path | None,
    on_step: OnStep | None,
    rungs: Sequence[float] = (),
    on_rung: OnRung | None = None,
) -> dict[str, Any]:
    pre_settings, fine_settings = budget_settings(budget, seed)
    check_training_memory(arch, budget)
    device = check_training_device(device)
    workspace = Path(workspace)
    name = task if isinstance(task, str) else task.name
    began, began_cpu = time.perf_counter(), time.process_time()
    task = load_task(task, task_options) if isinstance(task, str) else task
    tok, tokenizer_id = load_tokenizer(tokenizer, task.corpus(), workspace / "tokenizers")
    pretrained = model_dir(workspace, arch, tokenizer_id, budget, seed) / "pretrain"
    from_vectors = False
    if pre_settings.steps:
        texts = task.train.subset(pre_settings.steps * pre_settings.batch_size, seed).texts
        pre = pretrain_in_workspace(
            arch, texts, tok, tokenizer_id, pretrained, pre_settings, store, transfer,
            device=device,
        )  # fmt: skip
        start, loss, source, share = (
            pretrained,
            pre.loss,
            pre.transferred_from,
            pre.transferred_share,
        )
    else:
        neighbour = nearest_trained(arch, store, tokenizer_id) if transfer else None
        start, source, share = initial_model(
            arch, tok, pre_settings.max_length, neighbour and neighbour["path"], seed
        )
        loss = None
        from_vectors = source is None and BUDGETS[budget].word_vectors
        if from_vectors:
            start_from_word_vectors(start, tok, task, workspace, pre_settings.max_length)
    fine = finetune(
        start, task, tok, fine_settings, out=out, device=device, on_step=on_step, rungs=rungs,
        on_rung=on_rung,
    )  # fmt: skip
    result = {
        "hash": arch.hash,
        "task": name,
        "task_key": task_key(task),
        "budget": budget,
        "seed": seed,
        "accuracy": fine.test_score,
        "accuracy_std": fine.test_std,
        "accuracy_std_source": "bootstrap of the test examples",
        "test_examples": fine.test_examples,
        "metric": fine.metric,
        "dev_score": fine.dev_score,
        "pretrain_loss": loss,
        "pretrain_steps": pre_settings.steps,
        "finetune_steps": fine.steps,
        "best_step": fine.best_step,
        "train_seconds": time.perf_counter() - began,
        # CPU time of this process over all its threads: with the wall time, it shows whether
        # other work on the machine slowed the evaluation down
        "train_cpu_seconds": time.process_time() - began_cpu,
        "transferred_from": source,
        "transferred_share": share,
        "word_vectors": from_vectors,
        "learning_rate": fine.learning_rate,
        "batch_size": fine.batch_size,
        "precision": fine.precision,
        "tokenizer": tokenizer_id,
        "device": device,
        "budget_settings": _jsonable(asdict(BUDGETS[budget])),
    }
    return result if out is None else {**result, "model": str(out)}


def start_from_word_vectors(
    model, tokenizer, task: Task, workspace: Path, max_length: int
) -> None:
    """Give ``model`` (fresh, from scratch) word embeddings from the co-occurrences in
    ``task``'s training text, computed once per workspace (:mod:`edgetran.train.word_vectors`)."""
    from edgetran.train.word_vectors import set_word_embeddings, task_word_vectors

    vectors, seen = task_word_vectors(
        tokenizer, task.corpus(), workspace / "word-vectors", max_length
    )
    embeddings = model.get_input_embeddings()
    set_word_embeddings(embeddings, vectors, seen, model.config.initializer_range)


def kept_classifier(
    arch: Architecture,
    task: str,
    budget: str,
    *,
    store: Store,
    seed: int = 0,
    task_options: TaskOptions | None = None,
    tokenizer: str | None = None,
) -> dict[str, Any] | None:
    """The stored evaluation of ``arch`` on ``task`` (as it reads now) at ``budget`` and
    ``seed`` whose classifier was kept (:func:`evaluate`'s ``keep_model``) and is still on disk
    and valid; ``None`` otherwise."""
    key = evaluation_key(task_key(task, task_options), tokenizer)
    cached = store.evaluation(arch.hash, task=key, budget=budget, seed=seed)
    if cached is None or not cached.get("model"):
        return None
    if not (Path(cached["model"]) / RESULT).is_file():  # written last: the folder is whole
        return None
    return cached if _still_valid(cached, arch, budget, store, transfer=True) else None


def _still_valid(cached: dict, arch, budget: str, store: Store, transfer: bool) -> bool:
    """A stored result is reused when it was made with today's budget and, for a budget
    without MLM steps, from the model it would start from now (a parent trained since then
    makes it stale)."""
    if not _same_budget(cached.get("budget_settings"), BUDGETS[budget]):
        return False
    if BUDGETS[budget].pretrain_steps or "tokenizer" not in cached:
        return True
    neighbour = nearest_trained(arch, store, cached["tokenizer"]) if transfer else None
    now = Architecture.from_dict(neighbour["model_dict"]).hash if neighbour else None
    return cached.get("transferred_from") == now


def _same_budget(stored: dict | None, budget: Budget) -> bool:
    """Whether a result stored with budget settings ``stored`` was trained as ``budget`` trains
    now. A field added to :class:`Budget` since, at its default, changes nothing: an old
    result need not be trained again for it."""
    if stored is None:
        return False
    defaults = {f.name: _jsonable(f.default) for f in fields(Budget) if f.default is not MISSING}
    now = _jsonable(asdict(budget))
    return set(stored) <= set(now) and all(
        stored[name] == value if name in stored else defaults.get(name, MISSING) == value
        for name, value in now.items()
    )


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _evaluate_glue(
    arch, budget, store, workspace, seed, tokenizer, transfer, device, cluster=None
) -> dict[str, Any]:
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
            device=device,
            cluster=cluster,
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
