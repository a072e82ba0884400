"""What a trained MixRec reads through its DAMoE layers: the gate and the CF path.

``python -m benchmarks.expert_usage MODEL.pth [--split valid] [--metric mrr@10] [--samples 2000] [--ablations ...]``

Prints, for a checkpoint of a model with DAMoE layers (MixRec, MixRec_noBO, ...):

1. each DAMoE layer's mean gate weight on the causal expert (beta_1) over every token position
   (padding included) of the split's users, beside ``gate_init_causal``, where the gate starts: a gate that never left
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

from benchmarks.paired import PerUserScorer, paired_bootstrap, parse_metric
from recbole_mixrec.errors import MixRecError


@contextmanager
def gate_weights_replaced(model, wrap):
    """Inside the block, every DAMoE layer's ``gate_weights`` is ``wrap(index, current)``;
    after it, each layer has what it had before (another replacement, or the class's method)."""
    before = [vars(layer).get("gate_weights") for layer in model.damoe_layers]
    for index, layer in enumerate(model.damoe_layers):
        layer.gate_weights = wrap(index, layer.gate_weights)
    try:
        yield
    finally:
        for layer, replaced in zip(model.damoe_layers, before):
            if replaced is None:
                del layer.gate_weights
            else:
                layer.gate_weights = replaced


@contextmanager
def no_cf(model):
    """Leave the CF vectors out of every attention (the path a model without CF takes)."""
    cf_model, model.cf_model = model.cf_model, None
    try:
        yield
    finally:
        model.cf_model = cf_model


def causal_only(model):
    """Put the gate's whole weight on the causal expert in every DAMoE layer."""
    def all_causal(q_t, p_t):
        weights = q_t.new_zeros(*q_t.shape[:-1], 2)
        weights[..., 0] = 1.0
        return weights
    return gate_weights_replaced(model, lambda index, current: all_causal)


ABLATIONS = {"no-cf": no_cf, "causal-only": causal_only}


@contextmanager
def recorded_gates(model):
    """Yield a list of per-layer ``[sum of beta_1, token count]`` filled by forward passes."""
    sums = [[0.0, 0] for _ in model.damoe_layers]

    def recording(index, current):
        def gate_weights(q_t, p_t):
            weights = current(q_t, p_t)
            sums[index][0] += float(weights[..., 0].float().sum())
            sums[index][1] += weights[..., 0].numel()
            return weights
        return gate_weights

    with gate_weights_replaced(model, recording):
        yield sums


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.expert_usage", description=__doc__.splitlines()[0])
    parser.add_argument("model", help="checkpoint of a model with DAMoE layers")
    parser.add_argument("--split", choices=("valid", "test"), default="valid")
    parser.add_argument("--metric", default="mrr@10")
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--ablations", nargs="*", choices=sorted(ABLATIONS), default=list(ABLATIONS))
    args = parser.parse_args(argv)
    try:
        from recbole_mixrec.quick_start import load_data_and_model

        parse_metric(args.metric)  # before the slow load
        # one load: the ablations are undone after their evaluation
        config, model, _, _, valid_data, test_data = load_data_and_model(args.model)
        if not getattr(model, "damoe_layers", None):
            raise MixRecError(f"{args.model}: {config['model']} has no DAMoE layers")
        score = PerUserScorer(config, model, valid_data if args.split == "valid" else test_data, args.metric)
        with recorded_gates(model) as sums:
            base = score()
        print(f"{config['model']} on {config['dataset']}: mean gate weight on the causal expert per DAMoE "
              f"layer (start {config['gate_init_causal']}): " + " ".join(f"{t / n:.3f}" for t, n in sums))
        print(f"{args.split} {args.metric} over {len(base)} users, as trained: {base.mean():.4f}")
        for name in args.ablations:
            with ABLATIONS[name](model):
                values = score()
            diff, low, high = paired_bootstrap(base, values, args.samples)
            print(f"  {name:<12} {values.mean():.4f}  difference {diff:+.4f}, 95% interval [{low:+.4f}, {high:+.4f}]"
                  + (" (includes 0: not used)" if low <= 0 <= high else ""))
    except MixRecError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
