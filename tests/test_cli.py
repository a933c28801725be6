import json

import pytest

from edgetran.model import FlexiBertForSequenceClassification
from edgetran.space import Architecture


def test_space_size_json(run_cli):
    code, out, _ = run_cli("space", "size", "--json")
    data = json.loads(out)
    assert code == 0 and isinstance(data["size"], int)
    assert data["log10_size"] == pytest.approx(88.2268, abs=1e-3)


def test_space_size_of_a_custom_space(run_cli, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(
        "layers: [2]\nhidden_sizes: [128]\nhead_counts: [2]\noperations: [sa_sdp]\n"
        "ff_depths: [1]\nff_widths: [256, 512]\n"
    )
    code, out, _ = run_cli("space", "size", "--space", space, "--json")
    assert code == 0 and json.loads(out)["size"] == 4


@pytest.mark.parametrize("method", ["lhs", "random"])
def test_space_sample_writes_jsonl(run_cli, tmp_path, method):
    out_file = tmp_path / "samples.jsonl"
    code, _, _ = run_cli(
        "space", "sample", "--n", 6, "--method", method, "--seed", 3, "--out", out_file
    )
    lines = out_file.read_text().splitlines()
    assert code == 0 and len(lines) == 6
    record = json.loads(lines[0])
    assert Architecture.from_model_dict(record["model_dict"]).hash == record["hash"]
    assert len(record["embedding"]) == 37


def test_space_describe_named_and_files(run_cli, tmp_path):
    code, out, _ = run_cli("space", "describe", "bert-mini", "--json")
    data = json.loads(out)
    assert code == 0 and data["embedding"][:4] == [1, 1, 2, 28] and data["on_grid"]
    assert data["parameters"] == 16_487_936  # base + pooler, reference configuration
    assert data["flops"] > 0 and len(data["hash"]) == 32
    model_dict = tmp_path / "model.json"
    model_dict.write_text(
        json.dumps({"l": 1, "o": [["sa_sdp_21"] * 13], "h": [256], "f": [[896]]})
    )
    code, out, _ = run_cli(
        "space",
        "describe",
        model_dict,
        "--vocab-size",
        1000,
        "--batch-size",
        2,
        "--seq-len",
        64,
        "--json",
    )
    data = json.loads(out)
    assert code == 0 and not data["on_grid"] and data["seq_len"] == 64


BAD_ARCHES = {
    "malformed.json": ("{not json", "not valid JSON"),
    "unknown_head.json": (
        json.dumps({"l": 1, "o": [["sa_foo_64"]], "h": [64], "f": [[64]]}),
        "layer 0: o='sa_foo_64'",
    ),
    "lengths.json": (
        json.dumps({"l": 2, "o": [["sa_sdp_64"]], "h": [64, 64], "f": [[64]]}),
        "exactly l=2",
    ),
    "negative.json": (
        json.dumps({"layers": [{"hidden": -8, "heads": ["sa_sdp"], "ff": [64]}]}),
        "layer 0: hidden=-8",
    ),
    "zero_ff.json": (
        json.dumps({"layers": [{"hidden": 8, "heads": ["sa_sdp"], "ff": [0]}]}),
        "layer 0: ff=0",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_ARCHES))
def test_bad_architectures_exit_2_with_one_line(run_cli, tmp_path, name):
    text, message = BAD_ARCHES[name]
    path = tmp_path / name
    path.write_text(text)
    code, out, err = run_cli("space", "describe", path, "--json")
    assert code == 2 and out == ""
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("space", "describe", "bert-huge"), "neither a JSON file nor a named architecture"),
        (("space", "sample", "--n", "0", "--out", "x.jsonl"), "--n"),
        (("space", "sample", "--n", "2", "--method", "sobol", "--out", "x.jsonl"), "sobol"),
        (
            ("model", "init", "bert-tiny", "--out", "m", "--head", "qa"),
            "head='qa' is invalid; allowed: base, mlm, cls",
        ),
        (("space", "describe", "bert-mini", "--seq-len", "-1"), "--seq-len"),
    ],
)
def test_bad_arguments_exit_2(run_cli, args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(*args)
    assert code == 2 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_bad_space_file(run_cli, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("hidden_sizes: [128, -4]\n")
    code, _, err = run_cli("space", "size", "--space", space)
    assert code == 2 and "hidden_sizes: -4 is not a positive integer" in err


def test_model_init_saves_a_loadable_model(run_cli, tmp_path):
    code, _, err = run_cli(
        "model",
        "init",
        "bert-tiny",
        "--out",
        tmp_path / "m",
        "--head",
        "cls",
        "--num-labels",
        3,
        "--vocab-size",
        100,
        "--seed",
        1,
    )
    assert code == 0, err
    model = FlexiBertForSequenceClassification.from_pretrained(tmp_path / "m")
    assert model.config.num_labels == 3 and model.config.vocab_size == 100


def test_every_command_has_help(run_cli):
    for command in [
        (),
        ("space",),
        ("space", "sample"),
        ("space", "size"),
        ("space", "describe"),
        ("model",),
        ("model", "init"),
        ("model", "import-hf"),
        ("demo",),
    ]:
        code, out, _ = run_cli(*command, "--help")
        assert code == 0 and "Usage" in out


def test_demo_runs(run_cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = run_cli("demo", "--n", 2, "--seq-len", 16)
    assert code == 0 and "params (M)" in out and "latency ms" in out


def test_codesign_help_reads_well_at_80_columns():
    """Every option's name whole (no "…"), grouped in panels, its help on one or two lines
    (a "[default: …]" line aside), nothing wider than the terminal."""
    import os
    import re
    import subprocess
    import sys

    env = {**os.environ, "COLUMNS": "80", "TERM": "dumb"}
    done = subprocess.run(
        [sys.executable, "-m", "edgetran.cli.main", "codesign", "--help"],
        capture_output=True, text=True, env=env, timeout=60, check=True,
    )  # fmt: skip
    lines = done.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines)
    panels = [re.sub(r"[─╭╮]", "", line).strip() for line in lines if line.startswith("╭─")]
    assert {"Task and budgets", "Devices and profiling", "Search and choice", "Outputs",
            "Lab"} <= set(panels)  # fmt: skip
    rows = [line.strip("│ ") for line in lines if line.startswith("│")]
    names = [row.split()[0] for row in rows if row.startswith("--")]
    assert "…" not in " ".join(names) and len(names) >= 40
    import typer

    from edgetran.cli.main import app

    command = typer.main.get_command(app).commands["codesign"]
    declared = {opt for param in command.params for opt in param.opts}
    assert declared - {"--help"} <= set(names)
    helps: dict[str, int] = {}
    current = None
    for row in rows:
        if row.startswith("--"):
            current = row.split()[0]
            helps[current] = 1
        elif current and not row.strip().startswith("[default:"):
            helps[current] += 1
    assert max(helps.values()) <= 2, {k: v for k, v in helps.items() if v > 2}


def test_an_option_several_commands_take_is_declared_once():
    """--seed, --json, --force (of a file), ARCH and --vocab-size of these commands are the
    shared declarations of ``cli/_common.py``: one help text, one place to change it."""
    import typing

    from edgetran.cli import (
        _common,
        growprune_cmd,
        model_cmds,
        profile_cmds,
        search_cmd,
        space_cmds,
        surrogate_cmds,
    )

    shared = {
        _common.SeedOption: [growprune_cmd.growprune, search_cmd.search, space_cmds.sample],
        _common.JsonOption: [growprune_cmd.growprune, search_cmd.search, space_cmds.size,
                             space_cmds.describe, surrogate_cmds.cv, surrogate_cmds.predict],
        _common.ForceFile: [space_cmds.sample, surrogate_cmds.fit, profile_cmds.export_],
        _common.ArchArgument: [model_cmds.init, space_cmds.describe],
        _common.VocabSize: [model_cmds.init, space_cmds.describe],
    }  # fmt: skip
    for alias, commands in shared.items():
        option = typing.get_args(alias)[1]
        for command in commands:
            declared = typing.get_type_hints(command, include_extras=True).values()
            assert any(option in typing.get_args(hint) for hint in declared), command.__name__


def test_the_task_and_lab_options_are_declared_once_for_every_command_that_takes_them():
    """The file-task options (--text-column …) and the lab options (--scheduler, TLS, job
    time-out) are one declared group each (``option_groups``): every command that takes the
    group shows the group's own declarations, so one edit changes them all."""
    import inspect

    from edgetran.cli import cluster_cmds, codesign_cmd, profile_cmds, search_cmd, train_cmds

    t = train_cmds
    groups = {
        t.task_options: [t.pretrain, t.parent, t.finetune, t.evaluate],
        cluster_cmds.lab_options: [t.evaluate, search_cmd.search, profile_cmds.profile,
                                   codesign_cmd.codesign],
        profile_cmds.active_options: [profile_cmds.profile],
    }  # fmt: skip
    for build, commands in groups.items():
        group = inspect.signature(build).parameters
        for command in commands:
            shown = inspect.signature(command).parameters
            written = inspect.signature(command.__wrapped__).parameters
            assert set(group) <= set(shown), command.__name__
            assert set(group) & set(written) <= {"seed"}, command.__name__  # the command's own


def test_active_options_build_profile_actively_keyword_arguments():
    """``profile --active``'s options are one group whose result goes to profile_actively as
    keyword arguments: a parameter renamed there fails here, not in a user's run."""
    import inspect

    from edgetran.cli.profile_cmds import active_options
    from edgetran.surrogate.active import profile_actively

    built = active_options(budget=5, target_mape=0.1, initial=2, pool=8, acquisition="random")
    assert set(built) <= set(inspect.signature(profile_actively).parameters)
    assert built["budget"] == 5 and built["pool_size"] == 8


def test_task_options_build_the_file_tasks_options():
    from edgetran.cli.train_cmds import task_options
    from edgetran.train import TaskOptions

    built = task_options(text_column="t", labels="neg, pos", seed=3)
    assert built == TaskOptions(text_column="t", labels=("neg", "pos"), split_seed=3)


def test_option_groups_hand_the_command_one_built_object():
    """A group's options stand in the command's --help in its place; the command gets what
    the group builds, and an option both declare (--seed) goes to both."""
    from typing import Annotated

    import typer
    from typer.testing import CliRunner

    from edgetran.cli._common import SeedOption, option_groups

    def pair(
        left: Annotated[int, typer.Option(help="Left.")] = 1,
        seed: SeedOption = 0,
    ) -> tuple[int, int]:
        return left, seed

    app = typer.Typer()

    @app.command()
    @option_groups(both=pair)
    def show(
        first: Annotated[str, typer.Option(help="First.")] = "a",
        *,
        both: tuple[int, int],
        seed: SeedOption = 0,
        last: Annotated[str, typer.Option(help="Last.")] = "z",
    ) -> None:
        typer.echo(f"{first} {both} {seed} {last}")

    runner = CliRunner()
    result = runner.invoke(app, ["--left", "4", "--seed", "7"])
    assert result.exit_code == 0 and result.output == "a (4, 7) 7 z\n"
    names = [p.name for p in show.__signature__.parameters.values()]
    assert names == ["first", "left", "seed", "last"]
