#!/usr/bin/env bash
# Builds the test cluster's Go programs into a cache outside the repo, keyed by
# versions, only when absent:
#   $TETHER_CACHE/k8s-v1.37.2-go<ver>/bin/{kube-apiserver,kube-controller-manager,kube-scheduler,kubectl}
#   $TETHER_CACHE/etcd-v3.7.3-go<ver>/bin/etcd
#   $TETHER_CACHE/node-<sha of tests/cluster/node>-go<ver>/bin/tether-node
# Prints shell assignments (K8S_BIN=..., ETCD_BIN=..., NODE_BIN=...) on stdout;
# progress and build times go to stderr and $TETHER_CACHE/logs/.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${TETHER_CACHE:-/var/cache/tether}"
export GOFLAGS="${GOFLAGS:--mod=mod}"
export CGO_ENABLED=0
# The wrappers say `go 1.26.0`; never let a toolchain line switch Go under us.
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
gover="$(go env GOVERSION)"
k8s_ver=v1.37.2
etcd_ver=v3.7.3
mkdir -p "$cache/logs"

log() { printf '[cluster build] %s\n' "$*" >&2; }

# build NAME OUTDIR CMD...: runs CMD into OUTDIR.tmp, then renames (atomic: a
# half-built cache is never used), recording the wall time.
build() {
  local name="$1" out="$2"
  shift 2
  if [[ -d "$out" ]]; then
    return 0
  fi
  log "building $name (cold builds take minutes: see $cache/logs/$name.log)"
  rm -rf "$out.tmp"
  mkdir -p "$out.tmp"
  local s=$SECONDS
  if ! "$@" >"$cache/logs/$name.log" 2>&1; then
    log "FAILED: $name; last lines of $cache/logs/$name.log:"
    tail -20 "$cache/logs/$name.log" >&2
    exit 1
  fi
  local took=$((SECONDS - s))
  echo "$(date -u +%FT%TZ) $name ${took}s" >>"$cache/logs/build-times.txt"
  log "$name built in ${took}s"
  mv "$out.tmp" "$out"
}

k8s_out="$cache/k8s-$k8s_ver-$gover/bin"
ld="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ld+=" -X $pkg.gitVersion=$k8s_ver -X $pkg.gitMajor=1 -X $pkg.gitMinor=37 -X $pkg.gitTreeState=clean"
done
build k8s "$k8s_out" bash -c "cd '$here/k8s' && go build -trimpath -ldflags '$ld' -o '$k8s_out.tmp/' \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl"

etcd_out="$cache/etcd-$etcd_ver-$gover/bin"
build etcd "$etcd_out" bash -c "cd '$here/etcd' && go build -trimpath -ldflags '-s -w' -o '$etcd_out.tmp/etcd' go.etcd.io/etcd/server/v3"

node_sum="$(cd "$here/node" && cat go.mod go.sum $(ls ./*.go | grep -v '_test\.go$') | sha256sum | cut -c1-12)"
node_out="$cache/node-$node_sum-$gover/bin"
build node "$node_out" bash -c "cd '$here/node' && go build -trimpath -ldflags '-s -w' -o '$node_out.tmp/tether-node' ."

echo "K8S_BIN=$k8s_out"
echo "ETCD_BIN=$etcd_out"
echo "NODE_BIN=$node_out"
