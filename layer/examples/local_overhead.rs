//! Benchmark (not a test): how much slower hooked-but-local `stat` and `open+read+close` are
//! with the layer than without it, in thread CPU time (robust on a busy machine). Budget: under
//! 10% (shared/DESIGN.md section 10).
//!
//! Run: `cargo build -p tether-layer --release && cargo run -p tether-layer --release --example
//! local_overhead`. Needs `cc`. With `--serve` it only runs the fake session and prints the
//! variables to use it by hand.

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::Command;

use tether_protocol::layer::{FsAction, FsRule};

const BENCH: &str = r#"
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t); return t.tv_sec + t.tv_nsec / 1e9; }
int main(int argc, char **argv) {
    const char *p = argv[1];
    int n = 200000;
    struct stat st;
    char buf[4096];
    for (int i = 0; i < 1000; i++) stat(p, &st);
    double t = now();
    for (int i = 0; i < n; i++) stat(p, &st);
    double a = now() - t;
    t = now();
    for (int i = 0; i < n; i++) { int fd = open(p, O_RDONLY); read(fd, buf, sizeof buf); close(fd); }
    double b = now() - t;
    printf("%.1f %.1f\n", a / n * 1e9, b / n * 1e9);
    return 0;
}
"#;

/// A policy shaped like the daemon's defaults: local system dirs, a few remote files, hidden
/// credentials, everything else remote read-only.
fn default_like_policy() -> tether_protocol::layer::LayerPolicy {
    let mut p = support::policy();
    let r = |pat: &str, action| FsRule {
        pattern: pat.into(),
        action,
    };
    p.fs_rules = vec![
        r(
            r"^/etc/(resolv\.conf|hosts|hostname)$",
            FsAction::RemoteReadOnly,
        ),
        r(r"^/etc/ssl(/|$)", FsAction::RemoteReadOnly),
        r(r"^/root/\.kube(/|$)", FsAction::NotFound),
        r(r"^/root/\.aws(/|$)", FsAction::NotFound),
        r(r"^/root/\.config/gcloud(/|$)", FsAction::NotFound),
        r(r"^/root/\.azure(/|$)", FsAction::NotFound),
        r(r"^/proc(/|$)", FsAction::Local),
        r(r"^/sys(/|$)", FsAction::Local),
        r(r"^/dev(/|$)", FsAction::Local),
        r(r"^/usr(/|$)", FsAction::Local),
        r(r"^/lib(32|64)?(/|$)", FsAction::Local),
        r(r"^/bin(/|$)", FsAction::Local),
        r(r"^/sbin(/|$)", FsAction::Local),
        r(r"^/opt(/|$)", FsAction::Local),
        r(r"^/tmp(/|$)", FsAction::Local),
        r(r"^/var/tmp(/|$)", FsAction::Local),
        r(r"^/etc(/|$)", FsAction::Local),
        r(
            r"^/root/\.(pyenv|rustup|cargo|cache|npm|nvm|m2|gradle)(/|$)",
            FsAction::Local,
        ),
        r(r"^/work(/|$)", FsAction::Local),
    ];
    p.fs_default = FsAction::RemoteReadOnly;
    p
}

fn run(cmd: &mut Command) -> (f64, f64) {
    let out = cmd.output().expect("run bench");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = String::from_utf8(out.stdout).unwrap();
    let mut it = s.split_whitespace().map(|x| x.parse::<f64>().unwrap());
    (it.next().unwrap(), it.next().unwrap())
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("--serve") {
        // Manual experiments: a fake session with the default-like policy until killed.
        let session = support::FakeSession::start(default_like_policy());
        println!(
            "LD_PRELOAD={} TETHER_SESSION_ADDR={} TETHER_SESSION_TOKEN={}",
            support::layer_path().display(),
            session.addr,
            session.token
        );
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let bench = support::compile_c(dir.path(), "bench", BENCH, &["-O2"]);
    let session = support::FakeSession::start(default_like_policy());
    let file = "/usr/lib/os-release";
    let mut base = (f64::MAX, f64::MAX);
    let mut hooked = (f64::MAX, f64::MAX);
    // Interleave runs and keep the best of each, to damp noise on a shared machine.
    for _ in 0..5 {
        let b = run(Command::new(&bench).arg(file));
        let h = run(session.command(bench.to_str().unwrap()).arg(file));
        base = (base.0.min(b.0), base.1.min(b.1));
        hooked = (hooked.0.min(h.0), hooked.1.min(h.1));
    }
    println!("layer: {}", support::layer_path().display());
    println!(
        "stat:            {:7.1} ns -> {:7.1} ns  ({:+.1}%)",
        base.0,
        hooked.0,
        (hooked.0 / base.0 - 1.0) * 100.0
    );
    println!(
        "open+read+close: {:7.1} ns -> {:7.1} ns  ({:+.1}%)",
        base.1,
        hooked.1,
        (hooked.1 / base.1 - 1.0) * 100.0
    );
    assert!(
        session.requests().is_empty(),
        "local paths reached the session"
    );
}
