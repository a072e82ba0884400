"""Amazon Review Data 2018 raw files -> RecBole atomic files.

Interactions come from the reviews file (``<Cat>_5.json.gz`` or ``<Cat>.json.gz``: one
object per line with reviewerID, asin, overall, unixReviewTime) or from the ratings-only
CSV ``<Cat>.csv`` (no header; column order item,user,rating,timestamp by default).
Item text comes from ``meta_<Cat>.json.gz`` (title, brand, category list, description list).
"""
import csv
import logging
import os

import pandas as pd

from . import filters
from .errors import DatasetToolError
from .io_utils import iter_lines, iter_records
from .text import clean_text

log = logging.getLogger("dataset_tools")

REVIEW_KEYS = {"reviewerID": "user_id", "asin": "item_id", "overall": "rating", "unixReviewTime": "timestamp"}
RATINGS_COLUMNS = ("item", "user", "rating", "timestamp")  # order of the published 2018 CSVs


def _number(value, name, number, key):
    try:
        return float(value)
    except (TypeError, ValueError):
        raise DatasetToolError(f"{name} line {number}: {key} is not a number ({value!r})") from None


def read_reviews(path) -> pd.DataFrame:
    """Read a reviews json-lines file into user_id, item_id, rating, timestamp."""
    name, rows = os.path.basename(path), []
    for number, record in iter_records(path, "reviews"):
        missing = [k for k in REVIEW_KEYS if k not in record]
        if missing:
            raise DatasetToolError(f"{name} line {number}: missing key {missing[0]!r}")
        rows.append((
            str(record["reviewerID"]),
            str(record["asin"]),
            _number(record["overall"], name, number, "overall"),
            int(_number(record["unixReviewTime"], name, number, "unixReviewTime")),
        ))
    return pd.DataFrame(rows, columns=list(REVIEW_KEYS.values()))


def check_ratings_columns(columns):
    """``columns`` must name each of item, user, rating, timestamp once; say which one is off."""
    expected = ",".join(RATINGS_COLUMNS)
    unknown = [c for c in columns if c not in RATINGS_COLUMNS]
    if unknown:
        raise DatasetToolError(f"--ratings-columns: unknown column {unknown[0]!r} (expected an order of {expected})")
    if sorted(columns) != sorted(RATINGS_COLUMNS):
        raise DatasetToolError(f"--ratings-columns must order {expected}, got {','.join(columns)}")


def read_ratings(path, columns=RATINGS_COLUMNS) -> pd.DataFrame:
    """Read a header-less ratings CSV whose columns are named by ``columns``.

    ``columns`` must be a permutation of item, user, rating, timestamp.
    """
    check_ratings_columns(columns)
    name, rows = os.path.basename(path), []
    for number, line in iter_lines(path, "ratings"):
        fields = next(csv.reader([line]))
        if len(fields) != len(columns):
            raise DatasetToolError(f"{name} line {number}: expected {len(columns)} comma-separated fields, got {len(fields)}")
        row = dict(zip(columns, fields))
        rows.append((
            row["user"],
            row["item"],
            _number(row["rating"], name, number, "rating"),
            int(_number(row["timestamp"], name, number, "timestamp")),
        ))
    return pd.DataFrame(rows, columns=list(REVIEW_KEYS.values()))


def read_meta(path, wanted_items=None) -> pd.DataFrame:
    """Read item text from a meta file: item_id, title, brand, categories, description.

    Only asins in ``wanted_items`` are kept (saves memory on the full meta files); for an
    asin listed twice the first record wins.
    """
    name, rows, seen, repeated = os.path.basename(path), [], set(), 0
    for number, record in iter_records(path, "meta"):
        if "asin" not in record:
            raise DatasetToolError(f"{name} line {number}: missing key 'asin'")
        asin = str(record["asin"])
        if wanted_items is not None and asin not in wanted_items:
            continue
        if asin in seen:
            repeated += 1
            continue
        seen.add(asin)
        rows.append((
            asin,
            clean_text(record.get("title")),
            clean_text(record.get("brand")),
            # 2018 uses "category"; older dumps and LC-Rec use "categories".
            clean_text(record.get("category", record.get("categories"))),
            clean_text(record.get("description")),
        ))
    if repeated:
        log.info("%s: %d repeated meta records of an asin ignored (the first one is kept)", name, repeated)
    return pd.DataFrame(rows, columns=["item_id", "title", "brand", "categories", "description"])


def convert(meta, reviews=None, ratings=None, ratings_columns=RATINGS_COLUMNS, drop_untitled=True,
            min_item=4, min_user=3, k=0, dedup=True):
    """Load and filter one category; return ``(inter, items)`` frames ready to write."""
    if (reviews is None) == (ratings is None):
        raise DatasetToolError("give exactly one of a reviews file or a ratings CSV")
    inter = read_reviews(reviews) if reviews else read_ratings(ratings, ratings_columns)
    if inter.empty:
        raise DatasetToolError(f"{os.path.basename(reviews or ratings)}: no interactions")
    log.info("read %d interactions, %d users, %d items", len(inter), inter.user_id.nunique(), inter.item_id.nunique())
    items = read_meta(meta, set(inter.item_id))
    without_meta = inter.item_id.nunique() - len(items)
    log.info("read metadata of %d interacted items (%d interacted items have no meta record: "
             "they count as items without a title)", len(items), without_meta)
    titled = set(items.item_id[items.title != ""]) if drop_untitled else None
    inter = filters.apply_filters(inter, titled, min_item, min_user, k, dedup)
    return inter, items
