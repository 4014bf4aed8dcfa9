//! Keeping children in the session: exec and spawn with a replaced environment get
//! `LD_PRELOAD` and the session variables back.

use std::ffi::{CStr, CString};

use libc::c_char;
use tether_protocol::layer::LayerRequest;
use tether_protocol::session_env;

use crate::log::debug;
use crate::state;

/// The environment a child must get: `env` with every missing inherited variable added and this
/// library kept in `LD_PRELOAD`. `None` when `env` needs no change.
pub fn merge_env(
    env: &[&[u8]],
    inherited: &[(String, String)],
    self_path: Option<&str>,
) -> Option<Vec<Vec<u8>>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut changed = false;
    let find = |name: &str| {
        env.iter().position(|e| {
            e.len() > name.len() && e.starts_with(name.as_bytes()) && e[name.len()] == b'='
        })
    };
    let mut extra: Vec<Vec<u8>> = Vec::new();
    let mut preload_at: Option<usize> = None;
    for (name, value) in inherited {
        match find(name) {
            None => {
                changed = true;
                extra.push(format!("{name}={value}").into_bytes());
            }
            Some(i) if name == session_env::LD_PRELOAD => preload_at = Some(i),
            Some(_) => {}
        }
    }
    for (i, e) in env.iter().enumerate() {
        if Some(i) == preload_at
            && let Some(me) = self_path
        {
            let val = &e[session_env::LD_PRELOAD.len() + 1..];
            let has_me = val
                .split(|b| *b == b':' || *b == b' ')
                .any(|p| p == me.as_bytes());
            if !has_me {
                changed = true;
                let mut v = format!("{}={me}", session_env::LD_PRELOAD).into_bytes();
                if !val.is_empty() {
                    v.push(b':');
                    v.extend_from_slice(val);
                }
                out.push(v);
                continue;
            }
        }
        out.push(e.to_vec());
    }
    if !changed {
        return None;
    }
    out.extend(extra);
    Some(out)
}

/// An owned, NUL-terminated `envp`.
pub struct Envp {
    _strings: Vec<CString>,
    ptrs: Vec<*const c_char>,
}

impl Envp {
    /// The pointer array.
    pub fn as_ptr(&self) -> *const *const c_char {
        self.ptrs.as_ptr()
    }
}

/// The child's environment for `envp` (null means `environ`), or `None` to pass `envp` as is.
///
/// # Safety
/// `envp` is null or a valid NULL-terminated array of C strings.
pub unsafe fn child_env(envp: *const *const c_char) -> Option<Envp> {
    let st = state::try_get()?;
    let envp = if envp.is_null() {
        // SAFETY: the process environment.
        unsafe { environ }.cast_const().cast::<*const c_char>()
    } else {
        envp
    };
    if envp.is_null() {
        return None;
    }
    let mut env: Vec<&[u8]> = Vec::new();
    let mut i = 0;
    loop {
        // SAFETY: NULL-terminated array.
        let p = unsafe { *envp.add(i) };
        if p.is_null() {
            break;
        }
        // SAFETY: each entry is a C string.
        env.push(unsafe { CStr::from_ptr(p) }.to_bytes());
        i += 1;
    }
    let merged = merge_env(&env, &st.inherited, st.self_path.as_deref())?;
    let strings: Vec<CString> = merged
        .into_iter()
        .filter_map(|v| CString::new(v).ok())
        .collect();
    let mut ptrs: Vec<*const c_char> = strings.iter().map(|s| s.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    debug!("child environment: re-added the session variables");
    Some(Envp {
        _strings: strings,
        ptrs,
    })
}

unsafe extern "C" {
    static mut environ: *mut *mut c_char;
}

/// Tells the session an exec is coming, on an idle connection only (never a new one: a fresh
/// child is about to say its own hello).
///
/// # Safety
/// `path` is null or a valid C string.
pub unsafe fn announce(path: *const c_char) {
    let Some(st) = state::try_get() else { return };
    if path.is_null() || !st.link.has_idle() {
        return;
    }
    // SAFETY: non-null C string.
    let p = unsafe { CStr::from_ptr(path) }
        .to_string_lossy()
        .into_owned();
    let _ = st.link.request(LayerRequest::Exec { path: p });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inherited() -> Vec<(String, String)> {
        vec![
            ("LD_PRELOAD".into(), "/opt/libtether_layer.so".into()),
            ("TETHER_SESSION_ADDR".into(), "unix:/run/s".into()),
            ("TETHER_SESSION_TOKEN".into(), "t0k".into()),
        ]
    }

    fn strs(v: &[Vec<u8>]) -> Vec<String> {
        v.iter()
            .map(|b| String::from_utf8(b.clone()).unwrap())
            .collect()
    }

    #[test]
    fn complete_env_is_left_alone() {
        let env: Vec<&[u8]> = vec![
            b"PATH=/bin",
            b"LD_PRELOAD=/opt/libtether_layer.so",
            b"TETHER_SESSION_ADDR=unix:/run/s",
            b"TETHER_SESSION_TOKEN=t0k",
        ];
        assert!(merge_env(&env, &inherited(), Some("/opt/libtether_layer.so")).is_none());
    }

    #[test]
    fn replaced_env_gets_the_session_back() {
        let env: Vec<&[u8]> = vec![b"FOO=1"];
        let out = strs(&merge_env(&env, &inherited(), Some("/opt/libtether_layer.so")).unwrap());
        assert_eq!(
            out,
            [
                "FOO=1",
                "LD_PRELOAD=/opt/libtether_layer.so",
                "TETHER_SESSION_ADDR=unix:/run/s",
                "TETHER_SESSION_TOKEN=t0k"
            ]
        );
        let empty: Vec<&[u8]> = vec![];
        assert_eq!(merge_env(&empty, &inherited(), None).unwrap().len(), 3);
    }

    #[test]
    fn foreign_preload_keeps_the_layer_first() {
        let env: Vec<&[u8]> = vec![
            b"LD_PRELOAD=/usr/lib/libasan.so",
            b"TETHER_SESSION_ADDR=unix:/run/s",
            b"TETHER_SESSION_TOKEN=t0k",
        ];
        let out = strs(&merge_env(&env, &inherited(), Some("/opt/libtether_layer.so")).unwrap());
        assert_eq!(
            out[0],
            "LD_PRELOAD=/opt/libtether_layer.so:/usr/lib/libasan.so"
        );
        // A name that merely starts like a session variable does not count.
        let env: Vec<&[u8]> = vec![b"LD_PRELOADX=1"];
        let out = strs(&merge_env(&env, &inherited(), None).unwrap());
        assert!(out.contains(&"LD_PRELOAD=/opt/libtether_layer.so".to_string()));
    }
}
