//! Sockets: outgoing connections through the target, UDP relays, incoming port subscriptions.
//!
//! Outgoing TCP (and connected UDP): the session opens the connection in the target and answers
//! with a local interceptor address; the app's own socket connects there, so epoll, non-blocking
//! I/O and TLS keep working. `getpeername` then reports the address the app asked for.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use libc::{
    c_int, c_void, msghdr, size_t, sockaddr, sockaddr_in, sockaddr_in6, socklen_t, ssize_t,
};
use tether_protocol::layer::{LayerRequest, LayerResponse, Side};

use super::Detour;
use crate::fdtable::{self, Entry, Kind, SocketInfo};
use crate::link::SessionAddr;
use crate::log::debug;
use crate::netpolicy::{self, Proto};
use crate::real;
use crate::state;

/// Reads an IPv4/IPv6 socket address.
///
/// # Safety
/// `addr` is null or points to `len` readable bytes.
pub unsafe fn read_sockaddr(addr: *const sockaddr, len: socklen_t) -> Option<SocketAddr> {
    if addr.is_null() || (len as usize) < std::mem::size_of::<libc::sa_family_t>() {
        return None;
    }
    // SAFETY: at least the family is readable.
    let family = unsafe { (*addr).sa_family } as c_int;
    match family {
        libc::AF_INET if len as usize >= std::mem::size_of::<sockaddr_in>() => {
            // SAFETY: length checked.
            let a = unsafe { std::ptr::read_unaligned(addr.cast::<sockaddr_in>()) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 if len as usize >= std::mem::size_of::<sockaddr_in6>() => {
            // SAFETY: length checked.
            let a = unsafe { std::ptr::read_unaligned(addr.cast::<sockaddr_in6>()) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// `::ffff:a.b.c.d` becomes `a.b.c.d`.
pub fn unmap(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, v6.port())),
            None => a,
        },
        v4 => v4,
    }
}

/// A socket address in the form a socket of `family` uses; `None` if it cannot be expressed
/// (an IPv6 address for an IPv4 socket).
pub fn encode_sockaddr(
    a: SocketAddr,
    family: c_int,
) -> Option<(libc::sockaddr_storage, socklen_t)> {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let a = unmap(a);
    match (family, a) {
        (libc::AF_INET, SocketAddr::V4(v4)) => {
            let sin = sockaddr_in {
                sin_family: libc::AF_INET as _,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*v4.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in.
            unsafe { std::ptr::write_unaligned((&raw mut ss).cast::<sockaddr_in>(), sin) };
            Some((ss, std::mem::size_of::<sockaddr_in>() as socklen_t))
        }
        (libc::AF_INET6, a) => {
            let (ip, port, flow, scope) = match a {
                SocketAddr::V4(v4) => (v4.ip().to_ipv6_mapped(), v4.port(), 0, 0),
                SocketAddr::V6(v6) => (*v6.ip(), v6.port(), v6.flowinfo(), v6.scope_id()),
            };
            let sin6 = sockaddr_in6 {
                sin6_family: libc::AF_INET6 as _,
                sin6_port: port.to_be(),
                sin6_flowinfo: flow,
                sin6_addr: libc::in6_addr {
                    s6_addr: ip.octets(),
                },
                sin6_scope_id: scope,
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in6.
            unsafe { std::ptr::write_unaligned((&raw mut ss).cast::<sockaddr_in6>(), sin6) };
            Some((ss, std::mem::size_of::<sockaddr_in6>() as socklen_t))
        }
        _ => None,
    }
}

/// Copies an address out the way the kernel does: truncated to `*len`, `*len` set to the full
/// size.
///
/// # Safety
/// `out` holds `*len` writable bytes; `len` is valid.
unsafe fn copy_out(a: SocketAddr, family: c_int, out: *mut sockaddr, len: *mut socklen_t) -> bool {
    let Some((ss, full)) = encode_sockaddr(a, family) else {
        return false;
    };
    if out.is_null() || len.is_null() {
        return false;
    }
    // SAFETY: the caller's buffer and length.
    unsafe {
        let n = (*len).min(full) as usize;
        std::ptr::copy_nonoverlapping((&raw const ss).cast::<u8>(), out.cast::<u8>(), n);
        *len = full;
    }
    true
}

fn sockopt(fd: c_int, opt: c_int) -> Option<c_int> {
    let mut v: c_int = 0;
    let mut len = std::mem::size_of::<c_int>() as socklen_t;
    // SAFETY: an int-sized option into an int.
    let r = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, opt, (&raw mut v).cast(), &mut len) };
    (r == 0).then_some(v)
}

fn proto_of(fd: c_int) -> Option<Proto> {
    match sockopt(fd, libc::SO_TYPE)? {
        libc::SOCK_STREAM => Some(Proto::Tcp),
        libc::SOCK_DGRAM => Some(Proto::Udp),
        _ => None,
    }
}

fn family_of(fd: c_int) -> c_int {
    sockopt(fd, libc::SO_DOMAIN).unwrap_or(libc::AF_INET)
}

/// Whether a connection to `dest` goes through the target.
fn goes_remote(proto: Proto, dest: SocketAddr) -> bool {
    let st = state::get();
    let enabled = match proto {
        Proto::Tcp => st.policy.outgoing_tcp,
        Proto::Udp => st.policy.outgoing_udp,
    };
    if !enabled || dest.port() == 0 || dest.ip().is_unspecified() {
        return false;
    }
    if let SessionAddr::Tcp(s) = st.link.addr()
        && unmap(*s) == dest
    {
        return false;
    }
    // Debugger ports on loopback belong to the IDE on this machine.
    if dest.ip().is_loopback() && st.policy.ignore_ports.contains(&dest.port()) {
        return false;
    }
    let names = super::dns::names_for(dest.ip());
    st.outgoing_side(proto, dest, &names) == Side::Remote
}

fn intercept(proto: Proto, remote: SocketAddr) -> Result<(SocketAddr, SocketAddr), i32> {
    let req = match proto {
        Proto::Tcp => LayerRequest::ConnectTcp { remote },
        Proto::Udp => LayerRequest::ConnectUdp { remote },
    };
    match state::request(req) {
        Ok(LayerResponse::Intercepted {
            interceptor,
            remote_local,
        }) => Ok((interceptor, remote_local)),
        Ok(other) => {
            debug!("unexpected answer to connect: {other:?}");
            Err(libc::EIO)
        }
        // A session that is gone refuses connections rather than failing with I/O errors.
        Err(e) if e.errno == libc::EIO => Err(libc::ECONNREFUSED),
        Err(e) => Err(e.errno),
    }
}

/// `connect`.
///
/// # Safety
/// `addr` points to `len` readable bytes.
pub unsafe fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> Detour<c_int> {
    // SAFETY: forwarded.
    let Some(dest) = (unsafe { read_sockaddr(addr, len) }) else {
        return Detour::Bypass;
    };
    let dest = unmap(dest);
    let Some(proto) = proto_of(fd) else {
        return Detour::Bypass;
    };
    if !goes_remote(proto, dest) {
        return Detour::Bypass;
    }
    let (interceptor, remote_local) = match intercept(proto, dest) {
        Ok(v) => v,
        Err(e) => return Detour::Fail(e),
    };
    let family = family_of(fd);
    let Some((ss, sslen)) = encode_sockaddr(interceptor, family) else {
        return Detour::Fail(libc::EAFNOSUPPORT);
    };
    // SAFETY: a valid sockaddr for this socket.
    let r = unsafe { real::connect(fd, (&raw const ss).cast(), sslen) };
    let err = super::errno();
    debug!("connect {dest} ({proto:?}) via {interceptor}: {r}");
    fdtable::with_socket(fd, |s| {
        s.remote = Some(dest);
        s.remote_local = Some(remote_local);
        if proto == Proto::Udp {
            s.udp.push((dest, interceptor));
        }
    });
    super::set_errno(err);
    Detour::Done(r)
}

/// `bind`: an address of the target (a pod IP) does not exist here, so bind the wildcard
/// address on the same port instead.
///
/// # Safety
/// `addr` points to `len` readable bytes.
pub unsafe fn bind(fd: c_int, addr: *const sockaddr, len: socklen_t) -> Detour<c_int> {
    // SAFETY: forwarded.
    let r = unsafe { real::bind(fd, addr, len) };
    if r == 0 || super::errno() != libc::EADDRNOTAVAIL {
        return Detour::Done(r);
    }
    // SAFETY: forwarded.
    let Some(a) = (unsafe { read_sockaddr(addr, len) }) else {
        return Detour::Done(r);
    };
    let any = match a {
        SocketAddr::V4(v4) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), v4.port()),
        SocketAddr::V6(v6) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), v6.port()),
    };
    let Some((ss, sslen)) = encode_sockaddr(any, family_of(fd)) else {
        super::set_errno(libc::EADDRNOTAVAIL);
        return Detour::Done(r);
    };
    debug!("bind {a}: not a local address, binding {any}");
    // SAFETY: a valid sockaddr.
    Detour::Done(unsafe { real::bind(fd, (&raw const ss).cast(), sslen) })
}

fn local_addr(fd: c_int) -> Option<SocketAddr> {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as socklen_t;
    // SAFETY: storage-sized buffer.
    let r = unsafe { real::getsockname(fd, (&raw mut ss).cast(), &mut len) };
    if r != 0 {
        return None;
    }
    // SAFETY: the kernel wrote `len` bytes.
    unsafe { read_sockaddr((&raw const ss).cast(), len) }
}

static SUBSCRIBE_FAILED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `listen`: the real listen, then a port subscription in the target per policy.
pub fn listen(fd: c_int, backlog: c_int) -> Detour<c_int> {
    let st = state::get();
    if st.policy.incoming.is_none() || proto_of(fd) != Some(Proto::Tcp) {
        return Detour::Bypass;
    }
    // SAFETY: plain forward.
    let r = unsafe { real::listen(fd, backlog) };
    if r != 0 {
        return Detour::Done(r);
    }
    if matches!(
        fdtable::get(fd),
        Some(Entry::Socket(SocketInfo {
            listening: Some(_),
            ..
        }))
    ) {
        return Detour::Done(0);
    }
    let Some(local) = local_addr(fd).map(unmap) else {
        return Detour::Done(0);
    };
    let Some(remote_port) = netpolicy::subscribed_port(&st.policy, local.port()) else {
        debug!("listen on {local}: port not subscribed by policy");
        return Detour::Done(0);
    };
    // Where the daemon delivers connections: loopback for a wildcard bind.
    let deliver = match local.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), local.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), local.port())
        }
        _ => local,
    };
    match state::request(LayerRequest::Listen {
        local: deliver,
        remote_port,
    }) {
        Ok(_) => {
            debug!("listen on {local}: subscribed remote port {remote_port}");
            fdtable::with_socket(fd, |s| s.listening = Some(deliver));
        }
        Err(e) => crate::log::error_once(
            &SUBSCRIBE_FAILED,
            &format!(
                "cannot subscribe port {remote_port} in the target for the listener on {local}: {}; it only serves local connections",
                e.message
            ),
        ),
    }
    Detour::Done(0)
}

/// Releases what a closed socket held in the session.
pub fn forget_socket(info: &SocketInfo) {
    if let Some(local) = info.listening
        && let Err(e) = state::request(LayerRequest::Unlisten { local })
    {
        debug!("unlisten {local}: {}", e.message);
    }
}

/// `getpeername` of an intercepted socket: the address the app connected to.
///
/// # Safety
/// `addr`/`len` are the caller's out parameters.
pub unsafe fn getpeername(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> Detour<c_int> {
    let Some(Entry::Socket(SocketInfo {
        remote: Some(r), ..
    })) = fdtable::get(fd)
    else {
        return Detour::Bypass;
    };
    // SAFETY: forwarded.
    if unsafe { copy_out(r, family_of(fd), addr, len) } {
        Detour::Done(0)
    } else {
        Detour::Bypass
    }
}

/// `getsockname` of an intercepted socket: its address in the target.
///
/// # Safety
/// `addr`/`len` are the caller's out parameters.
pub unsafe fn getsockname(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> Detour<c_int> {
    let Some(Entry::Socket(SocketInfo {
        remote_local: Some(r),
        ..
    })) = fdtable::get(fd)
    else {
        return Detour::Bypass;
    };
    // SAFETY: forwarded.
    if unsafe { copy_out(r, family_of(fd), addr, len) } {
        Detour::Done(0)
    } else {
        Detour::Bypass
    }
}

/// The interceptor relaying UDP from `fd` to `dest`, asking the session for one if needed.
fn udp_relay(fd: c_int, dest: SocketAddr) -> Result<Option<SocketAddr>, i32> {
    if let Some(Entry::Socket(s)) = fdtable::get(fd)
        && let Some((_, via)) = s.udp.iter().find(|(r, _)| *r == dest)
    {
        return Ok(Some(*via));
    }
    if proto_of(fd) != Some(Proto::Udp) || !goes_remote(Proto::Udp, dest) {
        return Ok(None);
    }
    let (via, _) = intercept(Proto::Udp, dest)?;
    fdtable::with_socket(fd, |s| s.udp.push((dest, via)));
    Ok(Some(via))
}

/// `sendto` with a destination: a remote peer goes through its UDP relay.
///
/// # Safety
/// Arguments as for `sendto`.
pub unsafe fn sendto(
    fd: c_int,
    buf: *const c_void,
    n: size_t,
    flags: c_int,
    addr: *const sockaddr,
    len: socklen_t,
) -> Detour<ssize_t> {
    // SAFETY: forwarded.
    let Some(dest) = (unsafe { read_sockaddr(addr, len) }).map(unmap) else {
        return Detour::Bypass;
    };
    let via = match udp_relay(fd, dest) {
        Ok(Some(v)) => v,
        Ok(None) => return Detour::Bypass,
        Err(e) => return Detour::Fail(e),
    };
    let Some((ss, sslen)) = encode_sockaddr(via, family_of(fd)) else {
        return Detour::Fail(libc::EAFNOSUPPORT);
    };
    // SAFETY: the caller's buffer and our sockaddr.
    Detour::Done(unsafe { real::sendto(fd, buf, n, flags, (&raw const ss).cast(), sslen) })
}

/// Rewrites a datagram's source from an interceptor to the remote peer it relays.
///
/// # Safety
/// `addr` holds `*len` bytes written by the kernel.
unsafe fn rewrite_source(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t, cap: socklen_t) {
    if addr.is_null() || len.is_null() {
        return;
    }
    // SAFETY: the kernel wrote the address.
    let Some(src) = (unsafe { read_sockaddr(addr, (*len).min(cap)) }).map(unmap) else {
        return;
    };
    let Some(Entry::Socket(s)) = fdtable::get(fd) else {
        return;
    };
    if let Some((remote, _)) = s.udp.iter().find(|(_, via)| unmap(*via) == src) {
        // SAFETY: same buffer, original capacity.
        unsafe {
            *len = cap;
            copy_out(*remote, family_of(fd), addr, len);
        }
    }
}

/// `recvfrom` on a socket with UDP relays.
///
/// # Safety
/// Arguments as for `recvfrom`.
pub unsafe fn recvfrom(
    fd: c_int,
    buf: *mut c_void,
    n: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
) -> Detour<ssize_t> {
    let cap = if len.is_null() {
        0
    } else {
        // SAFETY: the caller's length.
        unsafe { *len }
    };
    // SAFETY: forwarded.
    let r = unsafe { real::recvfrom(fd, buf, n, flags, addr, len) };
    if r >= 0 {
        let err = super::errno();
        // SAFETY: the kernel filled addr/len.
        unsafe { rewrite_source(fd, addr, len, cap) };
        super::set_errno(err);
    }
    Detour::Done(r)
}

/// `sendmsg` with a destination.
///
/// # Safety
/// `msg` is a valid msghdr.
pub unsafe fn sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> Detour<ssize_t> {
    if msg.is_null() {
        return Detour::Bypass;
    }
    // SAFETY: the caller's msghdr.
    let mut m = unsafe { *msg };
    // SAFETY: msg_name holds msg_namelen bytes.
    let Some(dest) = (unsafe { read_sockaddr(m.msg_name.cast(), m.msg_namelen) }).map(unmap) else {
        return Detour::Bypass;
    };
    let via = match udp_relay(fd, dest) {
        Ok(Some(v)) => v,
        Ok(None) => return Detour::Bypass,
        Err(e) => return Detour::Fail(e),
    };
    let Some((mut ss, sslen)) = encode_sockaddr(via, family_of(fd)) else {
        return Detour::Fail(libc::EAFNOSUPPORT);
    };
    m.msg_name = (&raw mut ss).cast();
    m.msg_namelen = sslen;
    // SAFETY: our copy of the header, pointing at our sockaddr and the caller's buffers.
    Detour::Done(unsafe { real::sendmsg(fd, &m, flags) })
}

/// `recvmsg` on a socket with UDP relays.
///
/// # Safety
/// `msg` is a valid msghdr.
pub unsafe fn recvmsg(fd: c_int, msg: *mut msghdr, flags: c_int) -> Detour<ssize_t> {
    if msg.is_null() {
        return Detour::Bypass;
    }
    // SAFETY: the caller's msghdr.
    let cap = unsafe { (*msg).msg_namelen };
    // SAFETY: forwarded.
    let r = unsafe { real::recvmsg(fd, msg, flags) };
    if r >= 0 {
        let err = super::errno();
        // SAFETY: the kernel filled msg_name/msg_namelen.
        unsafe { rewrite_source(fd, (*msg).msg_name.cast(), &raw mut (*msg).msg_namelen, cap) };
        super::set_errno(err);
    }
    Detour::Done(r)
}

/// Whether `fd` has UDP relays (recv hooks only then do work).
pub fn has_relays(fd: c_int) -> bool {
    fdtable::kind(fd) == Kind::Socket
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddr_round_trips_and_maps_v4_into_v6_sockets() {
        let a: SocketAddr = "10.1.2.3:8080".parse().unwrap();
        let (ss, len) = encode_sockaddr(a, libc::AF_INET).unwrap();
        // SAFETY: encode produced `len` valid bytes.
        let back = unsafe { read_sockaddr((&raw const ss).cast(), len) }.unwrap();
        assert_eq!(back, a);
        let (ss, len) = encode_sockaddr(a, libc::AF_INET6).unwrap();
        // SAFETY: as above.
        let back = unsafe { read_sockaddr((&raw const ss).cast(), len) }.unwrap();
        assert_eq!(back.to_string(), "[::ffff:10.1.2.3]:8080");
        assert_eq!(unmap(back), a);
        assert!(encode_sockaddr("[::1]:80".parse().unwrap(), libc::AF_INET).is_none());
    }

    #[test]
    fn short_or_foreign_addresses_are_ignored() {
        let a: SocketAddr = "10.1.2.3:8080".parse().unwrap();
        let (ss, _) = encode_sockaddr(a, libc::AF_INET).unwrap();
        // SAFETY: a too-short length is refused before reading.
        assert!(unsafe { read_sockaddr((&raw const ss).cast(), 4) }.is_none());
        // SAFETY: null is refused.
        assert!(unsafe { read_sockaddr(std::ptr::null(), 16) }.is_none());
    }
}
