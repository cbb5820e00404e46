//! The few BPF syscalls aya does not expose: open a pin, read what a link or map is, swap a
//! link's program (`BPF_LINK_UPDATE`), detach a link, read a whole map in a few calls
//! (`BPF_MAP_LOOKUP_BATCH`) and write many entries in one (`BPF_MAP_UPDATE_BATCH`).
use std::{
    ffi::CString,
    io,
    os::{
        fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::Path,
};

const BPF_OBJ_GET: libc::c_long = 7;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
const BPF_LINK_UPDATE: libc::c_long = 29;
const BPF_LINK_DETACH: libc::c_long = 34;

/// `union bpf_attr`, large enough for every command used here; unused bytes stay zero.
#[repr(C, align(8))]
struct Attr([u32; 32]);

fn bpf(cmd: libc::c_long, attr: &mut Attr) -> io::Result<libc::c_long> {
    // SAFETY: attr is a valid, zero-padded bpf_attr of the size passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut Attr,
            std::mem::size_of::<Attr>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc)
}

fn fd_from(rc: libc::c_long) -> OwnedFd {
    // SAFETY: the kernel returned a new file descriptor that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(rc as i32) }
}

/// Opens the object pinned at `path` (`BPF_OBJ_GET`).
pub fn obj_get(path: &Path) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let mut attr = Attr([0; 32]);
    let ptr = c.as_ptr() as u64;
    attr.0[0] = ptr as u32;
    attr.0[1] = (ptr >> 32) as u32;
    bpf(BPF_OBJ_GET, &mut attr).map(fd_from)
}

/// `BPF_OBJ_GET_INFO_BY_FD` into `info` (a kernel info struct, possibly a prefix of it).
fn info<T>(fd: BorrowedFd<'_>, info: &mut T) -> io::Result<()> {
    let mut attr = Attr([0; 32]);
    attr.0[0] = fd.as_raw_fd() as u32;
    attr.0[1] = std::mem::size_of::<T>() as u32;
    let ptr = info as *mut T as u64;
    attr.0[2] = ptr as u32;
    attr.0[3] = (ptr >> 32) as u32;
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr).map(drop)
}

/// The first fields of `struct bpf_map_info`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MapInfo {
    pub map_type: u32,
    pub id: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub map_flags: u32,
    pub name: [u8; 16],
}

/// What the map behind `fd` is.
pub fn map_info(fd: BorrowedFd<'_>) -> io::Result<MapInfo> {
    let mut i = MapInfo::default();
    info(fd, &mut i)?;
    Ok(i)
}

/// `struct bpf_link_info`: type, ids, and the type-specific part.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct RawLinkInfo {
    link_type: u32,
    id: u32,
    prog_id: u32,
    _pad: u32,
    target: [u64; 8],
}

/// Link types (`enum bpf_link_type`).
pub mod link_type {
    pub const CGROUP: u32 = 3;
    pub const XDP: u32 = 6;
    pub const TCX: u32 = 11;
}

/// What a link is and where it is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    pub link_type: u32,
    pub id: u32,
    /// The program it runs.
    pub prog_id: u32,
    /// The interface (XDP, TCX; 0 once the interface is gone) or the cgroup id (cgroup).
    pub target: u64,
}

/// What the link behind `fd` is.
pub fn link_info(fd: BorrowedFd<'_>) -> io::Result<LinkInfo> {
    let mut i = RawLinkInfo::default();
    info(fd, &mut i)?;
    let target = match i.link_type {
        link_type::TCX | link_type::XDP => i.target[0] & 0xffff_ffff,
        _ => i.target[0],
    };
    Ok(LinkInfo {
        link_type: i.link_type,
        id: i.id,
        prog_id: i.prog_id,
        target,
    })
}

/// The first fields of `struct bpf_prog_info`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct RawProgInfo {
    prog_type: u32,
    id: u32,
    tag: [u8; 8],
    jited_prog_len: u32,
    xlated_prog_len: u32,
    jited_prog_insns: u64,
    xlated_prog_insns: u64,
    load_time: u64,
    created_by_uid: u32,
    nr_map_ids: u32,
    map_ids: u64,
    name: [u8; 16],
}

/// A loaded program: its id, tag (a hash of its instructions) and name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgInfo {
    pub id: u32,
    pub tag: String,
    pub name: String,
}

fn prog_info_fd(fd: BorrowedFd<'_>) -> io::Result<ProgInfo> {
    let mut i = RawProgInfo::default();
    info(fd, &mut i)?;
    let name_len = i.name.iter().position(|b| *b == 0).unwrap_or(16);
    Ok(ProgInfo {
        id: i.id,
        tag: i.tag.iter().map(|b| format!("{b:02x}")).collect(),
        name: String::from_utf8_lossy(&i.name[..name_len]).into_owned(),
    })
}

/// The program behind `fd`.
pub fn prog_info(fd: impl AsFd) -> io::Result<ProgInfo> {
    prog_info_fd(fd.as_fd())
}

/// The program with id `id`.
pub fn prog_info_by_id(id: u32) -> io::Result<ProgInfo> {
    let mut attr = Attr([0; 32]);
    attr.0[0] = id;
    let fd = bpf(BPF_PROG_GET_FD_BY_ID, &mut attr).map(fd_from)?;
    prog_info_fd(fd.as_fd())
}

/// Makes the link run `prog` instead, atomically (`BPF_LINK_UPDATE`): the hook never runs
/// without a program.
pub fn link_update(link: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> io::Result<()> {
    let mut attr = Attr([0; 32]);
    attr.0[0] = link.as_raw_fd() as u32;
    attr.0[1] = prog.as_raw_fd() as u32;
    bpf(BPF_LINK_UPDATE, &mut attr).map(drop)
}

/// Detaches the link from its hook (`BPF_LINK_DETACH`); the link object lives on, defunct.
pub fn link_detach(link: BorrowedFd<'_>) -> io::Result<()> {
    let mut attr = Attr([0; 32]);
    attr.0[0] = link.as_raw_fd() as u32;
    bpf(BPF_LINK_DETACH, &mut attr).map(drop)
}

/// Entries read per `BPF_MAP_LOOKUP_BATCH` call (more than any hash bucket holds).
const BATCH: usize = 4096;

/// Every entry of the map behind `fd` (not a per-CPU one), read [`BATCH`] at a time with
/// `BPF_MAP_LOOKUP_BATCH`: a few calls for what a key-by-key walk needs two per entry for.
/// `K` and `V` must be the map's key and value types.
pub fn lookup_batch<K: aya::Pod, V: aya::Pod>(fd: BorrowedFd<'_>) -> io::Result<Vec<(K, V)>> {
    let mut out = Vec::new();
    for_each_batch(fd, |keys: &[K], values: &[V]| {
        out.extend(keys.iter().copied().zip(values.iter().copied()))
    })?;
    Ok(out)
}

/// [`lookup_batch`] handing each batch to `f` as it is read, so a large table is never
/// copied whole. Of a hash map, `f` may delete the entries it is handed (the position token
/// is a bucket past them).
pub fn for_each_batch<K: aya::Pod, V: aya::Pod>(
    fd: BorrowedFd<'_>,
    mut f: impl FnMut(&[K], &[V]),
) -> io::Result<()> {
    // SAFETY (zeroed): Pod types are plain data, valid for any bit pattern.
    let mut keys: Vec<K> = vec![unsafe { std::mem::zeroed() }; BATCH];
    let mut values: Vec<V> = vec![unsafe { std::mem::zeroed() }; BATCH];
    // The position token: a key for arrays, a bucket number for hashes.
    let token_len = std::mem::size_of::<K>().max(8);
    let (mut token_in, mut token_out) = (vec![0u8; token_len], vec![0u8; token_len]);
    let mut first = true;
    loop {
        let mut attr = Attr([0; 32]);
        let put = |attr: &mut Attr, at: usize, ptr: u64| {
            attr.0[at] = ptr as u32;
            attr.0[at + 1] = (ptr >> 32) as u32;
        };
        if !first {
            put(&mut attr, 0, token_in.as_ptr() as u64);
        }
        // in_batch, out_batch, keys, values (u64 each), count, map_fd (u32 each).
        put(&mut attr, 2, token_out.as_mut_ptr() as u64);
        put(&mut attr, 4, keys.as_mut_ptr() as u64);
        put(&mut attr, 6, values.as_mut_ptr() as u64);
        attr.0[8] = BATCH as u32;
        attr.0[9] = fd.as_raw_fd() as u32;
        let rc = bpf(BPF_MAP_LOOKUP_BATCH, &mut attr);
        let n = (attr.0[8] as usize).min(BATCH);
        f(&keys[..n], &values[..n]);
        match rc {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
            Err(e) => return Err(e),
        }
        std::mem::swap(&mut token_in, &mut token_out);
        first = false;
    }
}

/// `BPF_MAP_UPDATE_BATCH`: writes `keys[i]` → value `i` of the map behind `fd` in a few calls.
/// `values` holds one value per key, or for a per-CPU map one per key and possible CPU (each
/// `V` padded to 8 bytes by the caller's type).
pub fn update_batch<K: aya::Pod, V: aya::Pod>(
    fd: BorrowedFd<'_>,
    keys: &[K],
    values: &[V],
) -> io::Result<()> {
    if keys.is_empty() {
        return Ok(());
    }
    let per_key = values.len() / keys.len();
    if per_key == 0 || !values.len().is_multiple_of(keys.len()) {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    let mut done = 0;
    while done < keys.len() {
        let mut attr = Attr([0; 32]);
        let put = |attr: &mut Attr, at: usize, ptr: u64| {
            attr.0[at] = ptr as u32;
            attr.0[at + 1] = (ptr >> 32) as u32;
        };
        // keys, values (u64 each), count, map_fd (u32 each).
        put(&mut attr, 4, keys[done..].as_ptr() as u64);
        put(&mut attr, 6, values[done * per_key..].as_ptr() as u64);
        attr.0[8] = (keys.len() - done) as u32;
        attr.0[9] = fd.as_raw_fd() as u32;
        let rc = bpf(BPF_MAP_UPDATE_BATCH, &mut attr);
        // The count comes back as how many were written, also on an error.
        let n = attr.0[8] as usize;
        match rc {
            // Nothing written and no error: stop rather than ask again forever.
            Ok(_) if n == 0 => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(_) => done += n,
            Err(e) if e.raw_os_error() == Some(libc::EINTR) || n > 0 => done += n,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
