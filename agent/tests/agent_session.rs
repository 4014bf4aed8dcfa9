//! Sessions against a real test pod: hello, refusals, env, concurrency, idle TTL, target gone.

mod common;

use std::time::Duration;

use common::{Agent, Client, Net, TOKEN, sleeper};
use futures::{SinkExt, StreamExt};
use tether_protocol::AgentError;
use tether_protocol::agent::{AgentMessage, ClientMessage, Request, Response};
use tether_protocol::dns::{DnsRequest, Family};
use tether_protocol::file::{FileRequest, FileResponse, OpenOptions};

#[tokio::test]
async fn session_env_hello_and_refusals() {
    let net = Net::up("ses");
    let pod = sleeper(&net, "web", &[("GREETING", "hi=there"), ("POD_ONLY", "1")]);
    let agent = Agent::start(pod.pid(), &[]).await;

    let (mut client, hello) = Client::connect(agent.addr, TOKEN).await.expect("accepted");
    assert_eq!(hello.target.pid, pod.pid());
    assert_eq!(hello.target.hostname, "web");
    assert_eq!(hello.protocol_version, tether_protocol::PROTOCOL_VERSION);

    let Ok(Response::Env(env)) = client.call(Request::Env).await else {
        panic!("env failed")
    };
    assert!(
        env.contains(&("GREETING".into(), "hi=there".into())),
        "{env:?}"
    );
    assert!(env.contains(&("POD_ONLY".into(), "1".into())), "{env:?}");
    assert!(
        !env.iter().any(|(k, _)| k == "TETHER_AGENT_TOKEN"),
        "the agent's own env must not leak"
    );

    client.send(ClientMessage::Ping(42)).await;
    assert_eq!(client.recv().await, AgentMessage::Pong(42));

    // Wrong token.
    let err = Client::connect(agent.addr, "wrong")
        .await
        .err()
        .expect("refused");
    assert_eq!(err, AgentError::Unauthorized);
    // No common version.
    let err = Client::connect_with(agent.addr, TOKEN, 0)
        .await
        .err()
        .expect("refused");
    assert!(
        matches!(err, AgentError::VersionMismatch { client: 0, .. }),
        "{err:?}"
    );
    // Something other than hello first: refused, then closed.
    let mut raw = Client::raw(agent.addr).await;
    raw.send(ClientMessage::Ping(1)).await.unwrap();
    match raw.next().await {
        Some(Ok(AgentMessage::Refused(AgentError::Protocol(why)))) => {
            assert!(why.contains("Hello"), "{why}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(
        raw.next().await.is_none(),
        "connection closed after a refusal"
    );

    // The first session still works after all that.
    client.send(ClientMessage::Ping(7)).await;
    assert_eq!(client.recv().await, AgentMessage::Pong(7));
}

#[tokio::test]
async fn two_sessions_have_their_own_files_and_run_requests_concurrently() {
    let net = Net::up("two");
    let pod = sleeper(&net, "web", &[]);
    let agent = Agent::start(pod.pid(), &[]).await;
    let mut a = agent.client().await;
    let mut b = agent.client().await;

    let open = |path: &str| {
        Request::File(FileRequest::Open {
            path: path.into(),
            options: OpenOptions {
                read: true,
                ..Default::default()
            },
        })
    };
    let Ok(Response::File(FileResponse::Opened { fd: fa, .. })) =
        a.call(open("/data/hello.txt")).await
    else {
        panic!("open in a")
    };
    let Ok(Response::File(FileResponse::Opened { fd: fb, .. })) =
        b.call(open("/etc/app.conf")).await
    else {
        panic!("open in b")
    };
    // fd numbers are per session: both may be 1, and each reads its own file.
    let read = |fd| FileRequest::Read { fd, len: 100 };
    assert_eq!(
        a.file(read(fa)).await.unwrap(),
        FileResponse::Data(b"hello from the pod\n".as_slice().into())
    );
    assert_eq!(
        b.file(read(fb)).await.unwrap(),
        FileResponse::Data(b"inside the pod\n".as_slice().into())
    );

    // A slow request must not hold up others of the same session: a connect to an address on
    // the pod subnet that nobody has waits ~3 s for ARP, while a lookup and a seek answer at once.
    let gw = pod.sandbox.gateway.octets();
    let nobody = std::net::SocketAddr::from(([gw[0], gw[1], gw[2], 250], 9));
    let started = tokio::time::Instant::now();
    let slow = a
        .start_request(Request::Outgoing(
            tether_protocol::outgoing::OutgoingRequest::ConnectTcp {
                conn_id: 1,
                remote: nobody,
            },
        ))
        .await;
    let quick = a
        .start_request(Request::Dns(DnsRequest::Lookup {
            name: "localhost".into(),
            family: Family::V4,
        }))
        .await;
    let seek = a
        .start_request(Request::File(FileRequest::Seek {
            fd: fa,
            from: tether_protocol::file::SeekFrom::Start(0),
        }))
        .await;
    let id_of = |m: &AgentMessage| match m {
        AgentMessage::Response { id, .. } | AgentMessage::Failed { id, .. } => *id,
        other => panic!("unexpected {other:?}"),
    };
    let mut ids = [id_of(&a.recv().await), id_of(&a.recv().await)];
    ids.sort();
    assert_eq!(
        ids,
        [quick, seek],
        "the slow connect ({slow}) answered first"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    match a.answer(slow).await {
        AgentMessage::Response { result: Err(e), .. } => {
            assert!(
                [libc::EHOSTUNREACH, libc::ETIMEDOUT, libc::ENETUNREACH].contains(&e.errno),
                "{e:?}"
            )
        }
        other => panic!("connect to nobody: {other:?}"),
    }

    // Closing session a does not affect b; a's fd means nothing in b.
    a.send(ClientMessage::Goodbye).await;
    drop(a);
    let err = b
        .file(FileRequest::Read {
            fd: fa + 100,
            len: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(err.errno, libc::EBADF);
    assert_eq!(
        b.file(FileRequest::Seek {
            fd: fb,
            from: tether_protocol::file::SeekFrom::Start(0)
        })
        .await
        .unwrap(),
        FileResponse::Offset(0)
    );
}

#[tokio::test]
async fn idle_ttl_exit_only_without_sessions() {
    let net = Net::up("ttl");
    let pod = sleeper(&net, "web", &[]);
    let mut agent = Agent::start(pod.pid(), &["--ttl", "1"]).await;
    let mut client = agent.client().await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        agent.child.try_wait().unwrap().is_none(),
        "a live session keeps the agent up past its TTL"
    );
    client.send(ClientMessage::Ping(1)).await;
    assert_eq!(client.recv().await, AgentMessage::Pong(1));
    client.send(ClientMessage::Goodbye).await;
    drop(client);
    let status = tokio::time::timeout(Duration::from_secs(10), agent.child.wait())
        .await
        .expect("agent exits after the TTL")
        .unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn target_gone_is_reported() {
    let net = Net::up("gone");
    let mut pod = sleeper(&net, "web", &[]);
    let pid = pod.pid();
    let agent = Agent::start(pid, &[]).await;
    let mut client = agent.client().await;
    assert!(client.call(Request::Env).await.is_ok());
    pod.kill();
    // The exit watcher warns the session, then requests fail with TargetGone.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match client.request(Request::Env).await {
            AgentMessage::Failed { error, .. } => {
                assert_eq!(error, AgentError::TargetGone { pid });
                break;
            }
            AgentMessage::Response { .. } => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "target never reported gone"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let read = client
        .request(Request::File(FileRequest::Stat {
            path: "/etc/app.conf".into(),
            follow: true,
        }))
        .await;
    assert!(
        matches!(
            read,
            AgentMessage::Failed {
                error: AgentError::TargetGone { .. },
                ..
            }
        ),
        "{read:?}"
    );
    // The warning reached the session too.
    let mut saw_warning = false;
    for _ in 0..4 {
        match tokio::time::timeout(Duration::from_millis(200), client.recv()).await {
            Ok(AgentMessage::Warning(w)) => {
                assert!(w.contains("exited"), "{w}");
                saw_warning = true;
                break;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    assert!(saw_warning, "the session was told the target exited");
}

#[tokio::test]
async fn missing_target_fails_at_start() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tether-agent"))
        .args(["--target-pid", "999999999", "--listen", "127.0.0.1:0"])
        .env("TETHER_AGENT_TOKEN", TOKEN)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "no ready line");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("999999999") && err.contains("does not exist"),
        "{err}"
    );

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tether-agent"))
        .args(["--target-pid", "1"])
        .env_remove("TETHER_AGENT_TOKEN")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("TETHER_AGENT_TOKEN"));
}

#[tokio::test]
async fn container_id_of_the_test_node_and_missing_capability() {
    let net = Net::up("cap");
    let pod = sleeper(&net, "web", &[("K", "v")]);
    // The test node's state file (tests/cluster/node/state.go) for a container id.
    let run_dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(run_dir.path().join("containers")).unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pod.pid())).unwrap();
    let start_time: u64 = stat[stat.rfind(')').unwrap() + 2..]
        .split(' ')
        .nth(19)
        .unwrap()
        .parse()
        .unwrap();
    std::fs::write(
        run_dir.path().join("containers/c-123.json"),
        format!(
            r#"{{"id":"c-123","pid":{},"pid_start_time":{start_time},"pod":"web"}}"#,
            pod.pid()
        ),
    )
    .unwrap();
    let run_dir_str = run_dir.path().to_str().unwrap();
    // Without CAP_SYS_ADMIN the agent cannot enter the pod's netns: it still serves files and env,
    // and network requests say which capability is missing.
    let agent = Agent::spawn(
        &["--container-id", "tether-test://c-123"],
        &[("TETHER_TEST_NODE_RUN_DIR", run_dir_str)],
        |cmd| {
            /// From linux/capability.h (not in the libc crate).
            const CAP_SYS_ADMIN: libc::c_ulong = 21;
            // SAFETY: prctl only, async-signal-safe.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::prctl(libc::PR_CAPBSET_DROP, CAP_SYS_ADMIN, 0, 0, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        },
    )
    .await;
    let (mut c, hello) = Client::connect(agent.addr, TOKEN).await.unwrap();
    assert_eq!(
        hello.target.pid,
        pod.pid(),
        "container id resolved to the pod's pid"
    );
    // setns into the UTS namespace needs CAP_SYS_ADMIN too: the hostname comes from the pod's
    // /etc/hostname instead.
    assert_eq!(hello.target.hostname, "web");
    let Ok(Response::Env(env)) = c.call(Request::Env).await else {
        panic!("env without CAP_SYS_ADMIN")
    };
    assert!(env.contains(&("K".into(), "v".into())));
    assert!(
        c.file(FileRequest::Stat {
            path: "/etc/app.conf".into(),
            follow: true
        })
        .await
        .is_ok()
    );
    let missing = AgentError::MissingCapability {
        capability: "CAP_SYS_ADMIN".into(),
        needed_for: "enter the target's network namespace (setns)".into(),
    };
    match c
        .request(Request::Dns(DnsRequest::Lookup {
            name: "web".into(),
            family: Family::Any,
        }))
        .await
    {
        AgentMessage::Failed { error, .. } => assert_eq!(error, missing),
        other => panic!("{other:?}"),
    }
    match c
        .request(Request::Outgoing(
            tether_protocol::outgoing::OutgoingRequest::ConnectTcp {
                conn_id: 1,
                remote: (pod.sandbox.gateway, 53).into(),
            },
        ))
        .await
    {
        AgentMessage::Failed { error, .. } => assert_eq!(error, missing),
        other => panic!("{other:?}"),
    }

    // An unknown container id fails at start, naming it.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tether-agent"))
        .args([
            "--container-id",
            "tether-test://nope",
            "--listen",
            "127.0.0.1:0",
        ])
        .env("TETHER_AGENT_TOKEN", TOKEN)
        .env("TETHER_TEST_NODE_RUN_DIR", run_dir_str)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nope"), "{err}");
}

#[tokio::test]
async fn files_of_an_ended_session_are_closed() {
    let net = Net::up("fds");
    let pod = sleeper(&net, "web", &[]);
    let agent = Agent::start(pod.pid(), &[]).await;
    let agent_pid = agent.child.id().unwrap();
    // The agent's fds that point at the pod's /etc/app.conf.
    let open_files = || {
        std::fs::read_dir(format!("/proc/{agent_pid}/fd"))
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|target| target.ends_with("etc/app.conf"))
            .count()
    };
    let mut c = agent.client().await;
    for _ in 0..20 {
        let r = c
            .file(FileRequest::Open {
                path: "/etc/app.conf".into(),
                options: OpenOptions {
                    read: true,
                    ..Default::default()
                },
            })
            .await
            .unwrap();
        assert!(matches!(r, FileResponse::Opened { .. }));
    }
    assert_eq!(open_files(), 20);
    // The link just drops (no Goodbye): the session ends all the same.
    drop(c);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while open_files() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} files left open after the session ended",
            open_files()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
