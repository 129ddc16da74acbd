//! Datagram socket calls on raw fds, and socket addresses.
//!
//! `recv_from`/`send_to`/`send` are one system call each through `syscall!`
//! (`EAGAIN` is `ErrorKind::WouldBlock`; sends use `MSG_NOSIGNAL`).
//! [`SockAddr`] is a `sockaddr_storage` and its length, built from parts
//! (IPv4, IPv6, `AF_UNIX` path) or filled by the kernel; [`AddrView`] takes
//! one apart again the way CPython's `makesockaddr` does (socketmodule.c):
//! an empty address, an `AF_UNIX` path up to its first NUL, the bytes of a
//! Linux abstract name.
//!
//! Must not: resolve names or know Python; the caller decides what to do
//! with an address it cannot build here (ferroloop hands it to CPython).

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::RawFd;

use crate::syscall;

/// The address families a [`SockAddr`] is built for (for callers without libc).
pub const AF_INET: i32 = libc::AF_INET;
pub const AF_INET6: i32 = libc::AF_INET6;
pub const AF_UNIX: i32 = libc::AF_UNIX;

/// Where `sun_path` starts in a `sockaddr_un`.
const SUN_PATH_OFFSET: usize = std::mem::offset_of!(libc::sockaddr_un, sun_path);

/// A socket address: what `recvfrom` filled in, or what `sendto` takes.
#[derive(Clone, Copy)]
pub struct SockAddr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

/// A [`SockAddr`] taken apart, as CPython's `makesockaddr` sees it.
#[derive(Debug, PartialEq, Eq)]
pub enum AddrView<'a> {
    /// No address (`recvfrom` on a connected or unnamed peer gave none).
    None,
    V4 {
        ip: Ipv4Addr,
        port: u16,
    },
    V6 {
        ip: Ipv6Addr,
        port: u16,
        flowinfo: u32,
        scope_id: u32,
    },
    /// An `AF_UNIX` path, without the trailing NUL (possibly empty: an
    /// unbound peer).
    UnixPath(&'a [u8]),
    /// A Linux abstract `AF_UNIX` name, with its leading NUL.
    UnixAbstract(&'a [u8]),
    /// Any other family.
    Other(i32),
}

impl Default for SockAddr {
    fn default() -> Self {
        // SAFETY: an all-zero sockaddr_storage is a valid (AF_UNSPEC) value.
        Self { storage: unsafe { std::mem::zeroed() }, len: 0 }
    }
}

impl SockAddr {
    /// Lets `call` write an address and its length here (`recvfrom`, `accept4`),
    /// the storage zeroed first as CPython does, so an unnamed `AF_UNIX` peer
    /// reads as an empty path.
    pub(crate) fn fill<T>(
        &mut self,
        call: impl FnOnce(*mut libc::sockaddr, *mut libc::socklen_t) -> io::Result<T>,
    ) -> io::Result<T> {
        const MAX: libc::socklen_t = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        *self = SockAddr::default();
        let mut len = MAX;
        let out = call((&raw mut self.storage).cast(), &raw mut len)?;
        self.len = len.min(MAX);
        Ok(out)
    }

    /// The `sockaddr` pointer and length a system call takes.
    pub(crate) fn as_raw(&self) -> (*const libc::sockaddr, libc::socklen_t) {
        ((&raw const self.storage).cast(), self.len)
    }

    /// An `AF_INET` address.
    pub fn v4(ip: Ipv4Addr, port: u16) -> Self {
        let mut addr = Self::default();
        // SAFETY: sockaddr_storage is large and aligned enough for any sockaddr.
        let sin = unsafe { &mut *(&raw mut addr.storage).cast::<libc::sockaddr_in>() };
        sin.sin_family = libc::AF_INET as libc::sa_family_t;
        sin.sin_port = port.to_be();
        sin.sin_addr = libc::in_addr { s_addr: u32::from_ne_bytes(ip.octets()) };
        addr.len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        addr
    }

    /// An `AF_INET6` address.
    pub fn v6(ip: Ipv6Addr, port: u16, flowinfo: u32, scope_id: u32) -> Self {
        let mut addr = Self::default();
        // SAFETY: as in `v4`.
        let sin6 = unsafe { &mut *(&raw mut addr.storage).cast::<libc::sockaddr_in6>() };
        sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
        sin6.sin6_port = port.to_be();
        sin6.sin6_flowinfo = flowinfo.to_be();
        sin6.sin6_addr = libc::in6_addr { s6_addr: ip.octets() };
        sin6.sin6_scope_id = scope_id;
        addr.len = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
        addr
    }

    /// An `AF_UNIX` address for `path` (a leading NUL makes it abstract), as
    /// CPython's `getsockaddrarg` builds it; `None` when it is too long.
    pub fn unix(path: &[u8]) -> Option<Self> {
        let mut addr = Self::default();
        // SAFETY: as in `v4`.
        let sun = unsafe { &mut *(&raw mut addr.storage).cast::<libc::sockaddr_un>() };
        let abstract_name = path.first() == Some(&0);
        // A path needs room for its NUL; an abstract name does not.
        if path.len() > sun.sun_path.len() || (!abstract_name && path.len() == sun.sun_path.len()) {
            return None;
        }
        sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (dst, src) in sun.sun_path.iter_mut().zip(path) {
            *dst = libc::c_char::from_ne_bytes([*src]);
        }
        addr.len = (SUN_PATH_OFFSET + path.len()) as libc::socklen_t;
        Some(addr)
    }

    pub fn family(&self) -> i32 {
        i32::from(self.storage.ss_family)
    }

    /// The address bytes the kernel uses (for comparing and hashing).
    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: `len` never exceeds the storage (set by us or by the kernel,
        // clamped in `recv_from`).
        unsafe { std::slice::from_raw_parts((&raw const self.storage).cast::<u8>(), self.len as usize) }
    }

    /// Takes the address apart (CPython's `makesockaddr`).
    pub fn view(&self) -> AddrView<'_> {
        if self.len == 0 {
            return AddrView::None;
        }
        match self.family() {
            libc::AF_INET => {
                // SAFETY: the family says the storage holds a sockaddr_in.
                let sin = unsafe { &*(&raw const self.storage).cast::<libc::sockaddr_in>() };
                AddrView::V4 {
                    ip: Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()),
                    port: u16::from_be(sin.sin_port),
                }
            }
            libc::AF_INET6 => {
                // SAFETY: the family says the storage holds a sockaddr_in6.
                let sin6 = unsafe { &*(&raw const self.storage).cast::<libc::sockaddr_in6>() };
                AddrView::V6 {
                    ip: Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                    port: u16::from_be(sin6.sin6_port),
                    flowinfo: u32::from_be(sin6.sin6_flowinfo),
                    scope_id: sin6.sin6_scope_id,
                }
            }
            libc::AF_UNIX => {
                // SAFETY: the family says the storage holds a sockaddr_un.
                let sun = unsafe { &*(&raw const self.storage).cast::<libc::sockaddr_un>() };
                // SAFETY: sun_path is an array of c_char, the size of u8.
                let path: &[u8] =
                    unsafe { std::slice::from_raw_parts(sun.sun_path.as_ptr().cast(), sun.sun_path.len()) };
                let named = (self.len as usize).saturating_sub(SUN_PATH_OFFSET).min(path.len());
                if named > 0 && path[0] == 0 {
                    AddrView::UnixAbstract(&path[..named])
                } else {
                    // CPython decodes up to the first NUL (the storage was zeroed).
                    let end = path.iter().position(|&b| b == 0).unwrap_or(path.len());
                    AddrView::UnixPath(&path[..end])
                }
            }
            other => AddrView::Other(other),
        }
    }
}

/// The text of an IPv6 address as glibc's `inet_ntop` writes it (which
/// CPython uses): RFC 5952, with the IPv4-compatible form `::a.b.c.d` that
/// Rust's `Display` no longer writes.
pub fn ipv6_text(ip: &Ipv6Addr) -> String {
    let seg = ip.segments();
    if seg[..6].iter().all(|&s| s == 0) && seg[6] != 0 {
        let [.., a, b, c, d] = ip.octets();
        return format!("::{a}.{b}.{c}.{d}");
    }
    ip.to_string()
}

/// `recvfrom(2)` into `buf`; `addr` receives the sender. The address storage
/// is zeroed first, as CPython does, so an unnamed `AF_UNIX` peer reads as an
/// empty path.
pub fn recv_from(fd: RawFd, buf: &mut [u8], addr: &mut SockAddr) -> io::Result<usize> {
    let n = addr.fill(|sa, len| syscall!(recvfrom(fd, buf.as_mut_ptr().cast(), buf.len(), 0, sa, len)))?;
    Ok(n as usize)
}

/// `sendto(2)` of one datagram to `addr`.
pub fn send_to(fd: RawFd, buf: &[u8], addr: &SockAddr) -> io::Result<usize> {
    let n = syscall!(sendto(
        fd,
        buf.as_ptr().cast(),
        buf.len(),
        libc::MSG_NOSIGNAL,
        (&raw const addr.storage).cast(),
        addr.len
    ))?;
    Ok(n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let a = SockAddr::v4(Ipv4Addr::LOCALHOST, 5353);
        assert_eq!(a.view(), AddrView::V4 { ip: Ipv4Addr::LOCALHOST, port: 5353 });
        let b = SockAddr::v6(Ipv6Addr::LOCALHOST, 1, 2, 3);
        assert_eq!(b.view(), AddrView::V6 { ip: Ipv6Addr::LOCALHOST, port: 1, flowinfo: 2, scope_id: 3 });
        let c = SockAddr::unix(b"/tmp/x").unwrap();
        assert_eq!(c.view(), AddrView::UnixPath(b"/tmp/x"));
        let d = SockAddr::unix(b"\0abc").unwrap();
        assert_eq!(d.view(), AddrView::UnixAbstract(b"\0abc"));
        assert!(SockAddr::unix(&[b'a'; 108]).is_none());
        assert!(SockAddr::unix(&[0; 108]).is_some());
    }

    #[test]
    fn ipv6_text_matches_inet_ntop() {
        assert_eq!(ipv6_text(&"::1".parse().unwrap()), "::1");
        assert_eq!(ipv6_text(&"::".parse().unwrap()), "::");
        assert_eq!(ipv6_text(&"::ffff:1.2.3.4".parse().unwrap()), "::ffff:1.2.3.4");
        assert_eq!(ipv6_text(&"::1.2.3.4".parse().unwrap()), "::1.2.3.4");
        assert_eq!(ipv6_text(&"fe80::1:0:0:1".parse().unwrap()), "fe80::1:0:0:1");
    }
}
