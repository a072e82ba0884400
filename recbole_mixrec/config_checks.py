"""Settings checked when the config is built, before any data is read or model loaded.

The rules live where the keys are documented: every key of the plugin's yaml files carries a
comment ``# (type) what it does. Range in [a, b]`` or ``Range [1, inf)``; this module parses
those comments, so a key's documentation and its check cannot drift apart. Without a range,
an int must be >= 1 and a float finite and >= 0 (the plugin has no negative size, count or
weight); ``None`` is allowed where the default is ``None`` or the comment names it. RecBole's
own numeric keys that every run relies on are documented the same way in ``RECBOLE_KEYS``.

A key the user set that no one knows but that looks like a known one (``--epoch=1``) gets
"did you mean": an error where the plugin owns the command line (CLI, ``compare``), a warning
through ``run_recbole``/``run_mixrec``, whose config may carry other tools' keys.
"""

import difflib
import functools
import glob
import logging
import math
import os
import re
from dataclasses import dataclass

import yaml

from recbole_mixrec.errors import MixRecError

logger = logging.getLogger(__name__)

# RecBole keys the plugin relies on for every model, in the yaml files' comment language
RECBOLE_KEYS = """
epochs: 1               # (int) Range [1, inf)
train_batch_size: 1     # (int) Range [1, inf)
eval_batch_size: 1      # (int) Range [1, inf)
learning_rate: 0.001    # (float) Range (0, inf)
weight_decay: 0.0       # (float) Range [0, inf)
stopping_step: 1        # (int) Range [0, inf)
eval_step: 1            # (int) Range [0, inf)
MAX_ITEM_LIST_LENGTH: 1 # (int) Range [1, inf)
seed: 2020              # (int) Range [0, inf)
topk: [10]              # (list)
metrics: [MRR]          # (list)
valid_metric: MRR@10    # (str)
show_progress: True     # (bool)
reproducibility: True   # (bool)
"""
# keys RecBole sets or reads outside its yaml files (Config internals, run_recbole's arguments)
RECBOLE_INTERNAL_KEYS = ("model", "dataset", "config_files", "MODEL_TYPE", "MODEL_INPUT_TYPE", "device",
                         "local_rank", "single_spec", "ip", "port", "world_size", "nproc", "offset",
                         "group_offset", "eval_type", "valid_metric_bigger")

_TYPE_NAMES = {"int": "an integer", "float": "a number", "str": "a string", "bool": "True or False",
               "list": "a list", "dict": "a mapping"}
_COMMENT = re.compile(r"#\s*\((?P<types>[a-z|]+)\)(?P<doc>.*)$")
_CHOICES = re.compile(r"Range in (\[[^\]]*\])")
_CODE_KEY = re.compile(r"config\[[\"']([A-Za-z_][A-Za-z0-9_]*)[\"']\]")
_INTERVAL = re.compile(r"Range ([\[(])\s*([-+\w.]+)\s*,\s*([-+\w.]+)\s*([\])])")


@dataclass(frozen=True)
class KeySpec:
    key: str
    types: tuple
    choices: tuple = None
    low: float = None
    high: float = None
    low_open: bool = False
    high_open: bool = False
    nullable: bool = False
    source: str = ""

    def describe(self):
        what = " or ".join(_TYPE_NAMES.get(t, t) for t in self.types)
        if self.choices is not None:
            what = f"one of {list(self.choices)}"
        elif self.low is not None:
            what += (f" in {'(' if self.low_open else '['}{_number(self.low)}, "
                     f"{_number(self.high)}{')' if self.high_open else ']'}")
        return what + (" or None" if self.nullable else "")


def _number(value):
    return "inf" if value == math.inf else ("-inf" if value == -math.inf else f"{value:g}")


def parse_spec(key, default, comment, source=""):
    """The ``KeySpec`` of ``key: default  # (type) doc. Range ...``; None without a type."""
    match = _COMMENT.search(comment or "")
    if not match:
        return None
    types, doc = tuple(match["types"].split("|")), match["doc"]
    spec = dict(key=key, types=types, source=source,
                nullable=default is None or "None" in doc)
    choices = _CHOICES.search(doc)
    interval = _INTERVAL.search(doc)
    if choices:
        spec["choices"] = tuple(yaml.safe_load(choices[1]))
    elif interval:
        spec.update(low=float(interval[2]), high=float(interval[3]),
                    low_open=interval[1] == "(", high_open=interval[4] == ")")
    elif "int" in types:
        spec.update(low=1.0, high=math.inf, high_open=True)
    elif "float" in types:
        spec.update(low=0.0, high=math.inf, high_open=True)
    return KeySpec(**spec)


def specs_from_text(text, source=""):
    """``{key: KeySpec}`` for the top-level keys of a yaml text whose lines carry the comments."""
    specs = {}
    for line in text.splitlines():
        if not line or line[0] in " #\t" or ":" not in line:
            continue
        key, _, rest = line.partition(":")
        value, _, comment = rest.partition("#")
        if comment and "(" not in comment:  # a '#' inside the value (a prompt string)
            continue
        try:
            default = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError:
            default = value.strip()
        spec = parse_spec(key.strip(), default, "#" + comment, source)
        if spec is not None:
            specs[key.strip()] = spec
    return specs


@functools.lru_cache(maxsize=None)
def _file_specs(path):
    with open(path, encoding="utf-8") as handle:
        return specs_from_text(handle.read(), path)


def specs_for(model):
    """Every checked key of a run of ``model``: RecBole's relied-on keys, then the plugin's
    overall, search and model files (later files refine earlier ones)."""
    from recbole_mixrec.properties import PROPERTIES_DIR, model_file, yaml_chain

    specs = {}
    files = [os.path.join(PROPERTIES_DIR, "overall.yaml"), os.path.join(PROPERTIES_DIR, "search.yaml")]
    files += [model_file(name) for name in yaml_chain(model)]
    for path in files:
        if path and os.path.isfile(path):
            specs.update(_file_specs(path))
    # last: RecBole's rule is the stricter one where a plugin file documents the same key
    specs.update(specs_from_text(RECBOLE_KEYS, "RecBole"))
    return specs


def check_value(spec, value):
    """None when ``value`` fits ``spec``, else what was expected."""
    if value is None:
        return None if spec.nullable else spec.describe()
    kinds = {"int": isinstance(value, int) and not isinstance(value, bool),
             "float": isinstance(value, (int, float)) and not isinstance(value, bool),
             "str": isinstance(value, str), "bool": isinstance(value, bool),
             "list": isinstance(value, (list, tuple)), "dict": isinstance(value, dict)}
    if not any(kinds.get(t, True) for t in spec.types):
        return spec.describe()
    if spec.choices is not None and isinstance(value, str) and value not in spec.choices:
        return spec.describe()
    if spec.low is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
        if math.isnan(value) or value < spec.low or value > spec.high \
                or (spec.low_open and value == spec.low) or (spec.high_open and value == spec.high):
            return spec.describe()
    return None


@functools.lru_cache(maxsize=1)
def known_keys():
    """Every key RecBole or the plugin documents (all their yaml files) or sets itself."""
    import recbole

    from recbole_mixrec.properties import PROPERTIES_DIR

    keys = set(RECBOLE_INTERNAL_KEYS)
    # keys RecBole's code reads that none of its yaml files lists (tail_ratio, eta, ...)
    for path in glob.glob(os.path.join(os.path.dirname(recbole.__file__), "**", "*.py"), recursive=True):
        with open(path, encoding="utf-8", errors="replace") as handle:
            keys.update(_CODE_KEY.findall(handle.read()))
    roots = (os.path.join(os.path.dirname(recbole.__file__), "properties"), PROPERTIES_DIR)
    for root in roots:
        for path in glob.glob(os.path.join(root, "**", "*.yaml"), recursive=True):
            try:
                with open(path, encoding="utf-8") as handle:
                    content = yaml.safe_load(handle)
            except (OSError, yaml.YAMLError):
                continue
            if isinstance(content, dict):
                keys.update(str(k) for k in content)
    return frozenset(keys)


def look_alike(key):
    """The known key ``key`` is probably a misspelling of, or None."""
    if key in known_keys():
        return None
    close = difflib.get_close_matches(key, known_keys(), n=1, cutoff=0.8)
    return close[0] if close else None


def where_set(key, config_dict, user_files):
    if key in (config_dict or {}):
        return "command line / config_dict"
    from recbole_mixrec.properties import read_yaml

    for path in reversed(list(user_files or [])):
        if key in read_yaml(path):
            return path
    return "the plugin's or the dataset's yaml files"


def check_settings(config, model, config_dict=None, user_files=None, strict=True):
    """Raise one ``MixRecError`` listing every setting of the wrong type or range; unknown
    keys that look like a known one: an error when ``strict``, else a logged warning."""
    final = config.final_config_dict
    problems = []
    for key, spec in specs_for(model).items():
        if key in final:
            expected = check_value(spec, final[key])
            if expected is not None:
                problems.append(f"{key}={final[key]!r} ({where_set(key, config_dict, user_files)}): "
                                f"expected {expected}")
    problems += _relation_problems(final, config_dict, user_files)
    user_keys = {key: "" for key in config_dict or {}}
    from recbole_mixrec.properties import read_yaml

    for path in user_files or []:
        user_keys.update({key: f" in {path}" for key in read_yaml(path) if key not in user_keys})
    typos = [(key, look_alike(str(key))) for key in sorted(user_keys, key=str)]
    typos = [f"unknown key '{key}'{user_keys[key]} (did you mean '{known}'?)" for key, known in typos if known]
    if typos and not strict:
        for typo in typos:
            logger.warning("%s: it is ignored", typo)
        typos = []
    problems += typos
    if problems:
        raise MixRecError("invalid settings: " + "; ".join(problems))


def _relation_problems(final, config_dict, user_files):
    """Settings valid alone but not together (one rule so far; a comment's range names one key)."""
    stride, max_items = final.get("train_window_stride"), final.get("max_seq_items")
    if isinstance(stride, int) and isinstance(max_items, int) and stride > max_items:
        # windows further apart than they are long would leave transitions unsupervised
        return [f"train_window_stride={stride} ({where_set('train_window_stride', config_dict, user_files)}): "
                f"expected at most max_seq_items ({max_items})"]
    return []


def read_settings_file(path):
    """A user's yaml file as a mapping, or a one-line error naming the file (and line)."""
    if not os.path.isfile(path):
        raise MixRecError(f"config file not found: {path}")
    try:
        with open(path, encoding="utf-8") as handle:
            content = yaml.safe_load(handle)
    except UnicodeDecodeError as err:
        raise MixRecError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise MixRecError(f"{path}{where}: not valid YAML ({problem})") from None
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise MixRecError(f"{path}: a settings file must be a mapping of 'key: value' lines, "
                          f"found a {type(content).__name__}")
    return content
