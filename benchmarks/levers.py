"""Ablation of MixRec's training levers at a fixed budget: one setting changed at a time.

``python -m benchmarks.levers --dataset ml-100k [--levers all-on,head-off,...] [--out DIR]
[--key=value ...]``

Each lever row is MixRec with the given overrides on top of the defaults and the command's
``--key=value`` entries (the shared budget, e.g. ``--epochs=1``), run through ``run_mixrec``
one after another (same split, seed and evaluator). The untrained model is validated too
(``valid_untrained``), so each row says what the start from the data gives and what training
adds; ``train_loss`` (the last epoch's mean) is the less noisy signal at small budgets. ``<out>/levers.csv`` gets a row as soon as a lever ends; levers already there are
skipped, so a cut-off ablation continues where it stopped. Figures from runs that shared the
machine with other work are not timings.
"""

import argparse
import csv
import os
import sys
import time

from recbole_mixrec.cli import config_entries, quiet_recbole_warnings
from recbole_mixrec.errors import MixRecError

# name -> (what it tests, overrides); "all-on" is the current default
LEVERS = {
    "all-on": ("every lever at its default", {}),
    "head-off": ("plain head: raw input, random W, zero bias",
                 {"head_input": "raw", "head_init": "random", "head_bias_init": "zero"}),
    "head-raw": ("head started from text and popularity, raw input", {"head_input": "raw"}),
    "no-text-init": ("standardised head, random W, popularity bias", {"head_init": "random"}),
    "cf-in-causal": ("CF vectors also in the causal expert (before)", {"cf_in_causal": True}),
    "gate-even": ("gate starts 50/50 (before)", {"gate_init_causal": 0.5}),
    "cf-no-seq-grad": ("only L_cf trains the CF embeddings", {"cf_seq_grad": False}),
    "align-32": ("L_align over 32 items per batch", {"align_batch_size": 32}),
    "no-cf": ("no CF injection", {"cf_model": "none", "lambda_cf": 0.0}),
    "cl-4": ("L_cl anchors from 4 of the batch's sequences, not all", {"cl_batch_size": 4}),
    # the two levers left for amazon-scientific's plateau (README "MixRec quality")
    "history-20": ("20 history items read, rows grouped by length", {"max_seq_items": 20, "length_group_ratio": 0.5}),
    "wd-0.05": ("AdamW weight decay 0.05 (the item head is most of the trainable weights)", {"weight_decay": 0.05}),
    "head-dropout-0.3": ("dropout 0.3 on the item head's input", {"head_dropout": 0.3}),
    "cf-warm": ("CF model fitted with BPR on all training pairs before joint training", {"cf_warm_start": True}),
}
FIELDS = ("lever", "what", "train_loss", "valid_untrained", "valid_mrr@10", "test_ndcg@10", "test_recall@10",
          "test_mrr@10", "wall_time_s", "overrides")


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.levers",
        description="MixRec with one lever changed at a time, at a fixed budget; writes levers.csv.",
        epilog="Any other --key=value is a config entry for every row (the budget), e.g. --epochs=1.",
    )
    parser.add_argument("--dataset", "-d", default="ml-100k")
    parser.add_argument("--model", default="MixRec")
    parser.add_argument("--levers", default=",".join(LEVERS), help="comma-separated names: " + ", ".join(LEVERS))
    parser.add_argument("--out", default="results/levers", help="folder of levers.csv (default: %(default)s)")
    args, rest = parser.parse_known_args(argv)
    args.config_dict = config_entries(parser, rest)
    args.levers = [name.strip() for name in args.levers.split(",") if name.strip()]
    unknown = [name for name in args.levers if name not in LEVERS]
    if unknown:
        parser.error(f"unknown lever(s) {unknown}; known: {', '.join(LEVERS)}")
    return args


def done_levers(path):
    if not os.path.exists(path):
        return set()
    with open(path, newline="") as handle:
        return {row["lever"] for row in csv.DictReader(handle)}


def run_lever(args, name):
    from recbole_mixrec import run_mixrec

    what, overrides = LEVERS[name]
    config_dict = {**args.config_dict, **overrides, "valid_untrained": True}
    start = time.time()
    result = run_mixrec(args.model, args.dataset, config_dict=config_dict, saved=False)
    untrained = result.get("untrained_valid_result") or {}
    losses = [p["train_loss"] for p in result.get("learning_curve", []) if p["train_loss"] is not None]
    return {
        "lever": name, "what": what,
        # the last epoch's mean loss (all loss terms): less noisy than ~1k validation users
        "train_loss": round(losses[-1], 4) if losses else None,
        "valid_untrained": untrained.get("mrr@10"),
        "valid_mrr@10": result["best_valid_result"].get("mrr@10"),
        **{f"test_{m}": result["test_result"].get(m) for m in ("ndcg@10", "recall@10", "mrr@10")},
        "wall_time_s": round(time.time() - start, 1),
        "overrides": " ".join(f"{k}={v}" for k, v in overrides.items()),
    }


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    quiet_recbole_warnings()
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "levers.csv")
    done = done_levers(path)
    for name in args.levers:
        if name in done:
            print(f"{name}: already in {path}, skipped")
            continue
        row = run_lever(args, name)
        new_file = not os.path.exists(path)
        with open(path, "a", newline="") as handle:
            writer = csv.DictWriter(handle, FIELDS)
            if new_file:
                writer.writeheader()
            writer.writerow(row)
        print(", ".join(f"{k}={row[k]}" for k in FIELDS[:-1]))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except MixRecError as error:
        sys.exit(f"error: {error}")
