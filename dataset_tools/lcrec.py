"""LC-Rec style json (``<P>.inter.json`` + ``<P>.item.json``) -> interaction/item frames.

``<P>.inter.json`` maps user index -> chronological list of item indices and has no
timestamps, so the timestamp written is the position (0, 1, 2, ...) in the user's list:
RecBole orders each user's history by ``timestamp`` for leave-one-out splitting, and
positions reproduce the published order exactly. Rating is 1.0 (implicit feedback).
"""
import glob
import json
import logging
import os

import pandas as pd

from .errors import DatasetToolError
from .io_utils import decode_text, open_binary
from .text import clean_text

log = logging.getLogger("dataset_tools")


def find_prefix(directory) -> str:
    """Return ``<P>`` for the single ``<P>.inter.json`` in ``directory``."""
    found = sorted(glob.glob(os.path.join(directory, "*.inter.json")))
    if len(found) != 1:
        raise DatasetToolError(f"{directory}: expected exactly one *.inter.json, found {len(found)}")
    return os.path.basename(found[0])[: -len(".inter.json")]


def _load_json(path):
    if not os.path.isfile(path):
        raise DatasetToolError(f"{path}: no such file")
    name = os.path.basename(path)
    with open_binary(path) as handle:
        text = decode_text(handle.read(), name)
    try:
        return json.loads(text)
    except ValueError as exc:
        raise DatasetToolError(f"{name} line {exc.lineno}: not valid JSON ({exc.msg})") from None


def _index(value, name, what):
    try:
        return int(value)
    except (TypeError, ValueError):
        raise DatasetToolError(f"{name}: {what} {value!r} is not an integer index") from None


def _expect(value, kind, name, what):
    # LC-Rec files are one JSON object; a wrong shape would otherwise fail deep inside pandas
    if not isinstance(value, kind):
        raise DatasetToolError(f"{name}: {what} is a {type(value).__name__}, expected a {kind.__name__}")
    return value


def read(directory, prefix=None):
    """Return ``(inter, items)``; categories' comma-separated path becomes space-separated."""
    prefix = prefix or find_prefix(directory)
    inter_name, item_name = f"{prefix}.inter.json", f"{prefix}.item.json"
    sequences = _expect(_load_json(os.path.join(directory, inter_name)), dict, inter_name, "the file")
    rows = [
        (_index(user, inter_name, "user"), _index(item, inter_name, "item"), 1.0, position)
        for user, seq in sequences.items()
        for position, item in enumerate(_expect(seq, list, inter_name, f"user {user}'s sequence"))
    ]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    if inter.empty:
        raise DatasetToolError(f"{inter_name}: no interactions (no user has an item)")
    meta = _expect(_load_json(os.path.join(directory, item_name)), dict, item_name, "the file")
    for item, info in meta.items():
        _expect(info, dict, item_name, f"item {item}'s record")
    items = pd.DataFrame(
        [
            (
                _index(item, item_name, "item"),
                clean_text(info.get("title")),
                clean_text(info.get("brand")),
                clean_text(str(info.get("categories") or "").split(",")),
                clean_text(info.get("description")),
            )
            for item, info in meta.items()
        ],
        columns=["item_id", "title", "brand", "categories", "description"],
    )
    missing = set(inter.item_id) - set(items.item_id)
    if missing:
        raise DatasetToolError(f"{inter_name}: {len(missing)} item indices absent from {item_name}, e.g. {min(missing)}")
    log.info("read %d users, %d interactions, %d items", len(sequences), len(inter), len(items))
    return inter, items
