"""Fuzzing every file reader and the main CLI paths with arbitrary and mutated input.

Each reader gets three kinds of input: arbitrary bytes, arbitrary JSON (or YAML, CSV,
Parquet cells) and mutations of a valid file (values replaced, keys deleted or added, edge
values, byte flips, truncation). The property is the README's promise for bad input: a valid
result, or a typed :class:`~edgetran.errors.EdgeTranError` (or ``OSError``) whose message is
one line; through the CLI, exit code 0 or 2 with at most one ``error:`` line and no
traceback, and an import either stores every valid row or nothing. Database URLs are fuzzed
too: whatever their passwords hold (``@``, ``:``, ``/``, ``?``, ``%``, query parameters), no
masked output shows a piece of one.

Sizes come from the hypothesis profiles in ``conftest.py``: ``ci`` (``make test``) runs each
reader on 30 inputs of each kind, each CLI path on 9 (5 for the slowest); ``slow``
(``make test-slow``) on ten times as many. Runs are derandomised, so a failure reproduces;
``pytest -m slow tests/test_fuzz.py --hypothesis-profile=explore`` draws fresh inputs.
"""

from __future__ import annotations

import copy
import csv
import functools
import io
import json
import math
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from edgetran.errors import EdgeTranError
from edgetran.space import REFERENCE_SPACE, Architecture, DesignSpace, load_architecture, sample
from tests.conftest import fake_device, tiny_hetero_architecture

#: Each fuzz test runs under the ``ci`` profile in ``make test`` and under ``slow`` (with
#: more examples) in ``make test-slow``.
PROFILES = [pytest.param("ci", id="ci"), pytest.param("slow", id="slow", marks=pytest.mark.slow)]
KINDS = ("bytes", "json", "mutation")


def fuzz(profile: str, strategy: st.SearchStrategy, check: Callable[[Any], None], share=1.0):
    """Run ``check`` on as many inputs drawn from ``strategy`` as ``profile`` says, scaled by
    ``share`` (the CLI paths are slower than the readers); the loaded profile decides the rest
    (``--hypothesis-profile=explore`` draws fresh random inputs)."""
    examples = max(5, round(settings.get_profile(profile).max_examples * share))

    @settings(settings.default, max_examples=examples)
    @given(strategy)
    def run(value: Any) -> None:
        check(value)

    run()


# -- the property ---------------------------------------------------------------------------------
def typed_or_valid(call: Callable[[], Any]) -> Any:
    """``call()``'s result, or ``None`` when it raised a typed, one-line error; any other
    exception propagates and fails the test."""
    try:
        return call()
    except (EdgeTranError, OSError) as err:
        message = str(err)
        assert message.strip(), f"{type(err).__name__} without a message"
        assert "\n" not in message and "\r" not in message, f"multi-line message: {message!r}"
        return None


def assert_cli_contract(code: int, out: str, err: str) -> None:
    """Exit 0 or 2; on 2 one ``error:`` line, the last on stderr; never a traceback."""
    assert "Traceback" not in err + out, err
    assert code in (0, 2), f"exit {code}: {err}"
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == (code == 2), err
    if code == 2:
        assert err.rstrip().splitlines()[-1].startswith("error: "), err


def strict_json(text: str) -> Any:
    """Parse ``--json`` output as strict JSON (no NaN or Infinity)."""

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in JSON output")

    return json.loads(text, parse_constant=refuse)


# -- generic strategies ---------------------------------------------------------------------------
EDGE_INTEGERS = st.sampled_from(
    [0, -1, 1, 2, 3, 7, 2**31, 2**63 - 1, 2**63, 10**12, 10**30, -(2**63), 10**300]
)
EDGE_FLOATS = st.sampled_from(
    [0.0, -0.0, -1.0, 1e-300, 1e308, math.nan, math.inf, -math.inf, 0.5, 64.0]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    EDGE_INTEGERS,
    st.floats(),
    EDGE_FLOATS,
    st.text(max_size=12),
    st.sampled_from(["", "sa_sdp_64", "c_4_64", "c_5", "fast", "NaN", "-1", "1e999", "\x00"]),
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
ARBITRARY_BYTES = st.one_of(
    st.binary(max_size=400),
    st.text(max_size=200).map(lambda t: t.encode("utf-8")),
    st.text(max_size=100).map(lambda t: t.encode("utf-16")),
    st.sampled_from([b"", b"\xef\xbb\xbf", b"\x00" * 8, b"[" * 5000, b"{" * 5000, b"1" * 5000]),
)


def _paths(doc: Any, prefix: tuple = ()) -> Iterator[tuple]:
    """Every location in a JSON document, the root included."""
    yield prefix
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            yield from _paths(value, (*prefix, i))


def _edge_values(value: Any) -> st.SearchStrategy:
    """Values close to ``value`` that readers tend to get wrong."""
    common = [None, True, "", [], {}]
    if isinstance(value, bool):
        return st.sampled_from([not value, 0, 1, "true", *common])
    if isinstance(value, int):
        near = [value + 1, value - 1, -value, value * 1000, float(value), str(value)]
        return st.one_of(st.sampled_from(near + common), EDGE_INTEGERS, EDGE_FLOATS)
    if isinstance(value, float):
        near = [-value, value * 1e6, round(value) if math.isfinite(value) else 0, str(value)]
        return st.one_of(st.sampled_from(near + common), EDGE_FLOATS, EDGE_INTEGERS)
    if isinstance(value, str):
        near = [value + "x", value.upper(), value[:-1], f" {value}", value + "_0"]
        near += [value + "0" * 4400]  # beyond Python's int-from-text limit
        return st.one_of(st.sampled_from(near + common), st.text(max_size=12))
    if isinstance(value, list):
        return st.sampled_from([[], value * 2, value[:-1], [value], *common[:3]])
    return st.sampled_from([{}, [value], *common[:3]])


@st.composite
def mutated_json(draw, valid: Any, max_changes: int = 3) -> Any:
    """``valid`` with one to ``max_changes`` values replaced, deleted, inserted or nudged."""
    doc = copy.deepcopy(valid)
    for _ in range(draw(st.integers(1, max_changes))):
        path = draw(st.sampled_from(list(_paths(doc))))
        parent, key = _locate(doc, path)
        current = doc if parent is None else parent[key]
        action = draw(st.sampled_from(["edge", "edge", "replace", "delete", "insert", "repeat"]))
        if action == "edge":
            new = draw(_edge_values(current))
        elif action == "repeat":  # one object many times: YAML writes anchors and aliases
            new = [current] * draw(st.integers(2, 9))
        elif action == "replace":
            new = draw(JSON_VALUES)
        elif action == "insert" and isinstance(current, dict):
            current[draw(st.text(max_size=6))] = draw(JSON_VALUES)
            continue
        elif action == "insert" and isinstance(current, list):
            current.insert(draw(st.integers(0, len(current))), draw(JSON_VALUES))
            continue
        elif action == "delete" and parent is not None:
            del parent[key]
            continue
        else:
            new = draw(JSON_VALUES)
        if parent is None:
            doc = new
        else:
            parent[key] = new
    return doc


def _locate(doc: Any, path: tuple) -> tuple[Any, Any]:
    """``(container, key)`` of ``path`` in ``doc``; ``(None, None)`` for the root."""
    if not path:
        return None, None
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    return parent, path[-1]


@st.composite
def mutated_bytes(draw, valid: bytes) -> bytes:
    """``valid`` with a few bytes flipped, deleted, inserted or duplicated, or truncated."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, max(len(data) - 1, 0)))
        action = draw(st.sampled_from(["flip", "delete", "insert", "truncate", "repeat"]))
        if action == "flip" and data:
            data[i] = draw(st.integers(0, 255))
        elif action == "delete":
            del data[i : i + draw(st.integers(1, 16))]
        elif action == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif action == "truncate":
            del data[i:]
        else:
            data[i:i] = data[i : i + draw(st.integers(1, 64))]
    return bytes(data)


def to_json_bytes(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


def json_lines(rows: list[Any]) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


@st.composite
def mutated_lines(draw, rows: list[Any]) -> bytes:
    """JSON Lines whose rows are mutated, dropped, repeated or joined by blank or bad lines."""
    rows = copy.deepcopy(rows)
    action = draw(st.sampled_from(["row", "row", "drop", "repeat", "garbage"]))
    i = draw(st.integers(0, len(rows) - 1))
    if action == "row":
        rows[i] = draw(mutated_json(rows[i]))
    elif action == "drop":
        rows = rows[:i]
    elif action == "repeat":
        rows.insert(i, rows[i])
    lines = [json.dumps(row) for row in rows]
    if action == "garbage":
        lines.insert(i, draw(st.sampled_from(["", "   ", "{", "[]", "null", "1", '"x"', "{}"])))
    return ("\n".join(lines) + "\n").encode()


def with_file(suffix: str, data: bytes, use: Callable[[Path], Any]) -> Any:
    """Write ``data`` to a fresh temporary file ending in ``suffix`` and call ``use`` on it
    (each hypothesis example gets its own folder; function fixtures are not reset)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"input{suffix}"
        path.write_bytes(data)
        return use(path)


def inputs(valid_json: Any, encode: Callable[[Any], bytes] = to_json_bytes) -> dict:
    """The three kinds of input for a reader of one JSON-like document."""
    return {
        "bytes": ARBITRARY_BYTES,
        "json": JSON_VALUES.map(encode),
        "mutation": st.one_of(
            mutated_json(valid_json).map(encode),
            st.just(encode(valid_json)).flatmap(mutated_bytes),
        ),
    }


# -- valid documents ------------------------------------------------------------------------------
def valid_architectures() -> list[dict]:
    """The project's form and the reference model_dict, bare and wrapped."""
    tiny, other = tiny_hetero_architecture(), sample(1, method="random", seed=3)[0]
    return [
        tiny.to_dict(),
        tiny.to_model_dict(),
        {"arch": other.to_model_dict(), "device": "x"},
        {"model_dict": other.to_model_dict()},
    ]


ARCHITECTURE_DOCS = valid_architectures()
SPACE_DOCS = [
    REFERENCE_SPACE.to_dict(),
    {"layers": [2, 4], "hidden_sizes": [128, 256], "head_counts": [2], "ff_depths": [1]},
    {"operations": ["sa_sdp", "c_5"]},
]


def architecture_inputs(kind: str) -> st.SearchStrategy:
    return st.sampled_from(ARCHITECTURE_DOCS).flatmap(lambda doc: inputs(doc)[kind])


def space_inputs(kind: str) -> st.SearchStrategy[tuple[str, bytes]]:
    """``(suffix, content)`` of a design-space file, YAML or JSON."""

    def encode_as(suffix: str) -> Callable[[Any], bytes]:
        if suffix == ".json":
            return to_json_bytes
        return lambda value: yaml.safe_dump(value, allow_unicode=True).encode()

    return st.tuples(st.sampled_from([".yaml", ".json"]), st.sampled_from(SPACE_DOCS)).flatmap(
        lambda pair: inputs(pair[1], encode_as(pair[0]))[kind].map(lambda b: (pair[0], b))
    )


# -- architecture files ---------------------------------------------------------------------------
def check_architecture(arch: Architecture | None) -> None:
    if arch is not None:
        assert Architecture.from_dict(arch.to_model_dict()) == arch
        assert Architecture.from_dict(arch.to_dict()) == arch


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("profile", PROFILES)
def test_fuzz_architecture_file(profile, kind):
    def check(data: bytes) -> None:
        check_architecture(
            with_file(".json", data, lambda p: typed_or_valid(lambda: load_architecture(p)))
        )

    fuzz(profile, architecture_inputs(kind), check)


@pytest.mark.parametrize("profile", PROFILES)
def test_fuzz_architecture_dicts(profile):
    """``from_dict`` (both forms) and ``from_model_dict`` on mutated documents."""

    def check(doc: Any) -> None:
        check_architecture(typed_or_valid(lambda: Architecture.from_dict(doc)))
        if isinstance(doc, dict):
            check_architecture(typed_or_valid(lambda: Architecture.from_model_dict(doc)))

    docs = st.sampled_from(ARCHITECTURE_DOCS[:2]).flatmap(mutated_json)
    fuzz(profile, st.one_of(docs, JSON_VALUES), check)


# -- design spaces --------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("profile", PROFILES)
def test_fuzz_design_space_file(profile, kind):
    def read(suffix: str, data: bytes) -> DesignSpace | None:
        return with_file(suffix, data, lambda p: typed_or_valid(lambda: DesignSpace.from_file(p)))

    def check(pair: tuple[str, bytes]) -> None:
        space = read(*pair)
        if space is not None:  # what `space size` and `space describe` compute
            assert space.size >= 1 and math.isfinite(space.log10_size)
            assert len(space.encode(tiny_hetero_architecture())) == space.embedding_length

    fuzz(profile, space_inputs(kind), check)


# -- measurement files ----------------------------------------------------------------------------
DEVICE = "dev"


@functools.cache
def valid_measurement_file(fmt: str) -> bytes:
    """A small valid measurement file of device ``dev`` (ProTran: named ``dev.json``)."""
    from edgetran.profile import write_measurements

    items = fake_device(16, DEVICE, seed=1)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"{DEVICE}{SUFFIX[fmt]}"
        write_measurements(items, path, fmt)
        return path.read_bytes()


SUFFIX = {"protran": ".json", "csv": ".csv", "parquet": ".parquet"}
CSV_CELLS = st.one_of(
    SCALARS.map(lambda v: "" if v is None else str(v)),
    JSON_VALUES.map(json.dumps),
    st.sampled_from(["nan", "NaN", "inf", "-1", "0", "1e999", "fast", "{}", "[]", '{"l": 1}']),
)


def csv_rows(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode())))


def csv_bytes(rows: list[dict[str, Any]]) -> bytes:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    stream = io.StringIO()
    writer = csv.DictWriter(stream, columns, restval="")
    writer.writeheader()
    writer.writerows(rows)
    return stream.getvalue().encode()


@st.composite
def mutated_rows(draw, rows: list[dict[str, Any]], cells: st.SearchStrategy) -> list[dict]:
    """Table rows with cells replaced, a column dropped or renamed, rows dropped or repeated."""
    rows = copy.deepcopy(rows)
    columns = list(rows[0])
    for _ in range(draw(st.integers(1, 3))):
        if not rows:
            break
        i, column = draw(st.integers(0, len(rows) - 1)), draw(st.sampled_from(columns))
        action = draw(st.sampled_from(["cell", "cell", "cell", "column", "rename", "rows"]))
        if action == "cell":
            rows[i][column] = draw(cells)
        elif action == "column":
            for row in rows:
                row.pop(column, None)
        elif action == "rename":
            new = draw(st.sampled_from(["", "x", column.upper(), f"{column} "]))
            for row in rows:
                row[new] = row.pop(column, "")
        else:
            rows = draw(st.sampled_from([rows[:i], [*rows, rows[i]], rows[i:] + rows[:i]]))
    return rows


def parquet_bytes(rows: list[dict[str, Any]]) -> bytes:
    """Parquet of ``rows``; a column of mixed types Arrow cannot hold is written as text."""
    import pandas as pd

    frame = pd.DataFrame(rows)
    for _ in range(len(frame.columns) + 1):
        stream = io.BytesIO()
        try:
            frame.to_parquet(stream, index=False)
            return stream.getvalue()
        except Exception as err:
            bad = next(
                (c for c in frame.columns if str(c) in str(err) and frame[c].dtype == object),
                None,
            )
            columns = [bad] if bad is not None else list(frame.columns)
            for column in columns:
                frame[column] = frame[column].map(lambda v: v if v is None else str(v))
    raise AssertionError("could not write the mutated rows as Parquet")


def measurement_inputs(fmt: str, kind: str) -> st.SearchStrategy[bytes]:
    valid = valid_measurement_file(fmt)
    if fmt == "protran":
        return inputs(json.loads(valid))[kind]
    if kind == "bytes":
        return ARBITRARY_BYTES
    if fmt == "csv":
        rows = csv_rows(valid)
        if kind == "json":  # arbitrary tables
            return st.lists(
                st.dictionaries(st.sampled_from(list(rows[0])), CSV_CELLS), max_size=3
            ).map(csv_bytes)
        return st.one_of(mutated_rows(rows, CSV_CELLS).map(csv_bytes), mutated_bytes(valid))
    import pandas as pd

    rows = pd.read_parquet(io.BytesIO(valid)).to_dict("records")
    cells = st.one_of(SCALARS, CSV_CELLS)
    if kind == "json":
        return st.lists(
            st.dictionaries(st.sampled_from(list(rows[0])), cells), min_size=1, max_size=3
        ).map(parquet_bytes)
    return st.one_of(mutated_rows(rows, cells).map(parquet_bytes), mutated_bytes(valid))


def read_file(fmt: str, data: bytes):
    from edgetran.profile import read_measurements

    def read(path: Path):
        return typed_or_valid(lambda: read_measurements(path, fmt, None))

    items = with_file_named(f"{DEVICE}{SUFFIX[fmt]}", data, read)
    for m in items or []:  # a measurement read is valid and belongs to its architecture
        m.validate()
        assert m.hash == Architecture.from_dict(m.model_dict).hash
    return items


def with_file_named(name: str, data: bytes, use: Callable[[Path], Any]) -> Any:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(data)
        return use(path)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fmt", ["protran", "csv", "parquet"])
@pytest.mark.parametrize("profile", PROFILES)
def test_fuzz_measurement_file(profile, fmt, kind):
    fuzz(profile, measurement_inputs(fmt, kind), lambda data: read_file(fmt, data))


# -- replay tables, task files, device features ---------------------------------------------------
@functools.cache
def replay_rows() -> list[dict]:
    rows = []
    for i, arch in enumerate(sample(3, method="random", seed=5)):
        for device, latency in (("edge", 2.0), ("gpu", 0.01)):
            metrics = {"accuracy": 0.6 + 0.01 * i, "latency_s": latency,
                       "energy_j": 5 * latency, "peak_power_w": 5.0}  # fmt: skip
            rows.append({"arch": arch.to_model_dict(), "device": device, "metrics": metrics})
    return rows


TASK_ROWS = [{"text": f"example {i}", "label": "pos" if i % 2 else "neg"} for i in range(24)]


def lines_inputs(rows: list[dict], kind: str) -> st.SearchStrategy[bytes]:
    if kind == "bytes":
        return ARBITRARY_BYTES
    if kind == "json":
        return st.lists(JSON_VALUES, max_size=4).map(json_lines)
    return st.one_of(mutated_lines(rows), st.just(json_lines(rows)).flatmap(mutated_bytes))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("profile", PROFILES)
def test_fuzz_replay_table(profile, kind):
    from edgetran.search import read_table

    def check(data: bytes) -> None:
        table = with_file(".jsonl", data, lambda p: typed_or_valid(lambda: read_table(p)))
        for pair, metrics in (table or {}).values():
            assert all(math.isfinite(v) for v in metrics.values()) and pair.device

    fuzz(profile, lines_inputs(replay_rows(), kind), check)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("profile", PROFILES)
def test_fuzz_task_file(profile, kind):
    from edgetran.train import load_task

    def check(data: bytes) -> None:
        task = with_file(".jsonl", data, lambda p: typed_or_valid(lambda: load_task(str(p))))
        if task is not None:
            assert min(len(task.train), len(task.dev), len(task.test)) > 0

    fuzz(profile, lines_inputs(TASK_ROWS, kind), check)


DEVICE_FEATURES = {"edge": [5.0, 0.0], "gpu": [250.0, 1.0]}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("profile", PROFILES)
def test_fuzz_device_features(profile, kind):
    from edgetran.search import read_device_features
    from edgetran.search.evaluators import device_matrix

    def check(data: bytes) -> None:
        features = with_file(
            ".json", data, lambda p: typed_or_valid(lambda: read_device_features(p))
        )
        if features:
            matrix = typed_or_valid(lambda: device_matrix(sorted(features), features))
            for vector in (matrix or {}).values():
                assert all(0 <= x <= 1 for x in vector)

    fuzz(profile, inputs(DEVICE_FEATURES)[kind], check)


# -- the CLI --------------------------------------------------------------------------------------
#: Shares of the profile's examples for the CLI paths, which start whole commands.
CLI_SHARE = 0.3


@pytest.fixture
def cli(run_cli, monkeypatch, tmp_path):
    """``run_cli`` in a scratch workspace whose crash logs stay out of the repository."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EDGETRAN_LOG_DIR", str(tmp_path / "logs"))

    def run(*args: Any) -> tuple[int, str, str]:
        code, out, err = run_cli(*args)
        assert_cli_contract(code, out, err)
        return code, out, err

    return run


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("profile", PROFILES)
def test_fuzz_cli_space_size(profile, kind, cli):
    def check(pair: tuple[str, bytes]) -> None:
        code, out, _ = with_file(
            pair[0], pair[1], lambda p: cli("space", "size", "--space", p, "--json")
        )
        if code == 0:
            assert strict_json(out)["size"] >= 1

    fuzz(profile, space_inputs(kind), check, CLI_SHARE)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("profile", PROFILES)
def test_fuzz_cli_space_describe(profile, kind, cli):
    def check(data: bytes) -> None:
        code, out, _ = with_file(".json", data, lambda p: cli("space", "describe", p, "--json"))
        if code == 0:
            assert len(strict_json(out)["hash"]) == 32

    fuzz(profile, architecture_inputs(kind), check, CLI_SHARE)


@pytest.fixture(scope="module")
def old_store(tmp_path_factory) -> tuple[Path, list[dict]]:
    """A folder with a store holding three measurements of another device, as imports find
    it, and those measurements."""
    from edgetran.store import Store

    folder = tmp_path_factory.mktemp("store")
    with Store(folder / "old.db") as store:
        store.add_many(fake_device(3, "old", seed=2))
    return folder, stored(folder / "old.db")


def stored(db: Path) -> list[dict]:
    from edgetran.store import Store

    with Store(db) as store:
        return [m.to_dict() for m in store.measurements()]


#: What makes two measurements the same (stored once): architecture, device, runtime, input
#: shape, source file and entry.
def natural_key(m) -> tuple:
    if m.source_key is None:
        return (id(m),)
    return (m.hash, m.device, m.runtime, m.batch_size, m.seq_len, m.source_key)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fmt", ["protran", "csv", "parquet"])
@pytest.mark.parametrize("profile", PROFILES)
def test_fuzz_cli_measurements_import(profile, fmt, kind, cli, old_store):
    """Every valid row is stored, or nothing: never a partial import."""
    from edgetran.profile import read_measurements

    def check(data: bytes) -> None:
        with tempfile.TemporaryDirectory() as folder:
            workspace = Path(shutil.copytree(old_store[0], Path(folder) / "ws"))
            db, file = workspace / "old.db", workspace / f"{DEVICE}{SUFFIX[fmt]}"
            file.write_bytes(data)
            before = old_store[1]
            code, _, _ = cli("measurements", "import", file, "--format", fmt, "--db", db)
            after = stored(db)
            assert after[: len(before)] == before, "an import changed stored measurements"
            if code == 2:
                assert len(after) == len(before), "a failed import stored some rows"
            else:
                items = read_measurements(file, fmt, None)
                assert len(after) - len(before) == len(set(map(natural_key, items)))

    fuzz(profile, measurement_inputs(fmt, kind), check, CLI_SHARE)


@pytest.mark.parametrize("fmt", ["protran", "csv", "parquet"])
@pytest.mark.parametrize("profile", PROFILES)
def test_fuzz_cli_surrogate_cv(profile, fmt, cli):
    """Mutated files through ``surrogate cv`` (the readers alone have the other kinds)."""

    def check(data: bytes) -> None:
        def run(path: Path):
            return cli("surrogate", "cv", "--measurements", path, "--format", fmt,
                       "--device", DEVICE, "--folds", "2", "--json")  # fmt: skip

        code, out, _ = with_file_named(f"{DEVICE}{SUFFIX[fmt]}", data, run)
        if code == 0:
            assert set(strict_json(out)["latency"]) >= {"mape", "r2"}

    fuzz(profile, measurement_inputs(fmt, "mutation"), check, CLI_SHARE / 2)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("profile", PROFILES)
def test_fuzz_cli_search(profile, kind, cli):
    """A fuzzed replay table, or a valid table with fuzzed device features."""

    def check(case: tuple[str, bytes]) -> None:
        which, data = case
        with tempfile.TemporaryDirectory() as folder:
            table, features = Path(folder) / "table.jsonl", Path(folder) / "features.json"
            table.write_bytes(data if which == "table" else json_lines(replay_rows()))
            extra = ["--device-features", features] if which == "features" else []
            features.write_bytes(data)
            db = Path(folder) / "s.db"
            code, out, _ = cli("search", "--benchmark", table, "--budget", "3", "--sampler",
                               "random", "--db", db, "--json", *extra)  # fmt: skip
            if code == 0:
                assert strict_json(out)["evaluations"] <= 3

    cases = st.one_of(
        lines_inputs(replay_rows(), kind).map(lambda b: ("table", b)),
        inputs(DEVICE_FEATURES)[kind].map(lambda b: ("features", b)),
    )
    fuzz(profile, cases, check, CLI_SHARE / 2)


# -- database URLs --------------------------------------------------------------------------------
#: What passwords are made of: no other part of a generated URL, and no message edgetran
#: writes, holds one of these letters, so any of them in masked output is a piece of a password.
SECRET_LETTERS = "αβγδεζηθλμξπσφψω"
#: Query parameters that carry a password, as drivers name them.
SECRET_PARAMETERS = ("password", "PASSWORD", "sslpassword", "passwd", "pwd", "secret", "token")
PLAIN = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8)
DRIVERS = ("postgresql", "postgresql+psycopg", "postgresql+asyncpg", "mysql+pymysql",
           "mssql+pyodbc", "oracle", "nosuchdb")  # fmt: skip


def passwords(specials: str) -> st.SearchStrategy[str]:
    """Secret letters among characters that mean something in a URL (and ``%40``, an ``@``
    written as it should be)."""
    piece = st.one_of(st.text(SECRET_LETTERS, min_size=1, max_size=3), st.sampled_from(specials))
    pieces = st.lists(st.one_of(piece, st.just("%40")), min_size=1, max_size=6).map("".join)
    return pieces.filter(lambda text: any(c in SECRET_LETTERS for c in text))


@st.composite
def database_urls(draw) -> str:
    """A server URL with a password in its user part, in a query parameter, or both."""
    driver = draw(st.sampled_from(DRIVERS))
    user = draw(st.sampled_from(["", "user", "u.ser-1", "us@er"]))
    host = draw(st.sampled_from(["db.example", "127.0.0.1", "[::1]", "h"]))
    port = draw(st.one_of(st.just(""), st.integers(1, 65535).map(str), PLAIN).map(
        lambda p: f":{p}" if p else ""))  # fmt: skip
    plain = st.tuples(PLAIN, PLAIN)
    secret = st.tuples(st.sampled_from(SECRET_PARAMETERS), passwords("@:/?%#=!"))
    params = draw(st.lists(st.one_of(plain, secret), max_size=3))
    password = draw(st.one_of(st.none(), passwords("@:/?%#&=!")))
    if password is None and not any(key in SECRET_PARAMETERS for key, _ in params):
        password = draw(passwords("@:/?%#&=!"))
    userinfo = f"{user}:{password}@" if password is not None else f"{user}@" if user else ""
    query = "?" + "&".join(f"{key}={value}" for key, value in params) if params else ""
    return f"{driver}://{userinfo}{host}{port}/{draw(PLAIN)}{query}"


def assert_no_secret(text: str) -> None:
    leaked = [c for c in text if c in SECRET_LETTERS]
    assert not leaked, f"password letters {''.join(leaked)!r} in {text!r}"


@pytest.mark.parametrize("profile", PROFILES)
def test_fuzz_database_urls_never_show_a_password(profile, cli):
    """Every way a URL is shown (one URL, free text, JSON, the store's errors, an error line)
    hides every piece of its password."""
    from edgetran.store.database import check_database_url, database_error
    from edgetran.store.masking import mask_credentials, mask_secrets, mask_url

    def check(url: str) -> None:
        assert_no_secret(mask_url(url))
        assert_no_secret(mask_credentials(f"cannot reach {url}: refused; retry {url}\nor {url}"))
        assert_no_secret(json.dumps(mask_secrets({"db": url, "runs": [url, (url, 1)]})))
        assert_no_secret(str(database_error(url, "cannot open", RuntimeError(f"at {url}"))))
        try:
            check_database_url(url)
        except EdgeTranError as err:  # no driver for it here: the CLI stops at the same check
            assert_no_secret(str(err))
            code, out, err = cli("measurements", "list", "--db", url)
            assert code == 2
            assert_no_secret(out + err)

    fuzz(profile, database_urls(), check)


# -- what the fuzzing found -----------------------------------------------------------------------
def _read_task(path: Path):
    from edgetran.train import load_task

    return load_task(str(path))


def _read_protran(path: Path):
    from edgetran.profile import read_measurements

    return read_measurements(path, "protran", None)


def _read_csv(path: Path):
    from edgetran.profile import read_measurements

    return read_measurements(path, "csv", None)


def _csv_with_another_hash() -> bytes:
    rows = csv_rows(valid_measurement_file("csv"))
    return csv_bytes([{**row, "hash": "0" * 32} for row in rows])


def _read_features(path: Path):
    from edgetran.search import read_device_features

    return read_device_features(path)


TWO_EXAMPLES = json_lines(TASK_ROWS[:2])
# 386 bytes that stand for 9**9 values (the "billion laughs"); `layers` is checked first.
ALIAS_BOMB = (
    "operations: [&a [1, 1, 1, 1, 1, 1, 1, 1, 1], "
    + ", ".join(
        f"&{b} [{', '.join([f'*{a}'] * 9)}]" for a, b in zip("abcdefgh", "bcdefghi", strict=True)
    )
    + "]\nlayers: [*i]\n"
).encode()
FOUND = {
    "space-operations-not-a-list": ("s.yaml", b"operations: true\n", DesignSpace.from_file),
    "space-layers-a-mapping": ("s.yaml", b"layers: {2: 4}\n", DesignSpace.from_file),
    "space-size-beyond-printing": ("s.yaml", b"layers: [1000]\n", DesignSpace.from_file),
    "space-attention-table-too-large": ("s.json", b'{"head_counts": [64]}', DesignSpace.from_file),
    "space-ff-table-too-large": ("s.yaml", b"ff_depths: [12]\n", DesignSpace.from_file),
    "space-alias-bomb": ("s.yaml", ALIAS_BOMB, DesignSpace.from_file),
    "space-recursive-alias": ("s.yaml", b"layers: &a [2, *a]\n", DesignSpace.from_file),
    "protran-entry-with-line-break": ("dev.json", b'{"\\n": null}', _read_protran),
    "csv-hash-of-another-model": ("dev.csv", _csv_with_another_hash, _read_csv),
    "task-too-few-examples": ("t.jsonl", TWO_EXAMPLES, _read_task),
    "task-column-with-line-break": ("t.jsonl", b'{"\\r": null}\n', _read_task),
    "task-label-with-line-break": (
        "t.jsonl",
        TWO_EXAMPLES.replace(b'"pos"', b'"p\\no"'),
        _read_task,
    ),
    "head-string-of-5000-digits": (
        "a.json",
        json.dumps({"l": 1, "o": [[f"c_{'1' * 5000}_8"]], "h": [8], "f": [[8]]}).encode(),
        load_architecture,
    ),
    "heads-a-mapping": (
        "a.json",
        b'{"layers": [{"hidden": 8, "heads": {"sa_sdp": 1}, "ff": [8]}]}',
        load_architecture,
    ),
    "features-text": ("f.json", b'{"edge": ["fast"]}', _read_features),
    "features-nan": ("f.json", b'{"edge": [NaN], "gpu": [1]}', _read_features),
    "features-lengths": ("f.json", b'{"edge": [1], "gpu": [1, 2]}', _read_features),
    "features-nested": ("f.json", b'{"edge": [[1]]}', _read_features),
}


@pytest.mark.parametrize("case", FOUND)
def test_inputs_the_fuzzing_found_are_one_typed_error(case):
    name, content, read = FOUND[case]
    content = content() if callable(content) else content

    def refuse(path: Path) -> None:
        with pytest.raises(EdgeTranError) as info:
            read(path)
        assert "\n" not in str(info.value) and "\r" not in str(info.value)

    with_file_named(name, content, refuse)


def test_bad_device_features_exit_2_and_leave_no_study_behind(cli, tmp_path):
    table, features = tmp_path / "t.jsonl", tmp_path / "f.json"
    table.write_bytes(json_lines(replay_rows()))
    args = ["search", "--benchmark", table, "--device-features", features, "--db",
            tmp_path / "s.db", "--sampler", "random", "--budget", 1]  # fmt: skip
    features.write_text('{"edge": ["fast"], "gpu": [1]}')
    code, _, err = cli(*args)
    assert code == 2 and "device 'edge': expected" in err
    features.write_text('{"gpu": [1]}')
    code, _, err = cli(*args)
    assert code == 2 and "device features missing for edge" in err
    # Refused before the study opened: a corrected rerun needs no --resume.
    assert not (tmp_path / "s.db").exists()


def test_a_huge_space_is_refused_at_once(cli, tmp_path):
    space = tmp_path / "s.yaml"
    space.write_text("layers: [1000]\n")
    code, _, err = cli("space", "size", "--space", space)
    assert code == 2 and "at most 10^1000" in err


def test_json_output_is_strict_json(capsys):
    """``surrogate cv --json`` on constant latencies printed ``"r2": NaN``."""
    from edgetran.cli._common import print_json

    print_json({"r2": math.nan, "folds": [math.inf, 1.0], "n": 3})
    assert strict_json(capsys.readouterr().out) == {"r2": None, "folds": [None, 1.0], "n": 3}
