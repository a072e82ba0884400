"""Is the item head what limits a trained MixRec? Refit W_item, b_item alone on frozen features.

``python -m benchmarks.head_refit MODEL.pth [--lr 0.001 0.01] [--epochs 3] [--head free|tied] [--cache FEATURES.pt]``

The head's inputs for a checkpoint of MixRec (or MixRec_noBO, MixRec_base) are computed once
with the model frozen: the standardised ``[SEQ]`` state (what W_item multiplies) at every
position L_seq supervises in every training window, and at the last position for each valid and
test user. The head alone then trains on from its trained weights, in minibatches of 256
positions (AdamW, cross-entropy over all items like L_seq; no LLM pass, so seconds per epoch),
once at each ``--lr``, and the valid and test MRR@k / NDCG@k of the full ranking are printed after every
epoch, with MRR@k by the target's training count. If more head training raised validation, the
head would be the under-trained part (a head learning-rate lever); if only the training loss
falls, the history states are the limit.

``--head tied`` asks whether the head's form is the limit instead: W_item = T A, T the items'
own text (each item's standardised ``[ALIGN]`` state under the trained model, unit length), A
one d x d map shared by every item, started as the least-squares fit of the trained W_item, so a
rarely seen item moves with what the frequent ones teach A instead of by its own gradient.
"""

import argparse
import os
import sys

import torch
import torch.nn.functional as F

from recbole_mixrec.errors import MixRecError


@torch.no_grad()
def head_features(model, train_data, valid_data, test_data):
    """``{"train" | "valid" | "test": (features [N, d], targets [N])}`` from a model in eval mode."""
    from tqdm import tqdm

    from recbole_mixrec.model.inputs import next_item_labels

    head = model.item_projection
    features = {}
    rows, labels = [], []
    for interaction in tqdm(train_data, desc="head inputs, training windows", unit="batch"):
        hidden, window, count = model.forward(
            interaction[model.ITEM_SEQ], interaction[model.ITEM_SEQ_LEN], interaction[model.USER_ID]
        )
        label = next_item_labels(window, count, interaction[model.POS_ITEM_ID], model.supervised_positions)
        rows.append(head.head_input_of(hidden)[label > 0])
        labels.append(label[label > 0])
    features["train"] = (torch.cat(rows), torch.cat(labels))
    for split, data in (("valid", valid_data), ("test", test_data)):
        rows, labels = [], []
        for batch in tqdm(data, desc=f"head inputs, {split} users", unit="batch"):
            interaction = batch[0]
            rows.append(head.head_input_of(model._last_hidden(interaction)))
            labels.append(interaction[model.POS_ITEM_ID])
        features[split] = (torch.cat(rows), torch.cat(labels))
    return features


def target_ranks(features, targets, weight, bias):
    """Rank (1 = top) of each target in the full ranking ``features @ weight.T + bias`` (item 0,
    padding, never ranked), the same full ranking RecBole's evaluator scores."""
    scores = features @ weight.T + bias
    scores[:, 0] = -torch.inf
    return (scores > scores.gather(1, targets.unsqueeze(1))).sum(1) + 1


def rank_metrics(ranks, k):
    hit = ranks <= k
    zero = torch.zeros((), dtype=torch.double)
    mrr = torch.where(hit, 1.0 / ranks.double(), zero).mean().item()
    ndcg = torch.where(hit, 1.0 / torch.log2(ranks.double() + 1), zero).mean().item()
    return mrr, ndcg


def tied_start(item_text, weight):
    """A with ``item_text @ A`` the least-squares fit of ``weight`` (the tied head's start)."""
    return torch.linalg.lstsq(item_text, weight).solution


def refit(features, targets, weight, bias, lr, epochs, batch_size=256, weight_decay=0.0, seed=0, item_text=None):
    """Train copies of ``weight``, ``bias`` on ``(features, targets)``; yields ``(epoch, mean
    training loss, weight, bias)`` after each epoch. With ``item_text`` the head is tied:
    ``weight = item_text @ A``, A (from :func:`tied_start`) and the bias trained."""
    bias = bias.detach().clone().requires_grad_(True)
    if item_text is None:
        weight = weight.detach().clone().requires_grad_(True)
        trained, head_weight = weight, lambda: weight
    else:
        trained = tied_start(item_text, weight.detach()).requires_grad_(True)
        head_weight = lambda: item_text @ trained  # noqa: E731
    optimizer = torch.optim.AdamW([trained, bias], lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        order = torch.randperm(len(targets), generator=generator)
        total = 0.0
        for start in range(0, len(targets), batch_size):
            pick = order[start:start + batch_size]
            loss = F.cross_entropy(features[pick] @ head_weight().T + bias, targets[pick], reduction="sum")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item()
        yield epoch, total / len(targets), head_weight().detach(), bias.detach()


@torch.no_grad()
def item_text_states(model, item_batch_size=64):
    """``[n_items, d]``: every item's standardised ``[ALIGN]`` state at unit length (row 0,
    padding, zero), the text rows ``head_init: text`` starts W_item from, under this model."""
    return model.item_projection.text_rows(model.all_item_representations(item_batch_size)).cpu()


def load_features(model_file, cache=None):
    """``(features, weight, bias, item_counts, k, item_text)`` of a checkpoint (``item_text``:
    :func:`item_text_states`); ``cache``: a .pt file written on the first call and read on later
    ones (the LLM passes are the slow part)."""
    if cache and os.path.isfile(cache):
        cached = torch.load(cache)
        if len(cached) == 6:
            return cached
        # a cache written before the text rows were part of it: computed again
    from benchmarks.target_popularity import training_item_counts
    from recbole_mixrec.quick_start import load_data_and_model

    config, model, dataset, train_data, valid_data, test_data = load_data_and_model(model_file)
    if not hasattr(model, "item_projection") or not hasattr(model, "supervised_positions"):
        raise MixRecError(f"{model_file}: a {config['model']} checkpoint; head_refit reads MixRec's item head")
    model.eval()
    out = (
        head_features(model, train_data, valid_data, test_data),
        model.item_projection.weight.detach().clone(),
        model.item_projection.bias.detach().clone(),
        training_item_counts(train_data.dataset, dataset.item_num),
        max(config["topk"]),
        item_text_states(model),
    )
    if cache:
        torch.save(out, cache)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.head_refit", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a MixRec / MixRec_noBO / MixRec_base checkpoint (.pth)")
    parser.add_argument("--lr", type=float, nargs="+", default=[1e-3, 1e-2], help="AdamW learning rates, one refit each")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--head", choices=["free", "tied"], default="free",
                        help="free: W_item trained row by row; tied: W_item = (item text states) A, A trained")
    parser.add_argument("--weight_decay", type=float, default=0.0)
    parser.add_argument("--edges", type=int, nargs="+", default=[50, 100, 200], help="training-count groups of the targets")
    parser.add_argument("--cache", default=None, help="features file (.pt): written once, reused after")
    args = parser.parse_args(argv)
    try:
        features, weight, bias, item_counts, k, item_text = load_features(args.checkpoint, args.cache)
    except MixRecError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from benchmarks.target_popularity import popularity_groups

    print(f"training positions {len(features['train'][1])}, valid users {len(features['valid'][1])}, "
          f"test users {len(features['test'][1])}")
    test_counts = item_counts[features["test"][1]]

    def row(name, train_loss, w, b):
        """The table row of head ``(w, b)`` and the test split's popularity groups."""
        ranks = {split: target_ranks(*features[split], w, b) for split in ("valid", "test")}
        groups = popularity_groups(ranks["test"], test_counts, k, args.edges)
        cells = ["%.4f / %.4f" % rank_metrics(ranks[split], k) for split in ("valid", "test")]
        cells += [f"{mrr:.4f}" for _, _, mrr, _ in groups]
        return f"| {name} | {train_loss} | " + " | ".join(cells) + " |", groups

    first, groups = row("as trained", "-", weight, bias)
    print(f"| head | training loss | valid MRR@{k} / NDCG@{k} | test MRR@{k} / NDCG@{k} | "
          + " | ".join(f"test MRR@{k}, targets {label}" for label, *_ in groups) + " |")
    print("|---|---|---|---|" + "---|" * len(groups))
    print(first, flush=True)
    tied = item_text if args.head == "tied" else None
    if tied is not None:
        # how much of the trained head the items' text spans
        print(row("tied start (least squares)", "-", item_text @ tied_start(item_text, weight), bias)[0], flush=True)
    for lr in args.lr:
        refits = refit(*features["train"], weight, bias, lr, args.epochs, weight_decay=args.weight_decay, item_text=tied)
        for epoch, loss, w, b in refits:
            name = ("tied " if tied is not None else "") + f"lr {lr:g}, epoch {epoch}"
            print(row(name, f"{loss:.3f}", w, b)[0], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
