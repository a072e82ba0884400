"""The dynamic adaptive mixture-of-experts (DAMoE) layer (spec section 3.3).

A DAMoE layer takes the place of a frozen decoder layer and reuses its weights:

    x = LN1(h);  Q, K, V computed once from x (and K, V of the CF vectors, spec 3.2)
    q = F_causal(SelfAttn(x, MASK_causal)),   p = F_context(SelfAttn(x, MASK_context))
    beta = softmax(W_gate [q; p] + b_gate)  per token;   h' = h + beta_1 q + beta_2 p
    out = h' + F_rec(MLP(LN2(h')))

Each expert F is serial, Adapter(SelfAttn(x)), or parallel, (SelfAttn(x) + Adapter(x)) / 2,
as chosen by the layer's three characters of the ``architecture`` string.

The backbone's own model class runs the layer stack; the DAMoE layer receives the batch's
masks and CF vectors as the keyword argument ``damoe_inputs`` that HF models pass through to
every layer. Supported layouts: Llama-type (Llama, Mistral, Qwen2, SmolLM) and OPT.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from recbole_mixrec.backbone import BackboneError
from recbole_mixrec.errors import MixRecError
from recbole_mixrec.model.adapters import BottleneckAdapter
from recbole_mixrec.model.attention import ExpertMasks, expert_attention

ARCHITECTURE_CHOICES = 3  # F_causal, F_context, rec adapter


@dataclass
class DAMoEInputs:
    """What every DAMoE layer of one forward pass needs (built once per pass)."""

    masks: ExpertMasks
    cf_states: torch.Tensor | None  # [B, C, d] projected CF vectors (user, item slots)
    impl: str = "blocks"  # 'blocks' (efficient) or 'dense' (reference)
    context_is_causal: bool = False  # MixRec_causal2: both experts causal
    cf_in_causal: bool = False  # the causal expert also sees the CF vectors (not the paper's mask)


def _choice_flags(architecture):
    """A string in {s, p} or a sequence of 0/1 -> list of bools (True = parallel)."""
    if isinstance(architecture, str):
        text = architecture.strip().lower()
        if set(text) - {"s", "p"}:
            raise MixRecError(f"architecture '{architecture}': use only the characters 's' and 'p'")
        return [c == "p" for c in text]
    values = architecture.tolist() if hasattr(architecture, "tolist") else list(architecture)
    if any(float(v) not in (0.0, 1.0) for v in values):
        raise MixRecError(f"architecture {values}: a list must hold only 0 and 1")
    return [bool(round(float(v))) for v in values]


def architecture_flags(architecture):
    """``architecture`` -> list of bools (True = parallel), ``ARCHITECTURE_CHOICES`` per DAMoE
    layer, whatever the number of layers. The one parser of the key: the model
    (``parse_architecture``) and the search space (``search/space.py``) both use it."""
    flags = _choice_flags(architecture)
    if len(flags) % ARCHITECTURE_CHOICES:
        raise MixRecError(
            f"architecture has {len(flags)} choices: {ARCHITECTURE_CHOICES} per DAMoE layer "
            "(F_causal, F_context, rec adapter)"
        )
    return flags


def parse_architecture(architecture, n_layers):
    """``architecture`` -> list of ``n_layers`` triples of bools (True = parallel).

    Accepts a string of ``3 * n_layers`` characters in {s, p}, a list of 0/1, or None
    (all serial).
    """
    expected = ARCHITECTURE_CHOICES * n_layers
    empty = architecture is None or (isinstance(architecture, str) and not architecture.strip())
    flags = [False] * expected if empty else _choice_flags(architecture)
    if len(flags) != expected:
        raise MixRecError(
            f"architecture has {len(flags)} choices but the model has {n_layers} DAMoE layers "
            f"x {ARCHITECTURE_CHOICES} = {expected} (F_causal, F_context, rec adapter per layer)"
        )
    return [tuple(flags[i : i + 3]) for i in range(0, expected, 3)]


def damoe_layer_indices(n_layers, replace_freq):
    """0-based indices of the layers that become DAMoE layers: every ``replace_freq``-th one."""
    if replace_freq < 1:
        raise MixRecError(f"replace_freq={replace_freq}: must be >= 1")
    return [k for k in range(n_layers) if (k + 1) % replace_freq == 0]


class AdapterExpert(nn.Module):
    """An adapter around a frozen sub-layer, serial or parallel (spec 3.3)."""

    def __init__(self, hidden_size, bottleneck, act, init_std, parallel):
        super().__init__()
        self.parallel = parallel
        self.adapter = BottleneckAdapter(hidden_size, bottleneck, act, init_std)

    def forward(self, sublayer_out, sublayer_in):
        if self.parallel:
            return (sublayer_out + self.adapter(sublayer_in)) / 2
        return self.adapter(sublayer_out)

    def extra_repr(self):
        return "parallel" if self.parallel else "serial"


class DecoderLayerParts:
    """The frozen pieces of one decoder layer that a DAMoE layer reuses, for the supported
    layouts: Llama-type (Llama, Mistral, Qwen2, SmolLM: rotary, pre-norm, ``mlp``) and OPT
    (learned positions added at the input, pre-LayerNorm, ``fc1``/``fc2``).

    NOTE: OPT's dropout after attention and fc2 is not applied inside DAMoE layers (the
    backbone is frozen; its dropout only adds noise to the trained adapters).
    """

    def __init__(self, layer):
        attention = getattr(layer, "self_attn", None)
        if attention is None or not all(hasattr(attention, n) for n in ("q_proj", "k_proj", "v_proj")):
            raise BackboneError(
                f"DAMoE layers support Llama-type and OPT decoder layers; got {type(layer).__name__}"
            )
        self.layer, self.attention = layer, attention
        if hasattr(layer, "input_layernorm"):  # Llama-type
            self.norm1, self.norm2 = layer.input_layernorm, layer.post_attention_layernorm
            self.out_proj, self.rotary = attention.o_proj, True
        elif hasattr(layer, "self_attn_layer_norm"):  # OPT
            if not layer.do_layer_norm_before:
                raise BackboneError("DAMoE layers need pre-LayerNorm OPT models (not OPT-350m)")
            self.norm1, self.norm2 = layer.self_attn_layer_norm, layer.final_layer_norm
            self.out_proj, self.rotary = attention.out_proj, False
        else:
            raise BackboneError(f"unsupported decoder layer layout {type(layer).__name__}")
        self.head_dim = attention.head_dim
        self.scale = attention.scaling
        self.hidden_size = self.out_proj.out_features

    def mlp(self, y):
        layer = self.layer
        if self.rotary:
            return layer.mlp(y)
        return layer.fc2(layer.activation_fn(layer.fc1(y)))  # OPT

    def _heads(self, x, proj):
        """Token-major heads ``[B, L, heads, head_dim]`` (the experts' layout, see attention.py)."""
        return proj(x).view(*x.shape[:-1], -1, self.head_dim)

    def qkv(self, x, position_embeddings):
        attn = self.attention
        q, k, v = (self._heads(x, p) for p in (attn.q_proj, attn.k_proj, attn.v_proj))
        if self.rotary:
            from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

            cos, sin = position_embeddings
            q, k = apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim=2)
        return q, k, v  # k/v keep the backbone's key/value heads (grouped-query attention)

    def kv_without_position(self, x):
        """K/V of the CF vectors: they have no position, so no rotary embedding (decision)."""
        attn = self.attention
        return self._heads(x, attn.k_proj), self._heads(x, attn.v_proj)

    def output(self, rows):
        """The frozen output projection of ``[B, T, H * d]`` expert outputs."""
        return self.out_proj(rows)


class DAMoELayer(nn.Module):
    """Replaces one frozen decoder layer; ``choices`` = (causal, context, rec) parallel flags."""

    def __init__(self, layer, choices, bottleneck, act="gelu", init_std=0.02, gate_init_causal=0.5):
        super().__init__()
        self.layer = layer  # frozen: its norms, attention projections and MLP are reused
        self.attention_type = getattr(layer, "attention_type", None)
        self.parts = DecoderLayerParts(layer)
        hidden = self.parts.hidden_size
        causal_p, context_p, rec_p = choices
        self.causal_expert = AdapterExpert(hidden, bottleneck, act, init_std, causal_p)
        self.context_expert = AdapterExpert(hidden, bottleneck, act, init_std, context_p)
        self.rec_adapter = AdapterExpert(hidden, bottleneck, act, init_std, rec_p)
        self.gate = nn.Linear(2 * hidden, 2)
        # the gate starts input-independent with weight gate_init_causal on the causal expert:
        # near 1 a fresh layer is close to the frozen backbone layer (adapters start at identity)
        if not 0 < gate_init_causal < 1:
            raise MixRecError(f"gate_init_causal={gate_init_causal}: must be strictly between 0 and 1")
        nn.init.zeros_(self.gate.weight)
        with torch.no_grad():
            self.gate.bias.copy_(torch.tensor([math.log(gate_init_causal / (1 - gate_init_causal)), 0.0]))

    def forward(self, hidden_states, position_embeddings=None, damoe_inputs=None, **kwargs):
        if damoe_inputs is None:
            raise RuntimeError("a DAMoE layer needs damoe_inputs (masks and CF vectors)")
        proj = self.parts
        x, q, k, v, k_cf, v_cf = self.attention_inputs(hidden_states, position_embeddings, damoe_inputs)
        causal, context = expert_attention(
            q, k, v, k_cf, v_cf, damoe_inputs.masks, proj.scale,
            damoe_inputs.impl, damoe_inputs.context_is_causal, damoe_inputs.cf_in_causal,
        )
        q_t = self.causal_expert(proj.output(causal), x)
        p_t = self.context_expert(proj.output(context), x)
        beta = self.gate_weights(q_t, p_t)
        # beta_1 q + beta_2 p with beta_2 = 1 - beta_1: one lerp kernel instead of two mul + add;
        # lerp wants one dtype, and under CUDA bf16 autocast the gate's softmax comes out fp32
        hidden_states = hidden_states + torch.lerp(p_t, q_t.to(p_t.dtype), beta[..., :1].to(p_t.dtype))
        y = proj.norm2(hidden_states)
        return hidden_states + self.rec_adapter(proj.mlp(y), y)

    def attention_inputs(self, hidden_states, position_embeddings, damoe_inputs):
        """``x`` = LN1(h) and the frozen projections' Q, K, V of the tokens and K, V of the CF
        vectors (None without CF)."""
        proj = self.parts
        x = proj.norm1(hidden_states)
        q, k, v = proj.qkv(x, position_embeddings)
        k_cf = v_cf = None
        if damoe_inputs.cf_states is not None:
            k_cf, v_cf = proj.kv_without_position(proj.norm1(damoe_inputs.cf_states))
        return x, q, k, v, k_cf, v_cf

    def gate_weights(self, q_t, p_t):
        """The per-token mixture weights ``[..., 2]`` (they sum to 1): softmax(W [q; p] + b),
        with W split in its q and p halves so that [q; p] is never materialised."""
        w_q, w_p = self.gate.weight.split(q_t.size(-1), dim=1)
        return (F.linear(q_t, w_q, self.gate.bias) + F.linear(p_t, w_p)).softmax(-1)


def insert_damoe_layers(llm, architecture, replace_freq, bottleneck, act="gelu", init_std=0.02,
                        gate_init_causal=0.5):
    """Replace every ``replace_freq``-th decoder layer of ``llm`` by a DAMoE layer.

    Returns the list of DAMoE layers.
    """
    from recbole_mixrec.backbone import decoder_layers

    layers = decoder_layers(llm)
    indices = damoe_layer_indices(len(layers), replace_freq)
    choices = parse_architecture(architecture, len(indices))
    inserted = []
    for index, layer_choices in zip(indices, choices):
        layers[index] = DAMoELayer(
            layers[index], layer_choices, bottleneck, act, init_std, gate_init_causal
        )
        inserted.append(layers[index])
    return inserted
