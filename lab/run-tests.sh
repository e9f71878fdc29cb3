#!/usr/bin/env bash
# lab/run-tests.sh — set up the lab, build the helpers and run the lab tests
# in the VM. Arguments go to "go test" (default: -v ./lab/e2e/).
#
#   lab/run-tests.sh                       # the lab's own tests
#   lab/run-tests.sh -run Smoke -v ./lab/e2e/
#
# LAB_BIN_DIR (default: the repo's bin/) is packed into /lab/bin in the VM;
# build the static lvs-director and other helpers there first if the tests
# need them. See lab/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
lab/setup.sh
mkdir -p bin
CGO_ENABLED=0 go build -o bin/ ./lab/cmd/labexec ./lab/cmd/labnode
if [ $# -eq 0 ]; then set -- -v ./lab/e2e/; fi
export LAB_BIN_DIR=${LAB_BIN_DIR:-$PWD/bin}
exec go test -tags lab -exec "$PWD/bin/labexec" -count=1 "$@"
