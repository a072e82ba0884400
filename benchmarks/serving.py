"""Latency and throughput of the HTTP service (``recbole_mixrec.serve``) on 127.0.0.1.

    python -m benchmarks.serving [--models SASRec,LiteLLM4Rec,MixRec] [--checkpoint MODEL=PATH ...]
                                 [--requests 200] [--concurrency 8] [--out results/serving]

For each model: a checkpoint (given, or trained here on ml-100k with the model's own yaml
defaults, i.e. MixRec's demo preset, for ``--epochs`` epochs: latency does not depend on how
well it is trained), then ``python -m recbole_mixrec.serve`` in a subprocess (one torch thread),
and ``--requests`` POST /recommend requests (k = 10; half known users, half new users with a
5-item history) in two modes: ``single`` (one request at a time: per-request latency) and
``concurrent`` (``--concurrency`` in flight: the service scores queued requests in one pass).
Reports p50 / p95 latency (ms) and throughput (requests/s), then, in this process, where one
single-user request's time goes (model forward, item scores, top-k; the rest is HTTP, JSON and
queueing). Bounded: stops after the requests; a server that does not come up within
``--startup-timeout`` seconds is reported and skipped. Writes ``serving.csv`` and ``serving.md``.
"""

import argparse
import asyncio
import csv
import json
import os
import random
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK_TRAIN = {"show_progress": False, "save_resume_checkpoint": False}


def train(model, epochs, folder):
    from recbole_mixrec.quick_start import run_mixrec

    config = dict(QUICK_TRAIN, epochs=epochs, checkpoint_dir=folder)
    return run_mixrec(model, "ml-100k", config_dict=config)["saved_model_file"]


def dataset_tokens(checkpoint):
    """User and item tokens of the checkpoint's dataset, read from its ``.inter`` file."""
    import torch

    import recbole_mixrec  # noqa: F401  allows RecBole's Config in weights-only loading

    config = torch.load(checkpoint, weights_only=True)["config"]
    path = os.path.join(config["data_path"], f"{config['dataset']}.inter")
    users, items = set(), set()
    with open(path, encoding="utf-8") as handle:
        header = [c.partition(":")[0] for c in handle.readline().rstrip("\n").split("\t")]
        u, i = header.index(config["USER_ID_FIELD"]), header.index(config["ITEM_ID_FIELD"])
        for line in handle:
            cells = line.rstrip("\n").split("\t")
            users.add(cells[u])
            items.add(cells[i])
    return sorted(users), sorted(items)


def request_bodies(users, items, n, seed=0):
    rng = random.Random(seed)
    return [{"user": rng.choice(users), "k": 10} if i % 2 == 0 else
            {"history": rng.sample(items, 5), "k": 10} for i in range(n)]


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def wait_healthy(url, process, timeout):
    import aiohttp

    deadline = time.time() + timeout
    async with aiohttp.ClientSession() as session:
        while time.time() < deadline:
            if process.poll() is not None:
                return False
            try:
                async with session.get(url + "/health") as response:
                    if response.status == 200:
                        return True
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.5)
    return False


async def fire(url, bodies, concurrency):
    """Send ``bodies`` with ``concurrency`` in flight; latencies (s), wall time (s), errors."""
    import aiohttp

    latencies, errors = [], []
    queue = list(reversed(bodies))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        async def worker():
            while queue:
                body = queue.pop()
                start = time.perf_counter()
                async with session.post(url + "/recommend", json=body) as response:
                    answer = await response.json()
                latencies.append(time.perf_counter() - start)
                if response.status != 200 or len(answer["items"]) != body["k"]:
                    errors.append((response.status, answer))

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return latencies, wall, errors


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def bench_service(model, checkpoint, args):
    users, items = dataset_tokens(checkpoint)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONPATH=ROOT)
    process = subprocess.Popen(
        [sys.executable, "-m", "recbole_mixrec.serve", "--checkpoint", checkpoint, "--port", str(port),
         "--max-batch", str(args.max_batch)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    rows = []
    try:
        start = time.time()
        if not asyncio.run(wait_healthy(url, process, args.startup_timeout)):
            print(f"{model}: the service did not come up within {args.startup_timeout} s", file=sys.stderr)
            return rows
        load_s = time.time() - start
        asyncio.run(fire(url, request_bodies(users, items, 10, seed=1), 1))  # warm-up
        for mode, concurrency in (("single", 1), ("concurrent", args.concurrency)):
            latencies, wall, errors = asyncio.run(fire(url, request_bodies(users, items, args.requests), concurrency))
            rows.append({
                "model": model, "mode": mode, "concurrency": concurrency, "requests": len(latencies),
                "errors": len(errors), "p50_ms": round(1000 * percentile(latencies, 50), 1),
                "p95_ms": round(1000 * percentile(latencies, 95), 1),
                "throughput_rps": round(len(latencies) / wall, 1), "load_s": round(load_s, 1),
            })
            print(rows[-1], flush=True)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
    return rows


def time_breakdown(checkpoint, n=30):
    """Median ms of one single-user request's parts, in this process (no HTTP)."""
    import torch

    from recbole_mixrec.recommend import Recommender

    torch.set_num_threads(1)
    rec = Recommender(checkpoint, quiet=True)
    users, items = dataset_tokens(checkpoint)
    bodies = request_bodies(users, items, n)
    parts = {"resolve": [], "forward": [], "head": [], "full_sort_predict": [], "answer": []}
    for body in bodies:
        start = time.perf_counter()
        query = rec.resolve(body.get("user"), body.get("history"), body["k"])
        parts["resolve"].append(time.perf_counter() - start)
        start = time.perf_counter()
        rec.answer([query])
        parts["answer"].append(time.perf_counter() - start)
        interaction = rec._interaction([query], query.user is not None)
        with torch.no_grad():
            start = time.perf_counter()
            rec.model.full_sort_predict(interaction)
            parts["full_sort_predict"].append(time.perf_counter() - start)
            if hasattr(rec.model, "_last_hidden"):  # MixRec, LiteLLM4Rec: LLM/sequence part, then the head
                start = time.perf_counter()
                hidden = rec.model._last_hidden(interaction)
                parts["forward"].append(time.perf_counter() - start)
                start = time.perf_counter()
                rec.model.item_projection(hidden)
                parts["head"].append(time.perf_counter() - start)
    return {name: round(1000 * percentile(values, 50), 2) for name, values in parts.items() if values}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="SASRec,LiteLLM4Rec,MixRec")
    parser.add_argument("--checkpoint", action="append", default=[], help="MODEL=PATH (else trained here)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs when training a checkpoint here")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the service")
    parser.add_argument("--startup-timeout", type=int, default=600)
    parser.add_argument("--no-breakdown", action="store_true")
    parser.add_argument("--out", default=os.path.join("results", "serving"))
    args = parser.parse_args(argv)
    if not 1 <= args.requests <= 10000 or not 1 <= args.concurrency <= 64:
        parser.error("--requests must be in 1..10000 and --concurrency in 1..64")
    given = dict(item.split("=", 1) for item in args.checkpoint)
    os.makedirs(args.out, exist_ok=True)
    rows, breakdowns = [], {}
    for model in args.models.split(","):
        checkpoint = given.get(model) or train(model, args.epochs, os.path.join(args.out, "checkpoints"))
        print(f"{model}: {checkpoint}", flush=True)
        rows += bench_service(model, checkpoint, args)
        if not args.no_breakdown:
            breakdowns[model] = time_breakdown(checkpoint)
            print(f"{model} in-process ms (median): {breakdowns[model]}", flush=True)
    with open(os.path.join(args.out, "serving.csv"), "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["model"])
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| model | mode | p50 ms | p95 ms | requests/s | errors |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['mode']} ({r['concurrency']} in flight) | {r['p50_ms']} | {r['p95_ms']} | "
              f"{r['throughput_rps']} | {r['errors']} |" for r in rows]
    lines += ["", "In-process median ms of one request (no HTTP):", ""]
    lines += [f"- {model}: {json.dumps(parts)}" for model, parts in breakdowns.items()]
    with open(os.path.join(args.out, "serving.md"), "w") as handle:
        handle.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
