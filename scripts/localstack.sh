#!/bin/sh
# LocalStack (community, host mode: no Docker) for Cadenza, set up on first use and started
# in the foreground: a Python 3.13 venv under .cadenza/localstack/venv with the pinned
# packages that install, its filesystem root under .cadenza/localstack/root with the
# DynamoDB Local that `make dev` fetches and the installed JDK where LocalStack looks for
# them, and a no-op Java agent in place of the one LocalStack would download.
#
#   scripts/localstack.sh                  # port 4566; LOCALSTACK_PORT=14566 for another
#   .venv/bin/cadenza dev --endpoint-url http://127.0.0.1:4566      # in another terminal
#   CADENZA_TEST_DYNAMODB_ENDPOINT=http://127.0.0.1:4566 .venv/bin/python -m pytest -m ddblocal tests/contract
#
# It binds 0.0.0.0 whatever LOCALSTACK_PORT says; it keeps no data across its own restart.
set -eu
cd "$(dirname "$0")/.."
HOME_DIR=${CADENZA_HOME:-$PWD/.cadenza}
BASE=$HOME_DIR/localstack
VENV=${LOCALSTACK_VENV:-$BASE/venv}
ROOT=$BASE/root
PORT=${LOCALSTACK_PORT:-4566}
LIB=$ROOT/var/lib/localstack/lib

if [ ! -x "$VENV/bin/python" ]; then
  PY=$(ls -d "$HOME"/.pyenv/versions/3.13*/bin/python 2>/dev/null | head -1)
  [ -n "$PY" ] || PY=$(command -v python3.13) || { echo "needs Python 3.13 (pyenv's or python3.13)" >&2; exit 1; }
  "$PY" -m venv "$VENV"
  # newer releases of cbor2, pyopenssl and cryptography broke the install
  "$VENV/bin/pip" install -q "localstack-core[runtime]==4.14.0" "cbor2<6" "pyopenssl<25.2" \
      "cryptography<46" service-identity
fi

if [ ! -f "$LIB/dynamodb-local/2/DynamoDBLocal.jar" ]; then
  .venv/bin/python -m cadenza_tools.local.dynamodb_local install
  mkdir -p "$LIB/dynamodb-local"
  cp -r "$HOME_DIR/dynamodb-local" "$LIB/dynamodb-local/2"
fi
if [ ! -e "$LIB/java/21/bin/java" ]; then  # LocalStack wants its Java 21; DynamoDB Local runs on 17+
  JAVA_HOME_DIR=$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")
  mkdir -p "$LIB/java"
  ln -sfn "$JAVA_HOME_DIR" "$LIB/java/21"
fi
AGENT=$LIB/dynamodb-local/2/ddb-local-loader-0.1.jar
if [ ! -f "$AGENT" ]; then  # LocalStack always passes -javaagent; the real one lifts a 20-GSI limit
  BUILD=$(mktemp -d)
  printf 'public class CadenzaNoopAgent { public static void premain(String a) {} }\n' \
      > "$BUILD/CadenzaNoopAgent.java"
  javac --release 17 -d "$BUILD" "$BUILD/CadenzaNoopAgent.java"
  printf 'Manifest-Version: 1.0\nPremain-Class: CadenzaNoopAgent\n' > "$BUILD/manifest.txt"
  jar cfm "$AGENT" "$BUILD/manifest.txt" -C "$BUILD" CadenzaNoopAgent.class
  rm -rf "$BUILD"
fi

export OVERRIDE_IN_DOCKER=0 FILESYSTEM_ROOT="$ROOT" GATEWAY_LISTEN="127.0.0.1:$PORT" \
    LOCALSTACK_HOST="127.0.0.1:$PORT" SQS_ENDPOINT_STRATEGY=path DISABLE_EVENTS=1 \
    SKIP_SSL_CERT_DOWNLOAD=1 \
    SERVICES=${LOCALSTACK_SERVICES:-dynamodb,sqs,s3,sns,sts,ssm,secretsmanager}
exec "$VENV/bin/python" -m localstack.runtime.main
