//! Collects results and renders them as markdown tables.

/// min / median / max of repeated measurements.
#[derive(Clone, Copy, Debug)]
pub struct Spread {
    pub min: f64,
    pub median: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(samples: &[f64]) -> Spread {
        let mut v = samples.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n == 0 {
            f64::NAN
        } else if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Spread {
            min: v.first().copied().unwrap_or(f64::NAN),
            median,
            max: v.last().copied().unwrap_or(f64::NAN),
        }
    }

    pub fn fmt(&self, digits: usize) -> String {
        format!(
            "{:.d$} / {:.d$} / {:.d$}",
            self.min,
            self.median,
            self.max,
            d = digits
        )
    }
}

pub struct Table {
    pub title: String,
    pub note: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// A goal from issue 6, reported against (never asserted).
#[derive(Clone, Copy, Debug)]
pub enum Target {
    AtLeast(f64),
    AtMost(f64),
}

impl Target {
    pub fn met(self, v: f64) -> bool {
        match self {
            Target::AtLeast(t) => v >= t,
            Target::AtMost(t) => v <= t,
        }
    }

    pub fn text(self) -> String {
        match self {
            Target::AtLeast(t) => format!(">= {t}x"),
            Target::AtMost(t) => format!("<= {t}x"),
        }
    }
}

pub struct TargetRow {
    pub what: String,
    pub ratio: f64,
    pub target: Target,
}

/// Bars (median with a min-max whisker) for one SVG chart.
pub struct Chart {
    pub file: String,
    pub title: String,
    pub unit: String,
    pub bars: Vec<(String, Spread)>,
}

#[derive(Default)]
pub struct Report {
    pub tables: Vec<Table>,
    pub targets: Vec<TargetRow>,
    pub charts: Vec<Chart>,
}

impl Report {
    pub fn table(&mut self, title: &str, note: &str, header: &[&str], rows: Vec<Vec<String>>) {
        self.tables.push(Table {
            title: title.into(),
            note: note.into(),
            header: header.iter().map(|s| s.to_string()).collect(),
            rows,
        });
    }

    pub fn target(&mut self, what: &str, ratio: f64, target: Target) {
        self.targets.push(TargetRow {
            what: what.into(),
            ratio,
            target,
        });
    }

    pub fn chart(&mut self, file: &str, title: &str, unit: &str, bars: Vec<(String, Spread)>) {
        self.charts.push(Chart {
            file: file.into(),
            title: title.into(),
            unit: unit.into(),
            bars,
        });
    }

    /// The targets as a table of its own (added last, after every section ran).
    pub fn add_target_table(&mut self) {
        if self.targets.is_empty() {
            return;
        }
        let rows = self
            .targets
            .iter()
            .map(|t| {
                vec![
                    t.what.clone(),
                    format!("{:.2}x", t.ratio),
                    t.target.text(),
                    if t.target.met(t.ratio) {
                        "met"
                    } else {
                        "MISSED"
                    }
                    .to_string(),
                ]
            })
            .collect();
        self.table(
            "Targets (issue 6)",
            "Ratios of medians measured in this run; reported, not asserted.",
            &["target", "measured", "wanted", "result"],
            rows,
        );
    }

    pub fn markdown(&self) -> String {
        let mut s = String::new();
        for t in &self.tables {
            s.push_str(&format!("\n### {}\n\n", t.title));
            if !t.note.is_empty() {
                s.push_str(&format!("{}\n\n", t.note));
            }
            s.push_str(&format!("| {} |\n", t.header.join(" | ")));
            s.push_str(&format!("|{}\n", "---|".repeat(t.header.len())));
            for r in &t.rows {
                s.push_str(&format!("| {} |\n", r.join(" | ")));
            }
        }
        s
    }
}
