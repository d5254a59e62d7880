#!/usr/bin/env bash
# Create .venv (once) and install the project with its dev extra into it.
# Re-running is cheap: nothing is reinstalled while pyproject.toml is unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    echo "installing the project into .venv (once; log in .venv/install.log) ..." >&2
    if ! .venv/bin/python -m pip install -e '.[dev]' >.venv/install.log 2>&1; then
        tail -n 30 .venv/install.log >&2
        echo "installation failed; full log: .venv/install.log" >&2
        exit 1
    fi
    touch "$stamp"
fi
