//! What a bench prints: rows of (figure, limit measured in the same run,
//! ratio, goal, met or missed), as a table or as one JSON line; plus the
//! small measuring helpers every bench shares (latency percentiles, resident
//! memory, the machine's description).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Map, Value};

/// Which side of the goal is good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Want {
    AtLeast,
    AtMost,
}

impl Want {
    fn holds(self, value: f64, goal: f64) -> bool {
        match self {
            Want::AtLeast => value >= goal,
            Want::AtMost => value <= goal,
        }
    }

    fn sign(self) -> &'static str {
        match self {
            Want::AtLeast => "≥",
            Want::AtMost => "≤",
        }
    }
}

/// The physical limit a figure is compared with, measured in the same run.
#[derive(Debug, Clone, Serialize)]
pub struct Limit {
    pub name: String,
    pub value: f64,
    pub unit: String,
}

/// One measured figure.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// What was measured (and at which size).
    pub figure: String,
    pub value: f64,
    pub unit: String,
    pub limit: Option<Limit>,
    /// How much of the limit the figure reaches (1.0 = all of it): value ÷
    /// limit for rates, limit ÷ value for times.
    pub ratio: Option<f64>,
    /// The goal in words, e.g. "≥ 10000 updates/s, ratio ≥ 0.4".
    pub goal: String,
    /// Every goal of the row holds; `None` when the row has no goal.
    pub met: Option<bool>,
    #[serde(skip)]
    goals: Vec<(String, bool)>,
}

impl Row {
    pub fn new(figure: impl Into<String>, value: f64, unit: &str) -> Row {
        Row {
            figure: figure.into(),
            value,
            unit: unit.to_string(),
            limit: None,
            ratio: None,
            goal: String::new(),
            met: None,
            goals: Vec::new(),
        }
    }

    /// A rate compared with the rate the limit allows: ratio = value ÷ limit.
    pub fn rate_limit(self, name: impl Into<String>, limit: f64, unit: &str) -> Row {
        let ratio = if limit > 0.0 { self.value / limit } else { 0.0 };
        self.limit(name, limit, unit, ratio)
    }

    /// A time compared with the time the limit takes: ratio = limit ÷ value.
    pub fn time_limit(self, name: impl Into<String>, limit: f64, unit: &str) -> Row {
        let ratio = if self.value > 0.0 { limit / self.value } else { 0.0 };
        self.limit(name, limit, unit, ratio)
    }

    pub fn limit(mut self, name: impl Into<String>, limit: f64, unit: &str, ratio: f64) -> Row {
        self.limit = Some(Limit {
            name: name.into(),
            value: limit,
            unit: unit.to_string(),
        });
        self.ratio = Some(ratio);
        self
    }

    /// A goal on the figure itself.
    pub fn goal(mut self, want: Want, goal: f64) -> Row {
        let text = format!("{} {} {}", want.sign(), number(goal), self.unit);
        let held = want.holds(self.value, goal);
        self.goals.push((text, held));
        self.settle()
    }

    /// A goal on the ratio to the limit.
    pub fn ratio_goal(mut self, goal: f64) -> Row {
        let held = self.ratio.is_some_and(|r| r >= goal);
        self.goals.push((format!("ratio ≥ {goal}"), held));
        self.settle()
    }

    fn settle(mut self) -> Row {
        self.goal = self
            .goals
            .iter()
            .map(|(t, _)| t.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        self.met = Some(self.goals.iter().all(|(_, held)| *held));
        self
    }
}

/// Everything one `dogetower bench <name>` run found.
pub struct Report {
    pub bench: &'static str,
    pub quick: bool,
    pub rows: Vec<Row>,
    /// Sizes, secondary figures and counts, by name.
    pub details: Map<String, Value>,
    /// How the figures were obtained, in words (what was excluded, reused, ...).
    pub notes: Vec<String>,
    started: Instant,
    load_at_start: Option<String>,
}

impl Report {
    pub fn new(bench: &'static str, quick: bool) -> Report {
        Report {
            bench,
            quick,
            rows: Vec::new(),
            details: Map::new(),
            notes: Vec::new(),
            started: Instant::now(),
            load_at_start: load_average(),
        }
    }

    pub fn row(&mut self, row: Row) {
        self.rows.push(row);
    }

    pub fn detail(&mut self, key: &str, value: impl Serialize) {
        self.details.insert(
            key.to_string(),
            serde_json::to_value(value).unwrap_or(Value::Null),
        );
    }

    pub fn note(&mut self, text: impl Into<String>) {
        self.notes.push(text.into());
    }

    fn machine(&self) -> Value {
        json!({
            "cpus": std::thread::available_parallelism().map_or(1, |n| n.get()),
            "cpu_model": cpu_model(),
            "load_average_at_start": self.load_at_start,
            "load_average_at_end": load_average(),
        })
    }

    /// The whole run as one JSON object (printed on one line by `--json`).
    pub fn json(&self) -> Value {
        json!({
            "bench": self.bench,
            "quick": self.quick,
            "elapsed_secs": round(self.started.elapsed().as_secs_f64(), 3),
            "machine": self.machine(),
            "rows": self.rows,
            "details": self.details,
            "notes": self.notes,
        })
    }

    /// The table, the details and the notes, for a terminal.
    pub fn table(&self) -> String {
        let header = ["figure", "value", "limit (same run)", "ratio", "goal", "met"];
        let lines: Vec<[String; 6]> = self
            .rows
            .iter()
            .map(|r| {
                [
                    r.figure.clone(),
                    format!("{} {}", number(r.value), r.unit),
                    r.limit.as_ref().map_or_else(
                        || "—".to_string(),
                        |l| format!("{} {} ({})", number(l.value), l.unit, l.name),
                    ),
                    r.ratio.map_or_else(|| "—".to_string(), |x| format!("{x:.2}")),
                    if r.goal.is_empty() {
                        "—".to_string()
                    } else {
                        r.goal.clone()
                    },
                    match r.met {
                        Some(true) => "met".to_string(),
                        Some(false) => "MISSED".to_string(),
                        None => "—".to_string(),
                    },
                ]
            })
            .collect();
        let mut widths = header.map(|h| h.chars().count());
        for line in &lines {
            for (w, cell) in widths.iter_mut().zip(line) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let _ = writeln!(
            out,
            "bench {}{} ({:.1}s)",
            self.bench,
            if self.quick { " --quick" } else { "" },
            self.started.elapsed().as_secs_f64()
        );
        let render = |cells: &[String], out: &mut String| {
            let padded: Vec<String> = cells
                .iter()
                .zip(widths)
                .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
                .collect();
            let _ = writeln!(out, "| {} |", padded.join(" | "));
        };
        render(&header.map(String::from), &mut out);
        render(&widths.map(|w| "-".repeat(w)), &mut out);
        for line in &lines {
            render(line, &mut out);
        }
        for (key, value) in &self.details {
            let _ = writeln!(out, "  {key}: {value}");
        }
        for note in &self.notes {
            let _ = writeln!(out, "  note: {note}");
        }
        let _ = writeln!(out, "  machine: {}", self.machine());
        out
    }
}

/// A number as a person reads it: no decimals above 100, some below.
pub fn number(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

pub fn round(v: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (v * f).round() / f
}

/// Latencies of one kind of request, for percentiles.
#[derive(Debug, Default, Clone)]
pub struct Latencies(Vec<Duration>);

impl Latencies {
    pub fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    pub fn extend(&mut self, other: Latencies) {
        self.0.extend(other.0);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The `p`-th percentile (0-100), nearest rank, in milliseconds.
    pub fn percentile_ms(&mut self, p: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        self.0.sort_unstable();
        let rank = ((p / 100.0) * self.0.len() as f64).ceil() as usize;
        let index = rank.clamp(1, self.0.len()) - 1;
        self.0[index].as_secs_f64() * 1e3
    }

    /// p50, p90, p99 and max in milliseconds, as a JSON object.
    pub fn summary(&mut self) -> Value {
        json!({
            "count": self.0.len(),
            "p50_ms": round(self.percentile_ms(50.0), 3),
            "p90_ms": round(self.percentile_ms(90.0), 3),
            "p99_ms": round(self.percentile_ms(99.0), 3),
            "max_ms": round(self.percentile_ms(100.0), 3),
        })
    }
}

/// A `/proc/<pid>/status` field in KiB (`VmRSS`, `VmHWM`); `None` off Linux.
pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn cpu_model() -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
}

/// The 1, 5 and 15 minute load averages: other work on the machine while
/// the bench ran (builds, other benches) shows here.
fn load_average() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(text.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goals_and_ratios() {
        let row = Row::new("x", 50.0, "ops/s")
            .rate_limit("cap", 100.0, "ops/s")
            .goal(Want::AtLeast, 40.0)
            .ratio_goal(0.4);
        assert_eq!(row.ratio, Some(0.5));
        assert_eq!(row.met, Some(true));
        assert_eq!(row.goal, "≥ 40.00 ops/s, ratio ≥ 0.4");
        let row = Row::new("t", 4.0, "ms")
            .time_limit("alone", 2.0, "ms")
            .goal(Want::AtMost, 2.0);
        assert_eq!(row.ratio, Some(0.5));
        assert_eq!(row.met, Some(false));
        assert_eq!(Row::new("n", 1.0, "s").met, None);
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let mut l = Latencies::default();
        for ms in 1..=100 {
            l.push(Duration::from_millis(ms));
        }
        assert_eq!(l.percentile_ms(50.0), 50.0);
        assert_eq!(l.percentile_ms(99.0), 99.0);
        assert_eq!(l.percentile_ms(100.0), 100.0);
        assert_eq!(Latencies::default().percentile_ms(99.0), 0.0);
    }

    #[test]
    fn table_and_json_carry_every_row() {
        let mut r = Report::new("demo", true);
        r.row(Row::new("a", 1.0, "s").goal(Want::AtMost, 2.0));
        r.detail("size", 3);
        r.note("n");
        let line = r.json().to_string();
        assert!(!line.contains('\n'));
        assert_eq!(r.json()["rows"][0]["met"], true);
        assert!(r.table().contains("| a "), "{}", r.table());
    }
}
