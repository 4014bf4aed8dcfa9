//! Remote file operations. Paths are as the target sees them (the agent resolves them inside the
//! target's root and never lets them escape it).

use serde::{Deserialize, Serialize};

use crate::{Payload, RemoteFd};

/// How to open a remote file. Mirrors the `open(2)` flags tether supports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct OpenOptions {
    /// `O_RDONLY` or `O_RDWR`.
    pub read: bool,
    /// `O_WRONLY` or `O_RDWR`.
    pub write: bool,
    /// `O_APPEND`.
    pub append: bool,
    /// `O_CREAT`.
    pub create: bool,
    /// `O_TRUNC`.
    pub truncate: bool,
    /// `O_EXCL` (with `create`).
    pub exclusive: bool,
    /// `O_DIRECTORY`.
    pub directory: bool,
    /// `O_NOFOLLOW`.
    pub no_follow: bool,
    /// Permission bits for a created file.
    pub mode: u32,
}

/// Where a seek starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum SeekFrom {
    /// `SEEK_SET`.
    Start(u64),
    /// `SEEK_CUR`.
    Current(i64),
    /// `SEEK_END`.
    End(i64),
}

/// A timestamp as `stat` reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Timespec {
    /// Seconds since the epoch.
    pub sec: i64,
    /// Nanoseconds.
    pub nsec: u32,
}

/// The fields of `struct stat` that tether reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Metadata {
    /// Device id.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// File type and permission bits (`st_mode`).
    pub mode: u32,
    /// Hard links.
    pub nlink: u64,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Device id of a special file.
    pub rdev: u64,
    /// Size in bytes.
    pub size: u64,
    /// Preferred IO block size.
    pub blksize: u64,
    /// 512-byte blocks allocated.
    pub blocks: u64,
    /// Last access.
    pub atime: Timespec,
    /// Last modification.
    pub mtime: Timespec,
    /// Last status change.
    pub ctime: Timespec,
}

/// File type of a directory entry (`d_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum FileType {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Anything else (device, fifo, socket).
    Other,
}

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct DirEntry {
    /// File name, no path.
    pub name: String,
    /// Inode number.
    pub ino: u64,
    /// Entry type.
    pub file_type: FileType,
}

/// A file operation. Sent layer -> daemon and daemon -> agent unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum FileRequest {
    /// Open a file and keep a remote handle. Answered with [`FileResponse::Opened`].
    Open {
        /// Absolute path in the target.
        path: String,
        /// Flags.
        options: OpenOptions,
    },
    /// Open, read up to `max_len` bytes and close in one round trip; answered with
    /// [`FileResponse::Contents`]. The layer uses it for read-only opens so a small remote file
    /// costs one round trip and then lives in a local memory file.
    ReadWhole {
        /// Absolute path in the target.
        path: String,
        /// Read at most this much; a larger file answers `EFBIG` and the caller falls back to
        /// [`FileRequest::Open`].
        max_len: u64,
    },
    /// Read from the handle's current offset. Answered with [`FileResponse::Data`].
    Read {
        /// Handle.
        fd: RemoteFd,
        /// At most this many bytes.
        len: u64,
    },
    /// Read at an offset without moving the handle's offset.
    ReadAt {
        /// Handle.
        fd: RemoteFd,
        /// Offset.
        offset: u64,
        /// At most this many bytes.
        len: u64,
    },
    /// Write at the current offset. Answered with [`FileResponse::Written`].
    Write {
        /// Handle.
        fd: RemoteFd,
        /// Bytes.
        data: Payload,
    },
    /// Write at an offset without moving the handle's offset.
    WriteAt {
        /// Handle.
        fd: RemoteFd,
        /// Offset.
        offset: u64,
        /// Bytes.
        data: Payload,
    },
    /// Move the handle's offset. Answered with [`FileResponse::Offset`].
    Seek {
        /// Handle.
        fd: RemoteFd,
        /// Where to.
        from: SeekFrom,
    },
    /// `fstat`. Answered with [`FileResponse::Metadata`].
    Fstat {
        /// Handle.
        fd: RemoteFd,
    },
    /// Close the handle. Answered with [`FileResponse::Done`].
    Close {
        /// Handle.
        fd: RemoteFd,
    },
    /// `stat` (`follow`) or `lstat`. Answered with [`FileResponse::Metadata`].
    Stat {
        /// Absolute path.
        path: String,
        /// Follow a final symlink.
        follow: bool,
    },
    /// `access`. Answered with [`FileResponse::Done`].
    Access {
        /// Absolute path.
        path: String,
        /// `R_OK | W_OK | X_OK` or `F_OK`.
        mode: u32,
    },
    /// List a directory whole. Answered with [`FileResponse::Entries`].
    ReadDir {
        /// Absolute path.
        path: String,
    },
    /// `readlink`. Answered with [`FileResponse::Path`].
    ReadLink {
        /// Absolute path.
        path: String,
    },
    /// `mkdir`. Answered with [`FileResponse::Done`].
    Mkdir {
        /// Absolute path.
        path: String,
        /// Permission bits.
        mode: u32,
    },
    /// `unlink`. Answered with [`FileResponse::Done`].
    Unlink {
        /// Absolute path.
        path: String,
    },
    /// `rmdir`. Answered with [`FileResponse::Done`].
    Rmdir {
        /// Absolute path.
        path: String,
    },
    /// `rename`. Answered with [`FileResponse::Done`].
    Rename {
        /// Old path.
        from: String,
        /// New path.
        to: String,
    },
    /// `symlink`: creates `link` pointing at `target`, stored as given (the pod resolves it).
    /// Answered with [`FileResponse::Done`].
    Symlink {
        /// The link's content.
        target: String,
        /// Where the link is created.
        link: String,
    },
}

impl FileRequest {
    /// The remote handle the request works on, for the requests that take one.
    pub fn fd(&self) -> Option<RemoteFd> {
        match self {
            Self::Read { fd, .. }
            | Self::ReadAt { fd, .. }
            | Self::Write { fd, .. }
            | Self::WriteAt { fd, .. }
            | Self::Seek { fd, .. }
            | Self::Fstat { fd }
            | Self::Close { fd } => Some(*fd),
            _ => None,
        }
    }
}

/// The successful answer to a [`FileRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum FileResponse {
    /// A new handle and the file's metadata.
    Opened {
        /// Handle.
        fd: RemoteFd,
        /// Metadata at open time.
        metadata: Metadata,
    },
    /// A whole small file.
    Contents {
        /// The bytes.
        data: Payload,
        /// Metadata at read time.
        metadata: Metadata,
    },
    /// Bytes read; empty at end of file.
    Data(Payload),
    /// Bytes written.
    Written(u64),
    /// New offset.
    Offset(u64),
    /// Metadata.
    Metadata(Metadata),
    /// Directory entries, without `.` and `..`.
    Entries(Vec<DirEntry>),
    /// A path (readlink target).
    Path(String),
    /// Success without data.
    Done,
}
