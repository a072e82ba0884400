"""Registration of the plugin's models into RecBole's own look-ups.

RecBole finds a model by importing ``recbole.model.<kind>.<name lower>``, its dataset as
``recbole.data.dataset.<Model>Dataset`` and its trainer as ``recbole.trainer.<Model>Trainer``
(environment facts). Registering our classes under those names makes ``run_recbole``,
``load_data_and_model`` and Ray workers (which import this package) work by name.
The table of plugin models and the yaml rule it drives live in ``properties`` (which never
imports this module); they are read from here too.
"""

import sys

import torch
import yaml

from recbole_mixrec.properties import PLUGIN_MODELS, yaml_chain  # noqa: F401  (read from here)

BASELINE_MODELS = ("GRU4Rec", "SASRec", "BERT4Rec", "FDSA")


def register_model(model_class, dataset_class=None, trainer_class=None):
    """Make ``model_class`` findable by name; without a dataset class RecBole uses its
    default for the model type, without a trainer class the stock one."""
    import recbole.data.dataset as dataset_namespace
    import recbole.model.sequential_recommender as model_namespace
    import recbole.trainer as trainer_namespace

    name = model_class.__name__
    module_name = f"{model_namespace.__name__}.{name.lower()}"
    sys.modules.setdefault(module_name, sys.modules[model_class.__module__])
    setattr(model_namespace, name.lower(), sys.modules[module_name])
    if dataset_class is not None:
        setattr(dataset_namespace, f"{name}Dataset", dataset_class)
    if trainer_class is not None:
        setattr(trainer_namespace, f"{name}Trainer", trainer_class)
    PLUGIN_MODELS[name] = (model_class, dataset_class, trainer_class)
    torch.serialization.add_safe_globals([model_class])


def allow_recbole_checkpoints():
    """Let ``torch.load(weights_only=True)`` (torch >= 2.6 default) read RecBole checkpoints.

    RecBole pickles its ``Config`` into every checkpoint. Instead of switching the safety check
    off process-wide (``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``) we allow exactly the classes a
    Config holds: the Config itself, RecBole's enums, the yaml loader class and the model class
    (``Config.model_class``): every RecBole general and sequential model, as any of them runs.
    """
    import recbole.model.general_recommender as general
    import recbole.model.sequential_recommender as sequential
    from recbole.config import Config
    from recbole.model.abstract_recommender import AbstractRecommender
    from recbole.utils.enum_type import EvaluatorType, FeatureSource, FeatureType, InputType, ModelType

    models = [value for namespace in (general, sequential) for value in vars(namespace).values()
              if isinstance(value, type) and issubclass(value, AbstractRecommender)]
    torch.serialization.add_safe_globals(
        [Config, EvaluatorType, FeatureSource, FeatureType, InputType, ModelType, yaml.FullLoader]
        + models
    )


def register_all():
    from recbole_mixrec.data.dataset import MixRecDataset
    from recbole_mixrec.model.mixrec import MixRec
    from recbole_mixrec.model.variants import VARIANTS
    from recbole_mixrec.trainer import MixRecTrainer

    allow_recbole_checkpoints()
    # Importing RecBole's model package runs sine.py's torch.autograd.set_detect_anomaly(True),
    # which records a stack trace per op for the whole process (backward several times slower).
    torch.autograd.set_detect_anomaly(False)
    for model_class in (MixRec,) + VARIANTS:
        register_model(model_class, MixRecDataset, MixRecTrainer)
    from recbole_mixrec.model.hydra import Hydra
    from recbole_mixrec.model.litellm4rec import LiteLLM4Rec
    from recbole_mixrec.trainer import BaselineTrainer

    register_model(LiteLLM4Rec, MixRecDataset, MixRecTrainer)
    from recbole_mixrec.data.dataset import PluginSequentialDataset

    register_model(Hydra, PluginSequentialDataset, BaselineTrainer)
    from recbole_mixrec.model.seqpop import SeqPop

    register_model(SeqPop, PluginSequentialDataset, BaselineTrainer)

