#!/usr/bin/env bash
# `make test-cluster`: start a single-node Slurm on localhost, run the Slurm tests, and stop the
# daemons this script started, whatever the tests' outcome.
set -uo pipefail
cd "$(dirname "$0")/.."
export ALLLIB_SLURM_DIR=${ALLLIB_SLURM_DIR:-/tmp/alllib-slurm-$$}
mkdir -p "$ALLLIB_SLURM_DIR"
trap 'tools/slurm_local.sh stop' EXIT
tools/slurm_local.sh start || exit 1
export SLURM_CONF=$ALLLIB_SLURM_DIR/slurm.conf
.venv/bin/python -m pytest tests/test_slurm.py -m cluster -s "$@"
