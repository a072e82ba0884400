"""The BO loop over MixRec architectures (spec section 3.4) and its outputs.

``bo_loop`` evaluates ``n_initial`` space-filling random designs, then rounds of ``q`` designs
proposed by a GP surrogate (``surrogate.py``) and probabilistic-reparameterization acquisition
optimisation (``acquisition.py``), until ``n_iterations`` trials are logged. ``method="random"``
gives the random-search baseline with the same budget.

Objective interface: a callable ``objective(z, seed, trial_dir) -> float`` (run in this process,
one after another) or anything with ``.remote(z, seed, trial_dir)`` returning a Ray ObjectRef
(a Ray task: the ``q`` trials of a round run in parallel). ``z`` is a list of 0/1 ints. An
exception or a non-finite value marks the trial ``failed``: it is logged with its error, never
retried, kept out of the GP fit, and the search goes on.

Resume: every finished trial is appended to a JSONL log as one object
``{trial_id, z, architecture, value, status, error, wall_time_s, seed, phase}``. Running again
with the same log continues where it stopped: only the missing trials are evaluated. A line that
is not a trial record stops it with a ``MixRecError`` naming the file and the line.
``run_search`` (``run.py``) also ties the log's directory to the data and settings it was made
for (``checks.py``).
"""

import csv
import json
import logging
import math
import os
import time

import torch

from recbole_mixrec.errors import MixRecError
from recbole_mixrec.search.acquisition import (
    make_acquisition,
    optimize_pr,
    random_designs,
    sample_designs,
)
from recbole_mixrec.search.space import z_to_architecture
from recbole_mixrec.search.surrogate import fit_surrogate

logger = logging.getLogger(__name__)


class TrialLog:
    """Append-only JSONL trial log (one JSON object per finished trial).

    Reading it checks every line: a line that is not a trial record (cut off by a crash, edited
    by hand) or, with ``d``, a design of another length is a ``MixRecError`` naming the file and
    the line, never skipped: a skipped trial would be run again under the same id."""

    def __init__(self, path=None, d=None):
        self.path = path
        self.records = []
        if path and os.path.isfile(path):
            ids = set()
            try:
                with open(path, encoding="utf-8") as handle:
                    lines = list(handle)
            except (OSError, UnicodeDecodeError) as err:
                raise MixRecError(f"cannot read trial log {path} ({type(err).__name__}: {err})") from None
            if lines and not lines[-1].endswith("\n") and _parse_record(lines[-1], d)[1] is not None:
                # a crash while appending: that trial never finished logging, so it runs again
                logger.warning("%s: dropping its last line, cut off while being written (%d characters)",
                               path, len(lines[-1]))
                lines.pop()
                partial = f"{path}.partial-{os.getpid()}"
                with open(partial, "w", encoding="utf-8") as handle:
                    handle.writelines(lines)
                os.replace(partial, path)
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                record, problem = _parse_record(line, d)
                if problem is None and record["trial_id"] in ids:
                    problem = f"trial_id {record['trial_id']} logged twice"
                if problem:
                    raise MixRecError(
                        f"{path} line {number} is not a trial record ({problem}): delete that line to run "
                        "the trial again, or use a new bo_search_dir")
                ids.add(record["trial_id"])
                self.records.append(record)

    def append(self, record):
        self.records.append(record)
        if self.path:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
                handle.flush()
                os.fsync(handle.fileno())

    def seen(self):
        return [tuple(r["z"]) for r in self.records]

    def ok(self):
        return [r for r in self.records if r["status"] == "ok"]

    def next_id(self):
        return 1 + max((r["trial_id"] for r in self.records), default=-1)


def _parse_record(line, d=None):
    """``(record, None)`` for a trial record ``bo_loop`` wrote, else ``(None, why not)``."""
    text = line.strip()
    try:
        record = json.loads(text)
    except json.JSONDecodeError as err:
        if err.pos >= len(text):
            return None, "unreadable JSON: cut off"
        return None, f"unreadable JSON: {err.msg[0].lower()}{err.msg[1:]} at character {err.pos + 1}"
    if not isinstance(record, dict):
        return None, "not a JSON object"
    missing = [k for k in ("trial_id", "z", "status", "value") if k not in record]
    if missing:
        return None, f"no {', '.join(missing)}"
    trial_id, z, status, value = record["trial_id"], record["z"], record["status"], record["value"]
    if isinstance(trial_id, bool) or not isinstance(trial_id, int) or trial_id < 0:
        return None, f"trial_id {trial_id!r} is not an integer >= 0"
    if not isinstance(z, list) or not z or any(v not in (0, 1) or isinstance(v, bool) for v in z):
        return None, f"z {z!r} is not a list of 0/1"
    if d is not None and len(z) != d:
        return None, f"a design of {len(z)} choices, this search has {d}"
    if status not in ("ok", "failed"):
        return None, f"status {status!r} is neither 'ok' nor 'failed'"
    if status == "ok" and (isinstance(value, bool) or not isinstance(value, (int, float))
                           or not math.isfinite(value)):
        return None, f"status 'ok' with value {value!r}"
    return record, None


def _architecture(z):
    return z_to_architecture(z) if len(z) % 3 == 0 else None


def _check_value(value):
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"objective returned a non-finite value ({value})")
    return value


def _error_text(err):
    cause = getattr(err, "cause", None)  # ray.exceptions.RayTaskError wraps the worker's error
    err = cause if isinstance(cause, BaseException) else err
    return f"{type(err).__name__}: {err}".strip()


def run_trials(objective, jobs):
    """Evaluate ``jobs`` (dicts with trial_id, z, seed, trial_dir, phase); yields one finished
    record per job, in completion order."""

    def record(job, value=None, error=None, wall=0.0):
        z = [int(v) for v in job["z"]]
        return {
            "trial_id": job["trial_id"], "z": z, "architecture": _architecture(z),
            "value": value, "status": "failed" if error else "ok", "error": error,
            "wall_time_s": round(wall, 3), "seed": job["seed"], "phase": job["phase"],
        }

    if hasattr(objective, "remote"):  # a Ray task: the whole round in parallel
        import ray

        started = time.perf_counter()
        pending = {objective.remote(j["z"], j["seed"], j["trial_dir"]): j for j in jobs}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(done[0])
            try:
                yield record(job, value=_check_value(ray.get(done[0])), wall=time.perf_counter() - started)
            except Exception as err:  # noqa: BLE001  a failed trial must not stop the search
                yield record(job, error=_error_text(err), wall=time.perf_counter() - started)
        return
    for job in jobs:
        started = time.perf_counter()
        try:
            value = _check_value(objective(job["z"], job["seed"], job["trial_dir"]))
            yield record(job, value=value, wall=time.perf_counter() - started)
        except Exception as err:  # noqa: BLE001
            yield record(job, error=_error_text(err), wall=time.perf_counter() - started)


def propose(log, d, q, generator, surrogate="rbf", acquisition="logei", mc_samples=256,
            steps=100, lr=0.1, restarts=4, ucb_beta=2.0):
    """``q x d`` new designs from a GP fitted to the log's successful trials (random designs
    while fewer than 2 trials succeeded)."""
    ok = log.ok()
    if len(ok) < 2:
        return random_designs(q, d, log.seen(), generator=generator)
    train_X = torch.tensor([r["z"] for r in ok], dtype=torch.double)  # n x d
    train_Y = torch.tensor([[r["value"]] for r in ok], dtype=torch.double)  # n x 1
    model = fit_surrogate(train_X, train_Y, surrogate)
    acqf = make_acquisition(model, train_Y, acquisition, ucb_beta)
    theta, _ = optimize_pr(acqf, d, mc_samples, steps, lr, restarts, generator=generator)
    return sample_designs(theta, q, log.seen(), acqf=acqf, generator=generator)


def bo_loop(objective, d, n_iterations=30, n_initial=5, q=2, seed=2024, log_path=None,
            trial_root=None, method="bo", surrogate="rbf", acquisition="logei",
            mc_samples=256, steps=100, lr=0.1, restarts=4, ucb_beta=2.0):
    """Run (or resume) a search over ``{0,1}^d``; returns the list of trial records.

    ``method``: ``"bo"`` (GP + probabilistic reparameterization) or ``"random"``. Trial ``i``
    gets seed ``seed + i`` and directory ``trial_root/trial_<i>`` (``None`` without a root)."""
    if method not in ("bo", "random"):
        raise MixRecError(f"method must be 'bo' or 'random', got '{method}'")
    log = TrialLog(log_path, d)
    if log.records:
        logger.info("resuming from %s: %d trial(s) already logged", log_path, len(log.records))
    initial = random_designs(min(n_initial, n_iterations), d, sobol_seed=seed,
                             generator=torch.Generator().manual_seed(seed))
    total = min(n_iterations, 2**d)
    while len(log.records) < total:
        count = min(q, total - len(log.records))
        generator = torch.Generator().manual_seed(seed * 7919 + len(log.records))  # resumable
        seen = set(log.seen())
        todo_initial = [z for z in initial if tuple(int(v) for v in z) not in seen]
        if method == "random":
            designs, phase = random_designs(count, d, log.seen(), generator=generator), "random"
        elif todo_initial and len(log.records) < n_initial:
            designs, phase = torch.stack(todo_initial[:count]), "initial"
        else:
            designs, phase = propose(log, d, count, generator, surrogate, acquisition,
                                     mc_samples, steps, lr, restarts, ucb_beta), "bo"
        if not len(designs):
            break  # the whole space is evaluated
        jobs = []
        for offset, z in enumerate(designs):
            trial_id = log.next_id() + offset
            trial_dir = os.path.join(trial_root, f"trial_{trial_id:03d}") if trial_root else None
            jobs.append({"trial_id": trial_id, "z": [int(v) for v in z.tolist()],
                         "seed": seed + trial_id, "trial_dir": trial_dir, "phase": phase})
        for rec in run_trials(objective, jobs):
            log.append(rec)
            logger.info("trial %d %s %s value=%s %s", rec["trial_id"], rec["architecture"] or rec["z"],
                        rec["status"], rec["value"], rec["error"] or "")
    return log.records


def best_record(records):
    ok = [r for r in records if r["status"] == "ok"]
    return max(ok, key=lambda r: r["value"]) if ok else None


def best_so_far(records):
    """Best value after each evaluation (trial-id order; failed trials keep the previous best)."""
    out, best = [], -math.inf
    for r in sorted(records, key=lambda r: r["trial_id"]):
        if r["status"] == "ok":
            best = max(best, r["value"])
        out.append(best if math.isfinite(best) else float("nan"))
    return out


def write_best_architecture(path, record, extra_comment=""):
    """``architecture: "..."`` yaml that ``--model=MixRec --config_files=<path>`` consumes."""
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(f"# best design of the architecture search{extra_comment}: trial "
                     f"{record['trial_id']}, valid value {record['value']:.6f}\n")
        handle.write(f'architecture: "{record["architecture"]}"  # (str) 3 chars per DAMoE layer '
                     "(F_causal, F_context, rec adapter), s = serial, p = parallel.\n")


def write_summary(search_dir, records, random_records=None):
    """``summary.csv``, ``summary.md`` (every trial) and ``best_so_far.png``."""
    fields = ["trial_id", "phase", "architecture", "value", "status", "wall_time_s", "seed", "error"]
    rows = sorted(records, key=lambda r: r["trial_id"])
    with open(os.path.join(search_dir, "summary.csv"), "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    best = best_record(records)
    lines = ["# Architecture search summary", ""]
    if best:
        lines += [f"Best: trial {best['trial_id']}, architecture `{best['architecture']}`, "
                  f"valid MRR@10 {best['value']:.4f} ({len(rows)} trials, "
                  f"{sum(r['status'] == 'failed' for r in rows)} failed).", ""]
    if random_records:
        rbest = best_record(random_records)
        lines += [f"Random search, same budget: best {rbest['value']:.4f}." if rbest else "Random search: no successful trial.", ""]
    lines += ["| trial | phase | architecture | valid MRR@10 | status | wall (s) | error |",
              "|---:|---|---|---:|---|---:|---|"]
    for r in rows:
        value = f"{r['value']:.4f}" if r["value"] is not None else "-"
        error = (r["error"] or "").replace("|", "/").splitlines()[0][:80] if r["error"] else ""
        lines.append(f"| {r['trial_id']} | {r.get('phase', '')} | `{r['architecture']}` | {value} | "
                     f"{r['status']} | {r['wall_time_s']:.1f} | {error} |")
    with open(os.path.join(search_dir, "summary.md"), "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    plot_best_so_far(os.path.join(search_dir, "best_so_far.png"), records, random_records)


def plot_best_so_far(path, records, random_records=None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, recs in (("BO (probabilistic reparameterization)", records), ("random search", random_records)):
        if recs:
            curve = best_so_far(recs)
            ax.step(range(1, len(curve) + 1), curve, where="post", label=label)
    ax.set_xlabel("evaluations")
    ax.set_ylabel("best valid MRR@10 so far")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
