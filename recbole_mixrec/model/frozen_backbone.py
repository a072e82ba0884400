"""Checkpoints without the frozen backbone: a mixin for models that wrap a frozen LLM.

The backbone is rebuilt from the config at ``__init__``, so ``state_dict()`` holds only the
trainable (and other non-backbone) weights; ``load_state_dict`` accepts such a checkpoint.
"""

from torch import nn


class FrozenBackboneMixin:
    """Put before ``nn.Module`` subclasses in the bases; call :meth:`mark_frozen_backbone`
    with the frozen backbone modules at the end of ``__init__``.

    Attributes:
        frozen_backbone_keys (set[str]): parameter names left out of ``state_dict()``.
    """

    frozen_backbone_keys = frozenset()

    def mark_frozen_backbone(self, *modules):
        """Exclude every frozen (``requires_grad`` False) parameter of ``modules`` from
        checkpoints; trainable parameters inserted into them (adapters) stay in."""
        frozen = {id(p) for module in modules for p in module.parameters() if not p.requires_grad}
        self.frozen_backbone_keys = {
            name for name, p in nn.Module.named_parameters(self) if id(p) in frozen
        }

    def state_dict(self, *args, destination=None, prefix="", keep_vars=False):
        state = super().state_dict(*args, destination=destination, prefix=prefix, keep_vars=keep_vars)
        for key in self.frozen_backbone_keys:
            state.pop(prefix + key, None)
        return state

    def load_state_dict(self, state_dict, strict=True, assign=False):
        """Load trainable weights; frozen backbone weights may be absent (rebuilt at init)."""
        result = super().load_state_dict(state_dict, strict=False, assign=assign)
        missing = [k for k in result.missing_keys if k not in self.frozen_backbone_keys]
        if strict and (missing or result.unexpected_keys):
            raise RuntimeError(
                f"{type(self).__name__} checkpoint does not match the model: missing {missing[:5]}, "
                f"unexpected {result.unexpected_keys[:5]} (different backbone or config?)"
            )
        return result
