//! The `tether` command line and daemon.

fn main() {}
