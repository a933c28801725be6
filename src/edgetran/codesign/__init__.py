"""Co-design: task, devices and budgets in; the best model–device pair, trained, exported,
measured, and a report of the evidence out.

Last stage of the data flow: it runs ``profile``, ``surrogate``, ``search`` and ``growprune``
and then ``train`` and ``export`` on the winner.
"""

import lazy_loader

# Names load with their submodule on first use (lazy_loader), so that importing a light
# part of the package, or the CLI, does not import torch and friends.
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "config": ["CPU_DEVICES", "CPU_SPACE", "CodesignConfig", "CodesignError", "parse_device"],
        "pipeline": ["STAGES", "CodesignResult", "EvaluationTimeout", "run_codesign"],
        "report": ["write_report"],
        "runtime_accuracy": ["artifact_accuracy"],
    },
)
