//! The target's environment, from `/proc/PID/environ`.

use crate::errors::{OpError, OpResult};

/// Reads and parses the target's environment, in its order.
pub async fn read(pid: u32) -> OpResult<Vec<(String, String)>> {
    let path = format!("/proc/{pid}/environ");
    let raw = tokio::fs::read(&path).await.map_err(|e| {
        if matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM)) {
            OpError::Agent(crate::errors::missing_capability(
                "CAP_SYS_PTRACE",
                "read the target's environment (/proc/PID/environ)",
            ))
        } else {
            OpError::io(format_args!("read {path}"), &e)
        }
    })?;
    Ok(parse(&raw))
}

/// Splits NUL-separated `KEY=VALUE` entries; entries without `=` are skipped, non-UTF-8 bytes
/// are replaced.
pub fn parse(raw: &[u8]) -> Vec<(String, String)> {
    raw.split(|&b| b == 0)
        .filter(|e| !e.is_empty())
        .filter_map(|e| {
            let eq = e.iter().position(|&b| b == b'=')?;
            Some((
                String::from_utf8_lossy(&e[..eq]).into_owned(),
                String::from_utf8_lossy(&e[eq + 1..]).into_owned(),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_in_order_and_keeps_equals_in_values() {
        let env = parse(b"A=1\0PATH=/bin:/usr/bin\0EMPTY=\0X=a=b\0junk\0");
        assert_eq!(
            env,
            vec![
                ("A".into(), "1".into()),
                ("PATH".into(), "/bin:/usr/bin".into()),
                ("EMPTY".into(), "".into()),
                ("X".into(), "a=b".into()),
            ]
        );
    }
}
