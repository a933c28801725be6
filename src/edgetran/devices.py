"""Device names as every command takes them: ``HARDWARE/RUNTIME`` (``cpu/torch``), or the
hardware alone with its runtime given apart (``--device cpu --runtime torch``).

:func:`split_device` is the one parser of these names: the CLI, the co-design config, the
search's stored devices, grow-and-prune's live devices and the lab workers all split them
there, so a name means the same everywhere and a bad one gets the same message.

Standard library only: the CLI parses device names before it imports anything heavy.
"""

from __future__ import annotations

from collections.abc import Collection

from edgetran.errors import EdgeTranError, InvalidInputError

#: The forms a device name may take, for error messages.
DEVICE_FORMS = "HARDWARE/RUNTIME (e.g. cpu/torch), or HARDWARE with a separate runtime"


def runtime_forms(runtimes: Collection[str]) -> str:
    """The ``HARDWARE/RUNTIME`` form with the runtimes allowed, for error messages."""
    return f"HARDWARE/RUNTIME (runtimes: {', '.join(runtimes)}; e.g. cpu/torch)"


def split_device(
    device: str,
    runtime: str | None = None,
    error: type[EdgeTranError] = InvalidInputError,
    *,
    runtimes: Collection[str] | None = None,
    forms: str | None = None,
) -> tuple[str, str | None]:
    """``(hardware, runtime)`` of ``device``: the runtime it names after its last ``/``, else
    ``runtime`` (``None`` when neither names one).

    Args:
        device: ``HARDWARE/RUNTIME`` or ``HARDWARE``.
        runtime: the runtime given apart (``--runtime``), if any.
        error: the error type raised (the caller's family error).
        runtimes: when given, a runtime must be named, and be one of these.
        forms: what the caller accepts, for the message (default :data:`DEVICE_FORMS`, or
            :func:`runtime_forms` of ``runtimes``).

    Raises:
        error: ``device {device!r} is invalid; allowed: {forms}``: ``device`` has an empty part,
            or (with ``runtimes``) names no runtime or another one; or it names a runtime other
            than ``runtime`` (the message says both).
    """
    if forms is None:
        forms = DEVICE_FORMS if runtimes is None else runtime_forms(runtimes)
    hardware, slash, named = device.rpartition("/")
    if not slash:
        hardware, named = device, runtime
    elif not hardware or not named:
        raise error(f"device {device!r} is invalid; allowed: {forms}")
    elif runtime is not None and runtime != named:
        raise error(
            f"device {device!r} names runtime {named!r} but runtime {runtime!r} was given; "
            f"allowed: {forms}"
        )
    if runtimes is not None and named not in runtimes:
        raise error(f"device {device!r} is invalid; allowed: {forms}")
    return hardware, named
