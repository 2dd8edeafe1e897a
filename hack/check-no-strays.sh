#!/usr/bin/env bash
# Fails if any process started from the given bin directory (etcd,
# kube-apiserver, kube-controller-manager, the agent or controller under test)
# is still running: tests must stop everything they start.
set -euo pipefail
bin=$(cd "${1:?usage: $0 BIN_DIR}" && pwd -P)
strays=()
for exe in /proc/[0-9]*/exe; do
  target=$(readlink "$exe" 2>/dev/null) || continue
  case "$target" in
    "$bin"/*) pid=${exe#/proc/}; strays+=("${pid%/exe} $target") ;;
  esac
done
# Processes tied to a test binary get SIGTERM when it exits; give them a
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
