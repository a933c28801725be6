"""Co-search of (model, device) pairs: BOSHCODE and Optuna baselines over an Optuna study.

Sixth stage of the data flow, after ``surrogate``; ``train`` gives its accuracy.
"""

import lazy_loader

# Names load with their submodule on first use (lazy_loader), so that importing a light
# part of the package, or the CLI, does not import torch and friends.
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "settings": ["BOSHCODE_SURROGATES", "ENCODINGS", "OBJECTIVES", "BoshcodeSettings"],
        "boshcode": ["Boshcode"],
        "encoding": ["ArchitectureEncoder"],
        "evaluators": [
            "Accuracy",
            "Evaluation",
            "Evaluator",
            "LiveEvaluator",
            "ReplayEvaluator",
            "read_device_features",
        ],
        "forests": ["MetricForests"],
        "live": ["device_costs", "device_measurements", "live_evaluator", "oracle_accuracy"],
        "objectives": [
            "Constraints",
            "PaperObjective",
            "ReferenceCost",
            "SearchError",
            "paper_with_norms",
            "pareto_mask",
            "run_scale_norms",
        ],
        "proposers": ["OptunaProposer", "Proposal", "Proposer", "Setup", "SurrogateProposer"],
        "study": ["SearchResult", "SearchSettings", "delete_studies", "run_search"],
        "suite": [
            "LANDSCAPES",
            "PROBLEMS",
            "Problem",
            "RealShape",
            "shaped_table",
            "suite_run",
            "summarise",
        ],
        "table": ["Pair", "read_table"],
        "trees": ["TreesProposer"],
    },
)
