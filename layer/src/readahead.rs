//! Read-ahead for read-only remote handles (files too big for a memfd).
//!
//! Every `read` of a remote handle would be a round trip through the session and the agent link,
//! so an app reading a big file 128 KiB at a time waits one round trip per 128 KiB. For handles
//! opened read-only the layer owns the file position instead of the agent: it reads at absolute
//! offsets (`ReadAt`), asks for more than the app did, and serves the next reads from what came
//! back. The request size grows while reads stay sequential (256 KiB up to 4 MiB) and starts over
//! after a seek.
//!
//! No lock is held across a session exchange: a read claims its range of the file under the
//! lock, fetches without it, and keeps the surplus only if nobody moved the position meanwhile,
//! so concurrent reads on one fd still get distinct bytes. The position is per process: after a
//! `fork`, parent and child move their own copies (the kernel would share one offset).

use crate::lock::SpinLock;

/// First read-ahead request.
pub const INITIAL: usize = 256 * 1024;
/// Largest read-ahead request (the agent answers up to 8 MiB per read).
pub const MAX: usize = 4 * 1024 * 1024;

#[derive(Debug, Default)]
struct State {
    /// The file position the next `read` starts at.
    pos: u64,
    /// Absolute offset of `buf[0]`.
    buf_start: u64,
    /// Bytes read ahead.
    buf: Vec<u8>,
    /// Size of the next request.
    next: usize,
}

/// The position and read-ahead buffer of one read-only remote handle (shared by its `dup`s).
pub struct ReadAhead {
    state: SpinLock<State>,
}

impl std::fmt::Debug for ReadAhead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadAhead").finish_non_exhaustive()
    }
}

impl Default for ReadAhead {
    fn default() -> Self {
        Self::new()
    }
}

impl ReadAhead {
    /// At offset 0, nothing read yet.
    pub fn new() -> Self {
        Self {
            state: SpinLock::new(State {
                next: INITIAL,
                ..State::default()
            }),
        }
    }

    /// Reads up to `n` bytes at the position and advances it. `fetch(offset, len)` reads at an
    /// absolute offset (fewer bytes than `len` only at the end of the file).
    pub fn read(
        &self,
        n: usize,
        fetch: impl FnOnce(u64, usize) -> Result<Vec<u8>, i32>,
    ) -> Result<Vec<u8>, i32> {
        let mut out = Vec::new();
        let (start, want) = {
            let mut s = self.state.lock();
            s.take_buffered(n, &mut out);
            if out.len() == n || n == 0 {
                return Ok(out);
            }
            let start = s.pos;
            let rest = n - out.len();
            s.pos += rest as u64;
            (start, rest.max(s.next))
        };
        let rest = n - out.len();
        let data = match fetch(start, want) {
            Ok(d) => d,
            Err(e) => {
                let mut s = self.state.lock();
                if s.pos == start + rest as u64 {
                    s.pos = start;
                }
                // Bytes already taken from the buffer are the read's result; the error shows
                // on the next call, as a short read followed by an error would.
                return if out.is_empty() { Err(e) } else { Ok(out) };
            }
        };
        let got = data.len().min(rest);
        out.extend_from_slice(&data[..got]);
        let mut s = self.state.lock();
        if s.pos == start + rest as u64 {
            if got < rest {
                s.pos = start + got as u64;
            } else if data.len() > rest {
                // The whole chunk, so a short seek back is served from memory too.
                s.buf_start = start;
                s.buf = data;
                s.next = (s.next * 2).min(MAX);
            }
        }
        Ok(out)
    }

    /// `lseek`: `SEEK_SET` and `SEEK_CUR` are answered here; `size` is asked for `SEEK_END`
    /// only. The buffer stays: it is keyed by absolute offset.
    pub fn seek(
        &self,
        off: i64,
        whence: libc::c_int,
        size: impl FnOnce() -> Result<u64, i32>,
    ) -> Result<u64, i32> {
        let base = match whence {
            libc::SEEK_SET => 0,
            libc::SEEK_CUR => self.state.lock().pos,
            libc::SEEK_END => size()?,
            _ => return Err(libc::EINVAL),
        };
        let pos = base.checked_add_signed(off).ok_or(libc::EINVAL)?;
        let mut s = self.state.lock();
        if pos != s.pos {
            s.next = INITIAL;
        }
        s.pos = pos;
        Ok(pos)
    }
}

impl State {
    /// Moves buffered bytes at `pos` (at most `n`) to `out`; drops a buffer `pos` is not in.
    fn take_buffered(&mut self, n: usize, out: &mut Vec<u8>) {
        let end = self.buf_start + self.buf.len() as u64;
        if self.pos < self.buf_start || self.pos >= end {
            self.buf = Vec::new();
            return;
        }
        let from = (self.pos - self.buf_start) as usize;
        let k = n.min(self.buf.len() - from);
        out.extend_from_slice(&self.buf[from..from + k]);
        self.pos += k as u64;
        if from + k == self.buf.len() {
            self.buf = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    fn file(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    /// A fetch from `f` that records each request.
    fn fetcher<'a>(
        f: &'a [u8],
        log: &'a RefCell<Vec<(u64, usize)>>,
    ) -> impl Fn(u64, usize) -> Result<Vec<u8>, i32> + 'a {
        move |off, len| {
            log.borrow_mut().push((off, len));
            let s = (off as usize).min(f.len());
            Ok(f[s..(s + len).min(f.len())].to_vec())
        }
    }

    #[test]
    fn sequential_reads_cost_few_requests_and_return_every_byte_in_order() {
        let f = file(20 << 20);
        let log = RefCell::new(Vec::new());
        let ra = ReadAhead::new();
        let mut got = Vec::new();
        loop {
            let chunk = ra.read(128 * 1024, fetcher(&f, &log)).unwrap();
            if chunk.is_empty() {
                break;
            }
            got.extend(chunk);
        }
        assert!(got == f, "every byte, in order");
        // 160 reads of 128 KiB; requests grow to 4 MiB.
        let n = log.borrow().len();
        assert!(n <= 12, "{n} requests: {:?}", log.borrow());
        assert!(log.borrow().iter().any(|&(_, len)| len == MAX));
    }

    #[test]
    fn seeks_move_the_position_and_keep_serving_the_right_bytes() {
        let f = file(3 << 20);
        let log = RefCell::new(Vec::new());
        let ra = ReadAhead::new();
        assert_eq!(ra.read(10, fetcher(&f, &log)).unwrap(), f[..10]);
        // Back into the buffered range: no request.
        assert_eq!(ra.seek(-5, libc::SEEK_CUR, || unreachable!()).unwrap(), 5);
        let before = log.borrow().len();
        assert_eq!(ra.read(10, fetcher(&f, &log)).unwrap(), f[5..15]);
        assert_eq!(log.borrow().len(), before);
        // Far away, then from the end.
        assert_eq!(
            ra.seek(2 << 20, libc::SEEK_SET, || unreachable!()).unwrap(),
            2 << 20
        );
        assert_eq!(
            ra.read(4, fetcher(&f, &log)).unwrap(),
            f[2 << 20..(2 << 20) + 4]
        );
        let end = ra.seek(-3, libc::SEEK_END, || Ok(f.len() as u64)).unwrap();
        assert_eq!(end, f.len() as u64 - 3);
        assert_eq!(ra.read(10, fetcher(&f, &log)).unwrap(), f[f.len() - 3..]);
        assert!(ra.read(10, fetcher(&f, &log)).unwrap().is_empty(), "EOF");
        assert_eq!(
            ra.seek(0, libc::SEEK_CUR, || unreachable!()).unwrap(),
            f.len() as u64
        );
        assert_eq!(
            ra.seek(-1, libc::SEEK_SET, || unreachable!()),
            Err(libc::EINVAL)
        );
        assert_eq!(ra.seek(0, 99, || unreachable!()), Err(libc::EINVAL));
    }

    #[test]
    fn a_read_spanning_the_buffer_end_is_whole() {
        let f = file(1 << 20);
        let log = RefCell::new(Vec::new());
        let ra = ReadAhead::new();
        assert_eq!(ra.read(100, fetcher(&f, &log)).unwrap(), f[..100]);
        // The buffer holds up to INITIAL; this read needs more than what is left in it.
        let n = INITIAL;
        assert_eq!(ra.read(n, fetcher(&f, &log)).unwrap(), f[100..100 + n]);
    }

    #[test]
    fn a_failed_fetch_leaves_the_position() {
        let ra = ReadAhead::new();
        assert_eq!(ra.read(10, |_, _| Err(libc::EIO)), Err(libc::EIO));
        assert_eq!(ra.seek(0, libc::SEEK_CUR, || unreachable!()).unwrap(), 0);
    }

    #[test]
    fn concurrent_readers_get_distinct_bytes() {
        let f = std::sync::Arc::new(file(8 << 20));
        let ra = std::sync::Arc::new(ReadAhead::new());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let (f, ra) = (f.clone(), ra.clone());
                std::thread::spawn(move || {
                    let mut seen = Vec::new();
                    loop {
                        let mut at = 0u64;
                        let chunk = ra
                            .read(64 * 1024, |off, len| {
                                at = off;
                                let s = (off as usize).min(f.len());
                                Ok(f[s..(s + len).min(f.len())].to_vec())
                            })
                            .unwrap();
                        if chunk.is_empty() {
                            return seen;
                        }
                        // Identify each chunk by its content: byte i of the file is i % 251.
                        seen.push((chunk[0], chunk.len()));
                        let _ = at;
                    }
                })
            })
            .collect();
        let total: usize = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .map(|(_, len)| len)
            .sum();
        assert_eq!(total, f.len(), "each byte handed out exactly once");
    }
}
