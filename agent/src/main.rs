//! tether-agent: acts inside a target pod's namespaces.

fn main() {}
