"""benchmarks.merge: rows trained in separate compare runs (real, small ones) in one table and
one curves file, each row saying where it came from; bad sources exit 2 with a clear line."""
import csv
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402

from benchmarks import compare, merge  # noqa: E402

QUICK = ["--MAX_ITEM_LIST_LENGTH=5", "--train_batch_size=4096", "--eval_batch_size=4096",
         "--user_inter_num_interval=[0,40]", "--hidden_size=16", "--embedding_size=16",
         "--show_progress=False", "--epochs=1"]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two compare runs on ml-100k: Pop + GRU4Rec in one, GRU4Rec (other hidden size) in another."""
    root = tmp_path_factory.mktemp("runs")
    cwd = os.getcwd()
    os.chdir(root)  # RecBole writes ./log and ./log_tensorboard
    try:
        assert compare.main(["--dataset", "ml-100k", "--models", "Pop,GRU4Rec", "--out", "a"] + QUICK) == 0
        assert compare.main(["--dataset", "ml-100k", "--models", "GRU4Rec", "--out", "b"] + QUICK
                            + ["--hidden_size=32"]) == 0
    finally:
        os.chdir(cwd)
    run_a, run_b = (os.path.join(root, name, "ml-100k", os.listdir(os.path.join(root, name, "ml-100k"))[0])
                    for name in ("a", "b"))
    return root, run_a, run_b


def rows_of(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_rows_from_two_runs_with_labels_and_sources(two_runs, tmp_path, capsys):
    _, run_a, run_b = two_runs
    out = tmp_path / "merged"
    assert merge.main([run_a, f"{run_b}:GRU4Rec=GRU4Rec-h32", "--out", str(out)]) == 0
    assert "3 rows (Pop, GRU4Rec, GRU4Rec-h32) of ml-100k" in capsys.readouterr().out

    merged = {r["model"]: r for r in rows_of(out / "results.csv")}
    assert list(merged) == ["Pop", "GRU4Rec", "GRU4Rec-h32"]
    for label, run_dir, model in (("Pop", run_a, "Pop"), ("GRU4Rec", run_a, "GRU4Rec"),
                                  ("GRU4Rec-h32", run_b, "GRU4Rec")):
        original = {r["model"]: r for r in rows_of(os.path.join(run_dir, "results.csv"))}[model]
        for key in ("ndcg@10", "recall@10", "mrr@10", "valid_score", "epochs", "best_epoch", "wall_time_s"):
            assert merged[label][key] == original[key]  # copied, not re-scored
        with open(out / "models" / f"{label}.json") as handle:
            source = json.load(handle)["source"]
        assert source["run_dir"] == os.path.abspath(run_dir) and source["model"] == model

    curves = rows_of(out / "curves.csv")
    assert sorted({r["model"] for r in curves}) == ["GRU4Rec", "GRU4Rec-h32", "Pop"]
    own = rows_of(os.path.join(run_b, "curves.csv"))
    assert [(r["epoch"], r["valid_mrr@10"]) for r in curves if r["model"] == "GRU4Rec-h32"] == \
        [(r["epoch"], r["valid_mrr@10"]) for r in own]
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    sources = (out / "sources.md").read_text()
    assert f"| GRU4Rec-h32 | GRU4Rec | `{os.path.abspath(run_b)}` |" in sources
    assert "--hidden_size=32" in sources
    assert "Epochs trained (best epoch, 0-based): Pop 1 (0), GRU4Rec 1 (0), GRU4Rec-h32 1 (0)." in \
        (out / "table.md").read_text()


def test_a_merged_folder_is_a_source_and_keeps_its_rows_sources(two_runs, tmp_path, capsys):
    _, run_a, run_b = two_runs
    first = tmp_path / "first"
    assert merge.main([f"{run_a}:GRU4Rec", "--out", str(first)]) == 0
    assert json.loads((first / "run.json").read_text())["dataset"] == "ml-100k"
    # the run directory may be gone by now: the committed folder stands for it
    second = tmp_path / "second"
    assert merge.main([str(first), f"{run_b}:GRU4Rec=GRU4Rec-h32", "--out", str(second)]) == 0
    assert "2 rows (GRU4Rec, GRU4Rec-h32) of ml-100k" in capsys.readouterr().out
    sources = (second / "sources.md").read_text()
    assert f"| GRU4Rec | GRU4Rec | `{os.path.abspath(run_a)}` |" in sources  # not `first`
    assert f"| GRU4Rec-h32 | GRU4Rec | `{os.path.abspath(run_b)}` |" in sources
    assert "--hidden_size=32" in sources and str(first) not in sources
    merged = {r["model"]: r for r in rows_of(second / "results.csv")}
    original = {r["model"]: r for r in rows_of(os.path.join(run_a, "results.csv"))}["GRU4Rec"]
    assert merged["GRU4Rec"]["ndcg@10"] == original["ndcg@10"]
    # merged again into itself without GRU4Rec-h32: that row's record file stays, the row does not
    assert merge.main([f"{second}:GRU4Rec", "--out", str(second)]) == 0
    assert (second / "models" / "GRU4Rec-h32.json").exists()
    third = tmp_path / "third"
    assert merge.main([str(second), "--out", str(third)]) == 0
    assert [r["model"] for r in rows_of(third / "results.csv")] == ["GRU4Rec"]


def test_bad_sources_exit_2_with_a_clear_line(two_runs, tmp_path, capsys):
    root, run_a, run_b = two_runs
    other = tmp_path / "other"
    other.mkdir()
    (other / "run.json").write_text(json.dumps({"dataset": "amazon-scientific"}))
    cases = [
        ([str(root)], "is not a benchmarks.compare run directory or merged folder"),
        ([f"{run_a}:SASRec"], "has no finished SASRec (finished: ['GRU4Rec', 'Pop'])"),
        ([run_a, run_b], "two rows named GRU4Rec"),
        ([f"{run_a}=X"], "a label names one model"),
        ([run_b, str(other)], "holds a run on 'amazon-scientific', the others on 'ml-100k'"),
    ]
    for sources, message in cases:
        out = tmp_path / "out"
        assert merge.main(sources + ["--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert message in err and err.startswith("error: ") and "Traceback" not in err
        assert not out.exists()  # nothing written for a refused merge
