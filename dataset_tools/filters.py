"""Interaction filters; each one logs what it removed.

All functions take and return a DataFrame with at least ``user_id``, ``item_id`` and
``timestamp`` columns and never modify their input.
"""
import logging

import pandas as pd

from .errors import DatasetToolError

log = logging.getLogger("dataset_tools")


def _log_step(step, before, after):
    """Log how many users/items/interactions ``step`` removed."""
    log.info(
        "%s: removed %d users, %d items, %d interactions (left: %d users, %d items, %d interactions)",
        step,
        before.user_id.nunique() - after.user_id.nunique(),
        before.item_id.nunique() - after.item_id.nunique(),
        len(before) - len(after),
        after.user_id.nunique(),
        after.item_id.nunique(),
        len(after),
    )


def sort_interactions(inter: pd.DataFrame) -> pd.DataFrame:
    """Deterministic order: by user, then time, then item (stable, so ties keep input order)."""
    return inter.sort_values(["user_id", "timestamp", "item_id"], kind="mergesort").reset_index(drop=True)


def count_duplicates(inter: pd.DataFrame) -> int:
    """Number of rows repeating an earlier (user, item) pair."""
    return int(inter.duplicated(["user_id", "item_id"]).sum())


def drop_duplicates(inter: pd.DataFrame) -> pd.DataFrame:
    """Keep only the earliest interaction of each (user, item) pair."""
    out = sort_interactions(inter).drop_duplicates(["user_id", "item_id"], keep="first")
    _log_step("dedup (user, item)", inter, out)
    return out.reset_index(drop=True)


def keep_items(inter: pd.DataFrame, items, step: str) -> pd.DataFrame:
    """Keep interactions whose item is in ``items``."""
    out = inter[inter.item_id.isin(items)]
    _log_step(step, inter, out)
    return out


def min_item_inter(inter: pd.DataFrame, k: int) -> pd.DataFrame:
    """Drop items with fewer than ``k`` interactions (one pass)."""
    counts = inter.item_id.map(inter.item_id.value_counts())
    out = inter[counts >= k]
    _log_step(f"items with < {k} interactions", inter, out)
    return out


def min_user_inter(inter: pd.DataFrame, k: int) -> pd.DataFrame:
    """Drop users with fewer than ``k`` interactions (one pass)."""
    counts = inter.user_id.map(inter.user_id.value_counts())
    out = inter[counts >= k]
    _log_step(f"users with < {k} interactions", inter, out)
    return out


def kcore(inter: pd.DataFrame, k: int) -> pd.DataFrame:
    """Iterated k-core: repeat until every user and item has at least ``k`` interactions."""
    out = inter
    while True:
        users = out.user_id.map(out.user_id.value_counts())
        items = out.item_id.map(out.item_id.value_counts())
        keep = (users >= k) & (items >= k)
        if keep.all():
            break
        out = out[keep]
    _log_step(f"{k}-core", inter, out)
    return out


def _steps(titled_items, min_item, min_user, k, dedup):
    """The enabled filter steps, in order, as ``(flag as typed, short name, function)``."""
    steps = []
    if dedup:
        steps.append(("--dedup", "dedup", drop_duplicates))
    if titled_items is not None:
        steps.append(("--drop-untitled", "drop-untitled", lambda f: keep_items(f, titled_items, "items without a title")))
    if min_item:
        steps.append((f"--min-item-inter {min_item}", "min-item-inter", lambda f: min_item_inter(f, min_item)))
    if min_user:
        steps.append((f"--min-user-inter {min_user}", "min-user-inter", lambda f: min_user_inter(f, min_user)))
    if k:
        steps.append((f"--kcore {k}", "kcore", lambda f: kcore(f, k)))
    return steps


def apply_filters(inter, titled_items=None, min_item=0, min_user=0, k=0, dedup=False):
    """Run the configured filters in the paper's order.

    dedup -> drop untitled items (when ``titled_items`` is given) -> items with < ``min_item``
    interactions -> users with < ``min_user`` interactions -> optional iterated ``k``-core.
    A zero/None argument skips its step. Returns the sorted result.

    Raises DatasetToolError, naming the step and what each step kept, when a step leaves no
    interaction: an empty dataset is never what was asked for.
    """
    total = len(inter)
    if not total:
        raise DatasetToolError("the input holds no interactions (nothing to filter)")
    duplicates = count_duplicates(inter)
    if dedup:
        log.info("found %d repeated (user, item) interactions; keeping the earliest of each", duplicates)
    elif duplicates:
        log.info("keeping %d repeated (user, item) interactions (use --dedup to drop them)", duplicates)
    kept = []
    for flag, short, step in _steps(titled_items, min_item, min_user, k, dedup):
        inter = step(inter)
        kept.append(f"{short} kept {len(inter):,}")
        if inter.empty:
            raise DatasetToolError(f"after {flag}: 0 of {total:,} interactions left ({', '.join(kept)})")
    log.info("filters kept %s of %s interactions (%s)", f"{len(inter):,}", f"{total:,}", ", ".join(kept) or "no filter on")
    return sort_interactions(inter)
