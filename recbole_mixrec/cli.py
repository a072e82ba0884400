"""Command line: ``python run_recbole_mixrec.py --model=MixRec --dataset=ml-100k [--key=value ...]``.

Like RecBole's ``run_recbole.py``: ``--config_files="a.yaml b.yaml"`` adds yaml files and every
other ``--key=value`` becomes a config entry. Plugin models and RecBole's own sequential and
general models (GRU4Rec, SASRec, BERT4Rec, FDSA, Pop, BPR, ...) run on the same split, metrics
and evaluator.
``--search=bo`` first searches MixRec's architecture (spec 3.4), then trains with the best one.
``--resume_file=<checkpoint>`` continues a run that was cut off.
"""

import argparse
import sys
import warnings

from recbole_mixrec.errors import MixRecError


def config_entries(parser, rest):
    """``--key=value`` arguments -> config dict (string values: RecBole's Config converts them
    to numbers, lists, ... as it does for its own command line)."""
    config_dict = {}
    for arg in rest:
        key, sep, value = arg[2:].partition("=") if arg.startswith("--") else ("", "", "")
        if not sep or not key:
            parser.error(f"unrecognised argument '{arg}': config entries are written --key=value")
        config_dict[key] = value
    return config_dict


def split_files(value):
    return value.split() if value else None


def quiet_recbole_warnings():
    # RecBole 1.2.1 on pandas 2.x emits pandas FutureWarnings on every run; they are not ours
    warnings.filterwarnings("ignore", category=FutureWarning, module="recbole")


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="run_recbole_mixrec.py",
        description="Train and test MixRec or a RecBole baseline with full-ranking leave-one-out evaluation.",
        epilog="Any other --key=value is a RecBole/MixRec config entry, e.g. --epochs=5 --backbone=tiny-random.",
    )
    parser.add_argument("--model", "-m", default="MixRec", help="MixRec (or a variant), or a RecBole model such as SASRec")
    parser.add_argument("--dataset", "-d", default="ml-100k", help="ml-100k (packaged) or a dataset under data_path")
    parser.add_argument("--config_files", default=None, help='space-separated yaml files, e.g. "a.yaml b.yaml"')
    parser.add_argument("--search", choices=("none", "bo"), default="none",
                        help="bo: Bayesian-optimisation search of the DAMoE architecture first (bo_* keys)")
    parser.add_argument("--resume_file", default=None, metavar="CHECKPOINT",
                        help="continue training from a checkpoint of this model and config "
                             "(<checkpoint>-last.pth: after its last validation)")
    several = parser.add_argument_group("several processes (RecBole's run_recbole.py flags)")
    several.add_argument("--nproc", type=int, default=1, help="processes on this machine (one per GPU, or CPU processes with gloo)")
    several.add_argument("--world_size", type=int, default=-1, help="processes on all machines (default: --nproc)")
    several.add_argument("--ip", default="localhost", help="address of the machine running rank 0")
    several.add_argument("--port", default="5678", help="free port on that machine")
    several.add_argument("--group_offset", type=int, default=0, help="global rank of this machine's first process")
    args, rest = parser.parse_known_args(argv)
    return args, split_files(args.config_files), config_entries(parser, rest)


def main(argv=None):
    args, config_files, config_dict = parse_args(sys.argv[1:] if argv is None else argv)
    quiet_recbole_warnings()
    import recbole_mixrec  # noqa: F401  registers the plugin models with RecBole
    from recbole_mixrec.quick_start import run_mixrec

    try:
        if args.search == "bo":
            from recbole_mixrec.quick_start import build_config
            from recbole_mixrec.search import run_search

            build_config(args.model, args.dataset, config_files, config_dict, strict=True)  # typos: before the search

            best, found = run_search(args.model, args.dataset, config_files, config_dict)
            print(f"best architecture {best}: {found['best_architecture_file']}")
            # the final run trains on all users with the best architecture
            config_files = (config_files or []) + [found["best_architecture_file"]]
            config_dict = {k: v for k, v in config_dict.items() if not k.startswith("bo_")}
        if args.nproc != 1 or args.world_size not in (-1, 1):
            from recbole_mixrec import distributed
            from recbole_mixrec.quick_start import build_config

            config_dict.update(distributed.launch_settings(
                args.nproc, args.world_size, args.ip, args.port, args.group_offset))
            config = build_config(args.model, args.dataset, config_files, config_dict, strict=True)
            distributed.check_distributed(config)  # before any process starts
            result = distributed.spawn(run_mixrec, args.nproc, (args.model, args.dataset, config_files, config_dict),
                                       {"resume_file": args.resume_file, "strict": True})
        else:
            result = run_mixrec(args.model, args.dataset, config_files, config_dict, resume_file=args.resume_file,
                                strict=True)
    except MixRecError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    metrics = "  ".join(f"{k}: {v:.4f}" for k, v in result["test_result"].items())
    print(f"{args.model} on {args.dataset}: test {metrics}")
    return 0
