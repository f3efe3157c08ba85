#!/usr/bin/env bash
# All set-up biojax needs on a fresh machine (Python >= 3.11 with pip): the offline
# Fashion-MNIST files (Debian's dataset-fashion-mnist, where apt is available) and the
# package with its test extra. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")"
FMNIST_DIR=/usr/share/datasets/fashion-mnist
if [ ! -f "$FMNIST_DIR/train-images-idx3-ubyte.gz" ]; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
    ($SUDO apt-get update -qq && $SUDO apt-get install -y -qq dataset-fashion-mnist) \
      || echo "setup.sh: could not install dataset-fashion-mnist; see docs/data.md" >&2
  else
    echo "setup.sh: no apt-get; to get Fashion-MNIST see docs/data.md" >&2
  fi
fi
python -m pip install -q -e '.[test]'
