"""Device names as every command takes them: ``HARDWARE/RUNTIME`` (``cpu/torch``), or the
hardware alone with its runtime given apart (``--device cpu --runtime torch``).

Standard library only: the CLI parses device names before it imports anything heavy.
"""

from __future__ import annotations

from edgetran.errors import EdgeTranError, InvalidInputError

#: The forms a device name may take, for error messages.
DEVICE_FORMS = "HARDWARE/RUNTIME (e.g. cpu/torch), or HARDWARE with a separate runtime"


def split_device(
    device: str, runtime: str | None = None, error: type[EdgeTranError] = InvalidInputError
) -> tuple[str, str | None]:
    """``(hardware, runtime)`` of ``device``: the runtime it names after a ``/``, else
    ``runtime`` (``None`` when neither names one).

    Raises:
        error: ``device`` has an empty part, or names a runtime other than ``runtime``.
    """
    hardware, slash, named = device.rpartition("/")
    if not slash:
        return device, runtime
    if not hardware or not named:
        raise error(f"device {device!r} is invalid; allowed: {DEVICE_FORMS}")
    if runtime is not None and runtime != named:
        raise error(
            f"device {device!r} names runtime {named!r} but runtime {runtime!r} was given; "
            f"allowed: {DEVICE_FORMS}"
        )
    return hardware, named
