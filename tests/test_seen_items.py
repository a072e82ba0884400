"""eval_exclude_seen (the trainers' protocol option) and benchmarks.seen_items, on a small real
SASRec run on ml-100k, where no user rates a movie twice."""

import pytest
import torch

import recbole_mixrec  # noqa: F401  registers the plugin's models
from benchmarks import seen_items
from recbole_mixrec.quick_start import build_trainer, load_data_and_model


def test_excluding_seen_items_masks_exactly_the_input_sequence(small_sasrec_run):
    config, model, _, _, _, test_data = load_data_and_model(small_sasrec_run["saved_model_file"])
    trainer = build_trainer(config, model)
    trainer.evaluate(test_data, load_best_model=False)  # sets what batch scoring needs
    batch = next(iter(test_data))
    config["eval_exclude_seen"] = False
    interaction, plain, _, _ = trainer._full_sort_batch_eval(batch)
    config["eval_exclude_seen"] = True
    _, excluded, _, _ = trainer._full_sort_batch_eval(batch)
    seen = torch.zeros_like(plain, dtype=torch.bool).scatter_(1, interaction["item_id_list"], True)
    seen[:, 0] = False
    assert seen.any(1).all() and torch.isfinite(plain[seen]).all()
    assert torch.isneginf(excluded[seen]).all()
    assert torch.equal(excluded[~seen], plain[~seen])  # nothing else moves


def test_seen_item_figures_on_ml100k(small_sasrec_run):
    figures, model = seen_items.seen_item_figures(small_sasrec_run["saved_model_file"], "test")
    assert model == "SASRec"
    assert figures["plain"] == pytest.approx(dict(small_sasrec_run["test_result"]), abs=1e-4)  # RecBole's protocol
    assert figures["target_seen"] == 0  # ml-100k: no target repeats an item of its input
    assert 0 < figures["top_seen"] < 1
    # the target is never left out, so every user's rank can only improve
    for metric, value in figures["plain"].items():
        assert figures["exclude_seen"][metric] >= value
    assert figures["exclude_seen"]["recall@10"] > figures["plain"]["recall@10"]


def test_cli_prints_a_row_per_checkpoint(small_sasrec_run, capsys, tmp_path):
    path = small_sasrec_run["saved_model_file"]
    assert seen_items.main([path, "--split", "valid"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith(f"| {path}")]
    assert len(rows) == 1 and "| SASRec |" in rows[0]
