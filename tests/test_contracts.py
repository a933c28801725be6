"""Every built-in plug-in passes its family's contract check; third-party plug-ins are found
through entry points; each check fails, naming the clause, on a plug-in that breaks it."""

from __future__ import annotations

import copy
import json
import textwrap
import time
from dataclasses import replace

import numpy as np
import pytest
import torch

from edgetran.export.runners import Runner
from edgetran.growprune.modes import PruneAttnHead
from edgetran.plugins import (
    METERS,
    MODES,
    RUNTIMES,
    SAMPLERS,
    SURROGATES,
    TASKS,
    PluginError,
    describe_all,
    list_meters,
    list_modes,
    list_runtimes,
    list_samplers,
    list_surrogates,
    list_tasks,
)
from edgetran.profile.meters import Meter, MeterError, Reading, create_meter
from edgetran.search import Accuracy, LiveEvaluator, ReplayEvaluator
from edgetran.search.proposers import Proposal, Proposer
from edgetran.surrogate import DeviceSurrogate
from edgetran.surrogate.base import Surrogate
from edgetran.testing import (
    ContractError,
    check_evaluator,
    check_meter,
    check_mode,
    check_proposer,
    check_runner,
    check_runtime,
    check_surrogate,
    check_task,
    synthetic_table,
)
from edgetran.train.tasks import GLUE_TASKS, Examples, Task, load_task
from tests.conftest import fake_device

#: Arguments of the built-in meters that need one (``--meter NAME:ARG``).
METER_ARGS = {"command": "echo 3.5", "csv": "{csv}"}
#: Constructor options that keep the surrogate checks fast.
FAST_SURROGATES = {
    "gbdt": {"n_models": 3, "n_estimators": 60, "learning_rate": 0.1},
    "nn": {"epochs": 3, "mc_samples": 3, "calibration_folds": 2},
}


def skip_unless_usable(registry, name: str) -> None:
    why = registry.why_not(name)
    if why:
        pytest.skip(f"{registry.noun} {name!r} is not usable here: {why}")


# -- every built-in passes its check ------------------------------------------------------------
@pytest.mark.parametrize("name", list_meters())
def test_built_in_meter_keeps_the_contract(name, tmp_path):
    skip_unless_usable(METERS, name)
    now = time.time()
    csv = tmp_path / "watts.csv"
    csv.write_text("timestamp,watts\n" + "".join(f"{now + i},{2 + i}\n" for i in range(3)))
    args = [METER_ARGS[name].format(csv=csv)] if name in METER_ARGS else []
    check_meter(METERS.create(name, *args))


@pytest.mark.parametrize("name", list_runtimes())
def test_built_in_runtime_keeps_the_contract(name):
    skip_unless_usable(RUNTIMES, name)
    check_runtime(name)


@pytest.mark.parametrize("name", list_samplers())
def test_built_in_proposer_keeps_the_contract(name):
    skip_unless_usable(SAMPLERS, name)
    check_proposer(name)


def test_boshcode_with_a_tpe_portfolio_keeps_the_contract():
    from edgetran.search.proposers import Setup, boshcode

    def with_portfolio(setup: Setup):
        """BOSHCODE with half of its proposals TPE's (the check's 6 pairs: 4 initial, then
        the surrogate's and TPE's)."""
        shared = replace(setup.settings.boshcode, portfolio=0.5)
        return boshcode(Setup(replace(setup.settings, boshcode=shared), setup.devices,
                              setup.evaluator))  # fmt: skip

    check_proposer(with_portfolio)


@pytest.mark.parametrize("name", list_surrogates())
def test_built_in_surrogate_keeps_the_contract(name):
    skip_unless_usable(SURROGATES, name)
    check_surrogate(SURROGATES.get(name), **FAST_SURROGATES.get(name, {}))


@pytest.mark.parametrize("name", list_tasks())
def test_built_in_task_keeps_the_contract(name):
    skip_unless_usable(TASKS, name)
    check_task(load_task(name))


@pytest.mark.parametrize("name", list_modes())
def test_built_in_mode_keeps_the_contract(name):
    skip_unless_usable(MODES, name)
    check_mode(MODES.create(name))


def test_a_task_file_keeps_the_contract(tmp_path):
    rows = [f"text {i},{'ab'[i % 2]}" for i in range(30)]
    path = tmp_path / "task.csv"
    path.write_text("text,label\n" + "\n".join(rows) + "\n")
    check_task(load_task(str(path)))


def test_every_glue_task_is_registered():
    assert {n for n in list_tasks() if n.startswith("glue/")} == {f"glue/{t}" for t in GLUE_TASKS}


def test_built_in_evaluators_keep_the_contract(tmp_path):
    check_evaluator(ReplayEvaluator(synthetic_table(tmp_path / "table.jsonl")))
    items = fake_device(20, "board", seed=4)
    options = {"n_models": 2, "n_estimators": 40}
    surrogate = DeviceSurrogate(model_options=options).fit(items)
    check_evaluator(LiveEvaluator(lambda arch: 0.5, {}, {"board": surrogate}))
    noisy = LiveEvaluator(
        lambda arch, run=0: Accuracy(0.5 + run / 100, 0.01), {}, {"board": surrogate}
    )
    check_evaluator(noisy)
    # known before any evaluation, so a resumed search re-evaluates as the first run would
    assert noisy.takes_run and not LiveEvaluator(lambda arch: 0.5, {}, {}).takes_run
    assert (
        noisy.reevaluate(noisy.candidates(1, np.random.default_rng(0), set())[0], 2).value == 0.52
    )


# -- registries and entry points ---------------------------------------------------------------
PLUGIN = """
    import time

    import numpy as np

    from edgetran.export.runners import Runtime, TorchRunner
    from edgetran.profile.meters import Meter, Reading
    from edgetran.search.proposers import Proposal, Proposer


    class UsbMeter(Meter):
        name = "usb"

        def __init__(self, port="/dev/ttyUSB0"):
            self.port = port

        def read(self):
            return Reading(time.time(), power_w=1.5)


    class UnseededProposer(Proposer):
        # draws from NumPy's global generator: the seed does not fix it

        def propose(self, records, pending, pool, step, rng):
            return Proposal(pool[np.random.randint(len(pool))], "unseeded")


    def no_export(wrapper, example, path, spec):
        pass


    LAZY = Runtime("lazy", "lazy-format", "model.lazy", no_export, TorchRunner)
"""
ENTRY_POINTS = """
    [edgetran.meters]
    usb = edgetran_fake_plugin:UsbMeter
    estimate = edgetran_fake_plugin:UsbMeter

    [edgetran.samplers]
    unseeded = edgetran_fake_plugin:UnseededProposer

    [edgetran.runtimes]
    lazy = edgetran_fake_plugin:LAZY

    [edgetran.tasks]
    missing = edgetran_fake_plugin_absent:factory
"""


@pytest.fixture
def third_party(tmp_path, monkeypatch):
    """An installed distribution ``fake-plugin`` whose entry points add one plug-in per family
    (a meter, a seed-ignoring proposer, a runtime that exports nothing, an unimportable task)."""
    (tmp_path / "edgetran_fake_plugin.py").write_text(textwrap.dedent(PLUGIN))
    info = tmp_path / "fake_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(ENTRY_POINTS))
    monkeypatch.syspath_prepend(str(tmp_path))
    registries = (METERS, SAMPLERS, RUNTIMES, TASKS)
    for registry in registries:
        registry.refresh()
    yield
    for registry in registries:
        registry.refresh()


def test_third_party_plugins_are_found_through_entry_points(third_party):
    with pytest.warns(UserWarning, match="'estimate' from fake-plugin is ignored"):
        names = list_meters()
    assert names[-1] == "usb" and names.count("estimate") == 1
    meter = create_meter("usb:/dev/ttyUSB1")
    assert meter.port == "/dev/ttyUSB1"
    check_meter(meter)
    assert "unseeded" in list_samplers() and "lazy" in list_runtimes()
    rows = {(r.family, r.name): r for rows in describe_all().values() for r in rows}
    assert rows["meters", "usb"].usable and rows["meters", "usb"].origin == "fake-plugin"
    missing = rows["tasks", "missing"]
    assert not missing.usable and "edgetran_fake_plugin_absent" in missing.why_not
    from edgetran.train.tasks import TaskError

    with pytest.raises(TaskError, match=r"task 'missing' .* cannot be imported"):
        load_task("missing")


def test_unknown_names_raise_the_family_error_with_the_allowed_values():
    with pytest.raises(MeterError, match="allowed: auto, zeus, estimate, command"):
        create_meter("powermetrics")
    from edgetran.export.runners import RunnerError

    with pytest.raises(RunnerError, match="runtime 'tvm' is unknown; allowed: torch"):
        RUNTIMES.get("tvm")
    with pytest.raises(PluginError, match="'gbdt' is registered already"):
        SURROGATES.register("gbdt", object)


def test_env_lists_every_plugin_and_why_not(run_cli):
    code, out, _ = run_cli("env", "--json")
    assert code == 0
    plugins = json.loads(out)["plugins"]
    assert set(plugins) == {"meters", "runtimes", "samplers", "surrogates", "tasks", "modes"}
    estimate = next(r for r in plugins["meters"] if r["name"] == "estimate")
    assert estimate["usable"] and estimate["origin"] == "built-in"
    for rows in plugins.values():
        assert all(r["usable"] or r["why_not"] for r in rows)
    code, out, _ = run_cli("env")
    assert code == 0 and "samplers   boshcode" in out


# -- each check fails on a plug-in that breaks its contract --------------------------------------
class SilentMeter(Meter):
    name = "silent"

    def read(self) -> Reading:
        return Reading(time.time())


class ShapelessRunner(Runner):
    runtime = "shapeless"
    device = "cpu"

    def prepare(self, input_ids, attention_mask):
        return input_ids

    def run(self, prepared):
        return np.zeros(prepared.shape[1], dtype=np.float32)

    def to_numpy(self, output):
        return output


class NoisyRunner(ShapelessRunner):
    def run(self, prepared):
        return np.random.default_rng().normal(size=(*prepared.shape, 4)).astype(np.float32)


class UnseededSurrogate(Surrogate):
    """Fits the mean plus noise from NumPy's global generator: the seed does not fix it."""

    def _fit_core(self, X, z, rng):
        return float(z.mean() + np.random.normal())

    def _predict_core(self, core, X):
        return np.full(len(X), core), np.ones(len(X))


class LeakyEvaluator(ReplayEvaluator):
    def candidates(self, n, rng, exclude):
        return super().candidates(n, rng, set())


def test_check_meter_names_the_broken_clause():
    with pytest.raises(ContractError, match=r"power_w or energy_j .* never neither"):
        check_meter(SilentMeter())


@pytest.mark.parametrize(
    ("runner", "clause"),
    [(ShapelessRunner, r"\(B, S, h\)"), (NoisyRunner, "same inputs give the same result")],
)
def test_check_runner_names_the_broken_clause(runner, clause):
    with pytest.raises(ContractError, match=clause):
        check_runner(runner)


def test_check_runtime_names_the_broken_clause(third_party):
    with pytest.raises(ContractError, match="export writes the artifact"):
        check_runtime("lazy")


def test_check_surrogate_names_the_broken_clause():
    with pytest.raises(ContractError, match=r"same random_state .* same predictions"):
        check_surrogate(UnseededSurrogate)


def test_check_evaluator_names_the_broken_clause(tmp_path):
    with pytest.raises(ContractError, match="avoid the excluded keys"):
        check_evaluator(LeakyEvaluator(synthetic_table(tmp_path / "table.jsonl")))


def test_check_proposer_names_the_broken_clause(third_party):
    with pytest.raises(ContractError, match=r"\('unseeded'\): the same seed gives the same"):
        check_proposer("unseeded")


class RewritingProposer(Proposer):
    """Takes the pool's first pair, after marking the last record infeasible."""

    def propose(self, records, pending, pool, step, rng):
        if records:
            records[-1].feasible = False
        return Proposal(pool[0], "first")


class RepeatingProposer(Proposer):
    """Proposes a pair in flight again when there is one."""

    def propose(self, records, pending, pool, step, rng):
        return Proposal(pending[0] if pending else pool[0], "again")


class StaleProposer(Proposer):
    """Proposes the first evaluated pair again."""

    def propose(self, records, pending, pool, step, rng):
        return Proposal(records[0].pair if records else pool[0], "stale")


@pytest.mark.parametrize(
    ("factory", "clause"),
    [
        (RewritingProposer, r"propose leaves the records \(and their evaluations\) as they"),
        (RepeatingProposer, r"a proposal is no pair in flight \(pending\); got [0-9a-f]+@"),
        (StaleProposer, "a proposal is one of the pool's pairs; got [0-9a-f]+@"),
        (lambda setup: object(), "the factory returns a Proposer for a Setup; got object"),
    ],
)
def test_check_proposer_names_the_clause_a_broken_proposer_breaks(factory, clause):
    with pytest.raises(ContractError, match=rf"^Proposer contract \(.+\): {clause}"):
        check_proposer(factory)


class CarelessPrune(PruneAttnHead):
    """Removes heads but transfers from the parent as it is: the weakest heads are not the ones
    dropped, and here the source is even perturbed."""

    def propose(self, parent, rng):
        proposals = super().propose(parent, rng)
        for p in proposals:
            p.source = copy.deepcopy(parent)
            with torch.no_grad():
                p.source.lm_head.bias.add_(1.0)
        return proposals


def test_check_mode_names_the_broken_clause():
    with pytest.raises(ContractError, match="source computes what the parent computes"):
        check_mode(CarelessPrune())


def test_check_task_names_the_broken_clause():
    split = Examples(["a", "b"], np.array([0, 2]))
    task = Task("broken", "accuracy", ("neg", "pos"), split, split, split)
    with pytest.raises(ContractError, match=r"class indices in \[0, 2\)"):
        check_task(task)
