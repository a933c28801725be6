"""The headline table of a finished ``edgetran codesign`` run (Table VIII for this CPU), from
its ``result.json`` alone: the answer against each reference on that reference's best runtime
(its fastest measured pair), with the latency and energy ratios and Δaccuracy ± std. The
ratios are those of ``versus_references`` (measured beside the references); the answer's row
shows its final measurement, taken later.

    edgetran codesign --final-budget standard --evaluations 12 --out head --db head/edgetran.db \\
        --workspace head/workspace
    python benchmarks/codesign_table.py head            # Markdown, for BENCHMARKS.md
    python benchmarks/codesign_table.py head --stages   # and the seconds of each stage
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path


def best_pairs(result: dict) -> list[dict]:
    """Each reference's fastest pair by measured latency at the final budget (its accuracy
    there), skipping failed pairs."""
    best: dict[str, dict] = {}
    for row in result["references"]:
        if row.get("failed") or "latency_s" not in row.get("measured", []):
            continue
        name = row["name"]
        if name not in best or row["metrics"]["latency_s"] < best[name]["metrics"]["latency_s"]:
            best[name] = row
    return list(best.values())


def table(result: dict) -> str:
    answer = result["best"]
    m = answer["metrics"]
    lines = [
        "| pair | parameters | accuracy (final budget) | latency (ms/seq) | energy (mJ/seq) "
        "| latency × | energy × | Δaccuracy ± std |",
        "|---|---|---|---|---|---|---|---|",
        f"| **answer**: {answer.get('name') or 'co-designed'} on {answer['device']} | "
        f"{_parameters(result)} | {m['accuracy']:.4f} ± {_std(answer.get('accuracy_std'))} | "
        f"{m['latency_s'] * 1e3:.2f} | {m['energy_j'] * 1e3:.2f}{_flag(answer)} | 1 | 1 | – |",
    ]
    versus = {(v["reference"], v["device"]): v for v in result.get("versus_references", [])}
    for row in best_pairs(result):
        r = row["metrics"]
        std = math.hypot(answer.get("accuracy_std") or 0, row.get("final_accuracy_std") or 0)
        # The ratios are the verdict's: the answer measured in the same phase as the references
        # (the decision), not its later final measurement, so that both sides share conditions.
        v = versus.get((row["name"], row["device"]))
        latency_x = v["latency_x"] if v else r["latency_s"] / m["latency_s"]
        energy_x = v["energy_x"] if v else r["energy_j"] / m["energy_j"]
        lines.append(
            f"| {row['name']} on {row['device']} (its best runtime) | "
            f"{(row.get('parameters') or 0) / 1e6:.2f} M | "
            f"{row['final_accuracy']:.4f} ± {_std(row.get('final_accuracy_std'))} | "
            f"{r['latency_s'] * 1e3:.2f} | {r['energy_j'] * 1e3:.2f}{_flag(row)} | "
            f"{latency_x:.2f}× | {energy_x:.2f}× | "
            f"{m['accuracy'] - row['final_accuracy']:+.4f} ± {std:.4f} |"
        )
    return "\n".join(lines)


def verdicts(result: dict) -> str:
    rows = ["| reference pair | latency × | energy × | Δaccuracy ± std | verdict |",
            "|---|---|---|---|---|"]  # fmt: skip
    for v in result.get("versus_references", []):
        rows.append(
            f"| {v['reference']} on {v['device']} | {v['latency_x']:.2f}× | "
            f"{v['energy_x']:.2f}× | {v['accuracy_delta']:+.4f} ± {v['accuracy_delta_std']:.4f} "
            f"| {v['verdict']} |"
        )
    return "\n".join(rows)


def stages(result: dict) -> str:
    rows = ["| stage | seconds |", "|---|---|"]
    rows += [f"| {name} | {seconds:.1f} |" for name, seconds in result["stages"].items()]
    rows.append(f"| **total** | **{sum(result['stages'].values()):.1f}** |")
    return "\n".join(rows)


def _parameters(result: dict) -> str:
    winner = result.get("decision", {}).get("winner") or {}
    parameters = winner.get("parameters")
    return f"{parameters / 1e6:.2f} M" if parameters else "–"


def _std(value) -> str:
    return "–" if value is None else f"{value:.4f}"


def _flag(row: dict) -> str:
    return " (est.)" if "energy_j" in row.get("estimated", []) else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="the run's output folder (holds result.json)")
    parser.add_argument("--stages", action="store_true", help="also the seconds per stage")
    args = parser.parse_args()
    result = json.loads((args.run / "result.json").read_text())
    print(result["headline"], end="\n\n")
    print(table(result), end="\n\n")
    print(verdicts(result))
    if args.stages:
        print()
        print(stages(result))


if __name__ == "__main__":
    main()
