#!/usr/bin/env bash
# Ensure Debian's headless-capable Chromium is at /usr/bin/chromium (for the e2e UI test).
# Idempotent: does nothing when it is already there. Needs root (or sudo) to install.
set -euo pipefail

CHROMIUM=/usr/bin/chromium

if [[ -x "$CHROMIUM" ]]; then
    exit 0
fi

if [[ $EUID -eq 0 ]]; then
    SUDO=()
elif command -v sudo >/dev/null; then
    SUDO=(sudo)
else
    echo "ensure_chromium: $CHROMIUM is missing and installing it needs root" >&2
    exit 1
fi

echo "ensure_chromium: installing Debian's chromium package" >&2
# Passed through env, since sudo drops the caller's environment.
APT=("${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get)
"${APT[@]}" update -q
"${APT[@]}" install -y -q --no-install-recommends chromium

if [[ ! -x "$CHROMIUM" ]]; then
    echo "ensure_chromium: apt-get finished but $CHROMIUM is still missing" >&2
    exit 1
fi
"$CHROMIUM" --version >&2
