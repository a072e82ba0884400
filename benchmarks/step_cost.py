"""Cost of one training step: frozen backbone vs MixRec_base vs full MixRec (ours / dense).

    python -m benchmarks.step_cost [--backbone smollm2-135m] [--layers 4] [--batch 4]
                                   [--items 20 50] [--tokens 30] [--repeats 3] [--device cpu]
                                   [--separate] [--precision fp32 bf16] [--variants a c]

On the same batch (``items`` history items of exactly ``tokens`` tokens each, per user) it
prints ms per training step (forward + backward, L_seq) of

    (a) the bare frozen backbone, forward + backward to its inputs,
    (b) MixRec_base (adapters),
    (c) full MixRec with our expert attention (Q/K/V once, per-item blocks),
    (d) full MixRec with the dense per-head-mask reference attention,

plus peak memory (CUDA: max allocated; CPU: peak RSS growth of a fresh child process per
variant), and the ratios (c)/(a) (target <= 1.3) and (d)/(c) (target >= 1.5). The step
excludes L_align and L_cl (extra item passes whose cost does not depend on the attention) and
L_cf (a BPR step on the small CF model).
``--precision bf16`` runs each step under ``torch.autocast`` in bfloat16 (weights stay fp32, as a
bf16-autocast training run would keep them); ``--variants a c`` times only those variants.

Timing: by default the four variants are built in one process and timed round-robin
(a, b, c, d, a, b, ...; median per variant), so that drift of the machine (frequency, other
load) hits all of them alike: on the 2-core CPU, timing each variant in its own process moved
the (c)/(a) ratio between 1.23 and 1.38 from run to run. ``--separate`` times each variant in
its own process instead (less memory at once: the GPU figures of the notes used it).
"""

import argparse
import multiprocessing as mp
import os
import resource
import time

import torch

VARIANTS = ("a_backbone", "b_mixrec_base", "c_mixrec_blocks", "d_mixrec_dense")


def _config(args, model):
    from recbole_mixrec.quick_start import build_config

    return build_config(model, "ml-100k", config_dict={
        "backbone": args.backbone, "backbone_layers": args.layers, "max_seq_items": args.items_now,
        "item_text_max_tokens": args.tokens, "lambda_align": 0.0, "lambda_cl": 0.0, "lambda_cf": 0.0,
        "show_progress": False, "device": args.device,
    })


def _batch(dataset, args):
    """One batch of ``batch`` users with ``items_now`` random items each (same for all variants)."""
    from recbole.data.interaction import Interaction

    g = torch.Generator().manual_seed(0)
    n = args.items_now
    return Interaction({
        "user_id": torch.randint(1, dataset.user_num, (args.batch,), generator=g),
        "item_id_list": torch.randint(1, dataset.item_num, (args.batch, n), generator=g),
        "item_length": torch.full((args.batch,), n),
        "item_id": torch.randint(1, dataset.item_num, (args.batch,), generator=g),
    })


def _fixed_length_items(model, tokens):
    """Every item sentence exactly ``tokens`` random tokens: a controlled sequence length."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(100, model.vocab_size, model.item_token_ids.shape[:1] + (tokens,), generator=g)
    model.item_token_ids = ids.to(model.item_token_ids.device)
    model.item_token_lengths = torch.full_like(model.item_token_lengths, tokens)
    model.item_token_lengths[0] = 0


def _autocast(step, args):
    """The step under bf16 autocast when asked (on CUDA; CPU autocast to bf16 is slower here)."""
    if args.precision_now == "fp32":
        return step

    def autocast_step():
        with torch.autocast(device_type=args.device.split(":")[0], dtype=torch.bfloat16):
            step()
    return autocast_step


def _timed(step, repeats, device, warm_up=True):
    if warm_up:
        step()
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return 1000 * sorted(times)[len(times) // 2]  # median ms


def build_step(variant, args):
    """Build one variant on the shared batch; return its training step (a closure)."""
    import recbole_mixrec  # noqa: F401
    from recbole_mixrec.model.mixrec import MixRec
    from recbole_mixrec.quick_start import load_dataset

    torch.manual_seed(0)
    model_name = "MixRec_base" if variant in ("a_backbone", "b_mixrec_base") else "MixRec"
    config = _config(args, model_name)
    dataset = load_dataset(config)
    model = MixRec(config, dataset).to(args.device)
    if variant == "d_mixrec_dense":
        model.attention_impl = "dense"
    _fixed_length_items(model, args.tokens)
    batch = _batch(dataset, args).to(args.device)
    if variant == "a_backbone":
        from recbole_mixrec.backbone import load_backbone

        llm = load_backbone(args.backbone, config["backbone_cache_dir"], args.layers)[0].base_model.to(args.device)
        from recbole_mixrec.model.inputs import last_items, pack_items

        window, count = last_items(batch["item_id_list"], batch["item_length"], args.items_now)
        ids, mask, _, _ = pack_items(window, count, model.item_token_ids, model.item_token_lengths,
                                     0, model.seq_prefix_ids)  # marker: any frozen token
        embeds = llm.get_input_embeddings()(ids).detach().requires_grad_(True)

        def step():
            llm(inputs_embeds=embeds, attention_mask=mask, use_cache=False).last_hidden_state.float().sum().backward()
        return _autocast(step, args)
    else:
        model.train()

        def step():
            model.zero_grad(set_to_none=True)
            sum(model.calculate_loss(batch)).backward()
    return _autocast(step, args)


def peak_rss_mib():
    """This process's peak resident memory in MiB since it started (or exec'd).

    Linux's ``ru_maxrss`` carries over exec from the parent, so a spawned child of a parent
    that already built big models reports the parent's peak; ``VmHWM`` belongs to the
    child's own address space. Other systems fall back to ``ru_maxrss`` (KiB on Linux/BSD).
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(variant, args, queue):
    """Run in a child process: build one variant, time its step, report (ms, peak MiB)."""
    base_rss = peak_rss_mib()
    step = build_step(variant, args)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    ms = _timed(step, args.repeats if args.separate else 1, args.device)
    if args.device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = peak_rss_mib() - base_rss
    queue.put((ms, peak))


def time_round_robin(args):
    """ms/step per variant, all built in this process and timed in turns (median)."""
    steps = {variant: build_step(variant, args) for variant in args.variant_names}
    times = {variant: [] for variant in args.variant_names}
    for step in steps.values():
        step()  # warm-up
    for _ in range(args.repeats):
        for variant, step in steps.items():
            times[variant].append(_timed(step, 1, args.device, warm_up=False))
    return {variant: sorted(t)[len(t) // 2] for variant, t in times.items()}


def _result_of(child, queue, variant):
    """The child's (ms, peak); a child that died without one (its traceback is above) ends
    the benchmark instead of leaving the parent waiting forever."""
    import queue as queues

    while True:
        try:
            return queue.get(timeout=5)
        except queues.Empty:
            if not child.is_alive():
                raise SystemExit(f"step_cost: variant {variant} failed (exit code {child.exitcode})")


def run(args):
    context = mp.get_context("spawn")  # a fresh process per variant: honest peak memory
    rows = {}
    for variant in args.variant_names:
        queue = context.Queue()
        child = context.Process(target=measure, args=(variant, args, queue))
        child.start()
        rows[variant] = _result_of(child, queue, variant)
        child.join()
    if not args.separate:
        times = time_round_robin(args)
        rows = {variant: (times[variant], peak) for variant, (_, peak) in rows.items()}
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="smollm2-135m")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--items", type=int, nargs="+", default=[20, 50])
    parser.add_argument("--tokens", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--separate", action="store_true", help="time each variant in its own process")
    parser.add_argument("--precision", nargs="+", choices=["fp32", "bf16"], default=["fp32"],
                        help="bf16: each step under torch.autocast(bfloat16)")
    parser.add_argument("--variants", nargs="+", choices=["a", "b", "c", "d"], default=["a", "b", "c", "d"])
    args = parser.parse_args(argv)
    args.variant_names = [v for v in VARIANTS if v[0] in args.variants]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    print(f"backbone {args.backbone}, {args.layers} layers, batch {args.batch}, "
          f"{args.tokens} tokens/item, device {args.device}, torch threads {torch.get_num_threads()}, "
          f"timing {'one process per variant' if args.separate else 'round-robin in one process'}")
    for items in args.items:
        for precision in args.precision:
            args.items_now, args.precision_now = items, precision
            rows = run(args)
            print(f"\n{items} items x {args.tokens} tokens (~{items * (args.tokens + 1)} tokens/user), {precision}")
            print(f"{'variant':<18}{'ms/step':>10}{'peak MiB':>10}")
            for variant, (ms, peak) in rows.items():
                print(f"{variant:<18}{ms:>10.1f}{peak:>10.0f}")
            ms = {variant[0]: row[0] for variant, row in rows.items()}
            if "a" in ms and "c" in ms:
                print(f"(c)/(a) = {ms['c'] / ms['a']:.2f} (target <= 1.3)", end="   ")
            if "c" in ms and "d" in ms:
                print(f"(d)/(c) = {ms['d'] / ms['c']:.2f} (target >= 1.5)", end="")
            print()


if __name__ == "__main__":
    main()
