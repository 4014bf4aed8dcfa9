package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	corev1 "k8s.io/api/core/v1"
)

// GetContainerLogs serves kubectl logs from the CRI-format log files, with tail,
// since, timestamps, limitBytes, previous and follow.
func (p *provider) GetContainerLogs(ctx context.Context, ns, podName, ctrName string, opts api.ContainerLogOpts) (io.ReadCloser, error) {
	p.mu.Lock()
	pr, ok := p.pods[key(ns, podName)]
	var c *ctrRun
	if ok {
		for _, x := range append(append([]*ctrRun{}, pr.inits...), pr.ctrs...) {
			if x.spec.Name == ctrName {
				c = x
			}
		}
	}
	if c == nil {
		p.mu.Unlock()
		return nil, errdefs.NotFoundf("container %s in pod %s/%s not found", ctrName, ns, podName)
	}
	run := c.runs - 1
	exited := c.exited
	running := c.running
	p.mu.Unlock()
	if opts.Previous {
		if run < 1 {
			return nil, errdefs.InvalidInputf("previous terminated container %q in pod %q not found", ctrName, podName)
		}
		run--
		running = false
	}
	if run < 0 {
		return nil, errdefs.InvalidInputf("container %q in pod %q is waiting to start", ctrName, podName)
	}
	path := filepath.Join(pr.dir, "logs", ctrName, fmt.Sprintf("%d.log", run))
	f, err := os.Open(path)
	if err != nil {
		return nil, errdefs.NotFoundf("log of container %s: %v", ctrName, err)
	}
	var since time.Time
	if opts.SinceSeconds > 0 {
		since = time.Now().Add(-time.Duration(opts.SinceSeconds) * time.Second)
	} else if !opts.SinceTime.IsZero() {
		since = opts.SinceTime
	}
	pr2, pw := io.Pipe()
	go func() {
		defer f.Close()
		w := &limitWriter{w: pw, left: int64(opts.LimitBytes)}
		br := bufio.NewReader(f)
		var lines []string
		emit := func(l string) error {
			ts, rest, ok := parseCRI(l)
			if !ok || (!since.IsZero() && ts.Before(since)) {
				return nil
			}
			if opts.Timestamps {
				rest = ts.Format(time.RFC3339Nano) + " " + rest
			}
			_, err := io.WriteString(w, rest)
			return err
		}
		// Existing content first (tail applies to it), then follow.
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				// Keep a partial line for the follow loop.
				if l != "" {
					br = bufio.NewReader(io.MultiReader(strings.NewReader(l), f))
				}
				break
			}
			lines = append(lines, l)
			if opts.Tail > 0 && len(lines) > opts.Tail*2+1024 {
				lines = lines[len(lines)-opts.Tail:]
			}
		}
		if opts.Tail > 0 && len(lines) > opts.Tail {
			lines = lines[len(lines)-opts.Tail:]
		}
		for _, l := range lines {
			if err := emit(l); err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		if !opts.Follow || !running {
			pw.Close()
			return
		}
		var partial string
		for {
			l, err := br.ReadString('\n')
			partial += l
			if err == nil {
				if e := emit(partial); e != nil {
					pw.CloseWithError(e)
					return
				}
				partial = ""
				continue
			}
			select {
			case <-ctx.Done():
				pw.Close()
				return
			case <-exited:
				// Drain what was written before the exit.
				rest, _ := io.ReadAll(br)
				for _, l := range strings.SplitAfter(partial+string(rest), "\n") {
					if l != "" {
						_ = emit(l)
					}
				}
				pw.Close()
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	return pr2, nil
}

func parseCRI(l string) (time.Time, string, bool) {
	parts := strings.SplitN(l, " ", 4)
	if len(parts) != 4 {
		return time.Time{}, "", false
	}
	ts, err := time.Parse(time.RFC3339Nano, parts[0])
	if err != nil {
		return time.Time{}, "", false
	}
	rest := parts[3]
	if parts[2] == "P" {
		rest = strings.TrimSuffix(rest, "\n")
	}
	return ts, rest, true
}

type limitWriter struct {
	w    io.Writer
	left int64 // 0 = unlimited
	used int64
}

func (l *limitWriter) Write(b []byte) (int, error) {
	if l.left > 0 {
		if l.used >= l.left {
			return 0, io.EOF
		}
		if int64(len(b)) > l.left-l.used {
			b = b[:l.left-l.used]
		}
		l.used += int64(len(b))
	}
	return l.w.Write(b)
}

// PortForward dials the port on the pod's loopback from inside its network
// namespace (as containerd does), so listeners bound to 127.0.0.1 are reachable.
func (p *provider) PortForward(ctx context.Context, ns, podName string, port int32, stream io.ReadWriteCloser) error {
	defer stream.Close()
	p.mu.Lock()
	pr, ok := p.pods[key(ns, podName)]
	var path string
	if ok && pr.sb != nil && !pr.sb.closed {
		path = pr.sb.path
	}
	p.mu.Unlock()
	if path == "" {
		return fmt.Errorf("pod %s/%s has no running sandbox", ns, podName)
	}
	var conn net.Conn
	err := inNetns(path, func() error {
		var err error
		conn, err = net.DialTimeout("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))), 5*time.Second)
		return err
	})
	if err != nil {
		return fmt.Errorf("failed to connect to localhost:%d inside namespace of pod %s/%s: %w", port, ns, podName, err)
	}
	defer conn.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, _ = io.Copy(conn, stream)
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}()
	_, err = io.Copy(stream, conn)
	_ = stream.Close()
	wg.Wait()
	return nil
}

// podForwarder adapts the provider to cri-streaming's PortForwarder.
type podForwarder struct {
	p       *provider
	ns, pod string
}

func (f *podForwarder) PortForward(ctx context.Context, _ string, _ string, port int32, stream io.ReadWriteCloser) error {
	return f.p.PortForward(ctx, f.ns, f.pod, port, stream)
}

// probeLoop runs a container's readiness probe (tcpSocket, httpGet, exec) inside
// the pod's network namespace and updates its ready flag.
func (p *provider) probeLoop(pr *podRun, c *ctrRun, exited <-chan struct{}) {
	pb := c.spec.ReadinessProbe
	period := time.Duration(max(pb.PeriodSeconds, 1)) * time.Second
	if !sleepSel(time.Duration(pb.InitialDelaySeconds)*time.Second, exited, pr.ctx) {
		return
	}
	succ, fail := 0, 0
	for {
		ok := p.probe(pr, c, pb)
		if ok {
			succ, fail = succ+1, 0
		} else {
			succ, fail = 0, fail+1
		}
		p.mu.Lock()
		changed := false
		if ok && succ >= int(max(pb.SuccessThreshold, 1)) && !c.status.Ready && c.running {
			c.status.Ready, changed = true, true
		}
		if !ok && fail >= int(max(pb.FailureThreshold, 1)) && c.status.Ready {
			c.status.Ready, changed = false, true
		}
		if changed {
			p.notifyLocked(pr)
		}
		p.mu.Unlock()
		if !sleepSel(period, exited, pr.ctx) {
			return
		}
	}
}

func sleepSel(d time.Duration, exited <-chan struct{}, ctx context.Context) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-exited:
		return false
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (p *provider) probe(pr *podRun, c *ctrRun, pb *corev1.Probe) bool {
	timeout := time.Duration(max(pb.TimeoutSeconds, 1)) * time.Second
	resolvePort := func(ps string, pi int32) int32 {
		if ps == "" {
			return pi
		}
		for _, cp := range c.spec.Ports {
			if cp.Name == ps {
				return cp.ContainerPort
			}
		}
		return 0
	}
	ip := pr.sb.ip.String()
	switch {
	case pb.TCPSocket != nil:
		port := resolvePort(pb.TCPSocket.Port.StrVal, pb.TCPSocket.Port.IntVal)
		host := ip
		if pb.TCPSocket.Host != "" {
			host = pb.TCPSocket.Host
		}
		return inNetns(pr.sb.path, func() error {
			conn, err := net.DialTimeout("tcp", net.JoinHostPort(host, strconv.Itoa(int(port))), timeout)
			if err == nil {
				conn.Close()
			}
			return err
		}) == nil
	case pb.HTTPGet != nil:
		port := resolvePort(pb.HTTPGet.Port.StrVal, pb.HTTPGet.Port.IntVal)
		host := ip
		if pb.HTTPGet.Host != "" {
			host = pb.HTTPGet.Host
		}
		var conn net.Conn
		if inNetns(pr.sb.path, func() error {
			var err error
			conn, err = net.DialTimeout("tcp", net.JoinHostPort(host, strconv.Itoa(int(port))), timeout)
			return err
		}) != nil {
			return false
		}
		tr := &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) { return conn, nil }, DisableKeepAlives: true}
		cl := &http.Client{Transport: tr, Timeout: timeout}
		resp, err := cl.Get("http://" + net.JoinHostPort(host, strconv.Itoa(int(port))) + pb.HTTPGet.Path)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode >= 200 && resp.StatusCode < 400
	case pb.Exec != nil:
		ctx, cancel := context.WithTimeout(pr.ctx, timeout)
		defer cancel()
		return p.RunInContainer(ctx, pr.pod.Namespace, pr.pod.Name, c.spec.Name, pb.Exec.Command, nopAttach{}) == nil
	}
	return true
}

type nopAttach struct{}

func (nopAttach) Stdin() io.Reader            { return nil }
func (nopAttach) Stdout() io.WriteCloser      { return nil }
func (nopAttach) Stderr() io.WriteCloser      { return nil }
func (nopAttach) TTY() bool                   { return false }
func (nopAttach) Resize() <-chan api.TermSize { return nil }
