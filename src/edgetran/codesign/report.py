"""The co-design report: one self-contained HTML file (plots inline as PNG, no network), built
from ``result.json`` alone, so that ``edgetran report RUN_DIR`` can rebuild it.

It tells the run's story in order: a headline sentence (the winner, its ratios to the best
reference pair, the accuracy difference, the rule that chose it); the winner against every
reference; how the winner was chosen (objective, norms, the candidates within one standard
deviation); what was measured, estimated or predicted; accuracy against latency and against
energy for every evaluated pair on every device; the search's convergence; the surrogates'
parity; the winner's model card; grow-and-prune; the stages' times.

Fields that newer pipelines add (``headline``, ``objective``, ``decision``,
``versus_references``, ``best.estimated`` …) are optional: a section whose field is absent
falls back to what older results hold, or says nothing. Metrics are read under their unit
names (``latency_s``) or, in results written before them, the older ones (``latency``:
:data:`edgetran.metrics.LEGACY_KEYS`).
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import numpy as np

from edgetran.codesign.config import CodesignError
from edgetran.errors import read_json_file
from edgetran.metrics import unit_key, with_unit_keys

#: Each cost's words, unit and the factor from SI units to that unit.
COSTS = {
    "latency_s": ("latency", "ms/seq", 1e3),
    "energy_j": ("energy", "mJ/seq", 1e3),
    "peak_power_w": ("peak power", "W", 1.0),
}
#: Markers per device, in the order the devices were profiled (colours: matplotlib's tab10).
MARKERS = ("o", "s", "^", "D", "v", "P", "<", ">", "h", "p")
#: An axis whose positive values span more than this factor is drawn on a log scale.
LOG_SPAN = 10.0
TIE_RULE = (
    "An estimate may break a tie, but it never overrides a measured latency difference larger "
    "than that measurement's 95% interval."
)
STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:70em;padding:0 1em;color:#222;
overflow-wrap:break-word}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
.headline{font-size:1.2em;background:#eef5ff;border-left:4px solid #3070c0;padding:.6em 1em}
.scroll{overflow-x:auto}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}th{background:#f3f3f3}
td.l,th.l{text-align:left}img{max-width:100%;height:auto}
.note{background:#fff8e0;border-left:4px solid #e0b000;padding:.5em 1em}
"""


def report_run(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Rebuild the report of the co-design run in ``run_dir`` from its ``result.json`` alone,
    into ``out`` (default ``run_dir/report.html``); the report's path.

    Raises:
        CodesignError: ``result.json`` is missing, unreadable, or not a co-design result.
    """
    source = Path(run_dir) / "result.json"
    if not source.is_file():
        raise CodesignError(f"{source}: no such file (edgetran codesign --out writes it)")
    result = read_json_file(source, CodesignError)
    best = result.get("best") if isinstance(result, dict) else None
    if not (
        isinstance(best, dict)
        and isinstance(best.get("metrics"), dict)
        and isinstance(result.get("config"), dict)
    ):
        raise CodesignError(f"{source}: not a co-design result (no 'best' pair or 'config')")
    try:
        return write_report(result, Path(out) if out else Path(run_dir) / "report.html")
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as err:
        # a hand-edited or truncated result: its reader's problem, not a crash
        raise CodesignError(
            f"{source}: cannot be reported ({type(err).__name__}: {err})"
        ) from None


def write_report(result: dict[str, Any], path: str | Path) -> Path:
    """Write the report of a co-design ``result`` (``result.json``'s content) to ``path``;
    database passwords are masked in whatever it shows."""
    import matplotlib

    from edgetran.store.masking import mask_secrets

    matplotlib.use("Agg")
    result = mask_secrets(result)
    sections = [
        _headline(result),
        _summary(result),
        _versus(result),
        _choice(result),
        _estimated(result),
        _tradeoffs(result),
        _convergence(result),
        _parity(result),
        _model_card(result),
        _growprune(result),
        _stages(result),
    ]
    title = html.escape(f"EdgeTran co-design: {result['config'].get('task', '')}")
    page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{title}</title><style>{STYLE}</style></head><body><h1>{title}</h1>"
        f"{''.join(sections)}</body></html>\n"
    )
    path = Path(path)
    path.write_text(page, encoding="utf-8")
    return path


# -- reading result.json ---------------------------------------------------------------------
def _metrics(record: dict[str, Any]) -> dict[str, Any]:
    """A record's metrics under their unit names (also from an older result)."""
    return with_unit_keys(record.get("metrics") or {}, error=CodesignError)


def _names(names: Any) -> list[str]:
    """Metric names (a record's ``predicted``, ``measured`` …) under their unit names."""
    return [unit_key(n) for n in names or ()]


def _devices(result: dict[str, Any]) -> list[str]:
    """Every device of the run: the profiled ones in order, then any only a record names."""
    records = [*result.get("evaluations", []), *result.get("references", []), result["best"]]
    named = [r["device"] for r in records if r.get("device") is not None]
    return list(dict.fromkeys([*result.get("devices", {}), *named]))


def _search_records(result: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The search's own evaluations, aligned with ``search.history`` (the device-choice
    stage's pairs left out); ``None`` when they do not line up."""
    records = [
        r
        for r in result.get("evaluations", [])
        if not str(r.get("how", "")).startswith("device choice")
    ]
    history = (result.get("search") or {}).get("history") or []
    return records if len(records) == len(history) else None


def _pair_name(record: dict[str, Any]) -> str:
    """A reference's name, else the architecture's short hash and depth."""
    if record.get("name"):
        return str(record["name"])
    if record.get("arch_hash"):
        return str(record["arch_hash"])[:10]
    if record.get("arch"):
        from edgetran.space import Architecture

        arch = Architecture.from_dict(record["arch"])
        return f"{arch.hash[:10]} ({len(arch.layers)} layers)"
    return "–"


# -- formatting ------------------------------------------------------------------------------
def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _cost(metric: str, value: float | None) -> str:
    """A cost in the report's unit: ``1.234 ms/seq``."""
    if value is None:
        return "–"
    _, unit, scale = COSTS[metric]
    return f"{value * scale:.4g} {unit}"


def _plus_minus(std: float | None) -> str:
    """`` ± std`` (a standard error of the test examples), when the oracle gave one."""
    return "" if std is None else f" ± {std:.4f}"


def _ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


def _p(text: str, cls: str = "") -> str:
    """A paragraph of plain text (escaped: it may hold names the user chose)."""
    attribute = f" class='{cls}'" if cls else ""
    return f"<p{attribute}>{html.escape(text)}</p>"


def _list(lines: list[str]) -> str:
    return "<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in lines) + "</ul>"


def _table(header: list[str], rows: list[list[Any]], left: int = 1) -> str:
    def cell(tag: str, i: int, value: Any) -> str:
        return f"<{tag} class='{'l' if i < left else ''}'>{html.escape(_fmt(value))}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(header))
    body = "".join(
        "<tr>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>" for row in rows
    )
    return f"<div class='scroll'><table><tr>{head}</tr>{body}</table></div>"


# -- plotting helpers ------------------------------------------------------------------------
def _image(fig, alt: str) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode()
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{data}'>"


def _plain(text: Any) -> str:
    """Text for matplotlib as written: a ``$`` in a user's name must not start mathtext."""
    return str(text).replace("$", r"\$")


def _plain_number(value: float, _position: Any = None) -> str:
    """A tick label in plain decimals: ``0.0001``, never ``1e-04`` or ``10^-4``."""
    text = f"{value:.6g}"
    return np.format_float_positional(float(text), trim="-") if "e" in text else text


def _readable_ticks(ax) -> None:
    """Plain tick labels on both axes: no offset (``+9.98``), no scientific multiplier, no
    powers of ten on a log axis, which also labels 2 and 5 when it spans few decades."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, ScalarFormatter

    for axis, limits in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
        if axis.get_scale() == "log":
            if np.log10(max(limits) / min(limits)) <= 3:
                axis.set_major_locator(LogLocator(subs=(1, 2, 5)))
            axis.set_major_formatter(FuncFormatter(_plain_number))
            axis.set_minor_formatter(NullFormatter())
        else:
            formatter = ScalarFormatter(useOffset=False)
            formatter.set_scientific(False)
            axis.set_major_formatter(formatter)


def _wide(values) -> bool:
    """Whether the positive ``values`` span more than :data:`LOG_SPAN` (on a linear axis the
    small ones would crowd into one corner)."""
    values = np.asarray([v for v in values if v is not None], dtype=float)
    values = values[np.isfinite(values) & (values > 0)]
    return bool(len(values)) and values.max() > LOG_SPAN * values.min()


def _log_if_wide(ax, values) -> None:
    """A log x-axis where the values span more than :data:`LOG_SPAN`."""
    if _wide(values):
        ax.set_xscale("log")


def _device_styles(result: dict[str, Any]) -> dict[str, dict[str, str]]:
    """A colour and a marker per device, the same in every plot."""
    import matplotlib

    colours = matplotlib.colormaps["tab10"].colors
    return {
        device: {"color": colours[i % len(colours)], "marker": MARKERS[i % len(MARKERS)]}
        for i, device in enumerate(_devices(result))
    }


# -- sections --------------------------------------------------------------------------------
def _headline(result: dict[str, Any]) -> str:
    """The story in one sentence: the pipeline's own, else one composed from ``best``."""
    text = result.get("headline")
    if not text:
        best = result["best"]
        m = _metrics(best)
        std = best.get("accuracy_std", (result.get("final_training") or {}).get("accuracy_std"))
        objective = best.get("objective")
        text = (
            f"The winner is {_pair_name(best)} on {best['device']}: accuracy "
            f"{m.get('accuracy', float('nan')):.4f}{_plus_minus(std)}, latency "
            f"{_cost('latency_s', m.get('latency_s'))} and energy "
            f"{_cost('energy_j', m.get('energy_j'))}"
            + ("" if objective is None else f"; the highest objective, {objective:.4f}")
            + "."
        )
    return _p(str(text), "headline")


def _summary(result: dict[str, Any]) -> str:
    config = result["config"]
    budgets = [
        f"{k} ≤ {config[k]:g}"
        for k in ("max_latency_ms", "max_energy_mj", "max_peak_power_w")
        if config.get(k) is not None
    ]
    if config.get("min_accuracy") is not None:
        budgets.append(f"accuracy ≥ {config['min_accuracy']:g}")
    search = result.get("search") or {}
    return _p(
        f"Devices: {', '.join(_devices(result))}. Budgets: {', '.join(budgets) or 'none'}. "
        f"Search: {search.get('evaluations', '–')} evaluations with {search.get('sampler', '–')} "
        f"at the {config.get('budget', '–')} accuracy budget "
        f"({len(result.get('failed', []))} failed); the winner trained at the "
        f"{config.get('final_budget', '–')} budget."
    )


def _versus(result: dict[str, Any]) -> str:
    """The winner against every reference pair: cost ratios, accuracy difference, verdict."""
    rows = result.get("versus_references")
    if rows is None:
        rows = _versus_from_references(result)
    if not rows:
        return ""
    table = [
        [
            r.get("reference"),
            r.get("device"),
            _ratio(r.get("latency_x")),
            _ratio(r.get("energy_x")),
            "–"
            if r.get("accuracy_delta") is None
            else f"{r['accuracy_delta']:+.4f}{_plus_minus(r.get('accuracy_delta_std'))}",
            r.get("verdict", "–"),
            "measured" if r.get("measured") else "predicted",
        ]
        for r in rows
    ]
    return (
        "<h2>The winner against the references</h2>"
        + _p(
            "Each ratio is the reference's cost over the winner's: above 1× the winner is "
            "faster or spends less energy. Δaccuracy is the winner's minus the reference's; "
            "the verdict is the winner's (dominates: at least as good on accuracy, latency and "
            "energy). A predicted row's costs come from the device's surrogate."
        )
        + _table(
            ["reference", "device", "latency ×", "energy ×", "Δaccuracy", "verdict", "costs"],
            table,
            2,
        )
    )


def _versus_from_references(result: dict[str, Any]) -> list[dict[str, Any]]:
    """``versus_references`` rebuilt, without a verdict, for a result from before it."""
    m = _metrics(result["best"])
    rows = []
    for ref in result.get("references", []):
        r = _metrics(ref)
        accuracy = ref.get("final_accuracy", r.get("accuracy"))

        def ratio(key: str, r: dict[str, Any] = r) -> float | None:
            return r[key] / m[key] if r.get(key) is not None and m.get(key) else None

        rows.append(
            {
                "reference": ref.get("name"),
                "device": ref.get("device"),
                "latency_x": ratio("latency_s"),
                "energy_x": ratio("energy_j"),
                "accuracy_delta": None if accuracy is None else m["accuracy"] - accuracy,
                "measured": "latency_s" not in _names(ref.get("predicted")),
            }
        )
    return rows


def _choice(result: dict[str, Any]) -> str:
    """How the winner was chosen: the objective, its norms, the candidates within one std."""
    objective, decision = result.get("objective"), result.get("decision")
    if not objective and not decision:
        value = result["best"].get("objective")
        return "<h2>How the winner was chosen</h2>" + _p(
            "This result records no decision rule: the winner is the feasible pair of the "
            "highest objective" + ("" if value is None else f" ({value:.4f})") + "."
        )
    parts = ["<h2>How the winner was chosen</h2>"]
    if objective:
        parts.append(_objective(objective))
    if (result.get("promotion") or {}).get("pairs"):
        parts.append(_promotion(result["promotion"]))
    if decision:
        parts.append(_decision(decision))
    return "".join(parts)


def _promotion(promotion: dict[str, Any]) -> str:
    """The search's best pairs trained at the final budget, on whose accuracies the decision
    chose (``--promote``)."""
    rows = [
        [
            _pair_name(p), p.get("device"),
            f"{p['search_accuracy']:.4f}{_plus_minus(p.get('search_accuracy_std'))}",
            f"{p['accuracy']:.4f}{_plus_minus(p.get('accuracy_std'))}",
        ]
        for p in promotion["pairs"]
    ]  # fmt: skip
    budget = promotion.get("budget", "final")
    return _p(
        f"Promotion: the search's {len(rows)} best distinct pairs were trained at the {budget} "
        f"budget; the decision compares them and the references at that budget."
    ) + _table(["pair", "device", "search accuracy", f"{budget} accuracy"], rows, 2)


def _objective(objective: dict[str, Any]) -> str:
    weights = objective.get("weights") or {}
    norms = objective.get("norms") or {}
    rows = [
        [
            name,
            weights.get(name),
            _cost(name, norms.get(name)) if name in COSTS and norms.get(name) else "–",
        ]
        for name in dict.fromkeys([*weights, *norms])
    ]
    source = objective.get("norms_source")
    basis = objective.get("norms_basis")
    where = (
        f" The norms come from the {source}" + (f" ({basis})" if basis else "") + "."
        if source
        else ""
    )
    return _p(f"Objective: the {objective.get('rule', '–')} rule.{where}") + _table(
        ["metric", "weight", "norm"], rows
    )


def _decision(decision: dict[str, Any]) -> str:
    best, threshold = decision.get("best_accuracy"), decision.get("threshold")
    intro = f"Decision: the {decision.get('rule', '–')} rule."
    if best is not None:
        intro += f" Best accuracy {best:.4f}{_plus_minus(decision.get('best_accuracy_std'))}"
        intro += "" if threshold is None else f"; within one std: ≥ {threshold:.4f}"
        intro += "."
    rows = [
        [
            _pair_name(c),
            c.get("device"),
            "–"
            if c.get("accuracy") is None
            else f"{c['accuracy']:.4f}{_plus_minus(c.get('accuracy_std'))}",
            _cost("latency_s", c.get("latency_s"))
            + _interval(c.get("latency_ci95_s"), "latency_s" in (c.get("predicted") or [])),
            _cost("energy_j", c.get("energy_j")),
            _cost("peak_power_w", c.get("peak_power_w")),
            _provenance(c),
            c.get("within_one_std"),
            "✓" if c.get("chosen") else "",
        ]
        for c in decision.get("candidates") or []
    ]
    header = ["pair", "device", "accuracy", "latency", "energy", "peak power", "not measured",
              "within one std", "chosen"]  # fmt: skip
    why = decision.get("why")
    return _p(intro) + (_table(header, rows, 2) if rows else "") + (_p(str(why)) if why else "")


def _interval(ci: Any, predicted: bool = False) -> str:
    """A latency interval in ms: a measurement's 95% confidence interval, or a surrogate's 90%
    prediction interval for a predicted latency."""
    if not ci or len(ci) != 2 or None in ci:
        return ""
    kind = "90% PI" if predicted else "95% CI"
    return f" ({kind} {ci[0] * 1e3:.4g}–{ci[1] * 1e3:.4g})"


def _provenance(record: dict[str, Any]) -> str:
    """Which of a record's costs were estimated from CPU time and which predicted."""
    parts = [
        f"{', '.join(names)} {how}"
        for names, how in (
            (_names(record.get("estimated")), "estimated"),
            (_names(record.get("predicted")), "predicted"),
        )
        if names
    ]
    return "; ".join(parts) or "–"


def _estimated(result: dict[str, Any]) -> str:
    """What was measured, estimated from CPU time, predicted, and measured under contention."""
    best = result["best"]
    measured = _names(best.get("measured"))
    estimated = _winner_estimated(best)
    predicted = [k for k in COSTS if k not in measured and k not in estimated]
    device = best["device"]
    lines = [f"Measured: the winner's {', '.join(measured) or 'nothing'} on {device}."]
    if estimated:
        lines.append(
            f"Estimated from CPU time (no power sensor): the winner's {', '.join(estimated)}"
            + (f", by {best['meter']}" if best.get("meter") else "")
            + "."
        )
    if predicted:
        lines.append(f"Predicted by {device}'s surrogate: the winner's {', '.join(predicted)}.")
    evaluations = result.get("evaluations", [])
    lines.append(
        f"{sum(bool(r.get('predicted')) for r in evaluations)} of {len(evaluations)} evaluated "
        "pairs have predicted costs (hollow markers in the plots); the others were measured on "
        "their device."
    )
    for name, info in (result.get("devices") or {}).items():
        if info.get("meter_kind") == "estimated":
            lines.append(
                f"{name}: energy and peak power come from the {info.get('meter', '')} estimate "
                "(no power sensor); latency is measured."
            )
        if info.get("kind") == "recorded":
            lines.append(
                f"{name} is a recorded device: every cost on it is predicted by its surrogate "
                "from the imported measurements."
            )
    lines += _contention(result)
    if result.get("decision") is not None:
        lines.append(TIE_RULE)
    lines += [f"Stage {s} skipped: {why}." for s, why in (result.get("skipped") or {}).items()]
    return f"<h2>Measured and estimated</h2><div class='note'>{_list(lines)}</div>"


def _winner_estimated(best: dict[str, Any]) -> list[str]:
    """The winner's CPU-time estimates: as recorded, else what an estimating meter gives."""
    if "estimated" in best:
        return _names(best["estimated"])
    measured = _names(best.get("measured"))
    if best.get("meter_kind") != "estimated" or "latency_s" not in measured:
        return []
    return [k for k in ("energy_j", "peak_power_w") if k not in measured]


def _contention(result: dict[str, Any]) -> list[str]:
    """Which measurements other processes crowded (nothing, for a result that does not say)."""
    best = result["best"]
    records = [*result.get("evaluations", []), *result.get("references", [])]
    known = [r for r in records if "contended" in r]
    if "contended" not in best and not known:
        return []
    lines = []
    again = (result.get("final_measurement") or {}).get("remeasured")
    if again:
        lines.append(
            "The winner's first final measurement was contended; it was measured again and "
            f"the {html.escape(str(again.get('kept')))} window was kept."
        )
    if best.get("contended"):
        lines.append(
            "The winner's final measurement was contended: other processes shared the cores "
            "while it was timed, so its latency may be too high."
        )
    crowded = [r for r in known if r["contended"]]
    if crowded:
        names = ", ".join(f"{_pair_name(r)} on {r['device']}" for r in crowded)
        lines.append(f"Contended measurements (other processes shared the cores): {names}.")
    if not lines:
        lines.append("No measurement in this report was contended.")
    return lines


def _tradeoffs(result: dict[str, Any]) -> str:
    return (
        "<h2>Accuracy against latency and energy</h2>"
        + _p(
            "Every evaluated pair on every device: a marker per device, filled where the cost "
            "was measured (or estimated from CPU time), hollow where a surrogate predicted it; "
            "stars are the reference BERTs, the ring is the winner, and the shaded band holds "
            "the accuracies within one standard deviation of the best."
        )
        + _image(_tradeoff_figure(result, "latency_s", (10, 5.5)), "accuracy against latency")
        + _image(_tradeoff_figure(result, "energy_j", (10, 5.5)), "accuracy against energy")
        + _image(_tradeoff_figure(result, "peak_power_w", (7, 3.8)), "accuracy against peak power")
    )


def _tradeoff_figure(result: dict[str, Any], metric: str, size: tuple[float, float]):
    """Accuracy against ``metric`` for every evaluated pair, reference and the winner."""
    import matplotlib.pyplot as plt

    label, unit, scale = COSTS[metric]
    styles = _device_styles(result)
    fig, ax = plt.subplots(figsize=size)
    xs: list[float] = []
    for device, style in styles.items():
        xs += _scatter_pairs(ax, result, device, style, metric, scale)
    xs += _scatter_references(ax, result, styles, metric, scale)
    xs += _ring_winner(ax, result, metric, scale)
    _shade_one_std(ax, result.get("decision"))
    ax.margins(x=0.1, y=0.1)  # room for the references' names
    _log_if_wide(ax, xs)
    _readable_ticks(ax)
    ax.set_xlabel(f"{label} ({unit})")
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3)
    _legend(ax, styles, result)
    return fig


def _scatter_pairs(ax, result, device, style, metric, scale) -> list[float]:
    records = [r for r in result.get("evaluations", []) if r.get("device") == device]
    xs = []
    for predicted in (False, True):
        points = [
            (m[metric] * scale, m["accuracy"])
            for r in records
            if (metric in _names(r.get("predicted"))) == predicted
            for m in [_metrics(r)]
            if m.get(metric) is not None and m.get("accuracy") is not None
        ]
        if not points:
            continue
        x, y = zip(*points, strict=True)
        fill = {"facecolors": "none"} if predicted else {"facecolors": style["color"]}
        ax.scatter(x, y, s=40, marker=style["marker"], edgecolors=style["color"], **fill)
        xs += x
    return xs


def _scatter_references(ax, result, styles, metric, scale) -> list[float]:
    xs = []
    for ref in result.get("references", []):
        m = _metrics(ref)
        if m.get(metric) is None or m.get("accuracy") is None:
            continue
        x, y = m[metric] * scale, m["accuracy"]
        colour = styles.get(ref.get("device"), {}).get("color", "grey")
        ax.scatter(x, y, marker="*", s=220, c=[colour], edgecolors="black", linewidths=0.6)
        ax.annotate(_plain(ref.get("name", "")), (x, y), textcoords="offset points",
                    xytext=(6, 4), fontsize=8)  # fmt: skip
        xs.append(x)
    return xs


def _ring_winner(ax, result, metric, scale) -> list[float]:
    m = _metrics(result["best"])
    if m.get(metric) is None or m.get("accuracy") is None:
        return []
    x = m[metric] * scale
    ax.scatter(x, m["accuracy"], s=420, facecolors="none", edgecolors="crimson", linewidths=2)
    return [x]


def _shade_one_std(ax, decision: dict[str, Any] | None) -> None:
    """The one-std band: from the decision's threshold (the lowest accuracy within one std of
    the most accurate) up to the most accurate."""
    if not decision or decision.get("best_accuracy") is None or not decision.get("threshold"):
        return
    ax.axhspan(decision["threshold"], decision["best_accuracy"], color="gold", alpha=0.25, lw=0)


def _legend(ax, styles, result) -> None:
    """One entry per device, then what the marker shapes and fills mean."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    def marker(label, **kw):
        return Line2D([], [], linestyle="none", label=_plain(label), **{"markersize": 8} | kw)

    handles = [
        marker(d, marker=s["marker"], color=s["color"], markeredgecolor=s["color"])
        for d, s in styles.items()
    ]
    handles += [
        marker("measured", marker="o", color="grey"),
        marker("predicted", marker="o", markerfacecolor="none", markeredgecolor="grey"),
        marker("reference", marker="*", color="grey", markeredgecolor="black", markersize=12),
        marker("winner", marker="o", markerfacecolor="none", markeredgecolor="crimson",
               markersize=14, markeredgewidth=2),
    ]  # fmt: skip
    if (result.get("decision") or {}).get("threshold"):
        handles.append(Patch(color="gold", alpha=0.25, label="within one std of the best"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)


def _convergence(result: dict[str, Any]) -> str:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    search = result.get("search") or {}
    records = _search_records(result)
    runs = [(search.get("sampler", "search"), search.get("history") or [], records)]
    if result.get("compare"):
        compare = result["compare"]
        runs.append((compare.get("sampler", "compare"), compare.get("history") or [], None))
    fig, ax = plt.subplots(figsize=(10, 4.5))
    for (name, history, records), colour in zip(runs, ("tab:blue", "tab:orange"), strict=False):
        _plot_history(ax, _plain(name), history, _feasible(history, records), colour)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _readable_ticks(ax)
    ax.set_xlabel("evaluation")
    ax.set_ylabel("objective")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    failed = result.get("failed", [])
    text = (
        "Each evaluation's objective, in order (points; × where the pair broke a budget), and "
        "the best feasible objective so far (line)."
    )
    if failed:
        text += (
            f" {len(failed)} evaluation(s) failed and have no objective: "
            + "; ".join(f"{f.get('device')}: {f.get('reason')}" for f in failed)
            + "."
        )
    return "<h2>Convergence</h2>" + _p(text) + _image(fig, "convergence")


def _feasible(history: list, records: list[dict[str, Any]] | None) -> list[bool]:
    """Each history entry's feasibility (all feasible where the records do not say)."""
    if records is None:
        return [True] * len(history)
    return [r.get("feasible", True) is not False for r in records]


def _plot_history(ax, name: str, history: list, feasible: list[bool], colour: str) -> None:
    steps = np.arange(1, len(history) + 1)
    values = np.array([np.nan if v is None else v for v in history], dtype=float)
    ok = np.array(feasible, dtype=bool) & np.isfinite(values)
    bad = ~np.array(feasible, dtype=bool) & np.isfinite(values)
    ax.scatter(steps[ok], values[ok], s=30, color=colour, label=f"{name}: each evaluation")
    if bad.any():
        ax.scatter(steps[bad], values[bad], s=40, marker="x", color=colour,
                   label=f"{name}: over a budget")  # fmt: skip
    best = np.fmax.accumulate(np.where(ok, values, np.nan))
    ax.step(steps, best, where="post", color=colour, label=f"{name}: best so far")


def _parity(result: dict[str, Any]) -> str:
    import matplotlib.pyplot as plt

    parity = {d: _parity_points(p) for d, p in (result.get("surrogates") or {}).items()}
    shown = {d: points for d, points in parity.items() if points}
    rows = [
        [d, p.get("n"), _method(p) if d in shown else "none: too few measurements"]
        for d, p in (result.get("surrogates") or {}).items()
    ]
    text = (
        "Each measurement predicted by a surrogate that never saw it, against the measured "
        "value, with the 90% interval (per measured batch). Held-out: grouped folds; "
        "leave-one-out, where there are too few for folds: each architecture predicted by a "
        "model fitted on all the others."
    )
    if not shown:
        return (
            "<h2>Surrogates</h2>" + _p(text) + _table(["device", "measurements", "method"], rows)
        )
    metrics = [k for k in COSTS if any(k in points for points in shown.values())]
    fig, axes = plt.subplots(
        len(shown), len(metrics), figsize=(4 * len(metrics), 3.4 * len(shown)), squeeze=False
    )
    for row, (device, points) in enumerate(shown.items()):
        for col, metric in enumerate(metrics):
            _parity_panel(axes[row][col], device, metric, points.get(metric))
    fig.tight_layout()
    return (
        "<h2>Surrogates</h2>"
        + _p(text)
        + _table(["device", "measurements", "method"], rows)
        + _image(fig, "surrogate parity")
    )


def _parity_points(parity: dict[str, Any]) -> dict[str, np.ndarray]:
    """A device's ``[measured, mean, lower, upper]`` rows per metric (unit names)."""
    return {
        unit_key(k): np.asarray(v, dtype=float)
        for k, v in parity.items()
        if unit_key(k) in COSTS and isinstance(v, list) and v
    }


def _method(parity: dict[str, Any]) -> str:
    return parity.get("method", "held-out")


def _parity_panel(ax, device: str, metric: str, points: np.ndarray | None) -> None:
    if points is None:
        ax.set_axis_off()
        return
    label, unit, scale = COSTS[metric]
    unit = unit.removesuffix("/seq")
    points = points * scale
    ax.errorbar(
        points[:, 0],
        points[:, 1],
        yerr=[
            np.maximum(points[:, 1] - points[:, 2], 0),
            np.maximum(points[:, 3] - points[:, 1], 0),
        ],
        fmt="o",
        ms=3,
        capsize=2,
        alpha=0.8,
    )
    low, high = points[:, :2].min(), points[:, :2].max()
    ax.plot([low, high], [low, high], c="grey", lw=1)
    inside = np.mean((points[:, 2] <= points[:, 0]) & (points[:, 0] <= points[:, 3]))
    ax.set_title(_plain(f"{device}: {label}, 90% interval covers {inside:.0%}"), fontsize=9)
    if _wide(points.ravel()):  # both axes alike, so that the diagonal stays one
        ax.set_xscale("log")
        ax.set_yscale("log")
    _readable_ticks(ax)
    ax.set_xlabel(f"measured {label} ({unit})")
    ax.set_ylabel(f"predicted {label} ({unit})")


def _model_card(result: dict[str, Any]) -> str:
    from edgetran.space import Architecture
    from edgetran.space.costs import estimate_costs

    best, config = result["best"], result["config"]
    arch = Architecture.from_dict(best["arch"])
    batch, seq = config.get("batch_size", 1), config.get("seq_len", 64)
    costs = estimate_costs(arch, batch_size=batch, seq_len=seq)
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
    m = _metrics(best)
    trained = result.get("final_training") or {}
    std = best.get("accuracy_std", trained.get("accuracy_std"))
    card = [
        ["parameters", f"{costs.parameters / 1e6:.3f} M"],
        [f"FLOPs ({batch} × {seq})", f"{costs.flops / 1e9:.3f} G"],
        [
            "accuracy",
            f"{m['accuracy']:.4f}{_plus_minus(std)} "
            f"({trained.get('metric', '')}, {config.get('final_budget', '–')} budget)",
        ],
        [
            "latency",
            _cost("latency_s", m.get("latency_s")) + _interval(best.get("latency_ci95_s")),
        ],
        ["energy", _cost("energy_j", m.get("energy_j"))],
        ["peak power", _cost("peak_power_w", m.get("peak_power_w"))],
        ["measured", ", ".join(_names(best.get("measured")))],
    ]
    name = f"{best['name']} on " if best.get("name") else ""
    return (
        f"<h2>Model card: the winner, {html.escape(name + best['device'])}</h2>"
        + _table(["layer", "hidden", "operations", "heads", "head dim", "feed-forward"], layers)
        + _table(["", "value"], card)
    )


def _growprune(result: dict[str, Any]) -> str:
    gp = result.get("growprune") or {}
    if not gp:
        return ""
    if gp.get("skipped"):
        return "<h2>Grow-and-prune</h2>" + _p(f"Skipped: {gp['skipped']}.")
    rows = []
    for it in gp.get("iterations", []):
        accepted = next((c for c in it.get("children", []) if c.get("accepted")), None)
        rows.append(
            [
                it.get("iteration"),
                it.get("mode"),
                len(it.get("children", [])),
                accepted["change"] if accepted else "none",
                accepted.get("loss") if accepted else None,
                accepted.get("parameters") if accepted else None,
            ]
        )
    return (
        "<h2>Grow-and-prune</h2>"
        + _p(
            f"Root loss {_fmt((gp.get('root') or {}).get('loss'))}, final loss "
            f"{_fmt((gp.get('final') or {}).get('loss'))}; stopped by {gp.get('stopped', '–')}."
        )
        + _table(["iteration", "mode", "children", "accepted", "loss", "parameters"], rows, 2)
    )


def _stages(result: dict[str, Any]) -> str:
    rows = [[name, seconds] for name, seconds in (result.get("stages") or {}).items()]
    env = result.get("environment") or {}
    where = (
        _p(f"{env.get('platform', '')}, Python {env.get('python', '')}, {env.get('cpus')} CPUs.")
        if env
        else ""
    )
    return "<h2>Stages</h2>" + _table(["stage", "seconds"], rows) + where
