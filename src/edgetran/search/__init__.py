"""Co-search of (model, device) pairs: BOSHCODE and Optuna baselines over an Optuna study."""

from edgetran.search.boshcode import Boshcode, BoshcodeSettings
from edgetran.search.encoding import ENCODINGS, ArchitectureEncoder
from edgetran.search.evaluators import Evaluation, Evaluator, LiveEvaluator, ReplayEvaluator
from edgetran.search.objectives import Constraints, PaperObjective, SearchError, pareto_mask
from edgetran.search.study import (
    OBJECTIVES,
    SearchResult,
    SearchSettings,
    run_search,
)
from edgetran.search.table import Pair, read_table

__all__ = [
    "ENCODINGS",
    "OBJECTIVES",
    "ArchitectureEncoder",
    "Boshcode",
    "BoshcodeSettings",
    "Constraints",
    "Evaluation",
    "Evaluator",
    "LiveEvaluator",
    "Pair",
    "PaperObjective",
    "ReplayEvaluator",
    "SearchError",
    "SearchResult",
    "SearchSettings",
    "pareto_mask",
    "read_table",
    "run_search",
]
