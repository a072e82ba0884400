"""recbole_mixrec: MixRec (LLM-based sequential recommendation) as a RecBole plugin.

Importing the package registers its models, datasets and trainers with RecBole, so that
``recbole.quick_start.run_recbole(model="MixRec", ...)`` works by name.
"""

from recbole_mixrec.registry import register_all as _register_all

_register_all()

from recbole_mixrec.quick_start import load_data_and_model, run_mixrec  # noqa: E402

__version__ = "0.1.0"
__all__ = ["run_mixrec", "load_data_and_model", "__version__"]
