package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// network is the pod network: a bridge inside its own network namespace
// (<prefix>-net), so neither pod nor service addresses are routed from the host.
// Each pod gets a netns <prefix>-p-<hash> with eth0 on that bridge.
type network struct {
	cfg     config
	nsName  string
	nsPath  string
	bridge  string
	gateway net.IP
	subnet  *net.IPNet
	svcNet  *net.IPNet

	mu   sync.Mutex
	used map[string]bool // pod IPs in use
}

func run1(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func newNetwork(c config) (*network, error) {
	_, subnet, err := net.ParseCIDR(c.podCIDR)
	if err != nil {
		return nil, fmt.Errorf("pod cidr: %w", err)
	}
	_, svcNet, err := net.ParseCIDR(c.svcCIDR)
	if err != nil {
		return nil, fmt.Errorf("service cidr: %w", err)
	}
	gw := make(net.IP, 4)
	copy(gw, subnet.IP.To4())
	gw[3]++
	n := &network{
		cfg:     c,
		nsName:  c.prefix + "-net",
		bridge:  c.prefix + "br0",
		gateway: gw,
		subnet:  subnet,
		svcNet:  svcNet,
		used:    map[string]bool{},
	}
	n.nsPath = "/run/netns/" + n.nsName
	ones, _ := subnet.Mask.Size()
	// A leftover namespace from a crashed run is replaced, not reused.
	_ = run1("ip", "netns", "del", n.nsName)
	steps := [][]string{
		{"ip", "netns", "add", n.nsName},
		{"ip", "-n", n.nsName, "link", "set", "lo", "up"},
		// A fixed MAC: a bridge otherwise takes the lowest MAC of its ports, so adding or
		// deleting a pod would change the gateway's MAC under the other pods' ARP caches,
		// and their packets (DNS, Services) would be dropped until the entries expire.
		{"ip", "-n", n.nsName, "link", "add", n.bridge, "address", "02:74:74:6b:00:01", "type", "bridge"},
		{"ip", "-n", n.nsName, "addr", "add", fmt.Sprintf("%s/%d", gw, ones), "dev", n.bridge},
		{"ip", "-n", n.nsName, "link", "set", n.bridge, "up"},
		// Every service IP is local in the network namespace, so the userspace
		// proxy and the DNS server can bind any of them.
		{"ip", "-n", n.nsName, "route", "add", "local", c.svcCIDR, "dev", "lo"},
		{"ip", "netns", "exec", n.nsName, "sysctl", "-qw", "net.ipv4.ip_forward=1"},
	}
	for _, s := range steps {
		if err := run1(s...); err != nil {
			_ = run1("ip", "netns", "del", n.nsName)
			return nil, err
		}
	}
	return n, nil
}

func (n *network) close() {
	_ = run1("ip", "netns", "del", n.nsName)
}

// podNetns names a pod's network namespace from its UID.
func (n *network) podNetns(uid string) string {
	h := sha256.Sum256([]byte(uid))
	return n.cfg.prefix + "-p-" + hex.EncodeToString(h[:4])
}

func (n *network) allocIP() (net.IP, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	base := n.subnet.IP.To4()
	ones, bits := n.subnet.Mask.Size()
	size := 1 << (bits - ones)
	for i := 2; i < size-1; i++ {
		ip := net.IPv4(base[0], base[1], base[2], base[3]+byte(i)).To4()
		if !n.used[ip.String()] {
			n.used[ip.String()] = true
			return ip, nil
		}
	}
	return nil, fmt.Errorf("pod network %s is full", n.subnet)
}

func (n *network) releaseIP(ip string) {
	n.mu.Lock()
	delete(n.used, ip)
	n.mu.Unlock()
}

// sandbox is one pod's network namespace.
type sandbox struct {
	name   string
	path   string
	ip     net.IP
	veth   string
	closed bool
}

func (n *network) createSandbox(uid string) (*sandbox, error) {
	name := n.podNetns(uid)
	ip, err := n.allocIP()
	if err != nil {
		return nil, err
	}
	veth := "vh" + strings.TrimPrefix(name, n.cfg.prefix+"-p-")
	sb := &sandbox{name: name, path: "/run/netns/" + name, ip: ip, veth: veth}
	ones, _ := n.subnet.Mask.Size()
	_ = run1("ip", "netns", "del", name)
	_ = run1("ip", "-n", n.nsName, "link", "del", veth)
	steps := [][]string{
		{"ip", "netns", "add", name},
		{"ip", "-n", name, "link", "set", "lo", "up"},
		{"ip", "-n", n.nsName, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", name},
		{"ip", "-n", n.nsName, "link", "set", veth, "master", n.bridge, "up"},
		{"ip", "-n", name, "addr", "add", fmt.Sprintf("%s/%d", ip, ones), "dev", "eth0"},
		{"ip", "-n", name, "link", "set", "eth0", "up"},
		{"ip", "-n", name, "route", "add", "default", "via", n.gateway.String()},
	}
	for _, s := range steps {
		if err := run1(s...); err != nil {
			n.deleteSandbox(sb)
			return nil, err
		}
	}
	return sb, nil
}

func (n *network) deleteSandbox(sb *sandbox) {
	if sb == nil || sb.closed {
		return
	}
	sb.closed = true
	_ = run1("ip", "-n", n.nsName, "link", "del", sb.veth)
	_ = run1("ip", "netns", "del", sb.name)
	n.releaseIP(sb.ip.String())
}

// inNetns runs fn on an OS thread switched into the network namespace at path.
// Sockets created by fn stay in that namespace.
func inNetns(path string, fn func() error) error {
	target, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", path, err)
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", path, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: the runtime then discards it.
			errc <- ferr
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// cleanup removes what a crashed node may have left: container processes from
// their state files, pod and network namespaces with the prefix.
func cleanup(runDir, prefix string) error {
	files, _ := filepath.Glob(filepath.Join(runDir, "containers", "*.json"))
	for _, f := range files {
		st, err := readState(f)
		if err == nil && st.Pid > 0 && processStartMatches(st) {
			_ = unix.Kill(-st.Pid, unix.SIGKILL)
			_ = unix.Kill(st.Pid, unix.SIGKILL)
		}
		_ = os.Remove(f)
	}
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], prefix+"-") {
			continue
		}
		// Whatever still runs in a pod's netns is a container process or its child
		// (orphaned when the node was killed): none may outlive the cluster.
		pids, _ := exec.Command("ip", "netns", "pids", f[0]).Output()
		for _, ps := range strings.Fields(string(pids)) {
			if pid, err := strconv.Atoi(ps); err == nil && pid > 1 {
				_ = unix.Kill(pid, unix.SIGKILL)
			}
		}
		if err := run1("ip", "netns", "del", f[0]); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}
	return nil
}
