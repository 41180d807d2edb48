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

#[derive(Default)]
pub struct Report {
    pub tables: Vec<Table>,
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
