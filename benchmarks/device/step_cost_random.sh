#!/usr/bin/env bash
# GPU step cost without the pretrained weights (their values do not change the timing):
# SmolLM2-135M's config and tokenizer (carried in .gpu/shape) with random weights.
# Usage (after source benchmarks/device/setup.sh):  bash benchmarks/device/step_cost_random.sh
set -e
python3 - <<'PY'
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
config = AutoConfig.from_pretrained(".gpu/shape")
AutoModelForCausalLM.from_config(config).save_pretrained("/tmp/smollm2-random")
AutoTokenizer.from_pretrained(".gpu/shape").save_pretrained("/tmp/smollm2-random")
PY
python3 -W ignore -m benchmarks.step_cost --backbone /tmp/smollm2-random --layers 30 --batch 6 --separate \
  --items ${ITEMS:-20 50} --repeats ${REPEATS:-10} --variants ${VARIANTS:-a b c d} --precision ${PRECISION:-fp32} 2>&1 | grep -v -E "Loading|Writing|Convert"
