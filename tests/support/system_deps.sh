#!/usr/bin/env bash
# System packages the tests need that pip cannot bring: Chromium and ChromeDriver for the dashboard's browser
# test, and a Java runtime for the Google emulators (which come with google-cloud-cli: gcloud and its
# cloud-firestore-emulator and pubsub-emulator components, normally present on this project's machines).
#
# Nothing is installed, and nothing needs root, when all of them are present. Otherwise apt-get runs as root,
# or through passwordless sudo (`sudo -n`); with neither the script stops saying what to install. Another apt
# or dpkg (an unattended upgrade, a second install) may hold a lock: the dpkg lock is waited for by apt itself
# (DPkg::Lock::Timeout), and the apt lists and archives locks, which apt does not wait for, by retrying every
# 5 s; both bounded by GOLDTHREAD_APT_LOCK_WAIT_SECONDS (default 600).
set -euo pipefail
wait_seconds=${GOLDTHREAD_APT_LOCK_WAIT_SECONDS:-600}
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
command -v java >/dev/null 2>&1 || need+=(default-jre-headless)

as_root=()
apt_get() {
  ${as_root[@]+"${as_root[@]}"} env DEBIAN_FRONTEND=noninteractive \
    apt-get -o DPkg::Lock::Timeout="$wait_seconds" "$@"
}

# apt-get "$@", retried while another process holds an apt lock, until wait_seconds have passed
apt_get_waiting() {
  local start=$SECONDS said=0 out
  while true; do
    if out=$(apt_get "$@" 2>&1); then
      return 0
    fi
    if [[ $out != *"Could not get lock"* && $out != *"Unable to lock"* ]] || ((SECONDS - start >= wait_seconds)); then
      printf '%s\n' "$out" >&2
      echo "error: apt-get $1 failed (see above)" >&2
      return 1
    fi
    if ((said == 0)); then
      echo "waiting (up to ${wait_seconds} s) for another apt or dpkg to release its lock"
      said=1
    fi
    sleep 5
  done
}

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      as_root=(sudo -n)
    else
      echo "error: the tests need ${need[*]}; installing them takes root or passwordless sudo." >&2
      echo "Run as root, or install them yourself: apt-get install ${need[*]}" >&2
      exit 1
    fi
  fi
  echo "installing: ${need[*]}"
  apt_get_waiting update -qq
  apt_get_waiting install -y -qq "${need[@]}"
fi
if ! command -v gcloud >/dev/null 2>&1; then
  echo "warning: gcloud is not installed; emulator tests will fail (install google-cloud-cli," \
    "google-cloud-cli-firestore-emulator and google-cloud-cli-pubsub-emulator)" >&2
fi
