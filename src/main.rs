//! `latchkey`: one binary for the gateway (`serve`) and the CLI.

mod config;
mod lifecycle;
mod serve;

use clap::Parser;
use latchkey_ops::cli::{Cli, Command};

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(ref args) => serve::run(args.clone()),
        _ => latchkey_ops::cli::run(cli),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
