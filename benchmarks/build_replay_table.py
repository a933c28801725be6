"""Build the co-search replay table from the five ProTran devices in ../shared/data.

Hardware metrics are the recorded ones (per sequence). Accuracy is a **stand-in**, not a
measurement: the reference GLUE scores exist for 13 models only, and our quick-budget oracle
cannot train BERT-Base-sized models on this CPU. The stand-in is a fixed, smooth function of
the architecture with a little deterministic per-architecture noise
(:func:`edgetran.search.suite.stand_in_accuracy`, the suite's ``stand-in`` landscape):

    accuracy = 0.60 + 0.20·σ((log10(parameters) − 7.6) / 0.25)
               + 0.03·(share of self-attention heads) + 0.01·(share of DFT/DCT heads)
               − 0.01·|layers − 8| / 8 + N(0, 0.004) seeded by the architecture hash

so larger, attention-rich models score higher, as on GLUE, and the search has to trade that
against the devices' costs.

    python benchmarks/build_replay_table.py --out /tmp/replay.jsonl [--data DIR]

Without ProTran files in the data folder it exits with code 2 and writes nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edgetran.profile import read_measurements
from edgetran.search.live import per_sequence
from edgetran.search.suite import stand_in_accuracy
from edgetran.space import Architecture

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "protran"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--data", type=Path, default=DATA, help=f"ProTran JSON files (default {DATA})."
    )
    args = parser.parse_args()
    files = sorted(args.data.glob("*.json"))
    if not files:
        print(f"error: no ProTran *.json files in {args.data}; nothing written", file=sys.stderr)
        sys.exit(2)
    lines = []
    for path in files:
        for m in read_measurements(path, "protran", None):
            arch = Architecture.from_dict(m.model_dict)
            metrics = {"accuracy": round(stand_in_accuracy(arch), 6), **per_sequence(m)}
            lines.append(
                json.dumps({"arch": m.model_dict, "device": path.stem, "metrics": metrics})
            )
    args.out.write_text("\n".join(lines) + "\n")
    print(f"{len(lines)} pairs → {args.out}")


if __name__ == "__main__":
    main()
