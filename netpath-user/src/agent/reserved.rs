//! The host's reserved ports (`ip_local_reserved_ports`): ports the kernel never picks by
//! itself for a socket (connect without bind, bind to port 0). The agent keeps its outbound
//! NAT ports there and every published host port, so no connection of the host ever gets a
//! source port whose replies the datapath would hand to an endpoint; a host socket that
//! binds a published port by number is refused by the post_bind4 hook instead (`sock.rs` of
//! the kernel programs). What the agent adds (ports not reserved before) is recorded in
//! [`HostRecord::reserved_ports`] and given back by `netpath uninstall`; ports someone
//! else reserved are never touched.
use std::{
    fmt,
    io::Write as _,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use netpath_common::{SNAT_PORTS, SNAT_PORT_MIN};
use tracing::info;

use super::host::HostRecord;

/// The sysctl of ports the host's own sockets never get automatically.
pub const RESERVED_PORTS: &str = "/proc/sys/net/ipv4/ip_local_reserved_ports";

/// The kernel parses at most a page of this sysctl per write (later writes of the same open
/// file add to the first): ranges are written in chunks below that.
const WRITE_CHUNK: usize = 3072;

/// A set of ports (0–65535), as the kernel keeps `ip_local_reserved_ports`: a bitmap.
#[derive(Clone, PartialEq, Eq)]
pub struct PortSet(Box<[u64; 1024]>);

impl Default for PortSet {
    fn default() -> Self {
        PortSet(Box::new([0; 1024]))
    }
}

impl PortSet {
    pub fn insert(&mut self, port: u16) {
        self.0[usize::from(port) / 64] |= 1 << (port % 64);
    }

    pub fn insert_range(&mut self, first: u16, last: u16) {
        for p in first..=last {
            self.insert(p);
        }
    }

    pub fn contains(&self, port: u16) -> bool {
        self.0[usize::from(port) / 64] & (1 << (port % 64)) != 0
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }

    /// The ports of `self` or `other`.
    pub fn union(&self, other: &PortSet) -> PortSet {
        let mut out = self.clone();
        out.0
            .iter_mut()
            .zip(other.0.iter())
            .for_each(|(a, b)| *a |= b);
        out
    }

    /// The ports of `self` not in `other`.
    pub fn difference(&self, other: &PortSet) -> PortSet {
        let mut out = self.clone();
        out.0
            .iter_mut()
            .zip(other.0.iter())
            .for_each(|(a, b)| *a &= !b);
        out
    }

    /// Its ports as maximal ranges, in order.
    pub fn ranges(&self) -> Vec<(u16, u16)> {
        let mut out: Vec<(u16, u16)> = Vec::new();
        for p in (0..=u16::MAX).filter(|p| self.contains(*p)) {
            match out.last_mut() {
                Some((_, last)) if u32::from(*last) + 1 == u32::from(p) => *last = p,
                _ => out.push((p, p)),
            }
        }
        out
    }

    /// Parses the kernel's form: `A-B,C,...` (whitespace and an empty value allowed).
    pub fn parse(text: &str) -> anyhow::Result<PortSet> {
        let mut set = PortSet::default();
        for part in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            let port = |s: &str| {
                s.trim()
                    .parse::<u16>()
                    .with_context(|| format!("bad port range {part:?}"))
            };
            let (a, b) = (port(a)?, port(b)?);
            anyhow::ensure!(a <= b, "bad port range {part:?}");
            set.insert_range(a, b);
        }
        Ok(set)
    }

    /// Its ranges, as [`fmt::Display`] writes them, each one a string.
    fn range_strings(&self) -> Vec<String> {
        self.ranges()
            .into_iter()
            .map(|(a, b)| {
                if a == b {
                    a.to_string()
                } else {
                    format!("{a}-{b}")
                }
            })
            .collect()
    }
}

impl fmt::Display for PortSet {
    /// The kernel's form: `40000-59999,8080`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.range_strings().join(","))
    }
}

impl fmt::Debug for PortSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PortSet({self})")
    }
}

/// The outbound NAT ports.
pub fn snat_ports() -> PortSet {
    let mut set = PortSet::default();
    let last = (u32::from(SNAT_PORT_MIN) + SNAT_PORTS - 1) as u16;
    set.insert_range(SNAT_PORT_MIN, last);
    set
}

/// The longest value the sysctl can print: every other port, as `NNNNN,`.
const READ_MAX: usize = 65536 / 2 * 6 + 1;

/// Reads a reserved-ports sysctl, in one read: the kernel prints the whole list at offset 0
/// and nothing after (a reader that starts small and grows gets the list cut off).
pub fn read(file: &Path) -> anyhow::Result<PortSet> {
    use std::io::Read as _;
    let ctx = || format!("reading {}", file.display());
    let mut buf = vec![0u8; READ_MAX];
    let n = std::fs::File::open(file)
        .and_then(|mut f| f.read(&mut buf))
        .with_context(ctx)?;
    let text = std::str::from_utf8(&buf[..n]).with_context(ctx)?;
    PortSet::parse(text).with_context(ctx)
}

/// `set` in the kernel's form, cut at range boundaries into pieces of at most
/// [`WRITE_CHUNK`] bytes.
fn chunks(set: &PortSet) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in set.range_strings() {
        match out.last_mut() {
            Some(c) if c.len() + r.len() < WRITE_CHUNK => {
                c.push(',');
                c.push_str(&r);
            }
            _ => out.push(r),
        }
    }
    out
}

/// Replaces a reserved-ports sysctl with `set`, one write per [`chunks`] piece: the
/// kernel parses each write whole, the first replacing the list and the next adding to it.
pub fn write(file: &Path, set: &PortSet) -> anyhow::Result<()> {
    let ctx = || format!("writing {}", file.display());
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(file)
        .with_context(ctx)?;
    let chunks = chunks(set);
    if chunks.is_empty() {
        // A newline: an empty write leaves the list as it is.
        return f.write_all(b"\n").with_context(ctx);
    }
    for c in chunks {
        f.write_all(c.as_bytes()).with_context(ctx)?;
    }
    Ok(())
}

/// The agent's share of the host's reserved ports: what it wants there is written, what it
/// added is recorded (before it is written) for uninstall.
#[derive(Debug)]
pub struct ReservedPorts {
    state_dir: PathBuf,
    file: PathBuf,
    record: HostRecord,
    /// What the last [`ReservedPorts::sync`] made sure of.
    synced: Option<PortSet>,
}

impl ReservedPorts {
    /// Takes over `record` (the agent's host record, saved in `state_dir`): from now on only
    /// this changes it.
    pub fn new(state_dir: &Path, record: HostRecord) -> Self {
        ReservedPorts {
            state_dir: state_dir.to_path_buf(),
            file: PathBuf::from(RESERVED_PORTS),
            record,
            synced: None,
        }
    }

    /// Uses another sysctl file (tests).
    pub fn with_file(mut self, file: &Path) -> Self {
        self.file = file.to_path_buf();
        self
    }

    /// The ports this agent added and will give back.
    pub fn ours(&self) -> anyhow::Result<PortSet> {
        PortSet::parse(&self.record.reserved_ports.join(","))
    }

    /// Makes the host reserve `wanted` (and what others reserved, untouched); the ports no
    /// longer wanted that this agent added are released.
    pub fn sync(&mut self, wanted: &PortSet) -> anyhow::Result<()> {
        if self.synced.as_ref() == Some(wanted) {
            return Ok(());
        }
        let now = read(&self.file)?;
        let ours_before = self.ours()?;
        let others = now.difference(&ours_before);
        let ours = wanted.difference(&others);
        if ours != ours_before {
            // Recorded before the host changes: what is added is never lost to uninstall.
            self.record.reserved_ports = ours.range_strings();
            self.record.save(&self.state_dir)?;
        }
        let next = others.union(wanted);
        if next != now {
            write(&self.file, &next)?;
            info!(ports = %wanted, "reserved ports");
        }
        self.synced = Some(wanted.clone());
        Ok(())
    }
}

/// Gives back the ports `record` says the agent added to `file` (uninstall); the rest stays.
pub fn release(file: &Path, record: &HostRecord) -> anyhow::Result<Option<PortSet>> {
    let ours = PortSet::parse(&record.reserved_ports.join(","))?;
    if ours.is_empty() {
        return Ok(None);
    }
    let now = read(file)?;
    write(file, &now.difference(&ours))?;
    Ok(Some(ours))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_the_kernels_form() {
        assert!(PortSet::parse("").unwrap().is_empty());
        assert!(PortSet::parse("\n").unwrap().is_empty());
        let s = PortSet::parse("1000-2000, 3000\n").unwrap();
        assert!(s.contains(1000) && s.contains(2000) && s.contains(3000));
        assert!(!s.contains(999) && !s.contains(2001));
        assert_eq!(s.to_string(), "1000-2000,3000");
        assert_eq!(snat_ports().to_string(), "40000-59999");
        assert!(PortSet::parse("5-4").is_err());
        assert!(PortSet::parse("70000").is_err());
        let mut edge = PortSet::default();
        edge.insert(0);
        edge.insert(65535);
        assert_eq!(edge.to_string(), "0,65535");
    }

    #[test]
    fn keeps_what_others_reserved_and_gives_back_only_its_own() {
        let dir = crate::scratch::ScratchDir::new("reserved");
        let file = dir.join("ports");
        std::fs::write(&file, "8080,9000-9001\n").unwrap();
        let mut r = ReservedPorts::new(&dir, HostRecord::default()).with_file(&file);
        let mut wanted = snat_ports();
        wanted.insert(8080);
        wanted.insert(30000);
        r.sync(&wanted).unwrap();
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            "8080,9000-9001,30000,40000-59999"
        );
        // 8080 was reserved before: not the agent's to give back.
        let record = HostRecord::load(&dir).unwrap();
        assert_eq!(record.reserved_ports, ["30000", "40000-59999"]);

        // Someone reserves another port meanwhile; the agent stops wanting 30000.
        std::fs::write(&file, "8080,9000-9001,30000,31000,40000-59999").unwrap();
        r.sync(&snat_ports()).unwrap();
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            "8080,9000-9001,31000,40000-59999"
        );

        let record = HostRecord::load(&dir).unwrap();
        assert_eq!(
            release(&file, &record).unwrap().unwrap().to_string(),
            "40000-59999"
        );
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            "8080,9000-9001,31000"
        );
    }

    #[test]
    fn many_ranges_are_cut_into_pieces_the_kernel_parses_whole() {
        let mut set = PortSet::default();
        for p in (1000..30000).step_by(2) {
            set.insert(p);
        }
        let pieces = chunks(&set);
        assert!(pieces.len() > 1);
        let mut back = PortSet::default();
        for c in &pieces {
            assert!(c.len() <= WRITE_CHUNK, "{}", c.len());
            back = back.union(&PortSet::parse(c).unwrap());
        }
        assert_eq!(back, set);
        assert!(chunks(&PortSet::default()).is_empty());
    }
}
