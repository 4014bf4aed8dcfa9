//! `tether ls`: the targets of a namespace, through the daemon's watch cache.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::Args;
use tether::{
    discovery::{self, Paths},
    server::api::{TargetInfo, TargetKind, TargetList},
};

/// `tether ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Namespace. Default: the context's namespace.
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// kubeconfig context. Default: the current context.
    #[arg(long)]
    pub context: Option<String>,
    /// kubeconfig file. Default: $KUBECONFIG, then ~/.kube/config.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Only these kinds (pod, deployment, statefulset); repeatable.
    #[arg(long = "kind", value_parser = parse_kind)]
    pub kinds: Vec<TargetKind>,
    /// Print the `targets.list` result as JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_kind(s: &str) -> Result<TargetKind, String> {
    serde_json::from_value(serde_json::Value::String(s.to_ascii_lowercase()))
        .map_err(|_| "expected pod, deployment or statefulset".to_owned())
}

/// Runs `tether ls`, starting the daemon if needed.
pub async fn run(args: LsArgs) -> anyhow::Result<ExitCode> {
    let paths = Paths::from_env().context("cannot find the state dir")?;
    let exe = std::env::current_exe().context("cannot find the tether executable")?;
    let info = discovery::ensure_daemon(&paths, &exe)
        .await
        .context("cannot reach the tether daemon")?;
    if info.version != env!("CARGO_PKG_VERSION") {
        eprintln!(
            "tether: warning: the running daemon is version {}, this tether is {}\n  help: restart it: `tether daemon stop && tether daemon start`",
            info.version,
            env!("CARGO_PKG_VERSION")
        );
    }
    let client = discovery::connect(&info).await?;
    let mut params = serde_json::json!({
        "namespace": args.namespace,
        "context": args.context,
        "kubeconfig": args.kubeconfig,
    });
    if !args.kinds.is_empty() {
        params["kinds"] = serde_json::to_value(&args.kinds)?;
    }
    let list: TargetList = discovery::call(&client, "targets.list", params).await?;
    if args.json {
        print_stdout(&format!("{}\n", serde_json::to_string_pretty(&list)?))?;
    } else {
        print_stdout(&table(&list))?;
        for w in &list.warnings {
            eprintln!("tether: warning: {w}");
        }
        if list.targets.is_empty() {
            eprintln!(
                "tether: no pods, deployments or statefulsets in namespace {} (context {})",
                list.namespace, list.context
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes to stdout; a closed pipe (`tether ls | head`) is not an error.
pub fn print_stdout(text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// The table `tether ls` prints: kind/name, namespace, containers, ready, ports.
pub fn table(list: &TargetList) -> String {
    let rows: Vec<[String; 5]> = list.targets.iter().map(row).collect();
    let header = ["NAME", "NAMESPACE", "CONTAINERS", "READY", "PORTS"].map(str::to_owned);
    let mut widths = header.clone().map(|h| h.len());
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("   ").trim_end());
        out.push('\n');
    }
    out
}

fn row(t: &TargetInfo) -> [String; 5] {
    let containers = t
        .containers
        .iter()
        .map(|c| c.name.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let ports = t
        .ports
        .iter()
        .map(|p| format!("{}/{}", p.port, p.protocol))
        .collect::<Vec<_>>()
        .join(",");
    let dash = |s: String| if s.is_empty() { "-".to_owned() } else { s };
    [
        t.path.clone(),
        t.namespace.clone(),
        dash(containers),
        t.ready_text.clone(),
        dash(ports),
    ]
}
