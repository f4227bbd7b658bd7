#!/usr/bin/env bash
# The one GPU measurement, as one command (never part of the tests; about 8 minutes):
#   tools/gpu_check.sh OUT_DIR [SECONDS]
# Runs `python -m alllib bench gpu` on the paper profile (weights=none, random images in device memory) and
# writes OUT_DIR/bench_gpu.csv: training images/s per backbone at 300 and 450 px, fp32 and mixed precision,
# XLA on and off, and the aggregate images/s of 2, 4 and 8 training runs side by side on the one GPU, in the
# order the estimate needs them (bench.gpu_plan); no new case starts after SECONDS (default 420), and the CSV
# is rewritten after every case. It then prints the paper matrix's hours for each case and packing
# (bench.paper_matrix_hours reads the same CSV). Copy the CSV to alllib/data/bench_gpu.csv to record it.
# Keras 3 runs on TensorFlow where it is installed; on a machine with JAX but no TensorFlow (this
# workplace's lent GPUs) it runs on JAX, and every figure made from the CSV says so.
set -u
out=${1:?usage: tools/gpu_check.sh OUT_DIR [SECONDS]}
seconds=${2:-420}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 TF_FORCE_GPU_ALLOW_GROWTH=true XLA_PYTHON_CLIENT_PREALLOCATE=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
if python3 -c "import tensorflow" 2>/dev/null; then backend=tensorflow; else backend=jax; fi
KERAS_BACKEND=$backend python3 -c "import keras, numpy; print('keras', keras.__version__, keras.backend.backend(), 'numpy', numpy.__version__)"
# the last case started before SECONDS may be 8 runs compiling together: 90 s of grace, then stop
KERAS_BACKEND=$backend timeout "$(( seconds + 90 ))" python3 -m alllib bench gpu --profile paper \
  --seconds "$seconds" --out "$out/bench_gpu.csv"
status=$?
if [ -s "$out/bench_gpu.csv" ]; then
  KERAS_BACKEND=$backend python3 -c "
import pandas as pd
from alllib.evidence import bench
t = pd.read_csv('$out/bench_gpu.csv')
print(bench.paper_matrix_hours(t).to_string(index=False))
print(bench.paper_matrix_hours(t, epochs=bench.load_profile('paper', bench.NO_DATA).training.patience + 1).to_string(index=False))
"
fi
exit $status
