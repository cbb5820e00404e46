//! The object's programs: loaded (the verifier's work spread over the CPUs) or kept from the
//! last start of this build ([`super::kept`]), looked up by name either way, and the
//! tail-call tables filled with them.
use aya::Ebpf;
use netpath_common::map_names;

use super::{programs, DatapathError};

/// Programs kept from the last start of this build, by name (none when this start loaded
/// them; they are then in the object).
pub(super) type Kept = std::collections::HashMap<&'static str, aya::programs::Program>;

/// Program `name`: kept, or in `ebpf`, of whatever kind.
fn find<'a>(
    ebpf: &'a mut Ebpf,
    kept: &'a mut Kept,
    name: &'static str,
) -> Result<&'a mut aya::programs::Program, DatapathError> {
    match kept.get_mut(name) {
        Some(p) => Ok(p),
        None => ebpf
            .program_mut(name)
            .ok_or(DatapathError::MissingProgram(name)),
    }
}

/// Program `name` as a `T`: kept, or in `ebpf`.
pub(super) fn prog_in<'a, T>(
    ebpf: &'a mut Ebpf,
    kept: &'a mut Kept,
    name: &'static str,
) -> Result<&'a mut T, DatapathError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    find(ebpf, kept, name)?
        .try_into()
        .map_err(|e| program_error(name, e))
}

/// A descriptor of its own of loaded program `name` (kept, or in `ebpf`), whatever its kind.
pub(super) fn prog_fd(
    ebpf: &mut Ebpf,
    kept: &mut Kept,
    name: &'static str,
) -> Result<aya::programs::ProgramFd, DatapathError> {
    find(ebpf, kept, name)?
        .fd()
        .map_err(|e| program_error(name, e))?
        .try_clone()
        .map_err(|e| DatapathError::Program(name, e.to_string()))
}

/// Puts the programs entry points hand packets on to into `TAIL_CALLS` and `TAIL_CALLS_XDP`
/// (this load's own, or the kept ones).
pub(super) fn fill_tail_calls(ebpf: &mut Ebpf, kept: &mut Kept) -> Result<(), DatapathError> {
    let tails = programs::TAILS
        .iter()
        .map(|t| (map_names::TAIL_CALLS, t))
        .chain(
            programs::TAILS_XDP
                .iter()
                .map(|t| (map_names::TAIL_CALLS_XDP, t)),
        );
    for (map, (slot, prog_name)) in tails {
        let fd = prog_fd(ebpf, kept, prog_name)?;
        set_tail(ebpf, map, *slot, &fd)?;
    }
    Ok(())
}

/// Loads every program of the object, the verifier's work spread over the machine's CPUs:
/// it is most of an agent's start (some two million instructions verified), and each load is
/// a syscall of its own on a program of its own. The largest go first, so no CPU is left with
/// a large one at the end.
pub(super) fn load_programs(ebpf: &mut Ebpf) -> Result<(), DatapathError> {
    use aya::programs::Program;
    let mut work: Vec<(&'static str, &mut Program)> = ebpf
        .programs_mut()
        .filter_map(|(name, prog)| {
            let name = programs::ALL.iter().find(|n| **n == name)?;
            Some((*name, prog))
        })
        .collect();
    if work.len() != programs::ALL.len() {
        let missing = programs::ALL
            .iter()
            .find(|n| !work.iter().any(|(w, _)| w == *n));
        return Err(DatapathError::MissingProgram(
            missing.copied().unwrap_or("?"),
        ));
    }
    // The queue is popped from its end: the largest (first in `BY_SIZE`) last, the rest
    // (small) first.
    work.sort_by_key(|(name, _)| {
        std::cmp::Reverse(
            programs::BY_SIZE
                .iter()
                .position(|n| n == name)
                .unwrap_or(usize::MAX),
        )
    });
    let queue = parking_lot::Mutex::new(work);
    let next = || queue.lock().pop();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| -> Result<(), DatapathError> {
                    while let Some((name, prog)) = next() {
                        let loaded = match prog {
                            Program::SchedClassifier(p) => p.load(),
                            Program::Xdp(p) => p.load(),
                            Program::CgroupSock(p) => p.load(),
                            Program::CgroupSockAddr(p) => p.load(),
                            _ => {
                                return Err(DatapathError::Program(name, "of no known kind".into()))
                            }
                        };
                        loaded.map_err(|e| program_error(name, e))?;
                    }
                    Ok(())
                })
            })
            .collect();
        workers.into_iter().try_for_each(|w| {
            w.join().unwrap_or_else(|_| {
                Err(DatapathError::Pins(
                    "a thread loading programs panicked".into(),
                ))
            })
        })
    })
}

fn set_tail(
    ebpf: &mut Ebpf,
    name: &'static str,
    slot: u32,
    fd: &aya::programs::ProgramFd,
) -> Result<(), DatapathError> {
    let map = ebpf.map_mut(name).ok_or(DatapathError::MissingMap(name))?;
    let mut tails =
        aya::maps::ProgramArray::try_from(map).map_err(|e| DatapathError::Map(name, e))?;
    tails
        .set(slot, fd, 0)
        .map_err(|e| DatapathError::Map(name, e))
}

/// A program error with its causes, on one line (aya's messages name the syscall; the cause
/// says why it failed).
pub(super) fn program_error(name: &'static str, e: aya::programs::ProgramError) -> DatapathError {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    DatapathError::Program(name, msg)
}
