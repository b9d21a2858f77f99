#!/usr/bin/env bash
# Static security checks of terraform/ with checkov, in its own virtual environment
# (checkov pins versions that clash with the project's). Exits non-zero when a check
# fails. Each skipped check is justified by a `# checkov:skip=CKV_...: reason` comment
# beside the resource it concerns, so a skip is reviewed with the resource it weakens.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv-checkov
if [ ! -x "$VENV/bin/checkov" ]; then
    echo "== creating $VENV (pip install checkov)"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "checkov==3.3.30"
fi

echo "== checkov on terraform/ ($("$VENV/bin/checkov" --version))"
# --framework terraform: the .tf sources only (no plan file: plans need credentials).
# --skip-download and --download-external-modules false: no network beyond the install.
exec "$VENV/bin/checkov" \
    --skip-download \
    --directory terraform \
    --framework terraform \
    --quiet \
    --compact \
    --download-external-modules false
