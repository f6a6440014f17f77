#!/usr/bin/env bash
# Installs Debian's Chromium (/usr/bin/chromium) for the run report's headless-browser test,
# when it is missing and this machine can install Debian packages. Never fails the build:
# without a browser that test is skipped and says why.
set -uo pipefail

[ -x /usr/bin/chromium ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "browser: no apt-get here; the report's browser test will be skipped" >&2; exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    echo "browser: not root; install the chromium package to run the report's browser test" >&2
    exit 0
  fi
fi
export DEBIAN_FRONTEND=noninteractive
echo "browser: installing Debian's chromium" >&2
$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 \
  || { $SUDO apt-get update -qq >/dev/null 2>&1 \
       && $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1; } \
  || echo "browser: could not install chromium; the report's browser test will be skipped" >&2
exit 0
