"""The co-design report: one self-contained HTML file (plots inline as PNG, no network).

It shows the Pareto front of accuracy against latency, energy and peak power per device
(measured points filled, predicted ones hollow), the convergence of the best objective (and of
the ``--compare`` sampler), the surrogates' held-out parity with 90% intervals, the winner's
model card beside the reference BERTs on its device (as ratios), the grow-and-prune trajectory,
and, said plainly, what was estimated rather than measured.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import numpy as np

COSTS = (
    ("latency", "latency (ms/seq)", 1e3),
    ("energy", "energy (mJ/seq)", 1e3),
    ("peak_power", "peak power (W)", 1.0),
)
STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:70em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;
text-align:right}th{background:#f3f3f3}td.l,th.l{text-align:left}img{max-width:100%}
.note{background:#fff8e0;border-left:4px solid #e0b000;padding:.5em 1em}
"""


def write_report(result: dict[str, Any], path: str | Path) -> Path:
    """Write the report of a co-design ``result`` (``result.json``'s content) to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    sections = [
        _summary(result),
        _estimated(result),
        _pareto(result),
        _convergence(result),
        _parity(result),
        _model_card(result),
        _growprune(result),
        _stages(result),
    ]
    title = f"EdgeTran co-design: {html.escape(result['config']['task'])}"
    page = (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{title}</title>"
        f"<style>{STYLE}</style></head><body><h1>{title}</h1>{''.join(sections)}</body></html>\n"
    )
    path = Path(path)
    path.write_text(page, encoding="utf-8")
    return path


# -- pieces ----------------------------------------------------------------------------------
def _image(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode()
    return f"<img alt='plot' src='data:image/png;base64,{data}'>"


def _table(header: list[str], rows: list[list[Any]], left: int = 1) -> str:
    head = "".join(
        f"<th class='{'l' if i < left else ''}'>{html.escape(str(h))}</th>"
        for i, h in enumerate(header)
    )
    body = "".join(
        "<tr>"
        + "".join(
            f"<td class='{'l' if i < left else ''}'>{html.escape(_fmt(v))}</td>"
            for i, v in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _summary(result: dict[str, Any]) -> str:
    best, config = result["best"], result["config"]
    m = best["metrics"]
    budgets = [
        f"{k} ≤ {config[k]:g}"
        for k in ("max_latency_ms", "max_energy_mj", "max_peak_power_w")
        if config.get(k) is not None
    ]
    if config.get("min_accuracy") is not None:
        budgets.append(f"accuracy ≥ {config['min_accuracy']:g}")
    return (
        "<h2>Result</h2>"
        f"<p>Best pair: <b>{html.escape(best['device'])}</b>, accuracy "
        f"<b>{m['accuracy']:.4f}</b>, "
        f"latency <b>{m['latency_s'] * 1e3:.3f} ms</b>/sequence, energy "
        f"{m['energy_j'] * 1e3:.3f} mJ/sequence, peak power {m['peak_power_w']:.3g} W "
        f"(objective {best['objective']:.4f}).</p>"
        f"<p>Devices: {html.escape(', '.join(config['devices']))}; budgets: "
        f"{html.escape(', '.join(budgets) or 'none')}; search budget {config['budget']}, final "
        f"budget {config['final_budget']}; {result['search']['evaluations']} evaluations "
        f"({len(result['failed'])} failed).</p>"
    )


def _estimated(result: dict[str, Any]) -> str:
    """What was estimated rather than measured, in words."""
    best = result["best"]
    lines = []
    unmeasured = [
        k for k in ("latency_s", "energy_j", "peak_power_w") if k not in best["measured"]
    ]
    if unmeasured:
        why = (
            f"the power meter here is an estimate ({best.get('meter')})"
            if best.get("meter_kind") == "estimated"
            else "the winning device is recorded, so its costs come from its surrogate"
        )
        lines.append(f"The winner's {', '.join(unmeasured)} are <b>estimated</b>: {why}.")
    predicted = sum(bool(r["predicted"]) for r in result["evaluations"])
    lines.append(
        f"{predicted} of {len(result['evaluations'])} search evaluations used surrogate "
        "predictions for latency, energy and peak power (hollow markers); the rest were "
        "measured on the device."
    )
    for device, info in result["devices"].items():
        if info.get("meter_kind") == "estimated":
            lines.append(
                f"{html.escape(device)}: energy and peak power come from the "
                f"{html.escape(info['meter'])} estimate (no power sensor); latency is measured."
            )
        if info["kind"] == "recorded":
            lines.append(
                f"{html.escape(device)} is a recorded device: every cost on it is predicted "
                "by its surrogate from the imported measurements."
            )
    lines += _contended(result)
    lines += [
        f"Stage {html.escape(s)} skipped: {html.escape(w)}." for s, w in result["skipped"].items()
    ]
    items = "".join(f"<li>{line}</li>" for line in lines)
    return f"<h2>Measured and estimated</h2><div class='note'><ul>{items}</ul></div>"


def _contended(result: dict[str, Any]) -> list[str]:
    """Which measurements other processes crowded (``contended`` in ``best``, the final
    measurement, the search's evaluations and the references' rows), in words."""
    lines = []
    final = result.get("final_measurement") or {}
    again = final.get("remeasured")
    if again:
        lines.append(
            f"The winner's first final measurement was contended; it was measured again and "
            f"the {html.escape(again['kept'])} window was kept."
        )
    if result["best"].get("contended"):
        lines.append(
            "<b>The winner's final measurement was contended</b>: other processes crowded the "
            "cores while it ran, so its latency and energy measure them too."
        )
    crowded = sum(bool(r.get("contended")) for r in result["evaluations"])
    if crowded:
        lines.append(
            f"{crowded} of {len(result['evaluations'])} search evaluations took their hardware "
            "costs from a <b>contended</b> measurement (other processes crowded the cores)."
        )
    references = [r for r in result["references"] if r.get("contended")]
    if references:
        names = ", ".join(html.escape(f"{r['name']} on {r['device']}") for r in references)
        lines.append(f"Contended reference measurements: {names}.")
    return lines


def _pareto(result: dict[str, Any]) -> str:
    import matplotlib.pyplot as plt

    devices = list(result["devices"])
    fig, axes = plt.subplots(len(devices), 3, figsize=(12, 3.2 * len(devices)), squeeze=False)
    for row, device in enumerate(devices):
        records = [r for r in result["evaluations"] if r["device"] == device]
        refs = [r for r in result["references"] if r["device"] == device]
        for col, (metric, label, scale) in enumerate(COSTS):
            ax = axes[row][col]
            for predicted, style in (
                (False, {"c": "tab:blue"}),
                (True, {"facecolors": "none", "edgecolors": "tab:blue"}),
            ):
                points = [r for r in records if bool(r["predicted"]) == predicted]
                if points:
                    ax.scatter(
                        [r["metrics"][metric] * scale for r in points],
                        [r["metrics"]["accuracy"] for r in points],
                        s=28,
                        label="predicted" if predicted else "measured",
                        **style,
                    )
            front = _front(records, metric)
            if front:
                xs, ys = zip(
                    *[(r["metrics"][metric] * scale, r["metrics"]["accuracy"]) for r in front],
                    strict=True,
                )
                ax.step(xs, ys, where="post", c="tab:blue", alpha=0.5)
            for ref in refs:
                ax.scatter(
                    ref["metrics"][metric] * scale,
                    ref["metrics"]["accuracy"],
                    marker="*",
                    s=120,
                    c="tab:orange",
                )
                ax.annotate(
                    ref["name"],
                    (ref["metrics"][metric] * scale, ref["metrics"]["accuracy"]),
                    fontsize=7,
                )
            best = result["best"]
            if best["device"] == device:
                key = {"latency": "latency_s", "energy": "energy_j", "peak_power": "peak_power_w"}
                ax.scatter(
                    best["metrics"][key[metric]] * scale,
                    best["metrics"]["accuracy"],
                    marker="X",
                    s=110,
                    c="tab:red",
                    label="winner (final)",
                )
            ax.set_xlabel(label)
            ax.set_ylabel("accuracy")
            ax.set_title(device, fontsize=9)
            _log_if_wide(ax, [r["metrics"][metric] for r in records + refs])
            if row == 0 and col == 0:
                ax.legend(fontsize=7)
    fig.tight_layout()
    return (
        "<h2>Pareto fronts</h2><p>Accuracy against each cost, per device: filled points were "
        "measured, hollow ones predicted; stars are the reference BERTs, the red cross the "
        f"final winner.</p>{_image(fig)}"
    )


def _log_if_wide(ax, values, both: bool = False) -> None:
    """Log axes where the values span more than a factor of 20 (else the ticks crowd)."""
    values = np.asarray(values, dtype=float)
    values = values[values > 0]
    if len(values) and values.max() > 20 * values.min():
        ax.set_xscale("log")
        if both:
            ax.set_yscale("log")


def _front(records: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """The records no other beats on both accuracy and ``metric``, by increasing cost."""
    ordered = sorted(records, key=lambda r: (r["metrics"][metric], -r["metrics"]["accuracy"]))
    front, best = [], -np.inf
    for r in ordered:
        if r["metrics"]["accuracy"] > best:
            front.append(r)
            best = r["metrics"]["accuracy"]
    return front


def _convergence(result: dict[str, Any]) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    runs = [(result["search"]["sampler"], result["search"]["history"])]
    if result.get("compare"):
        runs.append((result["compare"]["sampler"], result["compare"]["history"]))
    for name, history in runs:
        if history:
            ax.plot(
                np.arange(1, len(history) + 1),
                np.maximum.accumulate(history),
                marker="o",
                ms=3,
                label=name,
            )
    ax.set_xlabel("evaluations")
    ax.set_ylabel("best objective so far")
    ax.legend()
    return f"<h2>Convergence</h2>{_image(fig)}"


def _parity(result: dict[str, Any]) -> str:
    import matplotlib.pyplot as plt

    devices = [d for d, p in result["surrogates"].items() if p.get("latency")]
    if not devices:
        return "<h2>Surrogates</h2><p>Too few measurements for held-out predictions.</p>"
    fig, axes = plt.subplots(len(devices), 3, figsize=(12, 3.3 * len(devices)), squeeze=False)
    for row, device in enumerate(devices):
        for col, (metric, label, scale) in enumerate(COSTS):
            ax = axes[row][col]
            if not result["surrogates"][device].get(metric):  # a run from before its parity
                ax.set_axis_off()
                continue
            points = np.array(result["surrogates"][device][metric]) * scale  # (n, 4)
            ax.errorbar(
                points[:, 0],
                points[:, 1],
                yerr=[points[:, 1] - points[:, 2], points[:, 3] - points[:, 1]],
                fmt="o",
                ms=3,
                capsize=2,
                alpha=0.8,
            )
            low, high = points[:, :4].min(), points[:, :4].max()
            ax.plot([low, high], [low, high], c="grey", lw=1)
            inside = np.mean((points[:, 2] <= points[:, 0]) & (points[:, 0] <= points[:, 3]))
            ax.set_title(f"{device}: {metric}, 90% interval covers {inside:.0%}", fontsize=9)
            _log_if_wide(ax, points[:, 0], both=True)
            ax.set_xlabel(f"measured {label}")
            ax.set_ylabel(f"predicted {label}")
    fig.tight_layout()
    return (
        "<h2>Surrogates</h2><p>Held-out predictions (grouped folds) against measurements, with "
        f"their 90% intervals.</p>{_image(fig)}"
    )


def _model_card(result: dict[str, Any]) -> str:
    from edgetran.space import Architecture
    from edgetran.space.costs import estimate_costs

    best, config = result["best"], result["config"]
    arch = Architecture.from_dict(best["arch"])
    costs = estimate_costs(arch, batch_size=config["batch_size"], seq_len=config["seq_len"])
    layers = [
        [
            i + 1,
            layer.hidden,
            " ".join(layer.ops),
            len(layer.ops),
            layer.head_dim,
            " × ".join(map(str, layer.ff)),
        ]
        for i, layer in enumerate(arch.layers)
    ]
    m = best["metrics"]
    ci = best.get("latency_ci95_s") or [None, None]
    card = [
        ["parameters", f"{costs.parameters / 1e6:.3f} M"],
        [f"FLOPs ({config['batch_size']} × {config['seq_len']})", f"{costs.flops / 1e9:.3f} G"],
        [
            "accuracy",
            f"{m['accuracy']:.4f}{_plus_minus(result['final_training'].get('accuracy_std'))} "
            f"({result['final_training'].get('metric', '')}, {config['final_budget']} budget)",
        ],
        [
            "latency",
            f"{m['latency_s'] * 1e3:.3f} ms/seq"
            + (f" (95% CI {ci[0] * 1e3:.3f}–{ci[1] * 1e3:.3f})" if ci[0] is not None else ""),
        ],
        ["energy", f"{m['energy_j'] * 1e3:.3f} mJ/seq"],
        ["peak power", f"{m['peak_power_w']:.3g} W"],
        ["measured", ", ".join(best["measured"])],
    ]
    refs = [r for r in result["references"] if r["device"] == best["device"]]
    # a run resumed from before references kept their final-budget accuracy has only the search's
    final = all("final_accuracy" in r for r in refs)
    budget = config["final_budget"] if final else config["budget"]
    key = {"latency": "latency_s", "energy": "energy_j", "peak_power": "peak_power_w"}
    ratios = [
        [
            r["name"],
            r.get("final_accuracy", r["metrics"]["accuracy"]),
            *(r["metrics"][k] / m[key[k]] if m[key[k]] else None for k in key),
            "predicted" if r["predicted"] else "measured",
        ]
        for r in refs
    ]
    return (
        f"<h2>Model card: the winner on {html.escape(best['device'])}</h2>"
        + _table(["layer", "hidden", "operations", "heads", "head dim", "feed-forward"], layers)
        + _table(["", "value"], card)
        + f"<p>Reference BERTs on the same device (accuracy at the {budget} budget; costs as "
        "multiples of the winner's: above 1 means the winner is cheaper).</p>"
        + _table(
            ["reference", "accuracy", "latency ×", "energy ×", "peak power ×", "costs"], ratios
        )
    )


def _plus_minus(std: float | None) -> str:
    """`` ± std`` (a standard error of the test examples), when the oracle gave one."""
    return "" if std is None else f" ± {std:.4f}"


def _growprune(result: dict[str, Any]) -> str:
    gp = result["growprune"]
    if gp.get("skipped"):
        return f"<h2>Grow-and-prune</h2><p>Skipped: {html.escape(gp['skipped'])}.</p>"
    rows = []
    for it in gp["iterations"]:
        accepted = next((c for c in it["children"] if c.get("accepted")), None)
        rows.append(
            [
                it["iteration"],
                it["mode"],
                len(it["children"]),
                accepted["change"] if accepted else "none",
                accepted["loss"] if accepted else None,
                accepted["parameters"] if accepted else None,
            ]
        )
    return (
        "<h2>Grow-and-prune</h2>"
        f"<p>Root loss {_fmt(gp['root']['loss'])}, final loss {_fmt(gp['final']['loss'])}; "
        f"stopped by {html.escape(gp['stopped'])}.</p>"
        + _table(["iteration", "mode", "children", "accepted", "loss", "parameters"], rows, 2)
    )


def _stages(result: dict[str, Any]) -> str:
    rows = [[name, seconds] for name, seconds in result["stages"].items()]
    env = result["environment"]
    return (
        "<h2>Stages</h2>"
        + _table(["stage", "seconds"], rows)
        + f"<p>{html.escape(env['platform'])}, Python {env['python']}, {env['cpus']} CPUs.</p>"
    )
