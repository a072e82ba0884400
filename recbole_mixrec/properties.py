"""Where the plugin's yaml files live and how they reach a RecBole ``Config``.

RecBole only reads ``properties/model/<Model>.yaml`` from its own package, never a plugin's.
``config_files`` lists our files for ``Config(config_file_list=...)``; ``fill_defaults`` covers
the case where RecBole built the Config itself (``run_recbole(model="MixRec")`` by name).
"""

import logging
import os

import yaml

logger = logging.getLogger(__name__)

PROPERTIES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "properties")


def _existing(*parts):
    path = os.path.join(PROPERTIES_DIR, *parts)
    return path if os.path.isfile(path) else None


def overall_file():
    return _existing("overall.yaml")


def model_file(model):
    return _existing("model", f"{model}.yaml")


def dataset_file(dataset):
    return _existing("dataset", f"{dataset}.yaml")


def config_files(model, dataset, extra=None):
    """The plugin's yaml files for a run, lowest priority first, then the user's ``extra``."""
    from recbole_mixrec.registry import yaml_chain

    files = [overall_file(), dataset_file(dataset)] + [model_file(m) for m in yaml_chain(model)]
    return [f for f in files if f] + list(extra or [])


def read_yaml(path):
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle) or {}


def fill_defaults(config, model):
    """Give every key of the plugin's yaml files that the user did not set its default.

    Keys the user set (files, ``config_dict`` or command line) win; RecBole's own internal
    defaults lose, as they would if our files had been passed in ``config_file_list``.
    """
    # eval_args is normalised while RecBole builds the Config; its sequential-model defaults
    # are already ours (leave-one-out, temporal order, full ranking), so it is left alone
    user_keys = set(config.external_config_dict) | {"eval_args"}
    filled = []
    for path in config_files(model, config["dataset"]):
        for key, value in read_yaml(path).items():
            if key in user_keys:
                continue
            if config.final_config_dict.get(key) != value:
                filled.append(key)
            config[key] = value
            user_keys.add(key)  # the first file that names a key is overridden by later ones
    # MixRec trains with a full softmax over items: no negative sampling. RecBole normalises
    # this key while building the Config, so normalise again after changing it.
    if "train_neg_sample_args" in filled:
        config._set_train_neg_sample_args()
    if filled:
        logger.info("plugin defaults applied for %s: %s", model, ", ".join(sorted(filled)))
