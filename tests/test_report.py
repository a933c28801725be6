"""The co-design report, built from ``result.json`` alone: on a synthetic result of the current
schema, on an older one without its newer fields, with hostile names, in a headless browser;
``edgetran report RUN_DIR``; the surrogates' leave-one-out parity."""

from __future__ import annotations

import base64
import copy
import html
import io
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from edgetran.codesign.report import TIE_RULE, write_report
from edgetran.metrics import LEGACY_KEYS
from edgetran.space import NAMED_ARCHITECTURES, sample

ROOT = Path(__file__).resolve().parents[1]
DEVICES = ("cpu/torch", "cpu/onnxruntime", "jetson")
#: Seconds per sequence of a unit of architecture "size" on each device (the recorded one slow).
SPEEDS = (2e-3, 1.2e-3, 2e-2)
COSTS = ("latency_s", "energy_j", "peak_power_w")


def _costs(speed: float, size: float) -> dict[str, float]:
    latency = speed * size
    return {"latency_s": latency, "energy_j": 5 * latency, "peak_power_w": 9.9875 + size / 1e3}


def _evaluation(arch, device, speed, accuracy, size, how, predicted, feasible=True,
                contended=False):  # fmt: skip
    metrics = {"accuracy": accuracy, **_costs(speed, size)}
    return {
        "arch": arch.to_model_dict(), "device": device, "metrics": metrics,
        "predicted": list(COSTS) if predicted else [],
        "lower": {k: metrics[k] * 0.7 for k in COSTS} if predicted else {},
        "upper": {k: metrics[k] * 1.4 for k in COSTS} if predicted else {},
        "accuracy_std": 0.02, "accuracy_runs": 1, "objective": 0.5 + accuracy / 4,
        "feasible": feasible, "how": how, "contended": contended,
    }  # fmt: skip


def _parity_rows(n: int, scale: float, rng) -> list[list[float]]:
    measured = scale * np.exp(rng.uniform(0, 3, n))
    mean = measured * rng.lognormal(0, 0.15, n)
    return [[y, p, p * 0.6, p * 1.6] for y, p in zip(measured, mean, strict=True)]


def synthetic_result(task: str = "tweets.csv", devices: tuple[str, ...] = DEVICES) -> dict:
    """A ``result.json`` of the current schema: 3 devices (two live, one recorded), 12
    evaluated pairs (9 searched, 3 from the device choice), 2 references on every device, a
    one-std decision, the winner against every reference pair, parity by both methods."""
    speed = dict(zip(devices, SPEEDS, strict=True))
    rng = np.random.default_rng(0)
    archs = sample(9, method="random", seed=1)
    live, recorded = devices[:2], devices[2]
    evaluations = [
        _evaluation(a, devices[i % 3], SPEEDS[i % 3], 0.70 + 0.01 * i, 1 + 3 * i,
                    "random" if i < 4 else "boshcode", predicted=i % 3 == 2 or i % 2 == 1,
                    feasible=i != 5, contended=i == 3)
        for i, a in enumerate(archs)
    ]  # fmt: skip
    evaluations += [
        _evaluation(archs[i], live[1], speed[live[1]], 0.70 + 0.01 * i, 1 + 3 * i,
                    f"device choice (evaluated on {devices[i % 3]})", predicted=True)
        for i in (6, 7, 8)
    ]  # fmt: skip
    references = []
    for name, accuracy, size in (("bert-tiny", 0.74, 4), ("bert-mini", 0.79, 30)):
        for device in devices:
            predicted = device == recorded
            references.append({
                "name": name, "device": device, "arch": NAMED_ARCHITECTURES[name].to_model_dict(),
                "metrics": {"accuracy": accuracy, **_costs(speed[device], size)},
                "accuracy_std": 0.02, "final_accuracy": accuracy, "final_accuracy_std": 0.02,
                "predicted": list(COSTS) if predicted else [],
                "latency_ci95_s": None if predicted else [speed[device] * size * f
                                                          for f in (0.97, 1.03)],
                "objective": 0.6, "feasible": True, "contended": name == "bert-mini"
                and device == live[0],
            })  # fmt: skip
    winner = evaluations[7]
    best_metrics = {"accuracy": 0.781, **_costs(speed[live[1]], 22)}
    candidates = [
        {"name": None, "arch_hash": archs[8].hash, "device": live[1], "accuracy": 0.78,
         "accuracy_std": 0.02, "latency_s": speed[live[1]] * 25, "latency_ci95_s": [0.029, 0.031],
         "energy_j": 0.15, "peak_power_w": 10.0, "estimated": ["energy_j", "peak_power_w"],
         "predicted": [], "source": "search", "within_one_std": True, "chosen": False},
        {"name": None, "arch_hash": archs[7].hash, "device": live[1], "accuracy": 0.77,
         "accuracy_std": 0.02, "latency_s": speed[live[1]] * 22, "latency_ci95_s": [0.026, 0.027],
         "energy_j": 0.13, "peak_power_w": 10.0, "estimated": ["energy_j", "peak_power_w"],
         "predicted": [], "source": "search", "within_one_std": True, "chosen": True},
        {"name": "bert-mini", "arch_hash": NAMED_ARCHITECTURES["bert-mini"].hash,
         "device": live[0], "accuracy": 0.79, "accuracy_std": 0.02,
         "latency_s": speed[live[0]] * 30, "latency_ci95_s": [0.058, 0.062], "energy_j": 0.3,
         "peak_power_w": 10.0, "estimated": ["energy_j", "peak_power_w"], "predicted": [],
         "source": "reference", "within_one_std": True, "chosen": False},
    ]  # fmt: skip
    versus = [
        {"reference": r["name"], "device": r["device"], "accuracy": r["metrics"]["accuracy"],
         "accuracy_std": 0.02, "latency_s": r["metrics"]["latency_s"],
         "energy_j": r["metrics"]["energy_j"],
         "latency_x": r["metrics"]["latency_s"] / best_metrics["latency_s"],
         "energy_x": r["metrics"]["energy_j"] / best_metrics["energy_j"],
         "accuracy_delta": best_metrics["accuracy"] - r["metrics"]["accuracy"],
         "accuracy_delta_std": 0.028,
         "verdict": "dominates" if r["name"] == "bert-tiny" else "trades",
         "measured": r["device"] != recorded}
        for r in references
    ]  # fmt: skip
    search_history = [e["objective"] for e in evaluations[:9]]
    return {
        "headline": (
            f"The winner, {archs[7].hash[:10]} on {live[1]}, is 2.27× faster and uses 2.27× "
            f"less energy than bert-mini on {live[0]} (measured), 0.009 ± 0.028 less accurate; "
            "chosen by the one-std rule."
        ),
        "best": {
            "name": None,
            "arch": winner["arch"],
            "device": live[1],
            "metrics": best_metrics,
            "accuracy_std": 0.02,
            "measured": ["accuracy", "latency_s"],
            "estimated": ["energy_j", "peak_power_w"],
            "contended": False,
            "latency_ci95_s": [0.0259, 0.0268],
            "meter": "estimate:cpu-time(5 W/core + 0 W)",
            "meter_kind": "estimated",
            "objective": 0.71,
            "source": "search",
            "search": {
                k: winner[k]
                for k in (
                    "arch",
                    "metrics",
                    "predicted",
                    "objective",
                    "accuracy_std",
                    "accuracy_runs",
                    "how",
                )
            },
        },
        "objective": {
            "rule": "paper",
            "weights": {"accuracy": 0.5, "latency_s": 0.2, "energy_j": 0.2, "peak_power_w": 0.1},
            "norms": {"latency_s": 0.1, "energy_j": 0.5, "peak_power_w": 12.0},
            "norms_source": "run",
            "norms_basis": "the largest value evaluated on a live device",
        },
        "decision": {
            "rule": "one-std",
            "best_accuracy": 0.79,
            "best_accuracy_std": 0.02,
            "threshold": 0.77,
            "candidates": candidates,
            "why": "the fastest measured latency among the candidates within one std",
        },
        "versus_references": versus,
        "references": references,
        "evaluations": evaluations,
        "failed": [
            {
                "arch": archs[0].to_model_dict(),
                "device": live[0],
                "reason": "the evaluation ran past eval_timeout_s=60",
            }
        ],
        "search": {
            "history": search_history,
            "evaluations": 9,
            "evaluations_to_best": 8,
            "reevaluations": 1,
            "sampler": "boshcode",
        },
        "compare": {
            "sampler": "tpe",
            "history": [v - 0.01 for v in search_history],
            "reevaluations": 0,
        },
        "device_choice": {
            "pairs_scored": 18,
            "search_best": {"device": live[1], "objective": 0.7},
        },
        "surrogates": {
            live[0]: {
                "n": 9,
                "method": "leave-one-out",
                **{
                    k: _parity_rows(9, s, rng)
                    for k, s in zip(COSTS, (2e-3, 1e-2, 10), strict=True)
                },
            },
            live[1]: {
                "n": 14,
                "method": "held-out",
                **{
                    k: _parity_rows(14, s, rng)
                    for k, s in zip(COSTS, (1e-3, 5e-3, 10), strict=True)
                },
            },
            recorded: {"n": 6},
        },
        "growprune": {"skipped": "the search budget trains no MLM steps"},
        "final_training": {"accuracy": 0.781, "accuracy_std": 0.02, "metric": "accuracy"},
        "export": {"skipped": "not in this synthetic run"},
        "final_measurement": {"latency_s": best_metrics["latency_s"]},
        "devices": {
            live[0]: {
                "kind": "live",
                "meter": "estimate:cpu-time(5 W/core + 0 W)",
                "meter_kind": "estimated",
            },
            live[1]: {
                "kind": "live",
                "meter": "estimate:cpu-time(5 W/core + 0 W)",
                "meter_kind": "estimated",
            },
            recorded: {"kind": "recorded", "meter": "jetson-ina3221", "meter_kind": "measured"},
        },
        "stages": {"profile": 70.5, "surrogates": 1.2, "search": 440.0},
        "skipped": {"growprune": "the search budget trains no MLM steps"},
        "config": {
            "task": task,
            "devices": list(devices),
            "budget": "quick",
            "final_budget": "quick",
            "max_latency_ms": 50.0,
            "batch_size": 1,
            "seq_len": 64,
            "evaluations": 10,
        },
        "environment": {"platform": "Linux", "python": "3.11", "cpus": 2},
    }


def old_style(result: dict) -> dict:
    """``result`` as an older pipeline wrote it: no headline, objective, decision,
    versus_references, parity method or contention; metrics under their old names."""
    old = copy.deepcopy(result)
    for key in ("headline", "objective", "decision", "versus_references"):
        del old[key]
    for key in ("name", "accuracy_std", "estimated", "contended", "source"):
        del old["best"][key]
    new_names = {v: k for k, v in LEGACY_KEYS.items()}
    for record in (*old["evaluations"], *old["references"]):
        record.pop("contended", None)
        record["metrics"] = {new_names.get(k, k): v for k, v in record["metrics"].items()}
        record["predicted"] = [new_names[k] for k in record["predicted"]]
    for device, parity in old["surrogates"].items():
        old["surrogates"][device] = {new_names.get(k, k): v for k, v in parity.items()
                                     if k != "method"}  # fmt: skip
    return old


# -- reading the page -----------------------------------------------------------------------------
class Page(HTMLParser):
    """The tags, attributes and text of a page; refuses unbalanced tags."""

    VOID = frozenset({"meta", "img", "br", "hr", "link", "input"})

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: dict[str, list[str]] = {}
        self.open: list[str] = []
        self.feed(text)
        self.close()
        assert self.open == [], f"unclosed tags: {self.open}"

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_endtag(self, tag):
        assert self.open and self.open[-1] == tag, f"</{tag}> closes {self.open[-1:]}"
        self.open.pop()

    def handle_data(self, data):
        if self.open:
            self.text.setdefault(self.open[-1], []).append(data)

    def images(self) -> list[np.ndarray]:
        """Every image decoded (each must be an inline PNG)."""
        from PIL import Image

        out = []
        for tag, attrs in self.tags:
            if tag == "img":
                prefix = "data:image/png;base64,"
                assert attrs["src"].startswith(prefix)
                png = base64.b64decode(attrs["src"].removeprefix(prefix))
                out.append(np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=float))
        return out


def check_self_contained(text: str) -> Page:
    """The page parses, every image decodes and shows something, and nothing is fetched."""
    page = Page(text)
    images = page.images()
    assert images and all(image.var() > 10 for image in images)
    assert not re.search(r"(src|href)\s*=\s*['\"]?\s*(https?:)?//", text, re.I)
    assert not re.search(r"url\(\s*['\"]?\s*(https?:)?//", text, re.I)
    assert not [tag for tag, _ in page.tags if tag in ("script", "link", "iframe", "object")]
    return page


@pytest.fixture(scope="module")
def synthetic_report(tmp_path_factory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("report")
    result = synthetic_result()
    (folder / "result.json").write_text(json.dumps(result))
    return write_report(result, folder / "report.html"), result


# -- the report -----------------------------------------------------------------------------------
def test_the_report_tells_the_story_from_the_result(synthetic_report):
    path, result = synthetic_report
    text = path.read_text()
    page = check_self_contained(text)
    assert len(page.images()) == 5  # latency, energy, peak power, convergence, parity
    first = next(attrs for tag, attrs in page.tags if tag == "p")
    assert first.get("class") == "headline"
    assert text.index(result["headline"]) < text.index("<h2>")
    headings = page.text["h2"]
    assert headings[:4] == [
        "The winner against the references",
        "How the winner was chosen",
        "Measured and estimated",
        "Accuracy against latency and energy",
    ]
    assert {"Convergence", "Surrogates"} <= set(headings) and "Pareto fronts" not in text
    cells = page.text["td"]
    assert cells.count("dominates") == 3 and cells.count("trades") == 3
    assert "2.27×" in cells and "+0.0410 ± 0.0280" in cells  # bert-tiny: 0.781 − 0.74
    assert cells.count("✓") == 1 and "energy_j, peak_power_w estimated" in cells
    assert "leave-one-out" in cells and "held-out" in cells
    assert "none: too few measurements" in cells
    assert "the one-std rule" in text and "≥ 0.7700" in text and result["decision"]["why"] in text
    assert html.escape(TIE_RULE) in text and "bert-mini on cpu/torch" in text  # contended
    assert "latency_s" in cells and "100 ms/seq" in cells  # the norm
    assert "1 evaluation(s) failed" in text and "eval_timeout_s=60" in text


def test_an_older_result_without_the_new_fields_still_reports(tmp_path):
    result = old_style(synthetic_result())
    text = write_report(result, tmp_path / "report.html").read_text()
    page = check_self_contained(text)
    assert len(page.images()) == 5
    assert "The winner is " in text and "records no decision rule" in text
    assert html.escape(TIE_RULE) not in text
    cells = page.text["td"]
    assert cells.count("held-out") == 2 and "bert-mini" in cells  # its ratios, no verdict
    # energy and peak power of an estimating meter, though the result does not list them
    estimated = "Estimated from CPU time (no power sensor): the winner's energy_j, peak_power_w"
    assert estimated in html.unescape(text)


def test_report_run_rebuilds_an_older_result_json_with_the_older_metric_names(tmp_path):
    """A ``result.json`` written before the metrics had units reports from the file alone;
    one that names a metric both ways is a typed error."""
    from edgetran.codesign.config import CodesignError
    from edgetran.codesign.report import report_run

    old = old_style(synthetic_result())
    assert "latency" in old["evaluations"][0]["metrics"]
    (tmp_path / "result.json").write_text(json.dumps(old))
    text = report_run(tmp_path).read_text()
    check_self_contained(text)
    assert "The winner is " in text
    both = copy.deepcopy(old)
    both["best"]["metrics"] = {**both["best"]["metrics"], "latency": 1.0, "latency_s": 1.0}
    (tmp_path / "result.json").write_text(json.dumps(both))
    with pytest.raises(CodesignError, match="'latency' and 'latency_s'"):
        report_run(tmp_path)


def test_names_from_the_user_are_escaped(tmp_path):
    """A task file and a device whose names are markup stay text; a $ is no mathtext."""
    task = "<script>alert(1)</script>.csv"
    devices = ("cpu/torch", "<b>npu</b>", "board$x$<i>")
    result = synthetic_result(task, devices)
    result["failed"][0]["reason"] = "<img src=x onerror=alert(2)>"
    result["references"][0]["name"] = "<em>tiny</em>"
    text = write_report(result, tmp_path / "report.html").read_text()
    page = check_self_contained(text)
    assert "<script>" not in text and "<b>npu" not in text and "<em>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.csv" in text and "&lt;b&gt;npu" in text
    assert "&lt;img src=x onerror=alert(2)&gt;" in text
    assert {tag for tag, _ in page.tags} <= {
        "html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "div", "ul", "li",
        "table", "tr", "th", "td", "img",
    }  # fmt: skip


def test_tick_labels_are_plain_numbers():
    """No offset (``+9.98``) and no scientific labels, on a linear and a log axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edgetran.codesign.report import _readable_ticks

    fig, ax = plt.subplots()
    ax.scatter([1e-5, 3e-4, 2e-3], [9.9875, 9.989, 9.99])
    ax.set_xscale("log")
    _readable_ticks(ax)
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels() + ax.get_yticklabels() if t.get_text()]
    assert labels and not [t for t in labels if re.search(r"e|\^|×|\$", t)], labels
    assert "0.0001" in labels and ax.yaxis.get_offset_text().get_text() == ""
    plt.close(fig)


# -- the command ----------------------------------------------------------------------------------
def test_report_command_rebuilds_the_page_from_result_json(
    synthetic_report, run_cli, tmp_path, monkeypatch
):
    folder = synthetic_report[0].parent
    (folder / "report.html").unlink()
    code, out, err = run_cli("report", folder)
    assert code == 0, err
    assert out.strip() == str(folder / "report.html")
    check_self_contained((folder / "report.html").read_text())
    written = []
    monkeypatch.setattr(
        "edgetran.codesign.report.write_report", lambda r, p: written.append(p) or p
    )
    code, out, _ = run_cli("report", folder, "--out", tmp_path / "elsewhere.html")
    assert code == 0 and written == [tmp_path / "elsewhere.html"]
    assert out.strip() == str(tmp_path / "elsewhere.html")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "result.json: no such file"),
        ("{not json", "result.json: not valid JSON"),
        ("[1, 2]", "not a co-design result"),
        ('{"best": {"metrics": {}}, "config": {}}', "result.json: cannot be reported (KeyError"),
    ],
    ids=["missing", "malformed", "not-an-object", "truncated"],
)
def test_report_command_refuses_a_bad_result_in_one_line(run_cli, tmp_path, content, message):
    if content is not None:
        (tmp_path / "result.json").write_text(content)
    code, _, err = run_cli("report", tmp_path)
    assert code == 2 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "report.html").exists()


def test_report_help_imports_no_heavy_library():
    from tests.test_cli_startup import _probe

    result = _probe("report", "--help")
    assert result["code"] in (0, None) and result["heavy"] == []


# -- the surrogates' parity -----------------------------------------------------------------------
def test_parity_falls_back_to_leave_one_out_on_a_small_profile(monkeypatch):
    """Nine measurements make no five folds of eight to fit on: each is predicted by a model
    fitted on the other eight. Eight leave seven: nothing can be predicted."""
    from edgetran.codesign.explore import _parity
    from tests.conftest import fake_device

    monkeypatch.setattr(
        "edgetran.codesign.explore.SURROGATE_OPTIONS", {"n_models": 2, "n_estimators": 20}
    )
    items = fake_device(9, "board", seed=3)
    parity = _parity(items, seed=0)
    assert parity["method"] == "leave-one-out" and parity["n"] == 9
    latencies = sorted(m.latency_s for m in items)
    for metric in ("latency_s", "energy_j", "peak_power_w"):
        assert len(parity[metric]) == 9
    assert sorted(row[0] for row in parity["latency_s"]) == pytest.approx(latencies)
    assert _parity(items[:8], seed=0) == {"n": 8}


# -- in a browser ---------------------------------------------------------------------------------
BROWSER = (
    *("chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"),
    *("--disable-background-networking", "--disable-component-update", "--hide-scrollbars"),
    *("--enable-logging=stderr", "--virtual-time-budget=5000"),
)
#: Injected before the page: collects errors, then reports the images and the page's width.
PROBE = (
    "<script>window.errors=[];window.onerror=(m)=>errors.push(String(m));"
    "const e=console.error;console.error=(...a)=>{errors.push(a.join(' '));e(...a)};"
    "addEventListener('load',()=>{const i=[...document.images];document.title="
    "'PROBE'+JSON.stringify({images:i.length,loaded:i.filter(x=>x.complete&&"
    "x.naturalWidth>0).length,width:document.documentElement.scrollWidth,errors})});</script>"
)
WIDTH = 1280


def render_in_browser(report: Path, work: Path) -> dict:
    """Open ``report`` in headless Chromium at 1280 px: the probe's findings; the screenshot is
    written beside the report (``report.png``) and copied to ``.pytest_cache/edgetran/``."""
    probed = work / "probed.html"
    probed.write_text(report.read_text().replace("<head>", "<head>" + PROBE, 1))
    browser = [*BROWSER, f"--window-size={WIDTH},900"]
    done = subprocess.run(
        [*browser, f"--user-data-dir={work / 'profile-probe'}", "--dump-dom", probed.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    title = re.search(r"<title>PROBE(.*?)</title>", done.stdout)
    assert title, done.stderr[-2000:]
    state = json.loads(title.group(1).replace("&quot;", '"'))
    assert not re.search(r"CONSOLE.*(Uncaught|ERROR)", done.stderr)
    shot = report.parent / "report.png"
    subprocess.run(
        [*BROWSER, f"--window-size={WIDTH},5000", f"--user-data-dir={work / 'profile-shot'}",
         f"--screenshot={shot}", report.as_uri()],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    assert shot.stat().st_size > 10_000
    kept = ROOT / ".pytest_cache" / "edgetran"
    kept.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, kept / f"{report.parent.name}-report.png")
    return state


@pytest.mark.skipif(shutil.which("chromium") is None, reason="no chromium here (make browser)")
def test_the_report_renders_in_a_browser_without_overflow(synthetic_report, tmp_path):
    state = render_in_browser(synthetic_report[0], tmp_path)
    assert state["images"] == 5 and state["loaded"] == 5 and state["errors"] == []
    assert state["width"] <= WIDTH
