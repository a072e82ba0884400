"""Build hook: the plugin's yaml defaults live in ``properties/`` at the top of the repository
(where users and README's ``--config_files properties/...`` commands find them); a wheel also
carries a copy inside the package, ``recbole_mixrec/properties/``, so an installed (not
editable) plugin finds every default from any directory. Everything else is in setup.cfg."""

import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithProperties(build_py):
    def run(self):
        super().run()
        source = os.path.join(os.path.dirname(os.path.abspath(__file__)), "properties")
        target = os.path.join(self.build_lib, "recbole_mixrec", "properties")
        if os.path.isdir(target):
            shutil.rmtree(target)
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("*.pyc", "__pycache__"))


setup(cmdclass={"build_py": BuildWithProperties})
