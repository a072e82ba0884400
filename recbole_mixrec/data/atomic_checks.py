"""Content checks of a dataset's atomic files before RecBole reads them.

RecBole fills an empty float with the column mean (a missing timestamp silently moves an
interaction within its user's history), drops interactions whose item has no ``.item`` row,
and keeps the last of two rows with one item id, all without a word. The fields every run
needs (user, item and, under a temporal split, time) must be well-formed: a bad row is an
error naming the file and the line. What RecBole may legitimately fill or drop is counted in
the log. All of it runs before the dataset, any mining or the model is built.
"""

import codecs
import logging
import os

import numpy as np
import pandas as pd

from recbole_mixrec.errors import MixRecError

logger = logging.getLogger(__name__)

# interactions a user needs for each leave-one-out split: one to train on plus the held-out ones
_SPLIT_MIN_INTERACTIONS = {"valid_and_test": 3, "valid_only": 2, "test_only": 2}


def _bad_byte_line(path, encoding):
    """1-based line of the first line that does not decode, and the decode error."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            try:
                raw.decode(encoding)
            except UnicodeDecodeError as err:
                return number, err
    return None, None


def _check_encoding(path, encoding):
    """The whole file decodes (pandas only decodes the columns it keeps)."""
    decoder = codecs.getincrementaldecoder(encoding)()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                decoder.decode(block)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        number, err = _bad_byte_line(path, encoding)
        raise MixRecError(f"{path} line {number}: not {encoding} text ({err.reason}: byte "
                          f"{err.object[err.start:err.start + 1]!r})") from None


def read_atomic(path, config, fields=None):
    """The ``fields`` of an atomic file (those its header has; None: all, which also checks
    every row's field count) as a DataFrame of strings, read the way RecBole reads it (its
    separator, quoting, encoding), or a one-line error naming the file and line."""
    separator, encoding = config["field_separator"] or "\t", config["encoding"] or "utf-8"
    _check_encoding(path, encoding)
    header = header_fields(path, separator)
    wanted = None if fields is None else [column for column in header if column.partition(":")[0] in fields]
    try:
        frame = pd.read_csv(path, sep=separator, dtype=str, keep_default_na=False, encoding=encoding,
                            index_col=False, usecols=wanted,
                            engine="c" if len(separator) == 1 else "python")
    except pd.errors.ParserError as err:  # e.g. "Expected 4 fields in line 7, saw 5"
        raise MixRecError(f"{path}: malformed row ({str(err).strip().splitlines()[-1]}); fields are "
                          f"separated by {separator!r}") from None
    except pd.errors.EmptyDataError:
        raise MixRecError(f"{path} is empty: an atomic file starts with a 'name:type' header line") from None
    frame.columns = [str(column).partition(":")[0] for column in frame.columns]
    return frame.fillna("")  # a row with too few fields: the missing ones are empty


def header_fields(path, separator="\t"):
    """The ``name:type`` columns of an atomic file's header line."""
    # bad bytes further down are reported by read_atomic, with their line
    with open(path, encoding="utf-8", errors="replace") as handle:
        line = handle.readline()
    if not line.strip():
        raise MixRecError(f"{path} is empty: an atomic file starts with a 'name:type' header line")
    return line.rstrip("\r\n").split(separator)


def _first_bad(frame, column, bad):
    """File line (header = 1) of the first row where ``bad`` is true, and its value."""
    rows = np.flatnonzero(bad.to_numpy())
    return (int(rows[0]) + 2, frame[column].iloc[rows[0]]) if len(rows) else (None, None)


def _require_filled(path, frame, field, what):
    if field not in frame:
        return
    line, _ = _first_bad(frame, field, frame[field].str.strip() == "")
    if line is not None:
        count = int((frame[field].str.strip() == "").sum())
        raise MixRecError(f"{path} line {line}: empty {what} field '{field}' ({count} such rows); every "
                          "interaction needs one")


def _require_numbers(path, frame, field, what):
    if field not in frame:
        return
    numbers = pd.to_numeric(frame[field], errors="coerce")
    line, value = _first_bad(frame, field, numbers.isna() | ~np.isfinite(numbers.fillna(0)))
    if line is not None:
        raise MixRecError(f"{path} line {line}: {what} field '{field}' is {value!r}, not a number")


def _float_columns(path, separator):
    return [c.partition(":")[0] for c in header_fields(path, separator) if c.partition(":")[2] == "float"]


def check_interactions(config, inter_path):
    """Required fields filled and numeric where they must be; enough users for the split.
    Returns the interactions (strings) for the item checks."""
    uid, iid, time = config["USER_ID_FIELD"], config["ITEM_ID_FIELD"], config["TIME_FIELD"]
    floats = _float_columns(inter_path, config["field_separator"] or "\t")
    frame = read_atomic(inter_path, config)
    _require_filled(inter_path, frame, uid, "user")
    _require_filled(inter_path, frame, iid, "item")
    if (config["eval_args"] or {}).get("order") == "TO":
        _require_filled(inter_path, frame, time, "time")
        _require_numbers(inter_path, frame, time, "time")
    for column in floats:
        empty = int((frame[column].str.strip() == "").sum()) if column in frame else 0
        if empty and column != time:
            logger.warning("%s: %d empty values of the float field '%s' (RecBole fills them with the column mean)",
                           inter_path, empty, column)
    split = ((config["eval_args"] or {}).get("split") or {}).get("LS")
    needed = _SPLIT_MIN_INTERACTIONS.get(split)
    if needed and uid in frame:
        counts = frame[uid].value_counts()
        short = int((counts < needed).sum())
        if short == len(counts):
            raise MixRecError(f"{inter_path}: no user has the {needed} interactions the leave-one-out split "
                              f"'{split}' needs (most: {int(counts.max()) if len(counts) else 0}); nothing to "
                              "train and evaluate on")
        if short:
            logger.warning("%s: %d of %d users have fewer than %d interactions (they get no %s sample)",
                           inter_path, short, len(counts), needed, split.replace("_", " "))
    return frame


def check_items(config, item_path, interactions, needs_text):
    """Unique item ids; interactions whose item has no row counted (or refused where the model
    reads item text and ``item_text_missing`` is 'error')."""
    iid = config["ITEM_ID_FIELD"]
    frame = read_atomic(item_path, config, {iid})  # item text can be large: the id column only
    if iid not in frame:
        return
    _require_filled(item_path, frame, iid, "item")
    duplicated = frame[iid].duplicated(keep=False)
    if duplicated.any():
        rows = np.flatnonzero(duplicated.to_numpy())
        first = frame[iid].iloc[rows[0]]
        lines = [int(r) + 2 for r in rows if frame[iid].iloc[r] == first][:2]
        raise MixRecError(f"{item_path} lines {lines[0]} and {lines[1]}: item id '{first}' appears twice "
                          f"({int(frame[iid].duplicated().sum())} repeated ids); RecBole would keep one row only")
    if interactions is None or iid not in interactions:
        return
    missing = ~interactions[iid].isin(set(frame[iid]))
    if not missing.any():
        return
    count, items = int(missing.sum()), int(interactions[iid][missing].nunique())
    drop = config["filter_inter_by_user_or_item"] is True
    message = (f"{count} of {len(interactions)} interactions ({items} items) have no row in {item_path}")
    if needs_text and config["item_text_missing"] == "error":
        raise MixRecError(f"{message}: with item_text_missing: error every item needs text; add the rows, or "
                          "set item_text_missing: keep")
    logger.warning("%s; %s", message, "RecBole drops them (filter_inter_by_user_or_item: True; False keeps them "
                   "with empty item features)" if drop else "kept with empty item features")


def check_dataset_content(config, inter_path, needs_text):
    """Every content check of the files RecBole is about to load."""
    interactions = check_interactions(config, inter_path)
    load_col = config["load_col"]
    item_path = os.path.join(config["data_path"], f"{config['dataset']}.item")
    if os.path.isfile(item_path) and (load_col is None or "item" in load_col):
        check_items(config, item_path, interactions, needs_text)
