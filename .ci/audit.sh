#!/usr/bin/env bash
# pip-audit over the locked dependencies, in its own virtual environment. A known
# vulnerability fails CI. pip-audit needs a vulnerability service (PyPI's JSON API or
# OSV); where neither answers (a build machine that mirrors only PyPI's simple index),
# the audit cannot run: it says so loudly and CI goes on, rather than claiming a pass.
set -euo pipefail
cd "$(dirname "$0")/.."

reachable() {
    python3 - "$1" <<'PY'
import sys, urllib.request
try:
    urllib.request.urlopen(sys.argv[1], timeout=5).close()
except Exception as exc:
    print(f"   {sys.argv[1]}: {exc}")
    sys.exit(1)
PY
}

SERVICE=""
# A per-release URL: that is what pip-audit asks (a mirror may serve only /pypi/<name>/json).
if reachable "https://pypi.org/pypi/pip/24.0/json"; then
    SERVICE=pypi
elif reachable "https://api.osv.dev/v1/vulns/PYSEC-2021-1"; then
    SERVICE=osv
fi
if [ -z "$SERVICE" ]; then
    echo "== NOT AUDITED: no vulnerability service reachable (PyPI JSON API, OSV); pip-audit skipped"
    exit 0
fi

VENV=.venv-audit
if [ ! -x "$VENV/bin/pip-audit" ]; then
    echo "== creating $VENV (pip install pip-audit)"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "pip-audit==2.10.1"
fi
for lock in requirements/runtime.lock requirements/dev.lock; do
    echo "== pip-audit $lock ($SERVICE)"
    # --no-deps: the lock already pins the whole tree; --disable-pip: nothing is installed.
    # --strict: a dependency that could not be looked up fails the audit, never a silent pass.
    "$VENV/bin/pip-audit" --strict --vulnerability-service "$SERVICE" --no-deps --disable-pip -r "$lock"
done
