"""``edgetran train pretrain|finetune`` and ``edgetran evaluate`` (the accuracy oracle)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from edgetran.cli import cluster_cmds
from edgetran.cli._common import (
    DbOption,
    Force,
    JsonOption,
    SeedOption,
    database_name,
    fail,
    on_interrupt,
    option_groups,
    print_json,
    quiet_optuna,
    resolve_arch,
)

if TYPE_CHECKING:
    from edgetran.cluster import ClusterOptions
    from edgetran.train import TaskOptions

app = typer.Typer(help="Pretrain and fine-tune FlexiBERT models.", no_args_is_help=True)

Arch = Annotated[str, typer.Option("--arch", help="Architecture: a name or a JSON file.")]
TaskName = Annotated[
    str,
    typer.Option("--task", help="tweet-sentiment, glue/<task>, glue/all, or a CSV/JSONL file."),
]
Out = Annotated[Path, typer.Option("--out", help="Output directory.")]
Workspace = Annotated[
    Path | None,
    typer.Option(
        "--workspace", help="Folder for tokenizers and checkpoints (default: edgetran-workspace)."
    ),
]
Tokenizer = Annotated[
    str | None,
    typer.Option(
        help="Local Hugging Face tokenizer name or path (default: WordPiece trained here)."
    ),
]
Transfer = Annotated[
    bool, typer.Option(help="Start from the nearest trained model in the workspace.")
]
TextColumn = Annotated[str, typer.Option(help="File tasks: text column.")]
PairColumn = Annotated[str | None, typer.Option(help="File tasks: text-pair column.")]
LabelColumn = Annotated[str, typer.Option(help="File tasks: label column.")]
Labels = Annotated[
    str | None, typer.Option(help="File tasks: allowed labels, comma-separated, in class order.")
]
Device = Annotated[
    str,
    typer.Option(
        "--device", help="Where to train: cpu, cuda, cuda:N or auto (the GPU when there is one)."
    ),
]


def task_options(
    text_column: TextColumn = "text",
    text_pair_column: PairColumn = None,
    label_column: LabelColumn = "label",
    labels: Labels = None,
    seed: SeedOption = 0,
) -> TaskOptions:
    """The options of a file task (its columns and labels), declared once for every command
    that trains; ``seed`` is the command's own, and splits the file."""
    from edgetran.train import TaskOptions

    return TaskOptions(
        text_column=text_column,
        text_pair_column=text_pair_column,
        label_column=label_column,
        labels=tuple(x.strip() for x in labels.split(",")) if labels else (),
        split_seed=seed,
    )


@app.command()
@option_groups(options=task_options)
def pretrain(
    arch: Arch,
    task: TaskName,
    out: Out,
    steps: Annotated[int, typer.Option(min=1, help="Optimiser steps.")] = 100,
    batch_size: Annotated[int, typer.Option(min=1, help="Sequences per step.")] = 32,
    max_length: Annotated[int, typer.Option(min=8, help="Tokens per sequence.")] = 64,
    learning_rate: Annotated[float, typer.Option(min=0, help="Peak learning rate.")] = 5e-4,
    checkpoint_every: Annotated[int, typer.Option(min=1, help="Checkpoint period.")] = 50,
    transfer: Transfer = True,
    tokenizer: Tokenizer = None,
    *,
    options: TaskOptions,
    seed: SeedOption = 0,
    db: DbOption = None,
    workspace: Workspace = None,
    force: Force = False,
    as_json: JsonOption = False,
) -> None:
    """Masked-language-model pretraining on the task's text (resumes in the same --out)."""
    from rich.console import Console
    from rich.progress import Progress

    from edgetran.errors import prepare_output_dir
    from edgetran.store import Store
    from edgetran.train import DEFAULT_WORKSPACE, PretrainSettings, TrainingError, load_task
    from edgetran.train.oracle import pretrain_in_workspace
    from edgetran.train.pretrain import holds_pretraining
    from edgetran.train.tokenizer import load_tokenizer

    # a folder holding a pretraining is where it resumes; any other files are refused
    prepare_output_dir(out, TrainingError, empty=not (force or holds_pretraining(out)))
    workspace = workspace or Path(DEFAULT_WORKSPACE)
    architecture = resolve_arch(arch)
    loaded = load_task(task, options)
    settings = PretrainSettings(
        steps=steps,
        batch_size=batch_size,
        max_length=max_length,
        learning_rate=learning_rate,
        checkpoint_every=checkpoint_every,
        seed=seed,
    )
    tok, tokenizer_id = load_tokenizer(tokenizer, loaded.corpus(), workspace / "tokenizers")
    with (
        on_interrupt(f"the checkpoints are in {out}; run the same command again to continue"),
        Store(db) as store,
        Progress(console=Console(stderr=True), disable=not sys.stderr.isatty()) as bar,
    ):
        job = bar.add_task("pretraining", total=steps)
        result = pretrain_in_workspace(
            architecture, loaded.corpus(), tok, tokenizer_id, out, settings, store, transfer,
            on_step=lambda step, _loss: bar.update(job, completed=step),
        )  # fmt: skip
    report = {k: v for k, v in result.to_dict().items() if k != "losses"}
    if as_json:
        print_json({**report, "out": str(out)})
    else:
        typer.echo(
            f"pretrained {architecture.hash[:12]} for {result.steps} steps: loss "
            f"{result.loss:.3f} ({result.seconds:.0f} s"
            + (f", from {result.transferred_from[:12]})" if result.transferred_from else ")")
        )


@app.command()
@option_groups(options=task_options)
def parent(
    task: TaskName,
    budget: Annotated[
        str, typer.Option(help="MLM steps: quick (400), standard (2000) or full (20000).")
    ] = "standard",
    arch: Annotated[
        str | None,
        typer.Option(
            "--arch", help="The parent: a name or a JSON file (default: 4 × 256, every op)."
        ),
    ] = None,
    tokenizer: Tokenizer = None,
    *,
    options: TaskOptions,
    seed: SeedOption = 0,
    device: Device = "cpu",
    db: DbOption = None,
    workspace: Workspace = None,
    as_json: JsonOption = False,
) -> None:
    """Pretrain a parent once per workspace; later evaluations start from it (resumable)."""
    from rich.console import Console
    from rich.progress import Progress

    from edgetran.store import Store
    from edgetran.train import DEFAULT_WORKSPACE, train_parent
    from edgetran.train.oracle import parent_settings

    steps = parent_settings(budget).steps
    architecture = resolve_arch(arch) if arch else None
    workspace = workspace or Path(DEFAULT_WORKSPACE)
    kept = f"the checkpoints are in {workspace}; run the same command again to continue"
    with (
        on_interrupt(kept),
        Store(db) as store,
        Progress(console=Console(stderr=True), disable=not sys.stderr.isatty()) as bar,
    ):
        job = bar.add_task("pretraining the parent", total=steps)
        result = train_parent(
            task, budget, architecture, store=store, seed=seed, tokenizer=tokenizer,
            workspace=workspace, task_options=options,
            on_step=lambda step, _loss: bar.update(job, completed=step), device=device,
        )  # fmt: skip
    if as_json:
        print_json(result)
    else:
        typer.echo(
            f"parent {result['hash'][:12]}: {result['steps']} MLM steps, loss "
            f"{result['loss']:.3f} ({result['seconds']:.0f} s) in {result['path']}"
        )


@app.command()
@option_groups(options=task_options)
def finetune(
    model: Annotated[Path, typer.Option("--model", help="A pretrained model directory.")],
    task: TaskName,
    out: Out,
    trials: Annotated[int, typer.Option(min=1, help="Optuna TPE trials.")] = 5,
    steps: Annotated[int, typer.Option(min=1, help="Optimiser steps per trial.")] = 200,
    batch_sizes: Annotated[str, typer.Option(help="Batch sizes TPE chooses from.")] = "16,32",
    min_lr: Annotated[float, typer.Option(min=0, help="Lowest learning rate.")] = 2e-5,
    max_lr: Annotated[float, typer.Option(min=0, help="Highest learning rate.")] = 5e-4,
    max_length: Annotated[int, typer.Option(min=8, help="Tokens per sequence.")] = 64,
    *,
    options: TaskOptions,
    seed: SeedOption = 0,
    force: Force = False,
    as_json: JsonOption = False,
) -> None:
    """Fine-tune with TPE over learning rate and batch size; save and test the best."""
    from transformers import AutoTokenizer

    from edgetran.errors import prepare_output_dir
    from edgetran.train import FinetuneSettings, TrainingError, finetune, load_task

    quiet_optuna()

    if not (model / "config.json").is_file():
        fail(f"{model}: not a saved model directory (no config.json)")
    try:
        sizes = tuple(int(x) for x in batch_sizes.split(","))
    except ValueError:
        fail(f"--batch-sizes {batch_sizes!r}: expected comma-separated integers")
    prepare_output_dir(out, TrainingError, empty=not force)
    loaded = load_task(task, options)
    settings = FinetuneSettings(
        trials=trials,
        steps=steps,
        batch_sizes=sizes,
        learning_rate_range=(min_lr, max_lr),
        max_length=max_length,
        seed=seed,
    )
    tok = AutoTokenizer.from_pretrained(model, local_files_only=True)
    result = finetune(model, loaded, tok, settings, out)
    if as_json:
        print_json({**result.to_dict(), "task": loaded.name, "out": str(out)})
    else:
        typer.echo(
            f"{loaded.name}: test {result.metric} {result.test_score:.4f} (dev "
            f"{result.dev_score:.4f}; lr {result.learning_rate:.2g}, batch {result.batch_size})"
        )


@option_groups(options=task_options, lab=cluster_cmds.lab_options)
def evaluate(
    arch: Arch,
    task: TaskName,
    budget: Annotated[str, typer.Option(help="quick, standard or full (see README).")] = "quick",
    transfer: Transfer = True,
    tokenizer: Tokenizer = None,
    *,
    options: TaskOptions,
    seed: SeedOption = 0,
    device: Annotated[
        str | None,
        typer.Option(
            "--device",
            help="Where to train: cpu, cuda, cuda:N or auto (default: cpu; with --scheduler, "
            "auto: the worker's GPU when it has one).",
        ),
    ] = None,
    db: DbOption = None,
    workspace: Workspace = None,
    as_json: JsonOption = False,
    lab: ClusterOptions | None,
) -> None:
    """Accuracy of an architecture on a task after a training budget (stored and reused).

    With --scheduler, the training runs on a training worker (a GPU worker when there is one;
    --device is the worker's) and the result is stored here; the workspace folder must be the
    same path on the workers (a shared folder)."""
    from edgetran.store import Store
    from edgetran.train import BUDGETS, DEFAULT_WORKSPACE
    from edgetran.train import evaluate as evaluate_accuracy

    quiet_optuna()
    if budget not in BUDGETS:
        fail(f"--budget {budget!r} is invalid; allowed: {', '.join(BUDGETS)}")
    architecture = resolve_arch(arch)
    device = device or ("auto" if lab else "cpu")
    workspace = workspace or Path(DEFAULT_WORKSPACE)
    kept = (
        f"an evaluation is stored in {database_name(db)} once finished; the tokenizer and "
        f"checkpoints made so far stay in {workspace}; run the same command again to continue"
    )
    with on_interrupt(kept), Store(db) as store, cluster_cmds.cluster_session(lab) as cluster:
        result = evaluate_accuracy(
            architecture, task, budget, store=store, seed=seed, workspace=workspace,
            tokenizer=tokenizer, transfer=transfer, task_options=options, device=device,
            cluster=cluster,
        )  # fmt: skip
    if as_json:
        print_json(result)
    else:
        typer.echo(
            f"{result['task']}: {result['metric']} {result['accuracy']:.4f} "
            + (f"(± {result['accuracy_std']:.4f}) " if "accuracy_std" in result else "")
            + "after "
            f"{result['train_seconds']:.0f} s" + (" (cached)" if result["cached"] else "")
        )


__all__ = ["app", "evaluate"]
