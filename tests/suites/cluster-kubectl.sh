#!/usr/bin/env bash
# The test cluster checked with kubectl built from the same Kubernetes module, then torn down and
# checked to leave nothing behind. Prints "N passed, N failed".
exec "$(dirname "$0")/../cluster/test-kubectl.sh" --teardown
