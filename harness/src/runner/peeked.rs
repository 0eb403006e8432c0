//! What the last peek of a TCP connection saw and no read has taken yet.
//!
//! Steps that cannot know their length (`expect_line`, `expect = { regex }`,
//! `{ contains }`, `{ json }`) peek at the kernel's receive queue and then read only
//! the bytes they consume, so nothing is buffered in the actor: `recv`,
//! `await_queued`, `expect_eof`, `expect_silence` and the `unread` policy keep
//! seeing the kernel's queue as the peer filled it.
//!
//! A peek usually sees more than its step consumes (many short lines arrive
//! together). Those bytes are still the front of the receive queue, so they are
//! remembered here: the next peeking step judges them without a new peek and makes
//! only its read. The memory stays exact because the front of a TCP receive queue
//! changes only when this actor reads: every read of `n` bytes, by any step, drops
//! `n` bytes from the front of the memory ([`PeekedAhead::took`]). It belongs to one
//! connection ([`ConnId`]), so a new connection never sees an old one's bytes.
//!
//! Costs: a line protocol read line by line takes one `recv` per line plus one peek
//! per window of lines, instead of a peek and a `recv` per line (and each peek
//! copied the whole window out of the kernel).

use crate::event::ConnId;

/// Bytes peeked at the front of one connection's receive queue, not read yet.
#[derive(Debug, Default)]
pub struct PeekedAhead {
    /// The connection the bytes were peeked on; `None` before the first peek.
    conn: Option<ConnId>,
    /// The peek buffer; `buf[start..end]` is still queued in the kernel.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Whether the peek that filled the buffer saw everything queued at that time
    /// (it did not fill its window). A regex's match can depend on what follows,
    /// so a regex step judges remembered bytes only when they ended where the
    /// queue ended, as a read at that time would have returned them.
    saw_queue_end: bool,
}

impl PeekedAhead {
    /// The remembered bytes, when they belong to `conn`.
    pub fn front(&self, conn: ConnId) -> &[u8] {
        if self.conn == Some(conn) {
            &self.buf[self.start..self.end]
        } else {
            &[]
        }
    }

    /// Whether the remembered bytes of `conn` end where the queue ended when they
    /// were peeked (see the field's note).
    pub fn saw_queue_end(&self, conn: ConnId) -> bool {
        self.conn == Some(conn) && self.saw_queue_end
    }

    /// A read of `n` bytes from the front of `conn`'s queue happened: they are no
    /// longer queued. A read past what is remembered leaves nothing remembered.
    pub fn took(&mut self, conn: ConnId, n: usize) {
        if self.conn == Some(conn) {
            self.start = (self.start + n).min(self.end);
        }
    }

    /// Forgets everything (the queue's front may have changed in a way no read
    /// accounts for: a failed read, a shutdown of our read side).
    pub fn forget(&mut self) {
        self.start = 0;
        self.end = 0;
        self.saw_queue_end = false;
    }

    /// A buffer of `window` bytes for a new peek, which copies the queue from its
    /// front: the remembered bytes are moved to the buffer's start first, so the
    /// peek rewrites them with themselves (plus whatever arrived after them), and
    /// they stay readable whether the peek happens or is cancelled.
    pub fn peek_buffer(&mut self, window: usize) -> &mut [u8] {
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        if self.buf.len() < window {
            self.buf.resize(window, 0);
        }
        &mut self.buf[..window]
    }

    /// A peek of `conn` into [`Self::peek_buffer`] of `window` bytes returned `n`.
    pub fn peeked(&mut self, conn: ConnId, n: usize, window: usize) {
        self.conn = Some(conn);
        self.start = 0;
        self.end = n;
        self.saw_queue_end = n < window;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peek(ahead: &mut PeekedAhead, conn: ConnId, queued: &[u8], window: usize) {
        let n = queued.len().min(window);
        ahead.peek_buffer(window)[..n].copy_from_slice(&queued[..n]);
        ahead.peeked(conn, n, window);
    }

    #[test]
    fn reads_drop_bytes_from_the_front_until_nothing_is_left() {
        let mut ahead = PeekedAhead::default();
        peek(&mut ahead, 1, b"one\ntwo\nthr", 16);
        assert_eq!(ahead.front(1), b"one\ntwo\nthr");
        assert!(ahead.saw_queue_end(1));
        ahead.took(1, 4);
        assert_eq!(ahead.front(1), b"two\nthr");
        // A `recv` that read more than was remembered.
        ahead.took(1, 100);
        assert_eq!(ahead.front(1), b"");
    }

    #[test]
    fn another_connection_sees_nothing_and_cannot_drop_bytes() {
        let mut ahead = PeekedAhead::default();
        peek(&mut ahead, 1, b"abc", 16);
        assert_eq!(ahead.front(2), b"");
        assert!(!ahead.saw_queue_end(2));
        ahead.took(2, 2);
        assert_eq!(ahead.front(1), b"abc");
    }

    #[test]
    fn a_full_window_may_have_more_behind_it() {
        let mut ahead = PeekedAhead::default();
        peek(&mut ahead, 1, b"0123456789", 4);
        assert_eq!(ahead.front(1), b"0123");
        assert!(!ahead.saw_queue_end(1));
        ahead.forget();
        assert_eq!(ahead.front(1), b"");
    }

    #[test]
    fn a_cancelled_peek_keeps_the_remembered_bytes() {
        let mut ahead = PeekedAhead::default();
        peek(&mut ahead, 1, b"first\nsecond", 16);
        ahead.took(1, 6);
        let _ = ahead.peek_buffer(32);
        assert_eq!(ahead.front(1), b"second");
    }

    #[test]
    fn a_new_peek_starts_from_the_queue_front_again() {
        let mut ahead = PeekedAhead::default();
        peek(&mut ahead, 1, b"line\npart", 16);
        ahead.took(1, 5);
        peek(&mut ahead, 1, b"partial line\n", 16);
        assert_eq!(ahead.front(1), b"partial line\n");
    }
}
