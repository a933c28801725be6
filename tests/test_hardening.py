"""Regression tests of issue 20: bad input found by probing the CLI as a user."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from edgetran.errors import (
    ArchitectureError,
    DesignSpaceError,
    InvalidInputError,
    ModelTooLargeError,
)
from edgetran.space import Architecture, DesignSpace, load_architecture
from edgetran.space.costs import check_parameter_memory, count_parameters

#: A 2-layer, hidden-32 architecture file and a small vocabulary: quick to build and save.
TINY_ARCH = {"layers": [{"hidden": 32, "heads": ["sa_sdp", "sa_sdp"], "ff": [32]}] * 2}
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
    with pytest.raises(DesignSpaceError, match=r"nested too deeply|maximum nesting depth"):
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


# -- defect 6: model init into a file or a non-empty directory -----------------------------------
def test_model_init_refuses_a_file_as_output(run_cli, tmp_path):
    keep = tmp_path / "keep.txt"
    keep.write_text("mine")
    code, _, err = run_cli("model", "init", "bert-tiny", "--out", keep)
    assert code == 2 and "is a file, not a directory" in err and _one_line(err)
    assert keep.read_text() == "mine"


@pytest.fixture
def tiny_file(tmp_path) -> Path:
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(TINY_ARCH))
    return path


def test_model_init_refuses_a_non_empty_directory_without_force(run_cli, tmp_path, tiny_file):
    out = tmp_path / "model"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    args = ("model", "init", tiny_file, "--out", out, "--vocab-size", "64")
    code, _, err = run_cli(*args)
    assert code == 2 and "not empty" in err and "--force" in err and _one_line(err)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    code, _, err = run_cli(*args, "--force")
    assert code == 0, err
    assert (out / "config.json").is_file()


def test_failed_model_init_removes_the_directory_it_made(run_cli, tmp_path):
    path = tmp_path / "huge.json"
    path.write_text(json.dumps(HUGE_ARCH))
    out = tmp_path / "new" / "model"
    code, _, _ = run_cli("model", "init", path, "--out", out)
    assert code == 2 and not (tmp_path / "new").exists()


def test_output_dir_removes_only_what_it_created(tmp_path):
    from edgetran.errors import output_dir

    existing = tmp_path / "existing"
    existing.mkdir()
    for target, survives in ((existing, True), (tmp_path / "a" / "b", False)):
        with pytest.raises(RuntimeError), output_dir(target):
            (target / "partial.bin").write_bytes(b"x")
            raise RuntimeError("export failed")
        assert existing.is_dir()
        assert target.exists() is survives
    assert not (tmp_path / "a").exists()


# -- smaller: a failed export leaves no empty --out; --seq-len beyond the positions ---------------
def test_failed_export_removes_its_new_out_directory(run_cli, tmp_path):
    path = tmp_path / "huge.json"
    path.write_text(json.dumps(HUGE_ARCH))
    out = tmp_path / "export"
    code, _, err = run_cli("export", path, "--format", "pt2", "--out", out)
    assert code == 2 and "GiB" in err and _one_line(err)
    assert not out.exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    code, _, _ = run_cli("export", path, "--format", "pt2", "--out", kept)
    assert code == 2 and kept.is_dir()


def test_export_seq_len_is_checked_against_the_positions(run_cli, tmp_path, tiny_file):
    out = tmp_path / "export"
    args = ("export", tiny_file, "--format", "pt2", "--out", out, "--vocab-size", "64")
    code, _, err = run_cli(*args, "--seq-len", "100000")
    assert code == 2 and "seq_len=100000" in err and "at most 514" in err and _one_line(err)
    assert not out.exists()


def test_config_check_seq_len():
    from edgetran.model import FlexiBertConfig

    config = FlexiBertConfig("bert-tiny", max_position_embeddings=64)
    config.check_seq_len(64)
    with pytest.raises(ArchitectureError, match="at most 64"):
        config.check_seq_len(65)


# -- defect 7: unknown devices -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("runtime", "device", "allowed"),
    [
        ("torch", "bogus", "cpu, cuda[:N], mps"),
        ("torch", "cuda:x", "cpu, cuda[:N]"),
        ("onnxruntime", "gpu", "cpu, cuda[:N]"),
        ("onnxruntime", "cudax", "cpu, cuda[:N]"),
        ("openvino", "tpu", "CPU, GPU[.N], NPU, AUTO"),
    ],
)
def test_profile_settings_refuse_unknown_devices(runtime, device, allowed):
    from edgetran.export import RunnerError
    from edgetran.profile import ProfileSettings

    with pytest.raises(RunnerError, match=re.escape(allowed)):
        ProfileSettings(device=device, runtime=runtime)


@pytest.mark.parametrize(
    ("runtime", "device"),
    [("torch", "cpu"), ("torch", "cuda:1"), ("torch", "mps"), ("onnxruntime", "cuda:0"),
     ("openvino", "cpu"), ("openvino", "GPU.1")],
)  # fmt: skip
def test_profile_settings_accept_device_names(runtime, device):
    from edgetran.profile import ProfileSettings

    assert ProfileSettings(device=device, runtime=runtime).device == device


def test_cli_profile_bogus_device_fails_before_building(run_cli, tmp_path, monkeypatch):
    import edgetran.profile.protocol as protocol

    def no_model(*args, **kwargs):
        raise AssertionError("a model was built")

    monkeypatch.setattr(protocol, "build_runner", no_model)
    code, out, err = run_cli(
        "profile", "--device", "bogus", "--arch", "bert-tiny", "--db", tmp_path / "p.db"
    )
    assert code == 2 and out == "" and _one_line(err)
    assert "device 'bogus'" in err and "cuda[:N]" in err


# -- defect 10: impossible constraints; an empty feasible set in words ---------------------------
@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--max-latency-ms", "-5"),
        ("--max-energy-mj", "0"),
        ("--max-peak-power-w", "nan"),
        ("--min-accuracy", "1.5"),
        ("--min-accuracy", "-0.1"),
    ],
)
def test_search_refuses_impossible_constraints(run_cli, tmp_path, option, value):
    from tests.test_search import write_table

    table = write_table(tmp_path / "t.jsonl", n_archs=3)
    code, out, err = run_cli(
        "search", "--benchmark", table, "--sampler", "random", "--budget", "3",
        "--db", tmp_path / "s.db", option, value, "--json",
    )  # fmt: skip
    assert code == 2 and out == "" and _one_line(err)
    assert option.lstrip("-").replace("-", "_") in err


def test_search_reports_an_empty_feasible_set_in_words(tmp_path):
    from edgetran.search import Constraints, ReplayEvaluator, SearchSettings, run_search
    from tests.test_search import write_table

    table = write_table(tmp_path / "t.jsonl", n_archs=2)
    budgets = Constraints(max_latency_ms=0.001)
    settings = SearchSettings(sampler="random", budget=3, constraints=budgets)
    result = run_search(ReplayEvaluator(table), settings).to_dict()
    assert result["best"] is None
    assert result["message"] == "no evaluated pair met the constraints (max_latency_ms=0.001)"


def test_constraints_validate_and_describe():
    from edgetran.search import Constraints, SearchError

    assert Constraints(5, None, 3.5, 0.8).describe() == (
        "max_latency_ms=5, max_peak_power_w=3.5, min_accuracy=0.8"
    )
    assert Constraints().describe() == "none"
    for bad in ({"max_latency_ms": float("inf")}, {"max_energy_mj": True}, {"min_accuracy": 2}):
        with pytest.raises(SearchError, match="is invalid; allowed"):
            Constraints(**bad)


# -- smaller: --budget beyond the replay table; RUNNING trials after kill -9 ---------------------
def test_search_budget_beyond_the_table_warns_and_no_feasible_pair_is_said(run_cli, tmp_path):
    from tests.test_search import write_table

    table = write_table(tmp_path / "t.jsonl", n_archs=1)  # 2 pairs
    code, out, err = run_cli(
        "search", "--benchmark", table, "--sampler", "random", "--budget", "9",
        "--max-latency-ms", "0.001", "--db", tmp_path / "s.db",
    )  # fmt: skip
    assert code == 0 and "--budget 9 exceeds the 2 pairs" in err
    assert out == "no evaluated pair met the constraints (max_latency_ms=0.001)\n"


def test_resume_closes_trials_a_killed_run_left_running(tmp_path):
    import optuna
    from optuna.trial import TrialState

    from edgetran.search import ReplayEvaluator, SearchSettings, run_search
    from tests.test_search import write_table

    table = write_table(tmp_path / "t.jsonl", n_archs=2)
    storage = f"sqlite:///{tmp_path / 's.db'}"
    settings = SearchSettings(sampler="random", budget=1, seed=0)
    run_search(ReplayEvaluator(table), settings, storage=storage, study_name="s")
    optuna.load_study(study_name="s", storage=storage).ask()  # killed between ask and tell
    settings = SearchSettings(sampler="random", budget=2, seed=0)
    result = run_search(
        ReplayEvaluator(table), settings, storage=storage, study_name="s", resume=True
    )
    states = [t.state for t in optuna.load_study(study_name="s", storage=storage).trials]
    assert TrialState.RUNNING not in states and result.to_dict()["evaluations"] == 2


# -- defect 12: profile output after a resume ----------------------------------------------------
def test_profile_json_prints_every_requested_architecture(run_cli, tmp_path):
    archs = []
    for i, hidden in enumerate((32, 48, 64)):
        path = tmp_path / f"a{i}.json"
        layer = {"hidden": hidden, "heads": ["sa_sdp", "sa_sdp"], "ff": [32]}
        path.write_text(json.dumps({"layers": [layer, layer]}))
        archs.append(path)
    fast = ("--max-time", "0", "--idle", "0", "--meter", "estimate", "--threads", "1",
            "--seq-len", "16", "--db", tmp_path / "p.db")  # fmt: skip
    code, out, err = run_cli("profile", "--arch", archs[1], *fast, "--json")  # "killed" after one
    assert code == 0, err
    first = json.loads(out)
    args = [a for path in archs for a in ("--arch", path)]
    code, out, err = run_cli("profile", *args, *fast, "--json")
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["cached"] for line in lines] == [False, True, False]
    assert lines[1] == {**first, "cached": True}
    assert len({line["hash"] for line in lines}) == 3
    assert "1 already in the store" in err


# -- defect 13: a benchmark script that succeeds on nothing --------------------------------------
def test_build_replay_table_fails_without_data(tmp_path, monkeypatch, capsys):
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "build_replay_table.py"
    spec = importlib.util.spec_from_file_location("build_replay_table", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "replay.jsonl"
    argv = ["build_replay_table.py", "--out", str(out), "--data", str(tmp_path / "missing")]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_:
        module.main()
    assert exit_.value.code == 2 and not out.exists()
    assert "no ProTran" in capsys.readouterr().err


# -- found in review: plug-in arguments, CSV limits, broken pipes -------------------------------
@pytest.mark.parametrize("spec", ["command", "csv", "rapl:1"])
def test_meter_arguments_that_do_not_fit_are_one_line(run_cli, spec):
    code, _, err = run_cli("profile", "--arch", "bert-tiny", "--meter", spec, "--db", ":memory:")
    assert code == 2 and err.startswith(f"error: meter '{spec.partition(':')[0]}'")
    assert len(err.splitlines()) == 1


def test_a_plugin_that_fails_to_import_is_its_familys_error(monkeypatch):
    from edgetran.plugins import METERS
    from edgetran.profile.meters import MeterError

    monkeypatch.setattr(METERS, "_built_in", dict(METERS._built_in))  # restored afterwards
    METERS.register("broken-here", "json:no_such_attribute")
    with pytest.raises(MeterError, match=r"'broken-here' .* cannot be imported: AttributeError"):
        METERS.get("broken-here")


def test_task_csv_fields_longer_than_the_csv_modules_default_are_read(tmp_path):
    """Issue 39 item 12: 131,072 characters was the csv module's limit, not the task's (a text
    is truncated when tokenised)."""
    from edgetran.train.tasks import TaskOptions, load_task

    path = tmp_path / "long.csv"
    rows = "".join(f"text {i},{('neg', 'pos')[i % 2]}\n" for i in range(20))
    path.write_text("text,label\n" + '"' + "a" * 200_000 + '",pos\n' + rows)
    task = load_task(str(path), TaskOptions())
    texts = task.train.texts + task.dev.texts + task.test.texts
    assert len(texts) == 21 and max(map(len, texts)) == 200_000
