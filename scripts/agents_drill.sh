#!/bin/sh
# The remote agents drill of issue #12, too slow for the suite: a local stack
# (`cadenza dev --backend moto`), ten real `cadenza agent` processes and one job of a hundred
# `command` slices; it checks, from the commands' own stamps, that each slice ran once, that
# every run succeeded and that several agents took work, and prints how long it took.
# (The suite runs the same test with three agents and twelve slices.)
#
#   scripts/agents_drill.sh            # extra pytest options may follow, e.g. --durations=3
set -eu
cd "$(dirname "$0")/.."
CADENZA_AGENTS_DRILL=1 exec .venv/bin/python -m pytest -q -s -p no:randomly \
  tests/e2e/test_agents_stack.py -k ten_agents "$@"
