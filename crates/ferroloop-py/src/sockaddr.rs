//! Socket addresses between the kernel and Python, as CPython's socket module
//! converts them (`makesockaddr` and `getsockaddrarg` in socketmodule.c).
//!
//! To Python: IPv4 `(host, port)`, IPv6 `(host, port, flowinfo, scope_id)`,
//! an `AF_UNIX` path as `str` (file-system decoding), an abstract name as
//! `bytes`, no address as `None`. From Python, only what needs no name
//! resolution and no CPython error text: numeric hosts, ports in range, plain
//! `str`/`bytes` paths. Anything else is `None`, and the caller hands the
//! address to the socket object itself, so resolution and errors are CPython's.
//!
//! [`AddrCache`] keeps the Python objects of recent peers: a server that hears
//! from the same few peers makes no new tuple per datagram, and a reply to an
//! address it delivered finds that address's `sockaddr` by identity.

use std::net::{Ipv4Addr, Ipv6Addr};

use ferroloop_core::net::datagram::{ipv6_text, AF_INET, AF_INET6, AF_UNIX};
use ferroloop_core::net::{AddrView, SockAddr};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyInt, PyString, PyTuple};
use pyo3::{PyTraverseError, PyVisit};

use crate::capi::unicode;

/// `addr` as CPython's `makesockaddr` returns it.
pub(crate) fn to_python(py: Python<'_>, addr: &SockAddr) -> PyResult<Py<PyAny>> {
    Ok(match addr.view() {
        AddrView::None => py.None(),
        AddrView::V4 { ip, port } => (ip.to_string(), port).into_pyobject(py)?.into_any().unbind(),
        AddrView::V6 { ip, port, flowinfo, scope_id } => {
            (ipv6_text(&ip), port, flowinfo, scope_id).into_pyobject(py)?.into_any().unbind()
        }
        AddrView::UnixAbstract(name) => PyBytes::new(py, name).into_any().unbind(),
        AddrView::UnixPath(path) => unicode::decode_fs(py, path)?.into_any().unbind(),
        AddrView::Other(family) => (family, PyBytes::new(py, addr.as_bytes().get(2..).unwrap_or(&[])))
            .into_pyobject(py)?
            .into_any()
            .unbind(),
    })
}

/// An int in `0..=max`, if `obj` is exactly an int.
fn small_int(obj: &Bound<'_, PyAny>, max: u32) -> Option<u32> {
    if !obj.is_exact_instance_of::<PyInt>() {
        return None;
    }
    obj.extract::<u32>().ok().filter(|v| *v <= max)
}

/// `addr` as a `sockaddr` for a socket of `family`, when that needs no
/// resolution and cannot fail in CPython; `None` otherwise.
pub(crate) fn from_python(addr: &Bound<'_, PyAny>, family: i32) -> Option<SockAddr> {
    match family {
        AF_INET | AF_INET6 => {
            let tuple = addr.cast::<PyTuple>().ok()?;
            let n = tuple.len();
            let host = tuple.get_item(0).ok()?;
            let host = host.cast::<PyString>().ok()?.to_str().ok()?.to_owned();
            let port = u16::try_from(small_int(&tuple.get_item(1).ok()?, 0xffff)?).ok()?;
            if family == AF_INET {
                if n != 2 {
                    return None;
                }
                return Some(SockAddr::v4(host.parse::<Ipv4Addr>().ok()?, port));
            }
            if !(2..=4).contains(&n) {
                return None;
            }
            let flowinfo = if n > 2 { small_int(&tuple.get_item(2).ok()?, 0xfffff)? } else { 0 };
            let scope_id = if n > 3 { small_int(&tuple.get_item(3).ok()?, u32::MAX)? } else { 0 };
            Some(SockAddr::v6(host.parse::<Ipv6Addr>().ok()?, port, flowinfo, scope_id))
        }
        AF_UNIX => {
            if let Ok(s) = addr.cast::<PyString>() {
                SockAddr::unix(s.to_str().ok()?.as_bytes())
            } else if let Ok(b) = addr.cast::<PyBytes>() {
                SockAddr::unix(b.as_bytes())
            } else {
                None
            }
        }
        _ => None,
    }
}

const CACHE_SLOTS: usize = 64;

/// An entry a cache evicted.
pub(crate) type Evicted = Option<(SockAddr, Py<PyAny>)>;

/// The Python objects of recent peer addresses (see the module doc).
pub(crate) struct AddrCache {
    slots: Vec<Option<(SockAddr, Py<PyAny>)>>,
    /// The slot of the address delivered last.
    last: usize,
}

impl Default for AddrCache {
    fn default() -> Self {
        Self { slots: (0..CACHE_SLOTS).map(|_| None).collect(), last: 0 }
    }
}

fn slot_of(bytes: &[u8]) -> usize {
    // FNV-1a over the address bytes.
    let mut h: u32 = 0x811c_9dc5;
    for &b in bytes {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    h as usize % CACHE_SLOTS
}

impl AddrCache {
    /// The Python object of `addr`, if it is cached.
    pub(crate) fn get(&mut self, py: Python<'_>, addr: &SockAddr) -> Option<Py<PyAny>> {
        let key = addr.as_bytes();
        let i = slot_of(key);
        match &self.slots[i] {
            Some((known, obj)) if known.as_bytes() == key => {
                self.last = i;
                Some(obj.clone_ref(py))
            }
            _ => None,
        }
    }

    /// Caches `obj` as the object of `addr`; returns the entry it evicts, for
    /// the caller to drop once no borrow is held.
    pub(crate) fn put(&mut self, py: Python<'_>, addr: &SockAddr, obj: &Py<PyAny>) -> Evicted {
        let i = slot_of(addr.as_bytes());
        self.last = i;
        self.slots[i].replace((*addr, obj.clone_ref(py)))
    }

    /// The `sockaddr` of an address object this cache handed out.
    pub(crate) fn find(&self, obj: &Bound<'_, PyAny>) -> Option<SockAddr> {
        let hit = |slot: &Option<(SockAddr, Py<PyAny>)>| match slot {
            Some((addr, known)) if known.as_ptr() == obj.as_ptr() => Some(*addr),
            _ => None,
        };
        hit(&self.slots[self.last]).or_else(|| self.slots.iter().find_map(hit))
    }

    /// Empties the cache; returns the objects for the caller to drop.
    pub(crate) fn clear(&mut self) -> Vec<Evicted> {
        std::mem::replace(&mut self.slots, (0..CACHE_SLOTS).map(|_| None).collect())
    }

    pub(crate) fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        for (_, obj) in self.slots.iter().flatten() {
            visit.call(obj)?;
        }
        Ok(())
    }
}
