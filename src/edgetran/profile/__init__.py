"""ProTran profiling: latency, energy and peak power on real devices, and measurement files.

Fourth stage of the data flow, after ``export`` (its runners) and ``model``.
"""

import lazy_loader

# Names load with their submodule on first use (lazy_loader), so that importing a light
# part of the package, or the CLI, does not import torch and friends.
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "formats": ["FILE_FORMATS", "read_measurements", "write_measurements"],
        "meters": [
            "CommandMeter",
            "CpuTimeEstimateMeter",
            "CsvMeter",
            "FunctionMeter",
            "Meter",
            "MeterError",
            "Reading",
            "create_meter",
        ],
        "protocol": ["ProfileSettings", "profile_architecture", "profile_job", "profile_runner"],
        "resumable": ["profile_into_store", "stored_measurements"],
        "sampler": ["PowerSampler"],
    },
)
