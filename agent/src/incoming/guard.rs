//! The rule guard: a child process that removes the agent's iptables chain once the agent is gone,
//! however it went (exit, panic, SIGKILL, OOM kill).
//!
//! The agent re-executes itself as `tether-agent guard --chain NAME --netns-pid PID --iptables
//! PATH` with a pipe on the guard's stdin and keeps the write end. The kernel closes that end when
//! the agent dies for any reason, so EOF on stdin is the signal. The guard runs in its own process
//! group, so a signal to the agent's group does not take it down before it cleans up, and holds the
//! target's netns open, so it can clean up even if the target process is gone already.
//!
//! `PR_SET_PDEATHSIG` is deliberately not used: it fires when the *thread* that forked the child
//! exits, and tokio retires idle blocking threads, which would clean up under a live agent. A
//! SIGTERM, SIGINT or SIGHUP to the guard also triggers the cleanup.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};

use super::iptables::Iptables;

/// The running guard of one agent. Dropping it (or the agent dying) makes the guard clean up.
#[derive(Debug)]
pub struct Guard {
    child: Child,
    /// Held only so that its closing is the guard's signal.
    _pipe: ChildStdin,
}

impl Guard {
    /// Starts `exe guard ...` for `chain` in the netns of `netns_pid`.
    pub fn spawn(
        exe: &Path,
        chain: &str,
        netns_pid: u32,
        iptables: &Path,
        ip6tables: Option<&Path>,
    ) -> io::Result<Self> {
        let mut cmd = Command::new(exe);
        cmd.arg("guard")
            .arg("--chain")
            .arg(chain)
            .arg("--netns-pid")
            .arg(netns_pid.to_string())
            .arg("--iptables")
            .arg(iptables);
        if let Some(p) = ip6tables {
            cmd.arg("--ip6tables").arg(p);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            // Not the agent's stdout: a parent reading it until EOF must not wait for the guard.
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()?;
        let pipe = child
            .stdin
            .take()
            .ok_or_else(|| io::Error::other("guard stdin not piped"))?;
        Ok(Self { child, _pipe: pipe })
    }

    /// The guard's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the guard without a cleanup, for when there is nothing to clean (the chain could
    /// not be created, and what was made of it is undone).
    pub fn disarm(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Arguments of the `guard` subcommand.
#[derive(Debug, clap::Parser)]
#[command(name = "tether-agent guard")]
pub struct GuardArgs {
    /// The chain to remove.
    #[arg(long)]
    chain: String,
    /// A process in the network namespace that holds the chain.
    #[arg(long)]
    netns_pid: u32,
    /// The iptables binary the agent used.
    #[arg(long)]
    iptables: PathBuf,
    /// The ip6tables binary, when the agent made IPv6 rules too.
    #[arg(long)]
    ip6tables: Option<PathBuf>,
}

extern "C" fn on_signal(_: libc::c_int) {}

/// Runs the guard: waits until stdin closes or a termination signal arrives, then removes the chain.
/// `args` are the arguments after `guard`.
pub fn main(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    use clap::Parser;
    let args = match GuardArgs::try_parse_from(
        std::iter::once(std::ffi::OsString::from("tether-agent guard")).chain(args),
    ) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(2);
        }
    };
    let netns_path = format!("/proc/{}/ns/net", args.netns_pid);
    let ns = match File::open(&netns_path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("tether-agent guard: cannot open {netns_path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    // SAFETY: the handler does nothing; installing it without SA_RESTART makes a blocked read
    // return EINTR, which ends the wait below.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_signal as *const () as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
    wait_for_eof();
    let netns = PathBuf::from(format!("/proc/self/fd/{}", ns.as_raw_fd()));
    let mut ok = true;
    for program in std::iter::once(args.iptables).chain(args.ip6tables) {
        let ipt = Iptables::with_netns(program, netns.clone(), args.netns_pid);
        ok &= remove_with_retries(&ipt, &args.chain);
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Removes `chain`, trying a few times: the agent's last iptables call may still hold the
/// xtables lock.
fn remove_with_retries(ipt: &Iptables, chain: &str) -> bool {
    let mut last = None;
    for _ in 0..3 {
        match ipt.remove_chain(chain) {
            Ok(()) => return true,
            Err(e) => last = Some(e),
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    if let Some(e) = last {
        let program = ipt.program().display();
        eprintln!(
            "tether-agent guard: cannot remove {program} chain {chain}: {e}\n  help: remove it by hand: {program} -t nat -F {chain}; {program} -t nat -X {chain} (after deleting the jumps to it)"
        );
    }
    false
}

/// Blocks until stdin reports EOF or an error, or a signal interrupts the read.
fn wait_for_eof() {
    let mut buf = [0u8; 64];
    loop {
        // SAFETY: reading into a local buffer of the given length.
        let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            return;
        }
    }
}
