"""Real BO trials: train MixRec with one architecture on a user subset, return valid MRR@10.

``prepare_trial_spec`` (driver, once per search) builds the original dataset's Config, writes a
filtered copy of its atomic files with ``bo_subset_ratio`` of the users (fixed seed) to
``<search_dir>/data/<dataset>-bo/`` (rebuilt when the source's content changes; moved into place
only when complete) and collects what every trial passes to ``run_mixrec``.
RecBole always reads its packaged copy for ``dataset='ml-100k'``, hence the ``-bo`` name; the
plugin only loads ``properties/dataset/<dataset>.yaml`` for the exact name, hence its keys
(``load_col``, ``item_text_fields``, ...) travel in ``config_dict``.

``train_trial(spec, z, seed, trial_dir)`` runs one trial in this process; ``RayObjective``
runs it as a Ray task (``.remote(z, seed, trial_dir)``) asking for ``bo_trial_threads`` CPUs and
as many torch threads, and ``bo_trial_gpus`` GPUs (its ``gpu_id`` is what Ray assigned), logging and
stdout/stderr redirected to ``<trial_dir>/trial.log``; ``ray.json`` there says which node ran it.
"""

import contextlib
import json
import logging
import math
import os
import shutil
import sys

import numpy as np
import pandas as pd

from recbole_mixrec.search.space import z_to_architecture

SUBSET_SUFFIX = "-bo"


def _dataset_yaml_keys(dataset):
    from recbole_mixrec.properties import dataset_file, read_yaml

    path = dataset_file(dataset)
    return list(read_yaml(path)) if path else []


def _read_marker(folder):
    try:
        with open(os.path.join(folder, "subset.json"), encoding="utf-8") as handle:
            done = json.load(handle)
    except (OSError, ValueError):  # none, or cut off: the folder is rebuilt
        return None
    return done if isinstance(done, dict) and isinstance(done.get("users_kept"), int) else None


def _remove_leftovers(target_root, name):
    """Folders of an interrupted write (``.<name>.partial-*``) or replacement (``.<name>.old-*``)."""
    if not os.path.isdir(target_root):
        return
    for entry in os.listdir(target_root):
        if entry.startswith((f".{name}.partial-", f".{name}.old-")):
            shutil.rmtree(os.path.join(target_root, entry), ignore_errors=True)


def write_user_subset(config, target_root, ratio, seed, fingerprint=None):
    """Copy ``config``'s dataset to ``target_root/<dataset>-bo/`` keeping ``ratio`` of the users
    (chosen with ``seed``); the other atomic files (.item, ...) are copied unchanged.
    Returns ``(target_root, subset_name, n_users_kept)``.

    An existing subset is reused only when its ``subset.json`` names the same source *content*
    (``dataset_fingerprint``, passed in or computed), user field, ratio and seed; otherwise it
    is rebuilt. It is written to a hidden ``.<dataset>-bo.partial-*`` folder and moved into
    place complete (marker last), so an interrupted write is never reused."""
    from recbole_mixrec.errors import MixRecError
    from recbole_mixrec.fingerprint import dataset_fingerprint

    dataset, source = config["dataset"], config["data_path"]
    name = f"{dataset}{SUBSET_SUFFIX}"
    folder = os.path.join(target_root, name)
    wanted = {"dataset_fingerprint": fingerprint or dataset_fingerprint(config),
              "user_field": config["USER_ID_FIELD"], "ratio": float(ratio), "seed": int(seed)}
    _remove_leftovers(target_root, name)
    done = _read_marker(folder)
    if done is not None and {k: done.get(k) for k in wanted} == wanted:
        return target_root, name, done["users_kept"]
    inter_file = os.path.join(source, f"{dataset}.inter")
    if not os.path.isfile(inter_file):
        raise MixRecError(f"the search keeps a share of the users of {inter_file}, which does not exist")
    inter = pd.read_csv(inter_file, sep="\t", dtype=str, keep_default_na=False)
    uid = next((c for c in inter.columns if c.split(":")[0] == config["USER_ID_FIELD"]), None)
    if uid is None:
        raise MixRecError(f"{inter_file} has no column for USER_ID_FIELD '{config['USER_ID_FIELD']}' "
                          f"(columns: {', '.join(inter.columns)})")
    users = np.array(sorted(inter[uid].unique()))
    keep = max(2, int(round(float(ratio) * len(users))))
    chosen = np.random.RandomState(int(seed)).choice(users, size=min(keep, len(users)), replace=False)
    os.makedirs(target_root, exist_ok=True)
    partial = os.path.join(target_root, f".{name}.partial-{os.getpid()}")
    os.makedirs(partial)
    try:
        inter[inter[uid].isin(set(chosen))].to_csv(os.path.join(partial, f"{name}.inter"), sep="\t", index=False)
        for file in os.listdir(source):
            stem, ext = os.path.splitext(file)
            if stem == dataset and ext not in (".inter",) and os.path.isfile(os.path.join(source, file)):
                shutil.copyfile(os.path.join(source, file), os.path.join(partial, f"{name}{ext}"))
        with open(os.path.join(partial, "subset.json"), "w", encoding="utf-8") as handle:
            json.dump({**wanted, "source": os.path.abspath(source), "users_kept": int(len(chosen)),
                       "users_total": int(len(users))}, handle)
        if os.path.lexists(folder):  # an older or stale subset: out of the way, then removed
            old = os.path.join(target_root, f".{name}.old-{os.getpid()}")
            os.rename(folder, old)
            os.rename(partial, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(partial, folder)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return target_root, name, int(len(chosen))


def prepare_trial_spec(model, dataset, config, search_dir, config_file_list=None, config_dict=None,
                       fingerprint=None):
    """Everything a trial needs (a plain, picklable dict) from the search's ``Config``;
    ``fingerprint``: the dataset's (``recbole_mixrec.fingerprint``), when already computed."""
    data_root, subset_name, kept = write_user_subset(
        config, os.path.join(search_dir, "data"), config["bo_subset_ratio"], config["bo_seed"], fingerprint
    )
    trial_dict = {k: config[k] for k in _dataset_yaml_keys(dataset) if k in config}
    trial_dict.update(config_dict or {})
    trial_dict = {k: v for k, v in trial_dict.items() if not str(k).startswith("bo_")}
    trial_dict.update({"data_path": os.path.abspath(data_root), "epochs": int(config["bo_trial_epochs"]),
                       "show_progress": False})
    return {
        "model": model,
        "dataset": subset_name,
        "config_file_list": [os.path.abspath(f) for f in (config_file_list or [])],
        "config_dict": trial_dict,
        "threads": int(config["bo_trial_threads"] or 1),
        "gpus": float(config["bo_trial_gpus"] or 0),
        "users_kept": kept,
    }


@contextlib.contextmanager
def _redirected(log_path):
    """Root logging, stdout and stderr -> ``log_path`` (restored afterwards)."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    with open(log_path, "a", encoding="utf-8") as stream:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        root.handlers = [handler]  # RecBole's init_logger then adds nothing (basicConfig no-op)
        root.setLevel(logging.INFO)
        try:
            with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
                yield
        finally:
            root.handlers, root.level = saved_handlers, saved_level


def train_trial(spec, z, seed, trial_dir):
    """Train ``spec['model']`` with architecture ``z`` on the user subset; returns valid MRR@10."""
    import torch

    from recbole_mixrec.quick_start import run_mixrec

    torch.set_num_threads(int(spec.get("threads", 1)))
    trial_dir = os.path.abspath(trial_dir)
    os.makedirs(trial_dir, exist_ok=True)
    config_dict = dict(spec["config_dict"])
    config_dict.update({
        "architecture": z_to_architecture(z),
        "seed": int(seed),
        "checkpoint_dir": os.path.join(trial_dir, "checkpoints"),
        "save_resume_checkpoint": False,  # the search resumes whole trials (trials.jsonl)
    })
    cwd = os.getcwd()
    os.chdir(trial_dir)  # RecBole's init_logger creates ./log/ files: keep them in the trial dir
    try:
        with _redirected(os.path.join(trial_dir, "trial.log")):
            result = run_mixrec(spec["model"], spec["dataset"], spec["config_file_list"], config_dict, saved=True)
    finally:
        os.chdir(cwd)
    valid = result["best_valid_result"] or {}
    value = float(valid.get("mrr@10", result["best_valid_score"]))
    if not math.isfinite(value):
        raise ValueError(f"trial produced a non-finite valid MRR@10 ({value})")
    with open(os.path.join(trial_dir, "result.json"), "w", encoding="utf-8") as handle:
        json.dump({"architecture": config_dict["architecture"], "seed": int(seed), "valid_mrr@10": value,
                   "best_valid_result": {k: float(v) for k, v in valid.items()},
                   "test_result": {k: float(v) for k, v in (result["test_result"] or {}).items()}}, handle)
    return value


def _remote_trial(spec, z, seed, trial_dir):
    import ray

    import recbole_mixrec  # noqa: F401  registers the plugin in the worker

    context = ray.get_runtime_context()
    # RecBole sets CUDA_VISIBLE_DEVICES from gpu_id: give it the GPUs Ray assigned ("" = CPU)
    gpus = ",".join(str(g) for g in ray.get_gpu_ids())
    spec = dict(spec, config_dict=dict(spec["config_dict"], gpu_id=gpus))
    with open(os.path.join(_made(trial_dir), "ray.json"), "w", encoding="utf-8") as handle:
        json.dump({"node_id": context.get_node_id(), "gcs_address": context.gcs_address, "gpu_ids": gpus}, handle)
    return train_trial(spec, z, seed, trial_dir)


def _made(folder):
    os.makedirs(folder, exist_ok=True)
    return folder


class RayObjective:
    """The BO objective as a Ray task: ``.remote(z, seed, trial_dir)`` -> ObjectRef (a float).
    Each task asks Ray for ``spec['threads']`` CPUs and ``spec['gpus']`` GPUs (``bo_trial_threads``,
    ``bo_trial_gpus``): on a cluster (``bo_ray_address``) Ray places trials where those are free."""

    def __init__(self, spec):
        import ray

        self.spec = spec
        self._task = ray.remote(num_cpus=int(spec.get("threads", 1)), num_gpus=float(spec.get("gpus", 0)),
                                max_retries=0)(_remote_trial)

    def remote(self, z, seed, trial_dir):
        return self._task.remote(self.spec, list(z), int(seed), trial_dir)

    def __call__(self, z, seed, trial_dir):  # same trial, in this process
        return train_trial(self.spec, z, seed, trial_dir)


def init_ray(address=None, num_cpus=2):
    """Start (or connect to) Ray with offline HuggingFace and the plugin's model cache in every
    worker; returns True when this call started Ray (the caller shuts it down)."""
    import ray

    if ray.is_initialized():
        return False
    env = {"HF_HUB_OFFLINE": "1"}
    for key in ("RECBOLE_MIXREC_CACHE", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"):
        if os.environ.get(key):
            env[key] = os.environ[key]
    kwargs = {"address": address} if address else {"num_cpus": int(num_cpus)}
    # workers import recbole_mixrec from the installed package; keep their argv out of RecBole
    ray.init(include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env}, **kwargs)
    return True


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use python -m recbole_mixrec.search")
