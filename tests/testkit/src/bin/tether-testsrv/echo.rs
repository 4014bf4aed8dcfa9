//! TCP and UDP echo servers.

use std::net::SocketAddr;

use anyhow::Context;
use tokio::net::{TcpListener, UdpSocket};

pub(crate) async fn tcp(addr: SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding tcp {addr}"))?;
    eprintln!("tcp-echo listening on {addr}");
    loop {
        let (mut conn, peer) = listener.accept().await.context("accepting")?;
        tokio::spawn(async move {
            let (mut r, mut w) = conn.split();
            let res = tokio::io::copy(&mut r, &mut w).await;
            eprintln!("tcp-echo {peer}: closed ({res:?})");
        });
    }
}

pub(crate) async fn udp(addr: SocketAddr) -> anyhow::Result<()> {
    let sock = UdpSocket::bind(addr)
        .await
        .with_context(|| format!("binding udp {addr}"))?;
    eprintln!("udp-echo listening on {addr}");
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, peer) = sock.recv_from(&mut buf).await.context("receiving")?;
        if let Err(e) = sock.send_to(&buf[..n], peer).await {
            eprintln!("udp-echo {peer}: send failed: {e}");
        }
    }
}
