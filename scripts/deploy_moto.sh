#!/bin/sh
# `cadenza deploy`, an update and `cadenza destroy` end to end against moto's CloudFormation,
# from a fresh copy of this checkout (tests/e2e/test_deploy_moto.py; about 90 s, needs PyPI).
set -eu
cd "$(dirname "$0")/.."
CADENZA_DEPLOY_TEST=1 exec .venv/bin/python -m pytest tests/e2e/test_deploy_moto.py -p no:randomly -q "$@"
