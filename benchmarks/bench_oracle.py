"""The accuracy oracle as a search signal, on tweet-sentiment and this CPU (issue 13).

Stages (each appends records to ``OUT/records.jsonl`` and is skipped when its records exist,
so an interrupted run continues where it stopped):

- ``baselines``: majority class, TF-IDF (1–2-grams) + logistic regression, and a plain
  Hugging Face ``BertForSequenceClassification`` of BERT-Tiny's size trained from scratch for
  75 s (our WordPiece tokenizer, batch 32, AdamW 1e-3 after 100 warm-up steps).
- ``quick``: ``evaluate(..., "quick")`` of eight architectures in a fresh workspace (no parent).
- ``seeds``: the same at ``--seeds`` (default 1 and 2; the fidelity table's noise).
- ``standard``: ``evaluate(..., "standard")`` of the eight at ``--standard-seeds`` (default 0),
  no parent (its own workspace database; the quick workspace's tokenizer).
- ``parent``: ``train_parent`` once (``--parent-budget``), then quick of the eight from it.
- ``report``: the tables for BENCHMARKS.md from the records.

    python benchmarks/bench_oracle.py --out /tmp/bench-oracle --stage baselines quick ...
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from bench_accuracy import HETERO_A, HETERO_B  # the two hand-made heterogeneous models
from edgetran.space import Architecture, DesignSpace, Layer, load_architecture, sample
from edgetran.store import Store
from edgetran.train import evaluate, load_task, train_parent
from edgetran.train.tokenizer import load_tokenizer

TASK = "tweet-sentiment"
#: The CPU-sized space of ``edgetran demo``.
CPU_SPACE = DesignSpace(layers=(2, 4), hidden_sizes=(128, 256), ff_widths=(256, 512, 1024),
                        ff_depths=(1, 2))  # fmt: skip


def architectures() -> dict[str, Architecture]:
    """BERT-Tiny, -Mini, -Small, two hand-made heterogeneous models and three sampled from the
    CPU-sized space (seed 3): every operation appears."""
    named = {n: load_architecture(n) for n in ("bert-tiny", "bert-mini", "bert-small")}
    sampled = sample(3, method="random", seed=3, space=CPU_SPACE)
    return {
        **named,
        "hetero-a": HETERO_A,
        "hetero-b": HETERO_B,
        **{f"sampled-{i}": a for i, a in enumerate(sampled)},
    }


#: One operation each, at the CPU-sized space's smallest corner (2 layers, hidden 128, two
#: heads, one feed-forward layer of 256), chosen by this rule before any was trained, to widen
#: the eight's spread of accuracy (0.026 under standard) with the space's smallest models. They
#: scored within it on tweet-sentiment (BENCHMARKS.md). Run them with ``--models corner-sa ...``.
CORNERS = {
    f"corner-{name}": Architecture((Layer(128, (op, op), 64, (256,)),) * 2)
    for name, op in (("sa", "sa_sdp"), ("dft", "l_dft"), ("dct", "l_dct"), ("conv", "c_5"))
}


class Records:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.items = (
            [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
        )

    def has(self, **keys) -> bool:
        return any(all(r.get(k) == v for k, v in keys.items()) for r in self.items)

    def add(self, record: dict) -> None:
        record = {**record, "load_average": os.getloadavg()[0]}
        self.items.append(record)
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        print(json.dumps({k: v for k, v in record.items() if k != "result"}), flush=True)


def stage_baselines(out: Path, records: Records) -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    task = load_task(TASK)
    if not records.has(stage="baselines", model="tfidf"):
        majority = np.bincount(task.train.labels).argmax()
        records.add({"stage": "baselines", "model": "majority",
                     "accuracy": float(np.mean(task.test.labels == majority))})  # fmt: skip
        began = time.perf_counter()
        vectoriser = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
        fitted = LogisticRegression(max_iter=2000, C=4.0).fit(
            vectoriser.fit_transform(task.train.texts), task.train.labels
        )
        predicted = fitted.predict(vectoriser.transform(task.test.texts))
        records.add({"stage": "baselines", "model": "tfidf",
                     "accuracy": float(np.mean(predicted == task.test.labels)),
                     "seconds": time.perf_counter() - began})  # fmt: skip
    if not records.has(stage="baselines", model="hf-scratch-75s"):
        records.add({"stage": "baselines", "model": "hf-scratch-75s",
                     **hf_scratch(task, out / "ws-quick", seconds=75.0)})  # fmt: skip


def hf_scratch(task, workspace: Path, seconds: float) -> dict:
    """A plain transformers BERT of BERT-Tiny's size, from scratch, for ``seconds``."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from edgetran.train.data import TokenisedTexts
    from edgetran.train.finetune import evaluate_split

    tok, _ = load_tokenizer(None, task.corpus(), workspace / "tokenizers")
    train = TokenisedTexts(tok, task.train.texts, 64, None, task.train.labels)
    test = TokenisedTexts(tok, task.test.texts, 64, None, task.test.labels)
    torch.manual_seed(0)  # an entry point: this benchmark owns the global generator
    config = BertConfig(vocab_size=len(tok), hidden_size=128, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=512, num_labels=3,
                        max_position_embeddings=66, pad_token_id=tok.pad_token_id)  # fmt: skip
    model = BertForSequenceClassification(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    warmup = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 100))
    began, step = time.perf_counter(), 0
    while time.perf_counter() - began < seconds:
        batch = train.batch(train.rows(step, 32, 0))
        model(**batch).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        warmup.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
    accuracy = evaluate_split(model, test, "accuracy", 3)
    return {"accuracy": accuracy, "steps": step, "seconds": time.perf_counter() - began}


def run_evaluations(records: Records, stage: str, db: Path, workspace: Path, budget: str,
                    seeds: tuple[int, ...]) -> None:  # fmt: skip
    with Store(db) as store:
        for seed in seeds:
            for name, arch in architectures().items():
                if records.has(stage=stage, model=name, seed=seed):
                    continue
                result = evaluate(arch, TASK, budget, store=store, workspace=workspace, seed=seed)
                records.add({"stage": stage, "model": name, "seed": seed, "budget": budget,
                             "accuracy": result["accuracy"],
                             "accuracy_std": result["accuracy_std"],
                             "seconds": result["train_seconds"],
                             "cpu_seconds": result["train_cpu_seconds"],
                             "finetune_steps": result["finetune_steps"],
                             "transferred_share": result["transferred_share"],
                             "parameters": arch_parameters(arch), "result": result})  # fmt: skip


def arch_parameters(arch: Architecture) -> int:
    """Parameters as trained here: the task's 8k WordPiece vocabulary, 66 positions."""
    from edgetran.space.costs import count_parameters

    return count_parameters(arch, vocab_size=8000, max_position_embeddings=66)


def ensure_parent(records: Records, out: Path, db: Path, budget: str) -> None:
    with Store(db) as store:
        began = time.perf_counter()
        result = train_parent(TASK, budget, store=store, workspace=out / "ws-parent")
        if not records.has(stage="parent-train", budget=budget):
            records.add({"stage": "parent-train", "budget": budget, "steps": result["steps"],
                         "loss": result["loss"], "seconds": result["seconds"],
                         "call_seconds": time.perf_counter() - began})  # fmt: skip


def _seconds(record: dict) -> str:
    return f"{record['seconds']:.0f} ({record['cpu_seconds']:.0f})"


def report(records: Records) -> None:
    def rows(stage, seed=None):
        return {r["model"]: r for r in records.items
                if r["stage"] == stage and (seed is None or r.get("seed") == seed)}  # fmt: skip

    base = rows("baselines")
    print("\n| model | accuracy | seconds |\n|---|---|---|")
    for name, r in base.items():
        print(f"| {name} | {r['accuracy']:.3f} | {r.get('seconds', float('nan')):.0f} |")
    alone, parented, standard = rows("quick", 0), rows("parent", 0), rows("standard", 0)
    seeds = {m: [r["accuracy"] for r in records.items
                 if r["stage"] in ("quick", "seeds") and r["model"] == m]
             for m in alone}  # fmt: skip
    print(
        "\n| model | params | quick, each seed | mean ± std | steps | s (cpu s) "
        "| quick from the parent | s (cpu s) | standard, each seed | steps | s |"
        "\n|---|---|---|---|---|---|---|---|---|---|---|"
    )
    for m, arch in architectures().items():
        a, p, s = alone.get(m), parented.get(m), standard.get(m)
        acc = seeds.get(m, [])
        spread = np.std(acc, ddof=1) if len(acc) > 1 else float("nan")
        cells = [m, f"{arch_parameters(arch) / 1e6:.2f}M"]
        if a:
            cells += [", ".join(f"{x:.3f}" for x in acc), f"{np.mean(acc):.3f} ± {spread:.3f}",
                      f"{a['finetune_steps']}", _seconds(a)]  # fmt: skip
        else:
            cells += ["–"] * 4
        cells += [f"{p['accuracy']:.3f}", _seconds(p)] if p else ["–", "–"]
        each = [r for r in records.items if r["stage"] == "standard" and r["model"] == m]
        cells += (
            [", ".join(f"{r['accuracy']:.3f}" for r in each),
             ", ".join(f"{r['finetune_steps']}" for r in each),
             ", ".join(f"{r['seconds']:.0f}" for r in each)]
            if s
            else ["–"] * 3
        )  # fmt: skip
        print("| " + " | ".join(cells) + " |")
    common = [m for m in standard if m in seeds]
    if len(common) >= 3:
        print_fidelity(records, seeds, alone, common)
    for r in records.items:
        if r["stage"] == "parent-train":
            print(f"\nparent ({r['budget']}): {r['steps']} steps, loss {r['loss']:.3f}, "
                  f"{r['seconds']:.0f} s")  # fmt: skip


def print_fidelity(records: Records, seeds: dict, alone: dict, common: list[str]) -> None:
    """Quick's seed noise and its Spearman correlation with standard: with standard's mean
    over its seeds where it has several, and with each standard seed alone."""
    standards = {m: {r["seed"]: r["accuracy"] for r in records.items
                     if r["stage"] == "standard" and r["model"] == m}
                 for m in common}  # fmt: skip
    quick_mean = [np.mean(seeds[m]) for m in common]
    standard_mean = [np.mean(list(standards[m].values())) for m in common]
    spreads = [np.std(seeds[m], ddof=1) for m in common if len(seeds[m]) > 1]
    pooled = np.sqrt(np.mean(np.square(spreads))) if spreads else float("nan")
    print(
        f"\nSpearman(quick mean, standard mean) over {len(common)}: "
        f"{spearmanr(quick_mean, standard_mean).statistic:.3f}; "
        f"quick's seed std pooled over the models {pooled:.4f}, "
        f"median {np.median(spreads) if spreads else float('nan'):.4f}, "
        f"max {max(spreads, default=float('nan')):.4f}"
    )
    quick0 = [alone[m]["accuracy"] for m in common]
    every = sorted(set.intersection(*(set(standards[m]) for m in common)))  # seeds all have
    for seed in every:
        each = [standards[m][seed] for m in common]
        print(
            f"standard seed {seed}: Spearman with quick's mean "
            f"{spearmanr(quick_mean, each).statistic:.3f}, with quick seed 0 "
            f"{spearmanr(quick0, each).statistic:.3f}"
        )
    paired = [list(standards[m].values()) for m in common if len(standards[m]) > 1]
    if paired:
        spread = np.sqrt(np.mean([np.var(x, ddof=1) for x in paired]))
        print(f"standard's seed std pooled over {len(paired)} models: {spread:.4f}")
    if len(every) > 1:
        a, b = every[:2]
        between = spearmanr([standards[m][a] for m in common], [standards[m][b] for m in common])
        print(f"Spearman(standard seed {a}, standard seed {b}): {between.statistic:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    stages = ["baselines", "quick", "parent", "seeds", "standard", "report"]
    parser.add_argument("--stage", nargs="+", default=["report"], choices=stages)
    parser.add_argument("--parent-budget", default="quick")
    parser.add_argument("--models", nargs="*", help="restrict evaluations to these names")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2],
                        help="the seeds stage's seeds (seed 0 is the quick stage's)")  # fmt: skip
    parser.add_argument("--standard-seeds", nargs="+", type=int, default=[0])
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    records = Records(args.out / "records.jsonl")
    if args.models:
        everything = {**architectures(), **CORNERS}
        unknown = sorted(set(args.models) - set(everything))
        if unknown:
            parser.error(f"unknown models {unknown}; allowed: {', '.join(everything)}")
        globals()["architectures"] = lambda: {m: everything[m] for m in args.models}
    for stage in args.stage:
        if stage == "baselines":
            stage_baselines(args.out, records)
        elif stage == "quick":
            run_evaluations(records, "quick", args.out / "quick.db", args.out / "ws-quick",
                            "quick", (0,))  # fmt: skip
        elif stage == "seeds":
            run_evaluations(records, "seeds", args.out / "quick.db", args.out / "ws-quick",
                            "quick", tuple(args.seeds))  # fmt: skip
        elif stage == "parent":
            ensure_parent(records, args.out, args.out / "parent.db", args.parent_budget)
            run_evaluations(records, "parent", args.out / "parent.db", args.out / "ws-parent",
                            "quick", (0,))  # fmt: skip
        elif stage == "standard":
            run_evaluations(records, "standard", args.out / "standard.db", args.out / "ws-quick",
                            "standard", tuple(args.standard_seeds))  # fmt: skip
        else:
            report(records)


if __name__ == "__main__":
    main()
