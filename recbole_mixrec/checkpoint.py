"""Reading a checkpoint a user names, and checking that a resumed run continues the same one.

A checkpoint knows its model, dataset and settings (RecBole's ``Config`` inside it) and, since
this module, the content fingerprint of its dataset. Resuming under another model, data,
backbone, architecture or item text would silently train a different run on top of the old
one and overwrite its files: that is refused before any data is read. Settings a continued
run may change (``epochs``, ``stopping_step``, the process count) are only named in a warning.
"""

import logging
import os
import pickle
import zipfile

import torch

from recbole_mixrec.errors import MixRecError
from recbole_mixrec.fingerprint import (
    HOUSEKEEPING_KEYS, IDENTITY_KEYS, MAY_CHANGE_KEYS, dataset_fingerprint, differences, settings_of,
)

logger = logging.getLogger(__name__)

# what every checkpoint of RecBole's or the plugin's trainers holds
REQUIRED_ENTRIES = ("config", "epoch", "state_dict")
def read_checkpoint(path):
    """The checkpoint at ``path`` as a dict, or a one-line ``MixRecError`` saying what is wrong
    with the file (missing, truncated, not a torch file, not a RecBole/plugin checkpoint)."""
    if not os.path.isfile(path):
        raise MixRecError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", mmap=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError, OSError, ValueError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if "weights only" in reason.lower() or "weights_only" in reason.lower():
            reason = "it holds objects that are not plain weights (not a RecBole or recbole_mixrec checkpoint)"
        raise MixRecError(f"{path}: not a readable checkpoint ({reason[:200]})") from None
    if not isinstance(checkpoint, dict) or any(key not in checkpoint for key in REQUIRED_ENTRIES):
        found = sorted(checkpoint)[:6] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise MixRecError(f"{path}: not a RecBole or recbole_mixrec checkpoint (it has no "
                          f"{'/'.join(REQUIRED_ENTRIES)} entries; found {found})")
    return checkpoint


def check_resume(path, checkpoint, config):
    """Refuse to resume ``checkpoint`` (read from ``path``) under ``config`` if the two define
    different runs; warn for the other settings that changed."""
    saved = checkpoint["config"]
    saved_final = getattr(saved, "final_config_dict", {})
    # a key an older version did not have yet cannot be compared: it is left to the warning below
    both = [key for key in IDENTITY_KEYS if key in saved_final and key in config.final_config_dict]
    identity = differences(settings_of(saved, both), settings_of(config, both))
    for key in sorted(set(IDENTITY_KEYS) - set(both)):
        if key in config.final_config_dict:
            logger.warning("%s predates the setting %s: that it matches is not checked", path, key)
    problems = [f"{key}: {old!r} -> {new!r}" for key, old, new in identity]
    fingerprint = checkpoint.get("data_fingerprint")
    if fingerprint is None:
        logger.warning("%s predates dataset fingerprints: that it was trained on this dataset's "
                       "current files is not checked", path)
    elif fingerprint != dataset_fingerprint(config):  # the files RecBole reads: fingerprint.dataset_files
        problems.append(f"the files of dataset '{config['dataset']}' in {config['data_path']} changed since "
                        "the checkpoint was written")
    if problems:
        raise MixRecError(f"--resume_file {path} was trained with other data or settings ("
                          + "; ".join(problems) + "): start a new run, or resume with the checkpoint's settings")
    skip = set(both) | set(HOUSEKEEPING_KEYS)
    others = [key for key in config.final_config_dict if key in saved_final and key not in skip]
    changed = differences(settings_of(saved, others), settings_of(config, others))
    for key, old, new in changed:
        why = "" if key in MAY_CHANGE_KEYS else ": the continued run mixes the two settings"
        logger.warning("resume: %s changed from %r to %r since the checkpoint was written%s", key, old, new, why)
