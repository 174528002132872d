#!/usr/bin/env bash
# Install the test dependencies and run lint, types and the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
# The signed-decision tests check interop with the real OpenSSH binaries (ssh-keygen, ssh-agent).
if ! command -v ssh-keygen >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  { apt-get install -y -qq openssh-client || { apt-get update -qq && apt-get install -y -qq openssh-client; }; } \
    >/dev/null 2>&1 || echo "warning: could not install openssh-client (ssh-keygen)" >&2
fi
python3 -m pip install --quiet --disable-pip-version-check -c scripts/constraints.txt -e '.[test]'
# promtool checks the shipped alert rules (tests/observe/test_monitoring_files.py); without it
# that test falls back to checking the metric names only
if ! command -v promtool >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1 \
    || echo "promtool not installed: alert rules are checked by name only" >&2
fi
python3 -m ruff check treasury tests benchmarks
python3 -m mypy treasury
# the layer contracts in pyproject.toml: an import that points up a layer fails here
lint-imports
python3 -m pytest -n 2 --dist loadgroup -q
