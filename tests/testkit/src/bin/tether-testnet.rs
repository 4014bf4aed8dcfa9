//! `tether-testnet`: test networks, pod sandboxes and containers from the command line, for the Go
//! test node (virtual-kubelet provider) and for humans. Commands print JSON on stdout; errors go to
//! stderr as `tether-testnet: context: cause` plus a `help:` line, exit status 1.
//! `run` and `exec` replace themselves with the command (exit status 125 if they fail before).
//! See tests/testkit/README.md.

use std::ffi::CString;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use serde::Serialize;
use tether_testkit::container::{self, Bind, ContainerSpec, DEFAULT_PATH};
use tether_testkit::net::{self, NetworkOptions, SandboxOptions};

#[derive(Parser)]
#[command(
    name = "tether-testnet",
    version,
    about = "Test networks, pod sandboxes and containers (tether test cluster)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Networks: a bridge in its own network namespace, a subnet 10.244.N.0/24 and a DNS server.
    #[command(subcommand)]
    Network(NetworkCmd),
    /// Pod sandboxes: a network namespace with a veth on a network's bridge and its own IP.
    #[command(subcommand)]
    Sandbox(SandboxCmd),
    /// Run a command as a container of a sandbox: joins the sandbox's network namespace, makes a
    /// new mount and UTS namespace with DIR as root, then execs CMD (same pid as this process).
    Run(RunArgs),
    /// Run a command inside a running container (joins the net, uts and mnt namespaces of PID).
    Exec(ExecArgs),
    /// Cluster-only services: a virtual IP DNAT-ed to a backend, with a DNS name NAME.cluster.test.
    #[command(subcommand)]
    Service(ServiceCmd),
    /// Extra DNS records of a network's DNS server.
    #[command(subcommand)]
    Dns(DnsCmd),
    /// Remove leftovers: by default only those of dead owner processes.
    Cleanup(CleanupArgs),
}

#[derive(Subcommand)]
enum NetworkCmd {
    /// Create a network (idempotent: prints the existing one).
    Up {
        /// Network name (letters, digits, '-', '_', '.').
        name: String,
        /// Remove the network in `cleanup` once this process is gone (default: keep until `down`).
        #[arg(long)]
        owner_pid: Option<u32>,
    },
    /// Remove a network, its sandboxes and every process in them.
    Down {
        /// Network name.
        name: String,
    },
    /// Print a network.
    Show {
        /// Network name.
        name: String,
    },
    /// Print all networks (a JSON array).
    List,
}

#[derive(Subcommand)]
enum SandboxCmd {
    /// Create a sandbox (idempotent: prints the existing one).
    Create {
        /// Network to attach to.
        #[arg(long)]
        network: String,
        /// Sandbox name, unique on the machine.
        #[arg(long)]
        name: String,
        /// Hostname for the generated /etc/hostname and /etc/hosts (default: the name).
        #[arg(long)]
        hostname: Option<String>,
        /// DNS name resolving to the sandbox IP (repeatable; default HOSTNAME.pods.test).
        #[arg(long = "dns-name")]
        dns_names: Vec<String>,
    },
    /// Delete a sandbox, killing every process in it.
    Delete {
        /// Sandbox name.
        #[arg(long)]
        name: String,
    },
    /// Print a sandbox.
    Show {
        /// Sandbox name.
        #[arg(long)]
        name: String,
    },
    /// Print the sandboxes of a network (a JSON array).
    List {
        /// Network.
        #[arg(long)]
        network: String,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Sandbox whose network namespace the container joins.
    #[arg(long)]
    sandbox: String,
    /// Directory the container sees as `/`.
    #[arg(long)]
    root: PathBuf,
    /// Environment variable K=V (repeatable). The container gets only these (plus a default PATH).
    #[arg(long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// Working directory inside the container.
    #[arg(long)]
    workdir: Option<PathBuf>,
    /// Hostname (default: the sandbox's).
    #[arg(long)]
    hostname: Option<String>,
    /// Bind mount SRC:DST[:ro|:rw] (repeatable); DST is inside the container.
    #[arg(long = "bind", value_name = "SRC:DST[:ro]")]
    binds: Vec<String>,
    /// Do not mount the sandbox's generated hostname, hosts and resolv.conf over the root's /etc.
    #[arg(long)]
    no_etc: bool,
    /// Command and arguments.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

#[derive(clap::Args)]
struct ExecArgs {
    /// Pid of a process in the container (e.g. the one `run` became).
    #[arg(long)]
    pid: u32,
    /// Environment variable K=V (repeatable), added to the environment of PID.
    #[arg(long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// Start from an empty environment instead of the environment of PID.
    #[arg(long)]
    no_inherit_env: bool,
    /// Working directory inside the container.
    #[arg(long)]
    workdir: Option<PathBuf>,
    /// Command and arguments.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

#[derive(Subcommand)]
enum ServiceCmd {
    /// Add or replace a service: VIP:PORT (TCP and UDP) -> TARGET.
    Add {
        /// Network.
        #[arg(long)]
        network: String,
        /// Service name; DNS name NAME.cluster.test.
        #[arg(long)]
        name: String,
        /// Port on the virtual IP.
        #[arg(long)]
        port: u16,
        /// Backend IP:PORT (e.g. a sandbox IP).
        #[arg(long)]
        target: SocketAddrV4,
        /// Virtual IP (default: next free in 10.96.N.0/24).
        #[arg(long)]
        ip: Option<Ipv4Addr>,
    },
    /// Remove a service.
    Remove {
        /// Network.
        #[arg(long)]
        network: String,
        /// Service name.
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand)]
enum DnsCmd {
    /// Add or replace a record NAME -> IP (with PTR).
    Add {
        /// Network.
        #[arg(long)]
        network: String,
        /// Fully qualified name.
        #[arg(long)]
        name: String,
        /// Address.
        #[arg(long)]
        ip: IpAddr,
    },
    /// Remove a record.
    Remove {
        /// Network.
        #[arg(long)]
        network: String,
        /// Fully qualified name.
        #[arg(long)]
        name: String,
    },
}

#[derive(clap::Args)]
struct CleanupArgs {
    /// Remove everything of the testkit, live or not.
    #[arg(long, conflicts_with = "network")]
    all: bool,
    /// Remove this network only.
    #[arg(long)]
    network: Option<String>,
}

fn print<T: Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string(v)?);
    Ok(())
}

#[derive(Serialize)]
struct Removed<'a> {
    name: &'a str,
    removed: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let exec_like = matches!(cli.cmd, Cmd::Run(_) | Cmd::Exec(_));
    match dispatch(cli.cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tether-testnet: {e:#}");
            ExitCode::from(if exec_like { 125 } else { 1 })
        }
    }
}

fn dispatch(cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::Network(NetworkCmd::Up { name, owner_pid }) => {
            let testsrv = tether_testkit::testsrv_bin()?;
            print(&net::network_up(
                &name,
                &NetworkOptions { owner_pid, testsrv },
            )?)
        }
        Cmd::Network(NetworkCmd::Down { name }) => print(&Removed {
            removed: net::network_down(&name)?,
            name: &name,
        }),
        Cmd::Network(NetworkCmd::Show { name }) => print(&net::network_info(&name)?),
        Cmd::Network(NetworkCmd::List) => print(&net::network_list()?),
        Cmd::Sandbox(SandboxCmd::Create {
            network,
            name,
            hostname,
            dns_names,
        }) => {
            let opts = SandboxOptions {
                hostname,
                dns_names: (!dns_names.is_empty()).then_some(dns_names),
            };
            print(&net::sandbox_create(&network, &name, &opts)?)
        }
        Cmd::Sandbox(SandboxCmd::Delete { name }) => print(&Removed {
            removed: net::sandbox_delete(&name)?,
            name: &name,
        }),
        Cmd::Sandbox(SandboxCmd::Show { name }) => print(&net::sandbox_info(&name)?),
        Cmd::Sandbox(SandboxCmd::List { network }) => print(&net::sandbox_list(&network)?),
        Cmd::Run(args) => run(args),
        Cmd::Exec(args) => exec(args),
        Cmd::Service(ServiceCmd::Add {
            network,
            name,
            port,
            target,
            ip,
        }) => print(&net::service_add(
            &network,
            &name,
            ip,
            port,
            *target.ip(),
            target.port(),
        )?),
        Cmd::Service(ServiceCmd::Remove { network, name }) => print(&Removed {
            removed: net::service_remove(&network, &name)?,
            name: &name,
        }),
        Cmd::Dns(DnsCmd::Add { network, name, ip }) => {
            net::dns_add(&network, &name, ip)?;
            print(&tether_testkit::DnsRecord { name, ip })
        }
        Cmd::Dns(DnsCmd::Remove { network, name }) => print(&Removed {
            removed: net::dns_remove(&network, &name)?,
            name: &name,
        }),
        Cmd::Cleanup(CleanupArgs { all, network }) => {
            if let Some(name) = network {
                let removed = net::network_down(&name)?;
                print(&tether_testkit::CleanupReport {
                    networks: if removed { vec![name] } else { vec![] },
                    ..Default::default()
                })
            } else if all {
                print(&tether_testkit::cleanup_all()?)
            } else {
                print(&tether_testkit::cleanup_stale()?)
            }
        }
    }
}

fn parse_env(pairs: &[String]) -> Result<Vec<(String, String)>> {
    pairs
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => bail!("invalid --env `{kv}`: expected K=V"),
        })
        .collect()
}

fn run(args: RunArgs) -> Result<()> {
    let sb = net::sandbox_info(&args.sandbox)?;
    let env = parse_env(&args.env)?;
    let binds = args
        .binds
        .iter()
        .map(|b| Bind::parse(b))
        .collect::<Result<Vec<_>, _>>()?;
    let spec = ContainerSpec {
        netns: Some(sb.netns_path.clone()),
        hostname: Some(args.hostname.unwrap_or(sb.hostname.clone())),
        root: Some(args.root.clone()),
        etc_overlay: (!args.no_etc).then(|| sb.etc_dir.clone()),
        binds,
        workdir: args.workdir,
        new_session: false,
    };
    let prepared = spec
        .prepare()
        .with_context(|| format!("preparing container root {}", args.root.display()))?;
    prepared
        .enter()
        .with_context(|| format!("entering sandbox {}", sb.name))?;
    exec_in_place(&args.command, env)
}

fn exec(args: ExecArgs) -> Result<()> {
    let mut env: Vec<(String, String)> = Vec::new();
    if !args.no_inherit_env {
        let raw = std::fs::read(format!("/proc/{}/environ", args.pid))
            .with_context(|| format!("reading the environment of pid {}", args.pid))?;
        for entry in raw.split(|b| *b == 0).filter(|e| !e.is_empty()) {
            let s = String::from_utf8_lossy(entry);
            if let Some((k, v)) = s.split_once('=') {
                env.push((k.to_string(), v.to_string()));
            }
        }
    }
    for (k, v) in parse_env(&args.env)? {
        env.retain(|(ek, _)| *ek != k);
        env.push((k, v));
    }
    let prepared = container::join(args.pid, args.workdir.as_deref())?;
    prepared
        .enter()
        .with_context(|| format!("joining the namespaces of pid {}", args.pid))?;
    exec_in_place(&args.command, env)
}

/// execve in the container: only returns on failure.
fn exec_in_place(command: &[String], mut env: Vec<(String, String)>) -> Result<()> {
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.push(("PATH".into(), DEFAULT_PATH.into()));
    }
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let program = container::resolve_program(&command[0], &path).with_context(|| {
        format!(
            "command `{}` not found in the container's PATH {path}",
            command[0]
        )
    })?;
    let c_program = CString::new(program.as_os_str().as_bytes())?;
    let argv: Vec<CString> = command
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()?;
    let envp: Vec<CString> = env
        .iter()
        .map(|(k, v)| CString::new(format!("{k}={v}")))
        .collect::<Result<_, _>>()?;
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut envp_ptrs: Vec<*const libc::c_char> = envp.iter().map(|a| a.as_ptr()).collect();
    envp_ptrs.push(std::ptr::null());
    // SAFETY: NUL-terminated arrays of pointers into live CStrings.
    unsafe {
        libc::execve(c_program.as_ptr(), argv_ptrs.as_ptr(), envp_ptrs.as_ptr());
    }
    Err(std::io::Error::last_os_error()).with_context(|| format!("executing {}", program.display()))
}
