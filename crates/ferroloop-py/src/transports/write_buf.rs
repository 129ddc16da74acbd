//! A transport's write buffer: what `write()` could not send at once, in
//! order, flushed with gathered writes when the descriptor is writable.
//!
//! A `bytes` object is kept as is (no copy); anything else is copied, as
//! asyncio copies into its `bytearray`/`deque`. `size` is what
//! `get_write_buffer_size()` reports and flow control compares.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::os::fd::RawFd;

use ferroloop_core::StreamFd;
use pyo3::prelude::*;

use crate::capi::bytes::Unsent;

/// The most chunks one gathered write takes.
const GATHER: usize = 64;

#[derive(Default)]
pub(crate) struct WriteBuffer {
    chunks: VecDeque<Unsent>,
    /// Bytes of `chunks[0]` already sent.
    head_sent: usize,
    size: usize,
}

impl WriteBuffer {
    pub(crate) fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// Appends `chunk`, whose first `sent` bytes went out already.
    pub(crate) fn push(&mut self, py: Python<'_>, chunk: Unsent, sent: usize) {
        if self.chunks.is_empty() {
            self.head_sent = sent;
        }
        self.size += chunk.bytes(py).len() - sent;
        self.chunks.push_back(chunk);
    }

    /// Drops everything (an error, an abort); returns it for the caller to
    /// drop once no borrow is held.
    pub(crate) fn clear(&mut self) -> VecDeque<Unsent> {
        self.size = 0;
        self.head_sent = 0;
        std::mem::take(&mut self.chunks)
    }

    /// Sends as much as `fd` takes, with gathered writes.
    pub(crate) fn flush(&mut self, py: Python<'_>, kind: StreamFd, fd: RawFd) -> io::Result<()> {
        while !self.chunks.is_empty() {
            let sent = {
                let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(self.chunks.len().min(GATHER));
                for (i, chunk) in self.chunks.iter().take(GATHER).enumerate() {
                    let start = if i == 0 { self.head_sent } else { 0 };
                    slices.push(IoSlice::new(&chunk.bytes(py)[start..]));
                }
                match kind.write_vectored(fd, &slices) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            };
            self.consume(py, sent);
        }
        Ok(())
    }

    fn consume(&mut self, py: Python<'_>, mut n: usize) {
        self.size -= n;
        while n > 0 {
            let Some(front) = self.chunks.front() else { break };
            let left = front.bytes(py).len() - self.head_sent;
            if n >= left {
                n -= left;
                self.chunks.pop_front();
                self.head_sent = 0;
            } else {
                self.head_sent += n;
                n = 0;
            }
        }
    }
}
