//! `Token`: what a readiness report from the poller is about.
//!
//! The core poller reports a plain `usize` per registration. The reactor gives
//! those numbers one meaning here, so that no other module does arithmetic on
//! them: the notifier's token (the core's `NOTIFY_TOKEN`), the signal
//! channel's, and one per descriptor, derived from its number (a descriptor is
//! registered at most once at a time, so its number names it).

use std::os::fd::RawFd;

use ferroloop_core::poller::NOTIFY_TOKEN;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Token(usize);

impl Token {
    /// The signal channel's read end.
    pub(crate) const SIGNALS: Token = Token(NOTIFY_TOKEN + 1);
    /// The first token given to a descriptor (that of fd 0).
    const FD_BASE: usize = NOTIFY_TOKEN + 2;

    pub(crate) fn of_fd(fd: RawFd) -> Token {
        debug_assert!(fd >= 0, "descriptors are non-negative");
        Token(fd as usize + Self::FD_BASE)
    }

    pub(crate) fn from_raw(raw: usize) -> Token {
        Token(raw)
    }

    /// The descriptor this token names, if it names one.
    pub(crate) fn fd(self) -> Option<RawFd> {
        self.0.checked_sub(Self::FD_BASE).and_then(|n| RawFd::try_from(n).ok())
    }

    pub(crate) fn raw(self) -> usize {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::Token;

    #[test]
    fn fd_tokens_round_trip_and_never_collide_with_fixed_ones() {
        for fd in [0, 1, 2, 1023, i32::MAX - 2] {
            let t = Token::of_fd(fd);
            assert_eq!(t.fd(), Some(fd));
            assert_ne!(t, Token::SIGNALS);
            assert_ne!(t.raw(), ferroloop_core::poller::NOTIFY_TOKEN);
        }
        assert_eq!(Token::SIGNALS.fd(), None);
        assert_eq!(Token::from_raw(ferroloop_core::poller::NOTIFY_TOKEN).fd(), None);
    }
}
