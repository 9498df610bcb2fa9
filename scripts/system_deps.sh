#!/usr/bin/env bash
# What the tests need from Debian's packages, installed when missing: Chromium for the browser
# tests (playwright's own browser download cannot work here) and Node.js with npm for the HTML
# book's offline assets and the class hub's proxy. As root it installs them with apt-get; as
# another user it says what is missing (npm is required, the browser tests skip without Chromium).
set -euo pipefail
need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v npm >/dev/null 2>&1 || need+=(nodejs npm)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "system_deps: missing Debian packages: ${need[*]} (run 'sudo apt-get install ${need[*]}')" >&2
    command -v npm >/dev/null 2>&1 || exit 1
    exit 0
fi
echo "== installing Debian packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${need[@]}" >/dev/null
