"""Run recbole 1.2.1 on the GPU image's numpy 2 stack without Ray (device runs only).

RecBole 1.2.1 reads numpy aliases removed in numpy 2 (np.float_, np.complex_) and
recbole.quick_start imports ray.tune at import time; the image has numpy 2 and no Ray.
"""
import sys
import types

import numpy as np

for _name, _value in {"float_": np.float64, "complex_": np.complex128, "bool8": np.bool_, "unicode_": np.str_,
                      "float": float, "int": int, "object": object, "bool": bool, "complex": complex}.items():
    if _name not in np.__dict__:  # hasattr would trigger numpy's deprecation warnings
        setattr(np, _name, _value)

try:
    import ray  # noqa: F401
except ImportError:
    _ray = types.ModuleType("ray")
    _tune = types.ModuleType("ray.tune")
    _ray.tune = _tune
    sys.modules["ray"] = _ray
    sys.modules["ray.tune"] = _tune
