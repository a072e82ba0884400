"""A search directory is tied to the data and settings it was made for, and bad search input is
a one-line MixRecError before any work ("Bad input never passes silently").

Real files in tmp_path, a cheap objective instead of Ray trials (``run_search(objective=...)``)."""

import hashlib
import json
import os
import shutil

import pytest

from conftest import write_atomic
from recbole_mixrec.errors import MixRecError
from recbole_mixrec.search import run_search
from recbole_mixrec.search.bo import bo_loop
from recbole_mixrec.search.run import search_config
from recbole_mixrec.search.trials import write_user_subset

WEIGHTS = (0.3, -0.2, 0.5, 0.1, -0.4, 0.2)  # tiny-random: 2 DAMoE layers, d = 6


class Objective:
    """A cheap stand-in for a trial: a fixed linear function of the design; counts its calls."""

    def __init__(self):
        self.calls = []

    def __call__(self, z, seed, trial_dir):
        self.calls.append(list(z))
        return float(sum(w * v for w, v in zip(WEIGHTS, z)))


def make_dataset(root, name="tiny", users=10, extra_row=False):
    rows = [(u, i, 100 * u + i) for u in range(users) for i in range(1, 5)]
    if extra_row:
        rows.append((0, 4, 99999))
    write_atomic(str(root), name, rows, [(i, f"item {i}", "b") for i in range(1, 5)])
    return str(root)


@pytest.fixture
def data_root(tmp_path):
    return make_dataset(tmp_path / "data")


def settings(data_root, **overrides):
    base = {"backbone": "tiny-random", "data_path": data_root, "max_seq_items": 3, "lambda_cl": 0.0,
            "bo_iterations": 3, "bo_initial_points": 3, "bo_parallel_trials": 1,
            "bo_pr_mc_samples": 16, "bo_pr_steps": 5, "bo_pr_restarts": 1}
    base.update(overrides)
    return base


def search(data_root, search_dir, objective=None, **overrides):
    objective = objective or Objective()
    return run_search("MixRec", "tiny", config_dict=settings(data_root, **overrides),
                      search_dir=str(search_dir), objective=objective)


def snapshot(folder):
    """Every file (sha256) and folder under ``folder``; None when it does not exist."""
    if not os.path.exists(folder):
        return None
    if os.path.isfile(folder):
        with open(folder, "rb") as handle:
            return {".": hashlib.sha256(handle.read()).hexdigest()}
    out = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            out[os.path.relpath(os.path.join(root, name), folder) + "/"] = "dir"
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as handle:
                out[os.path.relpath(path, folder)] = hashlib.sha256(handle.read()).hexdigest()
    return out


def refused(search_dir, call, *needles):
    """``call()`` raises a one-line MixRecError naming every needle; ``search_dir`` is unchanged."""
    before = snapshot(str(search_dir))
    with pytest.raises(MixRecError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message, message
    for needle in needles:
        assert needle in message, (needle, message)
    assert snapshot(str(search_dir)) == before
    return message


def read_log(search_dir):
    with open(os.path.join(search_dir, "trials.jsonl"), encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


# the manifest ---------------------------------------------------------------------------------
def test_same_settings_resume_runs_nothing_and_more_iterations_resume(data_root, tmp_path):
    search_dir = tmp_path / "search"
    first = Objective()
    best, results = search(data_root, search_dir, first)
    assert len(first.calls) == 3 and len(results["records"]) == 3
    manifest = json.loads((search_dir / "search.json").read_text())
    config = search_config("MixRec", "tiny", config_dict=settings(data_root))
    from recbole_mixrec.fingerprint import dataset_fingerprint

    assert manifest["dataset_fingerprint"] == dataset_fingerprint(config)
    for key in ("model", "dataset", "backbone", "backbone_layers", "replace_freq", "max_seq_items",
                "item_text_max_tokens", "bo_subset_ratio", "bo_seed", "bo_trial_epochs", "lambda_cl"):
        assert key in manifest["settings"], key
    for key in ("bo_iterations", "bo_parallel_trials", "bo_ray_address", "bo_trial_threads", "data_path"):
        assert key not in manifest["settings"], key
    log_before = (search_dir / "trials.jsonl").read_bytes()

    again = Objective()
    best_again, results_again = search(data_root, search_dir, again)
    assert again.calls == [] and best_again == best
    assert results_again["records"] == results["records"]
    assert (search_dir / "trials.jsonl").read_bytes() == log_before

    more = Objective()  # bo_iterations and bo_parallel_trials may grow or change on a resume
    _, results_more = search(data_root, search_dir, more, bo_iterations=5, bo_parallel_trials=2)
    assert len(more.calls) == 2 and len(results_more["records"]) == 5
    assert read_log(search_dir)[:3] == results["records"]
    saved = json.loads((search_dir / "search.json").read_text())
    assert saved["settings"] == manifest["settings"]
    assert saved["resumable"]["bo_iterations"] == 5 and saved["resumable"]["bo_parallel_trials"] == 2


def test_a_copy_of_the_same_data_elsewhere_resumes(data_root, tmp_path):
    search_dir = tmp_path / "search"
    search(data_root, search_dir)
    copy = tmp_path / "copy"
    shutil.copytree(data_root, copy)
    again = Objective()
    search(str(copy), search_dir, again)  # content, not the path, is what the directory is tied to
    assert again.calls == []


def test_changed_dataset_content_is_refused(data_root, tmp_path):
    search_dir = tmp_path / "search"
    search(data_root, search_dir)
    make_dataset(tmp_path / "data", extra_row=True)  # one more interaction in tiny.inter
    objective = Objective()
    refused(search_dir, lambda: search(data_root, search_dir, objective),
            str(search_dir), "dataset content changed", "new bo_search_dir", f"delete {search_dir}")
    assert objective.calls == []


@pytest.mark.parametrize("key, old, new", [
    ("max_seq_items", 3, 4),
    ("bo_seed", 2024, 7),
    ("bo_subset_ratio", 0.2, 0.5),
    ("bo_trial_epochs", 1, 2),
    ("backbone_layers", 6, 1),  # the search space itself changes (d = 6 -> 3)
    ("lambda_cl", 0.0, 0.5),  # a user's entry the trials are trained with
    ("item_text_fields", None, ["title"]),
])
def test_changed_defining_setting_is_refused(data_root, tmp_path, key, old, new):
    search_dir = tmp_path / "search"
    search(data_root, search_dir)
    objective = Objective()
    shown = {None: "unset", 0.0: "0.0", 0.2: "0.2"}.get(old, json.dumps(old))
    refused(search_dir, lambda: search(data_root, search_dir, objective, **{key: new}),
            str(search_dir), f"{key}: {shown} -> {json.dumps(new) if not isinstance(new, str) else new}",
            "new bo_search_dir", f"delete {search_dir}")
    assert objective.calls == []


def test_a_changed_setting_before_any_trial_ties_the_directory_again(data_root, tmp_path):
    search_dir = tmp_path / "search"
    search_dir.mkdir()
    config = search_config("MixRec", "tiny", config_dict=settings(data_root))
    from recbole_mixrec.search.checks import manifest_of, write_manifest

    write_manifest(str(search_dir), manifest_of(config, "0" * 16))  # e.g. a run that failed early
    objective = Objective()
    search(data_root, search_dir, objective, bo_seed=7)
    assert len(objective.calls) == 3
    assert json.loads((search_dir / "search.json").read_text())["settings"]["bo_seed"] == 7


def test_a_directory_with_trials_but_no_manifest_is_refused(data_root, tmp_path):
    search_dir = tmp_path / "old-search"  # as an older version left it: a log, no search.json
    bo_loop(Objective(), 6, n_iterations=2, n_initial=2, log_path=str(search_dir / "trials.jsonl"))
    objective = Objective()
    refused(search_dir, lambda: search(data_root, search_dir, objective),
            str(search_dir), "no search.json", "older version", "new bo_search_dir", f"delete {search_dir}")
    assert objective.calls == []


def test_a_directory_without_trials_or_manifest_is_adopted(data_root, tmp_path):
    search_dir = tmp_path / "search"
    (search_dir / "notes").mkdir(parents=True)
    objective = Objective()
    search(data_root, search_dir, objective)
    assert len(objective.calls) == 3 and (search_dir / "search.json").is_file()


@pytest.mark.parametrize("bad_line, problem", [
    ('{"trial_id": 3, "z": [0, 1, 1', "unreadable JSON: cut off"),  # cut off by a crash
    ("{trial_id: 3}", "unreadable JSON: expecting property name enclosed in double quotes at character 2"),
    ('[1, 2]', "not a JSON object"),
    ('{"trial_id": 3, "z": [0, 1, 1], "status": "ok", "value": 0.1}', "a design of 3 choices, this search has 6"),
    ('{"trial_id": 3, "z": [0, 1, 1, 0, 0, 0], "status": "ok", "value": null}', "status 'ok' with value None"),
    ('{"trial_id": 1, "z": [0, 1, 1, 0, 0, 0], "status": "ok", "value": 0.1}', "trial_id 1 logged twice"),
    ('{"z": [0, 1, 1, 0, 0, 0], "status": "ok", "value": 0.1}', "no trial_id"),
])
def test_a_corrupt_trials_line_is_named(data_root, tmp_path, bad_line, problem):
    search_dir = tmp_path / "search"
    search(data_root, search_dir)
    with open(search_dir / "trials.jsonl", "a", encoding="utf-8") as handle:
        handle.write(bad_line + "\n")
    objective = Objective()
    refused(search_dir, lambda: search(data_root, search_dir, objective, bo_iterations=6),
            f"{search_dir / 'trials.jsonl'} line 4 is not a trial record", problem, "delete that line")
    assert objective.calls == []


def test_a_last_line_cut_off_while_written_is_dropped_and_its_trial_runs_again(data_root, tmp_path, caplog):
    search_dir = tmp_path / "search"
    search(data_root, search_dir)
    log = search_dir / "trials.jsonl"
    kept = log.read_text(encoding="utf-8")
    with open(log, "a", encoding="utf-8") as handle:
        handle.write('{"trial_id": 3, "z": [0, 1')  # the crash came before the newline
    objective = Objective()
    with caplog.at_level("WARNING"):
        search(data_root, search_dir, objective, bo_iterations=4)
    assert "cut off while being written" in caplog.text
    assert len(objective.calls) == 1  # trial 3 again, then the log is whole
    lines = log.read_text(encoding="utf-8").splitlines()
    assert log.read_text(encoding="utf-8").startswith(kept) and len(lines) == 4


# bad values -----------------------------------------------------------------------------------
# build_config's own settings check (config_checks) or the search's (search/checks.py): either
# way a one-line MixRecError naming the key, the value and what it must be
@pytest.mark.parametrize("key, value, needles", [
    ("bo_iterations", 0, ["integer", "1"]),
    ("bo_iterations", -3, ["integer", "1"]),
    ("bo_iterations", 2.5, ["integer", "1"]),
    ("bo_iterations", "ten", ["integer", "1"]),
    ("bo_subset_ratio", 0, ["(0, 1]"]),
    ("bo_subset_ratio", 1.5, ["(0, 1]"]),
    ("bo_subset_ratio", -0.1, ["(0, 1]"]),
    ("bo_parallel_trials", 0, ["integer", "1"]),
    ("bo_surrogate", "matern", ["rbf", "hamming"]),
    ("bo_acquisition", "pi", ["logei", "ei", "ucb"]),
])
def test_bad_search_values_are_refused_before_any_work(data_root, tmp_path, key, value, needles):
    objective = Objective()
    fresh = tmp_path / "fresh"
    needles = [key, repr(value)] + needles
    refused(fresh, lambda: search(data_root, fresh, objective, **{key: value}), *needles)
    assert not fresh.exists()  # not even the folder is created
    used = tmp_path / "used"
    search(data_root, used)
    refused(used, lambda: search(data_root, used, objective, **{key: value}), *needles)
    assert objective.calls == []


def test_a_search_dir_that_is_a_file_is_refused(data_root, tmp_path):
    path = tmp_path / "search.txt"
    path.write_text("not a folder\n")
    refused(path, lambda: search(data_root, path), str(path), "is a file, not a folder")
    inside = path / "search"
    refused(path, lambda: search(data_root, inside), f"cannot create search directory {inside}")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_an_unwritable_search_dir_is_refused(data_root, tmp_path):
    search_dir = tmp_path / "search"
    search(data_root, search_dir)
    os.chmod(search_dir, 0o555)
    try:
        refused(search_dir, lambda: search(data_root, search_dir, bo_iterations=5),
                str(search_dir), "is not writable")
    finally:
        os.chmod(search_dir, 0o755)


# the user subset ------------------------------------------------------------------------------
def subset_config(data_root):
    return search_config("MixRec", "tiny", config_dict=settings(data_root))


def read_subset(folder):
    with open(os.path.join(folder, "tiny-bo.inter"), encoding="utf-8") as handle:
        return handle.read()


def test_the_user_subset_follows_the_source_content(tmp_path):
    data_root = make_dataset(tmp_path / "data", users=10)
    target = tmp_path / "search" / "data"
    folder = target / "tiny-bo"
    _, name, kept = write_user_subset(subset_config(data_root), str(target), 0.5, 1)
    assert name == "tiny-bo" and kept == 5
    marker = json.loads((folder / "subset.json").read_text())
    inode = os.stat(folder / "tiny-bo.inter").st_ino
    assert write_user_subset(subset_config(data_root), str(target), 0.5, 1)[2] == 5
    assert os.stat(folder / "tiny-bo.inter").st_ino == inode  # same content: reused

    make_dataset(tmp_path / "data", users=20)  # same path, other content
    _, _, kept = write_user_subset(subset_config(data_root), str(target), 0.5, 1)
    assert kept == 10
    rebuilt = json.loads((folder / "subset.json").read_text())
    assert rebuilt["dataset_fingerprint"] != marker["dataset_fingerprint"] and rebuilt["users_total"] == 20
    assert read_subset(folder).count("\n") == 1 + 10 * 4
    assert sorted(os.listdir(target)) == ["tiny-bo"]  # no partial or old folder left


def test_an_interrupted_or_old_subset_is_never_reused(tmp_path):
    data_root = make_dataset(tmp_path / "data", users=10)
    config = subset_config(data_root)
    target = tmp_path / "search" / "data"
    write_user_subset(config, str(target), 0.5, 1)
    folder = target / "tiny-bo"
    good = read_subset(folder)

    # an interrupted write of this version: a partial folder next to it, removed, never read
    partial = target / ".tiny-bo.partial-12345"
    shutil.copytree(folder, partial)
    (partial / "tiny-bo.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n")
    assert write_user_subset(config, str(target), 0.5, 1)[2] == 5
    assert sorted(os.listdir(target)) == ["tiny-bo"] and read_subset(folder) == good

    # an older version's folder: cut off before its marker, or a marker by source path only
    (folder / "subset.json").unlink()
    (folder / "tiny-bo.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n1\t1\t1\n")
    assert write_user_subset(config, str(target), 0.5, 1)[2] == 5 and read_subset(folder) == good
    (folder / "subset.json").write_text(json.dumps(
        {"source": os.path.abspath(config["data_path"]), "ratio": 0.5, "seed": 1, "users_kept": 1}))
    (folder / "tiny-bo.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n1\t1\t1\n")
    assert write_user_subset(config, str(target), 0.5, 1)[2] == 5 and read_subset(folder) == good


def test_trials_keep_the_users_item_text_over_the_dataset_yaml(tmp_path):
    """The subset's name (ml-100k-bo) has no dataset yaml, so its keys travel in the trial's
    config_dict: a preset's item_text_fields (ml-100k's quality preset: titles) must win there."""
    from recbole_mixrec.properties import PROPERTIES_DIR
    from recbole_mixrec.quick_start import build_config
    from recbole_mixrec.search.trials import prepare_trial_spec

    preset = [os.path.join(PROPERTIES_DIR, "quality", "ml-100k.yaml")]
    config = search_config("MixRec", "ml-100k", preset, {"bo_subset_ratio": 0.05})
    spec = prepare_trial_spec("MixRec", "ml-100k", config, str(tmp_path), preset, {"bo_subset_ratio": 0.05})
    assert spec["dataset"] == "ml-100k-bo" and 0 < spec["users_kept"] < 100
    trial = build_config(spec["model"], spec["dataset"], spec["config_file_list"], spec["config_dict"])
    assert list(trial["item_text_fields"]) == ["movie_title"] and trial["max_seq_items"] == 20
    assert trial["load_col"]["item"] == ["item_id", "movie_title", "release_year", "class"]
