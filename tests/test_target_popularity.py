"""benchmarks.target_popularity on a small real SASRec run on ml-100k, and its grouping by hand."""

import math

import pytest
import torch

import recbole_mixrec  # noqa: F401  registers the plugin's models
from benchmarks import target_popularity
from recbole_mixrec.quick_start import load_data_and_model


def test_groups_by_target_training_count():
    ranks = torch.tensor([1, 5, 11, 2])
    counts = torch.tensor([0, 25, 300, 300])
    groups = target_popularity.popularity_groups(ranks, counts, 10, [20, 50])
    assert [(label, n) for label, n, _, _ in groups] == [("0-19", 1), ("20-49", 1), ("50+", 2)]
    assert groups[0][2:] == (1.0, 1.0)
    assert groups[1][2:] == (0.2, 1.0)
    assert groups[2][2] == pytest.approx(0.25) and groups[2][3] == 0.5  # rank 11 misses the top 10
    empty = target_popularity.popularity_groups(ranks, counts, 10, [1000])[1]
    assert empty[1] == 0 and math.isnan(empty[2])


def test_groups_add_up_to_recboles_figures(small_sasrec_run):
    path = small_sasrec_run["saved_model_file"]
    ranks, target_counts, tops, item_counts, config = target_popularity.target_ranks(path, "test")
    _, _, dataset, _, _, _ = load_data_and_model(path)
    users = dataset.user_num - 1
    assert len(ranks) == users and tops.shape == (users, 10)
    # the dataset's rows are RecBole's augmented ones, one per item after a user's first (100,000
    # ratings - 943); leave-one-out keeps all but each user's valid and test item for training
    assert int(item_counts.sum()) == (dataset.inter_num + users) - 2 * users
    groups = target_popularity.popularity_groups(ranks, target_counts, 10, [20, 50, 100, 200])
    assert sum(n for _, n, _, _ in groups) == users
    for metric, index in (("mrr@10", 2), ("recall@10", 3)):
        mean = sum(n * g[index] for g in groups if (n := g[1])) / users
        assert mean == pytest.approx(small_sasrec_run["test_result"][metric], abs=1e-4)


def test_counts_all_training_pairs_where_the_model_trains_on_fewer_rows(ml100k_splits, small_sasrec_run):
    train = ml100k_splits[0].dataset  # MixRec, train_samples 'last': one row per user
    assert len(train.inter_feat) == 943
    counts = target_popularity.training_item_counts(train, train.item_num)
    assert int(counts.sum()) == 100_000 - 2 * 943
    _, _, sasrec_dataset, sasrec_train, _, _ = load_data_and_model(small_sasrec_run["saved_model_file"])
    sasrec_counts = target_popularity.training_item_counts(sasrec_train.dataset, sasrec_dataset.item_num)
    assert torch.equal(counts.sort().values, sasrec_counts.sort().values)


def test_cli_prints_a_row_per_checkpoint_and_rejects_bad_edges(small_sasrec_run, capsys):
    path = small_sasrec_run["saved_model_file"]
    assert target_popularity.main([path, "--split", "valid", "--edges", "50"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "targets 0-49" in out[0] and "targets 50+" in out[0]
    assert len([line for line in out if line.startswith(f"| {path} | SASRec |")]) == 1
    assert target_popularity.main([path, "--edges", "50", "20"]) == 2
    assert "ascending" in capsys.readouterr().err
