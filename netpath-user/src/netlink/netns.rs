//! Network namespaces by path: whether a path is one (checked without ever blocking: a named
//! pipe given as a namespace cannot hang the agent), and which one — its identity is the
//! device and inode of its nsfs file, recorded with each endpoint so a path that later leads
//! elsewhere (a re-pointed symlink, a reused PID) is noticed.
use std::{
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::{ffi::OsStrExt, fs::MetadataExt},
    },
    path::Path,
};

use crate::model::NetnsId;

/// `NSFS_MAGIC`: the filesystem of namespace files.
const NSFS_MAGIC: i64 = 0x6e73_6673;
/// `NS_GET_NSTYPE`: `_IO(0xb7, 0x3)`.
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

/// Why a path is not a usable network namespace.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NetnsError {
    #[error("network namespace {0:?} does not exist")]
    Missing(String),
    #[error("{0:?} is not a network namespace: {1}")]
    NotNetns(String, String),
}

fn shown(p: &Path) -> String {
    crate::model::echo(&p.display().to_string())
}

/// The identity of the network namespace at `path`.
pub fn identify(path: &Path) -> Result<NetnsId, NetnsError> {
    let not = |why: &str| NetnsError::NotNetns(shown(path), why.to_string());
    let md = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(NetnsError::Missing(shown(path)))
        }
        Err(e) => return Err(not(&e.to_string())),
    };
    if !md.file_type().is_file() {
        return Err(not("not a namespace file"));
    }
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| not("bad path"))?;
    // SAFETY: a valid C string; O_NONBLOCK so nothing can make this wait.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY,
        )
    };
    if fd < 0 {
        return Err(not(&std::io::Error::last_os_error().to_string()));
    }
    // SAFETY: a new descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: statfs into a zeroed struct of the right type.
    let mut sfs: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd and out-pointer.
    if unsafe { libc::fstatfs(fd.as_raw_fd(), &mut sfs) } != 0 || sfs.f_type as i64 != NSFS_MAGIC {
        return Err(not("not a namespace file"));
    }
    // SAFETY: an ioctl without arguments on a namespace file.
    let kind = unsafe { libc::ioctl(fd.as_raw_fd(), NS_GET_NSTYPE) };
    if kind != libc::CLONE_NEWNET {
        return Err(not("another kind of namespace"));
    }
    let md = std::fs::File::from(fd)
        .metadata()
        .map_err(|e| not(&e.to_string()))?;
    Ok(NetnsId {
        dev: md.dev(),
        ino: md.ino(),
    })
}

/// The identity of the calling thread's network namespace.
pub fn own() -> Result<NetnsId, NetnsError> {
    identify(Path::new("/proc/thread-self/ns/net"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_told_apart_from_other_files_without_blocking() {
        let own = own().expect("this thread's namespace");
        assert_eq!(identify(Path::new("/proc/self/ns/net")), Ok(own));
        let dir = crate::scratch::ScratchDir::new("netns");
        let fifo = dir.join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(matches!(identify(&fifo), Err(NetnsError::NotNetns(..))));
        std::fs::write(dir.join("file"), b"").unwrap();
        assert!(matches!(
            identify(&dir.join("file")),
            Err(NetnsError::NotNetns(..))
        ));
        assert!(matches!(identify(&dir), Err(NetnsError::NotNetns(..))));
        assert!(matches!(
            identify(&dir.join("nope")),
            Err(NetnsError::Missing(_))
        ));
        assert!(matches!(
            identify(Path::new("/proc/self/ns/mnt")),
            Err(NetnsError::NotNetns(..))
        ));
    }
}
