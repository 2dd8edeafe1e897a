#!/usr/bin/env bash
# Usage: check-no-strays.sh BIN_DIR list > before
#        check-no-strays.sh BIN_DIR check before
#
# Fails if a process started from BIN_DIR (etcd, kube-apiserver,
# kube-controller-manager, agent, controller) is running that was not
# running before the tests (`list`): tests must stop everything they start,
# while a demo a developer keeps running is not the tests' business.
set -euo pipefail
bin=$(cd "${1:?usage: $0 BIN_DIR list|check BEFORE}" && pwd -P)
running() {
  for exe in /proc/[0-9]*/exe; do
    target=$(readlink "$exe" 2>/dev/null) || continue
    case "$target" in
      "$bin"/*) pid=${exe#/proc/}; echo "${pid%/exe} $target" ;;
    esac
  done
}
if [ "${2:-}" = list ]; then running; exit 0; fi
before=${3:-/dev/null}
strays=()
while read -r line; do
  grep -qxF "$line" "$before" || strays+=("$line")
done < <(running)
# Processes tied to a test binary are killed when it exits; give them a
# moment to finish shutting down before calling them strays.
for _ in $(seq 1 50); do
  alive=()
  for s in "${strays[@]+"${strays[@]}"}"; do
    [ -e "/proc/${s%% *}" ] && alive+=("$s")
  done
  strays=("${alive[@]+"${alive[@]}"}")
  [ ${#strays[@]} -eq 0 ] && { echo "no stray control-plane processes"; exit 0; }
  sleep 0.2
done
echo "stray processes left running by the tests:" >&2
printf '  %s\n' "${strays[@]}" >&2
exit 1
