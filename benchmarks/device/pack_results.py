"""Pack a device run's results for the trip back (at most 8 files of 16 MiB, 64 MiB in all).

    python benchmarks/device/pack_results.py RESULTS_ROOT OUT_DIR

Writes OUT_DIR/results.tgz (every run dir without its checkpoints, plus logs/) and, for the
models without a finished record, their checkpoints: the best one first (a run resumes from
it), then ``-last`` ones while the budget lasts, in one tar split into 15 MiB parts
``ckpt.tar.partNN`` (rejoin with ``cat ckpt.tar.part* > ckpt.tar``).
"""

import glob
import json
import os
import sys
import tarfile

PART = 15 * 2**20
BUDGET = 58 * 2**20  # bytes of checkpoints; results.tgz and the 8-file cap take the rest
MAX_PARTS = 6
PRIORITY = ("amazon-scientific/quality/", "ml-100k/", "amazon-scientific/paper/")


def finished(run_dir, model):
    path = os.path.join(run_dir, "models", f"{model}.json")
    if not os.path.isfile(path):
        return False
    with open(path, encoding="utf-8") as handle:
        return json.load(handle).get("status") == "ok"


def unfinished_checkpoints(root):
    """(best files, last files) of unfinished models, in PRIORITY order."""
    best, last = [], []
    for folder in sorted(glob.glob(os.path.join(root, "*", "*", "checkpoints", "*"))):
        run_dir = os.path.dirname(os.path.dirname(folder))
        if finished(run_dir, os.path.basename(folder)):
            continue
        for path in sorted(glob.glob(os.path.join(folder, "*.pth"))):
            (last if path.endswith("-last.pth") else best).append(path)

    def rank(path):
        return next((i for i, key in enumerate(PRIORITY) if key in path), len(PRIORITY))

    return sorted(best, key=rank), sorted(last, key=rank)


def main(root, out):
    os.makedirs(out, exist_ok=True)
    with tarfile.open(os.path.join(out, "results.tgz"), "w:gz") as tar:
        tar.add(root, filter=lambda info: None if "/checkpoints" in info.name else info)
        if os.path.isdir("logs"):
            tar.add("logs")
    best, last = unfinished_checkpoints(root)
    chosen, size = [], 0
    for path in best + last:
        if size + os.path.getsize(path) <= min(BUDGET, MAX_PARTS * PART):
            chosen.append(path)
            size += os.path.getsize(path)
        else:
            print(f"left behind (budget): {path}")
    if not chosen:
        return
    tar_path = os.path.join("/tmp", "ckpt.tar")
    with tarfile.open(tar_path, "w") as tar:
        for path in chosen:
            tar.add(path)
    if os.path.getsize(tar_path) > MAX_PARTS * PART:  # tar headers on top of the budget
        raise SystemExit(f"{tar_path} needs more than {MAX_PARTS} parts: lower BUDGET")
    with open(tar_path, "rb") as handle:
        for index in range(MAX_PARTS):
            chunk = handle.read(PART)
            if not chunk:
                break
            with open(os.path.join(out, f"ckpt.tar.part{index:02d}"), "wb") as part:
                part.write(chunk)
    print(f"checkpoints back: {len(chosen)} files, {size / 2**20:.1f} MiB: " + ", ".join(chosen))


if __name__ == "__main__":
    main(*sys.argv[1:3])
