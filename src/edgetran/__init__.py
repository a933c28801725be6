"""EdgeTran: co-design of heterogeneous transformer encoders and edge devices.

The packages follow the data flow: space → model → export (artifacts and runtimes) → profile →
surrogate → search → growprune → codesign, with train (the accuracy oracle) beside model, store
(the workspace database) underneath and cli on top. A stage imports only earlier stages and
shared infrastructure (``errors``, ``configs``, ``seeding``, ``plugins``, ``store``); nothing
imports the CLI (``tests/test_layering.py`` checks both).

The package imports nothing heavy: ``import edgetran`` is instant, and torch or transformers
load only with the stage that needs them. Importing :mod:`edgetran.model` registers FlexiBERT
with ``transformers``' ``Auto*`` classes.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

__version__ = "0.1.0"

# torchao (from edgetran[litert]), which transformers imports whenever it is installed, warns at
# import about CUDA kernels a CPU build cannot load and a torch deprecation: every command
# printed four lines of it.
for _noisy in ("torchao", "torch.utils._pytree"):
    logging.getLogger(_noisy).setLevel(logging.ERROR)

# Attributes served on first use (PEP 562), so that `import edgetran` stays light.
_LAZY = {
    "Architecture": "edgetran.space",
    "DesignSpace": "edgetran.space",
    "model": "edgetran.model",
    "space": "edgetran.space",
}

__all__ = ["Architecture", "DesignSpace", "__version__", "model", "space"]


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'edgetran' has no attribute {name!r}")
    module = importlib.import_module(module_name)
    return module if module_name.endswith(name) else getattr(module, name)
