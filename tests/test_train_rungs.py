"""Training rungs (issue 42): dev accuracy at fractions of the fine-tuning's schedule, for a
pruner; a callback's exception stops the training, and nothing half-trained is stored."""

from __future__ import annotations

from dataclasses import replace

import pytest

from edgetran.store import Store
from edgetran.train import (
    FinetuneSettings,
    TrainingError,
    evaluate,
    finetune,
    load_task,
    pretrain,
    task_key,
)
from tests.test_train import SETTINGS, tiny_arch, tiny_budgets, write_task  # noqa: F401 (fixture)

RUNGS = (0.125, 0.25, 0.5, 1.0)  # search's RUNG_FRACTIONS (train does not import search)


class Stop(Exception):
    """What a pruner raises: not a TrainingError."""


@pytest.fixture
def pretrained(tmp_path):
    from edgetran.train.tokenizer import load_tokenizer

    task = load_task(str(write_task(tmp_path / "task.csv")))
    tok, key = load_tokenizer(None, task.corpus(), tmp_path / "tokenizers", vocab_size=200)
    pretrain(tiny_arch(), task.corpus(), tok, key, tmp_path / "p", SETTINGS)
    return tmp_path / "p", task, tok


def test_rungs_report_the_best_dev_score_so_far_and_change_nothing(pretrained):
    path, task, tok = pretrained
    settings = FinetuneSettings(trials=1, steps=16, batch_sizes=(8,), max_length=16,
                                eval_every=10, dev_examples=16, test_examples=16)  # fmt: skip
    seen = []
    plain = finetune(path, task, tok, settings)
    rung = finetune(path, task, tok, settings, rungs=RUNGS, on_rung=lambda *a: seen.append(a))
    assert [(r, f) for r, f, _ in seen] == list(enumerate(RUNGS))
    scores = [a for _, _, a in seen]
    assert all(0 <= a <= 1 for a in scores) and scores == sorted(scores)  # best so far
    assert scores[-1] >= rung.dev_score  # the kept state's score is one of those seen
    assert rung.trials == plain.trials and rung.test_score == plain.test_score


def test_rungs_span_the_trials_one_after_the_other_and_an_early_stop_passes_its_rest(
    pretrained,
):
    path, task, tok = pretrained
    settings = FinetuneSettings(trials=2, steps=8, batch_sizes=(8,), max_length=16,
                                eval_every=4, dev_examples=16, test_examples=16)  # fmt: skip
    steps = []

    def on_step(step, total, loss, model):
        steps.append(step)

    seen = []
    finetune(path, task, tok, settings, on_step=on_step, rungs=RUNGS,
             on_rung=lambda r, f, a: seen.append((r, f, len(steps))))  # fmt: skip
    # 0.125 and 0.25 of two 8-step trials fall at the first trial's steps 2 and 4, 0.5 at its
    # end, 1.0 at the second's end
    assert seen == [(0, 0.125, 2), (1, 0.25, 4), (2, 0.5, 8), (3, 1.0, 16)]

    stopping = replace(settings, trials=1, steps=400, eval_every=1, patience=1,
                       learning_rate_range=(3e-3, 3e-3))  # fmt: skip
    seen.clear()
    steps.clear()
    result = finetune(path, task, tok, stopping, on_step=on_step, rungs=(0.5, 1.0),
                      on_rung=lambda r, f, a: seen.append((r, f, len(steps))))  # fmt: skip
    assert result.trials[0]["trained_steps"] < 200  # stopped before either rung's step
    assert seen == [(0, 0.5, len(steps)), (1, 1.0, len(steps))]


def test_an_exception_from_on_rung_stops_the_fine_tuning_as_it_is(pretrained):
    path, task, tok = pretrained
    settings = FinetuneSettings(trials=2, steps=16, batch_sizes=(8,), max_length=16,
                                dev_examples=16, test_examples=16)  # fmt: skip
    steps = []

    def stop(rung, fidelity, accuracy):
        raise Stop(rung)

    with pytest.raises(Stop):
        finetune(path, task, tok, settings, rungs=RUNGS, on_rung=stop,
                 on_step=lambda step, *_: steps.append(step))  # fmt: skip
    assert steps == [1, 2, 3, 4]  # the first rung: 0.125 of two trials of 16 steps
    for bad in ((0.5, 0.25), (0.0, 1.0), (1.5,)):
        with pytest.raises(TrainingError, match=r"rungs=.*increasing fractions in"):
            finetune(path, task, tok, settings, rungs=bad, on_rung=stop)


@pytest.mark.usefixtures("tiny_budgets")
def test_a_stopped_evaluation_is_not_stored_and_the_next_call_trains_it_as_without_rungs(
    tmp_path,
):
    task = str(write_task(tmp_path / "task.csv"))
    calls = []

    def prune_at_second(rung, fidelity, accuracy):
        calls.append((rung, fidelity))
        if rung == 1:
            raise Stop

    with Store(tmp_path / "ws.db") as store:
        kwargs = {"store": store, "workspace": tmp_path / "ws"}
        with pytest.raises(Stop):
            evaluate(tiny_arch(), task, "quick", rungs=RUNGS, on_rung=prune_at_second, **kwargs)
        assert calls == [(0, 0.125), (1, 0.25)]
        key = task_key(task)
        assert store.evaluation(tiny_arch().hash, task=key, budget="quick", seed=0) is None
        calls.clear()
        resumed = evaluate(tiny_arch(), task, "quick", rungs=RUNGS,
                           on_rung=lambda *a: calls.append(a[:2]), **kwargs)  # fmt: skip
        assert resumed["cached"] is False and calls == list(enumerate(RUNGS))
        stored = store.evaluation(tiny_arch().hash, task=key, budget="quick", seed=0)
        assert stored["accuracy"] == resumed["accuracy"]
        cached = evaluate(tiny_arch(), task, "quick", rungs=RUNGS, on_rung=prune_at_second,
                          **kwargs)  # fmt: skip
        assert cached["cached"] is True  # read back, no rungs
    with Store(tmp_path / "plain.db") as store:
        plain = evaluate(tiny_arch(), task, "quick", store=store, workspace=tmp_path / "plain")
    assert plain["accuracy"] == resumed["accuracy"]
    assert plain["finetune_steps"] == resumed["finetune_steps"]


@pytest.mark.usefixtures("tiny_budgets")
def test_rungs_are_refused_for_a_cluster_and_glue_all_before_any_work(tmp_path):
    with Store(tmp_path / "ws.db") as store:
        kwargs = {"store": store, "workspace": tmp_path / "ws", "rungs": RUNGS,
                  "on_rung": lambda *a: None}  # fmt: skip
        with pytest.raises(TrainingError, match="cluster"):
            evaluate(tiny_arch(), "tweet-sentiment", "quick", cluster=object(), **kwargs)
        with pytest.raises(TrainingError, match="glue/all"):
            evaluate(tiny_arch(), "glue/all", "quick", **kwargs)
        assert store.trained_models() == []
