"""The workspace database: architectures, devices, measurements, trained models, evaluations
and grow-and-prune trees.

SQLite (``edgetran.db``) by default; any SQLAlchemy URL (e.g. PostgreSQL) for several machines,
with its driver installed (``pip install 'edgetran[postgres]'`` or ``'edgetran[mysql]'``).

Contract:
    - every write is one transaction: a crash loses at most the measurement in flight;
    - several processes may write at once: SQLite runs in WAL mode with a busy timeout, and
      architecture/device rows are inserted with "insert or ignore", so concurrent writers
      neither fail nor lose rows;
    - rows are never updated in place (but for the one-time upgrade below, and the seconds a
      co-design stage has run so far); a re-profile adds a new measurement; only a co-design
      run's own record (configuration, stages, progress) is ever deleted (``--restart``);
    - imports are idempotent: a measurement read from a file carries a ``source_key`` (file
      name and entry), and the same architecture, device, runtime, shape and source key is
      stored once. A database made before the key existed gains the column when opened; its
      older ProTran rows get their key from what they recorded, older CSV/Parquet rows none;
    - a URL shown in a message is masked (:mod:`edgetran.store.masking`): a password never
      reaches the terminal, a log or a report;
    - commands that only read open it with ``create=False``: a database that does not exist
      is an error, never a new, empty one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, SQLAlchemyError

from edgetran.errors import EdgeTranError, MissingDependencyError
from edgetran.store.masking import mask_credentials, mask_url, password_holds_at, url_secrets
from edgetran.store.records import SOURCE_KEY_LENGTH, Measurement, source_key

DEFAULT_DB = "edgetran.db"

metadata = MetaData()

architectures = Table(
    "architectures",
    metadata,
    Column("hash", String(64), primary_key=True),
    Column("model_dict", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
)

devices = Table(
    "devices",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("description", JSON, nullable=False, default=dict),
    Column("created_at", Float, nullable=False),
)

_MEASUREMENT_COLUMNS = [
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("hash", String(64), ForeignKey("architectures.hash"), nullable=False, index=True),
    Column("device", String(128), ForeignKey("devices.name"), nullable=False, index=True),
    Column("runtime", String(32), nullable=False),
    Column("batch_size", Integer, nullable=False),
    Column("seq_len", Integer, nullable=False),
    Column("latency_s", Float, nullable=False),
    Column("latency_s_per_seq", Float, nullable=False),
    Column("latency_ci95_s", JSON),
    Column("energy_j", Float),
    Column("energy_j_per_seq", Float),
    Column("dynamic_energy_j", Float),
    Column("idle_power_w", Float),
    Column("peak_power_w", Float),
    Column("power_samples", Integer),
    Column("power_period_s", Float),
    Column("meter", String(256), nullable=False),
    Column("meter_kind", String(16), nullable=False),
    Column("threads", Integer),
    Column("repeats", Integer),
    Column("warmup", Integer),
    Column("source", String(64), nullable=False),
    Column("environment", JSON),
    Column("extra", JSON),
    Column("created_at", Float, nullable=False),
    Column("source_key", String(SOURCE_KEY_LENGTH)),
    Column("other_cpu_cores", Float),
    Column("contended", Boolean),
]
#: Columns added after the first release, with their SQL types: an older database gains them
#: (empty) when opened.
_LATER_COLUMNS = {"other_cpu_cores": "FLOAT", "contended": "BOOLEAN"}
measurements = Table("measurements", metadata, *_MEASUREMENT_COLUMNS)
#: The natural key of an imported measurement (NULLs, i.e. profiler rows, never collide).
_NATURAL_KEY = ("hash", "device", "runtime", "batch_size", "seq_len", "source_key")
_natural_key_index = Index(
    "uq_measurements_source", *(measurements.c[name] for name in _NATURAL_KEY), unique=True
)

#: Pretrained checkpoints in the workspace, so a new model can start from its nearest neighbour.
trained_models = Table(
    "trained_models",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("hash", String(64), ForeignKey("architectures.hash"), nullable=False, index=True),
    Column("tokenizer", String(128), nullable=False, index=True),
    Column("path", String(1024), nullable=False),
    Column("steps", Integer, nullable=False),
    Column("loss", Float),
    Column("created_at", Float, nullable=False),
)

#: Accuracy-oracle results, keyed by what determines them (``task``: the task's content key,
#: :func:`edgetran.train.oracle.evaluation_key`, not its name or path).
evaluations = Table(
    "evaluations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("hash", String(64), ForeignKey("architectures.hash"), nullable=False, index=True),
    Column("task", String(1024), nullable=False),
    Column("budget", String(32), nullable=False),
    Column("seed", Integer, nullable=False),
    Column("result", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
)


def _runs_table(family: str, definition: str) -> Table:
    """``<family>_runs``: one row per run, with the JSON ``definition`` that defines it."""
    return Table(
        f"{family}_runs",
        metadata,
        Column("run", String(64), primary_key=True),
        Column(definition, JSON, nullable=False),
        Column("created_at", Float, nullable=False),
    )


def _run_records_table(family: str, key: Column) -> Table:
    """``<family>_<key>s``: a run's records, one per value of ``key``, each written once."""
    return Table(
        f"{family}_{key.name}s",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("run", String(64), ForeignKey(f"{family}_runs.run"), nullable=False, index=True),
        key,
        Column("record", JSON, nullable=False),
        Column("created_at", Float, nullable=False),
        Index(f"uq_{family}_{key.name}", "run", key.name, unique=True),
    )


#: Grow-and-prune searches: one row per search tree, with the settings that define it.
growprune_runs = _runs_table("growprune", "settings")
#: Nodes of a grow-and-prune tree: written once, when a child is trained (or refused untrained).
growprune_nodes = _run_records_table("growprune", Column("node", String(64), nullable=False))
#: One row per finished grow-and-prune iteration: its children and what was accepted, and why.
growprune_iterations = _run_records_table(
    "growprune", Column("iteration", Integer, nullable=False)
)
#: Co-design runs (``edgetran codesign``): the configuration that defines each run.
codesign_runs = _runs_table("codesign", "config")
#: One row per finished co-design stage: its result and how long it took.
codesign_stages = _run_records_table("codesign", Column("stage", String(32), nullable=False))

#: Seconds each attempt (one process) has spent on a co-design stage so far, written as the
#: stage goes: a killed attempt's time counts in the stage's total.
codesign_progress = Table(
    "codesign_progress",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run", String(64), ForeignKey("codesign_runs.run"), nullable=False, index=True),
    Column("stage", String(32), nullable=False),
    Column("attempt", String(32), nullable=False),
    Column("seconds", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Index("uq_codesign_progress", "run", "stage", "attempt", unique=True),
)

#: A classifier's accuracy as it runs in a runtime (``edgetran.codesign.runtime_accuracy``),
#: keyed by a digest of what determines it (weights, runtime, the task's examples, the shape).
artifact_accuracies = Table(
    "artifact_accuracies",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("runtime", String(128), nullable=False),
    Column("task", String(1024), nullable=False),
    Column("result", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
)


class StoreError(EdgeTranError):
    """The database cannot be opened or written."""


def database_url(db: str | Path | None) -> str:
    """A SQLAlchemy URL from a URL or a file path (default: ``edgetran.db`` here)."""
    if db is None:
        db = DEFAULT_DB
    text = str(db)
    return text if "://" in text else f"sqlite:///{text}"


#: The package that provides each driver module SQLAlchemy may import, where it differs.
_DRIVER_PACKAGES = {
    "psycopg": "'edgetran[postgres]'",
    "pymysql": "'edgetran[mysql]'",
    "psycopg2": "psycopg2-binary",
    "MySQLdb": "mysqlclient",
}


def check_database_url(url: str) -> None:
    """Raise a typed error, before any connection, if ``url`` cannot be parsed, names an
    unknown database or needs a driver that is not installed.

    Raises:
        StoreError: the URL is malformed (a port that is not a number, an ``@`` in the
            password not written ``%40``) or its database kind is unknown.
        MissingDependencyError: its driver is not installed (the message says what to install).
    """
    parsed = _parse_url(url)
    try:
        parsed.get_dialect().import_dbapi()
    except ArgumentError as err:  # NoSuchModuleError: an unknown dialect or driver
        raise _unusable(url, mask_credentials(str(err))) from None
    except ImportError as err:
        module = (err.name or parsed.get_driver_name()).split(".")[0]
        package = _DRIVER_PACKAGES.get(module, module)
        raise MissingDependencyError(
            f"{mask_url(url)}: {parsed.get_backend_name()} URLs need the {module!r} driver: "
            f"pip install {package}"
        ) from None


#: What to write instead of an ``@`` in a password (SQLAlchemy ends the password at the first).
_AT_IN_PASSWORD = "an '@' in the password must be written %40"


def _parse_url(url: str) -> URL:
    """SQLAlchemy's reading of ``url``; a malformed one is a :class:`StoreError`."""
    try:
        parsed = make_url(url)
    except ArgumentError as err:
        raise _unusable(url, mask_credentials(str(err))) from None
    except ValueError:  # int() of the port
        problem = _AT_IN_PASSWORD if password_holds_at(url) else "its port is not a number"
        raise _unusable(url, problem) from None
    if "@" in (parsed.host or ""):  # user:S3cret@PW@host: the host would be "PW@host"
        raise _unusable(url, _AT_IN_PASSWORD)
    return parsed


def _unusable(url: str, problem: str) -> StoreError:
    return StoreError(f"{mask_url(url)}: not a usable database URL ({problem})")


def database_error(url: str, what: str, err: Exception) -> StoreError:
    """A one-line :class:`StoreError`; the password is masked even inside the driver's text."""
    detail = str(err).splitlines()[0] if str(err) else ""
    for secret in url_secrets(url):
        detail = detail.replace(secret, "***")
    return StoreError(
        f"{mask_url(url)}: {what} ({err.__class__.__name__}: {mask_credentials(detail)})"
    )


def _sqlite_file(url: str) -> Path:
    """The file of a SQLite URL (``:memory:`` and ``sqlite://`` name no file)."""
    return Path(make_url(url).database or ":memory:")


def _no_workspace(db: str | Path | None, why: str = "") -> StoreError:
    shown = mask_url(str(db if db is not None else DEFAULT_DB))
    return StoreError(f"no workspace database at {shown}" + (f" ({why})" if why else ""))


def _make_parent(url: str) -> None:
    """Create the folder of a SQLite file, so ``--db new/dir/x.db`` just works."""
    path = url.split(":///", 1)[-1]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.close()


def _add_source_keys(engine: Engine) -> None:
    """Bring a database made before ``source_key`` existed up to date, in one transaction:
    the column, its unique index, and keys for the ProTran rows (from the file name and entry
    they recorded). A row imported twice back then keeps one keyed copy; the other stays."""
    if _has_source_key(engine):
        return
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    f"ALTER TABLE measurements ADD COLUMN source_key VARCHAR({SOURCE_KEY_LENGTH})"
                )
            )
            _key_protran_rows(conn)
            _natural_key_index.create(conn)
    except SQLAlchemyError:
        if not _has_source_key(engine):  # else another process upgraded it just now
            raise


def _add_later_columns(engine: Engine) -> None:
    """Add the columns of :data:`_LATER_COLUMNS` that an older database lacks."""
    present = {c["name"] for c in inspect(engine).get_columns("measurements")}
    for name, sql_type in _LATER_COLUMNS.items():
        if name in present:
            continue
        try:
            with engine.begin() as conn:
                conn.execute(text(f"ALTER TABLE measurements ADD COLUMN {name} {sql_type}"))
        except SQLAlchemyError:
            columns = inspect(engine).get_columns("measurements")
            if not any(c["name"] == name for c in columns):  # else another process added it
                raise


def _has_source_key(engine: Engine) -> bool:
    return any(c["name"] == "source_key" for c in inspect(engine).get_columns("measurements"))


def _key_protran_rows(conn: Connection) -> None:
    columns = [measurements.c[name] for name in _NATURAL_KEY[:-1]]
    query = (
        select(measurements.c.id, measurements.c.extra, *columns)
        .where(measurements.c.source == "protran")
        .order_by(measurements.c.id)
    )
    seen = set()
    for row in conn.execute(query).all():
        extra = _decode(row._mapping, "extra")["extra"] or {}
        if "file" not in extra or "protran_key" not in extra:
            continue
        key = source_key(extra["file"], extra["protran_key"])
        natural = (*(row._mapping[c.name] for c in columns), key)
        if natural in seen:
            continue
        seen.add(natural)
        conn.execute(
            update(measurements).where(measurements.c.id == row.id).values(source_key=key)
        )


class Store:
    """Access to one workspace database.

    Args:
        db: a SQLAlchemy URL or a path to a SQLite file.
        create: create the database (a SQLite file and its folder) and its tables if missing;
            ``False`` for commands that only read it, so that a mistyped ``--db`` is an error
            rather than a new, empty workspace.

    Raises:
        StoreError: the URL is unusable, the database cannot be opened, or (``create=False``)
            there is no workspace database there.
    """

    def __init__(self, db: str | Path | None = None, *, create: bool = True) -> None:
        self.url = database_url(db)
        check_database_url(self.url)
        sqlite = make_url(self.url).get_backend_name() == "sqlite"
        if not create and sqlite and not _sqlite_file(self.url).is_file():
            raise _no_workspace(db)
        try:
            if sqlite:
                _make_parent(self.url)
                self.engine = create_engine(self.url, connect_args={"timeout": 60})
                _configure_sqlite(self.engine)
            else:
                self.engine = create_engine(self.url, pool_pre_ping=True)
            if not create and not inspect(self.engine).has_table(measurements.name):
                self.engine.dispose()
                raise _no_workspace(db, "it holds no edgetran tables")
            metadata.create_all(self.engine)
            _add_source_keys(self.engine)
            _add_later_columns(self.engine)
        except SQLAlchemyError as err:
            raise database_error(self.url, "cannot open the database", err) from None

    def close(self) -> None:
        """Release the database's connections."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writes ---------------------------------------------------------------------------------
    def add(self, measurement: Measurement) -> int | None:
        """Store one measurement (and its architecture and device) in one transaction; its row
        id, or ``None`` if it was stored already."""
        return self.add_many([measurement])[0]

    def add_many(self, items: Iterable[Measurement]) -> list[int | None]:
        """Store measurements atomically: all of them or none. Each one's new row id, or
        ``None`` where the same measurement (same natural key) is already stored."""
        ids: list[int | None] = []
        now = time.time()
        with self.engine.begin() as conn:
            for m in items:
                m.validate()
                if m.source_key is not None and self._stored(conn, m):
                    ids.append(None)
                    continue
                self._ensure(
                    conn,
                    architectures,
                    {"hash": m.hash, "model_dict": m.model_dict, "created_at": now},
                )
                self._ensure(
                    conn, devices, {"name": m.device, "description": {}, "created_at": now}
                )
                row = m.to_dict()
                row.pop("id")
                row.pop("model_dict")
                row["created_at"] = row["created_at"] or now
                ids.append(self._insert_measurement(conn, row))
        return ids

    @staticmethod
    def _stored(conn: Connection, m: Measurement) -> bool:
        key = [measurements.c[name] == getattr(m, name) for name in _NATURAL_KEY]
        return conn.execute(select(measurements.c.id).where(*key)).first() is not None

    @staticmethod
    def _insert_measurement(conn: Connection, row: dict[str, Any]) -> int | None:
        """The new row's id; ``None`` if a concurrent writer stored the same key first."""
        if row["source_key"] is None:
            return conn.execute(insert(measurements).values(**row)).inserted_primary_key[0]
        try:
            with conn.begin_nested():
                return conn.execute(insert(measurements).values(**row)).inserted_primary_key[0]
        except IntegrityError:
            return None

    def add_device(self, name: str, description: dict[str, Any] | None = None) -> None:
        """Register a device (once; a second call keeps the first row)."""
        with self.engine.begin() as conn:
            self._ensure(
                conn,
                devices,
                {"name": name, "description": description or {}, "created_at": time.time()},
            )

    def add_trained_model(
        self,
        model_dict: dict[str, Any],
        hash: str,
        *,
        tokenizer: str,
        path: str,
        steps: int,
        loss: float | None,
    ) -> None:
        """Register a pretrained checkpoint (once per path; one transaction)."""
        if any(entry["path"] == path for entry in self.trained_models(tokenizer)):
            return
        self._insert_with_architecture(
            trained_models, model_dict, hash, tokenizer=tokenizer, path=path, steps=steps,
            loss=loss,
        )  # fmt: skip

    def trained_models(self, tokenizer: str | None = None) -> list[dict[str, Any]]:
        """Registered checkpoints (with their ``model_dict``), oldest first."""
        query = (
            select(trained_models, architectures.c.model_dict)
            .join(architectures, architectures.c.hash == trained_models.c.hash)
            .order_by(trained_models.c.id)
        )
        if tokenizer is not None:
            query = query.where(trained_models.c.tokenizer == tokenizer)
        with self.engine.connect() as conn:
            return [_decode(row._mapping, "model_dict") for row in conn.execute(query)]

    def add_evaluation(
        self,
        model_dict: dict[str, Any],
        hash: str,
        *,
        task: str,
        budget: str,
        seed: int,
        result: dict[str, Any],
    ) -> None:
        """Store an accuracy-oracle result for an architecture (created if new)."""
        self._insert_with_architecture(
            evaluations, model_dict, hash, task=task, budget=budget, seed=seed, result=result
        )

    def _insert_with_architecture(
        self, table: Table, model_dict: dict[str, Any], hash: str, **values: Any
    ) -> None:
        """Insert a row of ``table`` about an architecture (created if new), atomically."""
        now = time.time()
        with self.engine.begin() as conn:
            self._ensure(
                conn, architectures, {"hash": hash, "model_dict": model_dict, "created_at": now}
            )
            conn.execute(insert(table).values(hash=hash, created_at=now, **values))

    def evaluation(self, hash: str, *, task: str, budget: str, seed: int) -> dict | None:
        """The latest stored result for this architecture, task, budget and seed, if any."""
        query = (
            select(evaluations.c.result)
            .where(
                evaluations.c.hash == hash,
                evaluations.c.task == task,
                evaluations.c.budget == budget,
                evaluations.c.seed == seed,
            )
            .order_by(evaluations.c.id.desc())
        )
        return self._first(query)

    # -- grow-and-prune trees ---------------------------------------------------------------
    def add_growprune_run(self, run: str, settings: dict[str, Any]) -> None:
        """Register a grow-and-prune search (once; a second call keeps the first row)."""
        self._register(growprune_runs, run=run, settings=settings)

    def growprune_run(self, run: str) -> dict[str, Any] | None:
        """The settings of a registered grow-and-prune search, or ``None``."""
        return self._first(select(growprune_runs.c.settings).where(growprune_runs.c.run == run))

    def add_growprune_node(self, run: str, node: str, record: dict[str, Any]) -> bool:
        """Store a tree node once; ``False`` if the run already holds it."""
        return self._insert_once(growprune_nodes, run=run, node=node, record=record)

    def add_growprune_iteration(self, run: str, iteration: int, record: dict[str, Any]) -> bool:
        """Store a finished iteration once; ``False`` if the run already holds it."""
        return self._insert_once(growprune_iterations, run=run, iteration=iteration, record=record)

    def growprune_nodes(self, run: str) -> list[dict[str, Any]]:
        """The run's node records, in the order they were stored."""
        return self._records(growprune_nodes, run)

    def growprune_iterations(self, run: str) -> list[dict[str, Any]]:
        """The run's iteration records, in order."""
        return self._records(growprune_iterations, run)

    # -- co-design runs ------------------------------------------------------------------------
    def add_codesign_run(self, run: str, config: dict[str, Any]) -> None:
        """Register a co-design run (once; a second call keeps the first row)."""
        self._register(codesign_runs, run=run, config=config)

    def codesign_run(self, run: str) -> dict[str, Any] | None:
        """The configuration of a registered co-design run, or ``None``."""
        return self._first(select(codesign_runs.c.config).where(codesign_runs.c.run == run))

    def add_codesign_stage(self, run: str, stage: str, record: dict[str, Any]) -> bool:
        """Store a finished stage once; ``False`` if the run already holds it."""
        return self._insert_once(codesign_stages, run=run, stage=stage, record=record)

    def codesign_stages(self, run: str) -> dict[str, dict[str, Any]]:
        """The run's finished stages, ``stage → record``, in the order they finished."""
        query = (
            select(codesign_stages.c.stage, codesign_stages.c.record)
            .where(codesign_stages.c.run == run)
            .order_by(codesign_stages.c.id)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return {r[0]: _from_json(r[1]) for r in rows}

    def record_codesign_progress(self, run: str, stage: str, attempt: str, seconds: float) -> None:
        """Record that ``attempt`` has spent ``seconds`` on ``stage`` so far."""
        where = (
            codesign_progress.c.run == run,
            codesign_progress.c.stage == stage,
            codesign_progress.c.attempt == attempt,
        )
        values = {"seconds": seconds, "updated_at": time.time()}
        with self.engine.begin() as conn:
            if conn.execute(update(codesign_progress).where(*where).values(**values)).rowcount:
                return
            conn.execute(
                insert(codesign_progress).values(run=run, stage=stage, attempt=attempt, **values)
            )

    def codesign_stage_seconds(self, run: str, stage: str) -> float:
        """Seconds every recorded attempt has spent on ``stage`` of the run, together."""
        query = select(func.coalesce(func.sum(codesign_progress.c.seconds), 0.0)).where(
            codesign_progress.c.run == run, codesign_progress.c.stage == stage
        )
        with self.engine.connect() as conn:
            return float(conn.execute(query).scalar_one())

    def delete_codesign_run(self, run: str) -> None:
        """Forget a co-design run: its stages, their progress and its configuration, in one
        transaction (measurements, evaluations and trained models stay in the workspace)."""
        with self.engine.begin() as conn:
            for table in (codesign_stages, codesign_progress):
                conn.execute(delete(table).where(table.c.run == run))
            conn.execute(delete(codesign_runs).where(codesign_runs.c.run == run))

    # -- accuracy in a runtime ---------------------------------------------------------------
    def add_artifact_accuracy(
        self, key: str, *, runtime: str, task: str, result: dict[str, Any]
    ) -> bool:
        """Store an artifact's accuracy once; ``False`` if ``key`` is stored already."""
        return self._insert_once(
            artifact_accuracies, key=key, runtime=runtime, task=task, result=result
        )

    def artifact_accuracy(self, key: str) -> dict[str, Any] | None:
        """The stored accuracy under ``key``, or ``None``."""
        return self._first(
            select(artifact_accuracies.c.result).where(artifact_accuracies.c.key == key)
        )

    def _register(self, table: Table, **values: Any) -> None:
        """Insert a run's row once (a second call keeps the first row)."""
        with self.engine.begin() as conn:
            self._ensure(conn, table, {**values, "created_at": time.time()})

    def _first(self, query: Any) -> Any:
        """The JSON value of the query's first row, or ``None`` when there is none."""
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else _from_json(row[0])

    def _insert_once(self, table: Table, **values: Any) -> bool:
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(table).values(created_at=time.time(), **values))
        except IntegrityError:
            return False
        return True

    def _records(self, table: Table, run: str) -> list[dict[str, Any]]:
        query = select(table.c.record).where(table.c.run == run).order_by(table.c.id)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [_from_json(r[0]) for r in rows]

    @staticmethod
    def _ensure(conn: Connection, table: Table, row: dict[str, Any]) -> None:
        """Insert ``row`` unless its primary key exists (safe under concurrent writers)."""
        key = table.primary_key.columns.values()[0]
        if conn.execute(select(key).where(key == row[key.name])).first() is not None:
            return
        try:
            with conn.begin_nested():
                conn.execute(insert(table).values(**row))
        except IntegrityError:
            pass  # another writer inserted it between our select and insert

    # -- reads ----------------------------------------------------------------------------------
    def measurements(
        self,
        device: str | None = None,
        *,
        runtime: str | None = None,
        batch_size: int | None = None,
        seq_len: int | None = None,
        hash: str | None = None,
    ) -> list[Measurement]:
        """Measurements in insertion order, optionally filtered."""
        query = (
            select(measurements, architectures.c.model_dict)
            .join(architectures, architectures.c.hash == measurements.c.hash)
            .order_by(measurements.c.id)
        )
        for column, value in (
            ("device", device),
            ("runtime", runtime),
            ("batch_size", batch_size),
            ("seq_len", seq_len),
            ("hash", hash),
        ):
            if value is not None:
                query = query.where(measurements.c[column] == value)
        with self.engine.connect() as conn:
            return [_to_measurement(row._mapping) for row in conn.execute(query)]

    def iter_devices(self) -> Iterator[dict[str, Any]]:
        """Every registered device with its description."""
        with self.engine.connect() as conn:
            for row in conn.execute(select(devices).order_by(devices.c.name)):
                yield dict(row._mapping)

    def summary(self) -> list[dict[str, Any]]:
        """Per (device, runtime, batch, sequence): number of measurements and meters used."""
        groups: dict[tuple, dict[str, Any]] = {}
        for m in self.measurements():
            key = (m.device, m.runtime, m.batch_size, m.seq_len)
            group = groups.setdefault(
                key,
                {
                    "device": m.device,
                    "runtime": m.runtime,
                    "batch_size": m.batch_size,
                    "seq_len": m.seq_len,
                    "count": 0,
                    "meters": set(),
                    "sources": set(),
                },
            )
            group["count"] += 1
            group["meters"].add(f"{m.meter} ({m.meter_kind})")
            group["sources"].add(m.source)
        return [
            {**g, "meters": sorted(g["meters"]), "sources": sorted(g["sources"])}
            for g in groups.values()
        ]

    def count(self) -> int:
        """The number of stored measurements."""
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(measurements)).scalar_one()


def _from_json(value: Any) -> Any:
    """A JSON column's value (a string where the driver returns one undecoded)."""
    return json.loads(value) if isinstance(value, str) else value


def _decode(row: Any, *json_columns: str) -> dict[str, Any]:
    data = dict(row)
    for key in json_columns:
        if isinstance(data.get(key), str):
            data[key] = json.loads(data[key])
    return data


def _to_measurement(row: Any) -> Measurement:
    data = _decode(row, "environment", "extra", "model_dict", "latency_ci95_s")
    data["environment"] = data.get("environment") or {}
    data["extra"] = data.get("extra") or {}
    return Measurement.from_dict(data)
