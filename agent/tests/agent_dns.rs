//! Name resolution through the agent: the pod's resolv.conf (search list), hosts file and DNS
//! server, which only the pod network reaches.

mod common;

use std::io::Write;
use std::net::IpAddr;

use common::{Agent, Net, sleeper};
use tether_protocol::RemoteError;
use tether_protocol::agent::{Request, Response};
use tether_protocol::dns::{DnsRequest, DnsResponse, Family};
use tether_testkit::net;

async fn lookup(
    c: &mut common::Client,
    name: &str,
    family: Family,
) -> Result<(String, Vec<IpAddr>), RemoteError> {
    match c
        .call(Request::Dns(DnsRequest::Lookup {
            name: name.into(),
            family,
        }))
        .await?
    {
        Response::Dns(DnsResponse::Addresses {
            canonical_name,
            addrs,
        }) => Ok((canonical_name, addrs)),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn pod_names_search_list_hosts_and_reverse() {
    let net = Net::up("dns");
    let pod = sleeper(&net, "web", &[]);
    let gw = pod.sandbox.gateway.octets();
    let db_ip = IpAddr::from([gw[0], gw[1], gw[2], 77]);
    net::dns_add(net.name(), "db.pods.test", db_ip).unwrap();
    let v6: IpAddr = "fd00:7e57::5".parse().unwrap();
    net::dns_add(net.name(), "six.pods.test", v6).unwrap();
    let svc = net::service_add(net.name(), "backend", None, 80, pod.sandbox.ip, 8080).unwrap();
    // A hosts-file-only name, in the pod's bind-mounted /etc/hosts.
    std::fs::OpenOptions::new()
        .append(true)
        .open(pod.sandbox.etc_dir.join("hosts"))
        .unwrap()
        .write_all(b"192.0.2.44 from-hosts from-hosts.alias\n")
        .unwrap();
    let agent = Agent::start(pod.pid(), &[]).await;
    let mut c = agent.client().await;

    // A short name through the pod's search list (cluster.test pods.test), from its DNS server.
    assert_eq!(
        lookup(&mut c, "db", Family::Any).await.unwrap(),
        ("db.pods.test".to_string(), vec![db_ip])
    );
    assert_eq!(
        lookup(&mut c, "db.pods.test.", Family::V4).await.unwrap().1,
        vec![db_ip]
    );
    // The cluster-only service name.
    assert_eq!(
        lookup(&mut c, "backend", Family::V4).await.unwrap().1,
        vec![IpAddr::V4(svc.ip)]
    );
    // The hosts file comes first, aliases included.
    assert_eq!(
        lookup(&mut c, "from-hosts.alias", Family::Any)
            .await
            .unwrap(),
        (
            "from-hosts".to_string(),
            vec![IpAddr::from([192, 0, 2, 44])]
        )
    );
    // No such name, and no address of the wanted family: ENOENT.
    assert_eq!(
        lookup(&mut c, "nope.pods.test", Family::Any)
            .await
            .unwrap_err()
            .errno,
        libc::ENOENT
    );
    assert_eq!(
        lookup(&mut c, "nope", Family::Any).await.unwrap_err().errno,
        libc::ENOENT
    );
    assert_eq!(
        lookup(&mut c, "db.pods.test", Family::V6)
            .await
            .unwrap_err()
            .errno,
        libc::ENOENT
    );

    // AAAA records.
    assert_eq!(
        lookup(&mut c, "six", Family::V6).await.unwrap(),
        ("six.pods.test".to_string(), vec![v6])
    );
    assert_eq!(
        lookup(&mut c, "six", Family::Any).await.unwrap().1,
        vec![v6]
    );
    assert_eq!(
        lookup(&mut c, "six", Family::V4).await.unwrap_err().errno,
        libc::ENOENT
    );

    // Reverse lookups (PTR from the pod's DNS server).
    let reverse = |addr: IpAddr| Request::Dns(DnsRequest::Reverse { addr });
    assert_eq!(
        c.call(reverse(db_ip)).await.unwrap(),
        Response::Dns(DnsResponse::Name("db.pods.test".into()))
    );
    assert_eq!(
        c.call(reverse(IpAddr::V4(svc.ip))).await.unwrap(),
        Response::Dns(DnsResponse::Name("backend.cluster.test".into()))
    );
    assert_eq!(
        c.call(reverse(v6)).await.unwrap(),
        Response::Dns(DnsResponse::Name("six.pods.test".into()))
    );
    let unknown = IpAddr::from([gw[0], gw[1], gw[2], 199]);
    assert_eq!(
        c.call(reverse(unknown)).await.unwrap_err().errno,
        libc::ENOENT
    );

    // A nameserver that never answers: the lookup fails with EAGAIN after the pod's own
    // `timeout`/`attempts`, and meanwhile other requests of the session are answered at once.
    // (The file is bind-mounted into the pod: write it in place.)
    let silent = IpAddr::from([gw[0], gw[1], gw[2], 251]);
    std::fs::write(
        pod.sandbox.etc_dir.join("resolv.conf"),
        format!("nameserver {silent}\noptions timeout:1 attempts:1\n"),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let slow = c
        .start_request(Request::Dns(DnsRequest::Lookup {
            name: "anything.example".into(),
            family: Family::V4,
        }))
        .await;
    let quick = c
        .start_request(Request::File(tether_protocol::file::FileRequest::Stat {
            path: "/etc/app.conf".into(),
            follow: true,
        }))
        .await;
    match c.answer(quick).await {
        tether_protocol::agent::AgentMessage::Response { result: Ok(_), .. } => {}
        other => panic!("{other:?}"),
    }
    assert!(
        started.elapsed() < std::time::Duration::from_millis(500),
        "a slow lookup held up a file request"
    );
    match c.answer(slow).await {
        tether_protocol::agent::AgentMessage::Response { result: Err(e), .. } => {
            assert_eq!(e.errno, libc::EAGAIN, "{e:?}")
        }
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() >= std::time::Duration::from_millis(900));
}
