"""Contract checks for every plug-in family, in the manner of scikit-learn's ``check_estimator``.

Each check runs a plug-in on tiny inputs and raises :class:`ContractError` (an
``AssertionError``) naming the clause of the family's written contract that failed::

    from edgetran.testing import check_meter
    check_meter(MyUsbMeter())

=====================  ========================================================================
``check_meter``        a :class:`~edgetran.profile.meters.Meter` instance
``check_runner``       a zero-argument factory of a :class:`~edgetran.export.runners.Runner`
``check_runtime``      a registered runtime's name: exporter and runner, against PyTorch
``check_surrogate``    a :class:`~edgetran.surrogate.base.Surrogate` class (or factory)
``check_evaluator``    a search :class:`~edgetran.search.evaluators.Evaluator` instance
``check_proposer``     a search strategy: a registered sampler's name or a proposer factory
``check_task``         a :class:`~edgetran.train.tasks.Task`
``check_mode``         a grow-and-prune :class:`~edgetran.growprune.modes.Mode` instance
=====================  ========================================================================

``tests/test_contracts.py`` runs every built-in through its check, parametrised over the
registries of :mod:`edgetran.plugins`, so a new built-in is checked without a new test.
"""

import lazy_loader

# Each check loads its family (and the libraries it needs) on first use.
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "_contract": ["ContractError"],
        "growprune": ["check_mode", "tiny_parent"],
        "meters": ["check_meter"],
        "runtimes": ["check_runner", "check_runtime"],
        "search": ["check_evaluator", "check_proposer", "check_sampler", "synthetic_table"],
        "surrogates": ["check_surrogate", "synthetic_regression"],
        "tasks": ["check_task"],
    },
)
