"""Put models trained in separate ``benchmarks.compare`` runs into one table and one figure.

``python -m benchmarks.merge --out DIR RUN[:MODEL][=LABEL] ...``

Long models are trained one per ``compare`` run (each resumable on its own); this gathers their
finished records into ``DIR``: ``results.csv``, ``table.md``, ``bars.png``, ``curves.csv`` and
``curves.png`` (compare's own writers, so the layout is the same), ``models/<label>.json`` and
``sources.md``, which says for every row the run directory, model and settings it came from.

``RUN`` is a compare run directory (``<out>/<dataset>/<timestamp>``) or an earlier merge's
``--out`` folder; ``:MODEL`` takes one of its models (default: every finished one); ``=LABEL``
names the row, e.g. ``=MixRec_noBO`` for an all-serial MixRec run. Every run must be on the same
dataset. Nothing is trained or re-scored.

Why a merged folder is a source too: run directories (checkpoints, logs) stay on the machine
that trained them, while the merged folders are committed; a row trained later joins the
committed ones from there. Its rows keep the ``source`` they were first merged from.
"""

import argparse
import json
import os
import sys

from benchmarks.compare import load_records, save_record, write_outputs
from recbole_mixrec.errors import MixRecError


def parse_source(text):
    """``RUN[:MODEL][=LABEL]`` -> (run_dir, model or None, label or None)."""
    head, _, label = text.partition("=")
    run_dir, colon, model = head.rpartition(":")
    if not colon:
        run_dir, model = head, ""
    return run_dir, model or None, label or None


def read_run(run_dir):
    path = os.path.join(run_dir, "run.json")
    if not os.path.isfile(path):
        raise MixRecError(f"{run_dir} is not a benchmarks.compare run directory or merged folder (no run.json)")
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def gather(sources):
    """The merged records (labelled, with their ``source``) and the common dataset name."""
    merged, dataset = {}, None
    for text in sources:
        run_dir, model, label = parse_source(text)
        run = read_run(run_dir)
        if dataset is not None and run.get("dataset") != dataset:
            raise MixRecError(f"{run_dir} holds a run on '{run.get('dataset')}', the others on '{dataset}'")
        dataset = run.get("dataset")
        finished = {r["model"]: r for r in load_records(run_dir, run.get("models", ())) if r.get("status") == "ok"
                    # a merged folder: only its own rows (models/ may keep a row an earlier merge dropped)
                    and (not run.get("merged") or r["model"] in run["models"])}
        if not finished:
            raise MixRecError(f"{run_dir} has no finished model")
        if model is not None and model not in finished:
            raise MixRecError(f"{run_dir} has no finished {model} (finished: {sorted(finished)})")
        if model is None and label is not None and len(finished) != 1:
            raise MixRecError(f"{text}: a label names one model; say which with RUN:MODEL=LABEL")
        for name in [model] if model else list(finished):
            row = label or name
            if row in merged:
                raise MixRecError(f"two rows named {row}: give one a label (RUN:MODEL=LABEL)")
            source = finished[name].get("source") or {  # a merged folder's row: where it was trained
                "run_dir": os.path.abspath(run_dir), "model": name,
                "config_files": run.get("config_files"), "config_dict": run.get("config_dict")}
            merged[row] = dict(finished[name], model=row, source=source)
    return list(merged.values()), dataset


def write_sources(records, path):
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("| row | model | run | config files | other settings |\n|---|---|---|---|---|\n")
        for record in records:
            source = record["source"]
            files = " ".join(source["config_files"] or []) or "-"
            settings = " ".join(f"--{k}={v}" for k, v in (source["config_dict"] or {}).items()) or "-"
            handle.write(f"| {record['model']} | {source['model']} | `{source['run_dir']}` | `{files}` | `{settings}` |\n")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.merge", description=__doc__.splitlines()[0])
    parser.add_argument("sources", nargs="+", metavar="RUN[:MODEL][=LABEL]")
    parser.add_argument("--out", required=True, help="folder for the merged table and curves")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        records, dataset = gather(args.sources)
    except MixRecError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    for record in records:
        save_record(args.out, record)
    write_outputs(args.out, records, dataset)
    write_sources(records, os.path.join(args.out, "sources.md"))
    with open(os.path.join(args.out, "run.json"), "w", encoding="utf-8") as handle:
        # what read_run needs, so that this folder can be merged into a later table
        json.dump({"dataset": dataset, "models": [r["model"] for r in records], "merged": True}, handle, indent=1)
    print(f"{len(records)} rows ({', '.join(r['model'] for r in records)}) of {dataset} in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
