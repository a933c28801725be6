"""GPTran on this CPU: grow-and-prune BERT-Mini for ``cpu/torch``, hardware-aware and loss-only.

BERT-Mini is pretrained once in the workspace (MLM on tweet-sentiment, ``--root-steps``), then
grown and pruned twice from the same root: with a latency budget of ``--latency-share`` of the
root's measured latency (hardware-aware acceptance), and with the reference's loss-only rule.
Every child is profiled live (ProTran protocol, batch 1 × 128 tokens; energy from the CPU-time
estimate meter). Prints one trajectory table per run and the quick accuracy of root and final
models (the accuracy oracle, ``--seeds`` seeds each), in Markdown.

    flock /tmp/team/bench.lock nice -n 10 python benchmarks/bench_growprune.py \
        --workspace /tmp/gp-bench --iterations 8
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from edgetran.growprune import GrowPruneSettings, LiveDevice, grow_and_prune
from edgetran.growprune.costs import live_profile_settings
from edgetran.space import Architecture, named_architecture
from edgetran.store import Store
from edgetran.train import evaluate, load_task
from edgetran.train.oracle import pretrain_in_workspace
from edgetran.train.pretrain import PretrainSettings
from edgetran.train.tokenizer import load_tokenizer


def trajectory(result) -> str:
    lines = [
        "| it | mode | child | parameters | MLM loss | latency ms (measured) | "
        "energy mJ (estimated) | accepted / why |",
        "|---|---|---|---|---|---|---|---|",
    ]
    root = result.root
    lines.append(_row("0", "root", root, "BERT-Mini", "—"))
    for it in result.iterations:
        for child in it["children"]:
            verdict = "**yes**" if child["accepted"] else child["why"]
            lines.append(_row(str(it["iteration"]), it["mode"], child, child["change"], verdict))
        if it["accepted"] is None:
            lines.append(f"| {it['iteration']} | | | | | | | back to {it['best'][:8]} |")
    return "\n".join(lines)


def _row(it, mode, node, change, verdict) -> str:
    loss = f"{node['loss']:.4f}" if node["loss"] is not None else "—"
    lat, energy = (node["costs"][m]["value"] for m in ("latency_s", "energy_j"))
    lat = f"{lat * 1e3:.2f}" if lat is not None else "—"  # a failed measurement has none
    energy = f"{energy * 1e3:.1f}" if energy is not None else "—"
    return (
        f"| {it} | {mode} | {change} | {node['parameters'] / 1e6:.2f}M | {loss} | {lat} | "
        f"{energy} | {verdict or node.get('error')} |"
    )


def paired_latency(root: Architecture, finals: dict, rounds: int, settings) -> None:
    """Root and final models measured alternately, ``rounds`` times each (the search measured
    each model once, at whatever load the machine had then): median latency and ratio."""
    from edgetran.profile import profile_architecture

    print("\n| run | root ms (median of rounds) | final ms | final / root |\n|---|---|---|---|")
    for name, node in finals.items():
        final = Architecture.from_dict(node["model_dict"])
        times: dict[str, list[float]] = {"root": [], "final": []}
        for _ in range(rounds):
            for key, a in (("root", root), ("final", final)):
                times[key].append(profile_architecture(a, settings).latency_s_per_seq)
        r, f = np.median(times["root"]), np.median(times["final"])
        print(f"| {name} | {r * 1e3:.2f} | {f * 1e3:.2f} | {f / r:.3f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, default=Path("/tmp/gp-bench"))
    parser.add_argument("--root-steps", type=int, default=400)
    parser.add_argument("--iterations", type=int, default=8)
    parser.add_argument("--latency-share", type=float, default=0.8)
    parser.add_argument("--budget", default="quick")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument(
        "--root", type=Path, help="a pretrained root to use (default: pretrain BERT-Mini here)"
    )
    parser.add_argument("--runs", default="hardware,loss", help="hardware, loss or both")
    parser.add_argument("--rounds", type=int, default=3, help="paired re-measurements")
    parser.add_argument("--seed", type=int, default=0, help="the searches' seed")
    parser.add_argument(
        "--quiet-wait-s", type=float, default=300.0,
        help="each live measurement waits up to this long for a quiet machine, else fails",
    )  # fmt: skip
    parser.add_argument(
        "--also", type=Path, action="append", default=[],
        help="result-*.json of an earlier run whose final model is re-measured too",
    )  # fmt: skip
    args = parser.parse_args()
    workspace = args.workspace
    workspace.mkdir(parents=True, exist_ok=True)
    store = Store(workspace / "edgetran.db")
    task = load_task("tweet-sentiment")
    tokenizer, tokenizer_id = load_tokenizer(None, task.corpus(), workspace / "tokenizers")
    arch = named_architecture("bert-mini")
    began = time.perf_counter()
    root_dir = args.root or workspace / "root-bert-mini"
    if args.root is None:
        settings = PretrainSettings(
            steps=args.root_steps, batch_size=32, max_length=32, learning_rate=5e-4, seed=0
        )
        texts = task.train.subset(settings.steps * settings.batch_size, 0).texts
        pre = pretrain_in_workspace(
            arch, texts, tokenizer, tokenizer_id, root_dir, settings, store, transfer=False
        )
        print(
            f"root pretrained: {pre.steps} steps, train loss {pre.loss:.4f}, "
            f"{time.perf_counter() - began:.0f} s",
            flush=True,
        )
    # A timing taken while other processes crowd the cores measures them (29 Nov: 8-25x), so
    # every live measurement waits for a quiet machine.
    profile_settings = live_profile_settings(
        "cpu", "torch", require_quiet=True, quiet_wait_s=args.quiet_wait_s
    )
    device = LiveDevice(profile_settings, store)
    root_latency = device.estimate([arch])[0].value["latency_s"]
    runs = {
        "hardware-aware": GrowPruneSettings(
            budget=args.budget,
            iterations=args.iterations,
            workspace=str(workspace),
            max_latency_ms=root_latency * 1e3 * args.latency_share,
            seed=args.seed,
        ),
        "loss-only (reference rule)": GrowPruneSettings(
            budget=args.budget,
            iterations=args.iterations,
            workspace=str(workspace),
            acceptance="loss",
            seed=args.seed,
        ),
    }
    chosen = args.runs.split(",")
    runs = {name: r for name, r in runs.items() if r.acceptance in chosen}
    results = {}
    for name, run_settings in runs.items():
        began = time.perf_counter()
        result = grow_and_prune(root_dir, task, device, run_settings, store=store, resume=True,
                                on_event=lambda line: print(line, flush=True))  # fmt: skip
        seconds = time.perf_counter() - began
        results[name] = result
        (workspace / f"result-{run_settings.acceptance}.json").write_text(
            json.dumps(result.to_dict(), indent=1)
        )
        print(f"\n### {name} ({seconds / 60:.1f} min, stopped: {result.stopped})\n", flush=True)
        print(trajectory(result), flush=True)
    print("\n| run | final | parameters | MLM loss (vs root) | latency ms (vs root) |")
    print("|---|---|---|---|---|")
    for name, result in results.items():
        root, final = result.root, result.final
        lat_f = final["costs"]["latency_s"]["value"]
        lat_r = root["costs"]["latency_s"]["value"]
        print(
            f"| {name} | {final['hash'][:8]} | {final['parameters'] / 1e6:.2f}M | "
            f"{final['loss']:.4f} ({final['loss'] / root['loss'] - 1:+.1%}) | "
            f"{lat_f * 1e3:.2f} ({lat_f / lat_r - 1:+.1%}) |",
            flush=True,
        )
    finals = {name: r.final for name, r in results.items()} | {
        f"{path.stem} (earlier)": json.loads(path.read_text())["final"] for path in args.also
    }
    paired_latency(arch, finals, args.rounds, profile_settings)
    if args.skip_accuracy:
        return
    archs = {"root": arch} | {
        name: Architecture.from_dict(r.final["model_dict"]) for name, r in results.items()
    }
    print("\n| model | quick accuracy ± bootstrap std (seeds) | mean |\n|---|---|---|")
    for name, a in archs.items():
        results = [
            evaluate(a, task, "quick", store=store, workspace=workspace, seed=s)
            for s in range(args.seeds)
        ]
        shown = ", ".join(f"{r['accuracy']:.4f} ± {r['accuracy_std']:.4f}" for r in results)
        mean = np.mean([r["accuracy"] for r in results])
        print(f"| {name} ({a.hash[:8]}) | {shown} | {mean:.4f} |", flush=True)


if __name__ == "__main__":
    main()
