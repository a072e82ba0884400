"""Where a model wins and loses: its metrics by how often the target was a training item.

``python -m benchmarks.target_popularity A.pth [B.pth ...] [--split test] [--edges 20 50 100 200]``

For each checkpoint (any model the plugin or RecBole trains) the users of ``--split`` are grouped
by their target's count of training interactions (RecBole's training split: the items a model
could learn the target from), and each group gets its MRR@k and Recall@k from the same full
ranking RecBole's evaluator uses (nothing left out for a sequential model). Also printed: how
many distinct items the model's top-k lists hold over all users, and the median training count
of the items in them: a model that only recommends the head of the catalogue scores well on
popular targets and nothing on the rest. The groups' user-weighted mean is RecBole's figure.
"""

import argparse
import sys

import numpy as np
import torch

from recbole_mixrec.errors import MixRecError


def training_item_counts(train, n_items):
    """``[n_items]`` training interactions per item of the training split ``train``: all of
    them, also where a plugin dataset trains on fewer rows (``train_samples``) and keeps the
    full set as ``train_pairs``."""
    from recbole_mixrec.data.dataset import training_pairs

    _, items = train.train_pairs if hasattr(train, "train_pairs") else training_pairs(train)
    return torch.bincount(items, minlength=n_items)


def target_ranks(model_file, split="test"):
    """Per user of ``split``: the target's rank (1 = top) in the full ranking, the target's
    training count, and the top-k items. Returns ``(ranks, target_counts, topk, item_counts,
    config)``: LongTensors ``[U]``, ``[U]``, ``[U, k]``, ``[n_items]``."""
    from recbole_mixrec.quick_start import build_trainer, load_data_and_model

    config, model, dataset, train_data, valid_data, test_data = load_data_and_model(model_file)
    data = valid_data if split == "valid" else test_data
    if config["ITEM_LIST_LENGTH_FIELD"] not in train_data.dataset.inter_feat:
        raise MixRecError(f"{model_file}: its data has no input sequences: not a sequential model")
    item_counts = training_item_counts(train_data.dataset, dataset.item_num)
    trainer = build_trainer(config, model)
    trainer.evaluate(data, load_best_model=False)  # sets what a batch's scoring needs
    k = max(config["topk"])
    ranks, targets, tops = [], [], []
    with torch.no_grad():
        for batch in data:
            _, scores, positive_u, positive_i = trainer._full_sort_batch_eval(batch)
            positive_u, positive_i = positive_u.to(scores.device), positive_i.to(scores.device)
            target_score = scores[positive_u, positive_i].unsqueeze(1)
            # RecBole ranks by topk; ties with the target are rare in float scores
            ranks.append((scores[positive_u] > target_score).sum(1).cpu() + 1)
            targets.append(positive_i.cpu())
            tops.append(scores.topk(k, dim=1).indices.cpu())
    targets = torch.cat(targets)
    return torch.cat(ranks), item_counts[targets], torch.cat(tops), item_counts, config


def popularity_groups(ranks, target_counts, k, edges):
    """``[(label, users, mrr@k, recall@k)]`` for targets with training counts in
    ``[0, e1), [e1, e2), ..., [e_last, inf)``; empty groups kept (0 users, NaN metrics)."""
    bounds = [0, *edges, float("inf")]
    hit = ranks <= k
    reciprocal = torch.where(hit, 1.0 / ranks.double(), torch.zeros((), dtype=torch.double))
    groups = []
    for low, high in zip(bounds[:-1], bounds[1:]):
        member = (target_counts >= low) & (target_counts < high)
        n = int(member.sum())
        label = f"{low}+" if high == float("inf") else f"{low}-{int(high) - 1}"
        mrr = float(reciprocal[member].mean()) if n else float("nan")
        recall = float(hit[member].double().mean()) if n else float("nan")
        groups.append((label, n, mrr, recall))
    return groups


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.target_popularity", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", help="model checkpoints (.pth) of one dataset")
    parser.add_argument("--split", choices=("valid", "test"), default="test")
    parser.add_argument("--edges", type=int, nargs="+", default=[20, 50, 100, 200],
                        help="training-count group bounds (ascending)")
    args = parser.parse_args(argv)
    if args.edges != sorted(set(args.edges)) or args.edges[0] <= 0:
        print("error: --edges must be positive and ascending", file=sys.stderr)
        return 2
    header = None
    for path in args.checkpoints:
        try:
            ranks, target_counts, tops, item_counts, config = target_ranks(path, args.split)
        except MixRecError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        k = tops.size(1)
        groups = popularity_groups(ranks, target_counts, k, args.edges)
        if header is None:
            cells = " | ".join(f"targets {label}: users, MRR@{k}, Recall@{k}" for label, *_ in groups)
            print(f"| checkpoint | model | {cells} | distinct items in top {k} | median training count of top {k} |")
            print("|---|---|" + "---|" * len(groups) + "---|---|")
            header = True
        cells = " | ".join(f"{n}, {mrr:.4f}, {recall:.4f}" for _, n, mrr, recall in groups)
        top_median = int(np.median(item_counts[tops].numpy()))
        print(f"| {path} | {config['model']} | {cells} | {tops.unique().numel()} | {top_median} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
