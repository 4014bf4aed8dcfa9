//! Process-wide layer state, set once by the constructor and read-only afterwards (except the
//! tables in [`crate::fdtable`] and the link's pool, which have their own locks).

use std::ffi::{CStr, CString, OsString};
use std::os::unix::ffi::OsStringExt;
use std::sync::OnceLock;

use tether_protocol::layer::{LayerPolicy, LayerRequest, LayerResponse, Side};
use tether_protocol::{RemoteError, session_env};

use crate::link::{Identity, Link, LinkError, SessionAddr};
use crate::netpolicy::Filter;
use crate::policy::FsPolicy;

/// Everything the hooks consult.
pub struct State {
    /// The session link.
    pub link: Link,
    /// The policy as the daemon sent it.
    pub policy: LayerPolicy,
    /// Compiled fs rules.
    pub fs: FsPolicy,
    /// Parsed outgoing filter.
    pub outgoing: Option<Filter>,
    /// Parsed DNS filter.
    pub dns: Option<Filter>,
    /// `NAME=value` of every [`session_env::INHERITED`] variable at start, for exec hooks.
    pub inherited: Vec<(String, String)>,
    /// This library's path, kept in a child's `LD_PRELOAD`.
    pub self_path: Option<String>,
}

static STATE: OnceLock<State> = OnceLock::new();

/// The state; only called by hooks after the constructor activated them.
pub fn get() -> &'static State {
    STATE
        .get()
        .expect("hooks run only after the constructor set the state")
}

/// The state, if the constructor set it.
pub fn try_get() -> Option<&'static State> {
    STATE.get()
}

/// How the constructor ended.
pub enum Started {
    /// Hooks are on.
    Hooked,
    /// The process is in `skip_processes`: it runs unhooked by design.
    Skipped(String),
}

/// Why the constructor could not start the layer; printed as one line, then the process exits.
pub struct StartError(pub String);

/// Reads the environment, connects, says hello and stores the state.
pub fn start(argv: Vec<String>) -> Result<Started, StartError> {
    let addr_raw = std::env::var(session_env::SESSION_ADDR).map_err(|_| {
        StartError(format!(
            "cannot reach the session: {} is not set (the layer was preloaded outside `tether exec`)",
            session_env::SESSION_ADDR
        ))
    })?;
    let addr = SessionAddr::parse(&addr_raw).map_err(|e| {
        StartError(format!(
            "cannot reach the session at {addr_raw}: {} {e}",
            session_env::SESSION_ADDR
        ))
    })?;
    let token = std::env::var(session_env::SESSION_TOKEN).map_err(|_| {
        StartError(format!(
            "cannot reach the session at {addr}: {} is not set",
            session_env::SESSION_TOKEN
        ))
    })?;
    let exe = std::fs::read_link("/proc/self/exe")
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let identity = Identity {
        token,
        exe: exe.clone(),
        argv: argv.clone(),
    };
    let link = Link::new(addr.clone(), identity);
    let hello = link.handshake().map_err(|e| match e {
        LinkError::Refused(why) => {
            StartError(format!("the session at {addr} refused this process: {why}"))
        }
        e => StartError(format!("cannot reach the session at {addr}: {e}")),
    })?;
    let policy = hello.policy;

    let name_of = |s: &str| s.rsplit('/').next().unwrap_or(s).to_string();
    let names = [argv.first().map(|a| name_of(a)), Some(name_of(&exe))];
    if let Some(skipped) = names
        .iter()
        .flatten()
        .find(|n| policy.skip_processes.iter().any(|s| s == *n))
    {
        return Ok(Started::Skipped(skipped.clone()));
    }

    let fs = FsPolicy::new(&policy.fs_rules, policy.fs_default)
        .map_err(|e| StartError(format!("the session at {addr} sent a bad policy: {e}")))?;
    let outgoing = policy
        .outgoing_filter
        .as_ref()
        .map(Filter::new)
        .transpose()
        .map_err(|e| {
            StartError(format!(
                "the session at {addr} sent a bad outgoing filter: {e}"
            ))
        })?;
    let dns = policy
        .dns_filter
        .as_ref()
        .map(Filter::new)
        .transpose()
        .map_err(|e| StartError(format!("the session at {addr} sent a bad DNS filter: {e}")))?;
    let inherited = session_env::INHERITED
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
        .collect();
    let state = State {
        link,
        policy,
        fs,
        outgoing,
        dns,
        inherited,
        self_path: self_path(),
    };
    if STATE.set(state).is_err() {
        return Err(StartError("the layer was initialised twice".into()));
    }
    Ok(Started::Hooked)
}

/// This shared object's path, from `dladdr` on one of its functions.
fn self_path() -> Option<String> {
    // SAFETY: dladdr fills `info` for an address inside a loaded object.
    unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        if libc::dladdr(self_path as *const libc::c_void, &mut info) == 0
            || info.dli_fname.is_null()
        {
            return None;
        }
        Some(
            CStr::from_ptr(info.dli_fname)
                .to_string_lossy()
                .into_owned(),
        )
    }
}

/// Sends one request; a link failure becomes an errno (after its one stderr line).
pub fn request(body: LayerRequest) -> Result<LayerResponse, RemoteError> {
    get()
        .link
        .request(body)
        .unwrap_or_else(|e| Err(RemoteError::new(Link::errno(&e), e.to_string())))
}

impl State {
    /// Side of an outgoing connection.
    pub fn outgoing_side(
        &self,
        proto: crate::netpolicy::Proto,
        dest: std::net::SocketAddr,
        names: &[String],
    ) -> Side {
        self.outgoing
            .as_ref()
            .map_or(Side::Remote, |f| f.route(proto, dest, names))
    }
}

/// Converts raw `argv` from the constructor into strings.
///
/// # Safety
/// `argv` holds `argc` valid C strings (glibc passes them to init functions).
pub unsafe fn argv_from(argc: libc::c_int, argv: *const *const libc::c_char) -> Vec<String> {
    if argv.is_null() || argc <= 0 {
        return Vec::new();
    }
    (0..argc as usize)
        .filter_map(|i| {
            // SAFETY: i < argc.
            let p = unsafe { *argv.add(i) };
            (!p.is_null()).then(|| {
                // SAFETY: non-null C string from the loader.
                let bytes = unsafe { CStr::from_ptr(p) }.to_bytes().to_vec();
                OsString::from_vec(bytes).to_string_lossy().into_owned()
            })
        })
        .collect()
}

/// Marks the process as running inside a session, for its children.
pub fn mark_loaded() {
    let k = CString::new(session_env::LAYER_LOADED).expect("no NUL");
    // SAFETY: called from the constructor, before any thread of the program exists.
    unsafe { libc::setenv(k.as_ptr(), c"1".as_ptr(), 1) };
}
