//! `tether schema`: prints the config file's JSON Schema (the content of
//! `schemas/tether.schema.json`).

use std::{
    io::{self, Write},
    process::ExitCode,
};

use anyhow::Context as _;

/// Runs `tether schema`.
pub fn run() -> anyhow::Result<ExitCode> {
    io::stdout()
        .write_all(tether_config::schema_json().as_bytes())
        .context("cannot write the schema")?;
    Ok(ExitCode::SUCCESS)
}
