"""Bottleneck adapters (spec section 2, "Recommendation adapters").

Adapter(h) = W2 act(W1 h + b1) + b2 + h. W2 and b2 start at zero, so a fresh adapter is the
identity and a fresh MixRec computes exactly what the frozen backbone computes.
"""

from torch import nn

from recbole_mixrec.backbone import decoder_layers, sublayer_names
from recbole_mixrec.errors import MixRecError

ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "tanh": nn.Tanh, "identity": nn.Identity}


class BottleneckAdapter(nn.Module):
    def __init__(self, hidden_size, bottleneck, act="gelu", init_std=0.02):
        super().__init__()
        if act not in ACTIVATIONS:
            raise MixRecError(f"adapter_act '{act}' is not one of {sorted(ACTIVATIONS)}")
        self.down = nn.Linear(hidden_size, bottleneck)
        self.act = ACTIVATIONS[act]()
        self.up = nn.Linear(bottleneck, hidden_size)
        nn.init.normal_(self.down.weight, std=init_std)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, hidden):
        return hidden + self.up(self.act(self.down(hidden)))


class AdaptedSublayer(nn.Module):
    """A frozen sub-layer (attention or feed-forward) followed by a serial adapter.

    Wrapping the module keeps the backbone's own layer code (any architecture): the adapter
    applies to the sub-layer's output before the layer's residual connection.
    """

    def __init__(self, sublayer, adapter):
        super().__init__()
        self.sublayer = sublayer
        self.adapter = adapter

    def forward(self, *args, **kwargs):
        out = self.sublayer(*args, **kwargs)
        if isinstance(out, tuple):  # attention modules return (output, weights, ...)
            return (self.adapter(out[0]),) + tuple(out[1:])
        return self.adapter(out)


def insert_adapters(llm, bottleneck, act="gelu", init_std=0.02):
    """Wrap the attention and feed-forward output of every decoder layer of ``llm``.

    Returns the list of inserted adapters (two per layer).
    """
    hidden_size = llm.config.hidden_size
    adapters = []
    for layer in decoder_layers(llm):
        for name in sublayer_names(layer):
            adapter = BottleneckAdapter(hidden_size, bottleneck, act, init_std)
            setattr(layer, name, AdaptedSublayer(getattr(layer, name), adapter))
            adapters.append(adapter)
    return adapters
