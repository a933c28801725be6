"""Accuracy: tasks, tokenizers, MLM pretraining, TPE fine-tuning and the accuracy oracle.

Beside ``model`` in the data flow: the accuracy oracle that ``search`` calls.
"""

import lazy_loader

# Names load with their submodule on first use (lazy_loader), so that importing a light
# part of the package, or the CLI, does not import torch and friends.
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "finetune": ["FinetuneResult", "FinetuneSettings", "finetune"],
        "oracle": [
            "BUDGETS",
            "DEFAULT_WORKSPACE",
            "PARENT_ARCHITECTURE",
            "evaluate",
            "evaluate_job",
            "train_classifier",
            "train_parent",
        ],
        "pretrain": ["PretrainResult", "PretrainSettings", "TrainingError", "pretrain"],
        "tasks": ["Task", "TaskError", "TaskOptions", "load_task", "task_key"],
    },
)
