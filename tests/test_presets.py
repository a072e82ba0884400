"""The shipped presets (properties/quality/, properties/paper/) are settings a run accepts: every
key documented with its type, known, of the right type and range, and item text fields that the
dataset's yaml loads. A preset is only read when a user starts a multi-hour run; these checks
fail here instead."""

import glob
import os

import pytest
import yaml

from recbole_mixrec import registry  # noqa: F401  (fills PLUGIN_MODELS for specs_for)
from recbole_mixrec.config_checks import _COMMENT, check_value, known_keys, specs_for
from recbole_mixrec.properties import PROPERTIES_DIR, dataset_file

PRESETS = sorted(glob.glob(os.path.join(PROPERTIES_DIR, "quality", "*.yaml"))
                 + glob.glob(os.path.join(PROPERTIES_DIR, "paper", "*.yaml")))


def _key_lines(path):
    with open(path, encoding="utf-8") as handle:
        return [line for line in handle if line[:1] not in ("", " ", "#", "\t", "\n") and ":" in line]


def test_presets_exist():
    names = {os.path.relpath(p, PROPERTIES_DIR) for p in PRESETS}
    assert {"quality/ml-100k.yaml", "quality/amazon-scientific.yaml", "paper/mixrec.yaml"} <= names


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: os.path.relpath(p, PROPERTIES_DIR))
def test_every_preset_key_is_documented_known_and_valid(path):
    specs = specs_for("MixRec")
    with open(path, encoding="utf-8") as handle:
        settings = yaml.safe_load(handle) or {}
    lines = _key_lines(path)
    assert len(lines) == len(settings), "one line per top-level key"
    for line in lines:
        key = line.partition(":")[0].strip()
        assert _COMMENT.search(line), f"{key}: no '# (type) ...' comment"
        assert key in known_keys(), f"{key}: not a key RecBole or the plugin knows"
        if key in specs:
            assert check_value(specs[key], settings[key]) is None, f"{key}={settings[key]!r}"


@pytest.mark.parametrize("path", [p for p in PRESETS if os.path.basename(os.path.dirname(p)) == "quality"],
                         ids=os.path.basename)
def test_quality_preset_text_fields_are_loaded_by_its_dataset(path):
    dataset = next(name for name in ("ml-100k", "amazon-scientific") if os.path.basename(path).startswith(name))
    with open(dataset_file(dataset), encoding="utf-8") as handle:
        loaded = set(yaml.safe_load(handle)["load_col"]["item"])
    with open(path, encoding="utf-8") as handle:
        fields = (yaml.safe_load(handle) or {}).get("item_text_fields")
    assert fields is None or set(fields) <= loaded, f"{fields} not all in the item columns {sorted(loaded)}"
