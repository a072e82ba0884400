"""The MixRec architecture search space (spec section 3.4).

Each DAMoE layer has three binary choices, in this order: the causal expert ``F_causal``, the
context expert ``F_context`` and the recommendation adapter around the feed-forward block.
``0`` / ``'s'`` is serial, ``1`` / ``'p'`` parallel. A design for ``L_d`` DAMoE layers is
``z in {0,1}^(3 L_d)``; the model reads it as the config key ``architecture``, a string of
``3 L_d`` characters in ``{s, p}`` (``"spsssp"`` for two layers).
"""

from recbole_mixrec.backbone import SMOLLM2_ALIAS, num_decoder_layers
from recbole_mixrec.model.damoe import ARCHITECTURE_CHOICES, architecture_flags, damoe_layer_indices

CHOICES_PER_LAYER = ARCHITECTURE_CHOICES
CHOICE_NAMES = ("F_causal", "F_context", "rec_adapter")


def z_to_architecture(z):
    """``z`` (a sequence or 1-d tensor of 0/1, length ``3 L_d``) -> ``"sp..."`` string."""
    return "".join("p" if flag else "s" for flag in architecture_flags(z))


def architecture_to_z(architecture):
    """``"sp..."`` string -> list of ints (0 serial, 1 parallel)."""
    return [int(flag) for flag in architecture_flags(architecture)]


def num_damoe_layers(n_layers, replace_freq=1):
    """DAMoE layers among ``n_layers`` when every ``replace_freq``-th layer is replaced (the
    model's own rule, ``damoe.damoe_layer_indices``)."""
    return len(damoe_layer_indices(int(n_layers), 1 if replace_freq is None else int(replace_freq)))


def search_dimension(config):
    """``3 L_d`` for a MixRec config (RecBole ``Config`` or dict): the layers kept
    (``backbone_layers``, or all) divided by ``replace_freq``."""
    get = config.get if isinstance(config, dict) else (lambda k, d=None: config[k] if k in config else d)
    total = num_decoder_layers(get("backbone", SMOLLM2_ALIAS))
    kept = min(total, int(get("backbone_layers"))) if get("backbone_layers") else total
    return CHOICES_PER_LAYER * num_damoe_layers(kept, get("replace_freq", 1) or 1)
