//! The report: one block per row (measured value, baselines of the same run, ratio, the DESIGN
//! target, met or missed), a summary table, and the `N passed, N failed` line, where passed
//! means measured. A missed target is reported, never a failure.

use std::fmt::Write as _;

/// One row of DESIGN section 10.
#[derive(Debug)]
pub struct Row {
    /// What is measured.
    pub name: String,
    /// The DESIGN target, in words.
    pub target: &'static str,
    /// The figures, or why they could not be taken.
    pub outcome: Result<Measured, String>,
}

/// The figures of a row.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    /// The measured value, e.g. `12.3 ms p50 (p90 15.0 ms, n=20)`.
    pub value: String,
    /// Baselines measured in the same run, e.g. `peer (kubectl port-forward): 40.0 MB/s`.
    pub baselines: Vec<String>,
    /// The value against its reference, e.g. `0.91x peer`.
    pub ratio: String,
    /// Whether the target is met.
    pub met: bool,
}

impl Row {
    /// A row whose measurement failed.
    pub fn failed(name: String, target: &'static str, e: &anyhow::Error) -> Row {
        Row {
            name,
            target,
            outcome: Err(format!("{e:#}")),
        }
    }
}

/// Renders every row, a summary and the closing count line.
pub fn render(rows: &[Row], header: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{header}\n");
    for (i, r) in rows.iter().enumerate() {
        let _ = writeln!(s, "{}. {}", i + 1, r.name);
        match &r.outcome {
            Ok(m) => {
                let _ = writeln!(s, "   measured   {}", m.value);
                for (j, b) in m.baselines.iter().enumerate() {
                    let label = if j == 0 { "baselines" } else { "" };
                    let _ = writeln!(s, "   {label:<10} {b}");
                }
                let _ = writeln!(s, "   ratio      {}", m.ratio);
                let _ = writeln!(s, "   target     {}", r.target);
                let _ = writeln!(s, "   result     {}", verdict(m));
            }
            Err(e) => {
                let _ = writeln!(s, "   target     {}", r.target);
                let _ = writeln!(s, "   result     NOT MEASURED: {e}");
            }
        }
        s.push('\n');
    }
    let _ = writeln!(s, "summary");
    let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(0);
    for r in rows {
        let (value, result) = match &r.outcome {
            Ok(m) => (short(&m.value), verdict(m).to_owned()),
            Err(_) => ("-".to_owned(), "not measured".to_owned()),
        };
        let _ = writeln!(s, "  {:<width$}  {:<26} {result}", r.name, value);
    }
    let measured = rows.iter().filter(|r| r.outcome.is_ok()).count();
    let met = rows
        .iter()
        .filter(|r| r.outcome.as_ref().is_ok_and(|m| m.met))
        .count();
    let _ = writeln!(
        s,
        "\ntargets met: {met} of {measured} measured rows (a missed target is reported, not a failure)"
    );
    let _ = writeln!(s, "{measured} passed, {} failed", rows.len() - measured);
    s
}

fn verdict(m: &Measured) -> &'static str {
    if m.met { "met" } else { "MISSED" }
}

/// The value up to its first parenthesis, for the summary.
fn short(v: &str) -> String {
    v.split(" (").next().unwrap_or(v).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_measured_rows_as_passed_whatever_the_target() {
        let rows = vec![
            Row {
                name: "a".into(),
                target: "t",
                outcome: Ok(Measured {
                    value: "1 ms (n=3)".into(),
                    baselines: vec!["peer: 2 ms".into()],
                    ratio: "0.5x".into(),
                    met: false,
                }),
            },
            Row::failed("b".into(), "t", &anyhow::anyhow!("no cluster")),
        ];
        let out = render(&rows, "h");
        assert!(out.ends_with("1 passed, 1 failed\n"), "{out}");
        assert!(out.contains("MISSED"), "{out}");
        assert!(out.contains("NOT MEASURED: no cluster"), "{out}");
    }
}
