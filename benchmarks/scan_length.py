"""Training cost vs sequence length: Hydra (linear-time selective scan) vs RecBole's SASRec.

    python -m benchmarks.scan_length [--lengths 50 200 800] [--batch 32] [--hidden 64]
                                     [--repeats 3] [--threads 1] [--device cpu]

Both models get the same random batch (``batch`` histories of exactly L items, ml-100k's item
count), the same hidden size and their yaml defaults otherwise (2 layers each). Prints ms per
training batch (forward + backward of ``calculate_loss``, CE over all items, median of
``repeats`` after one warm-up) and the ratio Hydra / SASRec per length, plus each model's
growth from the shortest length.
"""

import argparse
import os
import time

import torch

N_ITEMS = 1683  # ml-100k items + padding


class _Items:
    """What a sequential model reads from its dataset at init: the item count."""

    def num(self, field):
        return N_ITEMS


def _model(name, length, args):
    import recbole_mixrec  # noqa: F401  registers Hydra
    from recbole.utils import get_model

    from recbole_mixrec.quick_start import build_config

    config = build_config(name, "ml-100k", config_dict={
        "MAX_ITEM_LIST_LENGTH": length, "hidden_size": args.hidden, "loss_type": "CE",
        "device": args.device, "show_progress": False,
    })
    torch.manual_seed(0)
    return get_model(name)(config, _Items()).to(args.device).train()


def _batch(model, length, args):
    from recbole.data.interaction import Interaction

    g = torch.Generator().manual_seed(0)
    return Interaction({
        model.ITEM_SEQ: torch.randint(1, N_ITEMS, (args.batch, length), generator=g),
        model.ITEM_SEQ_LEN: torch.full((args.batch,), length),
        model.POS_ITEM_ID: torch.randint(1, N_ITEMS, (args.batch,), generator=g),
    }).to(args.device)


def ms_per_batch(name, length, args):
    model = _model(name, length, args)
    batch = _batch(model, length, args)

    def step():
        model.zero_grad(set_to_none=True)
        model.calculate_loss(batch).backward()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    step()  # warm-up
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return 1000 * sorted(times)[len(times) // 2]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[50, 200, 800])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    print(f"batch {args.batch}, hidden {args.hidden}, {N_ITEMS} items, device {args.device}, "
          f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}")
    print(f"{'L':>6}{'Hydra ms':>12}{'SASRec ms':>12}{'Hydra/SASRec':>14}")
    rows = []
    for length in args.lengths:
        hydra, sasrec = ms_per_batch("Hydra", length, args), ms_per_batch("SASRec", length, args)
        rows.append((length, hydra, sasrec))
        print(f"{length:>6}{hydra:>12.1f}{sasrec:>12.1f}{hydra / sasrec:>14.2f}")
    first = rows[0]
    for length, hydra, sasrec in rows[1:]:
        print(f"L {first[0]} -> {length} (x{length / first[0]:.0f}): Hydra x{hydra / first[1]:.1f}, "
              f"SASRec x{sasrec / first[2]:.1f}")


if __name__ == "__main__":
    main()
