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
}

impl Figure {
    pub fn median(&self) -> f64 {
        let mut v = self.runs.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }
    pub fn min(&self) -> f64 {
        self.runs.iter().copied().fold(f64::INFINITY, f64::min)
    }
    pub fn max(&self) -> f64 {
        self.runs.iter().copied().fold(f64::NEG_INFINITY, f64::max)
    }
}

/// A target the issue sets: `variant` against `baseline`, as a ratio of medians.
#[derive(Clone, Debug, Serialize)]
pub struct Target {
    pub what: String,
    pub variant: String,
    pub baseline: String,
    /// For costs: variant/baseline must be ≤ this. For rates: variant/baseline ≥ this.
    pub bound: f64,
}

/// One scenario's results.
#[derive(Clone, Debug, Serialize)]
pub struct Section {
    pub scenario: String,
    pub about: String,
    pub figures: Vec<Figure>,
    pub baseline: String,
    pub targets: Vec<Target>,
}

impl Section {
    fn figure(&self, name: &str) -> Option<&Figure> {
        self.figures.iter().find(|f| f.variant == name)
    }

    /// (target, measured ratio, met).
    pub fn checks(&self) -> Vec<(Target, f64, bool)> {
        self.targets
            .iter()
            .filter_map(|t| {
                let v = self.figure(&t.variant)?;
                let b = self.figure(&t.baseline)?;
                let r = v.median() / b.median();
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
    pub machine: Machine,
    pub sections: Vec<Section>,
}

impl Report {
    pub fn new(quick: bool) -> Report {
        Report {
            quick,
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
            "Machine: kernel {}, {} ({} cores){}\n\n",
            self.machine.kernel,
            self.machine.cpu,
            self.machine.cores,
            if self.quick {
                " — quick mode: short runs, figures are indicative only"
            } else {
                ""
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
    md += &format!(
        "| variant | median | min | max | unit | vs {} |\n|---|---:|---:|---:|---|---:|\n",
        s.baseline
    );
    let base = s.figure(&s.baseline).map(Figure::median);
    for f in &s.figures {
        let ratio = base.map_or(String::from("-"), |b| format!("{:.2}×", f.median() / b));
        md += &format!(
            "| {} | {:.1} | {:.1} | {:.1} | {} | {} |\n",
            f.variant,
            f.median(),
            f.min(),
            f.max(),
            f.unit,
            ratio
        );
    }
    let checks = s.checks();
    if !checks.is_empty() {
        md += "\n| target | measured | met |\n|---|---:|---|\n";
        for (t, r, met) in checks {
            let op = if s.figure(&t.variant).is_some_and(|f| f.lower_is_better) {
                "≤"
            } else {
                "≥"
            };
            md += &format!(
                "| {}: {} / {} {op} {:.2} | {r:.2} | {} |\n",
                t.what,
                t.variant,
                t.baseline,
                t.bound,
                if met { "yes" } else { "**no**" }
            );
        }
    }
    md += "\n";
    md
}
