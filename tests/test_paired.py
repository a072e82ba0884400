"""benchmarks.paired: per-user metric values that average to RecBole's figures, and the
paired bootstrap of a lever's difference."""

import numpy as np
import pytest

import recbole_mixrec  # noqa: F401  registers the plugin's models
from benchmarks import paired
from recbole_mixrec.errors import MixRecError


def test_per_user_values_average_to_recboles_figures(small_sasrec_run):
    valid, dataset = paired.per_user_values(small_sasrec_run["saved_model_file"], "valid", "mrr@10")
    test, _ = paired.per_user_values(small_sasrec_run["saved_model_file"], "test", "ndcg@10")
    assert dataset == "ml-100k" and valid.shape == test.shape == (943,)
    assert valid.mean() == pytest.approx(small_sasrec_run["best_valid_result"]["mrr@10"], abs=1e-4)
    assert test.mean() == pytest.approx(small_sasrec_run["test_result"]["ndcg@10"], abs=1e-4)
    assert ((valid == 0) | (valid >= 0.1)).all()  # reciprocal ranks of the top 10, or 0


def test_a_checkpoint_against_itself_shows_no_difference(small_sasrec_run, capsys):
    model_file = small_sasrec_run["saved_model_file"]
    assert paired.main([model_file, model_file, "--samples", "200"]) == 0
    out = capsys.readouterr().out
    assert "over 943 users" in out and "B - A +0.0000, 95% interval [+0.0000, +0.0000]" in out
    assert paired.main([model_file, model_file, "--metric", "auc"]) == 2
    assert "expected a top-k metric" in capsys.readouterr().err


def test_paired_bootstrap_interval():
    rng = np.random.default_rng(0)
    a = rng.random(1000)
    diff, low, high = paired.paired_bootstrap(a, a + 0.05)
    assert diff == pytest.approx(0.05) and low == pytest.approx(0.05) and high == pytest.approx(0.05)
    # independent noise: the interval holds the mean difference and shrinks with more users
    b = a + rng.normal(0.01, 0.1, size=1000)
    diff, low, high = paired.paired_bootstrap(a, b)
    assert low < diff < high and high - low == pytest.approx(2 * 1.96 * 0.1 / np.sqrt(1000), rel=0.15)
    with pytest.raises(MixRecError, match="not the same users"):
        paired.paired_bootstrap(a, a[:10])
