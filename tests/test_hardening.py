"""Regression tests of issue 20: bad input found by probing the CLI as a user."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgetran.errors import (
    ArchitectureError,
    DesignSpaceError,
    InvalidInputError,
    ModelTooLargeError,
)
from edgetran.model.costs import check_parameter_memory, count_parameters
from edgetran.space import Architecture, DesignSpace, load_architecture

HUGE_ARCH = {"layers": [{"hidden": 10**12, "heads": ["sa_sdp", "sa_sdp"], "ff": [512]}]}


def _one_line(err: str) -> bool:
    return len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.fixture
def binary_file(tmp_path) -> Path:
    path = tmp_path / "binary.json"
    path.write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)))
    return path


@pytest.fixture
def utf16_file(tmp_path) -> Path:
    path = tmp_path / "utf16.json"
    path.write_text('{"layers": [2]}', encoding="utf-16")
    return path


# -- defect 3: non-UTF-8 files -------------------------------------------------------------------
@pytest.mark.parametrize("fixture", ["binary_file", "utf16_file"])
def test_non_utf8_files_are_one_typed_error(request, fixture):
    path = request.getfixturevalue(fixture)
    with pytest.raises(InvalidInputError, match="not UTF-8 text"):
        load_architecture(path)
    for name in (path.name, path.with_suffix(".yaml").name):
        target = path.with_name(name)
        target.write_bytes(path.read_bytes())
        with pytest.raises(DesignSpaceError, match="not UTF-8 text"):
            DesignSpace.from_file(target)


def test_utf8_with_byte_order_mark_is_read(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("layers: [2]\n", encoding="utf-8-sig")
    assert DesignSpace.from_file(path).layers == (2,)


@pytest.mark.parametrize(
    "args",
    [
        ("space", "describe", "{file}", "--json"),
        ("space", "size", "--space", "{file}"),
        ("measurements", "import", "{file}", "--format", "protran", "--db", "{db}"),
        ("measurements", "import", "{file}", "--format", "csv", "--db", "{db}"),
    ],
)
def test_cli_refuses_binary_files_in_one_line(run_cli, tmp_path, binary_file, args):
    db = tmp_path / "m.db"
    code, out, err = run_cli(*(a.format(file=binary_file, db=db) for a in args))
    assert code == 2 and out == "" and _one_line(err)
    assert "UTF-8" in err or "utf-8" in err


# -- defect 4: deep nesting ----------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_deeply_nested_files_are_one_typed_error(tmp_path, suffix):
    path = tmp_path / f"deep{suffix}"
    path.write_text("[" * 100_000)
    with pytest.raises(DesignSpaceError, match="nested too deeply"):
        DesignSpace.from_file(path)


def test_deeply_nested_architecture_is_one_typed_error(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000)
    with pytest.raises(InvalidInputError, match="nested too deeply"):
        load_architecture(path)


def test_cli_deep_json_is_one_line(run_cli, tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000)
    code, _, err = run_cli("space", "describe", path)
    assert code == 2 and "nested too deeply" in err and _one_line(err)


def test_json_lines_reader_survives_deep_nesting(tmp_path):
    from edgetran.errors import read_json_lines

    path = tmp_path / "deep.jsonl"
    path.write_text('{"a": 1}\n' + "[" * 100_000 + "\n")
    with pytest.raises(InvalidInputError, match="line 2 is nested too deeply"):
        list(read_json_lines(path))


def test_integers_beyond_the_digit_limit_are_one_typed_error(tmp_path):
    path = tmp_path / "big.json"
    path.write_text('{"layers": [' + "9" * 5000 + "]}")
    with pytest.raises(DesignSpaceError, match="not valid JSON"):
        DesignSpace.from_file(path)
    with pytest.raises(InvalidInputError, match="not valid JSON"):
        load_architecture(path)


# -- defect 11: malformed YAML -------------------------------------------------------------------
def test_malformed_yaml_is_one_line_with_line_and_column(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("layers: [2, 4\nhidden_sizes: {\n")
    with pytest.raises(DesignSpaceError) as info:
        DesignSpace.from_file(path)
    message = str(info.value)
    assert "\n" not in message and "^" not in message
    assert str(path) in message and "line 2, column 13" in message


def test_cli_malformed_yaml_is_one_line(run_cli, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("layers: [2, 4\nhidden_sizes: {\n")
    code, _, err = run_cli("space", "size", "--space", path)
    assert code == 2 and "line 2, column 13" in err and _one_line(err)


@pytest.mark.parametrize(
    "text", ["a: 1\n\x00\n", "\tlayers: [1]\n", "layers: !!python/object:os.system x\n"]
)
def test_other_bad_yaml_is_one_line(tmp_path, text):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(DesignSpaceError, match="not valid YAML") as info:
        DesignSpace.from_file(path)
    assert "\n" not in str(info.value)


def test_space_with_non_string_keys_names_the_file(tmp_path):
    path = tmp_path / "keys.yaml"
    path.write_text("1: 2\nlayers: [2]\n")
    with pytest.raises(DesignSpaceError, match=r"keys\.yaml: design space: unknown field 1"):
        DesignSpace.from_file(path)


# -- defect 5: impossible sizes ------------------------------------------------------------------
def test_parameter_memory_is_checked_against_the_machine():
    arch = Architecture.from_dict(HUGE_ARCH)
    with pytest.raises(ModelTooLargeError, match=r"needs about .* GiB .*parameters"):
        check_parameter_memory(arch)
    tiny = load_architecture("bert-tiny")
    assert check_parameter_memory(tiny) == 4 * count_parameters(tiny)  # float32
    with pytest.raises(ModelTooLargeError, match=r"needs about 0\.0262 GiB.*has 0\.000931 GiB"):
        check_parameter_memory(tiny, available_bytes=1_000_000)


def test_models_refuse_impossible_sizes_before_allocating():
    from edgetran.model import FlexiBertConfig, FlexiBertForMaskedLM, FlexiBertModel

    config = FlexiBertConfig(HUGE_ARCH)
    for cls in (FlexiBertModel, FlexiBertForMaskedLM):
        with pytest.raises(ModelTooLargeError, match="GiB"):
            cls(config)
    with pytest.raises(ModelTooLargeError):
        FlexiBertModel(FlexiBertConfig("bert-tiny", vocab_size=10**13))


def test_cli_model_init_refuses_impossible_sizes(run_cli, tmp_path):
    path = tmp_path / "huge.json"
    path.write_text(json.dumps(HUGE_ARCH))
    code, _, err = run_cli("model", "init", path, "--out", tmp_path / "m")
    assert code == 2 and "GiB" in err and _one_line(err)
    assert not (tmp_path / "m" / "config.json").exists()
    code, out, _ = run_cli("space", "describe", path, "--json")
    assert code == 0 and json.loads(out)["parameters"] > 10**24


def test_sizes_beyond_int64_are_refused():
    layer = {"hidden": 2**63, "heads": ["sa_sdp"], "head_dim": 1, "ff": [8]}
    with pytest.raises(ArchitectureError, match="below 2\\*\\*63"):
        Architecture.from_dict({"layers": [layer]})
