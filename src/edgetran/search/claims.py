"""Claims: which search process evaluates which pair of a study, decided atomically.

Several processes may run one search (``edgetran search … --db URL --study NAME --resume``,
any SQLAlchemy URL). Two of them that read the study at the same moment would propose the
same pair, or both spend the budget's last evaluation. So before a process evaluates a pair
(or trains a pair again: key ``<pair key>#run<k>``, :func:`run_key`) it *claims* the pair's
key: one INSERT into a small table of the study's database, whose primary key is
``(study, key)`` and which also takes a numbered *slot*, unique per study; a new claim takes
the lowest free slot and only a slot below the budget. The database's unique constraints make
the claim atomic (SQLite and PostgreSQL alike): of two processes that claim one pair, or the
last slot, one insert fails and that process proposes another pair, or stops. So no pair is
claimed twice and a study's claims never exceed its budget.

A claim is ``pending`` while its evaluation runs and ``done`` once the evaluation (or its
failure) is stored in the study; a done claim is never released, so a pair is evaluated once
(but for a search whose evaluations all failed: resumed, it forgets their claims and tries the
pairs again).

Liveness. Each process registers an *owner* row (host, process id) and refreshes its
heartbeat every :data:`HEARTBEAT_S` seconds from a thread of its own, whatever its evaluations
are doing. Another process takes an owner for dead when its row is gone, when it ran on the
same host (and PID namespace) and its process no longer exists, or when it has seen the
owner's heartbeat stand still for :data:`STALE_AFTER_S` seconds of its own clock (so the
machines' clocks need not agree). A dead owner's pending claims are *reaped*: released when
their evaluation was not stored, so the pair can be claimed and evaluated again (none is
lost), marked done when it was (none is repeated).

The tables, created on first use in the study's database:

- ``edgetran_search_claims``: ``study``, ``key`` (primary key), ``slot`` (unique per
  study), ``owner``, ``state`` (``pending`` or ``done``), ``created_at``;
- ``edgetran_search_owners``: ``owner`` (primary key), ``study``, ``host``, ``pid``,
  ``heartbeat_at``.

An in-memory study has one process: :class:`LocalClaims` keeps the same books in a dict.

Several machines on one PostgreSQL database (``pip install 'edgetran[postgres]'``)::

    # on each machine, the same command (same settings, same study name):
    export DB=postgresql+psycopg://user:PASSWORD@host/edgetran
    edgetran search --benchmark t.jsonl --budget 200 --parallel 4 --db $DB --study s --resume

The first to arrive creates the study (the others wait up to ``SETTINGS_WAIT_S`` for its
settings); every process returns once the study holds the budget's evaluations and none is
in flight anywhere. Claims need nothing of PostgreSQL beyond its unique constraints (any
isolation level will do), and the machines' clocks need not agree. A machine that dies
releases its pairs to the others after :data:`STALE_AFTER_S` seconds (a process of the same
host at once: its PID is gone, once its parent has reaped it). SQLite serves several
processes of one machine (WAL mode, a busy timeout); a SQLite file on a network share does
not (WAL needs shared memory).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import (
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    insert,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from edgetran.store.database import StoreError, database_error

#: Outcomes of :meth:`LocalClaims.claim` / :meth:`DatabaseClaims.claim`.
CLAIMED, TAKEN, FULL = "claimed", "taken", "full"
PENDING, DONE = "pending", "done"
#: Seconds between two heartbeats of a search process.
HEARTBEAT_S = 5.0
#: Seconds a heartbeat may stand still before its owner is taken for dead (twelve beats).
STALE_AFTER_S = 60.0
#: SQLite waits this long for another process's write lock before "database is locked".
SQLITE_TIMEOUT_S = 60.0
#: Longest study name or key stored as is (longer ones are stored as their SHA-256).
KEY_LENGTH = 255
#: Inserts retried when another process took the chosen slot at the same moment.
MAX_CLAIM_ATTEMPTS = 50

_metadata = MetaData()
claims_table = Table(
    "edgetran_search_claims",
    _metadata,
    Column("study", String(KEY_LENGTH), primary_key=True),
    Column("key", String(KEY_LENGTH), primary_key=True),
    Column("slot", Integer, nullable=False),
    Column("owner", String(32), nullable=False),
    Column("state", String(8), nullable=False),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("study", "slot", name="uq_edgetran_search_claims_slot"),
)
owners_table = Table(
    "edgetran_search_owners",
    _metadata,
    Column("owner", String(32), primary_key=True),
    Column("study", String(KEY_LENGTH), nullable=False, index=True),
    Column("host", String(KEY_LENGTH), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("heartbeat_at", Float, nullable=False),
)


def new_owner() -> str:
    """A fresh owner id (one per :func:`~edgetran.search.study.run_search` call)."""
    return uuid.uuid4().hex


def run_key(pair_key: str, run: int) -> str:
    """The claim key of training run ``run`` of a pair (a re-evaluation)."""
    return f"{pair_key}#run{run}"


def pair_of(key: str) -> tuple[str, int | None]:
    """``(pair key, run)`` of a claim key; ``run`` is ``None`` for a pair's evaluation."""
    head, sep, tail = key.rpartition("#run")
    if sep and tail.isdigit():
        return head, int(tail)
    return key, None


def _stored(text: str) -> str:
    """``text`` as stored in a key column: itself, or its SHA-256 when too long."""
    if len(text) <= KEY_LENGTH:
        return text
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Snapshot:
    """A study's claims at one moment: every claimed key, and the pending ones' owners."""

    keys: frozenset[str]
    pending: dict[str, str] = field(default_factory=dict)

    @property
    def count(self) -> int:
        """How many keys are claimed."""
        return len(self.keys)


@dataclass(frozen=True)
class Owners:
    """Other owners of a study: the dead ones, and how many live ones."""

    dead: frozenset[str]
    live: frozenset[str]


class LocalClaims:
    """The claims of a search that only one process sees (an in-memory study)."""

    shared = False
    lost = False

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self._state: dict[str, str] = {}

    def purge(self) -> None:
        """Forget every claim (a study created afresh)."""
        self._state.clear()

    def register(self) -> None:
        """Nothing to announce: no other process sees this study."""

    def claim(self, key: str, limit: int) -> str:
        """Claim ``key`` while fewer than ``limit`` are claimed: CLAIMED, TAKEN or FULL."""
        if key in self._state:
            return TAKEN
        if len(self._state) >= limit:
            return FULL
        self._state[key] = PENDING
        return CLAIMED

    def finish(self, key: str) -> None:
        """Mark ``key``'s evaluation stored."""
        self._state[key] = DONE

    def release(self, key: str) -> None:
        """Give back ``key`` while its evaluation is pending."""
        if self._state.get(key) == PENDING:
            del self._state[key]

    def backfill(self, keys: Iterable[str]) -> None:
        """Mark ``keys`` stored (evaluations read from the study)."""
        for key in keys:
            self._state.setdefault(key, DONE)

    def forget(self, keys: Iterable[str]) -> None:
        """Drop the stored ``keys`` (failures tried again)."""
        for key in keys:
            if self._state.get(key) == DONE:
                del self._state[key]

    def count(self) -> int:
        """How many keys are claimed."""
        return len(self._state)

    def snapshot(self) -> Snapshot:
        """Every claimed key, and the pending ones' owner (this process)."""
        pending = {k: self.owner for k, s in self._state.items() if s == PENDING}
        return Snapshot(frozenset(self._state), pending)

    def owners(self, candidates: Iterable[str]) -> Owners:
        """No other owner: no other process sees this study."""
        return Owners(frozenset(), frozenset())

    def reap(self, owner: str, finished: set[str]) -> None:
        """Nothing to reap: this process is the only owner."""

    def close(self) -> None:
        """Forget every claim."""
        self._state.clear()


class DatabaseClaims:
    """The claims of a study in its SQL database (see the module's docstring).

    Args:
        url: the study's SQLAlchemy URL (never shown unmasked).
        study: the study's name.
        owner: this search's owner id (:func:`new_owner`).
    """

    shared = True

    def __init__(self, url: str, study: str, owner: str) -> None:
        self.url, self.study, self.owner = url, _stored(study), owner
        kwargs: dict = {"pool_pre_ping": True}  # a server may drop idle connections in hours
        if make_url(url).get_backend_name() == "sqlite":
            # the heartbeat thread and the loop share the pool; SQLite waits for locks
            kwargs["connect_args"] = {"timeout": SQLITE_TIMEOUT_S, "check_same_thread": False}
        self.engine = create_engine(url, **kwargs)
        configure_sqlite(self.engine)
        self.lost = False  # set when another process took this one for dead
        self._ready = False
        self._seen: dict[str, tuple[float, float]] = {}  # owner → (heartbeat, first seen at)
        self._stop = threading.Event()
        self._beats: threading.Thread | None = None

    # -- set-up ---------------------------------------------------------------------------------
    def purge(self) -> None:
        """Forget every claim and other owner of this study name (a new study of an old name)."""
        with self._transaction("cannot reset the search's claims") as conn:
            conn.execute(delete(claims_table).where(claims_table.c.study == self.study))
            conn.execute(
                delete(owners_table).where(
                    owners_table.c.study == self.study, owners_table.c.owner != self.owner
                )
            )

    def register(self) -> None:
        """Announce this owner and start its heartbeat thread."""
        with self._transaction("cannot register the search process") as conn:
            conn.execute(
                insert(owners_table).values(
                    owner=self.owner,
                    study=self.study,
                    host=host_id(),
                    pid=os.getpid(),
                    heartbeat_at=time.time(),
                )
            )
        self._beats = threading.Thread(
            target=self._beat, name=f"edgetran-heartbeat-{self.owner[:8]}", daemon=True
        )
        self._beats.start()

    def close(self) -> None:
        """Stop the heartbeat, release this owner's pending claims and unregister it."""
        self._stop.set()
        if self._beats is not None:
            self._beats.join(timeout=HEARTBEAT_S)
        try:
            if self._ready:
                with self._transaction("cannot release the search's claims") as conn:
                    conn.execute(
                        delete(claims_table).where(
                            claims_table.c.study == self.study,
                            claims_table.c.owner == self.owner,
                            claims_table.c.state == PENDING,
                        )
                    )
                    conn.execute(delete(owners_table).where(owners_table.c.owner == self.owner))
        finally:
            self.engine.dispose()

    # -- claims ---------------------------------------------------------------------------------
    def claim(self, key: str, limit: int) -> str:
        """:data:`CLAIMED` (``key`` is now this owner's), :data:`TAKEN` (someone claimed it
        before) or :data:`FULL` (the study holds ``limit`` claims)."""
        key = _stored(key)
        for _ in range(MAX_CLAIM_ATTEMPTS):
            rows = self._rows()
            if key in rows:
                return TAKEN
            slot = _lowest_free(set(rows.values()))
            if len(rows) >= limit or slot >= limit:
                return FULL
            try:
                self._insert(key, slot, PENDING)
                return CLAIMED
            except IntegrityError:  # the key or the slot went meanwhile: read again
                continue
        raise StoreError(f"search claims: no free slot after {MAX_CLAIM_ATTEMPTS} attempts")

    def finish(self, key: str) -> None:
        """The claim's evaluation is stored: it is never released."""
        with self._transaction("cannot record a finished claim") as conn:
            conn.execute(
                update(claims_table)
                .where(
                    claims_table.c.study == self.study,
                    claims_table.c.key == _stored(key),
                    claims_table.c.owner == self.owner,
                )
                .values(state=DONE)
            )

    def release(self, key: str) -> None:
        """Give a pending claim of this owner back (nothing was stored for it)."""
        with self._transaction("cannot release a claim") as conn:
            conn.execute(
                delete(claims_table).where(
                    claims_table.c.study == self.study,
                    claims_table.c.key == _stored(key),
                    claims_table.c.owner == self.owner,
                    claims_table.c.state == PENDING,
                )
            )

    def backfill(self, keys: Iterable[str]) -> None:
        """Done claims for evaluations stored without one (a study from before claims)."""
        wanted = {_stored(k) for k in keys}
        for _ in range(MAX_CLAIM_ATTEMPTS):
            rows = self._rows()
            missing = sorted(wanted - set(rows))
            if not missing:
                return
            free = _free_slots(set(rows.values()), len(missing))
            try:
                with self.engine.begin() as conn:
                    for key, slot in zip(missing, free, strict=True):
                        conn.execute(self._insert_statement(key, slot, DONE))
            except IntegrityError:  # another process claimed or backfilled meanwhile
                continue
            except SQLAlchemyError as err:
                raise database_error(self.url, "cannot record the study's claims", err) from None
        raise StoreError(f"search claims: cannot record {len(wanted)} stored evaluations")

    def forget(self, keys: Iterable[str]) -> None:
        """Drop the done claims of ``keys`` (failures tried again): their pairs and slots are
        free once more."""
        stored = [_stored(k) for k in keys]
        with self._transaction("cannot free the failed pairs' claims") as conn:
            conn.execute(
                delete(claims_table).where(
                    claims_table.c.study == self.study,
                    claims_table.c.key.in_(stored),
                    claims_table.c.state == DONE,
                )
            )

    def count(self) -> int:
        """How many keys this study has claimed."""
        return len(self._rows())

    def snapshot(self) -> Snapshot:
        """Every claimed key of the study, and the pending ones' owners."""
        with self._connection("cannot read the search's claims") as conn:
            rows = conn.execute(
                select(claims_table.c.key, claims_table.c.owner, claims_table.c.state).where(
                    claims_table.c.study == self.study
                )
            ).all()
        pending = {r.key: r.owner for r in rows if r.state == PENDING}
        return Snapshot(frozenset(r.key for r in rows), pending)

    # -- liveness -------------------------------------------------------------------------------
    def owners(self, candidates: Iterable[str]) -> Owners:
        """Which other owners are dead (``candidates``, the owners of running trials and
        pending claims, and every registered one) and which are live."""
        with self._connection("cannot read the search's processes") as conn:
            rows = conn.execute(select(owners_table).where(owners_table.c.study == self.study))
            rows = rows.all()
        now, here = time.monotonic(), host_id()
        dead, live = set(), set()
        for row in rows:
            if row.owner == self.owner:
                continue
            seen = self._seen.get(row.owner)
            if seen is None or seen[0] != row.heartbeat_at:
                self._seen[row.owner] = seen = (row.heartbeat_at, now)
            if (row.host == here and not _pid_running(row.pid)) or now - seen[1] > STALE_AFTER_S:
                dead.add(row.owner)
            else:
                live.add(row.owner)
        registered = {row.owner for row in rows}
        dead |= {o for o in candidates if o != self.owner and o not in registered}
        return Owners(frozenset(dead), frozenset(live))

    def reap(self, owner: str, finished: set[str]) -> None:
        """Release dead ``owner``'s pending claims, but mark done those whose evaluation is
        ``finished`` (stored in the study); then unregister it."""
        stored = {_stored(k) for k in finished}
        with self._transaction("cannot release a dead process's claims") as conn:
            mine = (claims_table.c.study == self.study, claims_table.c.owner == owner)
            keys = conn.execute(
                select(claims_table.c.key).where(*mine, claims_table.c.state == PENDING)
            ).scalars()
            done = [k for k in keys if k in stored]
            if done:
                conn.execute(
                    update(claims_table)
                    .where(*mine, claims_table.c.key.in_(done))
                    .values(state=DONE)
                )
            conn.execute(delete(claims_table).where(*mine, claims_table.c.state == PENDING))
            conn.execute(delete(owners_table).where(owners_table.c.owner == owner))
        self._seen.pop(owner, None)

    # -- helpers --------------------------------------------------------------------------------
    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                with self.engine.begin() as conn:
                    beat = conn.execute(
                        update(owners_table)
                        .where(owners_table.c.owner == self.owner)
                        .values(heartbeat_at=time.time())
                    )
                if beat.rowcount == 0:  # reaped: another process took this one for dead
                    self.lost = True
                    return
            except SQLAlchemyError:  # a busy or briefly unreachable database: beat again later
                continue

    def _rows(self) -> dict[str, int]:
        with self._connection("cannot read the search's claims") as conn:
            rows = conn.execute(
                select(claims_table.c.key, claims_table.c.slot).where(
                    claims_table.c.study == self.study
                )
            ).all()
        return {r.key: r.slot for r in rows}

    def _insert_statement(self, key: str, slot: int, state: str):
        return insert(claims_table).values(
            study=self.study,
            key=key,
            slot=slot,
            owner=self.owner,
            state=state,
            created_at=time.time(),
        )

    def _insert(self, key: str, slot: int, state: str) -> None:
        self._ensure_tables()
        try:
            with self.engine.begin() as conn:
                conn.execute(self._insert_statement(key, slot, state))
        except IntegrityError:
            raise
        except SQLAlchemyError as err:
            raise database_error(self.url, "cannot claim a pair", err) from None

    def _ensure_tables(self) -> None:
        if self._ready:
            return
        try:
            _metadata.create_all(self.engine)
        except SQLAlchemyError:  # another process created them between the check and ours
            try:
                _metadata.create_all(self.engine)
            except SQLAlchemyError as err:
                raise database_error(self.url, "cannot create the search's claims", err) from None
        self._ready = True

    @contextlib.contextmanager
    def _transaction(self, what: str) -> Iterator:
        self._ensure_tables()
        try:
            with self.engine.begin() as conn:
                yield conn
        except SQLAlchemyError as err:
            raise database_error(self.url, what, err) from None

    @contextlib.contextmanager
    def _connection(self, what: str) -> Iterator:
        self._ensure_tables()
        try:
            with self.engine.connect() as conn:
                yield conn
        except SQLAlchemyError as err:
            raise database_error(self.url, what, err) from None


def configure_sqlite(engine) -> None:
    """On a SQLite engine (nothing elsewhere): every connection waits up to
    :data:`SQLITE_TIMEOUT_S` for another process's lock, and the database runs in WAL mode
    with ``synchronous=NORMAL``, as the workspace store's does: readers do not block the
    writer, and a commit costs no disk flush (a power cut may lose the last evaluations
    stored, never the database). Connections opened before are dropped."""
    if engine.dialect.name != "sqlite":
        return

    def _on_connect(dbapi_connection, _record) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_TIMEOUT_S * 1000)}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    event.listen(engine, "connect", _on_connect)
    engine.dispose()


def _lowest_free(slots: set[int]) -> int:
    return _free_slots(slots, 1)[0]


def _free_slots(slots: set[int], n: int) -> list[int]:
    """The ``n`` lowest non-negative integers not in ``slots``."""
    free, slot = [], 0
    while len(free) < n:
        if slot not in slots:
            free.append(slot)
        slot += 1
    return free


def host_id() -> str:
    """This host and PID namespace: where :func:`_pid_running` can tell whether a process
    lives (the host name alone would let two containers confuse their PIDs)."""
    parts = [socket.gethostname()]
    with contextlib.suppress(OSError):
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
    with contextlib.suppress(OSError):
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
    return "/".join(parts)[:KEY_LENGTH]


def _pid_running(pid: int) -> bool:
    """Whether process ``pid`` exists here (POSIX; elsewhere assumed, and the heartbeat
    decides)."""
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, as another user's
        return True
    return True
