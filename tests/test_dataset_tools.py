"""Tests of dataset_tools on tiny hand-made raw files and on slices of the real data."""
import gzip
import json
import logging
import os
import shlex
import subprocess
import sys

import pandas as pd
import pytest

import dataset_tools
from dataset_tools import DatasetToolError, amazon2018, build_hints, filters
from dataset_tools.cli import build_parser, main
from dataset_tools.text import clean_text

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data")

# (user, item, rating, time). Expected by hand with the default filters:
#   dedup drops u3's second A; title filter drops T (4 rows); E has 3 < 4 interactions;
#   then u2 (A, B) and u4 (C, A) have 2 < 3 and go. Left: u1, u3, u5 x A, B, C = 9 rows.
REVIEWS = [
    ("u1", "A", 5.0, 1), ("u1", "B", 4.0, 2), ("u1", "C", 3.0, 3), ("u1", "T", 1.0, 4), ("u1", "E", 2.0, 5),
    ("u2", "A", 5.0, 1), ("u2", "B", 4.0, 2), ("u2", "T", 3.0, 3), ("u2", "E", 2.0, 4),
    ("u3", "A", 1.0, 1), ("u3", "B", 2.0, 2), ("u3", "C", 3.0, 3), ("u3", "E", 4.0, 4), ("u3", "A", 5.0, 5),
    ("u4", "C", 1.0, 1), ("u4", "A", 2.0, 2), ("u4", "T", 3.0, 3),
    ("u5", "B", 1.0, 1), ("u5", "C", 2.0, 2), ("u5", "A", 3.0, 3), ("u5", "T", 4.0, 5),
]
# Strict JSON and Python-literal lines, as found in the 2018 meta files; T has no title.
META_LINES = [
    json.dumps({"asin": "A", "title": "Fish &amp; Chips\tmaker", "brand": "Acme",
                "category": ["Arts, Crafts &amp; Sewing", "Paint"], "description": ["Line one\nline  two"]}),
    "{'asin': 'B', 'title': 'Brush  set', 'brand': 'Bo', 'category': ['Arts'], 'description': []}",
    json.dumps({"asin": "C", "title": 'The "Best" canvas', "brand": "", "category": []}),
    json.dumps({"asin": "T", "brand": "Nameless", "category": ["Arts"]}),
    json.dumps({"asin": "E", "title": "Easel", "brand": "Ez", "category": ["Arts"]}),
    json.dumps({"asin": "Z", "title": "Never reviewed"}),
]


def write_gz(path, lines):
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture
def raw(tmp_path):
    """Paths of a reviews file, a ratings CSV (item,user,rating,timestamp) and a meta file."""
    reviews = write_gz(tmp_path / "Arts_5.json.gz", [
        json.dumps({"reviewerID": u, "asin": i, "overall": r, "unixReviewTime": t, "reviewText": "x"})
        for u, i, r, t in REVIEWS
    ])
    ratings = tmp_path / "Arts.csv"
    ratings.write_text("".join(f"{i},{u},{r},{t}\n" for u, i, r, t in REVIEWS))
    meta = write_gz(tmp_path / "meta_Arts.json.gz", META_LINES)
    return {"reviews": reviews, "ratings": str(ratings), "meta": meta, "tmp": tmp_path}


def run_cli(args, capsys):
    code = main([str(a) for a in args])
    return code, capsys.readouterr()


def convert_reviews(raw, capsys, out="out", *extra):
    args = ["amazon2018", "--reviews", raw["reviews"], "--meta", raw["meta"], "--name", "arts",
            "--out", raw["tmp"] / out, *extra]
    code, captured = run_cli(args, capsys)
    assert code == 0, captured.err
    return raw["tmp"] / out / "arts", captured.out


def read_atomic(path):
    """Read an atomic file the way RecBole 1.2.1 does (tab, python engine, default quoting)."""
    return pd.read_csv(path, delimiter="\t", dtype=str, engine="python")


def test_paper_filters_counts(raw, capsys):
    directory, out = convert_reviews(raw, capsys)
    inter = read_atomic(directory / "arts.inter")
    assert set(inter["user_id:token"]) == {"u1", "u3", "u5"}
    assert set(inter["item_id:token"]) == {"A", "B", "C"}
    assert len(inter) == 9
    assert out.strip() == "arts  #users 3  #items 3  #inter 9  avg_items_per_user 3.00"
    # Dedup kept u3's earliest A (rating 1.0 at time 1), not the later one.
    u3a = inter[(inter["user_id:token"] == "u3") & (inter["item_id:token"] == "A")]
    assert u3a[["rating:float", "timestamp:float"]].values.tolist() == [["1.0", "1"]]


def test_filter_flags_change_counts(raw, capsys):
    # Keeping untitled items and disabling the count filters keeps all 20 deduplicated rows.
    directory, out = convert_reviews(raw, capsys, "all", "--no-drop-untitled", "--min-item-inter", "0",
                                     "--min-user-inter", "0")
    assert "#users 5  #items 5  #inter 20 " in out
    items = read_atomic(directory / "arts.item")
    assert items.loc[items["item_id:token"] == "T", "title:token_seq"].isna().all()  # empty title


def test_kcore_iterates():
    # (x3, c) goes first because c has one interaction; only then does x3 fall below 2.
    inter = pd.DataFrame({"user_id": ["x1", "x1", "x2", "x2", "x3", "x3"],
                          "item_id": ["a", "b", "a", "b", "a", "c"], "timestamp": range(6)})
    out = filters.kcore(inter, 2)
    assert sorted(zip(out.user_id, out.item_id)) == [("x1", "a"), ("x1", "b"), ("x2", "a"), ("x2", "b")]


def test_headers_and_text_cleaning(raw, capsys):
    directory, _ = convert_reviews(raw, capsys, "txt", "--with-description")
    lines = (directory / "arts.inter").read_text().splitlines()
    assert lines[0] == "user_id:token\titem_id:token\trating:float\ttimestamp:float"
    assert lines[1] == "u1\tA\t5.0\t1"  # sorted by user, time, item
    item_lines = (directory / "arts.item").read_text().splitlines()
    assert item_lines[0] == ("item_id:token\ttitle:token_seq\tbrand:token_seq\tcategories:token_seq"
                             "\tdescription:token_seq")
    assert item_lines[1] == "A\tFish & Chips maker\tAcme\tArts, Crafts & Sewing Paint\tLine one line two"
    assert item_lines[2] == "B\tBrush set\tBo\tArts\t"  # Python-literal meta line
    items = read_atomic(directory / "arts.item").set_index("item_id:token")
    assert items.loc["C", "title:token_seq"] == 'The "Best" canvas'  # quotes survive RecBole's reader
    assert len(item_lines) == 4  # only interacted items: A, B, C


def test_clean_text():
    assert clean_text("a&amp;b\t c\n\nd\xa0e ") == "a&b c d e"
    assert clean_text(["x", ["y &lt;z&gt;"], None, ""]) == "x y <z>"
    assert clean_text(None) == ""


def test_ratings_csv_matches_reviews(raw, capsys):
    from_reviews, _ = convert_reviews(raw, capsys)
    code, _ = run_cli(["amazon2018", "--ratings", raw["ratings"], "--meta", raw["meta"], "--name", "arts",
                       "--out", raw["tmp"] / "csv"], capsys)
    assert code == 0
    for suffix in ("inter", "item"):
        assert (raw["tmp"] / "csv" / "arts" / f"arts.{suffix}").read_bytes() == (from_reviews / f"arts.{suffix}").read_bytes()
    # A reordered CSV with the matching --ratings-columns gives the same result.
    reordered = raw["tmp"] / "user_first.csv"
    reordered.write_text("".join(f"{u},{i},{r},{t}\n" for u, i, r, t in REVIEWS))
    code, _ = run_cli(["amazon2018", "--ratings", reordered, "--ratings-columns", "user,item,rating,timestamp",
                       "--meta", raw["meta"], "--name", "arts", "--out", raw["tmp"] / "csv2"], capsys)
    assert code == 0
    assert (raw["tmp"] / "csv2" / "arts" / "arts.inter").read_bytes() == (from_reviews / "arts.inter").read_bytes()


def test_deterministic(raw, capsys):
    first, _ = convert_reviews(raw, capsys, "run1")
    second, _ = convert_reviews(raw, capsys, "run2")
    for suffix in ("inter", "item"):
        assert (first / f"arts.{suffix}").read_bytes() == (second / f"arts.{suffix}").read_bytes()


def test_every_filter_step_logs_what_it_removed(raw, caplog):
    # meta: A listed twice, E missing (its interactions count as untitled, like T's)
    meta = write_gz(raw["tmp"] / "meta_Log.json.gz", META_LINES[:4] + [META_LINES[0]] + META_LINES[5:])
    with caplog.at_level(logging.INFO, logger="dataset_tools"):
        inter, _ = amazon2018.convert(meta, reviews=raw["reviews"])
    lines = [r.getMessage() for r in caplog.records]
    expected = [
        "meta_Log.json.gz: 1 repeated meta records of an asin ignored (the first one is kept)",
        "read metadata of 4 interacted items (1 interacted items have no meta record: they count as items without a title)",
        "dedup (user, item): removed 0 users, 0 items, 1 interactions (left: 5 users, 5 items, 20 interactions)",
        "items without a title: removed 0 users, 2 items, 7 interactions (left: 5 users, 3 items, 13 interactions)",
        "items with < 4 interactions: removed 0 users, 0 items, 0 interactions (left: 5 users, 3 items, 13 interactions)",
        "users with < 3 interactions: removed 2 users, 0 items, 4 interactions (left: 3 users, 3 items, 9 interactions)",
    ]
    for line in expected:
        assert line in lines
    assert len(inter) == 9


def test_malformed_meta_line_names_line(raw):
    bad = write_gz(raw["tmp"] / "meta_Bad.json.gz", META_LINES[:2] + ["{'asin': 'C', 'title': "] + META_LINES[3:])
    with pytest.raises(DatasetToolError, match=r"^meta_Bad\.json\.gz line 3: not JSON nor a Python literal$"):
        amazon2018.convert(bad, reviews=raw["reviews"])


def test_missing_review_key_names_line(raw):
    bad = write_gz(raw["tmp"] / "Bad_5.json.gz", ['{"reviewerID": "u", "asin": "A", "overall": 1, "unixReviewTime": 1}',
                                                  '{"reviewerID": "u", "overall": 1, "unixReviewTime": 2}'])
    with pytest.raises(DatasetToolError, match=r"Bad_5\.json\.gz line 2: missing key 'asin'"):
        amazon2018.read_reviews(bad)


def test_cli_error_exits_2_with_one_line(raw):
    bad = write_gz(raw["tmp"] / "meta_Bad.json.gz", META_LINES[:6] + ["[1, 2"])
    result = subprocess.run(
        [sys.executable, "-m", "dataset_tools", "amazon2018", "--reviews", raw["reviews"], "--meta", bad,
         "--name", "bad", "--out", str(raw["tmp"] / "bad")],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == "error: meta_Bad.json.gz line 7: not JSON nor a Python literal"
    assert result.stdout == ""


@pytest.mark.parametrize(
    "inter, item, message",
    [
        ([[1, 2]], {"1": {}}, "S.inter.json: the file is a list, expected a dict"),
        ({"0": "12"}, {"1": {}}, "S.inter.json: user 0's sequence is a str, expected a list"),
        ({"0": [1]}, {"1": "a title"}, "S.item.json: item 1's record is a str, expected a dict"),
    ],
)
def test_lcrec_wrong_shapes_are_clear_errors(inter, item, message, tmp_path, capsys):
    (tmp_path / "S.inter.json").write_text(json.dumps(inter))
    (tmp_path / "S.item.json").write_text(json.dumps(item))
    code, captured = run_cli(["lcrec", "--input", tmp_path, "--name", "s", "--out", tmp_path / "out"], capsys)
    assert code == 2
    assert captured.err.strip().splitlines()[-1] == f"error: {message}"


@pytest.mark.skipif(not os.path.isdir(SHARED), reason="shared data not available")
def test_lcrec_slice(tmp_path, capsys):
    src = os.path.join(SHARED, "amazon2018-scientific")
    with open(os.path.join(src, "Scientific.inter.json")) as handle:
        sequences = dict(list(json.load(handle).items())[:40])
    with open(os.path.join(src, "Scientific.item.json")) as handle:
        all_items = json.load(handle)
    used = {str(i) for seq in sequences.values() for i in seq}
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "Scientific.inter.json").write_text(json.dumps(sequences))
    (tmp_path / "in" / "Scientific.item.json").write_text(json.dumps({k: all_items[k] for k in sorted(used)}))
    code, captured = run_cli(["lcrec", "--input", tmp_path / "in", "--name", "sci", "--out", tmp_path / "out"], capsys)
    assert code == 0
    n_inter = sum(map(len, sequences.values()))
    assert captured.out.strip().startswith(f"sci  #users 40  #items {len(used)}  #inter {n_inter}  ")
    inter = read_atomic(tmp_path / "out" / "sci" / "sci.inter")
    first_user = next(iter(sequences))
    rows = inter[inter["user_id:token"] == first_user]
    # Timestamp is the position in the chronological list; order is preserved.
    assert rows["item_id:token"].tolist() == [str(i) for i in sequences[first_user]]
    assert rows["timestamp:float"].tolist() == [str(p) for p in range(len(sequences[first_user]))]
    items = read_atomic(tmp_path / "out" / "sci" / "sci.item").set_index("item_id:token")
    some = sorted(used)[0]
    assert items.loc[some, "title:token_seq"] == clean_text(all_items[some]["title"])
    # LC-Rec's comma-separated category path becomes space-separated tokens.
    assert items.loc[some, "categories:token_seq"] == clean_text(all_items[some]["categories"].split(","))


@pytest.mark.skipif(not os.path.isdir(SHARED), reason="shared data not available")
def test_csv_slice(tmp_path, capsys):
    src = os.path.join(SHARED, "amazon2018-games")
    inter = pd.read_csv(os.path.join(src, "interactions.csv.gz"), nrows=3000)
    inter = inter[inter.user_id.isin(inter.user_id.unique()[:100])]  # whole histories of 100 users
    items = pd.read_csv(os.path.join(src, "items.csv.gz"))
    (tmp_path / "in").mkdir()
    inter.to_csv(tmp_path / "in" / "interactions.csv.gz", index=False)
    items[items.item_id.isin(inter.item_id)].to_csv(tmp_path / "in" / "items.csv.gz", index=False)
    code, captured = run_cli(["csv", "--input", tmp_path / "in", "--name", "games", "--out", tmp_path / "out"], capsys)
    assert code == 0
    assert captured.out.strip().startswith(
        f"games  #users 100  #items {inter.item_id.nunique()}  #inter {len(inter)}  ")
    lines = (tmp_path / "out" / "games" / "games.item").read_text().splitlines()
    assert lines[0] == "item_id:token\ttitle:token_seq"
    assert len(lines) == 1 + inter.item_id.nunique()
    written = read_atomic(tmp_path / "out" / "games" / "games.inter")
    assert set(written["rating:float"]) == {"1.0"}
    code, captured = run_cli(["stats", "games", "--data-path", tmp_path / "out"], capsys)
    assert code == 0 and captured.out.startswith(f"games  #users 100  #items {inter.item_id.nunique()}  ")


def test_build_hints():
    shared, raw = build_hints("amazon-scientific")
    assert shared == ("python -m dataset_tools lcrec --input ../shared/data/amazon2018-scientific "
                      "--name amazon-scientific --out dataset")
    assert "--reviews <download_dir>/Industrial_and_Scientific_5.json.gz" in raw
    assert build_hints("amazon-games")[0].startswith("python -m dataset_tools csv --input ../shared/data/amazon2018-games ")
    (arts,) = build_hints("amazon-arts", out_dir="/data", download_dir="/raw")
    assert arts == ("python -m dataset_tools amazon2018 --reviews /raw/Arts_Crafts_and_Sewing_5.json.gz "
                    "--meta /raw/meta_Arts_Crafts_and_Sewing.json.gz --name amazon-arts --out /data")
    assert "Musical_Instruments_5.json.gz" in build_hints("amazon-instruments")[0]
    assert "meta_Prime_Pantry.json.gz" in build_hints("amazon-pantry")[0]
    assert build_hints("ml-100k") == []
    assert set(dataset_tools.KNOWN_DATASETS) == {"amazon-arts", "amazon-games", "amazon-instruments",
                                                 "amazon-pantry", "amazon-scientific"}
    for name in dataset_tools.KNOWN_DATASETS:
        # Every hint is a valid command line for this CLI, names its dataset, and has a config.
        for hint in build_hints(name):
            args = build_parser().parse_args(shlex.split(hint)[3:])
            assert args.name == name and args.out == "dataset"
        assert os.path.isfile(os.path.join(ROOT, "properties", "dataset", f"{name}.yaml"))
