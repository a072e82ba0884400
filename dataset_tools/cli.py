"""Command line: ``python -m dataset_tools {amazon2018,lcrec,csv,unisrec,stats} ...``."""
import argparse
import logging
import os
import sys

from . import amazon2018, atomic, csv_source, filters, lcrec, unisrec
from .errors import DatasetToolError

log = logging.getLogger("dataset_tools")


def _add_output(parser, description_help="also write the description column"):
    parser.add_argument("--name", required=True, help="dataset name, e.g. amazon-arts")
    parser.add_argument("--out", default="dataset", help="output root; files go to OUT/NAME/NAME.inter|.item (default: dataset)")
    parser.add_argument("--with-description", action="store_true", help=description_help)


def _add_filters(parser, min_item, min_user, drop_untitled, dedup):
    group = parser.add_argument_group("filters (applied in this order; 0 disables a step)")
    group.add_argument("--dedup", action=argparse.BooleanOptionalAction, default=dedup,
                       help="keep only the earliest interaction per (user, item)")
    group.add_argument("--drop-untitled", action=argparse.BooleanOptionalAction, default=drop_untitled,
                       help="drop items without a title")
    group.add_argument("--min-item-inter", type=int, default=min_item, metavar="N", help="drop items with < N interactions")
    group.add_argument("--min-user-inter", type=int, default=min_user, metavar="N", help="then drop users with < N interactions")
    group.add_argument("--kcore", type=int, default=0, metavar="K", help="then apply an iterated K-core")


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m dataset_tools", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("amazon2018", help="raw Amazon Review 2018 files -> atomic files")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--reviews", help="<Cat>_5.json.gz or <Cat>.json.gz (json lines)")
    source.add_argument("--ratings", help="ratings-only <Cat>.csv (no header)")
    p.add_argument("--ratings-columns", default=",".join(amazon2018.RATINGS_COLUMNS),
                   help="column order of --ratings (default: item,user,rating,timestamp, as published)")
    p.add_argument("--meta", required=True, help="meta_<Cat>.json.gz")
    _add_output(p)
    _add_filters(p, min_item=4, min_user=3, drop_untitled=True, dedup=True)

    p = sub.add_parser("lcrec", help="LC-Rec <P>.inter.json/<P>.item.json -> atomic files (timestamp = position)")
    p.add_argument("--input", required=True, help="directory holding <P>.inter.json and <P>.item.json")
    p.add_argument("--prefix", help="<P> (default: the single *.inter.json in --input)")
    _add_output(p)
    _add_filters(p, min_item=0, min_user=0, drop_untitled=False, dedup=False)

    p = sub.add_parser("csv", help="interactions.csv.gz/items.csv.gz -> atomic files (rating 1.0 if absent)")
    p.add_argument("--input", required=True, help="directory holding the two CSV files")
    p.add_argument("--interactions", default="interactions.csv.gz", help="file name (default: %(default)s)")
    p.add_argument("--items", default="items.csv.gz", help="file name (default: %(default)s)")
    _add_output(p, "also write the description column (if items has one)")
    _add_filters(p, min_item=0, min_user=0, drop_untitled=False, dedup=False)

    p = sub.add_parser("unisrec", help="published pre-split <P>.train/valid/test.inter + <P>.text (UniSRec, VQ-Rec, "
                       "MISSRec) -> atomic files whose leave-one-out split is the published one")
    p.add_argument("--input", required=True, help="directory holding <P>.train.inter, .valid.inter, .test.inter, "
                   ".text and .item2index")
    p.add_argument("--prefix", help="<P> (default: the single *.train.inter in --input)")
    p.add_argument("--name", required=True, help="dataset name, e.g. unisrec-scientific")
    p.add_argument("--out", default="dataset", help="output root; files go to OUT/NAME/NAME.inter|.item|.yaml (default: dataset)")

    p = sub.add_parser("stats", help="print #users #items #inter avg_items_per_user of an atomic dataset")
    p.add_argument("dataset", help="dataset directory, or a name looked up under --data-path")
    p.add_argument("--data-path", default="dataset", help="RecBole data_path (default: dataset)")
    return parser


def _check_args(args):
    """Reject bad arguments before any (possibly long) reading."""
    for flag in ("min_item_inter", "min_user_inter", "kcore"):
        value = getattr(args, flag, 0)
        if value < 0:
            raise DatasetToolError(f"--{flag.replace('_', '-')} {value}: must be 0 (step off) or more")
    if getattr(args, "input", None) is not None and not os.path.isdir(args.input):
        raise DatasetToolError(f"--input {args.input}: no such directory")
    if getattr(args, "ratings", None):
        amazon2018.check_ratings_columns(tuple(c.strip() for c in args.ratings_columns.split(",")))
    atomic.check_output(args.out, args.name)


def _convert(args):
    """Run a converter subcommand; return the filtered interactions."""
    _check_args(args)
    text_columns = ["title", "brand", "categories"]
    if args.command == "unisrec":
        # no filters: the published split is kept as it is
        inter, items, cap = unisrec.read(args.input, args.prefix)
        directory = atomic.write_atomic(inter, items, args.out, args.name, ["text"],
                                        extra={f"{args.name}.yaml": unisrec.dataset_yaml(args.name, cap)})
        log.info("%s/%s.yaml is read by run_recbole_mixrec.py --dataset=%s", directory, args.name, args.name)
        return inter
    if args.command == "amazon2018":
        inter, items = amazon2018.convert(
            args.meta, args.reviews, args.ratings, tuple(c.strip() for c in args.ratings_columns.split(",")),
            args.drop_untitled, args.min_item_inter, args.min_user_inter, args.kcore, args.dedup)
    else:
        if args.command == "lcrec":
            inter, items = lcrec.read(args.input, args.prefix)
        else:
            inter, items, text_columns = csv_source.read(args.input, args.interactions, args.items)
            text_columns = [c for c in text_columns if c != "description"]
        titled = set(items.item_id[items.title != ""]) if args.drop_untitled else None
        inter = filters.apply_filters(inter, titled, args.min_item_inter, args.min_user_inter, args.kcore, args.dedup)
    if args.with_description and "description" in items:
        text_columns.append("description")
    atomic.write_atomic(inter, items, args.out, args.name, text_columns)
    return inter


def _stats_directory(args):
    """The dataset folder ``stats`` reads: a path, or a name under --data-path."""
    if os.path.isdir(args.dataset):
        return args.dataset
    directory = os.path.join(args.data_path, args.dataset)
    if not os.path.isdir(directory):
        where = "" if os.path.abspath(directory) == os.path.abspath(args.dataset) else f" nor {directory}"
        raise DatasetToolError(f"{args.dataset}: no such dataset (no directory {args.dataset}{where})")
    return directory


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "stats":
            directory = _stats_directory(args)
            name, inter = os.path.basename(os.path.normpath(directory)), atomic.read_inter(directory)
        else:
            name, inter = args.name, _convert(args)
    except DatasetToolError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a disk or permission problem the checks above did not foresee
        print(f"error: {exc.filename}: {exc.strerror}" if exc.filename else f"error: {exc}", file=sys.stderr)
        return 2
    print(atomic.stats_line(name, inter))
    return 0
