"""Header-ed CSV pair (``interactions.csv.gz`` + ``items.csv.gz``) -> interaction/item frames.

interactions: user_id,item_id,timestamp[,rating]; items: item_id,title[,brand,categories,
description]. Without a rating column every rating is 1.0 (implicit feedback), so the
``.inter`` header is the same as for the other converters.
"""
import logging
import os
import re

import pandas as pd

from .errors import DatasetToolError
from .io_utils import check_utf8
from .text import clean_text

log = logging.getLogger("dataset_tools")

TEXT_COLUMNS = ("title", "brand", "categories", "description")


def _parser_error(name, exc):
    """pandas' 'Expected 3 fields in line 7, saw 4' as a file/line message."""
    found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
    if found:
        expected, number, saw = found.groups()
        return DatasetToolError(f"{name} line {number}: expected {expected} comma-separated fields, got {saw}")
    return DatasetToolError(f"{name}: unreadable CSV ({exc})".replace("\n", " ").strip())


def _read_csv(path, required):
    if not os.path.isfile(path):
        raise DatasetToolError(f"{path}: no such file")
    name = os.path.basename(path)
    try:
        # keep_default_na=False: a title such as "NA" or "None" stays text.
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except UnicodeDecodeError:
        check_utf8(path)  # pandas decodes in chunks: find the line itself
        raise DatasetToolError(f"{name}: not UTF-8") from None
    except pd.errors.ParserError as exc:
        raise _parser_error(name, exc) from None
    except (ValueError, OSError, EOFError) as exc:
        raise DatasetToolError(f"{name}: unreadable CSV ({exc})".replace("\n", " ").strip()) from None
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DatasetToolError(f"{name} line 1: missing column {missing[0]!r}")
    return frame


def _numbers(frame, column, name):
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = values.isna()
    if bad.any():
        row = int(bad.idxmax())
        # +2: 1-based line numbers and the header line.
        raise DatasetToolError(f"{name} line {row + 2}: {column} is not a number ({frame[column][row]!r})")
    return values


def read(directory, inter_file="interactions.csv.gz", item_file="items.csv.gz"):
    """Return ``(inter, items, text_columns)``; ids are kept as integers when all are digits."""
    inter = _read_csv(os.path.join(directory, inter_file), ["user_id", "item_id", "timestamp"])
    if inter.empty:
        raise DatasetToolError(f"{inter_file}: no interactions (only a header)")
    inter["timestamp"] = _numbers(inter, "timestamp", inter_file).astype("int64")
    inter["rating"] = _numbers(inter, "rating", inter_file) if "rating" in inter else 1.0
    items = _read_csv(os.path.join(directory, item_file), ["item_id", "title"])
    text_columns = [c for c in TEXT_COLUMNS if c in items.columns]
    for column in text_columns:
        items[column] = items[column].map(clean_text)
    # Numeric ids sort numerically (readable, deterministic); other ids stay strings.
    for frame in (inter, items):
        for column in ("user_id", "item_id"):
            if column in frame and frame[column].str.fullmatch(r"\d+").all():
                frame[column] = frame[column].astype("int64")
    log.info("read %d interactions, %d users, %d items with text",
             len(inter), inter.user_id.nunique(), len(items))
    interacted = items[items.item_id.isin(inter.item_id)]
    log.info("%d interacted items have an empty title, %d are missing from %s",
             int((interacted.title == "").sum()), inter.item_id.nunique() - interacted.item_id.nunique(), item_file)
    return inter, items[["item_id", *text_columns]], text_columns
