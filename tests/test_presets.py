"""The shipped presets (properties/quality/, properties/paper/) are settings a run accepts: every
key documented with its type, known, of the right type and range, and item text fields that the
dataset's yaml loads. A preset is only read when a user starts a multi-hour run; these checks
fail here instead."""

import glob
import os

import pytest

from recbole_mixrec import registry  # noqa: F401  (fills PLUGIN_MODELS for specs_for)
from recbole_mixrec.config_checks import check_value, known_keys, specs_for, specs_from_text
from recbole_mixrec.properties import PROPERTIES_DIR, dataset_file, read_yaml

PRESETS = sorted(glob.glob(os.path.join(PROPERTIES_DIR, "quality", "*.yaml"))
                 + glob.glob(os.path.join(PROPERTIES_DIR, "paper", "*.yaml")))
DATASETS = [os.path.basename(p)[:-len(".yaml")] for p in glob.glob(os.path.join(PROPERTIES_DIR, "dataset", "*.yaml"))]


def test_presets_exist():
    names = {os.path.relpath(p, PROPERTIES_DIR) for p in PRESETS}
    assert {"quality/ml-100k.yaml", "quality/amazon-scientific.yaml", "paper/mixrec.yaml"} <= names


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: os.path.relpath(p, PROPERTIES_DIR))
def test_every_preset_key_is_documented_known_and_valid(path):
    specs = specs_for("MixRec")
    settings = read_yaml(path)
    with open(path, encoding="utf-8") as handle:
        documented = specs_from_text(handle.read(), path)  # the keys with a '# (type) ...' comment
    assert set(documented) == set(settings), "every key needs a '# (type) ...' comment"
    for key in settings:
        assert key in known_keys(), f"{key}: not a key RecBole or the plugin knows"
        if key in specs:
            assert check_value(specs[key], settings[key]) is None, f"{key}={settings[key]!r}"


@pytest.mark.parametrize("path", [p for p in PRESETS if os.path.basename(os.path.dirname(p)) == "quality"],
                         ids=os.path.basename)
def test_quality_preset_text_fields_are_loaded_by_its_dataset(path):
    dataset = max((name for name in DATASETS if os.path.basename(path).startswith(name)), key=len)
    loaded = set(read_yaml(dataset_file(dataset))["load_col"]["item"])
    fields = read_yaml(path).get("item_text_fields")
    assert fields is None or set(fields) <= loaded, f"{fields} not all in the item columns {sorted(loaded)}"


def test_ml100k_fulltext_addon_restores_the_datasets_sentence_over_the_titles_preset():
    from recbole_mixrec.quick_start import build_config

    quality = os.path.join(PROPERTIES_DIR, "quality")
    sentence = read_yaml(dataset_file("ml-100k"))["item_text_fields"]
    titles = build_config("MixRec", "ml-100k", [os.path.join(quality, "ml-100k.yaml")])
    assert titles["item_text_fields"] == ["movie_title"] and titles["max_seq_items"] == 20
    full = build_config("MixRec", "ml-100k", [os.path.join(quality, name) for name in ("ml-100k.yaml", "ml-100k-fulltext.yaml")])
    assert full["item_text_fields"] == sentence and full["max_seq_items"] == 20
