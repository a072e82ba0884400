"""Published pre-split folders (UniSRec / VQ-Rec / MISSRec format) -> one sequence per user.

The folder holds ``<P>.train.inter``, ``<P>.valid.inter``, ``<P>.test.inter`` (columns
``user_id:token``, ``item_id_list:token_seq``, ``item_id:token``: one row per target with the
history before it, cut to its last N items), ``<P>.text`` (``item_id:token``, ``text:token_seq``,
keyed by product id) and ``<P>.item2index`` / ``<P>.user2index`` (``<id>\\t<index>`` lines,
no header; the .inter files hold the indices).

These splits are leave-one-out: a user's training rows are every prefix of the training part of
the sequence, the valid row is (training part, second-last item), the test row (all but the
last item, last item). The sequence is rebuilt here with ``timestamp`` = position, so RecBole's
own ``LS: valid_and_test`` split under ``TO`` order reproduces every published row (targets
exactly; histories too when ``MAX_ITEM_LIST_LENGTH`` is at least N), except that RecBole validates
no user with fewer than 4 interactions (warned about; 5-core data has none). A file that is not such a
split (a row off the rebuilt sequence, a user missing from valid or test) is an error, never
silently re-split.
"""
import glob
import logging
import os
from collections import defaultdict

import pandas as pd

from .errors import DatasetToolError
from .io_utils import iter_lines
from .text import clean_text

log = logging.getLogger("dataset_tools")

SPLITS = ("train", "valid", "test")
INTER_FIELDS = ("user_id", "item_id_list", "item_id")


def find_prefix(directory) -> str:
    """Return ``<P>`` for the single ``<P>.train.inter`` in ``directory``."""
    found = sorted(glob.glob(os.path.join(directory, "*.train.inter")))
    if len(found) != 1:
        raise DatasetToolError(f"{directory}: expected exactly one *.train.inter, found {len(found)}")
    return os.path.basename(found[0])[: -len(".train.inter")]


def _header(path, fields):
    """Column positions of ``fields`` in the ``name:type`` header of ``path``."""
    name = os.path.basename(path)
    for number, line in iter_lines(path, name):
        columns = [c.split(":")[0] for c in line.split("\t")]
        missing = [f for f in fields if f not in columns]
        if missing or number != 1:
            raise DatasetToolError(f"{name} line 1: header lacks {missing or list(fields)} ({line})")
        return [columns.index(f) for f in fields], len(columns)
    raise DatasetToolError(f"{name}: empty file")


def read_split(path):
    """Rows ``(user, history tuple, target)`` of one ``.inter`` split file, in file order."""
    name = os.path.basename(path)
    (u, h, t), width = _header(path, INTER_FIELDS)
    rows = []
    for number, line in iter_lines(path, name):
        if number == 1:
            continue
        values = line.split("\t")
        if len(values) != width or not values[u] or not values[t]:
            raise DatasetToolError(f"{name} line {number}: expected {width} tab-separated columns with a user and an item")
        rows.append((values[u], tuple(values[h].split()), values[t]))
    log.info("%s: %d rows, %d users", name, len(rows), len({r[0] for r in rows}))
    return rows


def read_index(path):
    """``<id>\\t<index>`` lines -> {index token: id}."""
    name, index_to_id = os.path.basename(path), {}
    for number, line in iter_lines(path, name):
        parts = line.split("\t")
        if len(parts) != 2:
            raise DatasetToolError(f"{name} line {number}: expected '<id>\\t<index>'")
        if parts[1] in index_to_id:
            raise DatasetToolError(f"{name} line {number}: index {parts[1]} given twice")
        index_to_id[parts[1]] = parts[0]
    return index_to_id


def read_text(path):
    """``.text`` (``item_id:token``, ``text:token_seq``) -> {item id: cleaned text}."""
    name = os.path.basename(path)
    (i, x), _ = _header(path, ("item_id", "text"))
    texts = {}
    for number, line in iter_lines(path, name):
        if number == 1:
            continue
        values = line.split("\t", max(i, x))  # the text itself may hold a tab
        texts[values[i]] = clean_text(values[x]) if len(values) > x else ""
    return texts


def rebuild_sequences(train, valid, test):
    """One chronological item list per user from the three splits; raises unless the rows are
    exactly those of a leave-one-out split of these lists (histories cut to the longest seen)."""
    cap = max((len(r[1]) for rows in (train, valid, test) for r in rows), default=0)
    by_split = {}
    for split, rows in (("valid", valid), ("test", test)):
        by_split[split] = {}
        for user, history, target in rows:
            if user in by_split[split]:
                raise DatasetToolError(f"{split}.inter: user {user} has more than one row (not a leave-one-out split)")
            by_split[split][user] = (history, target)
    users = list(dict.fromkeys(r[0] for r in valid + test + train))  # the published user order
    for split in ("valid", "test"):
        absent = [u for u in users if u not in by_split[split]]
        if absent:
            raise DatasetToolError(f"{split}.inter: {len(absent)} users have no row, e.g. {absent[0]} (not a leave-one-out split)")
    # training rows of a user by history; UniSRec writes a user's rows latest first, so the
    # reversed file order pops repeated histories earliest first
    targets = defaultdict(lambda: defaultdict(list))
    for user, history, target in reversed(train):
        targets[user][history].append(target)
    sequences = {}
    for user in users:
        valid_history, valid_target = by_split["valid"][user]
        rows = targets.pop(user, {})
        if rows:
            sequence = list(min(rows, key=len))
            while True:
                nexts = rows.get(tuple(sequence[-cap:]))
                if not nexts:
                    break
                sequence.append(nexts.pop())
            left = sum(len(v) for v in rows.values())
            if left:
                raise DatasetToolError(f"train.inter: user {user}: {left} rows are not on one item sequence")
        elif len(valid_history) > 1:  # its training part has a second item: that is a row
            raise DatasetToolError(f"train.inter: user {user} has no row but a valid history of {len(valid_history)} items")
        else:
            sequence = list(valid_history)
        if not sequence:
            raise DatasetToolError(f"valid.inter: user {user} has an empty history")
        for split, expected in (("valid", sequence), ("test", sequence + [valid_target])):
            history = by_split[split][user][0]
            if list(history) != expected[-cap:]:
                raise DatasetToolError(
                    f"{split}.inter: user {user}'s history is not the preceding items of the training rows "
                    "(not a leave-one-out split)")
        sequences[user] = sequence + [valid_target, by_split["test"][user][1]]
    return sequences, cap


def read(directory, prefix=None):
    """Return ``(inter, items, cap)``: interactions with ``timestamp`` = position, items with
    their ``text``, and the longest history in the files (their ``MAX_ITEM_LIST_LENGTH``)."""
    prefix = prefix or find_prefix(directory)
    path = lambda suffix: os.path.join(directory, f"{prefix}.{suffix}")  # noqa: E731
    train, valid, test = (read_split(path(f"{split}.inter")) for split in SPLITS)
    sequences, cap = rebuild_sequences(train, valid, test)
    if not sequences:
        raise DatasetToolError(f"{prefix}.train/valid/test.inter: no rows below the headers")
    inter = pd.DataFrame(
        [(user, item, 1.0, position) for user, seq in sequences.items() for position, item in enumerate(seq)],
        columns=["user_id", "item_id", "rating", "timestamp"],
    )
    tokens = set(inter.item_id)
    if os.path.isfile(path("item2index")):
        index_to_id = read_index(path("item2index"))
        unknown = sorted(tokens - set(index_to_id))
        if unknown:
            raise DatasetToolError(f"{prefix}.item2index: {len(unknown)} item indices of the .inter files are absent, e.g. {unknown[0]}")
    else:
        log.info("no %s.item2index: the .text file is keyed by the .inter files' item ids", prefix)
        index_to_id = {token: token for token in tokens}
    texts = read_text(path("text")) if os.path.isfile(path("text")) else {}
    if not texts:
        log.warning("no %s.text (or it is empty): items get empty text", prefix)
    items = pd.DataFrame(
        [(token, texts[index_to_id[token]]) for token in sorted(tokens) if index_to_id[token] in texts],
        columns=["item_id", "text"],
    )
    if texts and items.empty:
        raise DatasetToolError(f"{prefix}.text: no key matches an item of the .inter files (wrong .item2index?)")
    unused = len(set(texts) - {index_to_id[t] for t in tokens})
    if unused:
        log.info("ignored %d text records of items not in the split", unused)
    short = sum(len(seq) < 4 for seq in sequences.values())
    if short:  # RecBole's leave-one-out needs 3 prefixes to hold one out for validation
        log.warning("%d users have 3 interactions: RecBole's leave-one-out trains on their valid row "
                    "instead of validating on it (their test row is kept)", short)
    log.info("rebuilt %d users' sequences: %d interactions, %d items, histories up to %d items",
             len(sequences), len(inter), len(tokens), cap)
    return inter, items, cap


def dataset_yaml(name, cap):
    """Settings under which the plugin reads the converted dataset as the published split."""
    return f"""# Written by `python -m dataset_tools unisrec`: a published leave-one-out split, one sequence
# per user (timestamp = position); RecBole's LS split below reproduces the published rows.
USER_ID_FIELD: user_id                     # (str) user id column of {name}.inter
ITEM_ID_FIELD: item_id                     # (str) item id column of {name}.inter/.item
TIME_FIELD: timestamp                      # (str) position in the user's published sequence
load_col:                                  # (dict) columns to load per atomic file
  inter: [user_id, item_id, timestamp]     # (list) rating is written but unused
  item: [item_id, text]                    # (list) the published item text
item_text_fields: [text]                   # (list) item fields that form the MixRec item sentence
selected_features: [text]                  # (list) item features FDSA (RecBole baseline) reads
eval_args:                                 # (dict) leave-one-out, as published
  split: {{LS: valid_and_test}}              # (dict) last item test, second-last valid
  order: TO                                # (str) temporal order within each user
  mode: full                               # (str) rank against all items
  group_by: user                           # (str) split per user
MAX_ITEM_LIST_LENGTH: {cap:<21d}# (int) the longest published history: histories as in the files
"""
