package main

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestExpandVars(t *testing.T) {
	env := map[string]string{"POD_NAME": "web-1", "EMPTY": ""}
	for in, want := range map[string]string{
		"--name=$(POD_NAME)":     "--name=web-1",
		"$(POD_NAME)$(POD_NAME)": "web-1web-1",
		"$$(POD_NAME)":           "$(POD_NAME)",
		"$(MISSING)":             "$(MISSING)",
		"x$(EMPTY)y":             "xy",
		"$(unclosed":             "$(unclosed",
		"plain $ sign":           "plain $ sign",
	} {
		if got := expandVars(in, env); got != want {
			t.Errorf("expandVars(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestImageMapping(t *testing.T) {
	dir := t.TempDir()
	agent := filepath.Join(dir, "tether-agent")
	srv := filepath.Join(dir, "tether-testsrv")
	for _, f := range []string{agent, srv} {
		if err := os.WriteFile(f, []byte("#!/bin/true\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	c := config{agentBin: agent, testsrvBin: srv}
	cases := []struct {
		image, bin string
		entry, cmd []string
	}{
		{"ghcr.io/tether-dev/tether-agent:0.1.0", agent, []string{"/tether/bin/tether-agent"}, nil},
		{"localhost:5000/my-tether-agent@sha256:abcd", agent, []string{"/tether/bin/tether-agent"}, nil},
		{"tether.test/testsrv:latest", srv, []string{"/tether/bin/tether-testsrv"}, nil},
		{"tether.test/http-echo:latest", srv, []string{"/tether/bin/tether-testsrv", "http-echo"}, nil},
		{"busybox:1.36", "", nil, []string{"sh"}},
		{"docker.io/library/busybox", "", nil, []string{"sh"}},
	}
	for _, tc := range cases {
		p, err := c.resolveImage(tc.image)
		if err != nil {
			t.Fatalf("%s: %v", tc.image, err)
		}
		if p.hostBin != tc.bin || !equal(p.entrypoint, tc.entry) || !equal(p.cmd, tc.cmd) {
			t.Errorf("%s: got %+v", tc.image, p)
		}
	}
	var pullErr *errImagePull
	for _, img := range []string{"nginx:1.27", "registry.invalid/ghost:1", "example.com/http-echo:1"} {
		if _, err := c.resolveImage(img); !errors.As(err, &pullErr) {
			t.Errorf("%s: want an image pull error, got %v", img, err)
		}
	}
	// A mapped program that is not built is a pull error too, naming the path.
	c.agentBin = filepath.Join(dir, "missing")
	if _, err := c.resolveImage("tether-agent"); !errors.As(err, &pullErr) {
		t.Errorf("missing binary: got %v", err)
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestParseCRI(t *testing.T) {
	ts, rest, ok := parseCRI("2026-11-26T14:01:28.307018Z stdout F hello world\n")
	if !ok || rest != "hello world\n" || !ts.Equal(time.Date(2026, 11, 26, 14, 1, 28, 307018000, time.UTC)) {
		t.Fatalf("got %v %q %v", ts, rest, ok)
	}
	if _, rest, ok := parseCRI("2026-11-26T14:01:28Z stderr P partial\n"); !ok || rest != "partial" {
		t.Fatalf("partial line: %q %v", rest, ok)
	}
	if _, _, ok := parseCRI("garbage"); ok {
		t.Fatal("garbage parsed")
	}
}

func TestLimitWriter(t *testing.T) {
	var out []byte
	w := &limitWriter{w: writerFunc(func(b []byte) (int, error) { out = append(out, b...); return len(b), nil }), left: 5}
	_, _ = w.Write([]byte("abc"))
	_, _ = w.Write([]byte("defgh"))
	if _, err := w.Write([]byte("x")); err == nil {
		t.Fatal("write past the limit succeeded")
	}
	if string(out) != "abcde" {
		t.Fatalf("got %q", out)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

func TestProcStartTime(t *testing.T) {
	st, err := procStartTime(os.Getpid())
	if err != nil || st == 0 {
		t.Fatalf("procStartTime(self) = %d, %v", st, err)
	}
	if !processStartMatches(&containerState{Pid: os.Getpid(), PidStartTime: st}) {
		t.Fatal("own start time does not match")
	}
	if processStartMatches(&containerState{Pid: os.Getpid(), PidStartTime: st + 1}) {
		t.Fatal("a different start time matched (PID reuse not detected)")
	}
}
