#!/usr/bin/env bash
# Usage: check-no-strays.sh BIN_DIR list > before
#        check-no-strays.sh BIN_DIR check before
#
# Fails if a process the tests may have started is running that was not
# running before the tests (`list`): tests must stop everything they start,
# while a demo a developer keeps running is not the tests' business. Those
# processes are
#   - programs under BIN_DIR: etcd, kube-apiserver, kube-controller-manager,
#     and the agent and controller the tests build (testenv.BuildDir puts
#     them in BIN_DIR/.test-builds/);
#   - test binaries of this repository and the helpers they start by running
#     themselves again: go test runs each in its package directory, so their
#     program lies in a go-build directory and their working directory in
#     this repository.
set -euo pipefail
bin=$(cd "${1:?usage: $0 BIN_DIR list|check BEFORE}" && pwd -P)
repo=$(cd "$(dirname "$0")/.." && pwd -P)
running() {
  for exe in /proc/[0-9]*/exe; do
    target=$(readlink "$exe" 2>/dev/null) || continue
    pid=${exe#/proc/}; pid=${pid%/exe}
    case "$target" in
      "$bin"/*) echo "$pid $target" ;;
      */go-build*/*.test|*/go-build*/*.test" (deleted)")
        cwd=$(readlink "/proc/$pid/cwd" 2>/dev/null) || continue
        case "$cwd" in
          "$repo" | "$repo"/*) echo "$pid $target" ;;
        esac ;;
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
  [ ${#strays[@]} -eq 0 ] && { echo "no stray processes"; exit 0; }
  sleep 0.2
done
echo "stray processes left running by the tests:" >&2
printf '  %s\n' "${strays[@]}" >&2
exit 1
