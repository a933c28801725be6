"""The workspace database and the measurement record (shared infrastructure).

Underneath every stage: any stage may import it, and it imports no stage.
"""

import lazy_loader

# Names load with their submodule on first use (lazy_loader), so that importing a light
# part of the package, or the CLI, does not import torch and friends.
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "database": ["DEFAULT_DB", "Store", "StoreError", "database_url"],
        "records": ["METER_KINDS", "Measurement"],
    },
)
