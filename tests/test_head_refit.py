"""benchmarks.head_refit on a tiny MixRec trained for one epoch on ml-100k users with at most 40
ratings: the cached features reproduce RecBole's own test figures, and refitting moves only the head."""

import pytest
import torch

from benchmarks import head_refit

QUICK = {"epochs": 1, "MAX_ITEM_LIST_LENGTH": 10, "show_progress": False, "eval_batch_size": 4096,
         "user_inter_num_interval": "[0,40]"}


@pytest.fixture(scope="module")
def tiny_mixrec(tiny_config_dict, tmp_path_factory):
    from recbole_mixrec.quick_start import run_mixrec

    folder = str(tmp_path_factory.mktemp("head-refit"))
    return run_mixrec("MixRec", "ml-100k", config_dict=dict(tiny_config_dict, **QUICK, checkpoint_dir=folder))


def test_features_reproduce_recboles_test_figures(tiny_mixrec, tmp_path):
    cache = str(tmp_path / "features.pt")
    features, weight, bias, item_counts, k, item_text = head_refit.load_features(tiny_mixrec["saved_model_file"], cache)
    users = len(features["test"][1])
    assert len(features["valid"][1]) == users and users > 100
    train_features, train_targets = features["train"]
    assert train_features.shape == (len(train_targets), weight.size(1))
    assert int(train_targets.min()) >= 1 and int(train_targets.max()) < weight.size(0)
    # every supervised position's target is a training item (its count includes it)
    assert bool((item_counts[train_targets] > 0).all())
    mrr, ndcg = head_refit.rank_metrics(head_refit.target_ranks(*features["test"], weight, bias), k)
    assert mrr == pytest.approx(tiny_mixrec["test_result"]["mrr@10"], abs=1e-4)
    assert ndcg == pytest.approx(tiny_mixrec["test_result"]["ndcg@10"], abs=1e-4)
    again = head_refit.load_features("no such checkpoint: read from the cache", cache)
    assert torch.equal(again[0]["test"][0], features["test"][0])
    # the text rows: one unit-length row per item, padding zero
    assert item_text.shape == weight.shape
    assert torch.allclose(item_text[1:].norm(dim=1), torch.ones(len(item_text) - 1), atol=1e-5)
    assert not item_text[0].any()


def test_refit_trains_the_head_and_nothing_else(tiny_mixrec, tmp_path):
    features, weight, bias, *_ = head_refit.load_features(tiny_mixrec["saved_model_file"])
    before = weight.clone()
    losses = [loss for _, loss, _, _ in head_refit.refit(*features["train"], weight, bias, 1e-2, 3)]
    assert losses[2] < losses[0]
    assert torch.equal(weight, before)  # the refit trains copies
    *_, (_, _, same_w, same_b) = head_refit.refit(*features["train"], weight, bias, 0.0, 1)
    assert torch.equal(same_w, weight) and torch.equal(same_b, bias)


def test_cli_prints_a_row_per_epoch_and_refuses_other_models(tiny_mixrec, small_sasrec_run, capsys):
    path = tiny_mixrec["saved_model_file"]
    assert head_refit.main([path, "--lr", "0.001", "0.01", "--epochs", "2", "--edges", "5"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert "targets 0-4" in rows[0] and "targets 5+" in rows[0]
    assert [line.split(" | ")[0] for line in rows[1:]] == [
        "| as trained", "| lr 0.001, epoch 0", "| lr 0.001, epoch 1", "| lr 0.01, epoch 0", "| lr 0.01, epoch 1"]
    assert head_refit.main([path, "--lr", "0.01", "--epochs", "1", "--head", "tied", "--edges", "5"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert [line.split(" | ")[0] for line in rows[1:]] == [
        "| as trained", "| tied start (least squares)", "| tied lr 0.01, epoch 0"]
    assert head_refit.main([small_sasrec_run["saved_model_file"]]) == 2
    assert "MixRec's item head" in capsys.readouterr().err


def test_tied_refit_keeps_every_row_in_the_span_of_the_item_text(tiny_mixrec):
    features, weight, bias, _, _, item_text = head_refit.load_features(tiny_mixrec["saved_model_file"])
    start = item_text @ head_refit.tied_start(item_text, weight)
    # the least-squares start is the closest tied head to the trained one
    other = item_text @ (head_refit.tied_start(item_text, weight) + 0.01 * torch.randn(weight.size(1), weight.size(1)))
    assert (start - weight).norm() < (other - weight).norm()
    *_, (_, _, same_w, same_b) = head_refit.refit(*features["train"], weight, bias, 0.0, 1, item_text=item_text)
    assert torch.allclose(same_w, start, atol=1e-5) and torch.equal(same_b, bias)
    refits = list(head_refit.refit(*features["train"], weight, bias, 1e-2, 3, item_text=item_text))
    assert refits[2][1] < refits[0][1]
    trained = refits[2][2]
    assert not torch.allclose(trained, start)
    # W = T A: solving for A again reproduces W, so no row left the text's span
    refit_map = head_refit.tied_start(item_text, trained)
    assert torch.allclose(item_text @ refit_map, trained, atol=1e-4)
