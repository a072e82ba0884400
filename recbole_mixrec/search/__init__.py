"""Architecture search for MixRec's DAMoE layers by Bayesian optimisation with probabilistic
reparameterization (spec section 3.4).

* ``space``: ``z in {0,1}^(3 L_d)`` <-> the ``architecture`` string, ``num_damoe_layers``.
* ``surrogate``: the BoTorch GP (and the measurement behind the kernel choice).
* ``acquisition``: probabilistic reparameterization of the acquisition function.
* ``bo``: the resumable loop, its JSONL log and outputs (yaml, plot, tables).
* ``trials``: real trials (MixRec on a user subset) as Ray tasks.
* ``run``: ``run_search(model, dataset, ...)``; ``python -m recbole_mixrec.search`` is its CLI.
"""

from recbole_mixrec.search.space import architecture_to_z, num_damoe_layers, z_to_architecture


def run_search(model, dataset, config_file_list=None, config_dict=None, search_dir=None, objective=None):
    from recbole_mixrec.search.run import run_search as _run_search

    return _run_search(model, dataset, config_file_list, config_dict, search_dir, objective)


run_search.__doc__ = """See ``recbole_mixrec.search.run.run_search``."""

__all__ = ["run_search", "z_to_architecture", "architecture_to_z", "num_damoe_layers"]
