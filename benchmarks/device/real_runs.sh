#!/usr/bin/env bash
# Real-size runs on a lent GPU machine, in one call of at most 10 minutes (device tool):
#   1. step-cost benchmark on the full SmolLM2 (30 layers), nothing else on the GPU;
#   2. in parallel, one process per model: the baselines + LiteLLM4Rec + Hydra on ml-100k and
#      amazon-scientific (one compare run dir per dataset), and MixRec with the paper preset on
#      amazon-scientific next to them. Whatever has not finished by DEADLINE is stopped; a later
#      call resumes the run dirs (compare.py --resume skips finished models).
# Usage (after source benchmarks/device/setup.sh):  bash benchmarks/device/real_runs.sh
set -u
start=$(date +%s)
DEADLINE=${DEADLINE:-480}                 # seconds after start when unfinished jobs are stopped
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT" logs
BASE="--epochs=${BASE_EPOCHS:-100} --stopping_step=10 --show_progress=False"
left() { echo $(( DEADLINE - ($(date +%s) - start) )); }

if [ "${SKIP_STEP_COST:-0}" != 1 ]; then
  timeout "$(left)" python3 -W ignore -m benchmarks.step_cost --layers 30 --batch 6 --items 20 50 --repeats 10 --separate \
    > "$OUT/step_cost.txt" 2>&1; tail -16 "$OUT/step_cost.txt"
fi

export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
for ds in ml-100k amazon-scientific; do
  dir=results/$ds/gpu-h100; mkdir -p "$dir"
  for m in ${MODELS:-LiteLLM4Rec SASRec GRU4Rec BERT4Rec FDSA Hydra}; do
    timeout "$(left)" python3 -W ignore -m benchmarks.compare --dataset $ds --models $m --resume "$dir" $BASE \
      > logs/$ds-$m.log 2>&1 &
  done
done
if [ "${MIXREC:-1}" = 1 ]; then
  timeout "$(left)" python3 -W ignore -m benchmarks.compare --dataset amazon-scientific --models MixRec \
    --resume results/amazon-scientific/gpu-h100 --show_progress=False ${MIXREC_ARGS:---epochs=1} \
    --config_files "properties/paper/mixrec.yaml properties/paper/amazon-scientific.yaml" \
    > logs/amazon-scientific-MixRec.log 2>&1 &
fi
wait
for ds in ml-100k amazon-scientific; do   # final tables over every finished model
  python3 -W ignore -c "import sys; from benchmarks.compare import load_records, write_outputs, markdown_table as t
d, ds = sys.argv[1:]; r = load_records(d); write_outputs(d, r, ds); print(t(r))" results/$ds/gpu-h100 $ds
done
tar czf "$OUT/results.tgz" --exclude=checkpoints results/*/gpu-h100
tar czf "$OUT/logs.tgz" logs
grep -h -E "best valid|test result|Finished|epoch [0-9]+ training.*time" logs/*.log | tail -5
ls logs; for f in logs/*.log; do echo "== $f"; grep -E "error|Error|failed|ok in" "$f" | tail -3; done
