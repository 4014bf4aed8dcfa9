//! `bench-source`: the pod side of tether's benchmarks (tests/bench), a blocking server with one
//! thread per connection so that it is never the bottleneck being measured.
//!
//! On accept it sends one banner byte `+` (what "connect to first byte" waits for), then reads one
//! command line:
//! - `BYTES N`: sends N bytes, then closes (bulk download);
//! - `FILE PATH`: sends the file, then closes (the peer of a remote file read);
//! - `ECHO`: echoes every byte until the client closes (round trips);
//! - `SINK N`: reads N bytes, then answers `OK N` and closes (bulk upload; no half-close
//!   needed).
//!
//! A bad command gets `-ERR ...` and the connection closes.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

use anyhow::Context;

/// Size of every write: large enough that syscalls do not dominate.
const CHUNK: usize = 256 * 1024;

pub(crate) fn serve(addr: SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr).with_context(|| format!("binding tcp {addr}"))?;
    eprintln!("bench-source listening on {addr}");
    for conn in listener.incoming() {
        let conn = match conn {
            Ok(c) => c,
            Err(e) => {
                eprintln!("bench-source: accept: {e}");
                continue;
            }
        };
        std::thread::spawn(move || {
            let peer = conn.peer_addr().ok();
            if let Err(e) = handle(conn) {
                eprintln!("bench-source {peer:?}: {e:#}");
            }
        });
    }
    Ok(())
}

fn handle(mut conn: TcpStream) -> anyhow::Result<()> {
    conn.set_nodelay(true).context("setting TCP_NODELAY")?;
    conn.write_all(b"+").context("sending the banner")?;
    let mut reader =
        BufReader::with_capacity(CHUNK, conn.try_clone().context("cloning the socket")?);
    let mut line = String::new();
    if reader.read_line(&mut line).context("reading the command")? == 0 {
        return Ok(()); // connect-to-first-byte probes close right after the banner
    }
    let line = line.trim_end();
    match line.split_once(' ').unwrap_or((line, "")) {
        ("BYTES", n) => {
            let n: u64 = n.parse().with_context(|| format!("bad byte count {n:?}"))?;
            send_bytes(&mut conn, n)
        }
        ("FILE", path) => {
            let mut f = File::open(path).with_context(|| format!("opening {path}"))?;
            copy(&mut f, &mut conn).with_context(|| format!("sending {path}"))
        }
        ("SINK", n) => {
            let want: u64 = n.parse().with_context(|| format!("bad byte count {n:?}"))?;
            let got = sink(&mut reader, want).context("reading the upload")?;
            conn.write_all(format!("OK {got}\n").as_bytes())
                .context("answering the upload")
        }
        ("ECHO", "") => {
            // Bytes the BufReader already holds were sent after the command: echo them first.
            let pending = reader.buffer().to_vec();
            conn.write_all(&pending).context("echoing")?;
            reader.consume(pending.len());
            copy(reader.get_mut(), &mut conn).context("echoing")
        }
        _ => {
            let _ = conn.write_all(format!("-ERR unknown command {line:?}\n").as_bytes());
            anyhow::bail!("unknown command {line:?}")
        }
    }
}

fn send_bytes(conn: &mut TcpStream, mut n: u64) -> anyhow::Result<()> {
    let buf = vec![0x5au8; CHUNK];
    while n > 0 {
        let len = usize::try_from(n).map_or(CHUNK, |n| n.min(CHUNK));
        conn.write_all(&buf[..len]).context("sending bytes")?;
        n -= len as u64;
    }
    Ok(())
}

/// Reads `want` bytes (fewer if the client closes first); returns how many it read.
fn sink(from: &mut impl BufRead, want: u64) -> io::Result<u64> {
    let mut total = 0;
    while total < want {
        let n = match from.fill_buf() {
            Ok([]) => break,
            Ok(b) => b
                .len()
                .min(usize::try_from(want - total).unwrap_or(usize::MAX)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        from.consume(n);
        total += n as u64;
    }
    Ok(total)
}

/// Copies until EOF with the same chunk size as [`send_bytes`], flushing every read at once
/// (round trips must not wait for a full buffer).
fn copy(from: &mut impl Read, to: &mut TcpStream) -> io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
    }
}
