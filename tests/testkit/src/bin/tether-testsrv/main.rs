//! `tether-testsrv`: small servers that run inside test pods, plus tiny clients to probe from a
//! pod.
//!
//! Servers: `http-echo` (HTTP/1.1 keep-alive and h2c prior knowledge; answers JSON naming the
//! instance), `tcp-echo`, `udp-echo`, `dns` (A, AAAA, PTR from a hosts-format file, NXDOMAIN
//! otherwise), `bench-source` (bytes, files and echo for tests/bench). Clients: `http-get`,
//! `resolve`. Every server logs one line per event to stderr.

mod bench;
mod dns;
mod echo;
mod http;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "tether-testsrv",
    version,
    about = "Test servers for tether's test pods"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// HTTP echo server: answers every request with JSON naming the instance, method, path and
    /// headers. HTTP/1.1 (keep-alive) and HTTP/2 with prior knowledge (h2c).
    HttpEcho {
        #[arg(long)]
        port: u16,
        /// Instance name, so tests can tell which server answered.
        #[arg(long)]
        name: String,
        #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
        bind: IpAddr,
    },
    /// TCP echo server: sends back every byte it receives.
    TcpEcho {
        #[arg(long)]
        port: u16,
        #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
        bind: IpAddr,
    },
    /// UDP echo server: sends every datagram back to its sender.
    UdpEcho {
        #[arg(long)]
        port: u16,
        #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
        bind: IpAddr,
    },
    /// Benchmark source (tests/bench): sends a banner byte `+` on accept, then serves one
    /// command line: `BYTES N` (N bytes), `FILE PATH` (the file), `ECHO` (echo until EOF) or
    /// `SINK N` (read N bytes, answer `OK N`).
    BenchSource {
        #[arg(long)]
        port: u16,
        #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
        bind: IpAddr,
    },
    /// Authoritative DNS server (UDP and TCP) for the names in a hosts-format records file
    /// (`IP NAME...`; the first name of an address answers its PTR). The file is reread when it
    /// changes. Unknown names get NXDOMAIN; nothing is forwarded.
    Dns {
        #[arg(long, default_value_t = 53)]
        port: u16,
        #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
        bind: IpAddr,
        #[arg(long)]
        records: PathBuf,
    },
    /// HTTP/1.1 GET (client): prints the response body; exit 1 on failure or a non-2xx status.
    /// The host name is resolved with the system resolver (the pod's /etc/resolv.conf and hosts).
    HttpGet {
        /// `http://HOST[:PORT]/PATH`
        url: String,
        /// Timeout in milliseconds for connect and for the whole exchange.
        #[arg(long, default_value_t = 3000)]
        timeout_ms: u64,
    },
    /// Resolves a name with the system resolver (getaddrinfo) and prints one address per line.
    Resolve { name: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::HttpGet { url, timeout_ms } => http::get(&url, timeout_ms),
        Cmd::Resolve { name } => resolve(&name),
        // Blocking, a thread per connection: no runtime between the socket and the bytes.
        Cmd::BenchSource { port, bind } => bench::serve(SocketAddr::new(bind, port)),
        cmd => serve(cmd),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tether-testsrv: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(cmd: Cmd) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cmd {
            Cmd::HttpEcho { port, name, bind } => {
                http::serve(SocketAddr::new(bind, port), name).await
            }
            Cmd::TcpEcho { port, bind } => echo::tcp(SocketAddr::new(bind, port)).await,
            Cmd::UdpEcho { port, bind } => echo::udp(SocketAddr::new(bind, port)).await,
            Cmd::Dns {
                port,
                bind,
                records,
            } => dns::serve(SocketAddr::new(bind, port), records).await,
            Cmd::HttpGet { .. } | Cmd::Resolve { .. } | Cmd::BenchSource { .. } => {
                unreachable!("clients and bench-source run without tokio")
            }
        }
    })
}

fn resolve(name: &str) -> anyhow::Result<()> {
    use std::net::ToSocketAddrs;
    let addrs = (name, 0)
        .to_socket_addrs()
        .map_err(|e| anyhow::anyhow!("resolving {name}: {e}"))?;
    let mut seen = Vec::new();
    for a in addrs {
        if !seen.contains(&a.ip()) {
            seen.push(a.ip());
            println!("{}", a.ip());
        }
    }
    Ok(())
}
