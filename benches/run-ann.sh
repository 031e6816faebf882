#!/usr/bin/env bash
# One command for both sides of the ANN comparison on the same files and parameters:
#   benches/run-ann.sh --dataset clustered --n 1000000 --dim 128 --ef-construct 200
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release -p deftech-benches --bin ann -- "$@"
python3 -c "import hnswlib, faiss, numpy" 2>/dev/null || python3 -m pip install -q hnswlib faiss-cpu numpy
python3 benches/peers.py "$@"
