"""``run_search``: the architecture search as one call (used by ``python -m
recbole_mixrec.search`` and by ``run_recbole_mixrec.py --search=bo``)."""

import logging
import os

from recbole_mixrec.errors import MixRecError
from recbole_mixrec.properties import PROPERTIES_DIR

logger = logging.getLogger(__name__)

SEARCH_YAML = os.path.join(PROPERTIES_DIR, "search.yaml")


def search_config(model, dataset, config_file_list=None, config_dict=None):
    """The RecBole Config of the search: the plugin's files, ``properties/search.yaml``, the
    user's files, then ``config_dict``."""
    from recbole_mixrec.quick_start import build_config

    return build_config(model, dataset, [SEARCH_YAML] + list(config_file_list or []), config_dict)


def run_search(model, dataset, config_file_list=None, config_dict=None, search_dir=None, objective=None):
    """Search MixRec's DAMoE architecture (spec section 3.4) and return
    ``(best_architecture, results)``.

    ``results``: dict with ``records`` (every trial of the JSONL log), ``best`` (the best
    record), ``random_records`` (random search, if ``bo_random_baseline``), ``search_dir`` and
    the output files ``best_architecture_file``, ``summary_md``, ``summary_csv``, ``plot``.
    ``objective`` replaces the real Ray trials (a callable or Ray task ``(z, seed, trial_dir)``).
    Re-running with the same ``search_dir`` resumes from its ``trials.jsonl``; the directory
    is tied to the data and settings it was made for (``<search_dir>/search.json``,
    ``checks.py``): other data or settings are a ``MixRecError``, raised, like every other bad
    input, before anything is written.
    """
    import torch

    from recbole_mixrec.fingerprint import dataset_files, dataset_fingerprint
    from recbole_mixrec.search.bo import TrialLog, best_record, bo_loop, write_best_architecture, write_summary
    from recbole_mixrec.search.checks import check_manifest, check_search_dir, search_options, write_manifest
    from recbole_mixrec.search.space import search_dimension
    from recbole_mixrec.search.trials import RayObjective, init_ray, prepare_trial_spec

    # every check first: nothing is written, no subset built, no Ray started on bad input
    config = search_config(model, dataset, config_file_list, config_dict)
    options = search_options(config)
    d = search_dimension(config)
    if d == 0:
        raise MixRecError("no DAMoE layer to search: check backbone_layers and replace_freq")
    if objective is None and not os.path.isfile(os.path.join(config["data_path"], f"{dataset}.inter")):
        raise MixRecError(f"the search trains on {dataset}.inter, not found in {config['data_path']}: "
                          "check dataset and data_path")
    search_dir = os.path.abspath(str(search_dir or config["bo_search_dir"]
                                     or os.path.join("saved", "search", f"{model}-{dataset}")))
    check_search_dir(search_dir)
    fingerprint = dataset_fingerprint(config) if dataset_files(config) else None
    manifest = check_manifest(search_dir, config, fingerprint)
    logs = {name: os.path.join(search_dir, name) for name in ("trials.jsonl", "random_trials.jsonl")}
    for path in logs.values():
        TrialLog(path, d)  # a line that is not a trial record: refused here, before any work
    write_manifest(search_dir, manifest)

    torch.set_num_threads(max(1, int(config["bo_trial_threads"] or 1)))
    started_ray = False
    if objective is None:
        spec = prepare_trial_spec(model, dataset, config, search_dir, config_file_list, config_dict,
                                  fingerprint=fingerprint)
        logger.info("BO subset: %d users of %s in %s", spec["users_kept"], dataset, spec["config_dict"]["data_path"])
        started_ray = init_ray(config["bo_ray_address"], config["bo_num_cpus"])
        objective = RayObjective(spec)
    try:
        records = bo_loop(objective, d, log_path=logs["trials.jsonl"],
                          trial_root=os.path.join(search_dir, "trials"), method="bo", **options)
        random_records = None
        if config["bo_random_baseline"]:
            random_records = bo_loop(objective, d, log_path=logs["random_trials.jsonl"],
                                     trial_root=os.path.join(search_dir, "random_trials"), method="random", **options)
    finally:
        if started_ray:
            import ray

            ray.shutdown()
    best = best_record(records)
    if best is None:
        raise MixRecError(f"every trial failed; see {search_dir}/trials.jsonl")
    results = {"records": records, "best": best, "random_records": random_records, "search_dir": search_dir,
               "best_architecture_file": os.path.join(search_dir, "best_architecture.yaml"),
               "summary_md": os.path.join(search_dir, "summary.md"),
               "summary_csv": os.path.join(search_dir, "summary.csv"),
               "plot": os.path.join(search_dir, "best_so_far.png")}
    write_best_architecture(results["best_architecture_file"], best, f" ({model} on {dataset})")
    write_summary(search_dir, records, random_records)
    return best["architecture"], results
