"""Issue 39, items 1, 4, 9 and 14b: database passwords masked wherever a URL is shown or
written (error lines, JSON output, study attributes, crash logs), a malformed URL as one
line, and commands that only read the store never create one. (Item 1's ``result.json`` is
in ``test_codesign.py``, beside the run it masks; the URL fuzzing in ``test_fuzz.py``; the
lab's TLS rule, item 3, in ``test_cluster.py``.)"""

from __future__ import annotations

import json

import pytest

from edgetran.errors import EdgeTranError
from edgetran.store import Store
from edgetran.store.database import StoreError, check_database_url, database_error
from edgetran.store.masking import mask_credentials, mask_secrets, mask_url


def _one_error_line(code: int, err: str) -> str:
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


# -- item 4: one family of masking functions ----------------------------------------------------
@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:pw@h:5432/d", "postgresql://u:***@h:5432/d"),
        # an unencoded '@' in the password: SQLAlchemy would show "PW@host" as the host
        (
            "postgresql://user:S3cret@PW@127.0.0.1:55432/x",
            "postgresql://user:***@127.0.0.1:55432/x",
        ),
        ("postgresql://u@h/x?password=S3cret", "postgresql://u@h/x?password=***"),
        (
            "mysql+pymysql://u:a:b/c?d@h/x?sslpassword=S3&sslmode=require&PWD=Z",
            "mysql+pymysql://u:***@h/x?sslpassword=***&sslmode=require&PWD=***",
        ),
        ("postgresql://u@h:5432/x", "postgresql://u@h:5432/x"),
        ("sqlite:///work/edgetran.db", "sqlite:///work/edgetran.db"),
        ("edgetran.db", "edgetran.db"),
    ],
)
def test_mask_url(url, shown):
    assert mask_url(url) == shown
    assert mask_url(shown) == shown  # masking twice changes nothing


def test_urls_in_text_and_data_are_masked():
    text = "cannot reach postgresql://u:S3cret@PW@h/x?password=S3c2 (refused; tcp://h:8786 is up)"
    assert mask_credentials(text) == (
        "cannot reach postgresql://u:***@h/x?password=*** (refused; tcp://h:8786 is up)"
    )
    data = {"db": "postgresql://u:S3cret@h/x", "runs": [("mysql://u:S3cret@h/y", 1)], "n": 2.5}
    assert mask_secrets(data) == {
        "db": "postgresql://u:***@h/x", "runs": [("mysql://u:***@h/y", 1)], "n": 2.5
    }  # fmt: skip


def test_a_drivers_message_loses_every_form_of_the_password():
    url = "postgresql://u:S3c%40ret@h/x?password=Q1"
    err = RuntimeError('password authentication failed ("S3c@ret", "S3c%40ret", "Q1")')
    message = str(database_error(url, "cannot open the database", err))
    assert "S3c" not in message and "Q1" not in message
    assert message.startswith("postgresql://u:***@h/x?password=***: cannot open the database")


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://user:S3cretPW@127.0.0.1:55432/x",
        "postgresql://u@h/x?password=S3cretPW",
        "postgresql://user:S3cret@PW@127.0.0.1:55432/x",
        "mysql+pymysql://u:S3cret/PW@h/x",
        "nosuchdb://u:S3cretPW@h/x",
    ],
)
def test_no_error_line_shows_a_password(run_cli, tmp_path, monkeypatch, url):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli("measurements", "list", "--db", url)
    _one_error_line(code, err)
    assert "S3cret" not in out + err and "PW" not in out + err


def test_error_lines_and_crash_logs_mask_what_the_library_did_not(run_cli, tmp_path, monkeypatch):
    """A last line of defence: the CLI masks every error line and crash log it writes."""
    url = "postgresql://u:S3cret@h/x?password=S3c2"
    monkeypatch.setenv("EDGETRAN_LOG_DIR", str(tmp_path / "logs"))
    for error, code in ((EdgeTranError(f"cannot use {url}"), 2), (RuntimeError(url), 1)):

        def fail(*_args, error=error, **_kwargs):
            raise error

        monkeypatch.setattr("edgetran.store.Store", fail)
        got, out, err = run_cli("measurements", "list", "--db", "x.db")
        assert got == code and "S3c" not in out + err and "u:***@h/x?password=***" in err
    (log,) = (tmp_path / "logs").iterdir()
    assert "S3c" not in log.read_text() and "u:***@h" in log.read_text()


def test_json_output_is_masked(capsys):
    from edgetran.cli._common import print_json

    print_json({"config": {"db": "postgresql://u:S3cret@h/x"}})
    assert json.loads(capsys.readouterr().out) == {"config": {"db": "postgresql://u:***@h/x"}}


def test_study_attributes_hold_no_password(tmp_path):
    """A failure's reason (and any other text) is masked before Optuna stores it."""
    import optuna

    from edgetran.search import ReplayEvaluator, SearchSettings, run_search
    from edgetran.testing import synthetic_table

    url = "postgresql://user:S3cret@PW@db/x?password=S3c2"

    class Unreachable(ReplayEvaluator):
        def evaluate(self, pair):
            raise RuntimeError(f"cannot reach {url}")

    storage = f"sqlite:///{tmp_path / 'search.db'}"
    evaluator = Unreachable(synthetic_table(tmp_path / "t.jsonl", n_archs=4))
    result = run_search(
        evaluator, SearchSettings(sampler="random", budget=2, seed=0), storage=storage,
        study_name="s",
    )  # fmt: skip
    assert result.failures and "user:***@db/x?password=***" in result.failures[0].reason
    study = optuna.load_study(study_name="s", storage=storage)
    stored = json.dumps([study.user_attrs, *(t.user_attrs for t in study.trials)])
    assert "S3c" not in stored and "user:***@db" in stored


# -- item 9: a malformed URL --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("postgresql://u:S3cret@h:notaport/x", "its port is not a number"),
        ("postgresql://u:S3c@ret:99@h/x", "an '@' in the password must be written %40"),
        ("postgresql://u:S3c@ret@h:5432/x", "an '@' in the password must be written %40"),
        ("://nothing", "Could not parse"),
    ],
)
def test_a_malformed_url_is_one_typed_line(run_cli, tmp_path, monkeypatch, url, problem):
    with pytest.raises(StoreError, match="not a usable database URL") as caught:
        check_database_url(url)
    assert problem in str(caught.value) and "S3c" not in str(caught.value)
    from edgetran.testing import synthetic_table

    monkeypatch.chdir(tmp_path)
    table = synthetic_table(tmp_path / "t.jsonl", n_archs=4)
    search = ["search", "--benchmark", table, "--sampler", "random", "--budget", 2]
    for command in (["measurements", "list"], search):
        code, out, err = run_cli(*command, "--db", url)
        err = _one_error_line(code, err)
        assert problem in err and "S3c" not in out + err


# -- item 14b: reading commands create no database ----------------------------------------------
READING_COMMANDS = [
    ["measurements", "list", "--db", "DB"],
    ["measurements", "export", "--device", "d", "--format", "csv", "--out", "o.csv", "--db", "DB"],
    ["surrogate", "cv", "--measurements", "DB", "--format", "db", "--device", "d"],
    ["surrogate", "fit", "--measurements", "DB", "--format", "db", "--device", "d", "--out", "s"],
]


@pytest.mark.parametrize("command", READING_COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_reading_commands_never_create_a_database(run_cli, tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    for db in ("typo.db", "sqlite:///new/typo.db"):
        code, _, err = run_cli(*(db if arg == "DB" else arg for arg in command))
        assert _one_error_line(code, err) == f"error: no workspace database at {db}\n"
    assert not list(tmp_path.iterdir())  # no file, no folder


def test_the_default_database_is_no_exception(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli("measurements", "list")
    assert _one_error_line(code, err) == "error: no workspace database at edgetran.db\n"
    assert not list(tmp_path.iterdir())


def test_reading_an_empty_or_foreign_database_says_so(tmp_path):
    (tmp_path / "empty.db").write_bytes(b"")
    with pytest.raises(StoreError, match=r"^no workspace database at .*empty\.db \(it holds no "):
        Store(tmp_path / "empty.db", create=False)
    with Store(tmp_path / "w.db") as store:  # a writing command creates it
        assert store.count() == 0
    with Store(tmp_path / "w.db", create=False) as store:  # then reading it works
        assert store.count() == 0
