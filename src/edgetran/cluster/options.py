"""Where the cluster is and how to reach it: addresses, TLS files, time limits, resource names.

Light on purpose (standard library only): the CLI builds :class:`ClusterOptions` while it parses
its arguments, before anything connects. Dask is imported where a connection is made.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgetran.devices import split_device
from edgetran.errors import ClusterError, MissingDependencyError

if TYPE_CHECKING:
    from distributed import Security

#: Prefix of the Dask worker resource a device worker offers: ``device:HARDWARE/RUNTIME``.
DEVICE_PREFIX = "device:"
#: The Dask worker resource a GPU worker offers, one unit per GPU; a training takes one.
GPU_RESOURCE = "GPU"
#: The key of a worker's environment snapshot in the scheduler's worker information.
ENVIRONMENT_KEY = "edgetran_environment"
#: Where Dask's small HTTP server (health and metrics; no dashboard) listens: loopback only,
#: any free port, whatever address the scheduler or worker itself listens on.
LOOPBACK_HTTP = "127.0.0.1:0"
SCHEMES = ("tcp://", "tls://", "local:")
TLS_FIELDS = ("tls_ca_file", "tls_cert", "tls_key")
ALLOWED_SCHEDULERS = "tcp://HOST:PORT, tls://HOST:PORT or local:N (N ≥ 1 workers here)"
LAB_EXTRA = "pip install edgetran[lab]"


def device_resource(device: str) -> str:
    """The Dask worker resource a worker offering ``device`` has one unit of, e.g.
    ``device:cpu/onnxruntime``; a profiling job asks for that one unit, so that a device runs
    one job at a time."""
    if not isinstance(device, str) or not device.strip() or device != device.strip():
        raise ClusterError(
            f"device {device!r} is invalid; allowed: a non-empty name such as cpu/onnxruntime"
        )
    return DEVICE_PREFIX + device


def worker_device(device: str | None, runtime: str | None = None) -> str | None:
    """The device name a worker offers: ``HARDWARE/RUNTIME`` (``cpu/onnxruntime``), as the
    co-design run names its devices. ``device`` may already hold the runtime (then ``runtime``
    must be absent or the same); a bare hardware name without a runtime is offered as given."""
    if device is None:
        if runtime is not None:
            raise ClusterError("runtime needs a device (e.g. --device cpu --runtime onnxruntime)")
        return None
    device_resource(device)
    hardware, runtime = split_device(device, runtime, ClusterError)
    return hardware if runtime is None else f"{hardware}/{runtime}"


def require_distributed() -> Any:
    """The ``distributed`` module, or a :class:`MissingDependencyError` naming the extra."""
    try:
        import distributed
    except ImportError as err:
        raise MissingDependencyError(
            f"the Dask cluster needs distributed ({err}); {LAB_EXTRA}"
        ) from None
    return distributed


@dataclass(frozen=True)
class ClusterOptions:
    """Where to run jobs, validated at construction (:class:`ClusterError` names the field).

    Attributes:
        scheduler: ``tcp://HOST:PORT`` or ``tls://HOST:PORT`` (a running scheduler, e.g.
            ``edgetran scheduler``), or ``local:N``: N worker processes started here, on
            127.0.0.1 only.
        tls_ca_file, tls_cert, tls_key: the CA, client certificate and key files; all three
            are required for ``tls://`` and refused otherwise (``local:`` stays on loopback,
            unencrypted).
        job_timeout_s: the longest wait for one job's result (:meth:`Cluster.result`).
        connect_timeout_s: the longest wait for the scheduler to answer.
        local_devices: ``local:N`` only: the devices this machine's workers offer (e.g.
            ``cpu/onnxruntime``), so that profiling jobs can run here. Every local worker
            offers them; the host rule (:mod:`edgetran.cluster.hostlock`) still runs one
            profile at a time on this machine.
    """

    scheduler: str
    tls_ca_file: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    job_timeout_s: float = 3600.0
    connect_timeout_s: float = 10.0
    local_devices: Sequence[str] = field(default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "local_devices", tuple(self.local_devices))
        parse_scheduler(self.scheduler)
        _check_positive("job_timeout_s", self.job_timeout_s)
        _check_positive("connect_timeout_s", self.connect_timeout_s)
        check_tls_files(self.scheduler, self.tls_ca_file, self.tls_cert, self.tls_key)
        if self.local_devices and not self.is_local:
            raise ClusterError(
                f"local_devices={list(self.local_devices)!r} applies only to local:N "
                f"schedulers, not {self.scheduler}; remote devices are offered by "
                "`edgetran worker --device`"
            )
        for device in self.local_devices:
            device_resource(device)

    @property
    def is_local(self) -> bool:
        """Whether the options ask for a local cluster (``local:N``) rather than a scheduler."""
        return self.scheduler.startswith("local:")

    @property
    def local_workers(self) -> int:
        """N of ``local:N`` (0 for a remote scheduler)."""
        return int(self.scheduler.removeprefix("local:")) if self.is_local else 0


def parse_scheduler(address: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of ``tcp://HOST:PORT``/``tls://HOST:PORT``, or
    ``("local:", "", N)`` of ``local:N``.

    Raises:
        ClusterError: any other text, naming the allowed forms.
    """
    bad = ClusterError(f"scheduler {address!r} is invalid; allowed: {ALLOWED_SCHEDULERS}")
    if not isinstance(address, str):
        raise bad
    scheme = next((s for s in SCHEMES if address.startswith(s)), None)
    if scheme is None:
        raise bad
    rest = address.removeprefix(scheme)
    if scheme == "local:":
        if not rest.isdigit() or int(rest) < 1:
            raise bad
        return scheme, "", int(rest)
    host, colon, port = rest.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")  # [::1]:8786
    if not colon or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise bad
    if any(c.isspace() or c in "/@" for c in host):
        raise bad
    return scheme, host, int(port)


def check_tls_files(
    scheduler: str, ca_file: str | None, cert: str | None, key: str | None
) -> bool:
    """Whether ``scheduler`` uses TLS; its three files must then be given and exist.

    Raises:
        ClusterError: a ``tls://`` address lacks a file, a file does not exist, or files are
            given for a ``tcp://``/``local:`` address.
    """
    given = dict(zip(TLS_FIELDS, (ca_file, cert, key), strict=True))
    if not str(scheduler).startswith("tls://"):
        extra = [name for name, value in given.items() if value]
        if extra:
            raise ClusterError(
                f"{', '.join(extra)} given for scheduler {scheduler}: TLS files apply only to "
                "tls://HOST:PORT schedulers"
            )
        return False
    check_tls_triple(given, f"scheduler {scheduler}")
    return True


def check_tls_triple(given: dict[str, str | None], what: str) -> None:
    """All three TLS files given and present, else one :class:`ClusterError`."""
    missing = [name for name, value in given.items() if not value]
    if missing:
        raise ClusterError(
            f"{what} uses TLS and needs {', '.join(TLS_FIELDS)} "
            f"(--tls-ca-file, --tls-cert, --tls-key); missing: {', '.join(missing)}"
        )
    for name, value in given.items():
        if not Path(str(value)).is_file():
            raise ClusterError(f"{name}={value!r}: no such file")


def security(role: str, ca_file: str | None, cert: str | None, key: str | None) -> Security | None:
    """A ``distributed.Security`` for ``role`` (``client``, ``worker`` or ``scheduler``) that
    requires encryption, or ``None`` without files (checked already by the caller)."""
    if not (ca_file and cert and key):
        return None
    distributed = require_distributed()
    return distributed.Security(
        tls_ca_file=ca_file,
        require_encryption=True,
        **{f"tls_{role}_cert": cert, f"tls_{role}_key": key},
    )


def _check_positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ClusterError(f"{name}={value!r} is invalid; allowed: a number of seconds > 0")
    if value <= 0:
        raise ClusterError(f"{name}={value!r} is invalid; allowed: a number of seconds > 0")
