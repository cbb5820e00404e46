//! How a scenario's runs are laid out: every variant takes its turn in each of several
//! rounds, its lab made afresh each time, so a drift of the machine (a noisy neighbour, a
//! CPU's clock) falls on every variant alike and a reader can trust a 5% difference.
use anyhow::Result;

/// `rounds` in which every variant takes its turn, `per_turn` runs of `secs` each turn.
pub struct Turns {
    pub rounds: usize,
    pub per_turn: usize,
    pub secs: f64,
}

impl Turns {
    /// Floods of frames: runs of 3 s (0.4 s quick).
    pub fn of(quick: bool) -> Turns {
        Turns::with(quick, 3.0, 0.4)
    }

    /// Real sockets (transactions, bulk, queries): runs of `secs` (`quick_secs` quick).
    pub fn with(quick: bool, secs: f64, quick_secs: f64) -> Turns {
        if quick {
            Turns {
                rounds: 1,
                per_turn: 2,
                secs: quick_secs,
            }
        } else {
            Turns {
                rounds: 3,
                per_turn: 2,
                secs,
            }
        }
    }

    /// Runs in all, per variant.
    pub fn runs(&self) -> usize {
        self.rounds * self.per_turn
    }

    /// Calls `turn(i, variant, round)` for every variant of `variants` in every round.
    pub fn each<V>(
        &self,
        variants: &[V],
        mut turn: impl FnMut(usize, &V, usize) -> Result<()>,
    ) -> Result<()> {
        for round in 0..self.rounds {
            for (i, v) in variants.iter().enumerate() {
                turn(i, v, round)?;
            }
        }
        Ok(())
    }

    /// The sentence a report says of it (the scenario says whether its labs are made afresh
    /// for each turn).
    pub fn said(&self) -> String {
        format!(
            "The variants take turns: {} rounds, {} runs of {} s per turn ({} per variant)",
            self.rounds,
            self.per_turn,
            self.secs,
            self.runs()
        )
    }
}

/// The layout of a scenario whose clients, servers and path are not pinned, said in its
/// report.
pub fn unpinned() -> String {
    // SAFETY: sysconf has no preconditions.
    let cpus = unsafe { nix::libc::sysconf(nix::libc::_SC_NPROCESSORS_ONLN) }.max(1);
    format!("nothing pinned: the client, the server and the path share the machine's {cpus} CPUs as the scheduler places them")
}
