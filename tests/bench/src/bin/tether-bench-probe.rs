//! `tether-bench-probe OP key=value...`: runs one benchmark operation and prints its result as
//! one JSON line (see `tether_bench::probe`). The harness runs it under the layer, inside the
//! pod's network namespace and on the host; exit status 1 with `tether-bench-probe: ...` on
//! stderr when the operation fails.

use std::process::ExitCode;

use tether_bench::probe::Op;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let res = Op::from_args(&args).and_then(|op| {
        let out = op.run()?;
        Ok(serde_json::to_string(&out)?)
    });
    match res {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tether-bench-probe: {e:#}");
            ExitCode::FAILURE
        }
    }
}
