"""The plugin-model table and the yaml rule it drives have one home (properties.py), which
never imports the registry; the registry fills the table and reads it from there."""

import ast
import inspect
import os

from recbole_mixrec import properties, registry
from recbole_mixrec.model.variants import MixRec_base


def _imported_modules(module):
    tree = ast.parse(inspect.getsource(module))
    names = set()
    for node in ast.walk(tree):  # lazy imports inside functions count too
        if isinstance(node, ast.ImportFrom):
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_properties_never_imports_the_registry():
    assert "recbole_mixrec.registry" not in _imported_modules(properties)
    assert "recbole_mixrec.properties" in _imported_modules(registry)


def test_one_table_of_plugin_models_drives_the_yaml_chain():
    assert registry.PLUGIN_MODELS is properties.PLUGIN_MODELS
    assert registry.yaml_chain is properties.yaml_chain
    assert properties.PLUGIN_MODELS["MixRec_base"][0] is MixRec_base  # registered at import
    assert properties.yaml_chain("MixRec_base") == ["MixRec", "MixRec_base"]
    assert properties.yaml_chain("SASRec") == ["SASRec"]
    assert [os.path.basename(path) for path in properties.config_files("MixRec_base", "no-such-data")] == [
        "overall.yaml", "MixRec.yaml", "MixRec_base.yaml",
    ]
