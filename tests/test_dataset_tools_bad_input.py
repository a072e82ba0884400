"""Bad input to ``python -m dataset_tools`` never passes silently: every case below exits 2 with
one ``error:`` line naming the file/line/filter at fault, and a good dataset already in the
output folder stays byte for byte as it was (no header-only files, no temporary leftovers).

All inputs are small real files in tmp_path; each would convert (or be read) without the one
defect its case adds, which the control tests at the bottom check.
"""
import gzip
import hashlib
import json
import logging
import os
import subprocess
import sys

import pytest

from dataset_tools.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NO_FILTERS = ("--min-item-inter", "0", "--min-user-inter", "0")

# Ratings CSV rows (item,user,rating,timestamp). With the default filters: dedup drops u1's
# second A (7 left), C has no title (5 left), then A has 3 < 4 interactions and B 2: nothing left.
RATINGS = "A,u1,5,1\nB,u1,4,2\nC,u1,3,3\nA,u2,5,1\nB,u2,2,2\nA,u3,1,1\nC,u3,2,2\nA,u1,5,9\n"
META = ['{"asin": "A", "title": "Alpha"}', '{"asin": "B", "title": "Beta"}', '{"asin": "C"}']
INTER_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"


def write_bytes(path, data: bytes, gz=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def good_dataset(out):
    """The dataset a user already has in ``out/ds``; no bad run may touch it."""
    folder = out / "ds"
    write_bytes(folder / "ds.inter", (INTER_HEADER + "u1\tA\t5.0\t1\nu1\tB\t4.0\t2\n").encode())
    write_bytes(folder / "ds.item", b"item_id:token\ttitle:token_seq\nA\tGood one\nB\tGood two\n")
    write_bytes(folder / "ds.yaml", b"MAX_ITEM_LIST_LENGTH: 5\n")


def snapshot(root):
    """{relative path: sha256} of every file under ``root``, hidden temporary files included."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# ---- inputs: each builder writes a valid input with at most one defect and returns argv ----

def amazon(tmp, *extra, ratings=RATINGS.encode(), meta=None, out="out"):
    args = ["amazon2018", "--ratings", write_bytes(tmp / "in" / "r.csv", ratings),
            "--meta", write_bytes(tmp / "in" / "meta.json.gz", meta or "\n".join(META).encode(), gz=True),
            "--name", "ds", "--out", tmp / out]
    return args + list(extra)


def amazon_reviews(tmp, reviews: bytes):
    path = write_bytes(tmp / "in" / "R_5.json.gz", reviews)
    return ["amazon2018", "--reviews", path, "--meta", write_bytes(tmp / "in" / "meta.json", "\n".join(META).encode()),
            "--name", "ds", "--out", tmp / "out", *NO_FILTERS]


def lcrec(tmp, *extra, inter=None, item=None):
    folder = tmp / "lc"
    # indent=1: one value per line, so a defect sits on a known line
    write_bytes(folder / "S.inter.json", inter or json.dumps({"0": [1, 2], "1": [1, 2, 3]}, indent=1).encode())
    write_bytes(folder / "S.item.json", item or json.dumps({str(i): {"title": f"t{i}"} for i in (1, 2, 3)}, indent=1).encode())
    return ["lcrec", "--input", folder, "--name", "ds", "--out", tmp / "out", *extra]


def csv_pair(tmp, inter=b"user_id,item_id,timestamp\n1,10,1\n1,11,2\n2,10,3\n", items=b"item_id,title\n10,a\n11,b\n"):
    folder = tmp / "cs"
    write_bytes(folder / "interactions.csv.gz", inter, gz=True)
    if items is not None:
        write_bytes(folder / "items.csv.gz", items, gz=True)
    return ["csv", "--input", folder, "--name", "ds", "--out", tmp / "out"]


def unisrec(tmp, train: bytes):
    write_bytes(tmp / "pub" / "P.train.inter", train)
    return ["unisrec", "--input", tmp / "pub", "--name", "ds", "--out", tmp / "out"]


def stats(tmp, inter: bytes):
    write_bytes(tmp / "bad" / "bad.inter", inter)
    return ["stats", tmp / "bad"]


def out_is_a_file(tmp):
    write_bytes(tmp / "taken", b"not a folder\n")
    return amazon(tmp, *NO_FILTERS, out="taken")


UNISREC_HEADER = b"user_id:token\titem_id_list:token_seq\titem_id:token\n"

# id -> (argv builder, the error line after "error: "; {tmp} is the test's tmp_path)
CASES = {
    "filters-remove-all": (
        lambda tmp: amazon(tmp),
        "after --min-item-inter 4: 0 of 8 interactions left (dedup kept 7, drop-untitled kept 5, min-item-inter kept 0)"),
    "kcore-removes-all": (
        lambda tmp: amazon(tmp, *NO_FILTERS, "--kcore", "3"),
        "after --kcore 3: 0 of 8 interactions left (dedup kept 7, drop-untitled kept 5, kcore kept 0)"),
    "min-user-removes-all": (
        lambda tmp: lcrec(tmp, "--min-user-inter", "9"),
        "after --min-user-inter 9: 0 of 5 interactions left (min-user-inter kept 0)"),
    "drop-untitled-removes-all": (
        lambda tmp: amazon(tmp, *NO_FILTERS, meta=b'{"asin": "A"}\n{"asin": "B", "title": ""}'),
        "after --drop-untitled: 0 of 8 interactions left (dedup kept 7, drop-untitled kept 0)"),
    "negative-filter": (
        lambda tmp: amazon(tmp, "--min-item-inter", "-1"),
        "--min-item-inter -1: must be 0 (step off) or more"),
    "unknown-ratings-column": (
        lambda tmp: amazon(tmp, "--ratings-columns", "item,user,rating,time"),
        "--ratings-columns: unknown column 'time' (expected an order of item,user,rating,timestamp)"),
    "out-is-a-file": (
        out_is_a_file,
        "cannot write {tmp}/taken/ds: {tmp}/taken is not a directory"),
    "missing-input-dir": (
        lambda tmp: ["lcrec", "--input", tmp / "nowhere", "--name", "ds", "--out", tmp / "out"],
        "--input {tmp}/nowhere: no such directory"),
    "missing-input-file": (
        lambda tmp: csv_pair(tmp, items=None),
        "{tmp}/cs/items.csv.gz: no such file"),
    "missing-meta-file": (
        lambda tmp: amazon(tmp)[:3] + ["--meta", tmp / "meta_Nope.json.gz", "--name", "ds", "--out", tmp / "out"],
        "{tmp}/meta_Nope.json.gz: no such file"),
    "ratings-not-utf8": (
        lambda tmp: amazon(tmp, *NO_FILTERS, ratings=b"A,u1,5,1\nB,u\xff1,4,2\n"),
        "r.csv line 2: not UTF-8 (byte 0xff at column 4)"),
    "ratings-malformed-line": (
        lambda tmp: amazon(tmp, *NO_FILTERS, ratings=b"A,u1,5,1\nB,u1,4,2\nC,u1,3\n"),
        "r.csv line 3: expected 4 comma-separated fields, got 3"),
    "meta-not-utf8-gz": (
        lambda tmp: amazon(tmp, *NO_FILTERS, meta=b'{"asin": "A", "title": "Alpha"}\n{"asin": "B", "title": "B\xe9ta"}'),
        "meta.json.gz line 2: not UTF-8 (byte 0xe9 at column 26)"),
    "reviews-truncated-gz": (
        lambda tmp: amazon_reviews(tmp, gzip.compress(
            b'{"reviewerID": "u1", "asin": "A", "overall": 5, "unixReviewTime": 1}\n'
            b'{"reviewerID": "u2", "asin": "A", "overall": 4, "unixReviewTime": 2}\n')[:-8]),
        "R_5.json.gz: unreadable after line 2 (Compressed file ended before the end-of-stream marker was reached)"),
    "lcrec-not-utf8": (
        lambda tmp: lcrec(tmp, item=b'{\n "1": {"title": "t1"},\n "2": {"title": "t\xff2"}\n}'),
        "S.item.json line 3: not UTF-8 (byte 0xff at column 19)"),
    "lcrec-malformed-json": (
        lambda tmp: lcrec(tmp, inter=b'{\n "0": [1, 2],\n "1": [1, 2\n}'),
        "S.inter.json line 4: not valid JSON (Expecting ',' delimiter)"),
    "csv-not-utf8": (
        lambda tmp: csv_pair(tmp, inter=b"user_id,item_id,timestamp\n1,10,1\n1,1\xfe1,2\n"),
        "interactions.csv.gz line 3: not UTF-8 (byte 0xfe at column 4)"),
    "csv-malformed-line": (
        lambda tmp: csv_pair(tmp, inter=b"user_id,item_id,timestamp\n1,10,1\n1,11,2,7\n"),
        "interactions.csv.gz line 3: expected 3 comma-separated fields, got 4"),
    "csv-bad-timestamp": (
        lambda tmp: csv_pair(tmp, inter=b"user_id,item_id,timestamp\n1,10,1\n1,11,soon\n"),
        "interactions.csv.gz line 3: timestamp is not a number ('soon')"),
    "unisrec-not-utf8": (
        lambda tmp: unisrec(tmp, UNISREC_HEADER + b"1\t2 3\t4\n1\t2\t\x803\n"),
        "P.train.inter line 3: not UTF-8 (byte 0x80 at column 5)"),
    "stats-missing-dataset": (
        lambda tmp: ["stats", "nope", "--data-path", tmp / "out"],
        "nope: no such dataset (no directory nope nor {tmp}/out/nope)"),
    "stats-bad-header": (
        lambda tmp: stats(tmp, b"user_id\titem_id:token\nu1\tA\n"),
        "{tmp}/bad/bad.inter line 1: bad header field 'user_id' "
        "(expected name:type, type one of token, token_seq, float, float_seq)"),
    "stats-wrong-field-count": (
        lambda tmp: stats(tmp, (INTER_HEADER + "u1\tA\t5.0\t1\nu1\tB\t2\n").encode()),
        "{tmp}/bad/bad.inter line 3: expected 4 tab-separated fields, got 3"),
    "stats-bad-timestamp": (
        lambda tmp: stats(tmp, (INTER_HEADER + "u1\tA\t5.0\tyesterday\n").encode()),
        "{tmp}/bad/bad.inter line 2: timestamp is not a number ('yesterday')"),
    "stats-not-utf8": (
        lambda tmp: stats(tmp, INTER_HEADER.encode() + b"u1\tA\t5.0\t1\nu\xc3\tB\t4.0\t2\n"),
        "bad.inter line 3: not UTF-8 (byte 0xc3 at column 2)"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_a_one_line_error_and_keeps_the_dataset(case, tmp_path, capsys):
    build, message = CASES[case]
    good_dataset(tmp_path / "out")
    before = snapshot(tmp_path / "out")
    code = main([str(a) for a in build(tmp_path)])
    captured = capsys.readouterr()
    assert code == 2
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert errors == ["error: " + message.format(tmp=tmp_path)]
    assert captured.out == ""  # no stats line for a dataset that was not written
    assert snapshot(tmp_path / "out") == before


def test_filters_log_each_step_before_the_error(tmp_path, caplog, capsys):
    with caplog.at_level(logging.INFO, logger="dataset_tools"):
        assert main([str(a) for a in amazon(tmp_path)]) == 2
    lines = [r.getMessage() for r in caplog.records]
    assert "dedup (user, item): removed 0 users, 0 items, 1 interactions (left: 3 users, 3 items, 7 interactions)" in lines
    assert "items without a title: removed 0 users, 1 items, 2 interactions (left: 3 users, 2 items, 5 interactions)" in lines
    assert "items with < 4 interactions: removed 3 users, 2 items, 5 interactions (left: 0 users, 0 items, 0 interactions)" in lines


def test_a_late_failure_replaces_no_file(tmp_path, capsys):
    # .inter is written (to a temporary name) before .item's place turns out to be taken
    # by a folder: the old .inter must stay, and no temporary file may be left behind.
    out = tmp_path / "out"
    good_dataset(out)
    (out / "ds" / "ds.item").unlink()
    write_bytes(out / "ds" / "ds.item" / "keep.txt", b"a folder where a file should be\n")
    before = snapshot(out)
    code = main([str(a) for a in amazon(tmp_path, *NO_FILTERS)])
    assert code == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"error: cannot write {out}/ds/ds.item: it is a directory"
    assert snapshot(out) == before


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes to read-only folders")
def test_read_only_output_folder(tmp_path, capsys):
    out = tmp_path / "out"
    good_dataset(out)
    before = snapshot(out)
    os.chmod(out / "ds", 0o555)
    try:
        code = main([str(a) for a in amazon(tmp_path, *NO_FILTERS)])
    finally:
        os.chmod(out / "ds", 0o755)
    assert code == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"error: cannot write {out}/ds: {out}/ds is read-only"
    assert snapshot(out) == before


def test_subprocess_exit_code_and_single_line(tmp_path):
    good_dataset(tmp_path / "out")
    before = snapshot(tmp_path / "out")
    result = subprocess.run([sys.executable, "-m", "dataset_tools", *map(str, amazon(tmp_path))],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == ("error: after --min-item-inter 4: 0 of 8 interactions left "
                                              "(dedup kept 7, drop-untitled kept 5, min-item-inter kept 0)")
    assert result.stdout == ""
    assert snapshot(tmp_path / "out") == before


# ---- controls: without their defect the same inputs work, and a good run does replace the files ----

@pytest.mark.parametrize("build", [
    lambda tmp: amazon(tmp, *NO_FILTERS),
    lambda tmp: amazon(tmp, *NO_FILTERS, "--ratings-columns", "item,user,rating,timestamp"),
    lambda tmp: lcrec(tmp),
    lambda tmp: csv_pair(tmp),
], ids=["amazon2018", "ratings-columns", "lcrec", "csv"])
def test_control_valid_input_replaces_the_dataset(build, tmp_path, capsys):
    good_dataset(tmp_path / "out")
    before = snapshot(tmp_path / "out")
    assert main([str(a) for a in build(tmp_path)]) == 0
    after = snapshot(tmp_path / "out")
    assert set(after) == set(before)  # .inter and .item replaced in place, no temporary files left
    assert after["ds/ds.inter"] != before["ds/ds.inter"] and after["ds/ds.item"] != before["ds/ds.item"]
    assert after["ds/ds.yaml"] == before["ds/ds.yaml"]  # not a file of these converters


def test_control_stats_reads_a_good_dataset(tmp_path, capsys):
    good_dataset(tmp_path / "out")
    assert main(["stats", "ds", "--data-path", str(tmp_path / "out")]) == 0
    assert capsys.readouterr().out.strip() == "ds  #users 1  #items 2  #inter 2  avg_items_per_user 2.00"
