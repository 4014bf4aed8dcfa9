//! One module per subcommand; each has an args struct (clap derive) and a `run` returning the
//! exit code. Errors bubble up to `main`, which prints them as `tether: context: cause`.

pub mod config_flags;
pub mod daemon;
pub mod demo;
pub mod exec;
pub mod ls;
pub mod lsp;
pub mod schema;
pub mod sessions;
pub mod verify_config;
