"""Run a model end to end the way ``recbole.quick_start.run_recbole`` does, plus the plugin's
yaml files, clear errors for bad input, and an argv that RecBole does not parse."""

import contextlib
import logging
import os
import sys

import pandas as pd
import recbole
import torch
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.utils import ModelType, get_model, get_trainer, init_logger, init_seed, set_color

from recbole_mixrec import distributed
from recbole_mixrec.checkpoint import check_resume, read_checkpoint
from recbole_mixrec.config_checks import check_settings, read_settings_file
from recbole_mixrec.data.atomic_checks import check_dataset_content, header_fields
from recbole_mixrec.errors import MixRecError
from recbole_mixrec.properties import config_files, dataset_file, overall_file, read_yaml
from recbole_mixrec.registry import BASELINE_MODELS, PLUGIN_MODELS
from recbole_mixrec.trainer import with_plugin_checkpoints

ATOMIC_TYPES = ("token", "token_seq", "float", "float_seq")


@contextlib.contextmanager
def isolated_argv():
    """Hide ``sys.argv`` from RecBole's Config, which turns every ``--k=v`` (pytest's, Ray
    workers') into a config entry. The CLI passes its own arguments as ``config_dict``."""
    saved = sys.argv
    sys.argv = saved[:1]
    try:
        yield
    finally:
        sys.argv = saved


def check_model(model):
    """Raise a one-line error naming the known models if ``model`` is neither ours nor RecBole's."""
    if model in PLUGIN_MODELS:
        return
    try:
        get_model(model)
    except (ValueError, AttributeError, ImportError):  # exlib models import optional packages
        raise MixRecError(
            f"unknown model '{model}': plugin models {sorted(PLUGIN_MODELS)}, RecBole baselines "
            f"{list(BASELINE_MODELS)} (any RecBole sequential or general model name also works)"
        ) from None


def build_config(model, dataset, config_file_list=None, config_dict=None, strict=False):
    """The RecBole Config of a run: the plugin's yaml files, then the user's, then
    ``config_dict``; every setting checked (``config_checks``) before anything is loaded.
    ``strict``: an unknown key that looks like a known one is an error (CLI, ``compare``), not a
    warning (the Python entry points, whose dict may carry other tools' keys)."""
    check_model(model)
    for path in config_file_list or []:
        read_settings_file(path)  # missing, malformed or not a mapping: named here, not in RecBole
    files = config_files(model, dataset, config_file_list)
    with isolated_argv():
        config = Config(model=model, dataset=dataset, config_file_list=files, config_dict=dict(config_dict or {}))
        own = dataset_settings_file(config)
        if own and own not in files:
            # the dataset's own settings rank with the plugin's dataset yaml: after it, before
            # the model files and the user's
            files.insert(1 + (dataset_file(dataset) is not None), own)
            config = Config(model=model, dataset=dataset, config_file_list=files, config_dict=dict(config_dict or {}))
    named = set(config_dict or {}).union(*(read_yaml(f) for f in files if f != overall_file()))
    if model not in PLUGIN_MODELS and "train_neg_sample_args" not in named:
        set_default_negative_sampling(config)
    check_settings(config, model, config_dict, config_file_list, strict=strict)
    return config


def dataset_settings_file(config):
    """``<data_path>/<dataset>.yaml`` when the dataset folder has one (``dataset_tools unisrec``
    writes it: fields, item text, split and history length of a converted published split)."""
    path = os.path.join(config["data_path"], f"{config['dataset']}.yaml")
    return path if os.path.isfile(path) else None


def set_default_negative_sampling(config):
    """What RecBole's own defaults would do for a RecBole model whose config files and
    settings do not name ``train_neg_sample_args`` (overall.yaml turns sampling off).

    RecBole's default, from its ``overall.yaml``, is one uniform negative per positive: BPR and
    the other pairwise models need it, as do pointwise ones with a BCE loss (NeuMF: the labels
    come from the sampling) and sequential models with ``loss_type: BPR``. Sequential models
    with ``loss_type: CE`` stay without: a softmax over all items, and RecBole refuses negatives
    there (which is why overall.yaml has ``~``). Pop gets RecBole's default too: it counts an
    item once per training batch it is in, negatives included (README, Models).
    """
    if config["MODEL_TYPE"] == ModelType.SEQUENTIAL and config["loss_type"] == "CE":
        return
    recbole_overall = os.path.join(os.path.dirname(recbole.__file__), "properties", "overall.yaml")
    config["train_neg_sample_args"] = read_yaml(recbole_overall)["train_neg_sample_args"]
    config._set_train_neg_sample_args()  # RecBole normalises this key while building a Config


def check_dataset_files(config):
    """Clear errors for a missing dataset, a malformed header or an unknown ``load_col`` field."""
    dataset, data_path = config["dataset"], config["data_path"]
    inter_file = os.path.join(data_path, f"{dataset}.inter")
    presplit = os.path.isfile(os.path.join(data_path, f"{dataset}.train.inter"))
    if config["benchmark_filename"] or (presplit and not os.path.isfile(inter_file)):
        # RecBole's benchmark_filename path loads such files for its own models only: no item
        # text for MixRec, no timestamps for the plugin's datasets, MAX_ITEM_LIST_LENGTH unused
        out = os.path.dirname(os.path.normpath(data_path))
        raise MixRecError(
            f"pre-split files ({dataset}.train/valid/test.inter, benchmark_filename) are not read directly; "
            f"convert them once with: python -m dataset_tools unisrec --input {data_path} --name {dataset}-loo "
            f"--out {out}, then run --dataset={dataset}-loo without benchmark_filename (RecBole's leave-one-out "
            "split of the converted data is the published split)"
        )
    if not os.path.isfile(inter_file):
        from dataset_tools import KNOWN_DATASETS, build_hints

        # RecBole's data_path is <data_path given>/<dataset>: the tools write into the former
        hints = build_hints(dataset, out_dir=os.path.dirname(os.path.normpath(data_path)))
        how = ("create it with: " + "; or from the raw Amazon 2018 files: ".join(hints)) if hints else (
            f"put {dataset}.inter (RecBole atomic format) in {data_path}; known datasets: "
            f"ml-100k (packaged with RecBole), {', '.join(KNOWN_DATASETS)}"
        )
        raise MixRecError(f"dataset '{dataset}' not found ({inter_file} is missing); {how}")
    for suffix, wanted in (config["load_col"] or {}).items():
        path = os.path.join(data_path, f"{dataset}.{suffix}")
        if not os.path.isfile(path):
            raise MixRecError(f"load_col names '{suffix}' fields but {path} does not exist")
        columns = {}
        for column in header_fields(path, config["field_separator"] or "\t"):
            name, _, ftype = column.partition(":")
            if ftype not in ATOMIC_TYPES:
                raise MixRecError(
                    f"{path} line 1: column '{column}' is not 'name:type' with type in {ATOMIC_TYPES}"
                )
            columns[name] = ftype
        unknown = [field for field in wanted if field not in columns]
        if unknown:
            raise MixRecError(
                f"load_col: unknown field(s) {unknown} for {path}; its fields: {sorted(columns)}"
            )
    check_interaction_fields(config, inter_file)
    check_dataset_content(config, inter_file, needs_text=reads_item_text(config["model"]))


def reads_item_text(model):
    """Whether ``model``'s dataset gives every item a sentence (MixRec, its variants, LiteLLM4Rec)."""
    from recbole_mixrec.data.dataset import MixRecDataset

    dataset_class = PLUGIN_MODELS.get(model, (None, None))[1]
    return dataset_class is not None and issubclass(dataset_class, MixRecDataset)


def check_interaction_fields(config, inter_file):
    """The user and item ids, and the time under a temporal split, must be loaded."""
    load_col = config["load_col"] or {}
    header = header_fields(inter_file, config["field_separator"] or "\t")
    loaded = load_col.get("inter") or [column.partition(":")[0] for column in header]
    needed = {"USER_ID_FIELD": config["USER_ID_FIELD"], "ITEM_ID_FIELD": config["ITEM_ID_FIELD"]}
    if (config["eval_args"] or {}).get("order") == "TO":
        needed["TIME_FIELD (eval_args order: TO)"] = config["TIME_FIELD"]
    missing = [f"{key}={field}" for key, field in needed.items() if field not in loaded]
    if missing:
        raise MixRecError(
            f"{inter_file}: {', '.join(missing)} not among the loaded fields {list(loaded)}; "
            "name it in load_col: inter: [...] (RecBole's default loads user_id and item_id only)"
        )


def load_dataset(config):
    check_dataset_files(config)
    try:
        return create_dataset(config)
    except MixRecError:
        raise
    except (pd.errors.ParserError, ValueError) as err:  # e.g. a float column holding text
        raise MixRecError(f"malformed atomic file of dataset '{config['dataset']}': {err}") from None


def init_run_logger(config):
    """RecBole's ``init_logger`` for this run's log file.

    It ends in ``logging.basicConfig``, a no-op once the root logger has handlers: a second
    run in the same process (``benchmarks.compare``, in-process BO trials) would write into the
    first run's file and leave its own empty. Drop the handlers a previous call added first.
    """
    from colorlog import ColoredFormatter
    from recbole.utils.logger import RemoveColorFilter

    def made_by_recbole(handler):  # its file handler strips colours, its console one adds them
        return any(isinstance(f, RemoveColorFilter) for f in handler.filters) or isinstance(
            handler.formatter, ColoredFormatter)

    root = logging.getLogger()
    for handler in [h for h in root.handlers if made_by_recbole(h)]:
        root.removeHandler(handler)
        handler.close()
    # RecBole checks, then creates ./log/<model>: two ranks of a first distributed run race there
    os.makedirs(os.path.join("log", config["model"]), exist_ok=True)
    init_logger(config)


def require_writable_folder(path, key):
    """Create ``path`` if needed; a one-line error naming ``key`` if it cannot be written."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as err:
        raise MixRecError(f"{key} {path} cannot be created ({err.strerror}); set {key} to a writable folder") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise MixRecError(f"{key} {path} is not writable; set {key} to a writable folder")


def apply_float_settings(config):
    """Process-wide float settings of a run (``cpu_flush_denormal``). Set before the run's first
    parallel op: torch's OpenMP threads keep the mode they started with, so a later change
    reaches the calling thread only (a second run in the same process changes that one)."""
    # Why: MixRec's gradients through its adapters drift into denormal floats as training goes
    # on (1.7M a step after 3 epochs of ml-100k's searched design), which x86 CPUs compute on a
    # slow path: such a step took 2.40 s against 1.92 s flushed (1.88 s untrained). Flushing
    # changes no value above 1.2e-38. Where the CPU has no such mode torch returns False.
    torch.set_flush_denormal(bool(config["cpu_flush_denormal"]))


def build_trainer(config, model):
    """RecBole's trainer for ``model`` (Trainer, TraditionalTrainer for Pop, ...): RecBole's own
    loop, with the plugin's checkpoints (weights-only loadable, resumable)."""
    return with_plugin_checkpoints(get_trainer(config["MODEL_TYPE"], config["model"]))(config, model)


def run_mixrec(model, dataset, config_file_list=None, config_dict=None, saved=True, resume_file=None, strict=False,
               local_rank=None):
    """Train and test ``model`` on ``dataset``; returns what ``run_recbole`` returns.

    Works for the plugin's models and for RecBole's (baselines get the same split, metrics
    and dataset yaml). The plugin's yaml files come first, ``config_file_list`` after them,
    ``config_dict`` last. ``resume_file``: a checkpoint of this model and config to continue
    from (weights, optimizer, epoch, early-stopping state); one trained on other data or with
    other defining settings is refused (``checkpoint.check_resume``). ``strict``: see
    ``build_config``. ``local_rank``: this process's rank on this node in a distributed run
    (``distributed.spawn`` sets it; ``config_dict`` then holds ``nproc``, ``world_size``,
    ``ip``, ``port`` and ``offset``).
    """
    checkpoint = read_checkpoint(resume_file) if resume_file else None
    config = build_config(model, dataset, config_file_list, config_dict, strict=strict)
    if local_rank is not None:
        distributed.join_process_group(config, local_rank)
    if checkpoint is not None:
        check_resume(resume_file, checkpoint, config)
        del checkpoint
    if saved:
        require_writable_folder(config["checkpoint_dir"], "checkpoint_dir")
    init_seed(config["seed"], config["reproducibility"])
    apply_float_settings(config)
    init_run_logger(config)
    logger = logging.getLogger()
    logger.info(config)

    dataset = load_dataset(config)
    logger.info(dataset)
    train_data, valid_data, test_data = data_preparation(config, dataset)

    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    logger.info(model)
    trainer = build_trainer(config, model)
    if resume_file:
        trainer.resume_checkpoint(resume_file)

    best_valid_score, best_valid_result = trainer.fit(
        train_data, valid_data, saved=saved, show_progress=config["show_progress"]
    )
    test_result = trainer.evaluate(
        test_data, load_best_model=saved, show_progress=config["show_progress"]
    )
    logger.info(set_color("best valid ", "yellow") + f": {best_valid_result}")
    logger.info(set_color("test result", "yellow") + f": {test_result}")
    # distributed: every rank's hash of its trainable weights (DDP keeps them equal)
    digests = None if config["single_spec"] else distributed.all_digests(model)
    return {
        "rank_weight_digests": digests,
        "best_valid_score": best_valid_score,
        "valid_score_bigger": config["valid_metric_bigger"],
        "best_valid_result": best_valid_result,
        "test_result": test_result,
        "saved_model_file": trainer.saved_model_file if saved else None,
        # fewer than ``epochs``: stopped early (train_loss_dict is keyed by epoch, resumes included)
        "epochs_trained": max(trainer.train_loss_dict, default=trainer.start_epoch - 1) + 1,
        "best_epoch": getattr(trainer, "best_epoch", None),  # 0-based, as in RecBole's log; None when not saved
        # training time of the runs a resumed one continues: add it for the total (0 for a fresh
        # run, None when the checkpoint predates that field)
        "time_before_resume_s": trainer.time_before_resume_s,
        # valid_untrained: the validation before the first epoch (None when not run)
        "untrained_valid_result": getattr(trainer, "untrained_valid_result", None),
        # per epoch, resumed runs' earlier epochs included: {"epoch", "train_loss" (mean over
        # batches), "valid_score" (valid_metric; None without validation)}
        "learning_curve": [dict(point) for point in trainer.learning_curve],
    }


def load_data_and_model(model_file):
    """RecBole's ``load_data_and_model`` for plugin and RecBole checkpoints (registered names,
    weights-only loading allowed for RecBole's Config)."""
    read_checkpoint(model_file)  # a missing, truncated or foreign file: one line, not a traceback
    from recbole.quick_start import load_data_and_model as recbole_load

    loaded = recbole_load(model_file)
    # RecBole's metrics use numpy aliases (np.float) that only Config.__init__ restores; an
    # unpickled Config skips it, so evaluating in a fresh process failed
    loaded[0].compatibility_settings()
    return loaded
