"""Writing and reading RecBole atomic files (``<name>.inter`` / ``<name>.item``)."""
import csv
import logging
import os

import pandas as pd

from .errors import DatasetToolError
from .io_utils import iter_raw_lines

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


def check_output(out_root: str, name: str) -> str:
    """Fail early, before a long conversion, when ``<out_root>/<name>`` cannot be created or
    written; return that directory. Creates nothing."""
    directory = os.path.join(out_root, name)
    existing = os.path.abspath(directory)
    while not os.path.exists(existing):  # the nearest folder that already exists decides
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise DatasetToolError(f"cannot write {directory}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise DatasetToolError(f"cannot write {directory}: {existing} is read-only")
    return directory


def _check_written(path, target, min_lines):
    """A written temporary file must hold at least ``min_lines`` lines before it replaces ``target``."""
    with open(path, encoding="utf-8") as handle:
        lines = sum(1 for _ in zip(range(min_lines), handle))
    if lines < min_lines:
        raise DatasetToolError(f"{target}: wrote only {lines} lines, expected at least {min_lines}; not replaced")


def write_all(directory: str, writers: dict):
    """Write every file of ``writers`` ({file name: (write(path), minimum line count)}) under a
    temporary name in ``directory``, check it, and only then move them all into place.

    A failure or interrupt before the moves leaves the files already in ``directory`` byte
    for byte as they were (the temporary files are removed); ``os.replace`` within one folder
    does not fail once the temporary files could be written there.
    """
    temps = {}
    try:
        os.makedirs(directory, exist_ok=True)
        for filename, (write, min_lines) in writers.items():
            temps[filename] = os.path.join(directory, f".{filename}.{os.getpid()}.tmp")
            write(temps[filename])
            _check_written(temps[filename], filename, min_lines)
        targets = {f: os.path.join(directory, f) for f in writers}
        blocked = [t for t in targets.values() if os.path.isdir(t)]
        if blocked:
            raise DatasetToolError(f"cannot write {blocked[0]}: it is a directory")
        for filename, temp in temps.items():
            os.replace(temp, targets[filename])
    except OSError as exc:
        raise DatasetToolError(f"cannot write {directory}: {exc.strerror or exc}") from None
    finally:
        for temp in temps.values():
            if os.path.exists(temp):
                os.remove(temp)


def _items_to_write(inter: pd.DataFrame, items: pd.DataFrame) -> pd.DataFrame:
    """Exactly the items occurring in ``inter``, sorted by item id."""
    items = items[items.item_id.isin(inter.item_id)].drop_duplicates("item_id")
    # An interacted item without a text record still gets a row, with empty text.
    missing = sorted(set(inter.item_id) - set(items.item_id))
    if missing:
        log.warning("%d interacted items have no text record; writing empty text", len(missing))
        items = pd.concat([items, pd.DataFrame({"item_id": missing})])
    return items.fillna("").sort_values("item_id", kind="mergesort")


def _write_text(text: str, path: str):
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def write_atomic(inter: pd.DataFrame, items: pd.DataFrame, out_root: str, name: str, text_columns, extra=None):
    """Write ``<out_root>/<name>/<name>.inter`` and ``.item`` (and ``extra``: {file name: text},
    e.g. a ``<name>.yaml``) all or nothing; return the dataset directory.

    ``inter`` needs user_id, item_id, rating, timestamp; ``items`` needs item_id and
    ``text_columns`` (a subset of ITEM_TEXT_COLUMNS, in output order). Exactly the items
    occurring in ``inter`` are written, sorted by item id. An empty ``inter`` is an error:
    header-only files must never replace a dataset.
    """
    directory = os.path.join(out_root, name)
    if inter.empty:
        raise DatasetToolError(f"no interactions to write; {directory} left as it was")
    items = _items_to_write(inter, items)
    item_types = {"item_id": "token", **{c: "token_seq" for c in text_columns}}
    writers = {
        f"{name}.inter": (lambda path: _write(inter, INTER_COLUMNS, path), 2),  # header + rows
        f"{name}.item": (lambda path: _write(items, item_types, path), 2),
        **{filename: (lambda path, text=text: _write_text(text, path), 1) for filename, text in (extra or {}).items()},
    }
    write_all(directory, writers)
    log.info("wrote %s/%s", directory, ", ".join(writers))
    return directory


def stats(inter: pd.DataFrame) -> dict:
    """Table-1 statistics of an interaction frame."""
    users, items = inter.user_id.nunique(), inter.item_id.nunique()
    return {"users": users, "items": items, "inter": len(inter), "avg": len(inter) / users if users else 0.0}


def stats_line(name: str, inter: pd.DataFrame) -> str:
    """``name  #users U  #items I  #inter N  avg_items_per_user A`` (paper Table 1 columns)."""
    s = stats(inter)
    return f"{name}  #users {s['users']}  #items {s['items']}  #inter {s['inter']}  avg_items_per_user {s['avg']:.2f}"


RECBOLE_TYPES = ("token", "token_seq", "float", "float_seq")


def _parse_header(path, line):
    """Column names of an atomic header line; raises unless each field is ``name:type``."""
    fields = line.split("\t")
    for field in fields:
        column, _, kind = field.partition(":")
        if not column or kind not in RECBOLE_TYPES:
            raise DatasetToolError(f"{path} line 1: bad header field {field!r} "
                                   f"(expected name:type, type one of {', '.join(RECBOLE_TYPES)})")
    columns = [f.partition(":")[0] for f in fields]
    if "user_id" not in columns or "item_id" not in columns:
        raise DatasetToolError(f"{path} line 1: header lacks user_id/item_id ({' '.join(fields)})")
    return columns, [i for i, f in enumerate(fields) if f.endswith(":float")]


def _is_number(value):
    try:
        float(value)
        return True
    except ValueError:
        return False


def _check_row(path, number, values, columns, floats):
    """One data row must have a value per header field and numbers in its float fields."""
    if len(values) != len(columns):
        raise DatasetToolError(f"{path} line {number}: expected {len(columns)} tab-separated fields, got {len(values)}")
    for i in floats:
        if values[i] and not _is_number(values[i]):  # empty is allowed: RecBole reads it as NaN
            raise DatasetToolError(f"{path} line {number}: {columns[i]} is not a number ({values[i]!r})")


def read_inter(directory: str, name: str = None) -> pd.DataFrame:
    """Read the user/item columns of an atomic ``.inter`` file, checking every row the way
    RecBole will need it (a field per header column, numbers in float columns)."""
    name = name or os.path.basename(os.path.normpath(directory))
    path = os.path.join(directory, f"{name}.inter")
    if not os.path.isfile(path):
        raise DatasetToolError(f"{path}: no such file")
    lines = iter_raw_lines(path, name)
    header = next(lines, (1, ""))[1]
    if not header.strip():
        raise DatasetToolError(f"{path} line 1: empty, expected a name:type header")
    columns, floats = _parse_header(path, header)
    user, item, rows = columns.index("user_id"), columns.index("item_id"), []
    for number, line in lines:
        if not line.strip():
            continue  # RecBole's reader skips blank lines too
        values = line.split("\t")
        _check_row(path, number, values, columns, floats)
        rows.append((values[user], values[item]))
    return pd.DataFrame(rows, columns=["user_id", "item_id"], dtype=str)
