#!/usr/bin/env bash
# Installs what the browser test of the dead-letter dashboard
# (tests/dashboard.rs, `dashboard_in_chromium_…`) needs: Debian's
# headless-capable Chromium at /usr/bin/chromium (apt-get, as root) and the
# pinned playwright-core in tests/browser/node_modules (npm ci against
# tests/browser/package-lock.json). Idempotent and fast once done: each step
# runs only when its result is missing. Playwright never downloads a browser
# of its own here; the test launches /usr/bin/chromium.
set -euo pipefail

log() { printf '[browser-deps] %s\n' "$*" >&2; }
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" -ne 0 ]; then
    log "/usr/bin/chromium is missing and installing it needs root: apt-get install chromium"
    exit 1
  fi
  log "installing Debian's chromium (a few minutes)"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

if [ ! -d "$root/tests/browser/node_modules/playwright-core" ]; then
  command -v npm >/dev/null || { log "npm is missing: apt-get install npm"; exit 1; }
  log "npm ci --prefix tests/browser"
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --prefix "$root/tests/browser" --no-audit --no-fund >/dev/null
fi
