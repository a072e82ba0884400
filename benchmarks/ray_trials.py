"""Wall time of 4 tiny real MixRec BO trials with 1 vs 2 Ray workers (not a test).

    python benchmarks/ray_trials.py [--subset_ratio=0.05]

Each trial trains MixRec (backbone tiny-random, 3 history items, 1 epoch, no L_cl) on a user
subset of ml-100k and returns valid MRR@10, exactly as ``python -m recbole_mixrec.search`` runs
them. A warm-up trial fills the item-token cache first so that both timings see the same
caches, and the Ray workers are started and have imported the plugin before the clock
starts. On a machine with fewer than 2 free cores the ratio says so.
"""

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _warm_worker():
    import time

    import recbole_mixrec  # noqa: F401

    time.sleep(1.0)  # long enough that every worker gets one
    return os.getpid()


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--subset_ratio", type=float, default=0.2)
    parser.add_argument("--trials", type=int, default=4)
    args = parser.parse_args(argv)
    sys.argv = sys.argv[:1]  # RecBole reads --key=value from argv

    import ray

    import recbole_mixrec  # noqa: F401
    from recbole_mixrec.search.run import search_config
    from recbole_mixrec.search.trials import RayObjective, init_ray, prepare_trial_spec, train_trial

    global _warm
    _warm = ray.remote(num_cpus=1)(_warm_worker)
    work = tempfile.mkdtemp(prefix="ray-trials-")
    os.environ.setdefault("RECBOLE_MIXREC_CACHE", os.path.join(work, "cache"))
    config_dict = {"backbone": "tiny-random", "max_seq_items": 3, "lambda_cl": 0.0, "train_batch_size": 64,
                   "eval_batch_size": 256, "bo_subset_ratio": args.subset_ratio, "bo_trial_epochs": 1}
    config = search_config("MixRec", "ml-100k", config_dict=config_dict)
    spec = prepare_trial_spec("MixRec", "ml-100k", config, work, config_dict=config_dict)
    designs = [[(i >> b) & 1 for b in range(6)] for i in range(args.trials)]
    train_trial(spec, designs[0], 0, os.path.join(work, "warmup"))  # caches, once
    times = {}
    for workers in (1, 2):
        init_ray(num_cpus=workers)
        objective = RayObjective(spec)
        # start the worker processes and import the plugin in each before timing
        ray.get([_warm.remote() for _ in range(2 * workers)])
        start = time.perf_counter()
        refs = [objective.remote(z, i, os.path.join(work, f"w{workers}", f"trial_{i}")) for i, z in enumerate(designs)]
        values = ray.get(refs)
        times[workers] = time.perf_counter() - start
        ray.shutdown()
        print(f"{workers} worker(s): {args.trials} trials in {times[workers]:.1f} s "
              f"(valid MRR@10 {', '.join(f'{v:.4f}' for v in values)})")
    print(f"speed-up 2 vs 1 workers: {times[1] / times[2]:.2f}x  (cores: {os.cpu_count()}, "
          f"load average before: {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
