#!/usr/bin/env bash
# The Cloud Tasks emulator in its own virtual environment, .venv-tasks-emulator.
# gcloud-tasks-emulator pins protobuf<5 and google-cloud-tasks<3, which clash with the
# project's google-cloud libraries, so it never goes into .venv. Idempotent: an
# existing environment with the emulator is left alone. Used by
# tests/tasks/test_cloud_tasks_emulator.py (which skips, naming this script, without it).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv-tasks-emulator
if [ -x "$VENV/bin/gcloud-tasks-emulator" ]; then
    echo "== $VENV already has gcloud-tasks-emulator"
    exit 0
fi
echo "== creating $VENV (pip install gcloud-tasks-emulator)"
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check "gcloud-tasks-emulator==0.6.2"
"$VENV/bin/gcloud-tasks-emulator" --help > /dev/null
echo "== $VENV ready"
