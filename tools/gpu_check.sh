#!/usr/bin/env bash
# The full-size path on one GPU, as one command (never part of the tests).
#   tools/gpu_check.sh OUT_DIR [SECONDS_JAX] [SECONDS_TORCH]
# Writes OUT_DIR/bench_gpu_jax.csv and OUT_DIR/bench_gpu_torch.csv (python -m alllib bench gpu) and
# prints the paper matrix's estimated hours on this GPU for each precision and compilation.
# The benchmark runs on whichever Keras 3 backend is installed: with TensorFlow (make setup) it
# measures XLA and plain graphs; on a machine with JAX and PyTorch but no TensorFlow (this
# workplace's lent GPUs) it measures XLA through JAX and eager PyTorch (no XLA).
set -u
out=${1:?usage: tools/gpu_check.sh OUT_DIR [SECONDS_JAX] [SECONDS_TORCH]}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
KERAS_BACKEND=jax python3 -c "import keras, numpy; print('keras', keras.__version__, 'numpy', numpy.__version__)"
if python3 -c "import tensorflow" 2>/dev/null; then
  KERAS_BACKEND=tensorflow timeout "$(( ${2:-300} + 200 ))" python3 -m alllib bench gpu --profile paper \
    --seconds "${2:-300}" --out "$out/bench_gpu_tensorflow.csv"
else
  KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false timeout "$(( ${2:-300} + 150 ))" \
    python3 -m alllib bench gpu --profile paper --seconds "${2:-300}" --out "$out/bench_gpu_jax.csv"
  KERAS_BACKEND=torch timeout "$(( ${3:-100} + 60 ))" \
    python3 -m alllib bench gpu --profile paper --seconds "${3:-100}" --out "$out/bench_gpu_torch.csv"
fi
