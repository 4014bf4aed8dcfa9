//! File operations through the agent, against a real test pod's root.

mod common;

use common::{Agent, Client, Net, sleeper};
use tether_protocol::file::{FileRequest as F, FileResponse as R, FileType, OpenOptions, SeekFrom};
use tether_protocol::{Payload, RemoteFd};

fn ro() -> OpenOptions {
    OpenOptions {
        read: true,
        ..Default::default()
    }
}

async fn open(c: &mut Client, path: &str, options: OpenOptions) -> Result<RemoteFd, i32> {
    match c
        .file(F::Open {
            path: path.into(),
            options,
        })
        .await
    {
        Ok(R::Opened { fd, .. }) => Ok(fd),
        Ok(other) => panic!("{other:?}"),
        Err(e) => Err(e.errno),
    }
}

async fn read_whole(c: &mut Client, path: &str) -> Result<Vec<u8>, i32> {
    match c
        .file(F::ReadWhole {
            path: path.into(),
            max_len: 1 << 20,
        })
        .await
    {
        Ok(R::Contents { data, .. }) => Ok(data.0),
        Ok(other) => panic!("{other:?}"),
        Err(e) => Err(e.errno),
    }
}

async fn data(c: &mut Client, req: F) -> Vec<u8> {
    match c.file(req).await {
        Ok(R::Data(d)) => d.0,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn every_file_operation() {
    let net = Net::up("fil");
    let pod = sleeper(&net, "web", &[]);
    let root = pod.root.path().to_owned();
    let agent = Agent::start(pod.pid(), &[]).await;
    let mut c = agent.client().await;

    // ReadWhole; the pod's /etc/hostname is the sandbox's generated one, not the host's.
    assert_eq!(
        read_whole(&mut c, "/etc/app.conf").await.unwrap(),
        b"inside the pod\n"
    );
    assert_eq!(read_whole(&mut c, "/etc/hostname").await.unwrap(), b"web\n");
    let big = c
        .file(F::ReadWhole {
            path: "/etc/app.conf".into(),
            max_len: 3,
        })
        .await
        .unwrap_err();
    assert_eq!(big.errno, libc::EFBIG);
    assert_eq!(read_whole(&mut c, "/nope").await.unwrap_err(), libc::ENOENT);

    // Create, write, seek, read back, pwrite/pread, fstat.
    let rw = OpenOptions {
        read: true,
        write: true,
        create: true,
        truncate: true,
        mode: 0o640,
        ..Default::default()
    };
    let fd = open(&mut c, "/data/new.txt", rw).await.unwrap();
    assert_eq!(
        c.file(F::Write {
            fd,
            data: b"0123456789".as_slice().into()
        })
        .await
        .unwrap(),
        R::Written(10)
    );
    assert_eq!(
        c.file(F::Seek {
            fd,
            from: SeekFrom::Start(2)
        })
        .await
        .unwrap(),
        R::Offset(2)
    );
    assert_eq!(data(&mut c, F::Read { fd, len: 3 }).await, b"234");
    // The rest was read ahead; a relative seek and a write must still land at the app's offset.
    assert_eq!(
        c.file(F::Seek {
            fd,
            from: SeekFrom::Current(1)
        })
        .await
        .unwrap(),
        R::Offset(6)
    );
    assert_eq!(
        c.file(F::Write {
            fd,
            data: b"ab".as_slice().into()
        })
        .await
        .unwrap(),
        R::Written(2)
    );
    assert_eq!(data(&mut c, F::Read { fd, len: 100 }).await, b"89");
    assert_eq!(
        data(&mut c, F::Read { fd, len: 100 }).await,
        b"",
        "end of file"
    );
    assert_eq!(
        c.file(F::WriteAt {
            fd,
            offset: 0,
            data: b"XY".as_slice().into()
        })
        .await
        .unwrap(),
        R::Written(2)
    );
    assert_eq!(
        data(
            &mut c,
            F::ReadAt {
                fd,
                offset: 0,
                len: 4
            }
        )
        .await,
        b"XY23"
    );
    assert_eq!(
        c.file(F::Seek {
            fd,
            from: SeekFrom::End(-2)
        })
        .await
        .unwrap(),
        R::Offset(8)
    );
    let R::Metadata(md) = c.file(F::Fstat { fd }).await.unwrap() else {
        panic!()
    };
    assert_eq!(md.size, 10);
    assert_eq!(md.mode & 0o7777, 0o640);
    assert_eq!(md.mode & libc::S_IFMT, libc::S_IFREG);
    assert_eq!(c.file(F::Close { fd }).await.unwrap(), R::Done);
    assert_eq!(
        c.file(F::Read { fd, len: 1 }).await.unwrap_err().errno,
        libc::EBADF
    );
    assert_eq!(
        std::fs::read(root.join("data/new.txt")).unwrap(),
        b"XY2345ab89"
    );

    // Append mode and exclusive create.
    let app = OpenOptions {
        write: true,
        append: true,
        ..Default::default()
    };
    let fd = open(&mut c, "/data/new.txt", app).await.unwrap();
    c.file(F::Write {
        fd,
        data: b"!".as_slice().into(),
    })
    .await
    .unwrap();
    c.file(F::Close { fd }).await.unwrap();
    assert!(
        std::fs::read(root.join("data/new.txt"))
            .unwrap()
            .ends_with(b"!")
    );
    let excl = OpenOptions {
        write: true,
        create: true,
        exclusive: true,
        mode: 0o600,
        ..Default::default()
    };
    assert_eq!(
        open(&mut c, "/data/new.txt", excl).await.unwrap_err(),
        libc::EEXIST
    );
    assert_eq!(
        open(&mut c, "/data/missing", ro()).await.unwrap_err(),
        libc::ENOENT
    );
    let dir_only = OpenOptions {
        read: true,
        directory: true,
        ..Default::default()
    };
    assert_eq!(
        open(&mut c, "/etc/app.conf", dir_only).await.unwrap_err(),
        libc::ENOTDIR
    );

    // stat follows, lstat does not; access; readlink.
    let R::Metadata(st) = c
        .file(F::Stat {
            path: "/data/abs-link".into(),
            follow: true,
        })
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(st.mode & libc::S_IFMT, libc::S_IFREG);
    assert_eq!(st.size, "inside the pod\n".len() as u64);
    let R::Metadata(lst) = c
        .file(F::Stat {
            path: "/data/abs-link".into(),
            follow: false,
        })
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(lst.mode & libc::S_IFMT, libc::S_IFLNK);
    assert_eq!(
        c.file(F::Access {
            path: "/etc/app.conf".into(),
            mode: libc::R_OK as u32
        })
        .await
        .unwrap(),
        R::Done
    );
    assert_eq!(
        c.file(F::Access {
            path: "/etc/app.conf".into(),
            mode: libc::X_OK as u32
        })
        .await
        .unwrap_err()
        .errno,
        libc::EACCES
    );
    assert_eq!(
        c.file(F::Access {
            path: "/nope".into(),
            mode: 0
        })
        .await
        .unwrap_err()
        .errno,
        libc::ENOENT
    );
    assert_eq!(
        c.file(F::ReadLink {
            path: "/data/abs-link".into()
        })
        .await
        .unwrap(),
        R::Path("/etc/app.conf".into())
    );
    assert_eq!(
        c.file(F::ReadLink {
            path: "/etc/app.conf".into()
        })
        .await
        .unwrap_err()
        .errno,
        libc::EINVAL
    );

    // mkdir, readdir, rename, unlink, rmdir.
    assert_eq!(
        c.file(F::Mkdir {
            path: "/data/d".into(),
            mode: 0o755
        })
        .await
        .unwrap(),
        R::Done
    );
    assert_eq!(
        c.file(F::Mkdir {
            path: "/data/d".into(),
            mode: 0o755
        })
        .await
        .unwrap_err()
        .errno,
        libc::EEXIST
    );
    assert!(root.join("data/d").is_dir());
    let R::Entries(mut entries) = c
        .file(F::ReadDir {
            path: "/data".into(),
        })
        .await
        .unwrap()
    else {
        panic!()
    };
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let names: Vec<(&str, FileType)> = entries
        .iter()
        .map(|e| (e.name.as_str(), e.file_type))
        .collect();
    assert_eq!(
        names,
        [
            ("abs-link", FileType::Symlink),
            ("d", FileType::Dir),
            ("hello.txt", FileType::File),
            ("new.txt", FileType::File),
            ("rel-escape", FileType::Symlink),
            ("root-link", FileType::Symlink),
            ("sub", FileType::Dir),
        ]
    );
    assert_eq!(
        c.file(F::Rename {
            from: "/data/new.txt".into(),
            to: "/data/d/moved.txt".into()
        })
        .await
        .unwrap(),
        R::Done
    );
    assert!(root.join("data/d/moved.txt").exists());
    assert_eq!(
        c.file(F::Rmdir {
            path: "/data/d".into()
        })
        .await
        .unwrap_err()
        .errno,
        libc::ENOTEMPTY
    );
    assert_eq!(
        c.file(F::Unlink {
            path: "/data/d/moved.txt".into()
        })
        .await
        .unwrap(),
        R::Done
    );
    assert_eq!(
        c.file(F::Unlink {
            path: "/data/d".into()
        })
        .await
        .unwrap_err()
        .errno,
        libc::EISDIR
    );
    assert_eq!(
        c.file(F::Rmdir {
            path: "/data/d".into()
        })
        .await
        .unwrap(),
        R::Done
    );
    assert!(!root.join("data/d").exists());
    assert_eq!(
        c.file(F::Rmdir {
            path: "/data/hello.txt".into()
        })
        .await
        .unwrap_err()
        .errno,
        libc::ENOTDIR
    );
}

#[tokio::test]
async fn reads_are_buffered_and_large_reads_come_whole() {
    let net = Net::up("big");
    let pod = sleeper(&net, "web", &[]);
    let content: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(pod.root.path().join("data/big.bin"), &content).unwrap();
    let agent = Agent::start(pod.pid(), &[]).await;
    let mut c = agent.client().await;
    let fd = open(&mut c, "/data/big.bin", ro()).await.unwrap();
    // Small reads, served from the read-ahead, reproduce the file exactly.
    let mut got = Vec::new();
    for _ in 0..1000 {
        got.extend(data(&mut c, F::Read { fd, len: 100 }).await);
    }
    assert_eq!(got, content[..100_000]);
    // A large read is answered whole (it spans the read-ahead and the file).
    let big = data(
        &mut c,
        F::Read {
            fd,
            len: 2 * 1024 * 1024,
        },
    )
    .await;
    assert_eq!(big.len(), 2 * 1024 * 1024);
    assert_eq!(big, content[100_000..100_000 + 2 * 1024 * 1024]);
    let rest = data(&mut c, F::Read { fd, len: 8 << 20 }).await;
    assert_eq!(rest, content[100_000 + 2 * 1024 * 1024..]);
    assert_eq!(
        data(
            &mut c,
            F::ReadAt {
                fd,
                offset: 2_999_990,
                len: 100
            }
        )
        .await,
        content[2_999_990..]
    );
}

#[tokio::test]
async fn paths_never_escape_the_pod_root() {
    let net = Net::up("esc");
    let pod = sleeper(&net, "web", &[]);
    let root = pod.root.path().to_owned();
    let outside = root
        .parent()
        .unwrap()
        .join(format!("outside-{}", std::process::id()));
    std::fs::write(&outside, "host secret").unwrap();
    let host_hostname = std::fs::read("/etc/hostname").unwrap_or_default();
    let agent = Agent::start(pod.pid(), &[]).await;
    let mut c = agent.client().await;

    // `..` stops at the pod's root.
    assert_eq!(
        read_whole(&mut c, "/../../../etc/app.conf").await.unwrap(),
        b"inside the pod\n"
    );
    assert_eq!(
        read_whole(&mut c, "/data/sub/../../../../etc/app.conf")
            .await
            .unwrap(),
        b"inside the pod\n"
    );
    let name = outside.file_name().unwrap().to_str().unwrap();
    assert_eq!(
        read_whole(&mut c, &format!("/../{name}"))
            .await
            .unwrap_err(),
        libc::ENOENT
    );
    // Absolute symlinks mean the pod's root; relative ones cannot climb out.
    assert_eq!(
        read_whole(&mut c, "/data/abs-link").await.unwrap(),
        b"inside the pod\n"
    );
    assert_eq!(
        read_whole(&mut c, "/data/rel-escape").await.unwrap(),
        b"inside the pod\n"
    );
    assert_eq!(
        read_whole(&mut c, "/data/root-link/etc/app.conf")
            .await
            .unwrap(),
        b"inside the pod\n"
    );
    // /proc/N/root and /proc/self/root are magic links: refused rather than followed to the host.
    for path in [
        "/proc/1/root/etc/hostname",
        "/proc/self/root/etc/hostname",
        "/proc/1/cwd/etc/hostname",
    ] {
        match read_whole(&mut c, path).await {
            Err(errno) => assert!(
                [libc::ELOOP, libc::ENOENT, libc::EXDEV, libc::EACCES].contains(&errno),
                "{path}: {errno}"
            ),
            Ok(content) => assert_ne!(content, host_hostname, "{path} reached the host"),
        }
    }
    // Writes through escaping links and paths land inside too.
    let create = OpenOptions {
        write: true,
        create: true,
        mode: 0o644,
        ..Default::default()
    };
    std::os::unix::fs::symlink(&outside, root.join("data/to-outside")).unwrap();
    let fd = open(&mut c, "/data/to-outside", create).await;
    // The link's target path does not exist inside the root: created there, or refused.
    if let Ok(fd) = fd {
        c.file(F::Write {
            fd,
            data: Payload(b"pwned".to_vec()),
        })
        .await
        .unwrap();
        c.file(F::Close { fd }).await.unwrap();
    }
    assert_eq!(std::fs::read(&outside).unwrap(), b"host secret");
    assert_eq!(
        c.file(F::Mkdir {
            path: "/../../escaped-dir".into(),
            mode: 0o755
        })
        .await
        .unwrap(),
        R::Done
    );
    assert!(root.join("escaped-dir").is_dir());
    assert!(!root.parent().unwrap().join("escaped-dir").exists());
    assert_eq!(
        c.file(F::Rename {
            from: "/etc/app.conf".into(),
            to: "/data/root-link/../../moved.conf".into()
        })
        .await
        .unwrap(),
        R::Done
    );
    assert!(root.join("moved.conf").exists());
    assert_eq!(
        c.file(F::Unlink {
            path: format!("/../{name}")
        })
        .await
        .unwrap_err()
        .errno,
        libc::ENOENT
    );
    assert!(outside.exists());
    assert_eq!(
        c.file(F::Rmdir { path: "/".into() })
            .await
            .unwrap_err()
            .errno,
        libc::EBUSY
    );
    std::fs::remove_file(&outside).unwrap();
}

#[tokio::test]
async fn an_answer_over_the_frame_limit_is_an_error_not_a_dead_session() {
    let net = Net::up("huge");
    let pod = sleeper(&net, "web", &[]);
    // ~70k entries of 250-byte names: a listing of about 18 MB, over the 16 MiB frame limit.
    let dir = pod.root.path().join("data/huge");
    std::fs::create_dir(&dir).unwrap();
    for i in 0..70_000 {
        std::fs::File::create(dir.join(format!("{i:0>250}"))).unwrap();
    }
    let agent = Agent::start(pod.pid(), &[]).await;
    let mut c = agent.client().await;
    let err = c
        .file(F::ReadDir {
            path: "/data/huge".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.errno, libc::EOVERFLOW, "{err:?}");
    // The session goes on.
    assert_eq!(
        read_whole(&mut c, "/etc/app.conf").await.unwrap(),
        b"inside the pod\n"
    );
}
