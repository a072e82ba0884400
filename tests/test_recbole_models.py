"""RecBole's own general and sequential models (beyond the four baselines) through the
plugin's entry points: run_mixrec, the command line and benchmarks.compare (issue 16)."""

import math
import os
import subprocess
import sys

import pytest
import torch

from recbole_mixrec.quick_start import build_config, isolated_argv, load_data_and_model, run_mixrec

METRICS = {"mrr@10", "recall@10", "ndcg@10"}
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# 306 users with <= 40 interactions, small layers, one epoch: a few seconds per model
QUICK = dict(epochs=1, MAX_ITEM_LIST_LENGTH=5, embedding_size=16, hidden_size=16,
             user_inter_num_interval="[0,40]", show_progress=False, train_batch_size=4096,
             eval_batch_size=4096)
NO_SAMPLING = {"distribution": "none", "sample_num": "none", "alpha": "none", "dynamic": False, "candidate_num": 0}
RECBOLE_DEFAULT = {"distribution": "uniform", "sample_num": 1, "alpha": 1.0, "dynamic": False, "candidate_num": 0}


@pytest.mark.parametrize("model, expected", [
    ("NARM", NO_SAMPLING),        # sequential, loss_type CE: RecBole refuses negatives
    ("Pop", RECBOLE_DEFAULT),     # RecBole's default for every other model
    ("BPR", RECBOLE_DEFAULT),     # pairwise loss
    ("NeuMF", RECBOLE_DEFAULT),   # pointwise BCE: its labels come from the sampling
])
def test_negative_sampling_is_recbole_default_unless_the_model_cannot_use_it(model, expected):
    assert build_config(model, "ml-100k")["train_neg_sample_args"] == expected


def test_negative_sampling_set_by_the_user_is_kept(tmp_path):
    mine = {"distribution": "popularity", "sample_num": 2, "alpha": 0.5, "dynamic": False, "candidate_num": 0}
    assert build_config("BPR", "ml-100k", config_dict={"train_neg_sample_args": mine})["train_neg_sample_args"] == mine
    path = tmp_path / "pop.yaml"
    path.write_text("train_neg_sample_args: ~\n")
    assert build_config("Pop", "ml-100k", config_file_list=[str(path)])["train_neg_sample_args"] == NO_SAMPLING


@pytest.mark.parametrize("model", ["Pop", "BPR", "NARM", "ItemKNN"])
def test_recbole_model_trains_tests_and_its_checkpoint_reloads(model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # RecBole writes ./log and ./log_tensorboard
    result = run_mixrec(model, "ml-100k", config_dict=dict(QUICK, checkpoint_dir=str(tmp_path)))
    assert set(result["test_result"]) == METRICS
    assert all(0.0 <= v <= 1.0 and math.isfinite(v) for v in result["test_result"].values())
    assert result["test_result"]["recall@10"] > 10 / 1682  # better than a random ranking
    assert (result["epochs_trained"], result["best_epoch"], result["time_before_resume_s"]) == (1, 0, 0.0)
    checkpoint = torch.load(result["saved_model_file"], weights_only=True)  # torch's default
    assert checkpoint["config"]["model"] == model
    with isolated_argv():
        _, loaded, *_ = load_data_and_model(result["saved_model_file"])
    assert type(loaded).__name__ == model
    for key, value in checkpoint["state_dict"].items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_pop_runs_without_saving(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run_mixrec("Pop", "ml-100k", config_dict=QUICK, saved=False)
    assert result["saved_model_file"] is None and result["test_result"]["recall@10"] > 0


def test_cli_runs_pop(tmp_path):
    args = [f"--{key}={value}" for key, value in QUICK.items()] + [f"--checkpoint_dir={tmp_path / 'saved'}"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=REPO)
    done = subprocess.run([sys.executable, os.path.join(REPO, "run_recbole_mixrec.py"), "--model=Pop",
                           "--dataset=ml-100k"] + args, cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Pop on ml-100k: test mrr@10:" in done.stdout
