"""GPTran: hardware-aware grow-and-prune of a trained model, as a resumable search tree.

Seventh stage of the data flow, after ``search``: it refines the chosen model for the chosen
device (``codesign`` calls :func:`grow_and_prune`).
"""

import lazy_loader

# Names load with their submodule on first use (lazy_loader), so that importing a light
# part of the package, or the CLI, does not import torch and friends.
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "costs": [
            "COST_METRICS",
            "CostEstimate",
            "DeviceCosts",
            "LiveDevice",
            "SurrogateDevice",
            "live_profile_settings",
            "recorded_device",
            "resolve_device",
        ],
        "modes": [
            "BUILT_IN_MODES",
            "GrowAttnHead",
            "GrowFFNN",
            "GrowPruneError",
            "Mode",
            "Proposal",
            "PruneAttnHead",
            "PruneEncoderLayer",
            "PruneFFNN",
        ],
        "schedule": [
            "DEFAULT_SCHEDULE",
            "GROW_ONLY_SCHEDULE",
            "NAMED_SCHEDULES",
            "build_schedule",
            "load_schedule",
            "read_schedule",
        ],
        "search": [
            "STEP_SCALES",
            "GrowPruneResult",
            "GrowPruneSettings",
            "grow_and_prune",
            "mode_pretrain_settings",
        ],
    },
)
