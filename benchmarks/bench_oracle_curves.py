"""Learning curves of ``quick`` fine-tuning on tweet-sentiment: where its seed noise comes from.

Trains each (model, seed) of ``bench_oracle.py``'s eight as ``evaluate(..., "quick")`` does
(``train_classifier`` in a fresh workspace without a parent; ``--floor`` raises quick's floor of
steps) and, every ``--every`` steps and at the last, scores the 1,000 dev tweets quick selects
on, the whole dev and test splits, and the test split under an exponential moving average of the
weights (decay 0.995). Scoring changes nothing in training (tests/test_train.py,
``test_on_step_sees_every_step_and_a_look_at_the_model_changes_nothing``), so quick's own choice
(best of the 1,000 every 250 steps, with the shipped patience) is rebuilt from the curve beside
other choices: the last step, the best of the whole dev at every score, the averaged weights,
and the mean of the second half's scored checkpoints.

    python benchmarks/bench_oracle_curves.py --out /tmp/curves --models sampled-1 --seeds 0 1 2
    python benchmarks/bench_oracle_curves.py --out /tmp/curves --report

Records append to ``OUT/curves.jsonl``; a (model, seed, floor) already there is skipped.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from bench_oracle import TASK, architectures
from edgetran.store import Store
from edgetran.train import load_task, oracle
from edgetran.train.finetune import _encode, evaluate_split
from edgetran.train.tokenizer import load_tokenizer

EMA_DECAY = 0.995
#: Scores without a gain before quick stops (``None``: it runs to its last step).
QUICK_PATIENCE = oracle.BUDGETS["quick"].patience


class Curve:
    """``finetune``'s ``on_step``: one trial's scores every ``every`` steps and at its end."""

    def __init__(self, splits: dict, every: int) -> None:
        self.splits, self.every = splits, every
        self.rows: list[dict] = []
        self.ema: list[torch.Tensor] | None = None
        self.half: list[list[torch.Tensor]] = []  # the second half's scored checkpoints

    def __call__(self, step: int, steps: int, loss: float, model) -> None:
        params = [p.detach() for p in model.parameters()]
        if self.ema is None:
            self.ema = [p.clone() for p in params]
        torch._foreach_lerp_(self.ema, params, 1 - EMA_DECAY)
        if step % self.every and step < steps:
            return
        row = {"step": step, "loss": loss}
        row.update({name: self.accuracy(model, data) for name, data in self.splits.items()})
        row["ema_test"] = self.accuracy_with(model, self.ema)
        if step >= steps / 2:
            self.half.append([p.clone() for p in params])
        if step == steps:
            mean = [torch.stack(ps).mean(0) for ps in zip(*self.half, strict=True)]
            row["average_test"] = self.accuracy_with(model, mean)
        self.rows.append(row)

    def accuracy(self, model, data) -> float:
        device = next(model.parameters()).device.type
        return evaluate_split(model, data, "accuracy", num_labels=3, device=device)

    def accuracy_with(self, model, weights: list[torch.Tensor]) -> float:
        """Test accuracy of ``model`` holding ``weights`` (its own weights restored after)."""
        params = list(model.parameters())
        saved = [p.detach().clone() for p in params]
        with torch.no_grad():
            torch._foreach_copy_(params, weights)
            accuracy = self.accuracy(model, self.splits["test"])
            torch._foreach_copy_(params, saved)
        return accuracy


def run(out: Path, name: str, seed: int, floor: int, every: int) -> dict:
    task = load_task(TASK)
    workspace = out / "ws"
    tok, _ = load_tokenizer(None, task.corpus(), workspace / "tokenizers")
    _, settings = oracle.budget_settings("quick", seed)
    splits = {
        "dev1000": task.dev.subset(settings.dev_examples, seed),
        "dev": task.dev,
        "test": task.test,
    }
    curve = Curve({k: _encode(tok, v, settings.max_length) for k, v in splits.items()}, every)
    shipped = oracle.BUDGETS["quick"]
    oracle.BUDGETS["quick"] = dataclasses.replace(shipped, min_finetune_steps=floor)
    began = time.perf_counter()
    try:
        with Store(out / "curves.db") as store:
            result = oracle.train_classifier(
                architectures()[name], task, "quick", store=store, workspace=workspace,
                seed=seed, on_step=curve,
            )  # fmt: skip
    finally:
        oracle.BUDGETS["quick"] = shipped
    return {"model": name, "seed": seed, "floor": floor, "steps": result["finetune_steps"],
            "accuracy": result["accuracy"], "learning_rate": result["learning_rate"],
            "curve": curve.rows, "seconds": time.perf_counter() - began}  # fmt: skip


def choices(curve: list[dict]) -> dict[str, float]:
    """Test accuracy of the model each rule would keep."""
    return {
        "quick (1,000 dev, every 250)": _selected(curve, "dev1000", 250, QUICK_PATIENCE)["test"],
        "last step": curve[-1]["test"],
        "best of the whole dev, every score": _selected(curve, "dev", 1, None)["test"],
        "averaged weights (EMA 0.995)": curve[-1]["ema_test"],
        "mean of the second half's checkpoints": curve[-1]["average_test"],
    }


def _selected(curve: list[dict], key: str, every: int, patience: int | None) -> dict:
    best, chosen, stale = -np.inf, None, 0
    for row in curve:
        if row["step"] % every and row is not curve[-1]:
            continue
        if row[key] > best:
            best, chosen, stale = row[key], row, 0
        else:
            stale += 1
            if patience is not None and stale >= patience:
                break
    return chosen


def report(records: list[dict]) -> None:
    for floor in sorted({r["floor"] for r in records}):
        print(f"\nfloor {floor} steps")
        per_rule: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for r in sorted(records, key=lambda r: (r["model"], r["seed"])):
            if r["floor"] != floor:
                continue
            picks = choices(r["curve"])
            head = f"{r['model']:10s} seed {r['seed']} {r['steps']:5d} steps {r['seconds']:5.0f} s"
            print(" ", head, " ".join(f"{v:.3f}" for v in picks.values()))
            for rule, accuracy in picks.items():
                per_rule[rule][r["model"]].append(accuracy)
        for rule, models in per_rule.items():
            stds = [np.std(v, ddof=1) for v in models.values() if len(v) > 1]
            pooled = np.sqrt(np.mean(np.square(stds))) if stds else float("nan")
            means = " ".join(f"{m} {np.mean(v):.3f}" for m, v in models.items())
            print(f"  {rule}: pooled seed std {pooled:.4f}; means {means}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--models", nargs="*", default=[])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--floor", type=int, default=oracle.BUDGETS["quick"].min_finetune_steps)
    parser.add_argument("--every", type=int, default=125)
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "curves.jsonl"
    records = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
    done = {(r["model"], r["seed"], r["floor"]) for r in records}
    for seed in args.seeds:
        for name in args.models:
            if (name, seed, args.floor) in done:
                continue
            record = run(args.out, name, seed, args.floor, args.every)
            with path.open("a") as f:
                f.write(json.dumps(record) + "\n")
            records.append(record)
            print(
                name, seed, f"{record['accuracy']:.3f}", f"{record['seconds']:.0f} s", flush=True
            )
    if args.report:
        report(records)


if __name__ == "__main__":
    main()
