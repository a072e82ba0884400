"""Bad input gets one line before any work, and leaves every file it was given unchanged.

Each case runs the real entry point (the CLI's ``main``, ``benchmarks.compare.main``) on real
files and asserts: exit code 2, one ``error:`` line naming the problem, no traceback, and the
dataset, yaml and checkpoint files byte-identical afterwards. The tables are the checks
README's "When something is wrong" lists (the data tools, caches and search have their own
test files).
"""

import hashlib
import os
import shutil

import pytest
import torch

from benchmarks import compare
from recbole_mixrec.cli import main

USERS, ITEMS = 30, 20


def _rows():
    """8 interactions per user, in time order, over 20 items (a dataset that trains in seconds)."""
    return [(f"u{u}", f"i{(u * 3 + k) % ITEMS + 1}", str(1000 * u + k)) for u in range(1, USERS + 1) for k in range(8)]


def write_dataset(root, name="ds", inter_rows=None, item_rows=None, inter_text=None, item_bytes=None):
    folder = os.path.join(root, name)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"{name}.inter"), "w", encoding="utf-8") as handle:
        handle.write(inter_text if inter_text is not None else "user_id:token\titem_id:token\ttimestamp:float\n"
                     + "".join("\t".join(row) + "\n" for row in (inter_rows or _rows())))
    items = item_rows if item_rows is not None else [(f"i{i}", f"Item number {i}") for i in range(1, ITEMS + 1)]
    with open(os.path.join(folder, f"{name}.item"), "wb") as handle:
        handle.write(item_bytes if item_bytes is not None else (
            "item_id:token\ttitle:token_seq\n" + "".join("\t".join(r) + "\n" for r in items)).encode())
    return folder


def tree_digest(*paths):
    """sha256 over every file under ``paths`` (names and bytes): 'unchanged' means equal digests."""
    digest = hashlib.sha256()
    for path in paths:
        files = [path] if os.path.isfile(path) else sorted(
            os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs)
        for file in files:
            digest.update(file.encode())
            with open(file, "rb") as handle:
                digest.update(handle.read())
    return digest.hexdigest()


def expect_one_line_error(code, capsys, *fragments):
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# ---------------------------------------------------------------- settings

SETTINGS = [
    (["--epochs=abc"], "epochs='abc'", "expected an integer in [1, inf)"),
    (["--epochs=0"], "epochs=0", "[1, inf)"),
    (["--epochs=2.5"], "epochs=2.5", "an integer"),
    (["--learning_rate=nan"], "learning_rate='nan'", "a number in (0, inf)"),
    (["--learning_rate=-0.1"], "learning_rate=-0.1", "(0, inf)"),
    (["--train_batch_size=0"], "train_batch_size=0", "[1, inf)"),
    (["--eval_batch_size=-4"], "eval_batch_size=-4", "[1, inf)"),
    (["--max_seq_items=0"], "max_seq_items=0", "[1, inf)"),
    (["--backbone_layers=0"], "backbone_layers=0", "or None"),
    (["--stopping_step=zero"], "stopping_step='zero'", "an integer"),
    (["--train_samples=every"], "train_samples='every'", "one of ['windows', 'last', 'all']"),
    (["--max_seq_items=3", "--train_window_stride=4"], "train_window_stride=4", "at most max_seq_items (3)"),
    (["--head_init=txt"], "head_init='txt'", "one of ['text', 'random']"),
    (["--cf_model=LightGCN"], "cf_model='LightGCN'", "one of ['NCF', 'MF', 'none']"),
    (["--gate_init_causal=1.0"], "gate_init_causal=1.0", "in (0, 1)"),
    (["--hard_negative_ratio=2"], "hard_negative_ratio=2", "in (0, 1]"),
    (["--use_adapters=yes"], "use_adapters='yes'", "True or False"),
    (["--epoch=1"], "unknown key 'epoch' (did you mean 'epochs'?)"),
    (["--learing_rate=0.01"], "unknown key 'learing_rate' (did you mean 'learning_rate'?)"),
    (["--model=SASRec", "--epochs=0"], "epochs=0"),  # RecBole's keys are checked for its models too
    (["--model=NoSuchRec"], "unknown model 'NoSuchRec'"),
    (["--dataset=no-such-data"], "dataset 'no-such-data' not found"),
    (["--search=bo", "--bo_iterations=0"], "bo_iterations=0", "[1, inf)"),
]


@pytest.mark.parametrize("case", SETTINGS, ids=[" ".join(case[0]) for case in SETTINGS])
def test_a_bad_setting_is_one_line_before_any_work(case, tmp_path, capsys):
    args, *fragments = case
    base = ["--model=MixRec", "--dataset=ml-100k", "--backbone=tiny-random", f"--checkpoint_dir={tmp_path}",
            f"--backbone_cache_dir={tmp_path}", "--show_progress=False"]
    overrides = {arg.split("=")[0] for arg in args}
    code = main([a for a in base if a.split("=")[0] not in overrides] + args)
    expect_one_line_error(code, capsys, *fragments)
    assert os.listdir(tmp_path) == []  # nothing was built: no backbone, no checkpoint


def test_valid_settings_close_to_another_key_are_accepted():
    """Keys RecBole reads in code but lists in no yaml (tail_ratio, eta) are known, not typos;
    RecBole's stopping_step 0 (stop at the first non-improvement) is in range."""
    from recbole_mixrec.quick_start import build_config

    config = build_config("SASRec", "ml-100k", config_dict={"tail_ratio": 0.1, "eta": 0.6, "stopping_step": 0},
                          strict=True)
    assert config["stopping_step"] == 0


YAML_FILES = {
    "missing": (None, "config file not found"),
    "malformed": ("epochs: 1\nlearning_rate: [0.1\n", "line 3: not valid YAML"),
    "a list": ("- epochs\n- 1\n", "must be a mapping of 'key: value' lines, found a list"),
    "a typo": ("learing_rate: 0.01\n", "(did you mean 'learning_rate'?)"),
    "a bad value": ("MAX_ITEM_LIST_LENGTH: -3\n", "MAX_ITEM_LIST_LENGTH=-3"),
    "not utf-8": (b"epochs: 1\ntitle: caf\xe9\n", "not UTF-8 text"),
}


@pytest.mark.parametrize("case", sorted(YAML_FILES))
def test_a_bad_yaml_file_is_named(case, tmp_path, capsys):
    content, fragment = YAML_FILES[case]
    path = tmp_path / "settings.yaml"
    if content is not None:
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    before = tree_digest(str(tmp_path))
    code = main(["--model=SASRec", "--dataset=ml-100k", f"--config_files={path}", f"--checkpoint_dir={tmp_path}/ck"])
    expect_one_line_error(code, capsys, str(path), fragment)
    assert tree_digest(str(tmp_path)) == before


def test_an_unwritable_checkpoint_dir_is_named(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code = main(["--model=SASRec", "--dataset=ml-100k", f"--checkpoint_dir={blocker}/sub"])
    expect_one_line_error(code, capsys, "checkpoint_dir", str(blocker))
    assert blocker.read_text() == "not a folder"


# ---------------------------------------------------------------- data files

def _drop_time(rows):
    rows[9] = (rows[9][0], rows[9][1], "")
    return rows


DATA = {
    "empty timestamp": (dict(inter_rows=_drop_time(_rows())), "ds.inter line 11: empty time field 'timestamp'"),
    "text timestamp": (dict(inter_rows=_rows()[:4] + [("u1", "i2", "yesterday")] + _rows()[5:]),
                       "ds.inter line 6: time field 'timestamp' is 'yesterday', not a number"),
    "empty user": (dict(inter_rows=_rows()[:2] + [("", "i2", "5")] + _rows()[3:]), "line 4: empty user field"),
    "extra field": (dict(inter_text="user_id:token\titem_id:token\ttimestamp:float\nu1\ti1\t1\nu1\ti2\t2\t9\n"),
                    "malformed row", "line 3"),
    "empty file": (dict(inter_text=""), "ds.inter is empty"),
    "one interaction per user": (dict(inter_rows=[(f"u{u}", f"i{u % ITEMS + 1}", str(u)) for u in range(1, USERS)]),
                                 "no user has the 3 interactions"),
    "non-utf-8 item": (dict(item_bytes=b"item_id:token\ttitle:token_seq\ni1\tCaf\xe9\ni2\tTea\n"),
                       "ds.item line 2: not utf-8 text"),
    "duplicate item id": (dict(item_rows=[(f"i{i}", f"Item {i}") for i in range(1, ITEMS + 1)] + [("i7", "Another")]),
                          "ds.item lines 8 and 22: item id 'i7' appears twice"),
}


@pytest.mark.parametrize("case", sorted(DATA))
def test_a_malformed_data_file_names_file_and_line(case, tmp_path, capsys):
    spec, *fragments = DATA[case]
    folder = write_dataset(str(tmp_path / "data"), **spec)
    before = tree_digest(folder)
    code = main(["--model=SASRec", "--dataset=ds", f"--data_path={tmp_path / 'data'}",
                 f"--checkpoint_dir={tmp_path / 'ck'}", "--show_progress=False", LOAD_COL])
    expect_one_line_error(code, capsys, *fragments)
    assert tree_digest(folder) == before


WITHOUT_ROW = sum(item in ("i19", "i20") for _, item, _ in _rows())  # items left out of .item below


def test_interactions_without_an_item_row_are_refused_where_text_is_required(tmp_path, capsys):
    items = [(f"i{i}", f"Item {i}") for i in range(1, ITEMS - 1)]  # i19, i20 have no row
    folder = write_dataset(str(tmp_path / "data"), item_rows=items)
    code = main(["--model=MixRec", "--dataset=ds", f"--data_path={tmp_path / 'data'}", "--backbone=tiny-random",
                 f"--checkpoint_dir={tmp_path / 'ck'}", "--item_text_missing=error", "--item_text_fields=['title']",
                 LOAD_COL])
    expect_one_line_error(code, capsys, f"{WITHOUT_ROW} of 240 interactions (2 items) have no row in",
                          "item_text_missing")
    assert os.path.isdir(folder)


def test_interactions_without_an_item_row_are_counted_when_dropped(tmp_path, caplog):
    from recbole_mixrec.quick_start import build_config, check_dataset_files

    write_dataset(str(tmp_path / "data"), item_rows=[(f"i{i}", f"Item {i}") for i in range(1, ITEMS - 1)])
    config = build_config("SASRec", "ds", config_dict={
        "data_path": str(tmp_path / "data"),
        "load_col": {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id", "title"]}})
    with caplog.at_level("WARNING"):
        check_dataset_files(config)
    assert f"{WITHOUT_ROW} of 240 interactions (2 items) have no row" in caplog.text and "RecBole drops them" in caplog.text


# ---------------------------------------------------------------- checkpoints and resume

LOAD_COL = "--load_col={'inter': ['user_id', 'item_id', 'timestamp'], 'item': ['item_id', 'title']}"
TRAIN = ["--model=GRU4Rec", "--dataset=ds", "--epochs=1", "--show_progress=False", "--MAX_ITEM_LIST_LENGTH=5",
         "--embedding_size=8", "--hidden_size=8", "--train_batch_size=64", "--eval_batch_size=64", LOAD_COL]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A real 1-epoch GRU4Rec run: its data folder and its two checkpoints."""
    root = tmp_path_factory.mktemp("resume")
    write_dataset(str(root / "data"))
    args = TRAIN + [f"--data_path={root / 'data'}", f"--checkpoint_dir={root / 'ck'}"]
    assert main(args) == 0
    (last,) = [f for f in os.listdir(root / "ck") if f.endswith("-last.pth")]
    return root, args, str(root / "ck" / last)


def _resume_case(case, root, args, last, tmp_path):
    """(argv, fragment) of one resume case; may write files under tmp_path."""
    if case == "missing file":
        return args + [f"--resume_file={tmp_path / 'none.pth'}"], "checkpoint not found"
    if case == "truncated":
        path = tmp_path / "cut.pth"
        path.write_bytes(open(last, "rb").read()[:4000])
        return args + [f"--resume_file={path}"], "not a readable checkpoint"
    if case == "not a torch file":
        path = tmp_path / "notes.pth"
        path.write_text("these are my notes")
        return args + [f"--resume_file={path}"], "not a readable checkpoint"
    if case == "foreign torch file":
        path = tmp_path / "weights.pth"
        torch.save({"weight": torch.zeros(3)}, path)
        return args + [f"--resume_file={path}"], "not a RecBole or recbole_mixrec checkpoint"
    if case == "other model":
        return [a.replace("GRU4Rec", "SASRec") for a in args] + [f"--resume_file={last}"], "model: 'GRU4Rec' -> 'SASRec'"
    if case == "other history length":
        return [a.replace("LENGTH=5", "LENGTH=6") for a in args] + [f"--resume_file={last}"], \
            "MAX_ITEM_LIST_LENGTH: 5 -> 6"
    if case == "changed data":
        data = tmp_path / "data"
        shutil.copytree(root / "data", data)
        with open(data / "ds" / "ds.inter", "a", encoding="utf-8") as handle:
            handle.write("u1\ti5\t999\n")
        return [a.replace(str(root / "data"), str(data)) for a in args] + [f"--resume_file={last}"], \
            "the files of dataset 'ds'"
    raise AssertionError(case)


RESUME_CASES = ["missing file", "truncated", "not a torch file", "foreign torch file", "other model",
                "other history length", "changed data"]


@pytest.mark.parametrize("case", RESUME_CASES)
def test_a_bad_or_mismatched_resume_is_refused_and_overwrites_nothing(case, trained_run, tmp_path, capsys):
    root, args, last = trained_run
    argv, fragment = _resume_case(case, root, args, last, tmp_path)
    before = tree_digest(str(root))
    capsys.readouterr()
    expect_one_line_error(main(argv), capsys, fragment)
    assert tree_digest(str(root)) == before


def test_resuming_with_more_epochs_is_allowed_with_a_warning(trained_run, tmp_path, caplog):
    root, args, last = trained_run
    copy = tmp_path / "ck"
    shutil.copytree(root / "ck", copy)
    resumed = [a.replace("--epochs=1", "--epochs=2").replace(str(root / "ck"), str(copy)) for a in args]
    with caplog.at_level("WARNING"):
        code = main(resumed + [f"--resume_file={copy / os.path.basename(last)}"])
    assert code == 0
    assert "resume: epochs changed from 1 to 2" in caplog.text


def test_the_dataset_fingerprint_covers_the_files_recbole_reads_only(tmp_path):
    from recbole_mixrec.fingerprint import dataset_fingerprint

    folder = write_dataset(str(tmp_path))
    config = {"data_path": folder, "dataset": "ds", "load_col": {"inter": ["user_id"], "item": ["item_id"]}}
    before = dataset_fingerprint(config)
    with open(os.path.join(folder, "ds.notes"), "w") as handle:  # a file RecBole never reads
        handle.write("my notes")
    assert dataset_fingerprint(config) == before
    with open(os.path.join(folder, "ds.item"), "a") as handle:
        handle.write("i99\tOne more\n")
    assert dataset_fingerprint(config) != before


def test_load_data_and_model_names_a_bad_checkpoint(tmp_path):
    from recbole_mixrec.errors import MixRecError
    from recbole_mixrec.quick_start import load_data_and_model

    path = tmp_path / "model.pth"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(MixRecError, match="model.pth: not a readable checkpoint"):
        load_data_and_model(str(path))


# ---------------------------------------------------------------- compare

COMPARE = [
    (["--models=SASRec", "--epoch=1"], "unknown key 'epoch' (did you mean 'epochs'?)"),
    (["--models=SASRec,NoSuchRec"], "unknown model 'NoSuchRec'"),
    (["--models=SASRec,MixRec", "--max_seq_items=0"], "max_seq_items=0"),  # the second model's setting
    (["--models=SASRec", "--resume=/nonexistent/run"], "--resume: no such directory"),
]


@pytest.mark.parametrize("args, fragment", COMPARE, ids=[" ".join(c[0]) for c in COMPARE])
def test_compare_refuses_bad_input_before_training(args, fragment, tmp_path, capsys):
    code = compare.main(["--dataset=ml-100k", f"--out={tmp_path / 'out'}", "--show_progress=False"] + args)
    expect_one_line_error(code, capsys, fragment)
    assert not os.path.exists(tmp_path / "out")


def test_compare_names_an_unwritable_output_folder(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code = compare.main(["--dataset=ml-100k", "--models=SASRec", f"--out={blocker}"])
    expect_one_line_error(code, capsys, "--out", str(blocker))
