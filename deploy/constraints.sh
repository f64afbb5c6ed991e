#!/usr/bin/env bash
# Regenerate ../constraints.txt, the pins the Dockerfile installs from: a fresh Python 3.11 venv,
# the newest pip/setuptools/wheel, the project installed from its pyproject.toml (not editable),
# and every distribution then in the venv pinned (`pip freeze --all`, the project left out).
# Needs python3.11 on PATH and PyPI access. Run from anywhere: bash deploy/constraints.sh
set -euo pipefail
cd "$(dirname "$0")/.."

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

python3.11 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check --upgrade pip setuptools wheel
"$work/venv/bin/pip" install --quiet --disable-pip-version-check .

{
  echo "# Pinned runtime and build-tool versions of the container image (the Dockerfile installs"
  echo "# the project's wheel with \`pip install -c constraints.txt\`), for reproducible builds."
  echo "# Generated from a fresh Python 3.11 venv with \`pip install .\`; do not edit by hand."
  echo "# Regenerate from the repo root (Python 3.11, PyPI access): bash deploy/constraints.sh"
  echo "#   = python3.11 -m venv V && V/bin/pip install -U pip setuptools wheel"
  echo "#     && V/bin/pip install . && V/bin/pip freeze --all --exclude xentcore"
  "$work/venv/bin/pip" freeze --all --disable-pip-version-check --exclude xentcore
} > constraints.txt.new
mv constraints.txt.new constraints.txt
echo "constraints.txt: $(grep -cv '^#' constraints.txt) pins"
