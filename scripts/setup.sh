#!/usr/bin/env bash
# Create .venv (once) and install the project into it with its dev, race, ray and l2l extras.
# learn2learn (the l2l extra) has no installable release for current Python on PyPI, so
# scripts/build_learn2learn.py first builds a wheel of it, kept in ~/.cache/fewshot-bench/wheels
# (or $FEWSHOT_WHEEL_DIR) for later installs. It is optional: when it cannot be built, the rest is
# installed and a warning says what is missing; with $CI or $FEWSHOT_REQUIRE_LEARN2LEARN set that
# is an error instead.
# Re-running is cheap: nothing is reinstalled while pyproject.toml and these scripts are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
stamp=".venv/.installed-$(cat pyproject.toml scripts/setup.sh scripts/build_learn2learn.py | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    echo "installing the project into .venv (once; log in .venv/install.log) ..." >&2
    : >.venv/install.log
    wheels="${FEWSHOT_WHEEL_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/fewshot-bench/wheels}"
    extras="dev,race,ray,l2l"
    if ! .venv/bin/python scripts/build_learn2learn.py --wheel-dir "$wheels" >>.venv/install.log 2>&1; then
        tail -n 15 .venv/install.log >&2
        echo "warning: learn2learn could not be built (full log: .venv/install.log). The datasets" \
             "mini-imagenet, tiered-imagenet, cifar-fs, fc100 and cub need it; omniglot and folder" \
             "do not. Retry: .venv/bin/python scripts/build_learn2learn.py --install" >&2
        if [ -n "${CI:-}${FEWSHOT_REQUIRE_LEARN2LEARN:-}" ]; then
            exit 1
        fi
        extras="dev,race,ray"
    fi
    if ! .venv/bin/python -m pip install --find-links "$wheels" -e ".[$extras]" >>.venv/install.log 2>&1; then
        tail -n 30 .venv/install.log >&2
        echo "installation failed; full log: .venv/install.log" >&2
        exit 1
    fi
    rm -f .venv/.installed-*
    touch "$stamp"
fi
