"""What a trained MixRec reads through its DAMoE layers: the gate and the CF path.

``python -m benchmarks.expert_usage MODEL.pth [--split valid] [--metric mrr@10] [--samples 2000] [--ablations ...]``

Prints, for a checkpoint of a model with DAMoE layers (MixRec, MixRec_noBO, ...):

1. each DAMoE layer's mean gate weight on the causal expert (beta_1) over every token position
   (padding included) of the split's users, beside ``gate_init_causal``, where the gate
   starts: a gate that never left its start has not learned to use the context expert;
2. with CF vectors, the share of the context expert's attention (over real tokens, mean over
   heads) on the user's CF key and on the item CF keys, per layer: how much CF the expert reads
   before its gate weighs it;
3. the split's metric of the model as trained, and paired against it (bootstrap over users,
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

from benchmarks.paired import PerUserScorer, paired_bootstrap, parse_metric
from recbole_mixrec.errors import MixRecError
from recbole_mixrec.model.attention import expert_attention


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


def cf_key_mass(q, k, k_cf, masks, scale, impl="blocks"):
    """``[B, T, 2]``: the share of the context expert's attention, averaged over heads, on the
    user's CF key (``[..., 0]``) and on the item CF keys (``[..., 1]``). The expert's own attention
    is run with values that name the key they come from (tokens 0, the user's CF key e_0, item
    CF keys e_1), so its output is that share: no second implementation of the masks."""
    which = k_cf.new_zeros(*k_cf.shape[:-1], q.size(-1))
    which[:, 0, :, 0] = 1.0
    which[:, 1:, :, 1] = 1.0
    _, context = expert_attention(q, k, torch.zeros_like(k), k_cf, which, masks, scale, impl)
    return context.view(*q.shape)[..., :2].mean(2)


@contextmanager
def recorded_cf_attention(model):
    """Yield a list of per-layer ``[share on the user's CF key, share on item CF keys, token
    count]`` (shares summed over the real tokens), filled by forward passes of a model with CF."""
    sums = [[0.0, 0.0, 0] for _ in model.damoe_layers]

    def recording(index):
        def pre_hook(layer, args, kwargs):
            inputs = kwargs["damoe_inputs"]
            if inputs.cf_states is None or inputs.context_is_causal:
                return
            hidden = args[0] if args else kwargs["hidden_states"]
            _, q, k, _, k_cf, _ = layer.attention_inputs(hidden, kwargs.get("position_embeddings"), inputs)
            mass = cf_key_mass(q, k, k_cf, inputs.masks, layer.parts.scale, inputs.impl)
            real = inputs.masks.attention_mask.bool()
            sums[index][0] += float(mass[..., 0][real].sum())
            sums[index][1] += float(mass[..., 1][real].sum())
            sums[index][2] += int(real.sum())
        return pre_hook

    handles = [layer.register_forward_pre_hook(recording(index), with_kwargs=True)
               for index, layer in enumerate(model.damoe_layers)]
    try:
        yield sums
    finally:
        for handle in handles:
            handle.remove()


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
        with recorded_gates(model) as sums, recorded_cf_attention(model) as cf_sums:
            base = score()
        print(f"{config['model']} on {config['dataset']}: mean gate weight on the causal expert per DAMoE "
              f"layer (start {config['gate_init_causal']}): " + " ".join(f"{t / n:.3f}" for t, n in sums))
        if all(n for _, _, n in cf_sums):
            print("context expert's attention on the user's CF key per DAMoE layer: "
                  + " ".join(f"{u / n:.3f}" for u, _, n in cf_sums)
                  + "; on the item CF keys: " + " ".join(f"{i / n:.3f}" for _, i, n in cf_sums))
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
