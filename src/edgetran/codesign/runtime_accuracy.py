"""The accuracy of a classifier as it runs in a runtime: a pair's accuracy is its model's
accuracy there, int8 included.

:func:`artifact_accuracy` exports a fine-tuned classifier (a ``save_pretrained`` folder with its
tokenizer, as :func:`~edgetran.train.oracle.train_classifier` and the oracle's kept classifiers
write) to the runtime's format, checks on the task's dev split that it predicts PyTorch's labels
(:func:`~edgetran.export.verify.verify_labels`: the verification of int8, which no tensor
tolerance fits), and scores a split through the runtime's runner with the oracle's metric and
bootstrap. What finished is kept, so that a second call, or a run resumed after a kill, repeats
none of it: the artifact and the dev check in the workspace, the score in the store, keyed by
the classifier's weights, the runtime, the task's examples and the shape.

It lives in ``codesign`` because it needs both ``export`` and ``train``, which do not import
each other.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from edgetran.errors import InvalidInputError
from edgetran.export import ExportSpec, create_runner, export_model
from edgetran.export.runners import get_runtime, require_runtime
from edgetran.export.verify import (
    LABEL_AGREEMENT,
    LabelAgreement,
    LabelAgreementError,
    label_agreement,
    predicted_labels,
    reference_outputs,
    runner_outputs,
)
from edgetran.model import load_model, saved_model_config
from edgetran.store import Store
from edgetran.train.data import TokenisedTexts
from edgetran.train.metrics import bootstrap_std, score
from edgetran.train.tasks import Examples, Task, TaskOptions, load_task

SPLITS = ("train", "dev", "test")
#: Workspace folder of the exported classifiers, one per (weights, runtime, shape).
ARTIFACTS = "artifacts"
#: The files of a saved model that determine its outputs.
_MODEL_FILES = ("config.json", "*.safetensors", "*.bin")


def artifact_accuracy(
    model_dir: str | Path,
    runtime: str,
    task: str | Task,
    *,
    store: Store,
    workspace: str | Path,
    seq_len: int,
    split: str = "test",
    batch_size: int = 1,
    threshold: float = LABEL_AGREEMENT,
    dev_examples: int | None = None,
    task_options: TaskOptions | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """The task metric of the classifier saved in ``model_dir`` as ``runtime`` runs it, on
    ``split``, cached in ``store``.

    Examples are tokenised as the oracle tokenises them, padded to ``seq_len`` (the artifact's
    static length) and run ``batch_size`` at a time (1, as a device serves them: per-tensor
    int8 activation scales make a row's result depend on the rows beside it). First, on the dev
    split (``dev_examples`` of it, seeded; default all), the artifact must predict PyTorch's
    class for at least ``threshold`` of the examples.

    Returns a JSON-ready dict: ``accuracy`` (the task metric), ``accuracy_std`` (its bootstrap
    standard deviation, as the oracle computes it), ``metric``, ``examples``, ``split``,
    ``agreement`` (share of ``split`` predicted as PyTorch predicts), ``torch_accuracy`` (PyTorch's
    metric on the same examples), ``verification`` (the dev check: ``agreement``, ``examples``,
    ``passed`` …), ``runtime``, ``quantize``, ``device``, ``seq_len``, ``batch_size``,
    ``artifact``, ``seconds`` (of this computation) and ``cached``.

    Raises:
        LabelAgreementError: the dev check failed (also when that failure is the stored one);
            its ``agreement`` holds the check.
        RunnerError: the runtime is unknown or cannot run here (the message names the extra).
        ModelNotFoundError: ``model_dir`` holds no saved FlexiBERT model.
        VerificationError: the model is not a classifier (a regression head).
    """
    began = time.perf_counter()
    require_runtime(runtime)
    _check_arguments(split, seq_len, batch_size, threshold)
    saved_model_config(Path(model_dir))
    task = load_task(task, task_options) if isinstance(task, str) else task
    scored, dev = getattr(task, split), task.dev.subset(dev_examples, seed)
    weights = _model_digest(Path(model_dir))
    key = _digest(
        weights, runtime, task.name, split, _examples_digest(scored), _examples_digest(dev),
        seq_len, batch_size, threshold, seed,
    )  # fmt: skip
    stored = store.artifact_accuracy(key)
    if stored is not None:
        _raise_if_failed(stored)
        return {**stored, "cached": True}
    model = load_model(model_dir).eval()
    tokenizer = _tokenizer(Path(model_dir))
    artifact = _exported(model, weights, runtime, Path(workspace), seq_len, batch_size, seed)
    runner = create_runner(runtime, artifact)
    check = _dev_check(runner, model, artifact, tokenizer, dev, seq_len, batch_size, threshold)
    record: dict[str, Any] = {
        "model": str(model_dir),
        "runtime": runtime,
        "quantize": get_runtime(runtime).quantize,
        "task": task.name,
        "split": split,
        "seq_len": seq_len,
        "batch_size": batch_size,
        "artifact": str(artifact),
        "device": check.device,
        "verification": asdict(check),
    }
    if check.passed:
        record |= _scored(runner, model, tokenizer, task, scored, seq_len, batch_size, seed)
    record["seconds"] = time.perf_counter() - began
    store.add_artifact_accuracy(key, runtime=runtime, task=task.name, result=record)
    _raise_if_failed(record)
    return {**record, "cached": False}


def _check_arguments(split: str, seq_len: int, batch_size: int, threshold: float) -> None:
    if split not in SPLITS:
        raise InvalidInputError(f"split={split!r} is invalid; allowed: {', '.join(SPLITS)}")
    for name, value in (("seq_len", seq_len), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise InvalidInputError(f"{name}={value!r} is invalid; allowed: a positive integer")
    if not 0 <= threshold <= 1:
        raise InvalidInputError(f"threshold={threshold!r} is invalid; allowed: 0 to 1")


def _raise_if_failed(record: dict[str, Any]) -> None:
    if not record["verification"]["passed"]:
        raise LabelAgreementError(LabelAgreement(**record["verification"]))


def _digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def _model_digest(model_dir: Path) -> str:
    """A digest of the files that determine the saved model's outputs (its identity: a model
    trained again into the same folder is another model)."""
    digest = hashlib.sha256()
    for pattern in _MODEL_FILES:
        for path in sorted(model_dir.glob(pattern)):
            digest.update(path.name.encode() + b"\0")
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


def _examples_digest(examples: Examples) -> str:
    """A digest of a split's content: texts, pairs and labels."""
    digest = hashlib.sha256()
    for text in (*examples.texts, *(examples.pairs or ())):
        digest.update(text.encode("utf-8", "replace") + b"\0")
    digest.update(np.ascontiguousarray(examples.labels).tobytes())
    return digest.hexdigest()


def _tokenizer(model_dir: Path):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    except (OSError, ValueError) as err:
        raise InvalidInputError(
            f"{model_dir}: no tokenizer saved beside the classifier ({err}); allowed: a folder "
            "written by train_classifier(out=…) or a kept classifier"
        ) from None


def _exported(model, weights: str, runtime: str, workspace: Path, seq_len, batch_size, seed):
    """The classifier's artifact for ``runtime`` in the workspace, exported once (its
    ``metadata.json``, written last, says the export finished)."""
    spec = ExportSpec.for_runtime(runtime, batch_size=batch_size, seq_len=seq_len)
    folder = workspace / ARTIFACTS / f"{_digest(weights, runtime, seq_len, batch_size)[:16]}"
    artifact = folder / get_runtime(runtime).artifact_name
    if not (folder / "metadata.json").is_file():
        export_model(model, folder, spec, seed=seed)
    return artifact


def _dev_check(runner, model, artifact: Path, tokenizer, dev: Examples, seq_len: int,
               batch_size: int, threshold: float) -> LabelAgreement:  # fmt: skip
    """:func:`~edgetran.export.verify.verify_labels` on the dev examples, kept beside the
    artifact."""
    kept = artifact.parent / f"labels-{_digest(_examples_digest(dev), threshold)[:16]}.json"
    if kept.is_file():
        return LabelAgreement(**json.loads(kept.read_text()))
    data = TokenisedTexts(tokenizer, dev.texts, seq_len, dev.pairs, dev.labels)
    check = label_agreement(
        runner, model, data.input_ids.numpy(), data.attention_mask.numpy(),
        threshold=threshold, batch_size=batch_size,
    )  # fmt: skip
    partial = kept.with_suffix(".part")
    partial.write_text(json.dumps(asdict(check)))
    os.replace(partial, kept)  # a kill leaves the check whole or absent
    return check


def _scored(runner, model, tokenizer, task: Task, examples: Examples, seq_len: int,
            batch_size: int, seed: int) -> dict[str, Any]:  # fmt: skip
    """The runtime's metric on ``examples`` with its bootstrap deviation, PyTorch's on the same
    inputs, and how often the two predict alike. PyTorch runs the rows padded to ``seq_len`` as
    the artifact does: DFT and DCT heads mix over the whole padded length, so their outputs
    differ from those of the oracle's batches, which are trimmed to their longest row."""
    data = TokenisedTexts(tokenizer, examples.texts, seq_len, examples.pairs, examples.labels)
    ids, mask = data.input_ids.numpy(), data.attention_mask.numpy()
    predictions = predicted_labels(runner_outputs(runner, ids, mask, batch_size))
    reference = predicted_labels(reference_outputs(model, ids, mask))
    labels = data.labels.numpy()
    return {
        "accuracy": score(task.metric, labels, predictions),
        "accuracy_std": bootstrap_std(task.metric, labels, predictions, seed=seed),
        "accuracy_std_source": "bootstrap of the scored examples",
        "metric": task.metric,
        "examples": len(labels),
        "agreement": float(np.mean(predictions == reference)),
        "torch_accuracy": score(task.metric, labels, reference),
    }
