//! tether's benchmark suite (DESIGN section 10): the pieces shared by the `tether-bench` harness
//! and the `tether-bench-probe` program it runs under the layer, inside the pod and on the host.
//!
//! - [`probe`]: the measured operations (plain libc and std calls) and their JSON result.
//! - [`stats`]: percentiles and throughput of what the probes report.

pub mod probe;
pub mod stats;
