"""Writing and reading RecBole atomic files (``<name>.inter`` / ``<name>.item``)."""
import csv
import logging
import os

import pandas as pd

from .errors import DatasetToolError

log = logging.getLogger("dataset_tools")

INTER_COLUMNS = {"user_id": "token", "item_id": "token", "rating": "float", "timestamp": "float"}
ITEM_TEXT_COLUMNS = ("title", "brand", "categories", "description")


def _write(frame: pd.DataFrame, types: dict, path: str):
    """Write ``frame`` as a tab-separated atomic file with a ``field:type`` header.

    Text is already single-line, so the only special character left is '"': pandas quotes
    such fields CSV-style, which RecBole's own ``pd.read_csv`` reads back unchanged.
    """
    frame = frame[list(types)].rename(columns={c: f"{c}:{t}" for c, t in types.items()})
    frame.to_csv(path, sep="\t", index=False, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)


def write_atomic(inter: pd.DataFrame, items: pd.DataFrame, out_root: str, name: str, text_columns):
    """Write ``<out_root>/<name>/<name>.inter`` and ``.item``; return the dataset directory.

    ``inter`` needs user_id, item_id, rating, timestamp; ``items`` needs item_id and
    ``text_columns`` (a subset of ITEM_TEXT_COLUMNS, in output order). Exactly the items
    occurring in ``inter`` are written, sorted by item id.
    """
    directory = os.path.join(out_root, name)
    os.makedirs(directory, exist_ok=True)
    _write(inter, INTER_COLUMNS, os.path.join(directory, f"{name}.inter"))
    items = items[items.item_id.isin(inter.item_id)].drop_duplicates("item_id")
    # An interacted item without a text record still gets a row, with empty text.
    missing = sorted(set(inter.item_id) - set(items.item_id))
    if missing:
        log.warning("%d interacted items have no text record; writing empty text", len(missing))
        items = pd.concat([items, pd.DataFrame({"item_id": missing})])
    items = items.fillna("").sort_values("item_id", kind="mergesort")
    _write(items, {"item_id": "token", **{c: "token_seq" for c in text_columns}}, os.path.join(directory, f"{name}.item"))
    log.info("wrote %s/%s.inter and %s.item", directory, name, name)
    return directory


def stats(inter: pd.DataFrame) -> dict:
    """Table-1 statistics of an interaction frame."""
    users, items = inter.user_id.nunique(), inter.item_id.nunique()
    return {"users": users, "items": items, "inter": len(inter), "avg": len(inter) / users if users else 0.0}


def stats_line(name: str, inter: pd.DataFrame) -> str:
    """``name  #users U  #items I  #inter N  avg_items_per_user A`` (paper Table 1 columns)."""
    s = stats(inter)
    return f"{name}  #users {s['users']}  #items {s['items']}  #inter {s['inter']}  avg_items_per_user {s['avg']:.2f}"


def read_inter(directory: str, name: str = None) -> pd.DataFrame:
    """Read the user/item columns of an atomic ``.inter`` file the way RecBole parses it."""
    name = name or os.path.basename(os.path.normpath(directory))
    path = os.path.join(directory, f"{name}.inter")
    if not os.path.isfile(path):
        raise DatasetToolError(f"{path}: no such file")
    with open(path, encoding="utf-8") as handle:
        header = handle.readline().rstrip("\n").split("\t")
    fields = {h.split(":")[0]: h for h in header}
    if "user_id" not in fields or "item_id" not in fields:
        raise DatasetToolError(f"{path} line 1: header lacks user_id/item_id ({' '.join(header)})")
    frame = pd.read_csv(path, sep="\t", usecols=[fields["user_id"], fields["item_id"]], dtype=str, keep_default_na=False)
    return frame.rename(columns={fields["user_id"]: "user_id", fields["item_id"]: "item_id"})
