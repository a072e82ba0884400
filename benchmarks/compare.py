"""Run several models on one dataset and write the paper's Table 2 for them.

``python -m benchmarks.compare --dataset ml-100k --models GRU4Rec,SASRec,MixRec
[--config_files "a.yaml b.yaml"] [--out results] [--resume DIR] [--key=value ...]``

Every model goes through ``run_mixrec`` (same split, seed, metrics and evaluator), one after
another. ``<out>/<dataset>/<timestamp>/`` receives:

* ``models/<model>.json``: one record per finished model, written as soon as it ends;
* ``results.csv``, ``table.md`` (Table 2 layout, best per row in bold, "Improv." = best plugin
  model over best baseline) and ``bars.png``, rewritten after every model;
* ``curves.csv`` (model, epoch, train_loss, valid_<metric>) and ``curves.png`` (training loss
  and validation metric per epoch, one line per model), also rewritten after every model, from
  the learning curve each model's trainer records (``learning_curve`` in its record);
* ``configs/<model>.yaml`` (the final config's plain entries), ``checkpoints/<model>/``;
* ``stats.md``: the dataset's Table-1 statistics (``dataset_tools`` stats).

``--resume DIR`` continues a run: models with an "ok" record are not re-run; the others are,
from their checkpoints in ``checkpoints/<model>/`` when there are some (a run stopped midway
continues after its last validation; from its best epoch when it has no ``*-last.pth``; its
learning curve, saved in the checkpoint, continues too).
A model that raises is recorded with ``status=failed`` and its error; the others go on.
"""

import argparse
import csv
import json
import os
import sys
import time
import traceback

import yaml

from recbole_mixrec.cli import config_entries, quiet_recbole_warnings, split_files
from recbole_mixrec.errors import MixRecError

METRICS = ("ndcg@10", "recall@10", "mrr@10")
METRIC_LABELS = {"ndcg@10": "NDCG@10", "recall@10": "Recall@10", "mrr@10": "MRR@10"}
CSV_FIELDS = ("model", "status", *METRICS, "valid_score", "valid_metric", "epochs", "best_epoch", "wall_time_s",
              "resumed_from", "time_before_resume_s", "error")
PLAIN_TYPES = (str, int, float, bool, type(None))


# ---------------------------------------------------------------- command line

def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.compare",
        description="Train and test several models on one dataset; write results.csv, table.md, bars.png, "
                    "curves.csv, curves.png.",
        epilog="Any other --key=value is a config entry for every model, e.g. --epochs=1.",
    )
    parser.add_argument("--dataset", "-d", default="ml-100k", help="ml-100k (packaged) or a dataset under data_path")
    parser.add_argument("--models", "-m", required=True, help="comma-separated, e.g. GRU4Rec,SASRec,MixRec")
    parser.add_argument("--config_files", default=None, help='space-separated yaml files, e.g. "a.yaml b.yaml"')
    parser.add_argument("--out", default="results", help="results root (default: %(default)s)")
    parser.add_argument("--resume", default=None, metavar="DIR", help="continue the run in DIR")
    args, rest = parser.parse_known_args(argv)
    config_dict = config_entries(parser, rest)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not args.models:
        parser.error("--models is empty")
    args.config_files = split_files(args.config_files)
    args.config_dict = config_dict
    return args


# ---------------------------------------------------------------- records

def record_path(run_dir, model):
    return os.path.join(run_dir, "models", f"{model}.json")


def load_records(run_dir, models=()):
    """Finished-model records of ``run_dir``: ``models`` first (in order), then any others."""
    directory = os.path.join(run_dir, "models")
    names = sorted(f[:-5] for f in os.listdir(directory) if f.endswith(".json")) if os.path.isdir(directory) else []
    ordered = [m for m in models if m in names] + [m for m in names if m not in models]
    records = []
    for name in ordered:
        with open(record_path(run_dir, name), encoding="utf-8") as handle:
            records.append(json.load(handle))
    return records


def save_record(run_dir, record):
    path = record_path(run_dir, record["model"])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w", encoding="utf-8") as handle:
        json.dump(record, handle, indent=1)
    os.replace(path + ".tmp", path)  # a crash never leaves half a record


class _NotPlain(Exception):
    pass


def to_plain(value):
    """``value`` with tuples as lists if it is built from yaml-safe types; else raise _NotPlain."""
    if isinstance(value, PLAIN_TYPES):
        return value
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    raise _NotPlain


def dump_config(config, path):
    """Write the plain-type entries of a RecBole Config's final dict as yaml (enums, devices,
    ... are left out)."""
    entries = {}
    for key, value in config.final_config_dict.items():
        try:
            entries[key] = to_plain(value)
        except _NotPlain:
            pass
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        yaml.safe_dump(entries, handle, sort_keys=True)


def last_checkpoint(checkpoint_dir):
    """The checkpoint to resume from in ``checkpoint_dir``, or None: the newest resume
    checkpoint (``*-last.pth``, the state after the last validation), else the newest best one."""
    if not os.path.isdir(checkpoint_dir):
        return None
    files = [os.path.join(checkpoint_dir, f) for f in os.listdir(checkpoint_dir) if f.endswith(".pth")]
    return max(files, key=lambda f: (f.endswith("-last.pth"), os.path.getmtime(f)), default=None)


def run_one(model, dataset, run_dir, config_files, config_dict):
    """Train and test one model; return its record (never raises for a model's failure)."""
    from recbole_mixrec.quick_start import build_config, run_mixrec

    checkpoint_dir = os.path.join(run_dir, "checkpoints", model)
    config_dict = dict(config_dict, checkpoint_dir=checkpoint_dir)
    resume_file = last_checkpoint(checkpoint_dir)
    if resume_file:
        print(f"resume {model} from {resume_file}", flush=True)
    record = {"model": model, "status": "failed", "error": "", "time_before_resume_s": 0.0,
              "resumed_from": os.path.basename(resume_file) if resume_file else ""}
    start = time.perf_counter()
    try:
        config = build_config(model, dataset, config_files, config_dict, strict=True)
        dump_config(config, os.path.join(run_dir, "configs", f"{model}.yaml"))
        result = run_mixrec(model, dataset, config_files, config_dict, resume_file=resume_file, strict=True)
    except Exception as err:  # a failing model must not stop the others
        traceback.print_exc()
        record["error"] = f"{type(err).__name__}: {err}".splitlines()[0]
    else:
        test = result["test_result"]
        record.update(status="ok", valid_score=float(result["best_valid_score"]),
                      valid_metric=config["valid_metric"],
                      saved_model_file=result["saved_model_file"],
                      epochs=result["epochs_trained"], best_epoch=result["best_epoch"],
                      learning_curve=result["learning_curve"],
                      **{m: float(test[m]) for m in METRICS if m in test})
        before = result["time_before_resume_s"]  # None: a checkpoint older than that field
        record["time_before_resume_s"] = "" if before is None else round(before, 2)
    # a resumed model: this process plus the earlier runs' training up to their last checkpoint,
    # as saved in it (the table says when that time is unknown)
    record["wall_time_s"] = round(time.perf_counter() - start + float(record["time_before_resume_s"] or 0), 2)
    return record


# ---------------------------------------------------------------- outputs

def write_csv(records, path):
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for record in records:
            writer.writerow({k: record.get(k, "") for k in CSV_FIELDS})


def is_plugin_model(name):
    """A MixRec-family model: registered by the plugin and named MixRec*. LLMRec (a paper
    baseline) and the plugin's other systems (LiteLLM4Rec, Hydra) count as baselines."""
    from recbole_mixrec.registry import PLUGIN_MODELS

    return name in PLUGIN_MODELS and name.startswith("MixRec")


def improvement(values, is_plugin=is_plugin_model):
    """Improvement of the best MixRec-family model over the best baseline, e.g. "+20.0%", or "n/a".

    ``values`` maps model name to one metric's value.
    """
    ours = [v for m, v in values.items() if is_plugin(m)]
    theirs = [v for m, v in values.items() if not is_plugin(m)]
    if not ours or not theirs or max(theirs) <= 0:
        return "n/a"
    return f"{(max(ours) - max(theirs)) / max(theirs) * 100:+.1f}%"


def is_general_model(name):
    """A RecBole general (non-sequential) recommender such as Pop or BPR."""
    import recbole.model.general_recommender as general

    return isinstance(getattr(general, name, None), type)


def markdown_table(records, is_plugin=is_plugin_model):
    """Paper Table 2 layout: rows = metrics, columns = (successful) models, then "Improv."."""
    done = [r for r in records if r.get("status") == "ok"]
    models = [r["model"] for r in done]
    rows = [["Metric", *models, "Improv."], ["---"] * (len(models) + 2)]
    for metric in METRICS:
        values = {r["model"]: r[metric] for r in done if r.get(metric) is not None}
        best = max(values.values(), default=None)
        cells = [METRIC_LABELS[metric]]
        for model in models:
            value = values.get(model)
            text = "-" if value is None else f"{value:.4f}"
            cells.append(f"**{text}**" if value is not None and value == best else text)
        rows.append(cells + [improvement(values, is_plugin)])
    lines = ["| " + " | ".join(row) + " |" for row in rows]
    trained = [f"{r['model']} {r['epochs']} ({r['best_epoch']})" for r in done if r.get("epochs")]
    if trained:  # was it trained to convergence? (early stopping or the epoch cap)
        lines += ["", "Epochs trained (best epoch, 0-based): " + ", ".join(trained) + "."]
    resumed = [r for r in done if r.get("resumed_from")]
    summed = [r["model"] for r in resumed if float(r.get("time_before_resume_s") or 0) > 0]
    last_only = [r["model"] for r in resumed if r["model"] not in summed]
    if summed:
        lines += ["", "Resumed from a checkpoint (wall time adds the earlier runs' training time): "
                  + ", ".join(summed) + "."]
    if last_only:
        lines += ["", "Resumed from a checkpoint (wall time of the last run only): " + ", ".join(last_only) + "."]
    general = [r["model"] for r in done if is_general_model(r["model"])]
    if general:  # RecBole's evaluator: history_index for general models, None for sequential ones
        lines += ["", "General models (" + ", ".join(general) + "): RecBole's full ranking leaves each "
                  "user's training items out of their candidates; sequential models rank every item, "
                  "so their figures are not on the same footing."]
    failed = [r for r in records if r.get("status") != "ok"]
    if failed:
        lines.append("")
        lines += [f"- {r['model']} failed: {r.get('error', '')}" for r in failed]
    return "\n".join(lines) + "\n"


def write_markdown_table(records, path, is_plugin=is_plugin_model):
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(markdown_table(records, is_plugin))


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def plot_bars(records, path, title=""):
    """Grouped bar chart: one group per metric, one bar per successful model."""
    plt = pyplot()
    done = [r for r in records if r.get("status") == "ok"]
    if not done:
        return False
    width = 0.8 / len(done)
    fig, ax = plt.subplots(figsize=(2 + 1.5 * len(METRICS) + 0.3 * len(done), 4))
    for i, record in enumerate(done):
        xs = [j + (i - (len(done) - 1) / 2) * width for j in range(len(METRICS))]
        ax.bar(xs, [record.get(m) or 0.0 for m in METRICS], width, label=record["model"])
    ax.set_xticks(range(len(METRICS)), [METRIC_LABELS[m] for m in METRICS])
    ax.set_ylabel("score")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def curve_records(records):
    """The successful records that hold a learning curve (older records have none)."""
    return [r for r in records if r.get("status") == "ok" and r.get("learning_curve")]


def valid_column(metric):
    return f"valid_{metric.lower()}"  # e.g. valid_mrr@10, like results.csv's metric columns


def write_curves_csv(records, path):
    """One row per model and epoch: model, epoch, train_loss, valid_<metric> (one column per
    validation metric in use; empty in an epoch without validation)."""
    done = curve_records(records)
    columns = list(dict.fromkeys(valid_column(r["valid_metric"]) for r in done))
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["model", "epoch", "train_loss", *columns], restval="")
        writer.writeheader()
        for record in done:
            for point in record["learning_curve"]:
                row = {"model": record["model"], "epoch": point["epoch"], "train_loss": point["train_loss"]}
                if point["valid_score"] is not None:
                    row[valid_column(record["valid_metric"])] = point["valid_score"]
                writer.writerow({k: "" if v is None else v for k, v in row.items()})


def plot_curves(records, path, title=""):
    """Two panels, training loss and validation metric against the epoch, one line per model
    (the same colour in both)."""
    from matplotlib.ticker import MaxNLocator

    done = curve_records(records)
    if not done:
        return False
    plt = pyplot()
    fig, (loss_ax, valid_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for record in done:
        curve = record["learning_curve"]
        losses = [(p["epoch"], p["train_loss"]) for p in curve if p["train_loss"] is not None]
        scores = [(p["epoch"], p["valid_score"]) for p in curve if p["valid_score"] is not None]
        color = None
        if losses:
            (line,) = loss_ax.plot(*zip(*losses), marker=".", label=record["model"])
            color = line.get_color()
        if len(scores) == 1:  # one validation (Pop): a level to compare the others with
            valid_ax.axhline(scores[0][1], linestyle="--", color=color, label=record["model"])
        elif scores:
            valid_ax.plot(*zip(*scores), marker=".", color=color, label=record["model"])
    metrics = sorted({r["valid_metric"] for r in done})
    loss_ax.set(title="training loss", xlabel="epoch (0-based)", ylabel="loss (mean over batches)")
    valid_ax.set(title="validation", xlabel="epoch (0-based)", ylabel=f"valid {' / '.join(metrics)}")
    for ax in (loss_ax, valid_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    (valid_ax if valid_ax.lines else loss_ax).legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def dataset_stats(config):
    """Table-1 statistics of the dataset's atomic .inter file (``dataset_tools`` code)."""
    from dataset_tools import atomic

    inter = atomic.read_inter(config["data_path"], config["dataset"])
    return atomic.stats_line(config["dataset"], inter), atomic.stats(inter)


def write_stats(name, stats, path):
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("| Dataset | #Users | #Items | #Inter. | Avg. items |\n|---|---|---|---|---|\n")
        handle.write(f"| {name} | {stats['users']:,} | {stats['items']:,} | {stats['inter']:,} | {stats['avg']:.2f} |\n")


def write_outputs(run_dir, records, dataset):
    write_csv(records, os.path.join(run_dir, "results.csv"))
    write_markdown_table(records, os.path.join(run_dir, "table.md"))
    plot_bars(records, os.path.join(run_dir, "bars.png"), title=dataset)
    write_curves_csv(records, os.path.join(run_dir, "curves.csv"))
    plot_curves(records, os.path.join(run_dir, "curves.png"), title=f"{dataset}: learning curves")


# ---------------------------------------------------------------- main

def prepare(args):
    """Check models and dataset before any training; return (run_dir, first model's config)."""
    from recbole_mixrec.quick_start import build_config, check_dataset_files, check_model, require_writable_folder

    for model in args.models:
        check_model(model)
    # every model's settings checked before the first one trains
    config = [build_config(model, args.dataset, args.config_files, args.config_dict, strict=True)
              for model in args.models][0]
    check_dataset_files(config)
    if args.resume:
        if not os.path.isdir(args.resume):
            raise MixRecError(f"--resume: no such directory {args.resume}")
        run_dir = args.resume
    else:
        run_dir = os.path.join(args.out, args.dataset, time.strftime("%Y%m%d-%H%M%S"))
    run_file = os.path.join(run_dir, "run.json")
    if os.path.isfile(run_file):
        with open(run_file, encoding="utf-8") as handle:
            previous = json.load(handle)
        if previous.get("dataset") != args.dataset:
            raise MixRecError(f"{run_dir} holds a run on '{previous.get('dataset')}', not '{args.dataset}'")
        if previous.get("config_dict") != args.config_dict or previous.get("config_files") != args.config_files:
            print(f"warning: {run_dir} was started with other settings: {previous}", file=sys.stderr)
    else:
        require_writable_folder(run_dir, "--out" if not args.resume else "--resume")
        with open(run_file, "w", encoding="utf-8") as handle:
            json.dump({"dataset": args.dataset, "models": args.models, "config_files": args.config_files,
                       "config_dict": args.config_dict}, handle, indent=1)
    return run_dir, config


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # RecBole 1.2.1 on pandas 2.x emits pandas FutureWarnings on every run; they are not ours
    quiet_recbole_warnings()
    import recbole_mixrec  # noqa: F401  registers the plugin models with RecBole
    from dataset_tools import DatasetToolError

    try:
        run_dir, config = prepare(args)
    except MixRecError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"results: {run_dir}", flush=True)
    try:
        line, stats = dataset_stats(config)
        print(line, flush=True)
        write_stats(args.dataset, stats, os.path.join(run_dir, "stats.md"))
    except DatasetToolError as err:
        print(f"warning: no dataset statistics: {err}", file=sys.stderr)

    for model in args.models:
        done = {r["model"]: r for r in load_records(run_dir, args.models)}
        if done.get(model, {}).get("status") == "ok":
            print(f"skip {model}: already done ({done[model]['wall_time_s']} s)", flush=True)
            continue
        print(f"run {model} ...", flush=True)
        record = run_one(model, args.dataset, run_dir, args.config_files, args.config_dict)
        save_record(run_dir, record)
        write_outputs(run_dir, load_records(run_dir, args.models), args.dataset)
        print(f"{model}: {record['status']} in {record['wall_time_s']} s {record.get('error', '')}", flush=True)

    records = load_records(run_dir, args.models)
    write_outputs(run_dir, records, args.dataset)
    print(markdown_table(records), flush=True)
    return 0 if all(r["status"] == "ok" for r in records if r["model"] in args.models) else 1


if __name__ == "__main__":
    sys.exit(main())
