"""MixRecTrainer's optimizer and learning-rate schedule."""

import math

import pytest
import torch
from recbole.data import data_preparation

from recbole_mixrec.model.mixrec import MixRec
from recbole_mixrec.quick_start import build_config
from recbole_mixrec.trainer import MixRecTrainer, warmup_cosine


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
