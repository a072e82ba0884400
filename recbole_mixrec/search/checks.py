"""What ``run_search`` checks before it does any work (no subset written, no Ray started).

* ``search_options``: the ``bo_*`` values as ``bo_loop``'s arguments.
* ``check_search_dir``: the search directory is a directory this process can write (or can
  be created).
* The manifest ``<search_dir>/search.json`` ties a search directory to the data and settings it
  was made for: the dataset's content fingerprint (``recbole_mixrec.fingerprint``) and every
  setting of the search's Config that changes what a trial measures. ``check_manifest``
  compares it with the current search; a re-run with other data or settings is refused (its
  old trials would be compared with new ones, and an old trial reported best) unless nothing
  has been measured there yet. A directory with trials but without a manifest (made by an older
  version) is refused too: what its trials measured is unknown. ``write_manifest`` writes it
  (first use) or records the new values of the settings a resume may change.
"""

import json
import logging
import os
import tempfile

from recbole_mixrec.errors import MixRecError
from recbole_mixrec.fingerprint import HOUSEKEEPING_KEYS, differences, settings_of

logger = logging.getLogger(__name__)

MANIFEST = "search.json"
MANIFEST_FORMAT = 1
LOG_FILES = ("trials.jsonl", "random_trials.jsonl")
TRIAL_FOLDERS = ("trials", "random_trials")

# how much to run and where: a resumed search may change these (recorded, nothing refused)
RESUMABLE_KEYS = ("bo_iterations", "bo_parallel_trials", "bo_ray_address", "bo_num_cpus",
                  "bo_trial_threads", "bo_trial_gpus", "bo_search_dir", "bo_random_baseline")
# how the next designs are proposed: the logged trials stay valid measurements, so a resume may
# change them; a warning names them
STRATEGY_KEYS = ("bo_initial_points", "bo_surrogate", "bo_acquisition", "bo_ucb_beta",
                 "bo_pr_mc_samples", "bo_pr_steps", "bo_pr_lr", "bo_pr_restarts")
# where and on what a run happens, or what every trial sets itself (epochs: bo_trial_epochs;
# seed: bo_seed + trial id; architecture: the design): no part of what a trial measures.
# data_path: the dataset's *content* is compared (its fingerprint), not where it lies.
NOT_DEFINING_KEYS = HOUSEKEEPING_KEYS + ("epochs", "seed", "architecture", "item_encode_batch_size", "attention_impl",
                                         "item_vector_disk_cache", "metric_decimal_place", "valid_untrained")
MAX_LISTED = 6  # differences named in a refusal


def search_options(config):
    """The keyword arguments of ``bo_loop`` from the search's Config. Types and ranges were
    checked when the Config was built (``config_checks``, from ``properties/search.yaml``)."""
    return dict(
        n_iterations=int(config["bo_iterations"]), n_initial=int(config["bo_initial_points"]),
        q=int(config["bo_parallel_trials"]), seed=int(config["bo_seed"]),
        surrogate=config["bo_surrogate"], acquisition=config["bo_acquisition"],
        mc_samples=int(config["bo_pr_mc_samples"]), steps=int(config["bo_pr_steps"]),
        lr=float(config["bo_pr_lr"]), restarts=int(config["bo_pr_restarts"]),
        ucb_beta=float(config["bo_ucb_beta"]),
    )


# the directory --------------------------------------------------------------------------------
def check_search_dir(search_dir):
    """A directory this process can write, or a path where one can be created (created later,
    by ``write_manifest``)."""
    if os.path.exists(search_dir) and not os.path.isdir(search_dir):
        raise MixRecError(f"search directory {search_dir} is a file, not a folder: set bo_search_dir to a folder")
    if not os.path.isdir(search_dir):
        return
    try:  # a real write: permissions, a read-only file system, a full disk all show here
        handle, probe = tempfile.mkstemp(prefix=".write-test-", dir=search_dir)
        os.close(handle)
        os.remove(probe)
    except OSError as err:
        raise MixRecError(f"search directory {search_dir} is not writable ({type(err).__name__}: "
                          f"{err.strerror or err}): set bo_search_dir to a folder you can write") from None


def has_results(search_dir):
    """Whether anything was measured in ``search_dir`` (a logged trial, a trial folder, a best
    architecture)."""
    for name in LOG_FILES:
        path = os.path.join(search_dir, name)
        if os.path.isfile(path) and os.path.getsize(path) > 0:
            return True
    for name in TRIAL_FOLDERS:
        path = os.path.join(search_dir, name)
        if os.path.isdir(path) and os.listdir(path):
            return True
    return os.path.exists(os.path.join(search_dir, "best_architecture.yaml"))


# the manifest ---------------------------------------------------------------------------------
def defining_settings(config):
    """Every setting of the search's Config that changes what a trial measures: the model, the
    dataset, the backbone and its layers, the history length, the item text, the trial's
    ``bo_*`` keys (subset ratio, seed, epochs) and every other entry trials are trained with."""
    final = config.final_config_dict if hasattr(config, "final_config_dict") else config
    skip = set(RESUMABLE_KEYS) | set(STRATEGY_KEYS) | set(NOT_DEFINING_KEYS)
    return settings_of(config, sorted(k for k in final if k not in skip))


def manifest_of(config, fingerprint):
    import recbole_mixrec

    return {
        "format": MANIFEST_FORMAT,
        "written_by": f"recbole_mixrec {recbole_mixrec.__version__}",
        "model": config["model"],
        "dataset": config["dataset"],
        "data_path": os.path.abspath(str(config["data_path"])),
        "dataset_fingerprint": fingerprint,
        "settings": defining_settings(config),
        "resumable": settings_of(config, RESUMABLE_KEYS + STRATEGY_KEYS),
    }


def _show(value):
    if value is None:
        return "unset"
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _ways_out(search_dir):
    return f"use a new bo_search_dir, or delete {search_dir} to start this search over"


def read_manifest(search_dir):
    """The saved manifest (a dict), or None when the directory has none."""
    path = os.path.join(search_dir, MANIFEST)
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            saved = json.load(handle)
        if not isinstance(saved, dict) or not isinstance(saved.get("settings"), dict):
            raise ValueError("not a search manifest")
    except (OSError, ValueError) as err:  # json.JSONDecodeError is a ValueError
        raise MixRecError(f"{path} is unreadable ({type(err).__name__}: {err}); "
                          f"{_ways_out(search_dir)}") from None
    return saved


def check_manifest(search_dir, config, fingerprint):
    """Refuse to reuse ``search_dir`` for other data or settings; returns the manifest to write
    (``write_manifest``), which keeps the saved one's defining part."""
    current = manifest_of(config, fingerprint)
    if not os.path.isdir(search_dir):
        return current
    saved = read_manifest(search_dir)
    results = has_results(search_dir)
    if saved is None:
        if results:
            raise MixRecError(
                f"search directory {search_dir} has trials but no {MANIFEST} (made by an older version), so "
                f"the data and settings they measured are unknown; {_ways_out(search_dir)}")
        return current
    changed = []
    if saved.get("dataset_fingerprint") != fingerprint:
        changed.append(f"dataset content changed: fingerprint {saved.get('dataset_fingerprint')} -> {fingerprint}")
    changed += [f"{key}: {_show(old)} -> {_show(new)}"
                for key, old, new in differences(saved["settings"], current["settings"])]
    if changed and results:
        listed = "; ".join(changed[:MAX_LISTED]) + (f"; and {len(changed) - MAX_LISTED} more"
                                                    if len(changed) > MAX_LISTED else "")
        raise MixRecError(f"search directory {search_dir} was made for other data or settings ({listed}), "
                          f"so its trials do not measure this search: {_ways_out(search_dir)}")
    if changed:  # nothing measured yet: the directory is tied to the current data and settings
        logger.info("no trial in %s yet: tying it to the current data and settings (%s)",
                    search_dir, "; ".join(changed))
        return current
    old = saved.get("resumable") or {}
    for key, before, after in differences(old, current["resumable"]):
        (logger.warning if key in STRATEGY_KEYS else logger.info)(
            "resuming %s with %s: %s -> %s", search_dir, key, _show(before), _show(after))
    return current


def write_manifest(search_dir, manifest):
    """Create ``search_dir`` if needed and write ``manifest`` to it (atomically)."""
    try:
        os.makedirs(search_dir, exist_ok=True)
    except OSError as err:
        raise MixRecError(f"cannot create search directory {search_dir} ({type(err).__name__}: "
                          f"{err.strerror or err}): set bo_search_dir to a folder you can write") from None
    path = os.path.join(search_dir, MANIFEST)
    saved = read_manifest(search_dir)
    if saved == manifest:
        return path
    partial = f"{path}.partial-{os.getpid()}"
    with open(partial, "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=1, sort_keys=True)
        handle.write("\n")
    os.replace(partial, path)
    return path
