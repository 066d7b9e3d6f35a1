//! Server configuration: defaults < TOML file (`--config`) < `LATCHKEY_*` environment < flags.

use anyhow::Context;
use latchkey_ops::cli::ServeArgs;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The TOML config file. Unknown fields are errors, so a typo is reported, not ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub admin_listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub threads: Option<usize>,
    pub allow_private_upstreams: Option<bool>,
    pub shutdown_grace_seconds: Option<u64>,
    /// After SIGTERM, keep serving this long with `/readyz` failing before the listener closes.
    pub shutdown_delay_seconds: Option<u64>,
    /// Unix socket through which a new process takes over the listening sockets (`serve
    /// --upgrade`). Default: `upgrade.sock` in the data dir.
    pub upgrade_socket: Option<PathBuf>,
    pub public_url: Option<String>,
    pub log_format: Option<String>,
    #[serde(default)]
    pub cache: CacheConfig,
    #[serde(default)]
    pub upstream: UpstreamConfig,
    /// Proxies whose `X-Forwarded-For` / `Forwarded` headers are trusted (IPs or CIDRs).
    pub trusted_proxies: Option<Vec<String>>,
    /// The gateway listener expects a PROXY protocol (v1 or v2) header on every connection.
    pub proxy_protocol: Option<bool>,
    /// Cut a WebSocket session off at its next frame once its key is revoked (default true).
    pub cut_off_revoked_sessions: Option<bool>,
    /// Mask the injected credential in provider responses (default true).
    pub scrub_responses: Option<bool>,
    /// A MaxMind-format (`.mmdb`) database for geo-locked keys.
    pub geoip_database: Option<PathBuf>,
    /// Accepted clock skew of signed requests, in seconds.
    pub signature_window_seconds: Option<u64>,
    /// Most signed-request nonces remembered at once.
    pub signature_nonce_capacity: Option<usize>,
    #[serde(default)]
    pub alerts: AlertsConfig,
    #[serde(default)]
    pub holds: HoldsConfig,
    #[serde(default)]
    pub budgets: BudgetsConfig,
    /// Circuit breaker tuning (every field optional; see `CircuitConfig`).
    pub circuits: Option<latchkey_policy::resilience::circuit::CircuitConfig>,
    /// Retry limits (every field optional; see `RetryPolicy`).
    pub retry: Option<latchkey_policy::resilience::retry::RetryPolicy>,
}

/// `[holds]`: requests a policy parks for human approval.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoldsConfig {
    /// How long a held request waits for a decision.
    pub timeout_seconds: Option<u64>,
    /// Most requests held at once.
    pub capacity: Option<usize>,
}

/// `[budgets]`: pricing of metered usage.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetsConfig {
    /// A price table (TOML) whose entries override and extend the built-in one.
    pub prices_file: Option<PathBuf>,
    /// Output tokens assumed for a request that sets no `max_tokens`.
    pub default_max_output_tokens: Option<u64>,
}

/// `[alerts]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    pub webhook_url: Option<String>,
}

/// `[cache]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    pub key_ttl_seconds: Option<u64>,
    pub negative_ttl_seconds: Option<u64>,
    pub credential_ttl_seconds: Option<u64>,
    pub max_keys: Option<u64>,
}

/// `[upstream]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    pub connect_timeout_seconds: Option<u64>,
    pub read_timeout_seconds: Option<u64>,
}

/// The resolved configuration.
#[derive(Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub data_dir: PathBuf,
    pub threads: usize,
    pub allow_private_upstreams: bool,
    pub shutdown_grace_seconds: u64,
    pub shutdown_delay_seconds: u64,
    pub upgrade_socket: PathBuf,
    pub public_url: String,
    pub log_json: bool,
    pub gateway: latchkey_gateway::GatewayOptions,
    pub geoip_database: Option<PathBuf>,
    pub alert_webhook: Option<String>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn env_parse<T: std::str::FromStr>(name: &str) -> anyhow::Result<Option<T>> {
    match env(name) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| anyhow::anyhow!("{name}={v:?} is not valid")),
    }
}

fn env_bool(name: &str) -> anyhow::Result<Option<bool>> {
    match env(name).as_deref().map(str::trim) {
        None => Ok(None),
        Some("1" | "true" | "yes" | "on") => Ok(Some(true)),
        Some("0" | "false" | "no" | "off") => Ok(Some(false)),
        Some(v) => anyhow::bail!("{name}={v:?} must be 1/0 or true/false"),
    }
}

fn addr(field: &str, v: &str) -> anyhow::Result<SocketAddr> {
    v.parse()
        .with_context(|| format!("{field} = {v:?} is not an address like 127.0.0.1:8080"))
}

impl Config {
    /// Resolves flags (clap already folded in their env vars), the config file and defaults.
    pub fn resolve(args: &ServeArgs) -> anyhow::Result<Self> {
        let file = match &args.config {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read config file {}", p.display()))?;
                toml::from_str::<FileConfig>(&text)
                    .with_context(|| format!("config file {} is invalid", p.display()))?
            }
            None => FileConfig::default(),
        };
        let listen = args
            .listen
            .clone()
            .or(file.listen)
            .unwrap_or("127.0.0.1:8080".into());
        let admin = args
            .admin_listen
            .clone()
            .or(file.admin_listen)
            .unwrap_or("127.0.0.1:8081".into());
        let listen = addr("listen", &listen)?;
        let admin_listen = addr("admin_listen", &admin)?;
        let threads = args.threads.or(file.threads).unwrap_or(1);
        if threads == 0 || threads > 256 {
            anyhow::bail!("threads = {threads} must be between 1 and 256");
        }
        let allow_private_upstreams = env_bool("LATCHKEY_ALLOW_PRIVATE_UPSTREAMS")?
            .or(file.allow_private_upstreams)
            .unwrap_or(false);
        let shutdown_grace_seconds = env_parse("LATCHKEY_SHUTDOWN_GRACE_SECONDS")?
            .or(file.shutdown_grace_seconds)
            .unwrap_or(5);
        let shutdown_delay_seconds = env_parse("LATCHKEY_SHUTDOWN_DELAY_SECONDS")?
            .or(file.shutdown_delay_seconds)
            .unwrap_or(0);
        if shutdown_delay_seconds > 3600 {
            anyhow::bail!("shutdown_delay_seconds = {shutdown_delay_seconds} must be at most 3600");
        }
        let public_url = env("LATCHKEY_PUBLIC_URL")
            .or(file.public_url)
            .unwrap_or_else(|| {
                let host = if listen.ip().is_unspecified() {
                    "127.0.0.1".to_string()
                } else if listen.is_ipv6() {
                    format!("[{}]", listen.ip())
                } else {
                    listen.ip().to_string()
                };
                format!("http://{host}:{}", listen.port())
            });
        let log_format = env("LATCHKEY_LOG_FORMAT")
            .or(file.log_format)
            .unwrap_or("text".into());
        let log_json = match log_format.as_str() {
            "json" => true,
            "text" => false,
            other => anyhow::bail!("log_format = {other:?} must be \"text\" or \"json\""),
        };
        let mut gateway = latchkey_gateway::GatewayOptions {
            allow_private_upstreams,
            ..Default::default()
        };
        let secs = std::time::Duration::from_secs;
        if let Some(v) = file.cache.key_ttl_seconds {
            gateway.key_cache_ttl = secs(v);
        }
        if let Some(v) = file.cache.negative_ttl_seconds {
            gateway.negative_cache_ttl = secs(v);
        }
        if let Some(v) = file.cache.credential_ttl_seconds {
            gateway.credential_cache_ttl = secs(v);
        }
        if let Some(v) = file.cache.max_keys {
            gateway.key_cache_capacity = v;
        }
        if let Some(v) = file.upstream.connect_timeout_seconds {
            gateway.connect_timeout = secs(v);
        }
        if let Some(v) = file.upstream.read_timeout_seconds {
            gateway.read_timeout = secs(v);
        }
        let trusted: Vec<String> = match env("LATCHKEY_TRUSTED_PROXIES") {
            Some(v) => v.split(',').map(|s| s.trim().to_string()).collect(),
            None => file.trusted_proxies.unwrap_or_default(),
        };
        gateway.trusted_proxies = latchkey_policy::locks::client_ip::parse_trusted(&trusted)
            .map_err(|e| anyhow::anyhow!("trusted_proxies: {e}"))?;
        if let Some(v) =
            env_parse::<u64>("LATCHKEY_SIGNATURE_WINDOW_SECONDS")?.or(file.signature_window_seconds)
        {
            if v == 0 || v > 86_400 {
                anyhow::bail!("signature_window_seconds = {v} must be between 1 and 86400");
            }
            gateway.signature_window_secs = v;
        }
        if let Some(v) = env_parse::<usize>("LATCHKEY_SIGNATURE_NONCE_CAPACITY")?
            .or(file.signature_nonce_capacity)
        {
            if v == 0 {
                anyhow::bail!("signature_nonce_capacity must be at least 1");
            }
            gateway.nonce_capacity = v;
        }
        if let Some(v) =
            env_parse::<u64>("LATCHKEY_HOLD_TIMEOUT_SECONDS")?.or(file.holds.timeout_seconds)
        {
            if v == 0 || v > 86_400 {
                anyhow::bail!("holds.timeout_seconds = {v} must be between 1 and 86400");
            }
            gateway.hold_timeout = secs(v);
        }
        if let Some(v) = env_parse::<usize>("LATCHKEY_HOLD_CAPACITY")?.or(file.holds.capacity) {
            if v == 0 {
                anyhow::bail!("holds.capacity must be at least 1");
            }
            gateway.hold_capacity = v;
        }
        if let Some(v) = env_parse::<u64>("LATCHKEY_DEFAULT_MAX_OUTPUT_TOKENS")?
            .or(file.budgets.default_max_output_tokens)
        {
            gateway.default_max_output_tokens = v;
        }
        let prices_file = env("LATCHKEY_PRICES_FILE")
            .map(PathBuf::from)
            .or(file.budgets.prices_file);
        if let Some(path) = prices_file {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read budgets.prices_file {}", path.display()))?;
            let table = latchkey_policy::usage::PriceTable::merged(
                latchkey_policy::usage::PriceTable::builtin(),
                &text,
            )
            .map_err(|e| anyhow::anyhow!("budgets.prices_file {}: {e}", path.display()))?;
            gateway.prices = std::sync::Arc::new(table);
        }
        if let Some(c) = file.circuits {
            c.validate()
                .map_err(|e| anyhow::anyhow!("[circuits]: {e}"))?;
            gateway.circuit = c;
        }
        if let Some(r) = file.retry {
            gateway.retry = r;
        }
        if let Some(v) = file.cut_off_revoked_sessions {
            gateway.cut_off_revoked_sessions = v;
        }
        if let Some(v) = file.scrub_responses {
            gateway.scrub_responses = v;
        }
        gateway.proxy_protocol = env_bool("LATCHKEY_PROXY_PROTOCOL")?
            .or(file.proxy_protocol)
            .unwrap_or(false);
        let geoip_database = env("LATCHKEY_GEOIP_DATABASE")
            .map(PathBuf::from)
            .or(file.geoip_database);
        let alert_webhook = env("LATCHKEY_ALERT_WEBHOOK").or(file.alerts.webhook_url);
        if let Some(url) = &alert_webhook {
            latchkey_ops::alerts::Webhook::parse(url)
                .map_err(|e| anyhow::anyhow!("alerts.webhook_url: {e}"))?;
        }
        let data_dir: PathBuf = args
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or("latchkey-data".into());
        let upgrade_socket = env("LATCHKEY_UPGRADE_SOCKET")
            .map(PathBuf::from)
            .or(file.upgrade_socket)
            .unwrap_or_else(|| data_dir.join("upgrade.sock"));
        // A Unix socket path is limited to 107 bytes (sun_path); say so rather than panic later.
        if upgrade_socket.as_os_str().len() > 107 {
            anyhow::bail!(
                "upgrade_socket {} is longer than 107 bytes; set a shorter path \
                 (upgrade_socket / LATCHKEY_UPGRADE_SOCKET)",
                upgrade_socket.display()
            );
        }
        Ok(Config {
            geoip_database,
            alert_webhook,
            listen,
            admin_listen,
            data_dir,
            threads,
            allow_private_upstreams,
            shutdown_grace_seconds,
            shutdown_delay_seconds,
            upgrade_socket,
            public_url: public_url.trim_end_matches('/').to_string(),
            log_json,
            gateway,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tests that touch process environment variables run one at a time.
    static ENV_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn unknown_field_is_named() {
        let err = toml::from_str::<FileConfig>("listne = \"x\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("listne"), "{err}");
        let err = toml::from_str::<FileConfig>("[cache]\nkey_ttl = 3")
            .unwrap_err()
            .to_string();
        assert!(err.contains("key_ttl"), "{err}");
    }

    #[test]
    fn the_shipped_example_config_parses() {
        let text = include_str!("../deploy/latchkey.toml");
        let cfg: FileConfig = toml::from_str(text).unwrap();
        assert_eq!(cfg.trusted_proxies.unwrap(), vec!["10.0.0.0/8".to_string()]);
        assert!(cfg.alerts.webhook_url.is_some());
        assert_eq!(cfg.signature_window_seconds, Some(300));
    }

    #[test]
    fn bad_trusted_proxy_names_the_field() {
        let _guard = ENV_LOCK.lock().unwrap();
        std::env::set_var("LATCHKEY_TRUSTED_PROXIES", "10.0.0.0/8, not-an-ip");
        let err = Config::resolve(&ServeArgs::default())
            .unwrap_err()
            .to_string();
        std::env::remove_var("LATCHKEY_TRUSTED_PROXIES");
        assert!(err.contains("trusted_proxies"), "{err}");
    }

    #[test]
    fn upgrade_socket_defaults_to_the_data_dir_and_must_fit_a_socket_address() {
        let _guard = ENV_LOCK.lock().unwrap();
        let args = ServeArgs {
            data_dir: Some("/var/lib/latchkey".into()),
            ..Default::default()
        };
        let cfg = Config::resolve(&args).unwrap();
        assert_eq!(
            cfg.upgrade_socket,
            PathBuf::from("/var/lib/latchkey/upgrade.sock")
        );
        assert_eq!(cfg.shutdown_delay_seconds, 0);
        let args = ServeArgs {
            data_dir: Some(PathBuf::from("/tmp").join("d".repeat(100))),
            ..Default::default()
        };
        let err = Config::resolve(&args).unwrap_err().to_string();
        assert!(err.contains("upgrade_socket"), "{err}");
        let file: FileConfig =
            toml::from_str("upgrade_socket = \"/run/lk.sock\"\nshutdown_delay_seconds = 5")
                .unwrap();
        assert_eq!(file.upgrade_socket, Some(PathBuf::from("/run/lk.sock")));
        assert_eq!(file.shutdown_delay_seconds, Some(5));
    }

    #[test]
    fn bad_address_names_field() {
        let args = ServeArgs {
            listen: Some("nope".into()),
            ..Default::default()
        };
        let err = Config::resolve(&args).unwrap_err().to_string();
        assert!(err.contains("listen"), "{err}");
    }
}
