//! The test cluster's node (tests/cluster/node) reports container ids `tether-test://<id>` and
//! writes `<run-dir>/containers/<id>.json` while the container runs:
//! `{"id": .., "pid": <host pid>, "pid_start_time": <field 22 of /proc/PID/stat>, ..}`.
//! The run dir is `/run/tether-cluster` unless `TETHER_TEST_NODE_RUN_DIR` says otherwise.

use std::path::{Path, PathBuf};

use super::RuntimeError;

const RUNTIME: &str = "tether-test node";

/// Environment variable overriding the node's run dir.
pub const RUN_DIR_ENV: &str = "TETHER_TEST_NODE_RUN_DIR";

/// The node's run dir.
pub fn run_dir() -> PathBuf {
    std::env::var_os(RUN_DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/tether-cluster"))
}

#[derive(serde::Deserialize)]
struct State {
    pid: u32,
    #[serde(default)]
    pid_start_time: u64,
}

/// Field 22 of `/proc/PID/stat`: start time in clock ticks since boot.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

/// Reads the pid of container `id` from the node's state file.
pub fn pid(run_dir: &Path, id: &str) -> Result<u32, RuntimeError> {
    if id.is_empty() || id.contains('/') || id.starts_with('.') {
        return Err(RuntimeError::NotFound {
            runtime: RUNTIME,
            id: id.to_owned(),
        });
    }
    let path = run_dir.join("containers").join(format!("{id}.json"));
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(RuntimeError::NotFound {
                runtime: RUNTIME,
                id: id.to_owned(),
            });
        }
        Err(e) => {
            return Err(RuntimeError::Call {
                runtime: RUNTIME,
                socket: path,
                detail: e.to_string(),
            });
        }
    };
    let st: State = serde_json::from_str(&text).map_err(|e| RuntimeError::BadAnswer {
        runtime: RUNTIME,
        detail: format!("{}: {e}", path.display()),
    })?;
    // A stale file whose PID was reused names someone else's process: refuse it.
    match start_time(st.pid) {
        Some(t) if st.pid_start_time == 0 || t == st.pid_start_time => Ok(st.pid),
        _ => Err(RuntimeError::NotRunning {
            runtime: RUNTIME,
            id: id.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_file_with_live_and_stale_pids() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("containers")).unwrap();
        let me = std::process::id();
        let st = start_time(me).unwrap();
        let write = |id: &str, pid: u32, start: u64| {
            std::fs::write(
                dir.path().join(format!("containers/{id}.json")),
                format!(
                    r#"{{"id":"{id}","pid":{pid},"pid_start_time":{start},"namespace":"default","pod":"p","container":"c","netns":"/run/netns/x"}}"#
                ),
            )
            .unwrap();
        };
        write("live", me, st);
        write("reused", me, st + 1);
        assert_eq!(pid(dir.path(), "live").unwrap(), me);
        assert!(matches!(
            pid(dir.path(), "reused"),
            Err(RuntimeError::NotRunning { .. })
        ));
        assert!(matches!(
            pid(dir.path(), "gone"),
            Err(RuntimeError::NotFound { .. })
        ));
        assert!(matches!(
            pid(dir.path(), "../x"),
            Err(RuntimeError::NotFound { .. })
        ));
    }
}
