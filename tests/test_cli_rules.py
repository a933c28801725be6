"""Regression tests of issue 39, item 14a: one parser of device names (``HARDWARE/RUNTIME``)
for every command that takes one."""

from __future__ import annotations

import pytest

from edgetran.devices import split_device
from edgetran.errors import InvalidInputError


def _one_line(err: str) -> bool:
    return len(err.strip().splitlines()) == 1 and "Traceback" not in err


# -- item 14a: HARDWARE/RUNTIME wherever a device is named -------------------------------------
@pytest.mark.parametrize(
    ("device", "runtime", "expected"),
    [("cpu", None, ("cpu", None)), ("cpu", "openvino", ("cpu", "openvino")),
     ("cpu/torch", None, ("cpu", "torch")), ("cuda:0/onnxruntime", "onnxruntime",
     ("cuda:0", "onnxruntime"))],
)  # fmt: skip
def test_split_device(device, runtime, expected):
    assert split_device(device, runtime) == expected


@pytest.mark.parametrize(
    ("device", "runtime", "message"),
    [("cpu/torch", "onnxruntime", "names runtime 'torch' but runtime 'onnxruntime'"),
     ("/torch", None, "'/torch' is invalid"), ("cpu/", None, "'cpu/' is invalid")],
)  # fmt: skip
def test_split_device_refuses(device, runtime, message):
    with pytest.raises(InvalidInputError, match=message):
        split_device(device, runtime)


def test_profile_takes_hardware_slash_runtime(run_cli, tmp_path, monkeypatch):
    import edgetran.cli.profile_cmds as profile_cmds

    seen = []
    monkeypatch.setattr(
        profile_cmds, "_profile_listed", lambda archs, settings, *rest: seen.append(settings)
    )
    common = ["--arch", "bert-tiny", "--meter", "estimate", "--db", tmp_path / "p.db"]
    code, _, err = run_cli("profile", "--device", "cpu/onnxruntime", *common)
    assert code == 0, err
    assert (seen[0].device, seen[0].runtime) == ("cpu", "onnxruntime")
    code, out, err = run_cli("profile", "--device", "cpu/torch", "--runtime", "onnxruntime",
                             *common)  # fmt: skip
    assert code == 2 and out == "" and _one_line(err) and "names runtime 'torch'" in err
    assert len(seen) == 1
