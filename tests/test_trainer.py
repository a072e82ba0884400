"""MixRecTrainer's optimizer and learning-rate schedule; resuming from the last checkpoint."""

import logging
import math
import os
import random
import shutil

import numpy as np
import pytest
import torch
from recbole.data import data_preparation
from recbole.utils import init_seed

from recbole_mixrec.errors import MixRecError
from recbole_mixrec.model.mixrec import MixRec
from recbole_mixrec.quick_start import build_config
from recbole_mixrec.trainer import (
    MixRecTrainer, capture_rng_state, restore_rng_state, save_atomically, warmup_cosine,
)


def test_warmup_then_cosine():
    total, warmup = 100, 6
    values = [warmup_cosine(step, total, warmup) for step in range(total)]
    assert values[0] == pytest.approx(1 / 6) and values[5] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(values[:6], values[1:6]))  # rising during warm-up
    assert all(a >= b for a, b in zip(values[6:], values[7:]))  # then never rising
    assert values[6 + 47] == pytest.approx(0.5 * (1 + math.cos(math.pi * 47 / 94)))
    assert warmup_cosine(total, total, warmup) == pytest.approx(0.0)


def test_optimizer_holds_only_trainable_weights_and_lr_follows_the_schedule(tiny_config_dict, tmp_path):
    config = build_config("MixRec_base", "ml-100k", config_dict={
        **tiny_config_dict, "epochs": 2, "learning_rate": 0.01, "warmup_ratio": 0.25,
        "checkpoint_dir": str(tmp_path),
    })
    from recbole_mixrec.quick_start import load_dataset

    train, valid, _ = data_preparation(config, load_dataset(config))
    model = MixRec(config, train._dataset)
    trainer = MixRecTrainer(config, model)
    params = [p for group in trainer.optimizer.param_groups for p in group["params"]]
    assert isinstance(trainer.optimizer, torch.optim.AdamW)
    assert {id(p) for p in params} == {id(p) for p in model.parameters() if p.requires_grad}
    lrs = []
    trainer.optimizer.register_step_post_hook(lambda opt, *_: lrs.append(opt.param_groups[0]["lr"]))
    trainer.fit(train, valid_data=None, saved=False)
    steps = 2 * len(train)
    assert len(lrs) == steps
    warmup = int(0.25 * steps)
    # this hook runs after the scheduler's: it records the lr of the next step
    assert lrs[warmup - 1] == pytest.approx(0.01)
    assert max(lrs) == pytest.approx(0.01) and lrs[-1] < 0.01 * 0.05
    # a run resumed after epoch 0 continues the same schedule (no second warm-up)
    resumed = MixRecTrainer(config, model)
    resumed.start_epoch = 1
    lrs_resumed = []
    resumed.optimizer.register_step_post_hook(lambda opt, *_: lrs_resumed.append(opt.param_groups[0]["lr"]))
    resumed.fit(train, valid_data=None, saved=False)
    assert lrs_resumed == pytest.approx(lrs[len(train):])


def test_head_learning_rate_gives_the_item_head_its_own_group_on_the_same_schedule(tiny_config_dict, tmp_path):
    config = build_config("MixRec_base", "ml-100k", config_dict={
        **tiny_config_dict, "epochs": 1, "learning_rate": 0.004, "head_learning_rate": 0.001,
        "warmup_ratio": 0.25, "checkpoint_dir": str(tmp_path),
    })
    from recbole_mixrec.quick_start import load_dataset

    train, _, _ = data_preparation(config, load_dataset(config))
    model = MixRec(config, train._dataset)
    trainer = MixRecTrainer(config, model)
    rest, head = trainer.optimizer.param_groups
    assert {id(p) for p in head["params"]} == {id(p) for p in model.item_projection.parameters()}
    assert {id(p) for p in rest["params"] + head["params"]} == {id(p) for p in model.parameters() if p.requires_grad}
    assert len(rest["params"]) + len(head["params"]) == len([p for p in model.parameters() if p.requires_grad])
    assert (rest["lr"], head["lr"]) == (0.004, 0.001)
    rates = []
    trainer.optimizer.register_step_post_hook(lambda opt, *_: rates.append([g["lr"] for g in opt.param_groups]))
    head_before = model.item_projection.weight.detach().clone()
    trainer.fit(train, valid_data=None, saved=False)
    assert len(rates) == len(train)
    assert all(r_head == pytest.approx(r_rest / 4) for r_rest, r_head in rates)
    assert max(r_head for _, r_head in rates) == pytest.approx(0.001)
    assert not torch.equal(model.item_projection.weight, head_before)  # the head trains
    # without the key: one group at learning_rate, as before
    plain = build_config("MixRec_base", "ml-100k", config_dict={**tiny_config_dict, "checkpoint_dir": str(tmp_path)})
    assert len(MixRecTrainer(plain, MixRec(plain, train._dataset)).optimizer.param_groups) == 1


@pytest.fixture()
def gru4rec_run(tmp_path, monkeypatch):
    """A short GRU4Rec run on ml-100k through the plugin's trainer: config, splits, trainer."""
    monkeypatch.chdir(tmp_path)  # RecBole writes ./log_tensorboard
    from recbole.model.sequential_recommender import GRU4Rec

    from recbole_mixrec.quick_start import load_dataset
    from recbole_mixrec.trainer import BaselineTrainer

    config = build_config("GRU4Rec", "ml-100k", config_dict={
        "epochs": 2, "MAX_ITEM_LIST_LENGTH": 10, "hidden_size": 16, "embedding_size": 16,
        "train_batch_size": 4096, "eval_batch_size": 4096, "stopping_step": 100,
        "show_progress": False, "checkpoint_dir": str(tmp_path / "checkpoints"),
    })
    train, valid, test = data_preparation(config, load_dataset(config))

    def new_trainer(epochs, valid_scores=None, stopping_step=100):
        """``valid_scores``: scripted validation scores (early stopping made deterministic;
        training stays real)."""
        config["epochs"], config["stopping_step"] = epochs, stopping_step
        torch.manual_seed(0)
        trainer_class = BaselineTrainer
        if valid_scores is not None:
            scores = iter(valid_scores)

            class ScriptedValidation(BaselineTrainer):
                def _valid_epoch(self, valid_data, show_progress=False):
                    score = next(scores)
                    return score, {"mrr@10": score}

            trainer_class = ScriptedValidation
        return trainer_class(config, GRU4Rec(config, train._dataset))

    return new_trainer, train, valid, test


def test_resume_from_last_checkpoint_continues_after_the_last_validation(gru4rec_run):
    new_trainer, train, valid, test = gru4rec_run
    first = new_trainer(2)
    first.fit(train, valid)  # "cut off" after epoch 1: both files are on disk
    best_file, last_file = first.saved_model_file, first.resume_file
    assert last_file == best_file[:-len(".pth")] + "-last.pth"
    last = torch.load(last_file, weights_only=True)  # loadable under torch's default
    assert last["epoch"] == 1 and last["best_epoch"] == first.best_epoch
    assert last["best_model_file"] == os.path.basename(best_file)
    assert last["best_valid_result"] == pytest.approx(dict(first.best_valid_result))
    assert 0 < last["training_time_s"] <= first.training_time_s
    for key, value in first.model.state_dict().items():  # the weights after the last epoch
        assert torch.equal(last["state_dict"][key], value), key

    resumed = new_trainer(4)
    resumed.resume_checkpoint(last_file)
    assert resumed.start_epoch == 2 and resumed.best_epoch == first.best_epoch
    assert resumed.saved_model_file == best_file  # improvements and the test use the best file
    assert resumed.best_valid_score == pytest.approx(first.best_valid_score)
    assert resumed.time_before_resume_s == last["training_time_s"]
    for key, value in first.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key
    resumed.fit(train, valid)
    assert sorted(resumed.train_loss_dict) == [2, 3]  # epochs 0 and 1 are not trained again
    # the learning curve: every epoch, the first run's part from the checkpoint
    assert last["learning_curve"] == first.learning_curve == resumed.learning_curve[:2]
    assert [p["epoch"] for p in resumed.learning_curve] == [0, 1, 2, 3]
    losses = {**first.train_loss_dict, **resumed.train_loss_dict}  # RecBole's: sums over batches
    for point in resumed.learning_curve:
        assert point["train_loss"] > 0 and point["train_loss"] == pytest.approx(losses[point["epoch"]] / len(train))
        assert 0 <= point["valid_score"] <= 1
    assert max(p["valid_score"] for p in resumed.learning_curve) == pytest.approx(resumed.best_valid_score)
    best = torch.load(best_file, weights_only=True)
    assert best["epoch"] == resumed.best_epoch and "best_model_file" not in best
    last = torch.load(last_file, weights_only=True)
    assert last["epoch"] == 3
    assert last["training_time_s"] > resumed.time_before_resume_s  # the two runs' time, summed


@pytest.mark.parametrize("resume_from", ["last", "best"])
def test_resumed_run_trains_the_same_weights_as_the_uninterrupted_one(gru4rec_run, resume_from):
    new_trainer, train, valid, _ = gru4rec_run
    scores = [0.1, 0.2, 0.3, 0.4]  # rising: the best file is also the latest state

    def fresh_process_seeds():  # what run_recbole does in a new process before training
        init_seed(train.config["seed"], reproducibility=True)
        train.generator.manual_seed(train.config["seed"])

    fresh_process_seeds()
    uninterrupted = new_trainer(4, valid_scores=scores)
    uninterrupted.fit(train, valid)

    fresh_process_seeds()
    first = new_trainer(2, valid_scores=scores[:2])
    first.fit(train, valid)
    if resume_from == "best":
        os.remove(first.resume_file)  # e.g. save_resume_checkpoint off
    fresh_process_seeds()  # the resumed process starts from the seed, not where `first` ended
    resumed = new_trainer(4, valid_scores=scores[2:])
    resumed.resume_checkpoint(first.resume_file if resume_from == "last" else first.saved_model_file)
    resumed.fit(train, valid)

    # the shuffles (loader generator) and dropout masks (torch) of epochs 2 and 3 are replayed
    assert resumed.train_loss_dict == {k: uninterrupted.train_loss_dict[k] for k in (2, 3)}
    for key, value in uninterrupted.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key


def test_resume_from_a_checkpoint_without_training_time_leaves_it_unknown(gru4rec_run):
    new_trainer, train, valid, _ = gru4rec_run
    first = new_trainer(1)
    first.fit(train, valid)
    older = torch.load(first.resume_file, weights_only=True)
    for key in ("training_time_s", "rng_state"):  # as written before these fields existed
        del older[key]
    save_atomically(older, first.resume_file)

    resumed = new_trainer(2)
    resumed.resume_checkpoint(first.resume_file)
    assert resumed.time_before_resume_s is None
    resumed.fit(train, valid)  # trains on with fresh random streams
    assert sorted(resumed.train_loss_dict) == [1]
    assert torch.load(first.resume_file, weights_only=True)["training_time_s"] is None  # not this run's part alone


def test_rng_state_round_trip_through_a_weights_only_checkpoint(tmp_path, caplog):
    generator = torch.Generator().manual_seed(1)
    loaders = {"train": torch.utils.data.DataLoader(range(10), shuffle=True, generator=generator)}
    state = capture_rng_state(loaders)
    save_atomically({"rng_state": state}, str(tmp_path / "rng.pth"))
    expected = (random.random(), np.random.randint(1 << 30), torch.rand(3), list(loaders["train"]))
    random.seed(5), np.random.seed(5), torch.manual_seed(5), generator.manual_seed(5)

    saved = torch.load(tmp_path / "rng.pth", weights_only=True)["rng_state"]
    restore_rng_state(saved, loaders)
    replayed = (random.random(), np.random.randint(1 << 30), torch.rand(3), list(loaders["train"]))
    assert replayed[:2] == expected[:2]
    assert torch.equal(replayed[2], expected[2]) and replayed[3] == expected[3]  # same shuffle

    # CUDA states from another machine: said, not silently skipped
    saved["cuda"] = [torch.zeros(16, dtype=torch.uint8)] * (torch.cuda.device_count() + 1)
    logger = logging.getLogger("test_rng")
    with caplog.at_level(logging.WARNING, logger="test_rng"):
        restore_rng_state(saved, loaders, logger)
    assert "CUDA random numbers are not replayed" in caplog.text


def test_resume_with_nothing_left_keeps_the_best_weights(gru4rec_run):
    new_trainer, train, valid, test = gru4rec_run
    first = new_trainer(2)
    first.fit(train, valid)
    with open(first.saved_model_file, "rb") as handle:
        best_bytes = handle.read()
    expected = first.evaluate(test, load_best_model=True)

    resumed = new_trainer(2)  # cut off between the last validation and the test
    resumed.resume_checkpoint(first.resume_file)
    resumed.fit(train, valid)
    assert resumed.train_loss_dict == {}
    with open(first.saved_model_file, "rb") as handle:
        assert handle.read() == best_bytes  # not overwritten with the last epoch's weights
    assert dict(resumed.evaluate(test, load_best_model=True)) == pytest.approx(dict(expected))


def test_resume_from_last_checkpoint_without_its_best_file_is_a_clear_error(gru4rec_run):
    new_trainer, train, valid, _ = gru4rec_run
    first = new_trainer(1)
    first.fit(train, valid)
    os.remove(first.saved_model_file)
    with pytest.raises(MixRecError, match="best checkpoint .* is missing"):
        new_trainer(2).resume_checkpoint(first.resume_file)


def test_resume_after_early_stopping_trains_no_further(gru4rec_run):
    new_trainer, train, valid, _ = gru4rec_run
    first = new_trainer(5, valid_scores=[0.5, 0.4], stopping_step=0)
    first.fit(train, valid)  # epoch 1 is worse: stopped; "cut off" before the test
    assert sorted(first.train_loss_dict) == [0, 1] and first.best_epoch == 0
    with open(first.saved_model_file, "rb") as handle:
        best_bytes = handle.read()

    resumed = new_trainer(5, valid_scores=[0.9, 0.9, 0.9], stopping_step=0)
    resumed.resume_checkpoint(first.resume_file)
    resumed.fit(train, valid)
    assert resumed.train_loss_dict == {} and resumed.best_epoch == 0
    with open(first.saved_model_file, "rb") as handle:
        assert handle.read() == best_bytes


def test_resume_cut_off_between_the_two_saves_uses_the_newer_best_file(gru4rec_run, tmp_path):
    new_trainer, train, valid, _ = gru4rec_run
    first = new_trainer(2, valid_scores=[0.5, 0.6])
    epoch0_last = str(tmp_path / "epoch0-last.pth")
    # the callback runs after the resume checkpoint of the same validation is written
    first.fit(train, valid, callback_fn=lambda epoch, _: epoch == 0 and shutil.copyfile(first.resume_file, epoch0_last))
    assert first.best_epoch == 1
    shutil.copyfile(epoch0_last, first.resume_file)  # epoch 1's best file written, its -last not

    resumed = new_trainer(3, valid_scores=[0.1])
    resumed.resume_checkpoint(first.resume_file)
    assert resumed.start_epoch == 2 and resumed.best_epoch == 1
    best = torch.load(first.saved_model_file, weights_only=True)
    for key, value in best["state_dict"].items():
        assert torch.equal(resumed.model.state_dict()[key], value), key


def test_a_failed_save_leaves_the_previous_checkpoint(tmp_path):
    path = str(tmp_path / "model.pth")
    save_atomically({"epoch": 1}, path)
    with pytest.raises(Exception):  # a lambda cannot be pickled: torch.save fails midway
        save_atomically({"epoch": 2, "not_saveable": lambda: 0}, path)
    assert torch.load(path, weights_only=True) == {"epoch": 1}
    assert os.listdir(tmp_path) == ["model.pth"]  # no partial file left behind
