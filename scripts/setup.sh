#!/usr/bin/env bash
# Create .venv (once) and install the project into it.
#
#   bash scripts/setup.sh [EXTRAS]     # EXTRAS: comma-separated, default dev,race,ray,l2l,docs
#
# scripts/benchmark.sh asks for no extras (running the benchmark needs none); scripts/test.sh
# and CI ask for all of them (the same list as tox.ini). An extra installed once stays: asking
# for fewer later installs nothing.
#
# learn2learn (the l2l extra) has no installable release for current Python on PyPI, so
# scripts/build_learn2learn.py first builds a wheel of it, kept in ~/.cache/fewshot-bench/wheels
# (or $FEWSHOT_WHEEL_DIR) for later installs. It is optional: when it cannot be built, the rest is
# installed and a warning says what is missing; with $CI or $FEWSHOT_REQUIRE_LEARN2LEARN set that
# is an error instead.
#
# torch comes from your package index. On Linux, PyPI's torch brings its CUDA libraries (about
# 3 GB); on a machine without a GPU, set FEWSHOT_TORCH_INDEX to a wheel index that serves
# CPU-only builds (PyTorch publishes one; its URL is on pytorch.org's install page) and torch and
# torchvision are installed from there first.
#
# Progress: each package is printed as pip collects, downloads and installs it; pip's full output
# goes to .venv/install.log. Re-running is cheap: nothing is reinstalled while pyproject.toml and
# these scripts are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1-dev,race,ray,l2l,docs}"
python3 -m venv .venv
stamp=".venv/.installed-$(cat pyproject.toml scripts/setup.sh scripts/build_learn2learn.py | sha256sum | cut -c1-16)"

covered() {  # whether every extra asked for is installed already
    [ -f "$stamp" ] || return 1
    local extra
    for extra in ${extras//,/ }; do
        grep -qx "$extra" "$stamp" || return 1
    done
}

show_progress() {  # pip's output into the log; one line per package on the terminal
    tee -a .venv/install.log | grep --line-buffered -E '^(Collecting|  Downloading|Installing collected|Successfully installed)' \
        | sed -u -e 's/^Installing collected packages:.*/  installing the collected packages (this takes a minute) .../' \
                 -e 's/^Successfully installed.*/  done/' >&2 || true
}

if ! covered; then
    started=$SECONDS
    wanted=$( { [ -f "$stamp" ] && cat "$stamp"; echo "${extras//,/$'\n'}"; } | { grep -v '^$' || true; } | sort -u | paste -sd, -)
    echo "installing the project into .venv with extras '${wanted:-none}' (once; full log in .venv/install.log) ..." >&2
    : >.venv/install.log
    wheels="${FEWSHOT_WHEEL_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/fewshot-bench/wheels}"
    if [[ ",$wanted," == *,l2l,* ]]; then
        echo "building learn2learn (once, kept in $wheels; a few minutes) ..." >&2
        if ! .venv/bin/python scripts/build_learn2learn.py --wheel-dir "$wheels" >>.venv/install.log 2>&1; then
            tail -n 15 .venv/install.log >&2
            echo "warning: learn2learn could not be built (full log: .venv/install.log). The datasets" \
                 "mini-imagenet, tiered-imagenet, cifar-fs, fc100 and cub need it; omniglot and folder" \
                 "do not. Retry: .venv/bin/python scripts/build_learn2learn.py --install" >&2
            if [ -n "${CI:-}${FEWSHOT_REQUIRE_LEARN2LEARN:-}" ]; then
                exit 1
            fi
            wanted=$(echo "${wanted//,/$'\n'}" | { grep -vx l2l || true; } | paste -sd, -)
        fi
    fi
    if [ -n "${FEWSHOT_TORCH_INDEX:-}" ]; then
        echo "installing torch and torchvision from $FEWSHOT_TORCH_INDEX ..." >&2
        if ! .venv/bin/python -m pip install --progress-bar off --index-url "$FEWSHOT_TORCH_INDEX" \
                "torch>=2.1" "torchvision>=0.16" 2>&1 | show_progress; then
            echo "installation failed; full log: .venv/install.log" >&2
            exit 1
        fi
    fi
    target="."
    [ -n "$wanted" ] && target=".[$wanted]"
    if ! .venv/bin/python -m pip install --progress-bar off --find-links "$wheels" -e "$target" 2>&1 \
            | show_progress; then  # pipefail: the status is pip's
        tail -n 30 .venv/install.log >&2
        echo "installation failed; full log: .venv/install.log" >&2
        exit 1
    fi
    rm -f .venv/.installed-*
    echo "${wanted//,/$'\n'}" >"$stamp"
    echo "installed in $(( SECONDS - started )) s" >&2
fi
