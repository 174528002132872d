#!/usr/bin/env bash
# Install the test dependencies and run lint, types and the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check -c scripts/constraints.txt -e '.[test]'
python3 -m ruff check treasury tests benchmarks
python3 -m mypy treasury
python3 -m pytest -n 2 --dist loadgroup -q
