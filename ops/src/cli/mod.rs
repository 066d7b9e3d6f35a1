//! The `latchkey` command line. `serve` runs the gateway (handled by the binary); every other
//! command is a client of the admin API, logged in with `latchkey login` or configured through
//! `LATCHKEY_ADMIN_URL` / `LATCHKEY_ADMIN_TOKEN`.

mod client;
mod commands;
mod state;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Latchkey: a credential gateway for apps and AI agents.
#[derive(Parser, Debug)]
#[command(name = "latchkey", version, about, long_about = None)]
pub struct Cli {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the gateway, the admin API and the metrics endpoint.
    Serve(ServeArgs),
    /// Store the admin API URL and token for later commands.
    Login {
        /// Admin API URL, e.g. http://127.0.0.1:8081.
        #[arg(long)]
        url: String,
        /// Admin token (lk_adm_…). Prefer --token-file: argv is visible to other users.
        #[arg(long, conflicts_with = "token_file")]
        token: Option<String>,
        /// File holding the admin token (e.g. latchkey-data/admin-token).
        #[arg(long)]
        token_file: Option<PathBuf>,
    },
    /// Forget the stored login and saved keys.
    Logout,
    /// Show the server's status.
    Status,
    /// List providers with their capabilities.
    Providers,
    /// Store a provider credential. The secret is read from stdin or a prompt, never argv.
    Connect {
        /// Provider namespace, e.g. openai.
        provider: String,
        /// Label for this credential.
        #[arg(long)]
        label: Option<String>,
        /// Workload label(s) this credential serves (repeat or comma-separate).
        #[arg(long = "workload", value_delimiter = ',')]
        workloads: Vec<String>,
    },
    /// Manage proxy keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Print a ready .env snippet for the proxy keys this CLI created.
    Env {
        /// Only this key (id or name).
        #[arg(long)]
        key: Option<String>,
        /// Only this provider.
        #[arg(long)]
        provider: Option<String>,
    },
    /// Inspect the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
}

/// `latchkey keys …`.
#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// List keys (never their values).
    List,
    /// Create a proxy key; it is printed once.
    Create {
        /// Name, e.g. my-agent.
        #[arg(long)]
        name: String,
        /// Provider(s) the key may use (repeat or comma-separate; `*` for any).
        #[arg(long = "provider", value_delimiter = ',', required = true)]
        providers: Vec<String>,
        /// Workload label selecting which credential is injected.
        #[arg(long)]
        workload: Option<String>,
        /// Model allow-list (comma-separated).
        #[arg(long, value_delimiter = ',')]
        models: Vec<String>,
        /// Expire after a duration: 30m, 12h, 7d.
        #[arg(long, conflicts_with = "expires_at")]
        expires_in: Option<String>,
        /// Expire at an RFC 3339 time.
        #[arg(long)]
        expires_at: Option<String>,
    },
    /// Change a key's name, scope or expiry.
    Update {
        /// Key id.
        id: String,
        /// New name.
        #[arg(long)]
        name: Option<String>,
        /// New provider scope (comma-separated).
        #[arg(long = "provider", value_delimiter = ',')]
        providers: Option<Vec<String>>,
        /// New workload label.
        #[arg(long, conflicts_with = "no_workload")]
        workload: Option<String>,
        /// Clear the workload label.
        #[arg(long)]
        no_workload: bool,
        /// New model allow-list (comma-separated).
        #[arg(long, value_delimiter = ',')]
        models: Option<Vec<String>>,
        /// Expire after a duration from now: 30m, 12h, 7d.
        #[arg(long, conflicts_with_all = ["expires_at", "no_expiry"])]
        expires_in: Option<String>,
        /// Expire at an RFC 3339 time.
        #[arg(long, conflicts_with = "no_expiry")]
        expires_at: Option<String>,
        /// Remove the expiry.
        #[arg(long)]
        no_expiry: bool,
    },
    /// Revoke a key; the next request with it is refused.
    Revoke {
        /// Key id.
        id: String,
    },
}

/// `latchkey audit …`.
#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Walk the hash chain and report the first broken link.
    Verify,
    /// Show the newest events.
    List {
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
}

/// Options of `latchkey serve`. Each overrides the config file; environment variables override
/// the config file too.
#[derive(Args, Debug, Default, Clone)]
pub struct ServeArgs {
    /// Gateway listen address [default: 127.0.0.1:8080].
    #[arg(long, env = "LATCHKEY_LISTEN")]
    pub listen: Option<String>,
    /// Admin API listen address [default: 127.0.0.1:8081].
    #[arg(long, env = "LATCHKEY_ADMIN_LISTEN")]
    pub admin_listen: Option<String>,
    /// Data directory [default: ./latchkey-data].
    #[arg(long, env = "LATCHKEY_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// TOML config file.
    #[arg(long, env = "LATCHKEY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Gateway worker threads [default: 1].
    #[arg(long, env = "LATCHKEY_THREADS")]
    pub threads: Option<usize>,
}

/// Runs a client command (everything but `serve`).
pub fn run(cli: Cli) -> anyhow::Result<()> {
    commands::run(cli)
}
