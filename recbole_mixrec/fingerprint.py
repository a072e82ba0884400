"""What a run was made from, in a form that can be compared later: the dataset's content and
the settings that define a model. Resumed runs and re-run searches compare these before any
work, so a changed file or setting is refused instead of silently mixing two runs."""

import hashlib
import os

# settings that define what a checkpoint or a search trial *is*: resuming or reusing it under
# other values would mix two different runs
IDENTITY_KEYS = (
    "model", "dataset", "backbone", "backbone_layers", "architecture", "replace_freq",
    "item_text_fields", "item_text_max_tokens",
    "max_seq_items", "MAX_ITEM_LIST_LENGTH", "USER_ID_FIELD", "ITEM_ID_FIELD", "TIME_FIELD",
    "load_col", "eval_args", "user_inter_num_interval", "item_inter_num_interval",
    "val_interval", "train_samples", "train_max_windows", "train_window_stride",
)
# settings that say where and how a run executes, not what it computes: never compared
HOUSEKEEPING_KEYS = (
    "data_path", "checkpoint_dir", "backbone_cache_dir", "dataset_save_path", "dataloaders_save_path",
    "save_dataset", "save_dataloaders", "show_progress", "state", "log_wandb", "wandb_project",
    "device", "gpu_id", "use_gpu", "local_rank", "single_spec", "worker", "nproc", "world_size",
    "offset", "group_offset", "ip", "port", "config_files", "eval_batch_size", "save_resume_checkpoint",
    "length_group_ratio",
)
# settings a continued run may legitimately change: a warning names them, nothing is refused
MAY_CHANGE_KEYS = ("epochs", "stopping_step", "nproc", "world_size")


def dataset_files(config):
    """The files of ``config``'s dataset that RecBole reads (``<data_path>/<dataset>.<suffix>``
    for ``.inter`` and the ``load_col`` suffixes, or ``.user``/``.item`` when it loads all) and
    the dataset's own ``.yaml``, sorted; other files in the folder do not define the run."""
    folder, name = config["data_path"], config["dataset"]
    load_col = config["load_col"]
    suffixes = {"inter", "yaml"} | (set(load_col) if load_col else {"user", "item"})
    paths = (os.path.join(folder, f"{name}.{suffix}") for suffix in suffixes)
    return sorted(path for path in paths if os.path.isfile(path))


def dataset_fingerprint(config):
    """sha256 (16 hex digits) over the names and bytes of the dataset's atomic files. Content,
    not paths or times: a copy of the same data matches, an edited file does not."""
    digest = hashlib.sha256()
    for path in dataset_files(config):
        digest.update(os.path.basename(path).encode())
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def _plain(value):
    """Config values as comparable plain data (RecBole keeps enums and numpy values)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def settings_of(config, keys):
    """``{key: value}`` for the ``keys`` the config has, as plain data."""
    final = config.final_config_dict if hasattr(config, "final_config_dict") else config
    return {key: _plain(final.get(key)) for key in keys if key in final}


def differences(saved, current):
    """Keys whose values differ between two ``settings_of`` dicts: ``[(key, saved, current)]``."""
    return [(key, saved.get(key), current.get(key)) for key in sorted(set(saved) | set(current))
            if saved.get(key) != current.get(key)]
