"""Command line: ``python run_recbole_mixrec.py --model=MixRec --dataset=ml-100k [--key=value ...]``.

Like RecBole's ``run_recbole.py``: ``--config_files="a.yaml b.yaml"`` adds yaml files and every
other ``--key=value`` becomes a config entry. Plugin models and RecBole's own models (GRU4Rec,
SASRec, BERT4Rec, FDSA, ...) run on the same split, metrics and evaluator.
"""

import argparse
import sys
import warnings

from recbole_mixrec.errors import MixRecError


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="run_recbole_mixrec.py",
        description="Train and test MixRec or a RecBole baseline with full-ranking leave-one-out evaluation.",
        epilog="Any other --key=value is a RecBole/MixRec config entry, e.g. --epochs=5 --backbone=tiny-random.",
    )
    parser.add_argument("--model", "-m", default="MixRec", help="MixRec, or a RecBole model such as SASRec")
    parser.add_argument("--dataset", "-d", default="ml-100k", help="ml-100k (packaged) or a dataset under data_path")
    parser.add_argument("--config_files", default=None, help='space-separated yaml files, e.g. "a.yaml b.yaml"')
    args, rest = parser.parse_known_args(argv)
    config_dict = {}
    for arg in rest:
        key, sep, value = arg[2:].partition("=") if arg.startswith("--") else ("", "", "")
        if not sep or not key:
            parser.error(f"unrecognised argument '{arg}': config entries are written --key=value")
        config_dict[key] = value  # RecBole's Config converts the strings to numbers, lists, ...
    files = args.config_files.split() if args.config_files else None
    return args.model, args.dataset, files, config_dict


def main(argv=None):
    model, dataset, config_files, config_dict = parse_args(sys.argv[1:] if argv is None else argv)
    # RecBole 1.2.1 on pandas 2.x emits pandas FutureWarnings on every run; they are not ours
    warnings.filterwarnings("ignore", category=FutureWarning, module="recbole")
    import recbole_mixrec  # noqa: F401  registers the plugin models with RecBole
    from recbole_mixrec.quick_start import run_mixrec

    try:
        result = run_mixrec(model, dataset, config_files, config_dict)
    except MixRecError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    metrics = "  ".join(f"{k}: {v:.4f}" for k, v in result["test_result"].items())
    print(f"{model} on {dataset}: test {metrics}")
    return 0
