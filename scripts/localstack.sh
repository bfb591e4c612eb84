#!/bin/sh
# LocalStack (community, host mode: no Docker) for Cadenza, set up on first use
# (`cadenza localstack install`: a Python 3.13 venv under .cadenza/localstack/venv with the
# pinned packages that install, DynamoDB Local, the JDK and an empty loader jar where
# LocalStack looks for them; cadenza_tools/local/localstack.py).
#
#   scripts/localstack.sh                  # start it in the foreground, port 4566
#   scripts/localstack.sh start --port 14566 --deploy    # another port; CloudFormation & co too
#   scripts/localstack.sh install          # set it up only
#   scripts/localstack.sh test [PYTEST ARGS]   # the tests marked `localstack` (minutes)
#
# `.venv/bin/cadenza dev --localstack` starts one itself when none answers (and stops it).
# It binds 0.0.0.0 whatever the port says; it keeps no data across its own restart.
set -eu
cd "$(dirname "$0")/.."
command=${1:-start}
[ $# -gt 0 ] && shift
case $command in
  install|start) exec .venv/bin/cadenza localstack "$command" "$@" ;;
  test)
    CADENZA_LOCALSTACK_TEST=1 exec .venv/bin/python -m pytest -m localstack \
        tests/e2e/test_localstack.py -p no:randomly -n 0 -q "$@" ;;
  *) echo "usage: $0 [start|install|test] [ARGS]" >&2; exit 2 ;;
esac
