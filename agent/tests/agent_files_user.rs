//! A target that runs as an unprivileged user: path operations act as that user, so the files
//! a session creates belong to the pod's user and root-only files stay out of reach.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;

use common::{Agent, Client};
use tether_protocol::file::{FileRequest as F, FileResponse as R, OpenOptions};

const NOBODY: u32 = 65534;

/// A process running as nobody (its root is the host's, so paths below are host paths).
struct Unprivileged(std::process::Child);

impl Unprivileged {
    fn start() -> Self {
        let child = std::process::Command::new("sleep")
            .arg("120")
            .uid(NOBODY)
            .gid(NOBODY)
            .spawn()
            .expect("start sleep as nobody");
        Self(child)
    }
}

impl Drop for Unprivileged {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn errno(c: &mut Client, req: F) -> i32 {
    match c.file(req).await {
        Err(e) => e.errno,
        Ok(r) => panic!("expected an error, got {r:?}"),
    }
}

fn create() -> OpenOptions {
    OpenOptions {
        write: true,
        create: true,
        mode: 0o644,
        ..Default::default()
    }
}

#[tokio::test]
async fn path_operations_act_as_the_targets_user() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: skipped (the agent needs to switch users)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), PermissionsExt::from_mode(0o755)).unwrap();
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, PermissionsExt::from_mode(0o777)).unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, b"root only").unwrap();
    std::fs::set_permissions(&secret, PermissionsExt::from_mode(0o600)).unwrap();
    let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();

    let target = Unprivileged::start();
    let agent = Agent::start(target.0.id(), &[]).await;
    let mut c = agent.client().await;

    // Created files and directories belong to the target's user.
    let file = shared.join("made-by-session");
    let opened = c
        .file(F::Open {
            path: path(&file),
            options: create(),
        })
        .await
        .unwrap();
    assert!(matches!(opened, R::Opened { .. }), "{opened:?}");
    let md = std::fs::metadata(&file).unwrap();
    assert_eq!((md.uid(), md.gid()), (NOBODY, NOBODY));
    let sub = shared.join("subdir");
    c.file(F::Mkdir {
        path: path(&sub),
        mode: 0o755,
    })
    .await
    .unwrap();
    assert_eq!(std::fs::metadata(&sub).unwrap().uid(), NOBODY);

    // What the target's user may not do, the session may not either.
    let denied = dir.path().join("not-writable-by-nobody");
    assert_eq!(
        errno(
            &mut c,
            F::Open {
                path: path(&denied),
                options: create()
            }
        )
        .await,
        libc::EACCES
    );
    assert!(!denied.exists());
    assert_eq!(
        errno(
            &mut c,
            F::ReadWhole {
                path: path(&secret),
                max_len: 1024
            }
        )
        .await,
        libc::EACCES
    );
    assert_eq!(
        errno(
            &mut c,
            F::Access {
                path: path(&secret),
                mode: libc::R_OK as u32
            }
        )
        .await,
        libc::EACCES,
        "access answers for the target's user"
    );
    assert_eq!(
        errno(
            &mut c,
            F::Unlink {
                path: path(&secret)
            }
        )
        .await,
        libc::EACCES
    );
    assert!(secret.exists());
}
