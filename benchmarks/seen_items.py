"""How much of a model's top-k is items the user already has, and what leaving them out scores.

``python -m benchmarks.seen_items A.pth [B.pth ...] [--split test]``

For each checkpoint (any model the plugin or RecBole trains): the share of its top-k that are
items of the user's input sequence (RecBole's ``ITEM_SEQ``), the share of targets that are in
it (0 where items are never consumed twice, as on ml-100k), and RecBole's metrics under both
protocols: its own (nothing left out for a sequential model) and ``eval_exclude_seen`` (the
input sequence's items left out of the ranking). The second protocol is only a fair comparison
when every model in a table is scored under it.
"""

import argparse
import sys

import torch

from recbole_mixrec.errors import MixRecError


def seen_item_figures(model_file, split="test"):
    """``{"top_seen", "target_seen", "plain": {metric: value}, "exclude_seen": {...}}`` and the
    model's name, from RecBole's full-ranking evaluator run twice on ``split``."""
    from recbole_mixrec.quick_start import build_trainer, load_data_and_model
    from recbole_mixrec.trainer import input_item_mask

    config, model, _, _, valid_data, test_data = load_data_and_model(model_file)
    data = valid_data if split == "valid" else test_data
    item_seq = config["ITEM_ID_FIELD"] + config["LIST_SUFFIX"]
    k = max(config["topk"])
    trainer = build_trainer(config, model)
    figures = {}
    for protocol, exclude in (("exclude_seen", True), ("plain", False)):
        config["eval_exclude_seen"] = exclude
        figures[protocol] = dict(trainer.evaluate(data, load_best_model=False))
    # RecBole's evaluate() set what a batch's scoring needs (tot_item_num, eval mode); plain now
    top_seen, target_seen = [], []
    with torch.no_grad():
        for batch in data:
            interaction, scores, _, positive_i = trainer._full_sort_batch_eval(batch)
            if item_seq not in interaction:
                raise MixRecError(f"{model_file}: its data has no input sequences ({item_seq}): not a sequential model")
            seen = input_item_mask(scores, interaction[item_seq])
            top_seen.append(seen.gather(1, scores.topk(k, dim=1).indices).float().mean(1))
            target_seen.append(seen[torch.arange(len(seen)), positive_i.to(seen.device)].float())
    figures.update(top_seen=float(torch.cat(top_seen).mean()), target_seen=float(torch.cat(target_seen).mean()))
    return figures, config["model"]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.seen_items", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", help="model checkpoints (.pth) of one dataset")
    parser.add_argument("--split", choices=("valid", "test"), default="test")
    args = parser.parse_args(argv)
    print("| checkpoint | model | top-k already in the input | targets in the input | "
          f"{args.split} (RecBole) | {args.split}, input items left out |")
    print("|---|---|---|---|---|---|")
    for path in args.checkpoints:
        try:
            figures, model = seen_item_figures(path, args.split)
        except MixRecError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        plain, excluded = (", ".join(f"{k} {v:.4f}" for k, v in figures[p].items()) for p in ("plain", "exclude_seen"))
        print(f"| {path} | {model} | {figures['top_seen']:.3f} | {figures['target_seen']:.4f} | {plain} | {excluded} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
