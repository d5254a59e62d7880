#!/usr/bin/env bash
# Create .venv (once) and install the project into it with its dev and race extras.
# Re-running is cheap: nothing is reinstalled while pyproject.toml and this script are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
stamp=".venv/.installed-$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    echo "installing the project into .venv (once; log in .venv/install.log) ..." >&2
    if ! .venv/bin/python -m pip install -e ".[dev,race]" >.venv/install.log 2>&1; then
        tail -n 30 .venv/install.log >&2
        echo "installation failed; full log: .venv/install.log" >&2
        exit 1
    fi
    rm -f .venv/.installed-*
    touch "$stamp"
fi
