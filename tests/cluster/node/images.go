package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path"
	"strings"
)

// imageProgram is what an image name maps to on the test node: a host program
// bound into the container root at /tether/bin/<name> (or none: the host's /usr is
// already there) and the image's default entrypoint.
type imageProgram struct {
	hostBin    string   // host program, bound at binPath
	binPath    string   // path inside the container root
	entrypoint []string // Docker ENTRYPOINT
	cmd        []string // Docker CMD: default args, replaced by the container's args
}

type errImagePull struct{ msg string }

func (e *errImagePull) Error() string { return e.msg }

// imageBase strips registry, tag and digest: "ghcr.io/x/tether-agent:v1" -> "tether-agent".
func imageBase(image string) string {
	s := image
	if i := strings.Index(s, "@"); i >= 0 {
		s = s[:i]
	}
	b := path.Base(s)
	if i := strings.Index(b, ":"); i >= 0 {
		b = b[:i]
	}
	return b
}

func (c config) resolveImage(image string) (*imageProgram, error) {
	base := imageBase(image)
	bin := func(hostBin, name string, args ...string) (*imageProgram, error) {
		if hostBin == "" {
			return nil, &errImagePull{fmt.Sprintf("image %q maps to %s, but the node was started without its path", image, name)}
		}
		if st, err := os.Stat(hostBin); err != nil || st.IsDir() {
			return nil, &errImagePull{fmt.Sprintf("image %q maps to %s, which is not built (cargo build)", image, hostBin)}
		}
		return &imageProgram{hostBin: hostBin, binPath: "/tether/bin/" + name, entrypoint: append([]string{"/tether/bin/" + name}, args...)}, nil
	}
	switch {
	case strings.Contains(image, "tether-agent"):
		return bin(c.agentBin, "tether-agent")
	case base == "tether-testsrv" || base == "testsrv":
		return bin(c.testsrvBin, "tether-testsrv")
	case base == "http-echo" || base == "tcp-echo" || base == "udp-echo":
		if strings.HasPrefix(image, "tether.test/") || strings.Contains(image, "tether-dev/") {
			return bin(c.testsrvBin, "tether-testsrv", base)
		}
	case base == "busybox":
		// Like the real image: no ENTRYPOINT, CMD ["sh"].
		return &imageProgram{cmd: []string{"sh"}}, nil
	}
	return nil, &errImagePull{fmt.Sprintf("failed to pull and unpack image %q: failed to resolve reference %q: %s: not found", image, image, image)}
}

func imageID(image string) string {
	h := sha256.Sum256([]byte(image))
	return "sha256:" + hex.EncodeToString(h[:])
}
