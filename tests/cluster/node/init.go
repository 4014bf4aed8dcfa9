package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

func init() {
	// container-init switches namespaces of the calling thread and then execs from
	// it: keep main on one OS thread from the start.
	if len(os.Args) > 1 && os.Args[1] == "container-init" {
		runtime.LockOSThread()
	}
}

type bindMount struct {
	src, dst string
	ro       bool
}

// containerInit is the process the provider starts for a container: it joins the
// pod's network namespace, makes its own mount and UTS namespaces, builds a root
// (a tmpfs with the host's /usr and /etc read-only, the pod's resolv.conf, hosts,
// volumes and the image's program), chroots into it and execs the command, so the
// PID the provider waits on is the container's main process.
func containerInit(args []string) {
	var netns, root, hostname, workdir string
	var binds []bindMount
	uid, gid := -1, -1
	var argv []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			argv = args[i+1:]
			break
		}
		if i+1 >= len(args) {
			fail("flag %s needs a value", a)
		}
		v := args[i+1]
		i++
		switch a {
		case "--netns":
			netns = v
		case "--root":
			root = v
		case "--hostname":
			hostname = v
		case "--workdir":
			workdir = v
		case "--uid":
			uid, _ = strconv.Atoi(v)
		case "--gid":
			gid, _ = strconv.Atoi(v)
		case "--bind":
			p := strings.Split(v, ":")
			if len(p) < 2 {
				fail("bad --bind %q", v)
			}
			binds = append(binds, bindMount{src: p[0], dst: p[1], ro: len(p) > 2 && p[2] == "ro"})
		default:
			fail("unknown flag %s", a)
		}
	}
	if len(argv) == 0 || root == "" || netns == "" {
		fail("usage: container-init --netns P --root D [--hostname H] [--bind S:D[:ro]]... -- CMD ARGS")
	}
	f, err := os.Open(netns)
	if err != nil {
		fail("open netns: %v", err)
	}
	if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
		fail("setns %s: %v", netns, err)
	}
	f.Close()
	if err := unix.Unshare(unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC); err != nil {
		fail("unshare: %v", err)
	}
	// Nothing mounted from here on propagates to the host, and all of it goes away
	// with the last process of this mount namespace.
	must(unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""), "make / private")
	if hostname != "" {
		must(unix.Sethostname([]byte(hostname)), "sethostname")
	}
	must(unix.Mount("tmpfs", root, "tmpfs", unix.MS_NODEV, "mode=0755"), "tmpfs root")
	for _, d := range []string{"usr", "etc", "proc", "sys", "dev", "tmp", "run", "var/tmp", "var/run", "root", "home", "tether/bin", "opt", "srv", "mnt"} {
		must(os.MkdirAll(filepath.Join(root, d), 0o755), "mkdir "+d)
	}
	must(os.Chmod(filepath.Join(root, "tmp"), 0o1777), "chmod /tmp")
	must(os.Chmod(filepath.Join(root, "var/tmp"), 0o1777), "chmod /var/tmp")
	for _, l := range []string{"bin", "lib", "lib64", "sbin", "lib32", "libx32"} {
		if t, err := os.Readlink("/" + l); err == nil {
			must(os.Symlink(t, filepath.Join(root, l)), "symlink "+l)
		} else if st, err := os.Stat("/" + l); err == nil && st.IsDir() {
			binds = append([]bindMount{{src: "/" + l, dst: "/" + l, ro: true}}, binds...)
		}
	}
	base := []bindMount{{src: "/usr", dst: "/usr", ro: true}, {src: "/etc", dst: "/etc", ro: true}, {src: "/dev", dst: "/dev"}}
	for _, b := range append(base, binds...) {
		doBind(root, b)
	}
	must(unix.Mount("proc", filepath.Join(root, "proc"), "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""), "mount proc")
	must(unix.Mount("sysfs", filepath.Join(root, "sys"), "sysfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""), "mount sysfs")
	must(unix.Chroot(root), "chroot")
	if workdir == "" {
		workdir = "/"
	}
	_ = os.MkdirAll(workdir, 0o755)
	must(os.Chdir(workdir), "chdir "+workdir)
	path, err := exec.LookPath(argv[0])
	if err != nil {
		fail("%s: executable not found in $PATH inside the container root: %v", argv[0], err)
	}
	if gid >= 0 {
		must(syscall.Setgroups([]int{gid}), "setgroups")
		must(syscall.Setgid(gid), "setgid")
	}
	if uid >= 0 {
		must(syscall.Setuid(uid), "setuid")
	}
	err = unix.Exec(path, argv, os.Environ())
	fail("exec %s: %v", path, err)
}

func doBind(root string, b bindMount) {
	dst := filepath.Join(root, b.dst)
	st, err := os.Stat(b.src)
	if err != nil {
		fail("bind source %s: %v", b.src, err)
	}
	if st.IsDir() {
		must(os.MkdirAll(dst, 0o755), "mkdir "+dst)
	} else {
		must(os.MkdirAll(filepath.Dir(dst), 0o755), "mkdir "+filepath.Dir(dst))
		if _, err := os.Stat(dst); err != nil {
			fh, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o644)
			if err != nil {
				fail("create mount point %s: %v", dst, err)
			}
			fh.Close()
		}
	}
	must(unix.Mount(b.src, dst, "", unix.MS_BIND|unix.MS_REC, ""), "bind "+b.src+" "+b.dst)
	if b.ro {
		must(unix.Mount("", dst, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""), "remount ro "+b.dst)
	}
}

func must(err error, what string) {
	if err != nil {
		fail("%s: %v", what, err)
	}
}

func fail(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "tether-node container-init: "+format+"\n", a...)
	os.Exit(128)
}
