//! The `latchkey` command line. `serve` runs the gateway (handled by the binary); every other
//! command is a client of the admin API, logged in with `latchkey login` or configured through
//! `LATCHKEY_ADMIN_URL` / `LATCHKEY_ADMIN_TOKEN`.

mod client;
mod commands;
mod device;
mod governance;
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
// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
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
    /// Emergency kill switch: block all secret use (global, this tenant, or one provider).
    #[command(subcommand)]
    Lockdown(LockdownCommand),
    /// Security incidents (e.g. keys auto-suspended after a velocity spike).
    #[command(subcommand)]
    Incidents(IncidentsCommand),
    /// Work with policies (the policy engine's declarative TOML format).
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Requests a policy held for human approval.
    #[command(subcommand)]
    Holds(HoldsCommand),
    /// Rate limits and spend caps of the whole tenant or of a workload (a key's own limits are
    /// set with `keys create|update --rpm/--tpm/--budget-*`).
    #[command(subcommand)]
    Limits(LimitsCommand),
    /// The model registry of the OpenAI-compatible `/v1` endpoint: alias → provider + model.
    #[command(subcommand)]
    Models(ModelsCommand),
}

/// `latchkey models …`.
#[derive(Subcommand, Debug)]
pub enum ModelsCommand {
    /// The registry.
    List,
    /// Map an alias (what clients send as `model`) to a provider and its exact model.
    Set {
        /// The alias, e.g. `fast` or `gpt-4o`.
        alias: String,
        /// The provider that serves it.
        #[arg(long)]
        provider: String,
        /// The provider's exact model id.
        #[arg(long)]
        model: String,
    },
    /// Remove an alias.
    Remove {
        /// The alias.
        alias: String,
    },
}

/// Rate limits and spend caps, shared by `keys create|update` and `limits set`.
#[derive(Args, Debug, Default, Clone)]
pub struct LimitArgs {
    /// Most requests per minute.
    #[arg(long, value_name = "N")]
    pub rpm: Option<u64>,
    /// Most tokens (input + output) per minute.
    #[arg(long, value_name = "N")]
    pub tpm: Option<u64>,
    /// Spend cap per UTC day, in US dollars.
    #[arg(long, value_name = "USD")]
    pub budget_daily: Option<f64>,
    /// Spend cap per UTC month, in US dollars.
    #[arg(long, value_name = "USD")]
    pub budget_monthly: Option<f64>,
}

impl LimitArgs {
    /// Whether any limit was given.
    pub fn is_empty(&self) -> bool {
        self.rpm.is_none()
            && self.tpm.is_none()
            && self.budget_daily.is_none()
            && self.budget_monthly.is_none()
    }
}

/// Lock options shared by `keys create` and `keys update`.
#[derive(Args, Debug, Default)]
pub struct LockArgs {
    /// IP lock: `auto` (bind to the first client address), `none`, or CIDR[,CIDR…].
    #[arg(long, value_name = "auto|none|CIDR[,CIDR…]")]
    pub ip: Option<String>,
    /// Allowed countries, ISO two-letter codes (repeat or comma-separate).
    #[arg(long = "country", value_name = "CC", value_delimiter = ',')]
    pub countries: Option<Vec<String>>,
    /// Allowed cities (repeat or comma-separate).
    #[arg(long = "city", value_name = "NAME", value_delimiter = ',')]
    pub cities: Option<Vec<String>>,
    /// Velocity: suspend the key after more than N requests per window.
    #[arg(long, value_name = "N")]
    pub velocity_requests: Option<u64>,
    /// Velocity: suspend the key after more than N tokens per window.
    #[arg(long, value_name = "N")]
    pub velocity_tokens: Option<u64>,
    /// Velocity: suspend the key after more than N distinct client IPs per window.
    #[arg(long, value_name = "N")]
    pub velocity_ips: Option<u64>,
    /// Velocity window in seconds [default: 60].
    #[arg(long, value_name = "SECS")]
    pub velocity_window: Option<u64>,
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
        #[arg(long, conflicts_with_all = ["expires_at", "expires"])]
        expires_in: Option<String>,
        /// Expire at an RFC 3339 time.
        #[arg(long, conflicts_with = "expires")]
        expires_at: Option<String>,
        /// Expire after a duration (30d) or at an RFC 3339 time.
        #[arg(long, value_name = "30d|RFC3339")]
        expires: Option<String>,
        /// Require signed requests; the signing secret is printed once.
        #[arg(long)]
        signed: bool,
        /// Attach this policy (applied earlier with `latchkey policy apply`).
        #[arg(long)]
        policy: Option<String>,
        /// Locks.
        #[command(flatten)]
        locks: LockArgs,
        /// Rate limits and spend caps.
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Change a key's name, scope, expiry or locks.
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
        #[arg(long, conflicts_with_all = ["no_expiry", "expires"])]
        expires_at: Option<String>,
        /// Expire after a duration from now (30d) or at an RFC 3339 time.
        #[arg(long, value_name = "30d|RFC3339", conflicts_with_all = ["no_expiry", "expires_in"])]
        expires: Option<String>,
        /// Remove the expiry.
        #[arg(long)]
        no_expiry: bool,
        /// Require signed requests with a NEW signing secret (printed once; replaces any old one).
        #[arg(long, conflicts_with = "no_signed")]
        signed: bool,
        /// Stop requiring signed requests and delete the signing secret.
        #[arg(long)]
        no_signed: bool,
        /// Remove the country and city lock.
        #[arg(long, conflicts_with_all = ["countries", "cities"])]
        no_geo: bool,
        /// Remove the device lock.
        #[arg(long)]
        clear_device: bool,
        /// Turn velocity detection off.
        #[arg(long, conflicts_with_all = ["velocity_requests", "velocity_tokens", "velocity_ips", "velocity_window"])]
        no_velocity: bool,
        /// Attach this policy.
        #[arg(long, conflicts_with = "no_policy")]
        policy: Option<String>,
        /// Detach the key's policy (the tenant default, if any, applies again).
        #[arg(long)]
        no_policy: bool,
        /// Remove every limit of the key.
        #[arg(long, conflicts_with_all = ["rpm", "tpm", "budget_daily", "budget_monthly"])]
        no_limits: bool,
        /// Locks (velocity options replace the key's whole velocity setting).
        #[command(flatten)]
        locks: LockArgs,
        /// Limits to set; the key's other limits are kept.
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Revoke a key; the next request with it is refused.
    Revoke {
        /// Key id.
        id: String,
    },
    /// Bind a key to one client IP address (unbind lets the next request re-bind).
    Lock {
        /// Key id.
        id: String,
        /// The address.
        #[arg(long)]
        ip: String,
    },
    /// Forget a key's bound IP; the next request binds it again.
    Unbind {
        /// Key id.
        id: String,
    },
    /// Lock a key to this machine: computes a device fingerprint, sends it, and keeps it in the
    /// CLI state so `latchkey env` can print it. Only its hash is stored on the server.
    BindDevice {
        /// Key id.
        id: String,
        /// Use this fingerprint instead of computing one for this machine.
        #[arg(long)]
        fingerprint: Option<String>,
    },
    /// Suspend a key (refused with key_suspended until reinstated).
    Suspend {
        /// Key id.
        id: String,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Reinstate a suspended key.
    Reinstate {
        /// Key id.
        id: String,
    },
}

/// `latchkey lockdown …`.
#[derive(Subcommand, Debug)]
pub enum LockdownCommand {
    /// Turn a lockdown on: this tenant by default, one provider with --provider, every tenant
    /// with --global.
    On {
        /// Only this provider.
        #[arg(long)]
        provider: Option<String>,
        /// Every tenant.
        #[arg(long)]
        global: bool,
        /// Why (kept in the audit log).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Lift the lockdown named by the same options.
    Off {
        /// Only this provider.
        #[arg(long)]
        provider: Option<String>,
        /// The every-tenant switch.
        #[arg(long)]
        global: bool,
    },
    /// Show the lockdowns in force.
    Status,
}

/// `latchkey policy …`.
#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Evaluate a policy file against a sample request file, offline, and print the decision
    /// and the rule that matched. Exits 0 whatever the decision, non-zero when a file is invalid.
    Test {
        /// The policy (TOML; the format is documented in docs/policies.md).
        policy: PathBuf,
        /// The sample request (JSON or TOML: provider, method, path, model?, workload?, key?,
        /// headers?, body?).
        request: PathBuf,
    },
    /// Store a policy (create or replace it by its name) and optionally attach it. It applies
    /// from the next request, without a restart.
    Apply {
        /// The policy file (TOML).
        file: PathBuf,
        /// Attach it to this key.
        #[arg(long, conflicts_with = "tenant_default")]
        key: Option<String>,
        /// Make it the tenant's default (for keys without a policy of their own).
        #[arg(long)]
        tenant_default: bool,
    },
    /// Show one policy's document and attachments, the policy of a key (--key), or list all.
    Get {
        /// Policy name; omit to list every policy.
        name: Option<String>,
        /// The policy that decides for this key.
        #[arg(long, conflicts_with = "name")]
        key: Option<String>,
    },
    /// Detach a key's policy, or the tenant default.
    Detach {
        /// The key.
        #[arg(
            long,
            conflicts_with = "tenant_default",
            required_unless_present = "tenant_default"
        )]
        key: Option<String>,
        /// The tenant default.
        #[arg(long)]
        tenant_default: bool,
    },
    /// Delete a policy nothing uses any more.
    Delete {
        /// Policy name.
        name: String,
    },
}

/// `latchkey holds …`.
#[derive(Subcommand, Debug)]
pub enum HoldsCommand {
    /// Requests waiting for approval, oldest first.
    List,
    /// Let a held request through (it reaches the provider once).
    Approve {
        /// Hold id (`hold_…`).
        id: String,
    },
    /// Refuse a held request (the client gets policy_blocked).
    Reject {
        /// Hold id.
        id: String,
        /// Why (shown to the client and kept in the audit log).
        #[arg(long)]
        reason: Option<String>,
    },
}

/// `latchkey limits …`.
#[derive(Subcommand, Debug)]
pub enum LimitsCommand {
    /// Tenant and workload limits.
    List,
    /// Set the limits of the tenant or of a workload (replacing that scope's limits).
    Set {
        /// The whole tenant.
        #[arg(
            long,
            conflicts_with = "workload",
            required_unless_present = "workload"
        )]
        tenant: bool,
        /// One workload.
        #[arg(long)]
        workload: Option<String>,
        /// The limits.
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Remove the limits of the tenant or of a workload.
    Clear {
        /// The whole tenant.
        #[arg(
            long,
            conflicts_with = "workload",
            required_unless_present = "workload"
        )]
        tenant: bool,
        /// One workload.
        #[arg(long)]
        workload: Option<String>,
    },
}

/// `latchkey incidents …`.
#[derive(Subcommand, Debug)]
pub enum IncidentsCommand {
    /// Newest incidents first.
    List {
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Mark an incident resolved.
    Resolve {
        /// Incident id.
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
    /// Zero-downtime upgrade: take over the listening sockets of the `latchkey serve` running on
    /// this data dir; it then stops accepting, finishes its in-flight requests and exits.
    #[arg(long)]
    pub upgrade: bool,
}

/// Runs a client command (everything but `serve`).
pub fn run(cli: Cli) -> anyhow::Result<()> {
    commands::run(cli)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn lock_flags_parse() {
        let cli = Cli::try_parse_from([
            "latchkey",
            "keys",
            "create",
            "--name",
            "a",
            "--provider",
            "openai",
            "--ip",
            "10.0.0.0/8,192.0.2.1",
            "--country",
            "DE,FR",
            "--city",
            "Berlin",
            "--city",
            "Paris",
            "--signed",
            "--expires",
            "30d",
            "--velocity-requests",
            "100",
        ])
        .unwrap();
        let Command::Keys(KeysCommand::Create {
            locks,
            signed,
            expires,
            ..
        }) = cli.command
        else {
            panic!("parsed as something else")
        };
        assert!(signed);
        assert_eq!(expires.as_deref(), Some("30d"));
        assert_eq!(locks.countries.unwrap(), ["DE", "FR"]);
        assert_eq!(locks.cities.unwrap(), ["Berlin", "Paris"]);
        assert_eq!(locks.velocity_requests, Some(100));
        assert!(Cli::try_parse_from([
            "latchkey",
            "keys",
            "update",
            "k",
            "--signed",
            "--no-signed"
        ])
        .is_err());
        assert!(Cli::try_parse_from([
            "latchkey",
            "lockdown",
            "on",
            "--global",
            "--provider",
            "openai"
        ])
        .is_ok());
    }
}
