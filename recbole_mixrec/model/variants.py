"""The paper's MixRec variants as model names (spec section 7).

Each is MixRec with its own yaml (``properties/model/<Name>.yaml``, read after MixRec.yaml);
the classes exist so that RecBole, the CLI and the benchmark runner can name them.
"""

from recbole_mixrec.model.mixrec import MixRec


class LLMRec(MixRec):
    """Frozen LLM + item head, L_seq only (paper baseline)."""


class MixRec_base(MixRec):  # noqa: N801  (RecBole looks models up by this exact name)
    """Variation 1: adapters and the coarse-grained tasks, no DAMoE/CF/L_cl."""


class MixRec_noBO(MixRec):  # noqa: N801
    """Variation 2: full MixRec with a fixed (all-serial) architecture."""


class MixRec_causal2(MixRec):  # noqa: N801
    """Control: both experts causal, parameter-matched to MixRec."""


VARIANTS = (LLMRec, MixRec_base, MixRec_noBO, MixRec_causal2)
