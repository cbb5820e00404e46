//! Results: figures with their spread over repeated runs, ratios to baselines, written as
//! Markdown and JSON.
use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};
use serde::Serialize;

/// One measured variant: every repetition's value, in `unit`.
#[derive(Clone, Debug, Serialize)]
pub struct Figure {
    pub variant: String,
    pub unit: String,
    pub runs: Vec<f64>,
    /// Lower is better (costs) or higher is better (rates).
    pub lower_is_better: bool,
    /// For traffic figures: what was offered in each run (same unit), to show loss.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub offered: Vec<f64>,
    /// For traffic figures: how busy (%) the path's CPU was in each run (/proc/stat), so a
    /// rate can be read per second of that CPU ([`Figure::per_path_cpu`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub busy: Vec<f64>,
}

/// The median of `runs`.
pub fn median(runs: &[f64]) -> f64 {
    let mut v = runs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// One figure per variant of `names`, in `unit`, in their order.
pub fn figures<S: Into<String>>(
    names: impl IntoIterator<Item = S>,
    unit: &str,
    lower_is_better: bool,
) -> Vec<Figure> {
    names
        .into_iter()
        .map(|n| Figure::new(n, unit, lower_is_better))
        .collect()
}

impl Figure {
    pub fn new(variant: impl Into<String>, unit: &str, lower_is_better: bool) -> Figure {
        Figure {
            variant: variant.into(),
            unit: unit.into(),
            runs: Vec::new(),
            lower_is_better,
            offered: Vec::new(),
            busy: Vec::new(),
        }
    }
    pub fn median(&self) -> f64 {
        median(&self.runs)
    }
    /// The rate per second of the path's CPU, the median of the runs': what the path would
    /// carry with its CPU all its own. Where the path kept up with the generator (nothing
    /// lost, its CPU partly idle), the rate delivered is the generator's, not the path's, and
    /// two paths' rates compare the generator's turns; their rates per CPU-second compare the
    /// paths. Where the path was saturated (its CPU busy throughout) it is the rate itself.
    pub fn per_path_cpu(&self) -> f64 {
        median(&self.per_path_cpu_runs())
    }
    /// Each run's rate per second of the path's CPU.
    pub fn per_path_cpu_runs(&self) -> Vec<f64> {
        self.runs
            .iter()
            .zip(&self.busy)
            .map(|(r, b)| r * 100.0 / b.max(1.0))
            .collect()
    }
    pub fn min(&self) -> f64 {
        self.runs.iter().copied().fold(f64::INFINITY, f64::min)
    }
    pub fn max(&self) -> f64 {
        self.runs.iter().copied().fold(f64::NEG_INFINITY, f64::max)
    }
}

/// A target the project sets: `variant` against `baseline` as a ratio of medians, or, with
/// no baseline, the variant's median itself.
#[derive(Clone, Debug, Serialize)]
pub struct Target {
    pub what: String,
    pub variant: String,
    pub baseline: Option<String>,
    /// For costs: the ratio (or value) must be ≤ this. For rates: ≥ this.
    pub bound: f64,
    /// What stands between the variant and the bound, measured in the same run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<Limit>,
    /// Rates compared per second of the path's CPU ([`Figure::per_path_cpu`]), not as
    /// delivered.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub per_path_cpu: bool,
}

/// What limits a target, measured in the same run: a floor variant of the same section (a
/// stripped-down path that does only part of the variant's work, so no real path can beat
/// it), or a measurement of another kind (a profile), said in words.
#[derive(Clone, Debug, Serialize)]
pub struct Limit {
    pub why: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub floor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub measured: Option<String>,
}

impl Target {
    pub fn ratio(what: &str, variant: &str, baseline: &str, bound: f64) -> Target {
        Target {
            what: what.into(),
            variant: variant.into(),
            baseline: Some(baseline.into()),
            bound,
            limit: None,
            per_path_cpu: false,
        }
    }
    pub fn absolute(what: &str, variant: &str, bound: f64) -> Target {
        Target {
            what: what.into(),
            variant: variant.into(),
            baseline: None,
            bound,
            limit: None,
            per_path_cpu: false,
        }
    }

    /// Compares the rates per second of the path's CPU ([`Figure::per_path_cpu`]): for a
    /// path the generator cannot saturate, the one measure of the path itself.
    pub fn per_path_cpu(mut self) -> Target {
        self.per_path_cpu = true;
        self
    }

    /// Says what limits this target: `floor` (a variant of the same section) measured the
    /// same way as the target's variant, and `why` it bounds it.
    pub fn limited_by(mut self, floor: &str, why: &str) -> Target {
        self.limit = Some(Limit {
            why: why.into(),
            floor: Some(floor.into()),
            measured: None,
        });
        self
    }

    /// Adds what was `measured` (in words, with figures of this run) to the limit.
    pub fn measured(mut self, measured: String) -> Target {
        if let Some(l) = &mut self.limit {
            l.measured = Some(measured);
        }
        self
    }

    /// Says what limits this target: `why`, and what was `measured` (in words, with figures
    /// of this run) that shows it.
    pub fn limited_as_measured(mut self, why: &str, measured: String) -> Target {
        self.limit = Some(Limit {
            why: why.into(),
            floor: None,
            measured: Some(measured),
        });
        self
    }
}

/// One scenario's results.
#[derive(Clone, Debug, Serialize)]
pub struct Section {
    pub scenario: String,
    pub about: String,
    pub figures: Vec<Figure>,
    pub baseline: String,
    pub targets: Vec<Target>,
    /// Plots written for this section (file names in the results directory).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub plots: Vec<String>,
}

impl Section {
    fn figure(&self, name: &str) -> Option<&Figure> {
        self.figures.iter().find(|f| f.variant == name)
    }

    /// `variant` measured as target `t` measures its own variant: a ratio to its baseline, or
    /// the median itself.
    fn measured(&self, t: &Target, variant: &str) -> Option<f64> {
        let value = |f: &Figure| {
            if t.per_path_cpu {
                f.per_path_cpu()
            } else {
                f.median()
            }
        };
        let v = self.figure(variant)?;
        Some(match &t.baseline {
            Some(b) => value(v) / value(self.figure(b)?),
            None => value(v),
        })
    }

    /// (target, measured ratio, met).
    pub fn checks(&self) -> Vec<(Target, f64, bool)> {
        self.targets
            .iter()
            .filter_map(|t| {
                let v = self.figure(&t.variant)?;
                let r = self.measured(t, &t.variant)?;
                let met = if v.lower_is_better {
                    r <= t.bound
                } else {
                    r >= t.bound
                };
                Some((t.clone(), r, met))
            })
            .collect()
    }
}

#[derive(Serialize)]
pub struct Machine {
    pub kernel: String,
    pub cpu: String,
    pub cores: usize,
}

fn machine() -> Machine {
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Machine { kernel, cpu, cores }
}

#[derive(Serialize)]
pub struct Report {
    pub quick: bool,
    /// When the run started (UTC).
    pub date: String,
    /// The commit measured (`-dirty` with uncommitted changes).
    pub commit: String,
    pub machine: Machine,
    pub sections: Vec<Section>,
}

/// The output of a command, trimmed ("" when it fails).
fn output(prog: &str, args: &[&str]) -> String {
    std::process::Command::new(prog)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// The commit of the working tree, `-dirty` when it has changes.
fn commit() -> String {
    let head = output("git", &["rev-parse", "--short=12", "HEAD"]);
    if head.is_empty() {
        return "unknown".into();
    }
    let dirty = !output("git", &["status", "--porcelain", "--untracked-files=no"]).is_empty();
    format!("{head}{}", if dirty { "-dirty" } else { "" })
}

impl Report {
    pub fn new(quick: bool) -> Report {
        Report {
            quick,
            date: output("date", &["-u", "+%Y-%m-%d %H:%M:%S UTC"]),
            commit: commit(),
            machine: machine(),
            sections: Vec::new(),
        }
    }

    pub fn add(&mut self, s: Section) {
        print!("{}", markdown_section(&s));
        self.sections.push(s);
    }

    /// Writes `report.md` and `report.json` under `dir`; returns the Markdown path.
    pub fn write(&self, dir: &Path) -> Result<PathBuf> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut md = String::from("# netpath benchmark report\n\n");
        md += &format!(
            "| | |\n|---|---|\n| date | {} |\n| commit | {} |\n| machine | kernel {}, {} ({} cores) |\n| run | {} |\n\n",
            self.date,
            self.commit,
            self.machine.kernel,
            self.machine.cpu,
            self.machine.cores,
            if self.quick {
                "quick: short runs, figures are indicative only"
            } else {
                "full"
            }
        );
        for s in &self.sections {
            md += &markdown_section(s);
        }
        let path = dir.join("report.md");
        fs::write(&path, md)?;
        fs::write(dir.join("report.json"), serde_json::to_vec_pretty(self)?)?;
        Ok(path)
    }
}

fn markdown_section(s: &Section) -> String {
    let mut md = format!("## {}\n\n{}\n\n", s.scenario, s.about);
    let traffic = s.figures.iter().any(|f| !f.offered.is_empty());
    // A section of absolute figures (no baseline) has no ratio column.
    let base = s.figure(&s.baseline).map(Figure::median);
    md += "| variant | median | min | max | unit |";
    let mut rule = String::from("|---|---:|---:|---:|---|");
    if base.is_some() {
        md += &format!(" vs {} |", s.baseline);
        rule += "---:|";
    }
    if traffic {
        md += " offered | lost |";
        rule += "---:|---:|";
    }
    let busy = s.figures.iter().any(|f| !f.busy.is_empty());
    if busy {
        md += " path CPU busy | per path CPU-second |";
        rule += "---:|---:|";
    }
    md += &format!("\n{rule}\n");
    for f in &s.figures {
        md += &format!(
            "| {} | {} | {} | {} | {} |",
            f.variant,
            num(f.median()),
            num(f.min()),
            num(f.max()),
            f.unit,
        );
        if let Some(b) = base {
            let r = f.median() / b;
            md += &if r.is_finite() {
                format!(" {r:.2}× |")
            } else {
                " - |".into()
            };
        }
        if traffic && f.offered.is_empty() {
            md += " | |";
        } else if traffic {
            let offered = median(&f.offered);
            let lost = if offered > 0.0 {
                100.0 * (1.0 - f.median() / offered).max(0.0)
            } else {
                0.0
            };
            md += &format!(" {} | {lost:.1}% |", num(offered));
        }
        if busy && f.busy.is_empty() {
            md += " | |";
        } else if busy {
            md += &format!(" {:.0}% | {} |", median(&f.busy), num(f.per_path_cpu()));
        }
        md += "\n";
    }
    for p in &s.plots {
        md += &format!("\n![{p}]({p})\n");
    }
    let checks = s.checks();
    if !checks.is_empty() {
        md += "\n| target | measured | met | what limits it |\n|---|---:|---|---|\n";
        for (t, r, met) in checks {
            let op = if s.figure(&t.variant).is_some_and(|f| f.lower_is_better) {
                "≤"
            } else {
                "≥"
            };
            let lhs = match &t.baseline {
                Some(b) => format!("{} / {}", t.variant, b),
                None => t.variant.clone(),
            };
            let lhs = if t.per_path_cpu {
                format!("{lhs}, per path CPU-second")
            } else {
                lhs
            };
            let (bound, measured) = distinct(t.bound, r);
            md += &format!(
                "| {}: {lhs} {op} {bound} | {measured} | {} | {} |\n",
                t.what,
                if met { "yes" } else { "**no**" },
                if met {
                    String::new()
                } else {
                    limit_text(s, &t)
                }
            );
        }
    }
    md += "\n";
    md
}

/// For a missed target: its limit, with the floor's figure measured as the target measures.
fn limit_text(s: &Section, t: &Target) -> String {
    let Some(l) = &t.limit else {
        return String::new();
    };
    let Some(floor) = &l.floor else {
        return match &l.measured {
            Some(m) => format!("{}: {m}", l.why),
            None => l.why.clone(),
        };
    };
    // The variant and its floor, as figures and as the target measures them.
    let (Some(v), Some(fl), Some(r), Some(f)) = (
        s.figure(&t.variant),
        s.figure(floor),
        s.measured(t, &t.variant),
        s.measured(t, floor),
    ) else {
        return l.why.clone();
    };
    let lower = v.lower_is_better;
    let floor_meets = if lower { f <= t.bound } else { f >= t.bound };
    let text = floor_text(t, l, floor, (v, fl), (r, f), floor_meets);
    match &l.measured {
        Some(m) => format!("{text}; measured: {m}"),
        None => text,
    }
}

/// What a floor says of a target: the variant `v` and floor `fl` as figures, `r` and `f` as
/// the target measures them.
fn floor_text(
    t: &Target,
    l: &Limit,
    floor: &str,
    (v, fl): (&Figure, &Figure),
    (r, f): (f64, f64),
    floor_meets: bool,
) -> String {
    let lower = v.lower_is_better;
    if floor_meets && lower {
        // Costs add up: what the floor leaves of the bound against what the rest takes.
        format!(
            "{floor} alone takes {} of the {} allowed, leaving {}; the rest ({}) takes {} more ({} {})",
            num(f),
            num(t.bound),
            num(t.bound - f),
            l.why,
            num(r - f),
            num(v.median() - fl.median()),
            v.unit,
        )
    } else if floor_meets {
        // Rates: the floor reaches the bound, so netpath's own work is what falls short.
        format!(
            "{floor} reaches {} of the {} asked, so what falls short is the variant's path beyond it: {}; it keeps {:.0}% of {floor}'s rate",
            num(f),
            num(t.bound),
            l.why,
            100.0 * r / f,
        )
    } else {
        format!("{}: {floor} alone measures {}", l.why, num(f))
    }
}

/// A figure with sensible precision for its size.
/// A target's bound and measured value, with enough digits that they read differently
/// whenever they differ (a miss never reads `3.00 | no`).
pub fn distinct(bound: f64, measured: f64) -> (String, String) {
    let (b, m) = (num(bound), num(measured));
    if b != m || bound == measured || !measured.is_finite() {
        return (b, m);
    }
    (3..=9)
        .map(|d| (format!("{bound:.d$}"), format!("{measured:.d$}")))
        .find(|(b, m)| b != m)
        .unwrap_or((b, m))
}

pub fn num(v: f64) -> String {
    if !v.is_finite() {
        "-".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::{distinct, Figure, Section, Target};

    /// A rate figure of `runs`, each with the path's CPU as busy as `busy` says.
    fn rate(name: &str, runs: &[f64], busy: &[f64]) -> Figure {
        let mut f = Figure::new(name, "Mpps", false);
        f.runs.extend_from_slice(runs);
        f.busy.extend_from_slice(busy);
        f
    }

    #[test]
    fn a_path_that_kept_up_is_compared_per_second_of_its_cpu() {
        // The variant delivered all the generator offered in its turn (1.0 Mpps), on 50% of
        // its CPU; the ceiling was offered more (1.2) and took 80%.
        let s = Section {
            scenario: "pps".into(),
            about: String::new(),
            figures: vec![
                rate("xdp", &[1.0, 1.0, 1.1], &[50.0, 50.0, 55.0]),
                rate("ceiling", &[1.2, 1.2, 1.2], &[80.0, 80.0, 80.0]),
            ],
            baseline: "ceiling".into(),
            targets: vec![
                Target::ratio("delivered", "xdp", "ceiling", 0.95),
                Target::ratio("share", "xdp", "ceiling", 0.95).per_path_cpu(),
            ],
            plots: Vec::new(),
        };
        let checks = s.checks();
        // As delivered: the generator's turns, 1.0 / 1.2.
        assert!((checks[0].1 - 1.0 / 1.2).abs() < 1e-9 && !checks[0].2);
        // Per CPU-second: 2.0 Mpps against 1.5.
        assert!((checks[1].1 - 2.0 / 1.5).abs() < 1e-9 && checks[1].2);
    }

    #[test]
    fn a_miss_never_reads_as_the_bound() {
        assert_eq!(distinct(3.0, 2.996), ("3.000".into(), "2.996".into()));
        assert_eq!(distinct(1.0, 1.31), ("1.00".into(), "1.31".into()));
        assert_eq!(distinct(0.5, 0.5), ("0.50".into(), "0.50".into()));
    }
}
