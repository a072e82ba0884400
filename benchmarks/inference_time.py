"""Inference time per user: LiteLLM4Rec (item vectors cached, projection head) vs MixRec.

    python -m benchmarks.inference_time [--backbones tiny-random smollm2-135m] [--layers 4]
                                        [--users 64] [--batch 32] [--threads 1] [--device cpu]

For each backbone, both models (untrained: timing only) run ``full_sort_predict`` on the same
``users`` ml-100k test users (RecBole's leave-one-out test split), ``batch`` users per call.
Prints ms per user for MixRec (LLM over the last ``max_seq_items`` item sentences, DAMoE,
CF vectors: its yaml defaults) and for LiteLLM4Rec (cached item vectors + small causal
transformer over up to 50 items), LiteLLM4Rec's one-time cost of encoding every item, and the
ratio. MixRec reads far fewer history items (5 by default) than LiteLLM4Rec (50).
"""

import argparse
import os
import time

import torch


def _setup(model_name, backbone, args):
    import recbole_mixrec  # noqa: F401
    from recbole.data import data_preparation
    from recbole.utils import get_model

    from recbole_mixrec.quick_start import build_config, load_dataset

    config = build_config(model_name, "ml-100k", config_dict={
        "backbone": backbone, "backbone_layers": args.layers, "device": args.device,
        "show_progress": False, "lambda_cl": 0.0, "eval_batch_size": args.batch,
        "item_vector_disk_cache": False,
    })
    dataset = load_dataset(config)
    _, _, test = data_preparation(config, dataset)
    torch.manual_seed(0)
    model = get_model(model_name)(config, test._dataset).to(args.device).eval()
    batches, seen = [], 0
    for interaction, *_ in test:
        batches.append(interaction.to(args.device))
        seen += len(interaction)
        if seen >= args.users:
            break
    return model, batches, seen


@torch.no_grad()
def _ms_per_user(model, batches, users):
    start = time.perf_counter()
    for interaction in batches:
        model.full_sort_predict(interaction)
    return 1000 * (time.perf_counter() - start) / users


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=["tiny-random", "smollm2-135m"])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--users", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    print(f"{args.users} test users, batch {args.batch}, backbone_layers {args.layers}, device "
          f"{args.device}, torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}")
    print(f"{'backbone':<14}{'MixRec ms/user':>16}{'Lite ms/user':>14}{'Lite/MixRec':>13}{'Lite item encoding s':>22}")
    for backbone in args.backbones:
        mixrec, batches, users = _setup("MixRec", backbone, args)
        _ms_per_user(mixrec, batches[:1], 1)  # warm-up
        mix_ms = _ms_per_user(mixrec, batches, users)
        del mixrec
        lite, batches, users = _setup("LiteLLM4Rec", backbone, args)
        start = time.perf_counter()
        lite.all_item_vectors()  # one-time: every item through the item LLM
        encode_s = time.perf_counter() - start
        lite_ms = _ms_per_user(lite, batches, users)
        print(f"{backbone:<14}{mix_ms:>16.2f}{lite_ms:>14.3f}{lite_ms / mix_ms:>13.4f}{encode_s:>22.1f}")


if __name__ == "__main__":
    main()
