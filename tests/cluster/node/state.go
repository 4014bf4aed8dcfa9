package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// containerState is the file <run-dir>/containers/<id>.json, written when a
// container process starts and removed when it ends. It maps the container id the
// node reports (status containerID "tether-test://<id>") to the host PID, for the
// agent's runtime adapter. Documented in tests/cluster/README.md.
type containerState struct {
	ID           string `json:"id"`
	Pid          int    `json:"pid"`
	PidStartTime uint64 `json:"pid_start_time"`
	Namespace    string `json:"namespace"`
	Pod          string `json:"pod"`
	PodUID       string `json:"pod_uid"`
	Container    string `json:"container"`
	Image        string `json:"image"`
	Netns        string `json:"netns"`
	PodIP        string `json:"pod_ip"`
	Root         string `json:"root"`
	StartedAt    string `json:"started_at"`
}

func writeState(dir string, st *containerState) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, "."+st.ID+".tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, st.ID+".json"))
}

func readState(path string) (*containerState, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var st containerState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &st, nil
}

// procStartTime is field 22 of /proc/PID/stat (clock ticks since boot): with the
// PID it identifies a process even after PID reuse.
func procStartTime(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("bad stat for pid %d", pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); starttime is field 22.
	if len(f) < 20 {
		return 0, fmt.Errorf("short stat for pid %d", pid)
	}
	var v uint64
	_, err = fmt.Sscan(f[19], &v)
	return v, err
}

func processStartMatches(st *containerState) bool {
	t, err := procStartTime(st.Pid)
	return err == nil && (st.PidStartTime == 0 || t == st.PidStartTime)
}
