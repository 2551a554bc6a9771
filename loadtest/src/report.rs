//! Figures as every benchmark reports them: a markdown table for people, JSON
//! for machines, each figure next to the target it is judged against.

use serde::Serialize;

/// One measured figure.
#[derive(Clone, Debug, Serialize)]
pub struct Figure {
    /// The subcommand that measured it (`limits`, `writes`, `burst`, …).
    pub benchmark: &'static str,
    /// What was measured, in words: "NOTIFY→LISTEN p99", "updates/s, 16 writers, live on".
    pub metric: String,
    pub value: f64,
    /// `ms`, `/s`, `KiB`, `%`, `×` …
    pub unit: &'static str,
    /// The target or the reference it is compared with, in words; `None` when there is none.
    pub target: Option<String>,
}

impl Figure {
    pub fn new(benchmark: &'static str, metric: impl Into<String>, value: f64, unit: &'static str) -> Self {
        Figure { benchmark, metric: metric.into(), value, unit, target: None }
    }

    pub fn target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }
}

fn number(value: f64) -> String {
    if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else if value.abs() >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

/// The figures as a markdown table.
pub fn table(figures: &[Figure]) -> String {
    let mut out = String::from("| benchmark | figure | value | target / reference |\n|---|---|---:|---|\n");
    for f in figures {
        out.push_str(&format!(
            "| {} | {} | {} {} | {} |\n",
            f.benchmark,
            f.metric,
            number(f.value),
            f.unit,
            f.target.as_deref().unwrap_or("")
        ));
    }
    out
}

/// Prints the figures as a table, or as one JSON object per line with `--json`.
pub fn print(figures: &[Figure], json: bool) {
    if json {
        for f in figures {
            if let Ok(line) = serde_json::to_string(f) {
                println!("{line}");
            }
        }
    } else {
        print!("{}", table(figures));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_read_naturally() {
        let figures = [
            Figure::new("limits", "NOTIFY→LISTEN p99", 0.4321, "ms").target("reference 0.5 ms"),
            Figure::new("writes", "updates/s, 16 writers", 12345.6, "/s"),
        ];
        let t = table(&figures);
        assert!(t.contains("| limits | NOTIFY→LISTEN p99 | 0.43 ms | reference 0.5 ms |"), "{t}");
        assert!(t.contains("| writes | updates/s, 16 writers | 12346 /s |  |"), "{t}");
    }
}
