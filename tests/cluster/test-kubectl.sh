#!/usr/bin/env bash
# Checks the test cluster with the kubectl built from the same k8s.io/kubernetes
# module (SPDY port-forward through the API server, logs, admission, RBAC).
# Brings the cluster up (or reuses it). Prints "N passed, N failed"; exits 1 on failures.
# --teardown: afterwards run tests/cluster/down and check that no process, network
# namespace, mount or state directory is left behind.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
teardown=0
[[ "${1:-}" == "--teardown" ]] && teardown=1
"$here/up" >/dev/null || { echo "0 passed, 1 failed"; exit 1; }
# shellcheck disable=SC1091
source "${TETHER_CLUSTER_DIR:-/run/tether-cluster}/env"
k() { "$TETHER_KUBECTL" --kubeconfig "$TETHER_ADMIN_KUBECONFIG" "$@"; }
kr() { "$TETHER_KUBECTL" --kubeconfig "$TETHER_RESTRICTED_KUBECONFIG" "$@"; }
ns="kt-$$-$RANDOM"
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   $1"; }
bad() { failed=$((failed + 1)); echo "FAIL $1"; shift; [[ $# -gt 0 ]] && echo "     $*"; }
# poll SECS CMD...: until CMD succeeds.
poll() {
  local secs="$1" i
  shift
  for ((i = 0; i < secs * 2; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  return 1
}
cleanup() {
  k delete namespace "$ns" --wait=false >/dev/null 2>&1
  [[ -n "${pf_pid:-}" ]] && kill "$pf_pid" 2>/dev/null
}
trap cleanup EXIT

k create namespace "$ns" >/dev/null
poll 30 k -n "$ns" get serviceaccount default

# 1. list pods with readiness
deploy_ready() { [[ "$(k -n tether-samples get deploy http-echo -o jsonpath='{.status.availableReplicas}')" == 2 ]]; }
if poll 90 deploy_ready; then
  ok "Deployment http-echo: 2 replicas available"
else
  bad "Deployment http-echo: 2 replicas available" "$(k -n tether-samples get pods -o wide 2>&1)"
fi
out=$(k -n tether-samples get pods -l app=http-echo -o jsonpath='{range .items[*]}{.spec.nodeName} {.status.phase} {.status.containerStatuses[0].ready} {.status.containerStatuses[0].containerID} {.status.podIP}{"\n"}{end}')
if [[ $(grep -c '^tether-node Running true tether-test://[0-9a-f]\{64\} 10\.244\.0\.' <<<"$out") == 2 ]]; then
  ok "pods listed Running and ready on tether-node with container ids and pod IPs"
else
  bad "pods listed Running and ready on tether-node" "$out"
fi

# 2. logs
pod=$(k -n tether-samples get pods -l app=http-echo -o jsonpath='{.items[0].metadata.name}')
if k -n tether-samples logs "$pod" 2>&1 | grep "http-echo $pod listening" >/dev/null; then
  ok "kubectl logs shows the container's output"
else
  bad "kubectl logs" "$(k -n tether-samples logs "$pod" 2>&1 | tail -3)"
fi

# 3. env from ConfigMap/Secret and status.podIP, read from the process itself via the state file
cid=$(k -n tether-samples get pod "$pod" -o jsonpath='{.status.containerStatuses[0].containerID}')
state="$TETHER_CONTAINER_STATE_DIR/${cid#tether-test://}.json"
pid=$(sed -n 's/.*"pid": \([0-9]*\).*/\1/p' "$state" 2>/dev/null)
podip=$(k -n tether-samples get pod "$pod" -o jsonpath='{.status.podIP}')
envs=$(tr '\0' '\n' <"/proc/${pid:-0}/environ" 2>/dev/null)
if grep -qx "GREETING=hello-from-configmap" <<<"$envs" && grep -qx "API_TOKEN=s3cret-token" <<<"$envs" &&
  grep -qx "LOG_LEVEL=debug" <<<"$envs" && grep -qx "POD_IP=$podip" <<<"$envs"; then
  ok "container id -> state file -> pid; env has ConfigMap, Secret and pod IP values"
else
  bad "env via state file" "state=$state pid=$pid env=$(head -c 300 <<<"$envs")"
fi
if [[ -n "$pid" && "$(readlink "/proc/$pid/ns/net")" != "$(readlink /proc/self/ns/net)" &&
  "$(readlink "/proc/$pid/ns/mnt")" != "$(readlink /proc/self/ns/mnt)" &&
  "$(readlink "/proc/$pid/root")" == "$TETHER_CLUSTER_DIR"/pods/*/roots/http-echo ]]; then
  ok "container runs in its own network and mount namespace, chrooted to its root"
else
  bad "container namespaces" "pid=$pid"
fi

# 4. port-forward (kubectl: SPDY over WebSocket tunnel through the apiserver)
lport=$((20000 + RANDOM % 20000))
k -n tether-samples port-forward "pod/$pod" "$lport:8080" >/tmp/tether-pf-$$.log 2>&1 &
pf_pid=$!
if poll 20 curl -fsS "http://127.0.0.1:$lport/" && curl -fsS "http://127.0.0.1:$lport/" | grep "$pod" >/dev/null; then
  ok "kubectl port-forward reaches the HTTP echo, which names $pod"
  sleep 35
  if curl -fsS "http://127.0.0.1:$lport/idle" | grep "$pod" >/dev/null; then
    ok "port-forward still works after 35 s idle"
  else
    bad "port-forward after idle" "$(tail -3 /tmp/tether-pf-$$.log)"
  fi
else
  bad "kubectl port-forward" "$(tail -3 /tmp/tether-pf-$$.log)"
fi
kill "$pf_pid" 2>/dev/null
pf_pid=""
rm -f /tmp/tether-pf-$$.log

# 5. cluster-only service and DNS: from a pod yes, from the host no
svcip=$(k -n tether-samples get svc http-echo -o jsonpath='{.spec.clusterIP}')
k -n "$ns" apply -f - >/dev/null <<EOF
apiVersion: batch/v1
kind: Job
metadata: {name: svc-probe}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: probe
        image: tether.test/testsrv:latest
        args: ["http-get", "http://http-echo.tether-samples.svc.cluster.local/from-pod"]
EOF
job_done() { [[ "$(k -n "$1" get job "$2" -o jsonpath='{.status.succeeded}')" == 1 ]]; }
if poll 60 job_done "$ns" svc-probe && k -n "$ns" logs job/svc-probe | grep "http-echo-" >/dev/null; then
  ok "a pod reaches the Service by its cluster DNS name"
else
  bad "Service by DNS name from a pod" "$(k -n "$ns" logs job/svc-probe 2>&1 | tail -3)"
fi
if ! curl -fsS -m 2 "http://$svcip/" >/dev/null 2>&1 && ! curl -fsS -m 2 "http://$podip:8080/" >/dev/null 2>&1 &&
  ! getent hosts http-echo.tether-samples.svc.cluster.local >/dev/null; then
  ok "the Service IP, pod IP and cluster name are unreachable from the host"
else
  bad "cluster-only from host"
fi

# StatefulSet pod names resolve (headless service + subdomain) from a pod, to the pod's IP.
echo0=$(k -n tether-samples get pod echo-0 -o jsonpath='{.status.podIP}' 2>/dev/null)
k -n "$ns" create job dns-probe --image=tether.test/testsrv:latest -- \
  /tether/bin/tether-testsrv resolve echo-0.echo.tether-samples.svc.cluster.local >/dev/null
if poll 60 job_done "$ns" dns-probe && [[ -n "$echo0" && "$(k -n "$ns" logs job/dns-probe)" == "$echo0" ]]; then
  ok "cluster DNS resolves a StatefulSet pod name to its pod IP"
else
  bad "StatefulSet pod DNS" "want $echo0, got $(k -n "$ns" logs job/dns-probe 2>&1 | tail -2)"
fi

# 6. a Job runs to completion
k -n "$ns" create job hello --image=busybox:1.36 -- sh -c 'echo hello-from-job; exit 0' >/dev/null
if poll 60 job_done "$ns" hello && [[ "$(k -n "$ns" logs job/hello)" == hello-from-job ]]; then
  ok "Job runs to completion and its log is served"
else
  bad "Job completion" "$(k -n "$ns" get pods -o wide 2>&1)"
fi

# Deleting a pod: SIGTERM reaches the container, the pod is gone quickly and its netns too.
# (With resources: its qosClass is Burstable, which the node's status must keep.)
k -n "$ns" apply -f - >/dev/null <<'EOF'
apiVersion: v1
kind: Pod
metadata: {name: sleeper}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: busybox:1.36
    command: ["sh", "-c", "trap 'echo got TERM; exit 0' TERM; echo started; while true; do sleep 1; done"]
    resources: {requests: {cpu: 10m, memory: 16Mi}, limits: {cpu: 100m, memory: 64Mi}}
EOF
sleeper_running() { [[ "$(k -n "$ns" get pod sleeper -o jsonpath='{.status.phase}')" == Running ]]; }
if poll 30 sleeper_running; then
  uid=$(k -n "$ns" get pod sleeper -o jsonpath='{.metadata.uid}')
  cid=$(k -n "$ns" get pod sleeper -o jsonpath='{.status.containerStatuses[0].containerID}')
  netns=$(sed -n 's/.*"netns": "\(.*\)".*/\1/p' "$TETHER_CONTAINER_STATE_DIR/${cid#tether-test://}.json")
  start=$SECONDS
  k -n "$ns" delete pod sleeper --timeout=20s >/dev/null 2>&1
  took=$((SECONDS - start))
  sandbox_gone() { [[ ! -e "$netns" ]] && ! ls "$TETHER_CLUSTER_DIR"/pods/ | grep "$uid" >/dev/null; }
  if ! k -n "$ns" get pod sleeper >/dev/null 2>&1 && [[ $took -le 10 && -n "$netns" ]] && poll 5 sandbox_gone; then
    ok "deleted pod gone in ${took}s with its netns and files"
  else
    bad "pod deletion" "took=${took}s netns=$netns"
  fi
else
  bad "pod deletion: sleeper never ran"
fi

# 7. Pod Security admission refuses a privileged pod in the restricted namespace
out=$(k -n tether-restricted run priv --image=busybox:1.36 --restart=Never \
  --overrides='{"spec":{"containers":[{"name":"priv","image":"busybox:1.36","command":["true"],"securityContext":{"privileged":true}}]}}' 2>&1)
if [[ $? != 0 ]] && grep -q 'violates PodSecurity "restricted:latest"' <<<"$out"; then
  ok "privileged pod refused by Pod Security admission"
else
  bad "PSA refusal" "$out"
fi

# 8. the restricted user may list pods but not create Jobs
if kr -n tether-samples get pods >/dev/null 2>&1; then
  ok "restricted user lists pods"
else
  bad "restricted user lists pods" "$(kr -n tether-samples get pods 2>&1)"
fi
out=$(kr -n "$ns" create job nope --image=busybox:1.36 -- true 2>&1)
if [[ $? != 0 ]] && grep -q 'is forbidden: User "tether-dev" cannot create resource "jobs"' <<<"$out"; then
  ok "restricted user is forbidden to create a Job"
else
  bad "restricted user create job" "$out"
fi

# 9. an unknown image ends in ImagePullBackOff
k -n "$ns" run ghost --image=registry.invalid/nothing/here:1 --restart=Never >/dev/null
pullbackoff() { [[ "$(k -n "$ns" get pod ghost -o jsonpath='{.status.containerStatuses[0].state.waiting.reason}')" == ImagePullBackOff ]]; }
if poll 30 pullbackoff; then
  ok "unknown image: ImagePullBackOff"
else
  bad "ImagePullBackOff" "$(k -n "$ns" get pod ghost -o jsonpath='{.status.containerStatuses}' 2>&1)"
fi

# 10. multi-container pod and StatefulSet
multi_ready() { [[ "$(k -n tether-samples get pod multi -o jsonpath='{.status.containerStatuses[*].ready}')" == "true true" ]]; }
if poll 30 multi_ready && k -n tether-samples logs multi -c sidecar | grep "sidecar started" >/dev/null; then
  ok "multi-container pod: both containers ready, per-container logs"
else
  bad "multi-container pod" "$(k -n tether-samples get pod multi -o wide 2>&1)"
fi
sts_ready() { [[ "$(k -n tether-samples get sts echo -o jsonpath='{.status.readyReplicas}')" == 1 ]]; }
if poll 30 sts_ready; then
  ok "StatefulSet echo ready"
else
  bad "StatefulSet" "$(k -n tether-samples get pods -o wide 2>&1)"
fi
# The StatefulSet controller recreates a deleted pod under the same name at once: the node
# must start it, not take it for the old one still shutting down.
old_uid=$(k -n tether-samples get pod echo-0 -o jsonpath='{.metadata.uid}' 2>/dev/null)
k -n tether-samples delete pod echo-0 --wait=false >/dev/null 2>&1
recreated() {
  local got
  got=$(k -n tether-samples get pod echo-0 -o jsonpath='{.metadata.uid} {.status.phase} {.status.containerStatuses[*].ready}' 2>/dev/null)
  [[ -n "$old_uid" && "$got" != "$old_uid "* && "$got" == *" Running true true" ]]
}
if poll 60 recreated; then
  ok "a StatefulSet pod deleted and recreated under its name runs again"
else
  bad "StatefulSet pod recreation" "$(k -n tether-samples get pod echo-0 -o wide 2>&1)"
fi

if [[ $teardown == 1 ]]; then
  cleanup
  trap - EXIT
  pids=$(cat "$TETHER_CLUSTER_DIR"/pids/* 2>/dev/null)
  states=$(cat "$TETHER_CLUSTER_DIR"/containers/*.json 2>/dev/null | sed -n 's/.*"pid": \([0-9]*\).*/\1/p')
  "$here/down" 2>/dev/null
  left=""
  for p in $pids $states; do kill -0 "$p" 2>/dev/null && left+=" pid:$p"; done
  left+=$(ip netns list | awk '/^tether-/ {printf " netns:%s", $1}')
  left+=$(awk -v d="$TETHER_CLUSTER_DIR" '$2 ~ "^"d {printf " mount:%s", $2}' /proc/mounts)
  [[ -e "$TETHER_CLUSTER_DIR" ]] && left+=" dir:$TETHER_CLUSTER_DIR"
  if command -v iptables-save >/dev/null && iptables-save 2>/dev/null | grep -i tether >/dev/null; then left+=" iptables"; fi
  if [[ -z "$left" ]]; then
    ok "down leaves no process, network namespace, mount, iptables rule or state dir"
  else
    bad "teardown left:$left"
  fi
fi

echo "$passed passed, $failed failed"
[[ $failed == 0 ]]
