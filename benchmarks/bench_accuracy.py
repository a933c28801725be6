"""The accuracy oracle on tweet-sentiment, on this CPU.

1. Quick-budget accuracy (test split) of BERT-Tiny, BERT-Mini and two heterogeneous models,
   each trained independently (no transfer), beside the majority class and a TF-IDF +
   logistic-regression baseline (scikit-learn), with seconds per quick evaluation.
2. MLM steps to reach a loss with and without weight transfer from a trained neighbour: a
   source model is pretrained, then a neighbour (one layer's heads changed) is pretrained from
   scratch and from the source; we count steps until the 10-step running mean of the training
   loss first reaches the loss the scratch run ends at.

    python benchmarks/bench_accuracy.py --workspace /tmp/bench-acc
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from edgetran.space import Architecture, Layer, load_architecture
from edgetran.store import Store
from edgetran.train import PretrainSettings, evaluate, load_task, pretrain
from edgetran.train.tokenizer import load_tokenizer

HETERO_A = Architecture(
    (
        Layer(256, ("sa_sdp", "sa_sdp", "l_dft", "c_9"), 64, (1024,)),
        Layer(256, ("sa_sdp", "l_dct", "c_5", "c_5"), 64, (1024,)),
        Layer(128, ("sa_sdp", "l_dft"), 64, (512,)),
        Layer(128, ("sa_wma", "c_9"), 64, (512,)),
    )
)
HETERO_B = Architecture(
    (
        Layer(256, ("sa_sdp", "sa_sdp", "l_dct", "l_dct"), 64, (1024, 1024)),
        Layer(128, ("sa_sdp", "c_13"), 64, (512,)),
    )
)


def baselines(task) -> dict[str, float]:
    majority = np.bincount(task.train.labels).argmax()
    vectoriser = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    X = vectoriser.fit_transform(task.train.texts)
    model = LogisticRegression(max_iter=2000, C=4.0).fit(X, task.train.labels)
    predicted = model.predict(vectoriser.transform(task.test.texts))
    return {
        "majority class": float(np.mean(task.test.labels == majority)),
        "TF-IDF + logistic regression": float(np.mean(predicted == task.test.labels)),
    }


def quick_accuracies(workspace: Path) -> None:
    task = load_task("tweet-sentiment")
    print("| model | kind | test accuracy | seconds |")
    print("|---|---|---|---|")
    for name, value in baselines(task).items():
        print(f"| {name} | baseline | {value:.3f} | – |")
    models = {
        "BERT-Tiny": load_architecture("bert-tiny"),
        "BERT-Mini": load_architecture("bert-mini"),
        "hetero A (4 layers, sa/l/c)": HETERO_A,
        "hetero B (2 layers, sa/l_dct/c)": HETERO_B,
    }
    with Store(workspace / "bench.db") as store:
        for name, arch in models.items():
            result = evaluate(arch, task, "quick", store=store, workspace=workspace,
                              transfer=False)  # fmt: skip
            accuracy, seconds = result["accuracy"], result["train_seconds"]
            print(f"| {name} | FlexiBERT, quick | {accuracy:.3f} | {seconds:.1f} |", flush=True)


def steps_to_loss(losses: list[float], target: float, window: int = 10) -> int | None:
    running = np.convolve(losses, np.ones(window) / window, mode="valid")
    hits = np.flatnonzero(running <= target)
    return int(hits[0]) + window if len(hits) else None


def transfer_steps(workspace: Path, steps: int) -> None:
    task = load_task("tweet-sentiment")
    tok, key = load_tokenizer(None, task.corpus(), workspace / "tokenizers")
    texts = task.train.subset(steps * 32, 0).texts
    settings = PretrainSettings(steps=steps, batch_size=32, max_length=32, learning_rate=1e-3,
                                checkpoint_every=steps)  # fmt: skip
    source_arch = load_architecture("bert-mini")
    layers = list(source_arch.layers)
    layers[-1] = Layer(256, ("sa_sdp", "sa_sdp", "l_dft", "l_dft"), 64, (1024,))
    neighbour = Architecture(tuple(layers))
    runs = workspace / "transfer"
    shutil.rmtree(runs, ignore_errors=True)
    pretrain(source_arch, texts, tok, key, runs / "source", settings)
    scratch = pretrain(neighbour, texts, tok, key, runs / "scratch", settings)
    warm = pretrain(neighbour, texts, tok, key, runs / "warm", settings, runs / "source")
    target = float(np.mean(scratch.losses[-10:]))
    n_scratch, n_warm = steps_to_loss(scratch.losses, target), steps_to_loss(warm.losses, target)
    print(f"target loss {target:.3f} (scratch run's final 10-step mean)")
    print(f"steps from scratch: {n_scratch}; with transfer (share "
          f"{warm.transferred_share:.3f}): {n_warm}")  # fmt: skip
    if n_scratch and n_warm:
        print(f"reduction: {1 - n_warm / n_scratch:.0%}")
    for mark in (1, 10, 50, steps // 2, steps):
        print(f"  step {mark}: scratch {np.mean(scratch.losses[max(0, mark - 10):mark]):.3f}, "
              f"transfer {np.mean(warm.losses[max(0, mark - 10):mark]):.3f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workspace", type=Path, default=Path("bench-accuracy"))
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--skip-quick", action="store_true")
    parser.add_argument("--skip-transfer", action="store_true")
    args = parser.parse_args()
    began = time.perf_counter()
    if not args.skip_quick:
        quick_accuracies(args.workspace)
    if not args.skip_transfer:
        transfer_steps(args.workspace, args.steps)
    print(f"total {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
