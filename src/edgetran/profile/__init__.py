"""ProTran profiling: latency, energy and peak power on real devices, and measurement files."""

from edgetran.profile.formats import FILE_FORMATS, read_measurements, write_measurements
from edgetran.profile.meters import (
    CommandMeter,
    CpuTimeEstimateMeter,
    CsvMeter,
    FunctionMeter,
    Meter,
    MeterError,
    Reading,
    create_meter,
)
from edgetran.profile.protocol import (
    ProfileSettings,
    profile_architecture,
    profile_job,
    profile_runner,
)
from edgetran.profile.resumable import profile_into_store
from edgetran.profile.sampler import PowerSampler

__all__ = [
    "FILE_FORMATS",
    "CommandMeter",
    "CpuTimeEstimateMeter",
    "CsvMeter",
    "FunctionMeter",
    "Meter",
    "MeterError",
    "PowerSampler",
    "ProfileSettings",
    "Reading",
    "create_meter",
    "profile_architecture",
    "profile_into_store",
    "profile_job",
    "profile_runner",
    "read_measurements",
    "write_measurements",
]
