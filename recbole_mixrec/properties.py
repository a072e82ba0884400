"""Where the plugin's yaml files live and how they reach a RecBole ``Config``.

RecBole only reads ``properties/model/<Model>.yaml`` from its own package, never a plugin's.
``config_files`` lists our files for ``Config(config_file_list=...)``; ``fill_defaults`` covers
the case where RecBole built the Config itself (``run_recbole(model="MixRec")`` by name).
``PLUGIN_MODELS`` (filled by ``registry.register_model``) lives here, with the rule it drives
(``yaml_chain``), so that this module never imports the registry.
"""

import logging
import os

import yaml

from recbole_mixrec.errors import MixRecError

logger = logging.getLogger(__name__)

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
# an installed wheel carries a copy inside the package (setup.py); a source checkout or an
# editable install reads the repository's top-level properties/
PROPERTIES_DIR = next(
    (path for path in (os.path.join(_PACKAGE_DIR, "properties"),
                       os.path.join(os.path.dirname(_PACKAGE_DIR), "properties"))
     if os.path.isfile(os.path.join(path, "overall.yaml"))),
    os.path.join(os.path.dirname(_PACKAGE_DIR), "properties"),
)

PLUGIN_MODELS = {}  # name -> (model class, dataset class, trainer class); registry fills it


class MissingPropertiesError(MixRecError):
    """A yaml file of the plugin's own defaults is missing: a broken install, not user input."""


def _existing(*parts):
    path = os.path.join(PROPERTIES_DIR, *parts)
    return path if os.path.isfile(path) else None


def _required(*parts):
    path = _existing(*parts)
    if path is None:
        raise MissingPropertiesError(
            f"the plugin's default file {os.path.join(PROPERTIES_DIR, *parts)} is missing: "
            "reinstall recbole_mixrec (pip install .) or run from a full checkout"
        )
    return path


def overall_file():
    return _required("overall.yaml")


def model_file(model):
    """The yaml of a plugin model (required); RecBole's own models have none (None)."""
    if model in PLUGIN_MODELS:
        return _required("model", f"{model}.yaml")
    return _existing("model", f"{model}.yaml")


def dataset_file(dataset):
    return _existing("dataset", f"{dataset}.yaml")


def config_files(model, dataset, extra=None):
    """The plugin's yaml files for a run, lowest priority first, then the user's ``extra``."""
    files = [overall_file(), dataset_file(dataset)] + [model_file(m) for m in yaml_chain(model)]
    return [f for f in files if f] + list(extra or [])


def yaml_chain(model):
    """Model names whose ``properties/model/<name>.yaml`` apply, base class first
    (a variant of MixRec reads MixRec.yaml, then its own)."""
    if model not in PLUGIN_MODELS:
        return [model]
    model_class = PLUGIN_MODELS[model][0]
    return [c.__name__ for c in reversed(model_class.__mro__) if c.__name__ in PLUGIN_MODELS]


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
        # a Config built without the plugin's files (run_recbole by name): check it here, where
        # it first reaches the plugin; unknown keys only warn (other tools may share the dict)
        from recbole_mixrec.config_checks import check_settings

        check_settings(config, model, config.external_config_dict, strict=False)
