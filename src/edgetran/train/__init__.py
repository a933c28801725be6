"""Accuracy: tasks, tokenizers, MLM pretraining, TPE fine-tuning and the accuracy oracle."""

from edgetran.train.finetune import FinetuneResult, FinetuneSettings, finetune
from edgetran.train.oracle import BUDGETS, DEFAULT_WORKSPACE, evaluate, evaluate_job
from edgetran.train.pretrain import PretrainResult, PretrainSettings, TrainingError, pretrain
from edgetran.train.tasks import Task, TaskError, TaskOptions, load_task

__all__ = [
    "BUDGETS",
    "DEFAULT_WORKSPACE",
    "FinetuneResult",
    "FinetuneSettings",
    "PretrainResult",
    "PretrainSettings",
    "Task",
    "TaskError",
    "TaskOptions",
    "TrainingError",
    "evaluate",
    "evaluate_job",
    "finetune",
    "load_task",
    "pretrain",
]
