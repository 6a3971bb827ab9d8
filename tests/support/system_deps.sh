#!/usr/bin/env bash
# System packages the tests need that pip cannot bring: Chromium for the dashboard's browser test, and
# the Google emulators (normally present with google-cloud-cli on this project's machines).
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
command -v java >/dev/null 2>&1 || need+=(default-jre-headless)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # another apt or dpkg (an unattended upgrade, a second install) may hold the lock: wait for it, bounded
  apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${need[@]}" >/dev/null
fi
if ! command -v gcloud >/dev/null 2>&1; then
  echo "warning: gcloud is not installed; emulator tests will fail" >&2
fi
