//! Locating the `tether-testsrv` binary (test servers and the networks' DNS server).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::error::{Error, Result};
use crate::sys::is_executable;

/// Name of the test server binary.
pub const TESTSRV: &str = "tether-testsrv";

/// Path of `tether-testsrv`, found once per process, in this order:
/// 1. `TETHER_TESTSRV` (an explicit path);
/// 2. next to the running executable or in its parent dir (`target/debug/` seen from a test in
///    `target/debug/deps/`; `tether-testnet` finds it there too), if it is newer than the
///    testsrv sources;
/// 3. under `cargo test` (env `CARGO` set): `cargo build --bin tether-testsrv` of this package,
///    so the binary is never stale, whichever package's tests use the testkit
///    (`TETHER_TESTSRV_NO_BUILD=1` skips this);
/// 4. a stale sibling binary, with a warning.
pub fn testsrv_bin() -> Result<PathBuf> {
    static FOUND: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    FOUND
        .get_or_init(locate)
        .clone()
        .map_err(|reason| Error::TestServerBinary { reason })
}

fn locate() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("TETHER_TESTSRV") {
        let p = PathBuf::from(p);
        return if is_executable(&p) {
            Ok(p)
        } else {
            Err(format!(
                "TETHER_TESTSRV={} is not an executable file",
                p.display()
            ))
        };
    }
    let mut notes = Vec::new();
    let near = sibling(TESTSRV);
    if let Some(p) = &near
        && is_fresh(p)
    {
        return Ok(p.clone());
    }
    if let Some(cargo) = std::env::var_os("CARGO")
        && std::env::var_os("TETHER_TESTSRV_NO_BUILD").is_none()
    {
        match cargo_build(Path::new(&cargo)) {
            Ok(p) => return Ok(p),
            Err(e) => notes.push(e),
        }
    }
    if let Some(p) = near {
        eprintln!(
            "tether-testkit: warning: using {}, older than its sources ({})",
            p.display(),
            notes.join("; ")
        );
        return Ok(p);
    }
    notes.push("not found next to the running executable".into());
    Err(notes.join("; "))
}

/// `NAME` in the directory of the running executable or its parent.
pub(crate) fn sibling(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [dir.join(name), dir.parent()?.join(name)]
        .into_iter()
        .find(|p| is_executable(p))
}

/// Whether `bin` is newer than every source it is built from (when the sources are present: a
/// binary copied to another machine counts as fresh).
fn is_fresh(bin: &Path) -> bool {
    let Ok(built) = std::fs::metadata(bin).and_then(|m| m.modified()) else {
        return false;
    };
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = crate_dir.join("src/bin/tether-testsrv");
    let mut sources: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| rd.filter_map(|e| Some(e.ok()?.path())).collect())
        .unwrap_or_default();
    sources.push(crate_dir.join("Cargo.toml"));
    sources
        .iter()
        .filter_map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .all(|m| m <= built)
}

fn cargo_build(cargo: &Path) -> Result<PathBuf, String> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let out = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "--message-format=json",
            "--bin",
            TESTSRV,
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("running {}: {e}", cargo.display()))?;
    if !out.status.success() {
        return Err(format!(
            "`cargo build --bin {TESTSRV}` failed ({})",
            out.status
        ));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"]["name"] == TESTSRV)
        .find_map(|v| v["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| format!("`cargo build --bin {TESTSRV}` reported no executable"))
}
