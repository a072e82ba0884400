"""``python -m recbole_mixrec.search --model=MixRec --dataset=ml-100k [--config_files="a.yaml"]
[--key=value ...]``: architecture search (spec section 3.4); keys in properties/search.yaml."""

import argparse
import sys

from recbole_mixrec.cli import config_entries, quiet_recbole_warnings, split_files
from recbole_mixrec.errors import MixRecError


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m recbole_mixrec.search",
        description="Bayesian-optimisation search of MixRec's DAMoE architecture (serial/parallel adapters).",
        epilog="Any other --key=value is a config entry, e.g. --bo_iterations=10 --backbone=tiny-random.",
    )
    parser.add_argument("--model", "-m", default="MixRec")
    parser.add_argument("--dataset", "-d", default="ml-100k")
    parser.add_argument("--config_files", default=None, help='space-separated yaml files, e.g. "a.yaml b.yaml"')
    args, rest = parser.parse_known_args(argv)
    return args.model, args.dataset, split_files(args.config_files), config_entries(parser, rest)


def train_command(model, dataset, files, best_file):
    """The full training of the found design: the trials trained with the user's config files,
    so the full run needs them too, with the design's file last (it wins)."""
    listed = " ".join(list(files or []) + [best_file])  # --config_files splits on spaces
    return f'python run_recbole_mixrec.py --model={model} --dataset={dataset} --config_files="{listed}"'


def main(argv=None):
    model, dataset, files, config_dict = parse_args(sys.argv[1:] if argv is None else argv)
    quiet_recbole_warnings()
    import recbole_mixrec  # noqa: F401
    from recbole_mixrec.search.run import run_search

    try:
        best, results = run_search(model, dataset, files, config_dict)
    except MixRecError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    b = results["best"]
    print(f"best architecture: {best} (trial {b['trial_id']}, valid MRR@10 {b['value']:.4f}, "
          f"{len(results['records'])} trials)")
    print(f"wrote {results['best_architecture_file']}, {results['summary_md']}, {results['plot']}")
    print(f"train it: {train_command(model, dataset, files, results['best_architecture_file'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
