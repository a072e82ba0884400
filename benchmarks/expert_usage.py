"""What a trained MixRec reads through its DAMoE layers: the gate and the CF path.

``python -m benchmarks.expert_usage MODEL.pth [--split valid] [--metric mrr@10] [--samples 2000]``

Prints, for a checkpoint of a model with DAMoE layers (MixRec, MixRec_noBO, ...):

1. each DAMoE layer's mean gate weight on the causal expert (beta_1) over the tokens of the
   split's users, beside ``gate_init_causal``, where the gate starts: a gate that never left
   its start has not learned to use the context expert;
2. the split's metric of the model as trained, and paired against it (bootstrap over users,
   ``benchmarks.paired``) the same model with
   - ``no-cf``: the CF vectors left out of the attention (as a model without CF reads),
   - ``causal-only``: the gate's whole weight on the causal expert (no context expert).

A difference whose interval includes 0 says the model does not use that part. A drop says it
uses it, not that training it helped: the item head standardises with statistics of the states
it was trained on, so any change of the states costs something (that is what a converged run
without the part, MixRec_base, answers).
"""

import argparse
import sys
from contextlib import contextmanager

import torch

from benchmarks.paired import paired_bootstrap, per_user_values
from recbole_mixrec.errors import MixRecError


def drop_cf(model):
    """Leave the CF vectors out of every attention: the path a model without CF takes."""
    model.cf_model = None


def causal_only(model):
    """Put the gate's whole weight on the causal expert in every DAMoE layer."""
    for layer in model.damoe_layers:
        def all_causal(q_t, p_t):
            weights = q_t.new_zeros(*q_t.shape[:-1], 2)
            weights[..., 0] = 1.0
            return weights
        layer.gate_weights = all_causal


ABLATIONS = {"no-cf": drop_cf, "causal-only": causal_only}


@contextmanager
def recorded_gates(model):
    """Yield a list of per-layer ``[sum of beta_1, token count]`` filled by forward passes."""
    sums = [[0.0, 0] for _ in model.damoe_layers]
    # an ablation may already have replaced a layer's gate_weights: put back what was there
    replaced = [vars(layer).get("gate_weights") for layer in model.damoe_layers]
    for index, layer in enumerate(model.damoe_layers):
        original = layer.gate_weights

        def recording(q_t, p_t, original=original, index=index):
            weights = original(q_t, p_t)
            sums[index][0] += float(weights[..., 0].float().sum())
            sums[index][1] += weights[..., 0].numel()
            return weights
        layer.gate_weights = recording
    try:
        yield sums
    finally:
        for layer, before in zip(model.damoe_layers, replaced):
            if before is None:
                del layer.gate_weights  # back to the class's method
            else:
                layer.gate_weights = before


def mean_gates(model_file, split="valid", users=256):
    """Each DAMoE layer's mean beta_1 over every token position (padding included) of the
    first ``users`` users of ``split``, and the model's config."""
    from recbole_mixrec.quick_start import load_data_and_model

    config, model, _, _, valid_data, test_data = load_data_and_model(model_file)
    if not getattr(model, "damoe_layers", None):
        raise MixRecError(f"{model_file}: {config['model']} has no DAMoE layers")
    model.eval()
    seen = 0
    with recorded_gates(model) as sums, torch.no_grad():
        for batch in valid_data if split == "valid" else test_data:
            interaction = batch[0]
            model.full_sort_predict(interaction.to(next(model.parameters()).device))
            seen += len(interaction)
            if seen >= users:
                break
    return [total / count for total, count in sums], config


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.expert_usage", description=__doc__.splitlines()[0])
    parser.add_argument("model", help="checkpoint of a model with DAMoE layers")
    parser.add_argument("--split", choices=("valid", "test"), default="valid")
    parser.add_argument("--metric", default="mrr@10")
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--gate_users", type=int, default=256, help="users whose tokens the gate means read")
    parser.add_argument("--ablations", nargs="*", choices=sorted(ABLATIONS), default=list(ABLATIONS))
    args = parser.parse_args(argv)
    try:
        gates, config = mean_gates(args.model, args.split, args.gate_users)
        print(f"{config['model']} on {config['dataset']}: mean gate weight on the causal expert per DAMoE "
              f"layer (start {config['gate_init_causal']}): " + " ".join(f"{g:.3f}" for g in gates))
        base, _ = per_user_values(args.model, args.split, args.metric)
        print(f"{args.split} {args.metric} over {len(base)} users, as trained: {base.mean():.4f}")
        for name in args.ablations:
            values, _ = per_user_values(args.model, args.split, args.metric, ABLATIONS[name])
            diff, low, high = paired_bootstrap(base, values, args.samples)
            print(f"  {name:<12} {values.mean():.4f}  difference {diff:+.4f}, 95% interval [{low:+.4f}, {high:+.4f}]"
                  + (" (includes 0: not used)" if low <= 0 <= high else ""))
    except MixRecError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
