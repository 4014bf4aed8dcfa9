//! Pods: env, own root, hostname, reachability, DNS, services, teardown, parallelism.
//! Needs root (as CI runs).

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::{Duration, Instant};

use tether_testkit::{POD_TESTSRV, Pod, Proto, TestCluster, TestServer};

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command in the pod and returns stdout, failing the test with stderr on a bad exit.
fn sh(pod: &Pod, script: &str) -> String {
    let out = pod.exec(["/bin/sh", "-c", script]).unwrap();
    assert!(
        out.status.success(),
        "`{script}` in pod {} failed: {}\n{}",
        pod.name(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout(&out)
}

fn netns_list() -> String {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    stdout(&out)
}

#[test]
fn pod_sees_its_env_files_root_and_hostname() {
    let cluster = TestCluster::new("env").unwrap();
    let pod = cluster
        .pod("web")
        .hostname("web-7d9f")
        .env("GREETING", "hello pod")
        .envs([("MODE", "test")])
        .file("/app/data.txt", "payload-123")
        .setup(|root| {
            std::fs::create_dir_all(root.join("data/sub"))?;
            std::os::unix::fs::symlink("/app/data.txt", root.join("data/link"))
        })
        .start()
        .unwrap();

    // The agent's view from the host: /proc/PID/{environ,root,ns/net}.
    let environ = std::fs::read(format!("/proc/{}/environ", pod.pid())).unwrap();
    let environ: Vec<String> = environ
        .split(|b| *b == 0)
        .filter(|e| !e.is_empty())
        .map(|e| String::from_utf8_lossy(e).into_owned())
        .collect();
    assert!(
        environ.contains(&"GREETING=hello pod".to_string()),
        "{environ:?}"
    );
    assert!(environ.contains(&"MODE=test".to_string()), "{environ:?}");
    assert!(
        environ.iter().any(|e| e.starts_with("PATH=")),
        "{environ:?}"
    );
    assert_eq!(environ.len(), 3, "only the pod's env and PATH: {environ:?}");
    let via_proc =
        std::fs::read_to_string(format!("/proc/{}/root/app/data.txt", pod.pid())).unwrap();
    assert_eq!(via_proc, "payload-123");
    let ns = std::fs::metadata(format!("/proc/{}/ns/net", pod.pid())).unwrap();
    let named = std::fs::metadata(pod.netns_path()).unwrap();
    assert_eq!(ns.ino(), named.ino(), "main process is in the pod netns");
    let host_ns = std::fs::metadata("/proc/self/ns/net").unwrap();
    assert_ne!(ns.ino(), host_ns.ino());

    // The pod's own view.
    assert_eq!(sh(&pod, "cat /app/data.txt"), "payload-123");
    assert_eq!(sh(&pod, "cat /data/link"), "payload-123");
    assert_eq!(sh(&pod, "test -d /data/sub && echo dir"), "dir\n");
    assert_eq!(sh(&pod, "hostname").trim(), "web-7d9f");
    assert_eq!(sh(&pod, "cat /etc/hostname").trim(), "web-7d9f");
    assert_eq!(sh(&pod, "echo $GREETING").trim(), "hello pod");
    let resolv = sh(&pod, "cat /etc/resolv.conf");
    assert!(
        resolv.contains(&format!("nameserver {}", cluster.dns_ip())),
        "{resolv}"
    );
    let hosts = sh(&pod, "cat /etc/hosts");
    assert!(
        hosts.contains(&format!("{}\tweb-7d9f web.pods.test", pod.ip())),
        "{hosts}"
    );
    // Its root is its own: host-only paths are absent, system dirs are read-only.
    let listing = sh(&pod, "ls /");
    assert!(
        listing.contains("app") && listing.contains("usr"),
        "{listing}"
    );
    assert!(
        !listing.contains("work") && !listing.contains("home"),
        "{listing}"
    );
    let out = pod
        .exec(["/bin/sh", "-c", "touch /usr/tether-write-test"])
        .unwrap();
    assert!(!out.status.success(), "/usr must be read-only");
    // /tmp is writable and lands in the pod root.
    sh(&pod, "echo scratch > /tmp/x");
    assert_eq!(
        std::fs::read_to_string(pod.host_path("/tmp/x")).unwrap(),
        "scratch\n"
    );
    // eth0 carries the pod IP.
    let addr = sh(&pod, "cat /sys/class/net/eth0/address");
    assert_eq!(addr.trim().len(), 17, "{addr}");
    // The source address the pod uses towards its gateway is its IP (a UDP connect sends nothing).
    let gw = cluster.dns_ip();
    let ip = pod
        .in_netns(|| {
            let s = UdpSocket::bind("0.0.0.0:0")?;
            s.connect((gw, 9))?;
            s.local_addr()
        })
        .unwrap()
        .unwrap()
        .ip();
    assert_eq!(ip, IpAddr::V4(pod.ip()));
}

#[test]
fn two_pods_reach_each_other_over_tcp_and_udp() {
    let cluster = TestCluster::new("reach").unwrap();
    let a = cluster
        .pod("alpha")
        .server(TestServer::HttpEcho { port: 8080 })
        .start()
        .unwrap();
    let b = cluster
        .pod("beta")
        .server(TestServer::UdpEcho { port: 9000 })
        .start()
        .unwrap();
    let c = cluster
        .pod("gamma")
        .server(TestServer::TcpEcho { port: 7000 })
        .start()
        .unwrap();

    // HTTP from beta to alpha by DNS name, through the pod resolver.
    let body = sh(
        &b,
        &format!("{POD_TESTSRV} http-get http://alpha.pods.test:8080/from-beta"),
    );
    assert!(body.contains(r#""instance":"alpha""#), "{body}");
    assert!(body.contains(r#""path":"/from-beta""#), "{body}");
    assert!(
        body.contains(&format!("\"remote\":\"{}:", b.ip())),
        "{body}"
    );

    // TCP echo from alpha's netns, in-process.
    let echoed = a
        .in_netns(|| {
            let mut s = TcpStream::connect_timeout(
                &SocketAddr::new(c.ip().into(), 7000),
                Duration::from_secs(2),
            )?;
            s.write_all(b"ping over tcp")?;
            s.shutdown(std::net::Shutdown::Write)?;
            let mut got = String::new();
            s.read_to_string(&mut got)?;
            std::io::Result::Ok(got)
        })
        .unwrap()
        .unwrap();
    assert_eq!(echoed, "ping over tcp");

    // UDP echo from gamma's netns.
    let got = c
        .in_netns(|| {
            let s = UdpSocket::bind("0.0.0.0:0")?;
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            s.send_to(b"ping over udp", (b.ip(), 9000))?;
            let mut buf = [0u8; 64];
            let (n, from) = s.recv_from(&mut buf)?;
            std::io::Result::Ok((buf[..n].to_vec(), from))
        })
        .unwrap()
        .unwrap();
    assert_eq!(got.0, b"ping over udp");
    assert_eq!(got.1, SocketAddr::new(b.ip().into(), 9000));
}

#[test]
fn pods_resolve_cluster_only_names_and_ptr() {
    let cluster = TestCluster::new("dns").unwrap();
    let web = cluster
        .pod("web")
        .server(TestServer::HttpEcho { port: 80 })
        .start()
        .unwrap();
    let client = cluster.pod("client").start().unwrap();
    let svc = cluster.expose("api", 80, &web, 80).unwrap();
    assert_eq!(svc.dns_name, "api.cluster.test");

    let got = sh(&client, "getent hosts api.cluster.test");
    assert!(got.starts_with(&format!("{} ", svc.ip)), "{got}");
    // The search list makes the short name work too.
    let got = sh(&client, &format!("{POD_TESTSRV} resolve api"));
    assert_eq!(got.trim(), svc.ip.to_string());
    let got = sh(&client, "getent hosts web.pods.test");
    assert!(got.starts_with(&format!("{} ", web.ip())), "{got}");
    // Reverse lookups: pod and service.
    let got = sh(&client, &format!("getent hosts {}", web.ip()));
    assert!(got.contains("web.pods.test"), "{got}");
    let got = sh(&client, &format!("getent hosts {}", svc.ip));
    assert!(got.contains("api.cluster.test"), "{got}");
    // Unknown names fail (NXDOMAIN, nothing forwarded).
    let out = client
        .exec(["getent", "hosts", "nope.cluster.test"])
        .unwrap();
    assert!(!out.status.success(), "{}", stdout(&out));
    // Records added later are served at once.
    cluster
        .add_dns_record("late.cluster.test", "10.96.200.7".parse().unwrap())
        .unwrap();
    let got = sh(&client, "getent hosts late.cluster.test");
    assert!(got.starts_with("10.96.200.7 "), "{got}");
    // A pod started after the client is resolvable too.
    let later = cluster.pod("later").start().unwrap();
    let got = sh(&client, "getent hosts later.pods.test");
    assert!(got.starts_with(&format!("{} ", later.ip())), "{got}");
}

#[test]
fn host_cannot_reach_cluster_only_service_but_pods_can() {
    let cluster = TestCluster::new("svc").unwrap();
    let backend = cluster
        .pod("backend")
        .server(TestServer::HttpEcho { port: 8080 })
        .start()
        .unwrap();
    let client = cluster.pod("client").start().unwrap();
    let svc = cluster.expose("api", 80, &backend, 8080).unwrap();

    // The host routes the cluster ranges nowhere (checked before sending anything, so no packet to
    // a private range ever leaves through the uplink).
    for ip in [svc.ip, backend.ip()] {
        let out = Command::new("ip")
            .args(["route", "get", &ip.to_string()])
            .output()
            .unwrap();
        let text = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
        assert!(
            text.contains("unreachable") || text.contains("No route to host"),
            "host route to {ip}: {text}"
        );
        let err =
            TcpStream::connect_timeout(&SocketAddr::new(ip.into(), 80), Duration::from_millis(500))
                .expect_err("host must not reach the cluster");
        assert_eq!(err.kind(), std::io::ErrorKind::HostUnreachable, "{err}");
    }
    // A pod reaches the service through the VIP (DNAT to the backend).
    let body = sh(
        &client,
        &format!("{POD_TESTSRV} http-get http://api.cluster.test/through-vip"),
    );
    assert!(body.contains(r#""instance":"backend""#), "{body}");
    assert!(body.contains(r#""path":"/through-vip""#), "{body}");
    // And in-process from the pod netns, by IP.
    let reply = client
        .in_netns(|| http_get_raw(SocketAddr::new(svc.ip.into(), 80), "/raw"))
        .unwrap();
    assert!(reply.contains(r#""instance":"backend""#), "{reply}");
}

/// One HTTP/1.1 request on a fresh connection; returns the whole response.
fn http_get_raw(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn http_echo_keeps_connections_alive_and_speaks_h2c() {
    let cluster = TestCluster::new("http").unwrap();
    let web = cluster
        .pod("web")
        .server(TestServer::HttpEcho { port: 8080 })
        .start()
        .unwrap();
    let addr = SocketAddr::new(web.ip().into(), 8080);
    // Two requests on one HTTP/1.1 connection; the second has a body and a custom header.
    let stream = web
        .in_netns(|| TcpStream::connect_timeout(&addr, Duration::from_secs(2)))
        .unwrap()
        .unwrap();
    let mut s = stream;
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let first = exchange(&mut s, "GET /one HTTP/1.1\r\nHost: web\r\n\r\n");
    assert!(first.contains(r#""path":"/one""#), "{first}");
    let second = exchange(
        &mut s,
        "POST /two?q=1 HTTP/1.1\r\nHost: web\r\nX-Tether-Test: yes\r\nContent-Length: 5\r\n\r\nhello",
    );
    assert!(second.contains(r#""method":"POST""#), "{second}");
    assert!(second.contains(r#""path":"/two?q=1""#), "{second}");
    assert!(second.contains(r#""x-tether-test":"yes""#), "{second}");
    assert!(second.contains(r#""body":"hello""#), "{second}");
    assert!(second.contains("x-tether-instance: web"), "{second}");

    // HTTP/2 with prior knowledge (h2c), from the pod netns.
    let std_stream = web
        .in_netns(|| TcpStream::connect_timeout(&addr, Duration::from_secs(2)))
        .unwrap()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let body = rt.block_on(async move {
        use http_body_util::{BodyExt, Empty};
        std_stream.set_nonblocking(true).unwrap();
        let io = hyper_util::rt::TokioIo::new(tokio::net::TcpStream::from_std(std_stream).unwrap());
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                .await
                .unwrap();
        tokio::spawn(conn);
        let req = hyper::Request::get("http://web/h2")
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.version(), hyper::Version::HTTP_2);
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8_lossy(&bytes).into_owned()
    });
    assert!(body.contains(r#""version":"HTTP/2.0""#), "{body}");
    assert!(body.contains(r#""instance":"web""#), "{body}");
}

/// Writes one request and reads exactly one response with a Content-Length body.
fn exchange(s: &mut TcpStream, request: &str) -> String {
    s.write_all(request.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).unwrap(), 1, "connection closed early");
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    format!("{head}{}", String::from_utf8_lossy(&body))
}

#[test]
fn teardown_leaves_no_netns_veth_mount_route_or_process() {
    let cluster = TestCluster::new("teardown").unwrap();
    let name = cluster.name().to_string();
    let infra = cluster.network().netns.clone();
    let state_dir = cluster.network().state_dir.clone();
    let routes = cluster.network().host_routes.clone();
    let a = cluster
        .pod("a")
        .server(TestServer::HttpEcho { port: 80 })
        .start()
        .unwrap();
    let b = cluster.pod("b").start().unwrap();
    cluster.expose("api", 80, &a, 80).unwrap();
    let extra = b.command("sleep").unwrap().arg("1000").spawn().unwrap();
    let pids = [a.pid(), b.pid(), extra.id()];
    let pod_ns = [a.netns().to_string(), b.netns().to_string()];
    let pod_dirs = [a.root().to_path_buf(), b.root().to_path_buf()];
    let dns_pid = cluster.network().dns_server.unwrap();
    assert!(netns_list().contains(&infra));

    drop(a);
    drop(b);
    drop(cluster);
    let mut extra = extra;
    let _ = extra.wait();

    let list = netns_list();
    assert!(!list.contains(&name), "netns left: {list}");
    for ns in &pod_ns {
        assert!(!list.contains(ns.as_str()), "netns {ns} left: {list}");
    }
    let links = stdout(&Command::new("ip").args(["-o", "link"]).output().unwrap());
    assert!(!links.contains(&name), "{links}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&name), "{mounts}");
    assert!(!state_dir.exists());
    for d in pod_dirs {
        assert!(!d.exists(), "{} left", d.display());
    }
    let shown = stdout(
        &Command::new("ip")
            .args(["route", "show", "proto", "116"])
            .output()
            .unwrap(),
    );
    for r in routes {
        assert!(
            !shown.contains(&r) || route_owned_by_live_network(&r),
            "route {r} left: {shown}"
        );
    }
    for pid in pids {
        assert!(
            tether_testkit::ProcessId::of(pid).is_none(),
            "process {pid} still runs"
        );
    }
    assert!(!dns_pid.is_alive(), "DNS server still runs");
}

#[test]
fn a_panicking_test_still_cleans_up() {
    let mut seen = None;
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let cluster = TestCluster::new("panic").unwrap();
        let pod = cluster.pod("p").start().unwrap();
        seen = Some((
            cluster.network().netns.clone(),
            pod.netns().to_string(),
            pod.pid(),
        ));
        panic!("test failure inside a pod test");
    }));
    assert!(res.is_err());
    let (infra, pod_ns, pid) = seen.unwrap();
    let list = netns_list();
    assert!(!list.contains(&infra) && !list.contains(&pod_ns), "{list}");
    assert!(tether_testkit::ProcessId::of(pid).is_none());
}

#[test]
fn parallel_clusters_do_not_collide() {
    let results: Vec<(String, String, bool)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|i| {
                s.spawn(move || {
                    let cluster = TestCluster::new(&format!("par{i}")).unwrap();
                    let srv = cluster
                        .pod("srv")
                        .server(TestServer::HttpEcho { port: 8080 })
                        .start()
                        .unwrap();
                    let cli = cluster.pod("cli").start().unwrap();
                    let body = sh(
                        &cli,
                        &format!("{POD_TESTSRV} http-get http://srv.pods.test:8080/"),
                    );
                    // Same pod names in every cluster, each reaches its own server.
                    let own = body.contains(&format!("\"local\":\"{}:8080\"", srv.ip()));
                    (
                        cluster.name().to_string(),
                        cluster.subnet().to_string(),
                        own,
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut subnets: Vec<&String> = results.iter().map(|r| &r.1).collect();
    subnets.sort();
    subnets.dedup();
    assert_eq!(subnets.len(), 4, "{results:?}");
    assert!(results.iter().all(|r| r.2), "{results:?}");
}

#[test]
fn a_pod_with_a_server_starts_well_under_a_second() {
    let cluster = TestCluster::new("fast").unwrap();
    // Warm up the binary lookup and page cache.
    drop(cluster.pod("warm").start().unwrap());
    let started = Instant::now();
    let pod = cluster
        .pod("web")
        .server(TestServer::HttpEcho { port: 8080 })
        .start()
        .unwrap();
    let took = started.elapsed();
    eprintln!("pod with http-echo up in {took:?}");
    pod.wait_listening(8080, Proto::Tcp, Duration::ZERO)
        .unwrap();
    // Generous bound for a loaded 2-core machine; typical is ~60 ms.
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[test]
fn a_failing_main_process_reports_its_log() {
    let cluster = TestCluster::new("fail").unwrap();
    let err = cluster
        .pod("bad")
        .command(["/bin/sh", "-c", "echo boom-from-pod >&2; exit 3"])
        .start()
        .map(|p| {
            // Without a server there is no readiness wait: the process exits on its own.
            let status = p.wait_exit(Duration::from_secs(5)).unwrap();
            assert_eq!(status.code(), Some(3));
            assert!(!p.is_running());
            p.logs()
        });
    assert!(err.unwrap().contains("boom-from-pod"));
    let err = cluster
        .pod("bad2")
        .server(TestServer::HttpEcho { port: 80 })
        .bind("/nonexistent-source", "/x", true)
        .start()
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent-source"), "{err}");
    assert!(!netns_list().contains(&format!("{}-bad2", cluster.name())));
}

#[test]
fn iptables_inside_a_pod_redirects_its_traffic_like_an_agent() {
    let cluster = TestCluster::new("ipt").unwrap();
    let web = cluster
        .pod("web")
        .server(TestServer::HttpEcho { port: 8080 })
        .start()
        .unwrap();
    let client = cluster.pod("client").start().unwrap();
    // Port 80 is closed until the pod's own nat table redirects it.
    let out = client
        .exec([
            POD_TESTSRV,
            "http-get",
            "--timeout-ms",
            "500",
            "http://web.pods.test/",
        ])
        .unwrap();
    assert!(!out.status.success());
    sh(
        &web,
        "iptables -w -t nat -A PREROUTING -p tcp --dport 80 -j REDIRECT --to-ports 8080",
    );
    let body = sh(
        &client,
        &format!("{POD_TESTSRV} http-get http://web.pods.test/stolen"),
    );
    assert!(body.contains(r#""path":"/stolen""#), "{body}");
    // The rule lives in the pod's netns only.
    let host = Command::new("iptables")
        .args(["-t", "nat", "-S"])
        .output()
        .unwrap();
    assert!(!stdout(&host).contains("--to-ports 8080"));
    let in_pod = Command::new("ip")
        .args(["netns", "exec", web.netns(), "iptables", "-t", "nat", "-S"])
        .output()
        .unwrap();
    assert!(
        stdout(&in_pod).contains("--to-ports 8080"),
        "{}",
        stdout(&in_pod)
    );
}

#[test]
fn leftovers_of_a_sigkilled_test_process_are_swept() {
    const CHILD: &str = "TETHER_TESTKIT_KILLED_CHILD";
    if std::env::var_os(CHILD).is_some() {
        // Child mode: make a cluster, report it, hang until killed (Drop never runs).
        let cluster = TestCluster::new("killed").unwrap();
        let pod = cluster.pod("p").start().unwrap();
        println!(
            "READY {} {} {} {}",
            cluster.network().netns,
            pod.netns(),
            pod.pid(),
            cluster.network().subnet
        );
        std::thread::sleep(Duration::from_secs(60));
        return;
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "leftovers_of_a_sigkilled_test_process_are_swept",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("READY ") {
        line.clear();
        let n = std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
        assert!(n > 0, "child exited before reporting its cluster");
    }
    let words: Vec<String> = line.split_whitespace().map(String::from).collect();
    let (infra, pod_ns, pid, subnet) = (
        &words[1],
        &words[2],
        words[3].parse::<u32>().unwrap(),
        &words[4],
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // Another test process's sweep may get there first (tests run in parallel processes); either
    // way the leftovers must be gone after this one.
    tether_testkit::cleanup_stale().unwrap();
    let list = netns_list();
    assert!(
        !list.contains(infra.as_str()) && !list.contains(pod_ns.as_str()),
        "{list}"
    );
    assert!(
        tether_testkit::ProcessId::of(pid).is_none(),
        "pod process {pid} survived"
    );
    let routes = stdout(
        &Command::new("ip")
            .args(["route", "show", "proto", "116"])
            .output()
            .unwrap(),
    );
    // The subnet index may already be reused by a parallel test's new network.
    assert!(
        !routes.contains(subnet.as_str()) || route_owned_by_live_network(subnet),
        "{routes}"
    );
}

/// Whether a live network of the registry (maybe a parallel test's) owns the host route.
fn route_owned_by_live_network(prefix: &str) -> bool {
    tether_testkit::net::network_list()
        .unwrap()
        .iter()
        .any(|n| n.host_routes.iter().any(|r| r == prefix))
}
