//! Name resolution in the target (getaddrinfo, gethostbyname family, getnameinfo) and the
//! target's host name (gethostname, uname).
//!
//! Lists from `getaddrinfo` are laid out exactly as glibc lays them out (one `malloc` per node
//! with its sockaddr inside, `ai_canonname` separate), and the layer remembers which lists it
//! built: `freeaddrinfo` frees those itself and passes every other list to glibc.

use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::ffi::CStr;
use std::net::{IpAddr, SocketAddr};

use libc::{addrinfo, c_char, c_int, hostent, size_t, sockaddr, socklen_t};
use tether_protocol::dns::{DnsRequest, DnsResponse, Family};
use tether_protocol::layer::{LayerRequest, LayerResponse, Side};

use super::Detour;
use crate::lock::SpinLock;
use crate::state;

/// Host names that addresses were resolved from, for outgoing filters that name hosts.
static NAMES: SpinLock<VecDeque<(IpAddr, String)>> = SpinLock::new(VecDeque::new());
const NAMES_MAX: usize = 512;

fn remember(name: &str, addrs: &[IpAddr]) {
    let mut n = NAMES.lock();
    for a in addrs {
        if !n.iter().any(|(ip, nm)| ip == a && nm == name) {
            if n.len() == NAMES_MAX {
                n.pop_front();
            }
            n.push_back((*a, name.to_string()));
        }
    }
}

/// Names `ip` was resolved from through the layer.
pub fn names_for(ip: IpAddr) -> Vec<String> {
    NAMES
        .lock()
        .iter()
        .filter(|(a, _)| *a == ip)
        .map(|(_, n)| n.clone())
        .collect()
}

/// Lists this layer built and has not freed yet.
static BUILT: SpinLock<Vec<usize>> = SpinLock::new(Vec::new());

/// Holds the DNS locks across fork.
pub fn fork_prepare() {
    NAMES.raw_lock();
    BUILT.raw_lock();
}

/// Releases them after fork.
///
/// # Safety
/// Only after [`fork_prepare`] on this thread.
pub unsafe fn fork_release() {
    // SAFETY: fork_prepare took both on this thread.
    unsafe {
        BUILT.raw_unlock();
        NAMES.raw_unlock();
    }
}

fn is_local_name(name: &str) -> bool {
    let n = name.trim_end_matches('.').to_ascii_lowercase();
    n == "localhost" || n.ends_with(".localhost") || n.parse::<IpAddr>().is_ok()
}

/// Whether a lookup of `name` goes to the target.
fn resolve_remotely(name: &str, port: Option<u16>) -> bool {
    let st = state::get();
    if !st.policy.dns || name.is_empty() || is_local_name(name) {
        return false;
    }
    st.dns
        .as_ref()
        .is_none_or(|f| f.route_name(name, port) == Side::Remote)
}

/// Looks `name` up in the target: `Ok` addresses and canonical name, or `Err(errno)`.
fn lookup(name: &str, family: Family) -> Result<(String, Vec<IpAddr>), i32> {
    match state::request(LayerRequest::Dns(DnsRequest::Lookup {
        name: name.to_string(),
        family,
    })) {
        Ok(LayerResponse::Dns(DnsResponse::Addresses {
            canonical_name,
            addrs,
        })) => {
            remember(name, &addrs);
            Ok((canonical_name, addrs))
        }
        Ok(_) => Err(libc::EIO),
        Err(e) => Err(e.errno),
    }
}

/// What `getaddrinfo`'s hints ask for.
#[derive(Debug, Clone, Copy, Default)]
pub struct Hints {
    /// `ai_flags`.
    pub flags: c_int,
    /// `ai_family`.
    pub family: c_int,
    /// `ai_socktype`.
    pub socktype: c_int,
    /// `ai_protocol`.
    pub protocol: c_int,
}

/// Addresses of `addrs` that fit `hints`, in order, as socket addresses on `port`.
pub fn select_addrs(addrs: &[IpAddr], port: u16, hints: &Hints) -> Vec<SocketAddr> {
    let v4 = addrs.iter().filter(|a| a.is_ipv4());
    let v6 = addrs.iter().filter(|a| a.is_ipv6());
    let out: Vec<IpAddr> = match hints.family {
        libc::AF_INET => v4.copied().collect(),
        libc::AF_INET6 => {
            let mut out: Vec<IpAddr> = v6.copied().collect();
            let mapped = hints.flags & libc::AI_V4MAPPED != 0
                && (out.is_empty() || hints.flags & libc::AI_ALL != 0);
            if mapped {
                out.extend(addrs.iter().filter_map(|a| match a {
                    IpAddr::V4(v4) => Some(IpAddr::V6(v4.to_ipv6_mapped())),
                    IpAddr::V6(_) => None,
                }));
            }
            out
        }
        _ => addrs.to_vec(),
    };
    out.into_iter()
        .map(|ip| SocketAddr::new(ip, port))
        .collect()
}

fn socktypes(hints: &Hints) -> Vec<(c_int, c_int)> {
    let default_proto = |t| match t {
        libc::SOCK_STREAM => libc::IPPROTO_TCP,
        libc::SOCK_DGRAM => libc::IPPROTO_UDP,
        _ => 0,
    };
    if hints.socktype == 0 {
        if hints.protocol != 0 {
            let t = match hints.protocol {
                libc::IPPROTO_UDP => libc::SOCK_DGRAM,
                _ => libc::SOCK_STREAM,
            };
            return vec![(t, hints.protocol)];
        }
        vec![
            (libc::SOCK_STREAM, libc::IPPROTO_TCP),
            (libc::SOCK_DGRAM, libc::IPPROTO_UDP),
            (libc::SOCK_RAW, 0),
        ]
    } else {
        let p = if hints.protocol != 0 {
            hints.protocol
        } else {
            default_proto(hints.socktype)
        };
        vec![(hints.socktype, p)]
    }
}

/// Builds a glibc-compatible `addrinfo` list; null when `addrs` is empty or malloc fails.
pub fn build_addrinfo(addrs: &[SocketAddr], hints: &Hints, canon: Option<&str>) -> *mut addrinfo {
    let mut head: *mut addrinfo = std::ptr::null_mut();
    let mut tail: *mut addrinfo = std::ptr::null_mut();
    let node_size = std::mem::size_of::<addrinfo>() + std::mem::size_of::<libc::sockaddr_in6>();
    for a in addrs {
        let family = if a.is_ipv4() {
            libc::AF_INET
        } else {
            libc::AF_INET6
        };
        let Some((ss, sslen)) = super::net::encode_sockaddr(*a, family) else {
            continue;
        };
        for (socktype, protocol) in socktypes(hints) {
            // SAFETY: one allocation for the node and its sockaddr, as glibc does.
            let node = unsafe { libc::calloc(1, node_size) }.cast::<addrinfo>();
            if node.is_null() {
                free_list(head);
                return std::ptr::null_mut();
            }
            // SAFETY: `node` is a fresh, zeroed allocation of node_size bytes.
            unsafe {
                let sa = node.add(1).cast::<u8>();
                std::ptr::copy_nonoverlapping((&raw const ss).cast::<u8>(), sa, sslen as usize);
                (*node).ai_flags = hints.flags;
                (*node).ai_family = family;
                (*node).ai_socktype = socktype;
                (*node).ai_protocol = protocol;
                (*node).ai_addrlen = sslen;
                (*node).ai_addr = sa.cast::<sockaddr>();
                if head.is_null() {
                    head = node;
                } else {
                    (*tail).ai_next = node;
                }
            }
            tail = node;
        }
    }
    if !head.is_null()
        && hints.flags & libc::AI_CANONNAME != 0
        && let Some(c) = canon
        && let Ok(c) = std::ffi::CString::new(c)
    {
        // SAFETY: strdup allocates with malloc, freed with free by either freeaddrinfo.
        unsafe { (*head).ai_canonname = libc::strdup(c.as_ptr()) };
    }
    head
}

/// Frees a list built by [`build_addrinfo`] (same steps as glibc's `freeaddrinfo`).
pub fn free_list(mut ai: *mut addrinfo) {
    while !ai.is_null() {
        // SAFETY: nodes and canonname were malloc'ed by build_addrinfo.
        unsafe {
            let next = (*ai).ai_next;
            libc::free((*ai).ai_canonname.cast());
            libc::free(ai.cast());
            ai = next;
        }
    }
}

fn service_port(service: *const c_char, hints: &Hints) -> Result<(u16, bool), c_int> {
    if service.is_null() {
        return Ok((0, false));
    }
    // SAFETY: non-null C string from the caller.
    let s = unsafe { CStr::from_ptr(service) };
    let text = s.to_str().map_err(|_| libc::EAI_SERVICE)?;
    if let Ok(p) = text.parse::<u16>() {
        return Ok((p, true));
    }
    if hints.flags & libc::AI_NUMERICSERV != 0 {
        return Err(libc::EAI_NONAME);
    }
    let proto = if hints.socktype == libc::SOCK_DGRAM {
        c"udp"
    } else {
        c"tcp"
    };
    // SAFETY: valid C strings; getservbyname reads the local services database.
    let ent = unsafe { libc::getservbyname(s.as_ptr(), proto.as_ptr()) };
    if ent.is_null() {
        return Err(libc::EAI_SERVICE);
    }
    // SAFETY: a valid servent.
    Ok((u16::from_be(unsafe { (*ent).s_port } as u16), false))
}

/// `getaddrinfo`.
///
/// # Safety
/// Arguments as for `getaddrinfo`.
pub unsafe fn getaddrinfo(
    node: *const c_char,
    service: *const c_char,
    hints: *const addrinfo,
    res: *mut *mut addrinfo,
) -> Detour<c_int> {
    if node.is_null() || res.is_null() {
        return Detour::Bypass;
    }
    // SAFETY: non-null C string.
    let Ok(name) = unsafe { CStr::from_ptr(node) }.to_str() else {
        return Detour::Bypass;
    };
    let h = if hints.is_null() {
        Hints {
            flags: libc::AI_V4MAPPED | libc::AI_ADDRCONFIG,
            ..Hints::default()
        }
    } else {
        // SAFETY: the caller's hints.
        let h = unsafe { &*hints };
        Hints {
            flags: h.ai_flags,
            family: h.ai_family,
            socktype: h.ai_socktype,
            protocol: h.ai_protocol,
        }
    };
    if h.flags & libc::AI_NUMERICHOST != 0 {
        return Detour::Bypass;
    }
    if !matches!(h.family, libc::AF_UNSPEC | libc::AF_INET | libc::AF_INET6) {
        return Detour::Bypass;
    }
    let (port, numeric) = match service_port(service, &h) {
        Ok(p) => p,
        Err(code) => return Detour::Done(code),
    };
    if !resolve_remotely(name, numeric.then_some(port)) {
        return Detour::Bypass;
    }
    let family = match h.family {
        libc::AF_INET => Family::V4,
        libc::AF_INET6 if h.flags & libc::AI_V4MAPPED == 0 => Family::V6,
        _ => Family::Any,
    };
    let (canon, addrs) = match lookup(name, family) {
        Ok(v) => v,
        Err(libc::ENOENT) => return Detour::Done(libc::EAI_NONAME),
        Err(libc::EIO) => {
            super::set_errno(libc::EIO);
            return Detour::Done(libc::EAI_SYSTEM);
        }
        Err(_) => return Detour::Done(libc::EAI_AGAIN),
    };
    let list = build_addrinfo(&select_addrs(&addrs, port, &h), &h, Some(&canon));
    if list.is_null() {
        return Detour::Done(libc::EAI_NONAME);
    }
    BUILT.lock().push(list as usize);
    // SAFETY: the caller's out pointer.
    unsafe { *res = list };
    Detour::Done(0)
}

/// `freeaddrinfo`: frees lists the layer built, passes others on.
pub fn freeaddrinfo(ai: *mut addrinfo) -> Detour<()> {
    if ai.is_null() {
        return Detour::Bypass;
    }
    let mine = {
        let mut b = BUILT.lock();
        match b.iter().position(|p| *p == ai as usize) {
            Some(i) => {
                b.swap_remove(i);
                true
            }
            None => false,
        }
    };
    if !mine {
        return Detour::Bypass;
    }
    free_list(ai);
    Detour::Done(())
}

unsafe extern "C" {
    fn __h_errno_location() -> *mut c_int;
}

const HOST_NOT_FOUND: c_int = 1;
const TRY_AGAIN: c_int = 2;
const NO_RECOVERY: c_int = 3;

/// Fills a `hostent` in `buf` the way `gethostbyname2_r` does. Returns 0 or `ERANGE`.
fn fill_hostent(
    ret: &mut hostent,
    buf: &mut [u8],
    name: &str,
    af: c_int,
    addrs: &[IpAddr],
) -> c_int {
    let alen = if af == libc::AF_INET6 { 16 } else { 4 };
    let ptr = std::mem::size_of::<*mut c_char>();
    // Layout: [aligned pointer arrays][addresses][name\0].
    let base = buf.as_mut_ptr();
    let align = base.align_offset(ptr);
    let n = addrs.len();
    let need = align + ptr * (n + 1) + ptr + alen * n + name.len() + 1;
    if need > buf.len() {
        return libc::ERANGE;
    }
    // SAFETY: every write below stays inside `buf` (checked against `need`); the pointer arrays
    // are aligned.
    unsafe {
        let list = base.add(align).cast::<*mut c_char>();
        let aliases = list.add(n + 1);
        let data = aliases.add(1).cast::<u8>();
        for (i, a) in addrs.iter().enumerate() {
            let dst = data.add(i * alen);
            match a {
                IpAddr::V4(v4) => std::ptr::copy_nonoverlapping(v4.octets().as_ptr(), dst, 4),
                IpAddr::V6(v6) => std::ptr::copy_nonoverlapping(v6.octets().as_ptr(), dst, 16),
            }
            *list.add(i) = dst.cast();
        }
        *list.add(n) = std::ptr::null_mut();
        *aliases = std::ptr::null_mut();
        let name_dst = data.add(alen * n);
        std::ptr::copy_nonoverlapping(name.as_ptr(), name_dst, name.len());
        *name_dst.add(name.len()) = 0;
        ret.h_name = name_dst.cast();
        ret.h_aliases = aliases;
        ret.h_addrtype = af;
        ret.h_length = alen as c_int;
        ret.h_addr_list = list;
    }
    0
}

/// `gethostbyname2_r` (and the base of the non-reentrant forms).
///
/// # Safety
/// Arguments as for `gethostbyname2_r`.
pub unsafe fn gethostbyname2_r(
    name: *const c_char,
    af: c_int,
    ret: *mut hostent,
    buf: *mut c_char,
    buflen: size_t,
    result: *mut *mut hostent,
    herr: *mut c_int,
) -> Detour<c_int> {
    if name.is_null() || ret.is_null() || buf.is_null() || result.is_null() {
        return Detour::Bypass;
    }
    if af != libc::AF_INET && af != libc::AF_INET6 {
        return Detour::Bypass;
    }
    // SAFETY: non-null C string.
    let Ok(n) = unsafe { CStr::from_ptr(name) }.to_str() else {
        return Detour::Bypass;
    };
    if !resolve_remotely(n, None) {
        return Detour::Bypass;
    }
    let set_herr = |v: c_int| {
        if !herr.is_null() {
            // SAFETY: the caller's h_errno slot.
            unsafe { *herr = v };
        }
    };
    // SAFETY: the caller's result slot.
    unsafe { *result = std::ptr::null_mut() };
    let family = if af == libc::AF_INET6 {
        Family::V6
    } else {
        Family::V4
    };
    let (canon, addrs) = match lookup(n, family) {
        Ok(v) => v,
        Err(libc::ENOENT) => {
            set_herr(HOST_NOT_FOUND);
            return Detour::Done(0);
        }
        Err(e) => {
            set_herr(if e == libc::EIO {
                NO_RECOVERY
            } else {
                TRY_AGAIN
            });
            return Detour::Done(e);
        }
    };
    let addrs: Vec<IpAddr> = addrs
        .into_iter()
        .filter(|a| a.is_ipv6() == (af == libc::AF_INET6))
        .collect();
    if addrs.is_empty() {
        set_herr(HOST_NOT_FOUND);
        return Detour::Done(0);
    }
    // SAFETY: the caller's buffer of buflen bytes and hostent.
    let (buf, ret_ref) = unsafe {
        (
            std::slice::from_raw_parts_mut(buf.cast::<u8>(), buflen),
            &mut *ret,
        )
    };
    let r = fill_hostent(ret_ref, buf, &canon, af, &addrs);
    if r != 0 {
        set_herr(-1);
        return Detour::Done(r);
    }
    // SAFETY: the caller's result slot.
    unsafe { *result = ret };
    Detour::Done(0)
}

struct HostBuf {
    ent: hostent,
    buf: [u8; 4096],
}

thread_local! {
    // Per-thread static storage, as glibc's gethostbyname uses. No destructor.
    static HOST: UnsafeCell<HostBuf> = const {
        UnsafeCell::new(HostBuf {
            ent: hostent {
                h_name: std::ptr::null_mut(),
                h_aliases: std::ptr::null_mut(),
                h_addrtype: 0,
                h_length: 0,
                h_addr_list: std::ptr::null_mut(),
            },
            buf: [0; 4096],
        })
    };
}

/// `gethostbyname2`, into per-thread storage.
///
/// # Safety
/// `name` is null or a valid C string.
pub unsafe fn gethostbyname2(name: *const c_char, af: c_int) -> Detour<*mut hostent> {
    let Ok(cell) = HOST.try_with(|h| h.get()) else {
        return Detour::Bypass;
    };
    // SAFETY: this thread's storage; the previous result is overwritten, as documented for
    // gethostbyname.
    let hb = unsafe { &mut *cell };
    let mut result: *mut hostent = std::ptr::null_mut();
    let mut herr: c_int = 0;
    // SAFETY: valid buffers.
    let d = unsafe {
        gethostbyname2_r(
            name,
            af,
            &mut hb.ent,
            hb.buf.as_mut_ptr().cast(),
            hb.buf.len(),
            &mut result,
            &mut herr,
        )
    };
    match d {
        Detour::Done(_) => {
            if result.is_null() {
                // SAFETY: this thread's h_errno.
                unsafe { *__h_errno_location() = herr };
            }
            Detour::Done(result)
        }
        Detour::Bypass => Detour::Bypass,
        Detour::Fail(e) => Detour::Fail(e),
    }
}

/// `getnameinfo`: the host part from a reverse lookup in the target.
///
/// # Safety
/// Arguments as for `getnameinfo`.
pub unsafe fn getnameinfo(
    addr: *const sockaddr,
    len: socklen_t,
    host: *mut c_char,
    hostlen: socklen_t,
    serv: *mut c_char,
    servlen: socklen_t,
    flags: c_int,
) -> Detour<c_int> {
    if host.is_null() || hostlen == 0 || flags & libc::NI_NUMERICHOST != 0 {
        return Detour::Bypass;
    }
    // SAFETY: forwarded.
    let Some(a) = (unsafe { super::net::read_sockaddr(addr, len) }).map(super::net::unmap) else {
        return Detour::Bypass;
    };
    let st = state::get();
    if !st.policy.dns || a.ip().is_loopback() || a.ip().is_unspecified() {
        return Detour::Bypass;
    }
    let name = match state::request(LayerRequest::Dns(DnsRequest::Reverse { addr: a.ip() })) {
        Ok(LayerResponse::Dns(DnsResponse::Name(n))) => n,
        Err(e) if e.errno == libc::ENOENT && flags & libc::NI_NAMEREQD != 0 => {
            return Detour::Done(libc::EAI_NONAME);
        }
        _ => return Detour::Bypass,
    };
    if name.len() + 1 > hostlen as usize {
        return Detour::Done(libc::EAI_OVERFLOW);
    }
    if !serv.is_null() && servlen > 0 {
        // SAFETY: the real getnameinfo fills only the service part.
        let r = unsafe {
            crate::real::getnameinfo(addr, len, std::ptr::null_mut(), 0, serv, servlen, flags)
        };
        if r != 0 {
            return Detour::Done(r);
        }
    }
    // SAFETY: host holds hostlen >= len+1 bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(name.as_ptr(), host.cast::<u8>(), name.len());
        *host.add(name.len()) = 0;
    }
    Detour::Done(0)
}

/// `gethostname`: the target's host name when the policy names one.
///
/// # Safety
/// `name` holds `len` bytes.
pub unsafe fn gethostname(name: *mut c_char, len: size_t) -> Detour<c_int> {
    let Some(h) = state::get().policy.hostname.as_deref() else {
        return Detour::Bypass;
    };
    if name.is_null() || h.len() + 1 > len {
        return Detour::Fail(libc::ENAMETOOLONG);
    }
    // SAFETY: `name` holds at least len+1 bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(h.as_ptr(), name.cast::<u8>(), h.len());
        *name.add(h.len()) = 0;
    }
    Detour::Done(0)
}

/// `uname`: the real one, with the target's node name.
///
/// # Safety
/// `buf` is a valid `utsname`.
pub unsafe fn uname(buf: *mut libc::utsname) -> Detour<c_int> {
    let Some(h) = state::get().policy.hostname.as_deref() else {
        return Detour::Bypass;
    };
    // SAFETY: forwarded.
    let r = unsafe { crate::real::uname(buf) };
    if r == 0 {
        // SAFETY: a valid utsname just filled.
        let node = unsafe { &mut (*buf).nodename };
        let n = h.len().min(node.len() - 1);
        for (d, s) in node.iter_mut().zip(h.as_bytes()[..n].iter()) {
            *d = *s as c_char;
        }
        node[n] = 0;
    }
    Detour::Done(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(mut ai: *const addrinfo) -> Vec<(c_int, c_int, SocketAddr)> {
        let mut out = vec![];
        while !ai.is_null() {
            // SAFETY: a list built by build_addrinfo.
            unsafe {
                let a = super::super::net::read_sockaddr((*ai).ai_addr, (*ai).ai_addrlen).unwrap();
                out.push(((*ai).ai_family, (*ai).ai_socktype, a));
                ai = (*ai).ai_next;
            }
        }
        out
    }

    fn ips(s: &[&str]) -> Vec<IpAddr> {
        s.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn unspecified_socktype_gives_three_entries_per_address() {
        let h = Hints::default();
        let addrs = select_addrs(&ips(&["10.0.0.1", "fd00::1"]), 80, &h);
        let list = build_addrinfo(&addrs, &h, None);
        let got = walk(list);
        assert_eq!(got.len(), 6);
        assert_eq!(
            got[0],
            (
                libc::AF_INET,
                libc::SOCK_STREAM,
                "10.0.0.1:80".parse().unwrap()
            )
        );
        assert_eq!(got[3].0, libc::AF_INET6);
        free_list(list);
    }

    #[test]
    fn family_and_v4mapped_hints_are_honoured() {
        let both = ips(&["10.0.0.1", "fd00::1"]);
        let v4only = ips(&["10.0.0.1"]);
        let h4 = Hints {
            family: libc::AF_INET,
            socktype: libc::SOCK_STREAM,
            ..Hints::default()
        };
        assert_eq!(
            select_addrs(&both, 1, &h4),
            vec!["10.0.0.1:1".parse().unwrap()]
        );
        let h6 = Hints {
            family: libc::AF_INET6,
            ..Hints::default()
        };
        assert!(select_addrs(&v4only, 1, &h6).is_empty());
        let h6m = Hints {
            family: libc::AF_INET6,
            flags: libc::AI_V4MAPPED,
            ..Hints::default()
        };
        assert_eq!(
            select_addrs(&v4only, 1, &h6m),
            vec!["[::ffff:10.0.0.1]:1".parse().unwrap()]
        );
        // With a v6 answer, mapped v4 only comes with AI_ALL.
        assert_eq!(select_addrs(&both, 1, &h6m).len(), 1);
        let h6all = Hints {
            flags: libc::AI_V4MAPPED | libc::AI_ALL,
            ..h6m
        };
        assert_eq!(select_addrs(&both, 1, &h6all).len(), 2);
    }

    #[test]
    fn canonical_name_is_set_on_the_first_node_only_when_asked() {
        let h = Hints {
            flags: libc::AI_CANONNAME,
            socktype: libc::SOCK_STREAM,
            ..Hints::default()
        };
        let addrs = select_addrs(&ips(&["10.0.0.1", "10.0.0.2"]), 443, &h);
        let list = build_addrinfo(&addrs, &h, Some("svc.ns.svc.cluster.local"));
        // SAFETY: list built above.
        unsafe {
            assert_eq!(
                CStr::from_ptr((*list).ai_canonname).to_str().unwrap(),
                "svc.ns.svc.cluster.local"
            );
            assert!((*(*list).ai_next).ai_canonname.is_null());
            assert_eq!((*list).ai_protocol, libc::IPPROTO_TCP);
        }
        assert_eq!(walk(list).len(), 2);
        free_list(list);
    }

    #[test]
    fn hostent_layout_and_erange() {
        // SAFETY: all-zero hostent.
        let mut ent: hostent = unsafe { std::mem::zeroed() };
        let mut buf = [0u8; 256];
        let addrs = ips(&["10.0.0.1", "10.0.0.2"]);
        assert_eq!(
            fill_hostent(&mut ent, &mut buf, "db.svc", libc::AF_INET, &addrs),
            0
        );
        // SAFETY: filled above.
        unsafe {
            assert_eq!(CStr::from_ptr(ent.h_name).to_str().unwrap(), "db.svc");
            let first = *ent.h_addr_list;
            assert_eq!(
                std::slice::from_raw_parts(first.cast::<u8>(), 4),
                &[10, 0, 0, 1]
            );
            assert!((*ent.h_addr_list.add(2)).is_null());
            assert!((*ent.h_aliases).is_null());
        }
        let mut small = [0u8; 8];
        assert_eq!(
            fill_hostent(&mut ent, &mut small, "db.svc", libc::AF_INET, &addrs),
            libc::ERANGE
        );
    }

    #[test]
    fn local_names_stay_local() {
        assert!(is_local_name("localhost"));
        assert!(is_local_name("LOCALHOST."));
        assert!(is_local_name("app.localhost"));
        assert!(is_local_name("10.0.0.1"));
        assert!(!is_local_name("db.svc.cluster.local"));
    }
}
