"""Tests of benchmarks.compare: the table/improvement/plot functions on hand-made results, the
CLI's input errors, and one real (short) GRU4Rec + SASRec benchmark with a failing model and a
resumed second run."""
import csv
import json
import math
import os
import re

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import yaml  # noqa: E402

import recbole_mixrec  # noqa: E402,F401  registers MixRec
from benchmarks import compare  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
METRIC_ROWS = ["NDCG@10", "Recall@10", "MRR@10"]


def rec(model, ndcg, recall, mrr, status="ok"):
    return {"model": model, "status": status, "ndcg@10": ndcg, "recall@10": recall, "mrr@10": mrr,
            "valid_score": mrr, "wall_time_s": 1.0, "error": ""}


def parse_table(text):
    """{metric label: [cells]} and the header of a table written by markdown_table."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    split = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    return split[0], {row[0]: row[1:] for row in split[2:]}


def bold_columns(cells):
    return [i for i, c in enumerate(cells) if c.startswith("**") and c.endswith("**")]


def test_improvement_best_plugin_over_best_baseline():
    assert compare.improvement({"MixRec": 0.12, "SASRec": 0.10, "GRU4Rec": 0.08}) == "+20.0%"
    assert compare.improvement({"MixRec": 0.06, "SASRec": 0.07}) == "-14.3%"
    assert compare.improvement({"SASRec": 0.10, "GRU4Rec": 0.08}) == "n/a"  # no plugin model
    assert compare.improvement({"MixRec": 0.10}) == "n/a"  # no baseline
    # plugin membership decides, not the name: with a custom predicate LLMRec is ours
    values = {"LLMRec": 0.11, "MixRec": 0.09, "SASRec": 0.10}
    assert compare.improvement(values, is_plugin=lambda m: m in {"LLMRec", "MixRec"}) == "+10.0%"
    assert compare.improvement({"LLMRec": 0.11, "SASRec": 0.10}) == "n/a"  # LLMRec is a baseline
    assert compare.improvement({"MixRec_base": 0.11, "LLMRec": 0.10}) == "+10.0%"


def test_markdown_table_layout_bold_and_improvement():
    records = [rec("GRU4Rec", 0.08, 0.15, 0.05), rec("SASRec", 0.10, 0.14, 0.07),
               rec("MixRec", 0.12, 0.16, 0.06),
               {"model": "FDSA", "status": "failed", "error": "RuntimeError: boom"}]
    text = compare.markdown_table(records)
    header, rows = parse_table(text)
    assert header == ["Metric", "GRU4Rec", "SASRec", "MixRec", "Improv."]  # failed model has no column
    assert list(rows) == METRIC_ROWS
    assert rows["NDCG@10"] == ["0.0800", "0.1000", "**0.1200**", "+20.0%"]
    assert rows["Recall@10"] == ["0.1500", "0.1400", "**0.1600**", "+6.7%"]
    assert rows["MRR@10"] == ["0.0500", "**0.0700**", "0.0600", "-14.3%"]
    assert "- FDSA failed: RuntimeError: boom" in text
    assert "Epochs trained" not in text  # records without epochs (older runs) add no line
    records[0].update(epochs=72, best_epoch=61)
    assert "Epochs trained (best epoch, 0-based): GRU4Rec 72 (61)." in compare.markdown_table(records)
    assert "Resumed" not in compare.markdown_table(records)
    # resumed: from a checkpoint that saved the earlier training time, and from one that did not
    records[1].update(resumed_from="SASRec-x-last.pth", time_before_resume_s=120.5)
    records[2].update(resumed_from="MixRec-y.pth", time_before_resume_s=0.0)
    text = compare.markdown_table(records)
    assert "Resumed from a checkpoint (wall time adds the earlier runs' training time): SASRec." in text
    assert "Resumed from a checkpoint (wall time of the last run only): MixRec." in text
    # baselines only: no improvement column value
    _, rows = parse_table(compare.markdown_table(records[:2]))
    assert [cells[-1] for cells in rows.values()] == ["n/a"] * 3


def test_csv_and_plot_from_records(tmp_path):
    records = [rec("GRU4Rec", 0.08, 0.15, 0.05), {"model": "X", "status": "failed", "error": "E: bad"}]
    compare.write_csv(records, tmp_path / "results.csv")
    with open(tmp_path / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["model"], r["status"]) for r in rows] == [("GRU4Rec", "ok"), ("X", "failed")]
    assert float(rows[0]["ndcg@10"]) == 0.08 and rows[1]["ndcg@10"] == "" and rows[1]["error"] == "E: bad"
    assert compare.plot_bars(records, tmp_path / "bars.png", title="t")
    assert (tmp_path / "bars.png").read_bytes()[:8] == PNG_MAGIC
    assert not compare.plot_bars(records[1:], tmp_path / "none.png")  # nothing to plot
    assert not (tmp_path / "none.png").exists()


def curve(*points):
    return [{"epoch": e, "train_loss": loss, "valid_score": score} for e, loss, score in points]


def test_curves_csv_and_plot_from_records(tmp_path):
    records = [dict(rec("GRU4Rec", 0.08, 0.15, 0.05), valid_metric="MRR@10",
                    learning_curve=curve((0, 7.1, 0.02), (1, 6.5, None), (2, 6.2, 0.04))),
               dict(rec("Pop", 0.04, 0.08, 0.03), valid_metric="MRR@10", learning_curve=curve((0, 0.0, 0.03))),
               rec("SASRec", 0.1, 0.1, 0.1),  # a record written before curves existed
               {"model": "X", "status": "failed", "error": "E: bad"}]
    compare.write_curves_csv(records, tmp_path / "curves.csv")
    with open(tmp_path / "curves.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert reader.fieldnames == ["model", "epoch", "train_loss", "valid_mrr@10"]
    assert [(r["model"], r["epoch"], r["train_loss"], r["valid_mrr@10"]) for r in rows] == [
        ("GRU4Rec", "0", "7.1", "0.02"), ("GRU4Rec", "1", "6.5", ""), ("GRU4Rec", "2", "6.2", "0.04"),
        ("Pop", "0", "0.0", "0.03")]
    assert compare.plot_curves(records, tmp_path / "curves.png", title="t")
    assert (tmp_path / "curves.png").read_bytes()[:8] == PNG_MAGIC
    assert not compare.plot_curves(records[2:], tmp_path / "none.png")  # no curve to draw
    assert not (tmp_path / "none.png").exists()


@pytest.mark.parametrize("argv, message", [
    (["--models", "GRU4Rec,NoSuchModel"], "unknown model 'NoSuchModel'"),
    (["--models", "GRU4Rec", "--dataset", "no-such-dataset"], "dataset 'no-such-dataset' not found"),
])
def test_bad_input_exits_2_before_any_run(tmp_path, capsys, argv, message):
    assert compare.main(argv + ["--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("error: ") and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_resume_of_missing_dir_exits_2(tmp_path, capsys):
    assert compare.main(["--models", "GRU4Rec", "--resume", str(tmp_path / "nope")]) == 2
    assert "no such directory" in capsys.readouterr().err


# Small and quick: users with <= 40 interactions (306 users, 8,390 interactions), short
# histories, small layers, one epoch. MixRec fails on purpose (its backbone does not exist).
QUICK = ["--epochs=1", "--MAX_ITEM_LIST_LENGTH=10", "--train_batch_size=2048", "--eval_batch_size=4096",
         "--user_inter_num_interval=[0,40]", "--hidden_size=32", "--embedding_size=32",
         "--show_progress=False", "--backbone=/nonexistent/backbone"]


@pytest.mark.slow
def test_two_model_benchmark_with_failure_and_resume(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # RecBole writes ./log and ./log_tensorboard
    argv = ["--dataset", "ml-100k", "--models", "MixRec,GRU4Rec,SASRec", "--out", "res"] + QUICK
    assert compare.main(argv) == 1  # one model failed
    out = capsys.readouterr().out
    (run_dir,) = [os.path.join("res", "ml-100k", d) for d in os.listdir(os.path.join("res", "ml-100k"))]
    assert re.fullmatch(r"\d{8}-\d{6}", os.path.basename(run_dir))
    assert "ml-100k  #users 943  #items 1682  #inter 100000" in out  # stats of the atomic file
    with open(os.path.join(run_dir, "stats.md")) as handle:
        assert "| ml-100k | 943 | 1,682 | 100,000 | 106.04 |" in handle.read()

    # results.csv: exactly the three models, MixRec failed with its error, the others scored
    with open(os.path.join(run_dir, "results.csv"), newline="") as handle:
        rows = {r["model"]: r for r in csv.DictReader(handle)}
    assert list(rows) == ["MixRec", "GRU4Rec", "SASRec"]
    assert rows["MixRec"]["status"] == "failed" and "/nonexistent/backbone" in rows["MixRec"]["error"]
    for model in ("GRU4Rec", "SASRec"):
        row = rows[model]
        assert row["status"] == "ok" and row["error"] == "" and row["valid_metric"] == "MRR@10"
        for key in ("ndcg@10", "recall@10", "mrr@10", "valid_score"):
            assert 0.0 <= float(row[key]) <= 1.0
        assert float(row["recall@10"]) >= float(row["ndcg@10"]) >= float(row["mrr@10"]) > 0.0
        assert float(row["wall_time_s"]) > 0.0
        assert (row["epochs"], row["best_epoch"]) == ("1", "0")  # --epochs=1, checkpoint of epoch 0
        assert row["resumed_from"] == ""
        # own checkpoint dir, with the checkpoint of this model
        best, last = sorted(os.listdir(os.path.join(run_dir, "checkpoints", model)), key=len)
        assert best.startswith(f"{model}-") and last == best[:-len(".pth")] + "-last.pth"

    # table.md: metric rows, model columns, bold = row maximum, n/a (no plugin model succeeded)
    with open(os.path.join(run_dir, "table.md")) as handle:
        text = handle.read()
    header, table = parse_table(text)
    assert "Epochs trained (best epoch, 0-based): GRU4Rec 1 (0), SASRec 1 (0)." in text
    assert header == ["Metric", "GRU4Rec", "SASRec", "Improv."]
    assert list(table) == METRIC_ROWS
    for label, key in zip(METRIC_ROWS, ("ndcg@10", "recall@10", "mrr@10")):
        values = [float(rows[m][key]) for m in ("GRU4Rec", "SASRec")]
        cells = table[label]
        assert [float(c.strip("*")) for c in cells[:2]] == pytest.approx(values, abs=5e-5)
        assert bold_columns(cells[:2]) == [i for i, v in enumerate(values) if v == max(values)]
        assert cells[2] == "n/a"

    with open(os.path.join(run_dir, "bars.png"), "rb") as handle:
        assert handle.read(8) == PNG_MAGIC
    for model in ("MixRec", "GRU4Rec", "SASRec"):
        with open(os.path.join(run_dir, "configs", f"{model}.yaml")) as handle:
            config = yaml.safe_load(handle)
        assert config["model"] == model and config["dataset"] == "ml-100k"
        assert config["epochs"] == 1 and config["MAX_ITEM_LIST_LENGTH"] == 10
        assert config["eval_args"]["split"] == {"LS": "valid_and_test"}
    with open(os.path.join(run_dir, "configs", "MixRec.yaml")) as handle:
        assert yaml.safe_load(handle)["backbone"] == "/nonexistent/backbone"

    # resume: finished models are skipped (records untouched), the failed one is retried
    records = {m: os.path.join(run_dir, "models", f"{m}.json") for m in rows}
    before = {m: (os.stat(p).st_mtime_ns, open(p).read()) for m, p in records.items()}
    assert compare.main(argv[:4] + ["--resume", run_dir] + QUICK) == 1
    out = capsys.readouterr().out
    assert "skip GRU4Rec: already done" in out and "skip SASRec: already done" in out
    assert "run GRU4Rec" not in out and "run SASRec" not in out and "run MixRec" in out
    for model in ("GRU4Rec", "SASRec"):
        assert (os.stat(records[model]).st_mtime_ns, open(records[model]).read()) == before[model]
        assert len(os.listdir(os.path.join(run_dir, "checkpoints", model))) == 2
    with open(records["MixRec"]) as handle:
        assert json.load(handle)["status"] == "failed"
    assert os.stat(records["MixRec"]).st_mtime_ns > before["MixRec"][0]
    with open(os.path.join(run_dir, "results.csv"), newline="") as handle:
        assert [r["model"] for r in csv.DictReader(handle)] == ["MixRec", "GRU4Rec", "SASRec"]

    # a model stopped midway (checkpoints, no record) continues from its last checkpoint: here
    # that is after the last epoch, so nothing is retrained and the test result is the same
    os.remove(records["GRU4Rec"])
    compare.main(argv[:4] + ["--resume", run_dir] + QUICK)
    out = capsys.readouterr().out
    assert re.search(r"resume GRU4Rec from \S+-last\.pth", out) and "skip SASRec: already done" in out
    with open(os.path.join(run_dir, "results.csv"), newline="") as handle:
        resumed = {r["model"]: r for r in csv.DictReader(handle)}["GRU4Rec"]
    assert resumed["status"] == "ok" and (resumed["epochs"], resumed["best_epoch"]) == ("1", "0")
    assert resumed["resumed_from"].startswith("GRU4Rec-") and resumed["resumed_from"].endswith("-last.pth")
    # wall time = this run + the first one's training, as saved in the checkpoint
    assert float(resumed["time_before_resume_s"]) > 0
    assert float(resumed["wall_time_s"]) > float(resumed["time_before_resume_s"])
    with open(os.path.join(run_dir, "table.md")) as handle:
        assert "Resumed from a checkpoint (wall time adds the earlier runs' training time): GRU4Rec." in handle.read()
    for key in ("ndcg@10", "recall@10", "mrr@10", "valid_score"):
        assert float(resumed[key]) == pytest.approx(float(rows["GRU4Rec"][key]), abs=1e-4)
    assert len(os.listdir(os.path.join(run_dir, "checkpoints", "GRU4Rec"))) == 2


def read_curves(run_dir):
    """{model: [(epoch, train_loss, valid score)]} from curves.csv."""
    curves = {}
    with open(os.path.join(run_dir, "curves.csv"), newline="") as handle:
        for row in csv.DictReader(handle):
            point = (int(row["epoch"]), float(row["train_loss"]), float(row["valid_mrr@10"]))
            curves.setdefault(row["model"], []).append(point)
    return curves


def test_pop_sanity_row_and_learning_curves_that_continue_on_resume(tmp_path, monkeypatch, capsys):
    """Pop (RecBole's TraditionalTrainer, one epoch whatever --epochs says) beside GRU4Rec; the
    curves of both; GRU4Rec cut off after its first epoch continues its curve when resumed."""
    monkeypatch.chdir(tmp_path)
    quick = ["--MAX_ITEM_LIST_LENGTH=5", "--train_batch_size=4096", "--eval_batch_size=4096",
             "--user_inter_num_interval=[0,40]", "--hidden_size=16", "--embedding_size=16", "--show_progress=False"]
    argv = ["--dataset", "ml-100k", "--models", "Pop,GRU4Rec", "--out", "res"]
    assert compare.main(argv + quick + ["--epochs=1"]) == 0
    (run_dir,) = [os.path.join("res", "ml-100k", d) for d in os.listdir(os.path.join("res", "ml-100k"))]
    with open(os.path.join(run_dir, "results.csv"), newline="") as handle:
        rows = {r["model"]: r for r in csv.DictReader(handle)}
    assert rows["Pop"]["status"] == "ok" and float(rows["Pop"]["recall@10"]) > 10 / 1682
    first = read_curves(run_dir)
    assert [p[0] for p in first["Pop"]] == [0] and [p[0] for p in first["GRU4Rec"]] == [0]
    assert first["GRU4Rec"][0][1] > 0 and first["Pop"][0][1] == 0.0  # Pop has no loss
    for model, points in first.items():
        assert all(math.isfinite(loss) and 0 <= score <= 1 for _, loss, score in points)
        assert points[-1][2] == pytest.approx(float(rows[model]["valid_score"]))  # best = last here
    with open(os.path.join(run_dir, "curves.png"), "rb") as handle:
        assert handle.read(8) == PNG_MAGIC

    # GRU4Rec "cut off" after epoch 0 (checkpoints, no record), resumed with two epochs in all
    os.remove(os.path.join(run_dir, "models", "GRU4Rec.json"))
    assert compare.main(argv[:4] + ["--resume", run_dir] + quick + ["--epochs=2"]) == 0
    assert "skip Pop: already done" in capsys.readouterr().out
    resumed = read_curves(run_dir)
    assert resumed["Pop"] == first["Pop"]
    assert [p[0] for p in resumed["GRU4Rec"]] == [0, 1] and resumed["GRU4Rec"][0] == first["GRU4Rec"][0]
    assert all(math.isfinite(loss) and 0 <= score <= 1 for _, loss, score in resumed["GRU4Rec"])
    with open(os.path.join(run_dir, "models", "GRU4Rec.json")) as handle:
        record = json.load(handle)
    assert [p["epoch"] for p in record["learning_curve"]] == [0, 1] and record["epochs"] == 2


def test_table_says_general_models_are_ranked_without_the_users_training_items():
    records = [rec("Pop", 0.04, 0.07, 0.03), rec("SASRec", 0.06, 0.12, 0.04)]
    text = compare.markdown_table(records)
    assert "General models (Pop): RecBole's full ranking leaves each user's training items out" in text
    assert "General models" not in compare.markdown_table(records[1:])


def test_levers_ablation_writes_a_row_per_lever_and_skips_finished_ones(tiny_config_dict, tmp_path, capsys):
    from benchmarks import levers

    entries = [f"--{k}={v}" for k, v in tiny_config_dict.items()]
    argv = ["--dataset", "ml-100k", "--levers", "all-on", "--out", str(tmp_path), *entries]
    assert levers.main(argv) == 0
    with open(tmp_path / "levers.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["lever"] for r in rows] == ["all-on"]
    assert 0 < float(rows[0]["train_loss"]) < 20
    assert 0 <= float(rows[0]["valid_untrained"]) <= 1 and 0 <= float(rows[0]["test_ndcg@10"]) <= 1
    assert levers.main(argv) == 0  # again: nothing re-run
    assert "all-on: already in" in capsys.readouterr().out
    with open(tmp_path / "levers.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 1


def test_every_lever_sets_documented_mixrec_keys_to_allowed_values():
    from benchmarks import levers
    from recbole_mixrec.config_checks import check_value, specs_for

    specs = specs_for("MixRec")
    for name, (_, overrides) in levers.LEVERS.items():
        for key, value in overrides.items():
            assert key in specs, f"lever {name}: {key} is not a documented MixRec key"
            assert check_value(specs[key], value) is None, f"lever {name}: {key}={value!r}"
