package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/log"
	"golang.org/x/net/dns/dnsmessage"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// runServices plays kube-proxy (userspace: one listener per Service cluster IP and
// port, inside the pod network namespace) and cluster DNS (on cfg.dnsIP:53 in the
// same namespace). Neither is reachable from the host's own addresses.
func (n *network) runServices(ctx context.Context, p *provider) {
	if p == nil {
		return
	}
	s := &svcProxy{n: n, p: p, listeners: map[string]io.Closer{}}
	if err := s.startDNS(ctx); err != nil {
		log.G(ctx).WithError(err).Error("cluster DNS")
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		s.sync(ctx)
		select {
		case <-ctx.Done():
			s.closeAll()
			return
		case <-t.C:
		}
	}
}

type svcProxy struct {
	n         *network
	p         *provider
	mu        sync.Mutex
	listeners map[string]io.Closer // "ip:port/proto"
	rr        atomic.Uint64
}

func (s *svcProxy) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, l := range s.listeners {
		l.Close()
		delete(s.listeners, k)
	}
}

func (s *svcProxy) sync(ctx context.Context) {
	svcs, err := s.p.pc.Services.List(labels.Everything())
	if err != nil {
		return
	}
	want := map[string]bool{}
	for _, svc := range svcs {
		ip := svc.Spec.ClusterIP
		if ip == "" || ip == corev1.ClusterIPNone || net.ParseIP(ip) == nil || !s.n.svcNet.Contains(net.ParseIP(ip)) {
			continue
		}
		for _, sp := range svc.Spec.Ports {
			proto := strings.ToLower(string(sp.Protocol))
			if proto == "" {
				proto = "tcp"
			}
			k := fmt.Sprintf("%s/%s", net.JoinHostPort(ip, strconv.Itoa(int(sp.Port))), proto)
			want[k] = true
			s.mu.Lock()
			_, have := s.listeners[k]
			s.mu.Unlock()
			if have {
				continue
			}
			ns, name, portName, port := svc.Namespace, svc.Name, sp.Name, sp.Port
			var l io.Closer
			err := inNetns(s.n.nsPath, func() error {
				var err error
				if proto == "udp" {
					l, err = net.ListenPacket("udp4", net.JoinHostPort(ip, strconv.Itoa(int(port))))
				} else if proto == "tcp" {
					l, err = net.Listen("tcp4", net.JoinHostPort(ip, strconv.Itoa(int(port))))
				} else {
					err = fmt.Errorf("protocol %s not proxied", proto)
				}
				return err
			})
			if err != nil {
				log.G(ctx).WithError(err).Warnf("service %s/%s port %d", ns, name, port)
				continue
			}
			s.mu.Lock()
			s.listeners[k] = l
			s.mu.Unlock()
			if pc, ok := l.(net.PacketConn); ok {
				go s.serveUDP(pc, ns, name, portName, port)
			} else {
				go s.serveTCP(l.(net.Listener), ns, name, portName, port)
			}
		}
	}
	s.mu.Lock()
	for k, l := range s.listeners {
		if !want[k] {
			l.Close()
			delete(s.listeners, k)
		}
	}
	s.mu.Unlock()
}

// endpoint picks a ready pod behind the service port (round robin), or for the
// selector-less default/kubernetes service the API server on the host.
func (s *svcProxy) endpoint(ns, name, portName string, port int32) (addr string, hostNetns bool, err error) {
	svc, err := s.p.pc.Services.Services(ns).Get(name)
	if err != nil {
		return "", false, err
	}
	if ns == "default" && name == "kubernetes" && s.p.cfg.apiserver != "" {
		return s.p.cfg.apiserver, true, nil
	}
	if len(svc.Spec.Selector) == 0 {
		return "", false, fmt.Errorf("service %s/%s has no selector", ns, name)
	}
	var sp *corev1.ServicePort
	for i := range svc.Spec.Ports {
		if svc.Spec.Ports[i].Port == port {
			sp = &svc.Spec.Ports[i]
		}
	}
	if sp == nil {
		return "", false, fmt.Errorf("port %d gone", port)
	}
	pods, err := s.p.pc.Pods.Pods(ns).List(labels.SelectorFromSet(svc.Spec.Selector))
	if err != nil {
		return "", false, err
	}
	var cands []string
	for _, pod := range pods {
		if pod.DeletionTimestamp != nil || pod.Status.PodIP == "" || !podReady(pod) {
			continue
		}
		tp := sp.TargetPort.IntVal
		if sp.TargetPort.StrVal != "" {
			tp = 0
			for _, c := range pod.Spec.Containers {
				for _, cp := range c.Ports {
					if cp.Name == sp.TargetPort.StrVal {
						tp = cp.ContainerPort
					}
				}
			}
		}
		if tp == 0 {
			tp = sp.Port
		}
		cands = append(cands, net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(int(tp))))
	}
	if len(cands) == 0 {
		return "", false, fmt.Errorf("service %s/%s has no ready endpoints", ns, name)
	}
	return cands[s.rr.Add(1)%uint64(len(cands))], false, nil
}

func podReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func (s *svcProxy) dial(network, addr string, hostNetns bool) (net.Conn, error) {
	if hostNetns {
		return net.DialTimeout(network, addr, 5*time.Second)
	}
	var c net.Conn
	err := inNetns(s.n.nsPath, func() error {
		var err error
		c, err = net.DialTimeout(network, addr, 5*time.Second)
		return err
	})
	return c, err
}

func (s *svcProxy) serveTCP(l net.Listener, ns, name, portName string, port int32) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			addr, host, err := s.endpoint(ns, name, portName, port)
			if err != nil {
				return // a real kube-proxy rejects: the client sees a reset
			}
			u, err := s.dial("tcp4", addr, host)
			if err != nil {
				return
			}
			defer u.Close()
			done := make(chan struct{})
			go func() {
				_, _ = io.Copy(u, c)
				if tc, ok := u.(*net.TCPConn); ok {
					_ = tc.CloseWrite()
				}
				close(done)
			}()
			_, _ = io.Copy(c, u)
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
			}
			<-done
		}()
	}
}

func (s *svcProxy) serveUDP(pc net.PacketConn, ns, name, portName string, port int32) {
	type flow struct {
		up   net.Conn
		last atomic.Int64
	}
	var mu sync.Mutex
	flows := map[string]*flow{}
	buf := make([]byte, 65536)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			mu.Lock()
			for _, f := range flows {
				f.up.Close()
			}
			mu.Unlock()
			return
		}
		mu.Lock()
		f := flows[from.String()]
		mu.Unlock()
		if f == nil {
			addr, host, err := s.endpoint(ns, name, portName, port)
			if err != nil {
				continue
			}
			up, err := s.dial("udp4", addr, host)
			if err != nil {
				continue
			}
			f = &flow{up: up}
			mu.Lock()
			flows[from.String()] = f
			mu.Unlock()
			go func(from net.Addr, f *flow) {
				b := make([]byte, 65536)
				for {
					_ = f.up.SetReadDeadline(time.Now().Add(60 * time.Second))
					n, err := f.up.Read(b)
					if err != nil {
						if ne, ok := err.(net.Error); ok && ne.Timeout() && time.Since(time.Unix(0, f.last.Load())) < 60*time.Second {
							continue
						}
						mu.Lock()
						delete(flows, from.String())
						mu.Unlock()
						f.up.Close()
						return
					}
					_, _ = pc.WriteTo(b[:n], from)
				}
			}(from, f)
		}
		f.last.Store(time.Now().UnixNano())
		_, _ = f.up.Write(buf[:n])
	}
}

// --- cluster DNS ---

func (s *svcProxy) startDNS(ctx context.Context) error {
	addr := net.JoinHostPort(s.p.cfg.dnsIP, "53")
	var pc net.PacketConn
	var tl net.Listener
	err := inNetns(s.n.nsPath, func() error {
		var err error
		if pc, err = net.ListenPacket("udp4", addr); err != nil {
			return err
		}
		tl, err = net.Listen("tcp4", addr)
		return err
	})
	if err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		pc.Close()
		tl.Close()
	}()
	go func() {
		buf := make([]byte, 4096)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if resp := s.answer(buf[:n]); resp != nil {
				if len(resp) > 512 {
					resp = s.truncated(buf[:n])
				}
				_, _ = pc.WriteTo(resp, from)
			}
		}
	}()
	go func() {
		for {
			c, err := tl.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				var lb [2]byte
				for {
					if _, err := io.ReadFull(c, lb[:]); err != nil {
						return
					}
					q := make([]byte, int(lb[0])<<8|int(lb[1]))
					if _, err := io.ReadFull(c, q); err != nil {
						return
					}
					resp := s.answer(q)
					if resp == nil {
						return
					}
					_, _ = c.Write(append([]byte{byte(len(resp) >> 8), byte(len(resp))}, resp...))
				}
			}()
		}
	}()
	return nil
}

func (s *svcProxy) truncated(q []byte) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(q)
	if err != nil {
		return nil
	}
	qs, _ := p.AllQuestions()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, Truncated: true, RecursionDesired: h.RecursionDesired})
	_ = b.StartQuestions()
	for _, x := range qs {
		_ = b.Question(x)
	}
	out, _ := b.Finish()
	return out
}

// lookup resolves cluster names: <svc>.<ns>.svc.cluster.local (cluster IP, or
// ready pod IPs for headless services), <host>.<subdomain>.<ns>.svc.cluster.local
// for pods with a hostname and subdomain (StatefulSets), and
// <a-b-c-d>.<ns>.pod.cluster.local. known is false for names outside the zone.
func (s *svcProxy) lookup(name string) (ips []net.IP, exists bool) {
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	if !strings.HasSuffix(name, ".cluster.local") {
		return nil, false
	}
	parts := strings.Split(strings.TrimSuffix(name, ".cluster.local"), ".")
	switch {
	case len(parts) == 3 && parts[2] == "svc":
		svc, err := s.p.pc.Services.Services(parts[1]).Get(parts[0])
		if err != nil {
			return nil, false
		}
		if svc.Spec.ClusterIP != "" && svc.Spec.ClusterIP != corev1.ClusterIPNone {
			return []net.IP{net.ParseIP(svc.Spec.ClusterIP)}, true
		}
		if len(svc.Spec.Selector) == 0 {
			return nil, true
		}
		pods, _ := s.p.pc.Pods.Pods(parts[1]).List(labels.SelectorFromSet(svc.Spec.Selector))
		for _, pod := range pods {
			if pod.Status.PodIP != "" && podReady(pod) {
				ips = append(ips, net.ParseIP(pod.Status.PodIP))
			}
		}
		return ips, true
	case len(parts) == 4 && parts[3] == "svc":
		pods, _ := s.p.pc.Pods.Pods(parts[2]).List(labels.Everything())
		for _, pod := range pods {
			if pod.Spec.Hostname == parts[0] && pod.Spec.Subdomain == parts[1] && pod.Status.PodIP != "" {
				return []net.IP{net.ParseIP(pod.Status.PodIP)}, true
			}
		}
		return nil, false
	case len(parts) == 3 && parts[2] == "pod":
		ip := net.ParseIP(strings.ReplaceAll(parts[0], "-", "."))
		if ip == nil {
			return nil, false
		}
		return []net.IP{ip}, true
	}
	return nil, false
}

func (s *svcProxy) answer(q []byte) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(q)
	if err != nil {
		return nil
	}
	qs, err := p.AllQuestions()
	if err != nil || len(qs) == 0 {
		return nil
	}
	rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired}
	ips, exists := s.lookup(qs[0].Name.String())
	if !exists {
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, rh)
	b.EnableCompression()
	_ = b.StartQuestions()
	_ = b.Question(qs[0])
	_ = b.StartAnswers()
	if qs[0].Type == dnsmessage.TypeA || qs[0].Type == dnsmessage.TypeALL {
		for _, ip := range ips {
			var a [4]byte
			copy(a[:], ip.To4())
			_ = b.AResource(dnsmessage.ResourceHeader{Name: qs[0].Name, Class: dnsmessage.ClassINET, TTL: 5}, dnsmessage.AResource{A: a})
		}
	}
	out, err := b.Finish()
	if err != nil {
		return nil
	}
	return out
}
