// Command tether-node is the test cluster's kubelet: a virtual-kubelet node whose
// provider runs every pod as a real network namespace on a private bridge and every
// container as a real process with its own mount namespace and filesystem root.
//
// It also plays kube-proxy (a userspace proxy for Service cluster IPs) and cluster
// DNS, both reachable only from the pod network, which lives in its own network
// namespace so the host has no route to pod or service addresses.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/log"
	vkslog "github.com/virtual-kubelet/virtual-kubelet/log/slog"
	"github.com/virtual-kubelet/virtual-kubelet/node"
	"github.com/virtual-kubelet/virtual-kubelet/node/nodeutil"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/cri-streaming/pkg/streaming/portforward"
)

// Same as a real kubelet (--streaming-connection-idle-timeout default): an idle
// port-forward stays open. VK's own default is 30 s.
const streamIdleTimeout = 4 * time.Hour

const streamCreationTimeout = 30 * time.Second

type config struct {
	nodeName   string
	kubeconfig string
	listen     string
	tlsCert    string
	tlsKey     string
	clientCA   string
	runDir     string
	prefix     string
	podCIDR    string
	dnsIP      string
	svcCIDR    string
	agentBin   string
	testsrvBin string
	version    string
	apiserver  string
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "container-init" {
		containerInit(os.Args[2:])
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "cleanup" {
		fs := flag.NewFlagSet("cleanup", flag.ExitOnError)
		runDir := fs.String("run-dir", "/run/tether-cluster", "run directory")
		prefix := fs.String("prefix", "tether", "network namespace name prefix")
		_ = fs.Parse(os.Args[2:])
		if err := cleanup(*runDir, *prefix); err != nil {
			fmt.Fprintf(os.Stderr, "tether-node cleanup: %v\n", err)
			os.Exit(1)
		}
		return
	}
	var c config
	flag.StringVar(&c.nodeName, "name", "tether-node", "node name")
	flag.StringVar(&c.kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig (needs cluster-wide read of secrets, configmaps, services)")
	flag.StringVar(&c.listen, "listen", "127.0.0.1:10250", "kubelet API listen address")
	flag.StringVar(&c.tlsCert, "tls-cert", "", "serving certificate")
	flag.StringVar(&c.tlsKey, "tls-key", "", "serving key")
	flag.StringVar(&c.clientCA, "client-ca", "", "CA for client certificates (the apiserver's kubelet client cert)")
	flag.StringVar(&c.runDir, "run-dir", "/run/tether-cluster", "state directory: pods, logs, container state files")
	flag.StringVar(&c.prefix, "prefix", "tether", "prefix of network namespace names")
	flag.StringVar(&c.podCIDR, "pod-cidr", "10.244.0.0/24", "pod network; .1 is the gateway in the network namespace")
	flag.StringVar(&c.dnsIP, "dns-ip", "10.96.0.10", "cluster DNS address (inside the service range)")
	flag.StringVar(&c.svcCIDR, "service-cidr", "10.96.0.0/24", "service cluster IP range")
	flag.StringVar(&c.agentBin, "agent-bin", "", "program for images whose name contains tether-agent")
	flag.StringVar(&c.testsrvBin, "testsrv-bin", "", "program for the test server images")
	flag.StringVar(&c.apiserver, "apiserver", "", "host:port of the API server, the backend of the default/kubernetes service for pods")
	flag.StringVar(&c.version, "kubelet-version", "v1.37.2", "version reported in node info")
	flag.Parse()
	if err := run(c); err != nil {
		fmt.Fprintf(os.Stderr, "tether-node: %v\n", err)
		os.Exit(1)
	}
}

func run(c config) error {
	level := slog.LevelInfo
	if os.Getenv("TETHER_NODE_DEBUG") != "" {
		level = slog.LevelDebug
	}
	log.L = vkslog.FromSlog(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()

	restCfg, err := clientcmd.BuildConfigFromFlags("", c.kubeconfig)
	if err != nil {
		return fmt.Errorf("kubeconfig %s: %w", c.kubeconfig, err)
	}
	client, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return err
	}
	host, portStr, err := net.SplitHostPort(c.listen)
	if err != nil {
		return fmt.Errorf("listen address %q: %w", c.listen, err)
	}
	port, _ := strconv.Atoi(portStr)

	netw, err := newNetwork(c)
	if err != nil {
		return fmt.Errorf("pod network: %w", err)
	}
	defer netw.close()

	var prov *provider
	mux := http.NewServeMux()
	// Longest pattern wins: this replaces VK's /portForward/ route, whose WebSocket
	// path passes empty V4Options (zero channels) and whose idle timeout is 30 s.
	mux.HandleFunc("/portForward/", func(w http.ResponseWriter, r *http.Request) {
		parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/portForward/"), "/")
		if len(parts) < 2 {
			http.Error(w, "want /portForward/{namespace}/{pod}", http.StatusBadRequest)
			return
		}
		opts, err := portforward.NewV4Options(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		pf := &podForwarder{p: prov, ns: parts[0], pod: parts[1]}
		portforward.ServePortForward(w, r, pf, parts[1], "", opts, streamIdleTimeout, streamCreationTimeout, portforward.SupportedProtocols)
	})

	n, err := nodeutil.NewNode(c.nodeName, func(pc nodeutil.ProviderConfig) (nodeutil.Provider, node.NodeProvider, error) {
		p, err := newProvider(c, pc, client, netw)
		if err != nil {
			return nil, nil, err
		}
		prov = p
		configureNode(pc.Node, c, host, port)
		return p, nil, nil
	},
		nodeutil.WithClient(client),
		func(nc *nodeutil.NodeConfig) error {
			nc.HTTPListenAddr = c.listen
			nc.Handler = nodeutil.WithAuth(nodeutil.NoAuth(), mux)
			nc.StreamIdleTimeout = streamIdleTimeout
			nc.StreamCreationTimeout = streamCreationTimeout
			nc.NumWorkers = 4
			nc.InformerResyncPeriod = 30 * time.Second
			// VK resolves env before the pod has an IP (status.podIP fails): the provider does it.
			nc.SkipDownwardAPIResolution = true
			return nil
		},
		nodeutil.WithTLSConfig(nodeutil.WithKeyPairFromPath(c.tlsCert, c.tlsKey), nodeutil.WithCAFromPath(c.clientCA)),
		nodeutil.AttachProviderRoutes(mux),
	)
	if err != nil {
		return err
	}
	go netw.runServices(ctx, prov)
	// Stop pods as soon as we are told to stop, not after VK's controllers wind down
	// (down sends SIGKILL 10 s after SIGTERM).
	go func() {
		<-ctx.Done()
		prov.shutdown()
	}()

	go func() {
		if err := n.WaitReady(ctx, 0); err == nil {
			log.G(ctx).Info("node ready")
		}
	}()
	err = n.Run(ctx)
	prov.shutdown()
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func configureNode(n *corev1.Node, c config, host string, port int) {
	n.Labels["kubernetes.io/os"] = "linux"
	n.Labels["kubernetes.io/arch"] = runtime.GOARCH
	n.Labels["node.kubernetes.io/instance-type"] = "tether-test"
	n.Spec.PodCIDR = c.podCIDR
	n.Spec.PodCIDRs = []string{c.podCIDR}
	n.Status.Addresses = []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: host},
		{Type: corev1.NodeHostName, Address: c.nodeName},
	}
	n.Status.DaemonEndpoints = corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: int32(port)}}
	rl := corev1.ResourceList{
		corev1.ResourceCPU:              resource.MustParse("16"),
		corev1.ResourceMemory:           resource.MustParse("32Gi"),
		corev1.ResourcePods:             resource.MustParse("110"),
		corev1.ResourceEphemeralStorage: resource.MustParse("100Gi"),
	}
	n.Status.Capacity = rl
	n.Status.Allocatable = rl.DeepCopy()
	n.Status.NodeInfo = corev1.NodeSystemInfo{
		KubeletVersion:          c.version,
		OperatingSystem:         "linux",
		Architecture:            runtime.GOARCH,
		ContainerRuntimeVersion: "tether-test://1",
		KernelVersion:           kernelVersion(),
		OSImage:                 "tether test node",
	}
	now := metav1.Now()
	for i := range n.Status.Conditions {
		cond := &n.Status.Conditions[i]
		cond.LastHeartbeatTime = now
		cond.LastTransitionTime = now
		if cond.Type != corev1.NodeReady {
			cond.Status = corev1.ConditionFalse
			cond.Reason = "KubeletHasSufficientResources"
		}
	}
}

func kernelVersion() string {
	var u syscall.Utsname
	if syscall.Uname(&u) != nil {
		return ""
	}
	b := make([]byte, 0, len(u.Release))
	for _, ch := range u.Release {
		if ch == 0 {
			break
		}
		b = append(b, byte(ch))
	}
	return string(b)
}
