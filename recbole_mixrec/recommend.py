"""Top-k recommendations from a trained checkpoint: for a known user, or for a history the
training data never saw (issue 14).

    from recbole_mixrec.recommend import Recommender
    rec = Recommender("saved/MixRec-....pth")              # loads dataset and model once
    rec.recommend(user="196", k=10)                       # the user's whole stored history
    rec.recommend(history=["50", "Star Wars"], k=10)      # a new user: item tokens or exact titles
    rec.recommend_batch([{"user": "196"}, {"history": ["50"]}], k=10)

Command line (prints a table of rank, item, title, score):

    python -m recbole_mixrec.recommend --checkpoint saved/<file>.pth --user 196 --k 10
    python -m recbole_mixrec.recommend --checkpoint saved/<file>.pth --history "50 172 133"

Any model the plugin runs works: MixRec and its variants, LiteLLM4Rec, Hydra and RecBole's
sequential models score a history through their own ``full_sort_predict``; RecBole's general
models (BPR, Pop, ...) score known users only.
"""

import argparse
import contextlib
import logging
import sys
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import torch
from recbole.data.interaction import Interaction
from recbole.utils import ModelType

from recbole_mixrec.errors import MixRecError


class RecommendError(MixRecError):
    """A request that cannot be answered: unknown user or items, ambiguous title, empty
    history, bad ``k``. ``status`` is the HTTP status the service answers it with."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


@dataclass
class Recommendation:
    rank: int
    item: str  # the item token of the dataset
    title: str | None  # None when the dataset has no title field
    score: float


@dataclass
class Query:
    """One resolved request: internal ids; ``user`` None for a new user."""

    user: int | None
    history: list
    k: int
    exclude_history: bool = True


class _NoUserInteraction(Interaction):
    """A batch without users: the user field reads as ``None``, which MixRec's ``forward``
    takes as "no user" (the CF user position is masked); models that ignore the user never
    ask for it."""

    def __init__(self, interaction, user_field):
        super().__init__(interaction)
        self._user_field = user_field

    def __getitem__(self, index):
        if isinstance(index, str) and index == self._user_field and index not in self.interaction:
            return None
        return super().__getitem__(index)


TITLE_FIELDS = ("title", "movie_title", "name")


def title_field(dataset):
    """The item field that holds titles: ``title``, ``movie_title``, ``name``, else the first
    item field with ``title`` in its name; None when there is none."""
    if dataset.item_feat is None:
        return None
    columns = list(dataset.item_feat.columns)
    for name in TITLE_FIELDS:
        if name in columns:
            return name
    return next((c for c in columns if "title" in c.lower()), None)


def user_histories(dataset):
    """Every user's items in the dataset's order (time order under ``eval_args.order: TO``):
    ``{internal user id: int64 array}``.

    A sequential dataset holds augmented rows (history prefix -> target), sorted by user
    then time (stable sorts); a user's history is the first row's first item, then the
    targets in order. A general dataset holds one row per interaction.
    """
    inter = dataset.inter_feat
    uids = inter[dataset.uid_field].numpy()
    items = inter[dataset.iid_field].numpy()
    order = np.argsort(uids, kind="stable")
    uids, items = uids[order], items[order]
    starts = np.flatnonzero(np.r_[True, uids[1:] != uids[:-1]])
    ends = np.r_[starts[1:], len(uids)]
    list_field = getattr(dataset, "item_id_list_field", None)
    first = inter[list_field][torch.as_tensor(order[starts]), 0].numpy() if list_field in inter.interaction else None
    histories = {}
    for index, (start, end) in enumerate(zip(starts, ends)):
        targets = items[start:end]
        histories[int(uids[start])] = np.r_[first[index], targets] if first is not None else targets
    return histories


def load_checkpoint(checkpoint, quiet=False):
    """``(config, model, dataset)`` of a checkpoint, through the plugin's loader."""
    from recbole_mixrec.quick_start import isolated_argv, load_data_and_model

    with contextlib.ExitStack() as stack:
        if quiet:  # RecBole's loader logs the config and dataset; pandas warns about RecBole
            stack.enter_context(warnings.catch_warnings())
            warnings.simplefilter("ignore", FutureWarning)
            logging.disable(logging.INFO)
            stack.callback(logging.disable, logging.NOTSET)
        with isolated_argv():
            config, model, dataset, _, _, _ = load_data_and_model(checkpoint)
    return config, model, dataset


class Recommender:
    """A loaded checkpoint that answers top-k requests.

    ``recommend(user=...)``: a known user, with the whole history the dataset holds for them
    (the test item included, as a deployed model would) and, for MixRec, their CF user vector.
    ``recommend(history=[...])``: a new user, given as item tokens or exact titles. MixRec then
    runs without the CF user position (masked out of the context expert's keys, as for its
    ``[ALIGN]`` inputs), never with a made-up user vector; the history items' CF vectors are
    used. ``recommend(user=..., history=[...])``: a known user (their CF vector) with this
    history instead of the stored one. Items of the history are excluded from the answer by
    default (``exclude_history=False`` keeps them); the models read the last
    ``MAX_ITEM_LIST_LENGTH`` items (MixRec: ``max_seq_items``) of a history.
    """

    def __init__(self, checkpoint, device="cpu", quiet=False):
        self._setup(*load_checkpoint(checkpoint, quiet), device)
        self.checkpoint = checkpoint

    @classmethod
    def from_loaded(cls, config, model, dataset, device="cpu"):
        """From what ``load_data_and_model`` returned (``dataset``: the whole dataset)."""
        recommender = cls.__new__(cls)
        recommender._setup(config, model, dataset, device)
        recommender.checkpoint = None
        return recommender

    def _setup(self, config, model, dataset, device):
        self.config = config
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.model_name = config["model"]
        self.dataset_name = config["dataset"]
        self.sequential = config["MODEL_TYPE"] == ModelType.SEQUENTIAL
        self.uid_field, self.iid_field = dataset.uid_field, dataset.iid_field
        self.n_items = dataset.item_num  # internal ids 1..n_items-1; 0 is padding
        self.max_len = config["MAX_ITEM_LIST_LENGTH"]
        self.user_token_id = dataset.field2token_id[self.uid_field]
        self.user_tokens = list(dataset.field2id_token[self.uid_field])
        self.item_token_id = dataset.field2token_id[self.iid_field]
        self.item_tokens = list(dataset.field2id_token[self.iid_field])
        self.histories = user_histories(dataset)
        field = title_field(dataset)
        self.titles = None
        self.title_ids = {}
        if field is not None:
            from recbole_mixrec.data.item_text import _field_values

            self.titles = _field_values(dataset, field)
            for item, title in enumerate(self.titles[1:], start=1):
                if title:
                    self.title_ids.setdefault(title, []).append(item)

    @property
    def n_real_items(self):
        return self.n_items - 1

    # ----- requests -> internal ids ------------------------------------------------------------
    def resolve_user(self, user):
        if isinstance(user, bool) or not isinstance(user, (str, int)):
            raise RecommendError(f"user must be a string or an integer, not {type(user).__name__}")
        uid = self.user_token_id.get(str(user))
        if uid is None or uid == 0:
            raise RecommendError(f"unknown user '{user}'", status=404)
        return uid

    def resolve_items(self, history):
        """Item tokens or exact titles -> internal ids; every unknown entry named at once."""
        if not isinstance(history, (list, tuple)):
            raise RecommendError(f"history must be a list of item tokens or titles, not {type(history).__name__}")
        if len(history) == 0:
            raise RecommendError("history is empty: give at least one item")
        ids, unknown, ambiguous = [], [], []
        for entry in history:
            if isinstance(entry, bool) or not isinstance(entry, (str, int)):
                raise RecommendError(
                    f"history entries must be item tokens or titles (strings or integers), not {type(entry).__name__}"
                )
            text = str(entry)
            item = self.item_token_id.get(text)
            if item is not None and item > 0:
                ids.append(item)
                continue
            matches = self.title_ids.get(text, [])
            if len(matches) == 1:
                ids.append(matches[0])
            elif matches:
                ambiguous.append(f"'{text}' is the title of items {[self.item_tokens[i] for i in matches]}")
            else:
                unknown.append(text)
        if unknown:
            raise RecommendError(f"unknown item(s) {unknown}: neither item tokens nor exact titles", status=422)
        if ambiguous:
            raise RecommendError("ambiguous title(s): " + "; ".join(ambiguous) + " (give the item token)", status=422)
        return ids

    def check_k(self, k):
        if isinstance(k, bool) or not isinstance(k, int):
            raise RecommendError(f"k must be an integer, not {type(k).__name__}")
        if not 1 <= k <= self.n_real_items:
            raise RecommendError(f"k must be between 1 and {self.n_real_items} (the number of items), not {k}")
        return k

    def resolve(self, user=None, history=None, k=10, exclude_history=True):
        """Check one request and turn it into a ``Query``; raises ``RecommendError``."""
        self.check_k(k)
        if not isinstance(exclude_history, bool):
            raise RecommendError(f"exclude_history must be true or false, not {type(exclude_history).__name__}")
        if user is None and history is None:
            raise RecommendError("give a user or a history")
        uid = self.resolve_user(user) if user is not None else None
        if history is None:
            items = [int(i) for i in self.histories.get(uid, [])]
        else:
            items = self.resolve_items(history)
            if not self.sequential and uid is None:
                raise RecommendError(
                    f"{self.model_name} scores known users only (a general model has no history input)"
                )
        if self.sequential and not items:
            raise RecommendError(f"user '{user}' has no history in the dataset")
        return Query(uid, items, k, exclude_history)

    # ----- scoring ---------------------------------------------------------------------------------
    def _interaction(self, queries, with_user):
        fields = {}
        if with_user:
            fields[self.uid_field] = torch.tensor([q.user for q in queries], dtype=torch.long)
        if self.sequential:
            seq = torch.zeros(len(queries), self.max_len, dtype=torch.long)
            lengths = torch.zeros(len(queries), dtype=torch.long)
            for row, query in enumerate(queries):
                items = query.history[-self.max_len:]  # left-aligned, as RecBole's loaders
                seq[row, : len(items)] = torch.tensor(items, dtype=torch.long)
                lengths[row] = len(items)
            fields[self.model.ITEM_SEQ] = seq
            fields[self.model.ITEM_SEQ_LEN] = lengths
        fields = {name: value.to(self.device) for name, value in fields.items()}
        return Interaction(fields) if with_user else _NoUserInteraction(fields, self.uid_field)

    @torch.no_grad()
    def scores(self, queries):
        """Raw scores ``[len(queries), n_items]`` from the model's ``full_sort_predict``;
        known and new users go through separate forward passes."""
        out = torch.empty(len(queries), self.n_items)
        for with_user in (True, False):
            rows = [i for i, q in enumerate(queries) if (q.user is not None) == with_user]
            if rows:
                batch = self._interaction([queries[i] for i in rows], with_user)
                out[rows] = self.model.full_sort_predict(batch).float().cpu()
        return out

    def answer(self, queries):
        """Top-k lists for resolved queries, one batched pass."""
        if not queries:
            return []
        scores = self.scores(queries)
        scores[:, 0] = -torch.inf  # padding item
        results = []
        for row, query in enumerate(queries):
            if query.exclude_history and query.history:
                scores[row, torch.tensor(query.history)] = -torch.inf
            values, items = scores[row].topk(query.k)
            results.append([
                Recommendation(rank, self.item_tokens[item], self.titles[item] if self.titles else None, value)
                for rank, (value, item) in enumerate(zip(values.tolist(), items.tolist()), start=1)
                if value != -np.inf
            ])
        return results

    def recommend(self, user=None, history=None, k=10, exclude_history=True):
        """Top ``k`` items, best first, as ``Recommendation`` (rank, item token, title, score).

        ``user``: a user token of the dataset; ``history``: item tokens or exact titles, oldest
        first (a title that several items share is an error naming them). A new user
        (``history`` without ``user``) has no CF user vector: MixRec then masks that position.
        """
        return self.answer([self.resolve(user, history, k, exclude_history)])[0]

    def recommend_batch(self, requests, k=10, exclude_history=True):
        """Many requests in one pass: each a user token or a dict with ``user`` and/or
        ``history`` (and optionally its own ``k``, ``exclude_history``)."""
        queries = []
        for request in requests:
            request = request if isinstance(request, dict) else {"user": request}
            queries.append(self.resolve(
                request.get("user"), request.get("history"), request.get("k", k),
                request.get("exclude_history", exclude_history),
            ))
        return self.answer(queries)


# ----- command line -----------------------------------------------------------------------------------
def split_history(recommender, values):
    """``--history`` arguments: an argument that is an item token or an exact title is one
    item ("Toy Story (1995)"); any other is split on whitespace ("50 172 133")."""
    items = []
    for value in values:
        if value in recommender.item_token_id or value in recommender.title_ids:
            items.append(value)
        else:
            items.extend(value.split())
    return items


def format_table(recommendations):
    rows = [("rank", "item", "title", "score")] + [
        (str(r.rank), r.item, r.title if r.title is not None else "-", f"{r.score:.4f}") for r in recommendations
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = []
    for row in rows:
        cells = [row[0].rjust(widths[0]), row[1].ljust(widths[1]), row[2].ljust(widths[2]), row[3].rjust(widths[3])]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m recbole_mixrec.recommend", description="Top-k items from a trained checkpoint."
    )
    parser.add_argument("--checkpoint", required=True, help="a saved/<model>-<date>.pth file")
    parser.add_argument("--user", help="a user token of the dataset (their whole stored history)")
    parser.add_argument("--history", nargs="+", help='item tokens or exact titles, oldest first: "id1 id2 ..."')
    parser.add_argument("--k", type=int, default=10, help="how many items (default 10)")
    parser.add_argument("--keep-history", action="store_true", help="do not exclude the history's items")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if args.user is None and args.history is None:
        parser.error("give --user or --history")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        recommender = Recommender(args.checkpoint, args.device, quiet=True)
        history = split_history(recommender, args.history) if args.history else None
        result = recommender.recommend(args.user, history, args.k, not args.keep_history)
    except MixRecError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        import json

        print(json.dumps([asdict(r) for r in result], indent=1))
    else:
        who = f"user {args.user}" if args.user else "new user"
        print(f"{recommender.model_name} on {recommender.dataset_name}, {who}, top {args.k}:")
        print(format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
