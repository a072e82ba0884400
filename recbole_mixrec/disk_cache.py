"""The one rule of the plugin's disk caches (item tokens, hard negatives, item vectors).

An entry is one ``torch.save`` file whose name carries a short hash of everything it depends
on (``cache_key``). ``load_or_build`` reads it if it is there and sound, else builds it and
writes it through a temporary file in the same folder and ``os.replace``, so that parallel
Ray trials building the same entry never see a half-written file. An entry that cannot be
read (truncated, corrupt, not a torch file, unexpected content) is rebuilt with a warning;
a cache folder that cannot be written is a ``MixRecError`` naming the folder and the setting
that chooses it.
"""

import hashlib
import logging
import os
import secrets

import numpy as np
import torch

from recbole_mixrec.errors import MixRecError

logger = logging.getLogger(__name__)

KEY_LENGTH = 16  # hex digits of the sha256 digest in a cache file's name

# the setting that chooses the folder of every cache here (see backbone.default_cache_dir)
CACHE_SETTING = "backbone_cache_dir (or, when it is unset, the RECBOLE_MIXREC_CACHE environment variable)"


def _as_bytes(part):
    if isinstance(part, bytes):
        return part
    if isinstance(part, str):
        return part.encode()
    if isinstance(part, torch.Tensor):
        return part.detach().cpu().contiguous().numpy().tobytes()
    if isinstance(part, np.ndarray):
        return part.tobytes()  # C order, whatever the array's layout
    raise TypeError(f"cache_key parts are str, bytes, tensors or arrays, not {type(part).__name__}")


def cache_key(*parts):
    """Short hex sha256 over ``parts`` in order (str: UTF-8, tensors and arrays: raw bytes).

    The parts are concatenated without separators: a caller whose parts could run into each
    other adds its own (or hashes a ``json.dumps``/``repr`` of them).
    """
    digest = hashlib.sha256()
    for part in parts:
        digest.update(_as_bytes(part))
    return digest.hexdigest()[:KEY_LENGTH]


def _unwritable(folder, describe, setting, err):
    reason = "it exists and is not a folder" if isinstance(err, FileExistsError) else err.strerror or str(err)
    return MixRecError(
        f"cannot write the {describe} cache in {folder}: {reason}; "
        f"set {setting} to a writable folder"
    )


_UNUSABLE = object()


def _load(path, describe, validate):
    """The saved value, or ``_UNUSABLE`` (with a warning) if the file is not a sound entry."""
    try:
        value = torch.load(path, weights_only=True)
    except Exception as err:  # truncated, corrupt, not a torch file, unreadable: rebuild
        first_line = (str(err).strip().splitlines() or [""])[0]
        problem = f"cannot be read ({type(err).__name__}: {first_line})"
    else:
        try:
            if validate is None or validate(value):
                return value
        except Exception:  # a validator indexing a value of the wrong type
            pass
        problem = "holds unexpected content"
    logger.warning("%s cache file %s %s; rebuilding it", describe, path, problem)
    return _UNUSABLE


def load_or_build(path, build, describe, validate=None, setting=CACHE_SETTING):
    """Return ``(value, loaded)``: the entry saved at ``path``, or ``build()`` saved there.

    Args:
        path (str): the cache file; its folder is created if missing.
        build (callable): no arguments, returns the value to cache (anything
            ``torch.load(weights_only=True)`` reads back: tensors, dicts and lists of them).
        describe (str): what the entry holds, for messages ("item tokens").
        validate (callable, optional): takes a loaded value, returns whether it is usable;
            a rejected (or raising) value is rebuilt like a corrupt file.
        setting (str): the config key (or variable) that chooses the folder, for messages.

    ``loaded`` is True when the value came from the file. The cache folder is checked before
    ``build`` runs; if it cannot be written, ``MixRecError`` names it and ``setting``. A
    ``build`` that raises leaves the folder as it was (no partial file, an existing entry
    untouched) and its exception propagates.
    """
    if os.path.isfile(path):
        value = _load(path, describe, validate)
        if value is not _UNUSABLE:
            return value, True
    folder = os.path.dirname(os.path.abspath(path))
    tmp = f"{path}.{os.getpid()}.{secrets.token_hex(4)}.tmp"  # unique: threads and processes
    try:
        os.makedirs(folder, exist_ok=True)
        # created now, before a long build, so that an unwritable folder fails at once
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as err:
        raise _unwritable(folder, describe, setting, err) from err
    built = False
    try:
        try:
            with os.fdopen(fd, "wb") as file:
                value = build()
                built = True
                torch.save(value, file)
            os.replace(tmp, path)  # atomic: parallel trials may build the same entry
        except OSError as err:
            if not built:
                raise  # the build's own error, not the cache's
            raise _unwritable(folder, describe, setting, err) from err
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    return value, False
