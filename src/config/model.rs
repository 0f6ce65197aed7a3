//! The configuration model: [`Config`] and the types it holds, their defaults and the
//! accepted names; what the rest of the proxy reads. Decoding is in `decode.rs`, checks in
//! `validate.rs`.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::cipher;
use crate::ring::{HashKey, ShardKey};
pub use crate::rules::{LineRule, MeasurementMatch, Pattern, RuleAction, TagMatch};

use super::validate::parse_listen_addr;

/// Default of [`Config::listen_addr`]: all interfaces, port 7076.
pub const DEFAULT_LISTEN_ADDR: &str = ":7076";
/// Default of [`Config::data_dir`].
pub const DEFAULT_DATA_DIR: &str = "data";
/// Default of [`Config::mlog_dir`].
pub const DEFAULT_MLOG_DIR: &str = "log";
/// Default of [`Config::hash_key`].
pub const DEFAULT_HASH_KEY: &str = "idx";
/// Default of [`Config::shard_key`].
pub const DEFAULT_SHARD_KEY: &str = "%db,%mm";
/// Default of [`Config::vnode_size`] (the Go proxy's fixed ring replica count).
pub const DEFAULT_VNODE_SIZE: usize = 256;
/// Default of [`Config::flush_size`].
pub const DEFAULT_FLUSH_SIZE: usize = 10_000;
/// Default of [`Config::write_concurrency`].
pub const DEFAULT_WRITE_CONCURRENCY: usize = 4;
/// Largest [`Config::write_concurrency`] used; larger values are capped.
pub const MAX_WRITE_CONCURRENCY: usize = 64;
/// Default of [`Config::conn_pool_size`].
pub const DEFAULT_CONN_POOL_SIZE: usize = 20;
/// Default of [`Config::rewrite_threads`].
pub const DEFAULT_REWRITE_THREADS: usize = 5;
/// Default of [`Config::migrate_cpus`].
pub const DEFAULT_MIGRATE_CPUS: usize = 1;
/// Default of [`Config::migrate_batch`].
pub const DEFAULT_MIGRATE_BATCH: usize = 25_000;
/// Default of [`Config::wal_max_bytes`]: 1 GiB.
pub const DEFAULT_WAL_MAX_BYTES: u64 = 1 << 30;
/// Default of [`Config::dead_letter_max_bytes`]: 1 GiB.
pub const DEFAULT_DEAD_LETTER_MAX_BYTES: u64 = 1 << 30;
/// Default of [`Config::wal_min_free_mb`]: 256 MiB.
pub(super) const DEFAULT_WAL_MIN_FREE_MB: u64 = 256;
/// Smallest accepted [`Config::wal_max_bytes`] and [`Config::dead_letter_max_bytes`].
pub const MIN_QUEUE_BYTES: u64 = 4096;
/// Default of [`Config::log_level`].
pub const DEFAULT_LOG_LEVEL: &str = "info";
/// Default of [`Config::max_body_bytes`]: 64 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 << 20;
/// Default of [`Config::max_decompressed_bytes`]: 512 MiB.
pub const DEFAULT_MAX_DECOMPRESSED_BYTES: usize = 512 << 20;
/// Default of [`Config::max_line_bytes`]: 4 MiB.
pub const DEFAULT_MAX_LINE_BYTES: usize = 4 << 20;
/// Default of [`Config::anti_entropy_window`]: a day, in seconds.
pub(super) const DEFAULT_ANTI_ENTROPY_WINDOW: u64 = 86_400;
/// Default of [`Config::write_pace_max_wait`], milliseconds (`crate::pace`).
pub(super) const DEFAULT_WRITE_PACE_MAX_WAIT_MS: u64 = 1000;
/// Default of [`Config::anti_entropy_rate`] (points per second).
pub(super) const DEFAULT_ANTI_ENTROPY_RATE: u64 = 50_000;

/// Defaults of the duration fields, in whole seconds.
pub(super) mod default_secs {
    pub(in crate::config) const FLUSH_TIME: u64 = 1;
    pub(in crate::config) const CHECK_INTERVAL: u64 = 1;
    pub(in crate::config) const REWRITE_INTERVAL: u64 = 10;
    pub(in crate::config) const WRITE_TIMEOUT: u64 = 10;
    pub(in crate::config) const QUERY_TIMEOUT: u64 = 60;
    pub(in crate::config) const IDLE_TIMEOUT: u64 = 10;
    pub(in crate::config) const SHUTDOWN_TIMEOUT: u64 = 30;
}

/// Log levels accepted in [`Config::log_level`].
pub(super) const LOG_LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// TLS cipher suite names accepted in `tls.ciphers` (the Go proxy's list, upper case).
pub(super) const TLS_CIPHERS: [&str; 26] = [
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    "TLS_FALLBACK_SCSV",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_RSA_WITH_RC4_128_SHA",
];

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read (missing, unreadable, not UTF-8).
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The path given to [`Config::load`].
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file's extension names no format we read (JSON, YAML, TOML).
    #[error(
        "illegal config file: Unsupported Config Type {ext:?} of {}: use .json, .yaml, .yml \
         or .toml",
        path.display()
    )]
    UnsupportedFormat {
        /// The path given to [`Config::load`].
        path: PathBuf,
        /// Its extension, without the dot.
        ext: String,
    },
    /// The text is not valid JSON/YAML/TOML, or its top level is not an object. The message names the line
    /// and column.
    #[error("illegal config file: {0}")]
    Parse(String),
    /// The JSON was read but describes an invalid config: every problem, each prefixed by its
    /// field path (`circles[0].backends[1].url: ...`).
    #[error("illegal config file: {}", .0.join("; "))]
    Invalid(Vec<String>),
}

/// `Result` with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A string that must not appear in logs: `Debug` prints `"***"` (or `""` when empty), and
/// there is deliberately no `Display`. Use [`Secret::expose`] where the value is needed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself. Do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the value is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("\"***\"")
        }
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Secret {
        Secret(value.to_string())
    }
}

/// A TLS protocol version accepted in `tls.min_version` / `tls.max_version`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TlsVersion {
    /// `ssl3.0` (accepted for compatibility; no modern TLS stack negotiates it).
    Ssl30,
    /// `tls1.0` or `1.0`.
    Tls10,
    /// `tls1.1` or `1.1`.
    Tls11,
    /// `tls1.2` or `1.2`.
    Tls12,
    /// `tls1.3` or `1.3`.
    Tls13,
}

impl TlsVersion {
    /// Parses a version name as the Go proxy does (case-insensitive, `TLS1.2` or `1.2`).
    pub fn parse(name: &str) -> Option<TlsVersion> {
        match name.to_ascii_uppercase().as_str() {
            "SSL3.0" => Some(TlsVersion::Ssl30),
            "TLS1.0" | "1.0" => Some(TlsVersion::Tls10),
            "TLS1.1" | "1.1" => Some(TlsVersion::Tls11),
            "TLS1.2" | "1.2" => Some(TlsVersion::Tls12),
            "TLS1.3" | "1.3" => Some(TlsVersion::Tls13),
            _ => None,
        }
    }
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsVersion::Ssl30 => "SSL3.0",
            TlsVersion::Tls10 => "TLS1.0",
            TlsVersion::Tls11 => "TLS1.1",
            TlsVersion::Tls12 => "TLS1.2",
            TlsVersion::Tls13 => "TLS1.3",
        })
    }
}

/// The `tls` object: restrictions for the HTTPS listener (used when `https_enabled`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// Allowed cipher suites, IANA names in upper case (accepted case-insensitively; see the
    /// Go proxy's list). Empty means the TLS library's defaults. Default: `[]`.
    pub ciphers: Vec<String>,
    /// Lowest protocol version offered. Default: none (the TLS library's default).
    pub min_version: Option<TlsVersion>,
    /// Highest protocol version offered. Default: none (the TLS library's default).
    pub max_version: Option<TlsVersion>,
}

/// One InfluxDB backend (`circles[].backends[]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendConfig {
    /// Unique name across all circles; names its on-disk queue. Default: none (required).
    pub name: String,
    /// Base URL, `http://host:port` or `https://host:port` (an optional path prefix is kept;
    /// no query, fragment or user info). Kept verbatim: with `hash_key: "url"` it is the ring
    /// node key. Default: none (required).
    pub url: String,
    /// User sent as HTTP Basic auth when either credential is non-empty (the encrypted form
    /// when [`BackendConfig::auth_secure`]). Default: `""`.
    pub username: Secret,
    /// Password, like `username`. Default: `""`.
    pub password: Secret,
    /// The credentials are stored encrypted (spec §5) and decrypted before use. Key
    /// `auth_encrypt`, alias `auth_secure`. Also set when the proxy-level legacy key
    /// `auth_secure` is true (2.5.0 semantics). Default: `false`.
    pub auth_secure: bool,
    /// Never chosen for reads in the first read pass. Default: `false`.
    pub write_only: bool,
    /// Do not verify an `https://` backend's certificate (the Go proxy never verified).
    /// Default: `false`.
    pub tls_skip_verify: bool,
}

impl BackendConfig {
    /// The plaintext credentials to send to influxd as Basic auth, or `None` when both are
    /// empty. Decrypted when [`BackendConfig::auth_secure`] (per-backend flag, or the
    /// proxy-level legacy `auth_secure` per spec §15.1). A config from [`Config::from_str`]
    /// always decrypts; a hand-built one whose credentials do not decrypt gets `None`.
    pub fn credentials(&self) -> Option<(String, String)> {
        let (user, pass) = if self.auth_secure {
            (
                cipher::decrypt(self.username.expose()).ok()?,
                cipher::decrypt(self.password.expose()).ok()?,
            )
        } else {
            (
                self.username.expose().to_string(),
                self.password.expose().to_string(),
            )
        };
        if user.is_empty() && pass.is_empty() {
            None
        } else {
            Some((user, pass))
        }
    }
}

/// One circle (`circles[]`): a consistent-hash ring holding one complete copy of the data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CircleConfig {
    /// Display name (not validated, may be empty or repeated, as in Go). Default: `""`.
    pub name: String,
    /// The ring's backends, in ring order (the index matters for `hash_key: "idx"`).
    /// Default: none (required, non-empty).
    pub backends: Vec<BackendConfig>,
}

/// The whole `proxy.json`, decoded, defaulted and validated.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The circles; every point is written to one backend of each.
    /// Default: none (required, non-empty).
    pub circles: Vec<CircleConfig>,
    /// HTTP(S) listen address: `:port` (all IPv4 interfaces), `ip:port`, `[ipv6]:port` or
    /// `localhost:port`. Not reloadable. Default: `":7076"`.
    pub listen_addr: String,
    /// Database whitelist; empty allows every database. A comma-separated string is also
    /// accepted. Default: `[]`.
    pub db_list: Vec<String>,
    /// Directory of the write-ahead queue (the Go proxy's `.dat`/`.rec` failure files).
    /// Not reloadable. Default: `"data"`.
    pub data_dir: PathBuf,
    /// Directory of transfer (rebalance/recovery/resync/cleanup) logs. Key `tlog_dir` (2.5.1+)
    /// or `mlog_dir` (2.5.0). Default: `"log"`.
    pub mlog_dir: PathBuf,
    /// How a backend is named on the ring: `idx`, `exi`, `name`, `url` or a template containing
    /// `%idx`. Changing it moves data (rebalance needed). Default: `"idx"`.
    pub hash_key: HashKey,
    /// Template of the key hashed for a point, containing `%db` and/or `%mm`.
    /// Default: `"%db,%mm"`.
    pub shard_key: ShardKey,
    /// Ring replicas (virtual nodes) per backend (2.5.0 `vnode_size`; fixed at 256 since 2.5.2).
    /// Changing it moves data. Default: `256`.
    pub vnode_size: usize,
    /// Points per (backend, db, rp) batch before it is flushed. Default: `10000`.
    pub flush_size: usize,
    /// Longest time a point waits in a batch (key in whole seconds). Default: `1` s.
    pub flush_time: Duration,
    /// Period of backend health pings (key in seconds). Default: `1` s.
    pub check_interval: Duration,
    /// Period of, and back-off between, queue replays to a backend (key in seconds).
    /// Default: `10` s.
    pub rewrite_interval: Duration,
    /// Queued batches replayed concurrently per backend and round. Default: `5`.
    pub rewrite_threads: usize,
    /// Total timeout of a backend write or ping (key in seconds); a ping also answers within
    /// `check_interval`. Default: `10` s.
    pub write_timeout: Duration,
    /// Longest a backend may take to start answering a read (InfluxQL, Flux, Prometheus
    /// remote read, `/health`), and then stay silent in the middle of its answer (key in
    /// seconds); past it the read fails over to the next circle. The Go proxy has none.
    /// Migration reads have their own, longer bound. Default: `60` s.
    pub query_timeout: Duration,
    /// Keep-alive idle timeout of client connections (key in seconds). Default: `10` s.
    pub idle_timeout: Duration,
    /// Concurrent writes per backend. Default: `20`.
    pub conn_pool_size: usize,
    /// Proxy auth user; auth is on when it or `password` is non-empty. The encrypted form when
    /// `auth_secure`. Default: `""`.
    pub username: Secret,
    /// Proxy auth password, like `username`. Default: `""`.
    pub password: Secret,
    /// The proxy's `username`/`password` are stored encrypted (spec §5); clients' plaintext
    /// credentials are encrypted and compared. Key `auth_encrypt` (2.5.5+) or `auth_secure`
    /// (older; then it also covers backend credentials). Default: `false`.
    pub auth_secure: bool,
    /// Also require auth on `/ping` and `/metrics`. Default: `false`.
    pub ping_auth_enabled: bool,
    /// Serve `/debug/pprof/` (our equivalent diagnostics). Default: `false`.
    pub pprof_enabled: bool,
    /// Log every write request. `log_enabled` (2.5.0) sets both tracing flags.
    /// Default: `false`.
    pub write_tracing: bool,
    /// Log every successful query. Default: `false`.
    pub query_tracing: bool,
    /// Serve HTTPS with `https_cert` and `https_key`. Default: `false`.
    pub https_enabled: bool,
    /// PEM certificate chain path; required when `https_enabled`. Default: `""`.
    pub https_cert: String,
    /// PEM private key path (may be the same file as the certificate); required when
    /// `https_enabled`. Default: `""`.
    pub https_key: String,
    /// HTTPS listener restrictions; `None` when absent or when all its fields are empty.
    /// Default: none.
    pub tls: Option<TlsConfig>,
    /// Peer proxies (`host:port`) told about transfer state changes (2.5.0 config key; 2.5.12
    /// takes it per request). Default: `[]`.
    pub ha_addrs: Vec<String>,
    /// Concurrent measurement copies of a transfer (2.5.0 `migrate_cpus`). Default: `1`.
    pub migrate_cpus: usize,
    /// Lines per write while copying a measurement (2.5.0 `migrate_batch`). Default: `25000`.
    pub migrate_batch: usize,
    /// Fsync the write-ahead queue for every accepted write batch before answering; otherwise
    /// it is synced periodically. Default: `false`.
    pub wal_sync: bool,
    /// Write requests of one batch sent to a backend at once, the batch split by series so
    /// that no series is reordered (`src/backend/batch.rs`); `1` sends one request at a time.
    /// At most 64. Default: `4`.
    pub write_concurrency: usize,
    /// gzip the batches sent to backends, as the Go proxy always does. Turning it off saves
    /// proxy and InfluxDB CPU where they share a host or a fast link. Default: `true`.
    pub write_gzip: bool,
    /// Per-backend cap on bytes held in the write-ahead queue (accepted, not yet delivered).
    /// Default: `1073741824` (1 GiB). Minimum: `4096`.
    pub wal_max_bytes: u64,
    /// Cap on bytes kept of batches a backend rejected permanently (dead letters).
    /// Default: `1073741824` (1 GiB). Minimum: `4096`.
    pub dead_letter_max_bytes: u64,
    /// Free space (MiB) the write-ahead queue leaves on `data_dir`'s filesystem: while less is
    /// free, new writes get 503 with `Retry-After`, so that deliveries can still delete what
    /// they delivered and RocksDB can flush and compact. `0`: no reserve. Reloadable.
    /// Default: `256`.
    pub wal_min_free_mb: u64,
    /// Log filter: a level (`trace`, `debug`, `info`, `warn`, `error`, `off`) or comma-separated
    /// `target=level` directives; `RUST_LOG` overrides it. Default: `"info"`.
    pub log_level: String,
    /// Largest request body accepted as sent (compressed or not). Default: `67108864` (64 MiB).
    pub max_body_bytes: usize,
    /// Largest request body after gzip decompression. Default: `536870912` (512 MiB).
    pub max_decompressed_bytes: usize,
    /// Largest single line-protocol line. Default: `4194304` (4 MiB).
    pub max_line_bytes: usize,
    /// Longest a graceful shutdown waits for in-flight work before exiting (key in seconds).
    /// Default: `30` s.
    pub shutdown_timeout: Duration,
    /// Memory budget in MiB, split over the queue's memtables and cache, delivery batches,
    /// request bodies in flight and kept buffers (`crate::memory`). Not reloadable.
    /// Default: `96`. Minimum: `32`.
    pub memory_budget_mb: u64,
    /// Line rules, in order, first match wins: drop lines, or pin a measurement to named
    /// backends (`crate::rules`). Reloadable. Default: `[]`.
    pub rules: Vec<LineRule>,
    /// Points whose time is further than this from the proxy's clock, either way, are refused
    /// as a bad line (key in whole seconds, alias `max_time_delta_secs`, influx-spout's name);
    /// `None` (0 or absent): no window. Reloadable. Default: none.
    pub timestamp_window: Option<Duration>,
    /// UDP listeners taking line protocol (influxd's, influxdb-relay's and influx-spout's
    /// `[[udp]]`). Reloadable. Default: `[]`.
    pub udp: Vec<UdpConfig>,
    /// Anti-entropy: how often a background pass compares the circles over the last
    /// `anti_entropy_window` and repairs what differs (key in seconds); `None` (0 or absent):
    /// no pass. Reloadable. Default: none.
    pub anti_entropy_interval: Option<Duration>,
    /// Anti-entropy: the recent window a background pass compares (key in seconds).
    /// Default: `86400` s (a day).
    pub anti_entropy_window: Duration,
    /// Anti-entropy: points per second a repair writes at most, background or requested
    /// (a request's `rate` overrides it); `0`: no limit. Default: `50000`.
    pub anti_entropy_rate: u64,
    /// Longest a write request waits for delivery while the proxy's CPU is used up (key
    /// `write_pace_max_wait_ms`, milliseconds); `0`: writes never wait. Default: `1000` ms.
    pub write_pace_max_wait: Duration,
}

/// Default of [`UdpConfig::batch_size`] (influxd's).
pub const DEFAULT_UDP_BATCH_SIZE: usize = 5000;
/// Default of [`UdpConfig::batch_pending`] (influxd's).
pub const DEFAULT_UDP_BATCH_PENDING: usize = 10;
/// Default of [`UdpConfig::batch_timeout`] (influxd's).
pub const DEFAULT_UDP_BATCH_TIMEOUT: Duration = Duration::from_secs(1);

/// One UDP listener (`udp[]`): datagrams of line protocol, written to one database through the
/// same path as `/write`. Key names of influxd, influxdb-relay and influx-spout are aliases.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdpConfig {
    /// Address to bind, in `listen_addr`'s forms (`:8089`, `ip:port`, `[ipv6]:port`); port 0
    /// is refused (senders must know the port). Aliases `bind-address`, `bind_address`,
    /// `bind-addr`, and spout's `port` (a number, meaning `:port`). Default: none (required).
    pub bind_addr: String,
    /// `false` keeps the entry without a listener (influxd's `enabled`). Default: `true`.
    pub enabled: bool,
    /// Database the points are written to. Default: none (required).
    pub database: String,
    /// Retention policy (`""`: the database's default). Alias `retention-policy`.
    /// Default: `""`.
    pub retention_policy: String,
    /// Unit of the timestamps, as `/write`'s `precision` (`n`, `u`, `ms`, `s`, `m`, `h`).
    /// Default: `"n"`.
    pub precision: crate::line_protocol::Precision,
    /// The socket's receive buffer (`SO_RCVBUF`) in bytes; `0` keeps the OS default. The
    /// kernel caps it at `net.core.rmem_max`. Aliases `read-buffer`, `read_buffer_bytes`.
    /// Default: `0`.
    pub read_buffer: usize,
    /// Lines per batch: a batch is written once it holds this many. Aliases `batch-size`,
    /// spout's `batch`. Default: `5000`.
    pub batch_size: usize,
    /// Longest a partial batch waits before it is written (seconds, or a duration such as
    /// `"500ms"`). Alias `batch-timeout`. Default: `1` s.
    pub batch_timeout: Duration,
    /// Full batches waiting to be written before new datagrams are dropped. Alias
    /// `batch-pending`. Default: `10`.
    pub batch_pending: usize,
}

impl UdpConfig {
    /// The address to bind: `bind_addr` with an empty host meaning `0.0.0.0`.
    pub fn socket_addr(&self) -> std::result::Result<SocketAddr, String> {
        super::validate::parse_bind_addr("bind_addr", &self.bind_addr)
    }
}

impl Config {
    /// The memory budget this config sets.
    pub(crate) fn memory_budget(&self) -> crate::memory::Budget {
        crate::memory::Budget::from_mb(self.memory_budget_mb)
    }

    /// The address to bind: `listen_addr` with an empty host meaning `0.0.0.0`.
    pub fn socket_addr(&self) -> std::result::Result<SocketAddr, String> {
        parse_listen_addr(&self.listen_addr)
    }

    /// Whether clients must authenticate (`username` or `password` is non-empty, as in Go).
    pub fn auth_enabled(&self) -> bool {
        !self.username.is_empty() || !self.password.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::*;

    #[test]
    fn credentials_are_none_when_both_are_empty() {
        let mut backend = load(&minimal("")).circles[0].backends[0].clone();
        assert_eq!(backend.credentials(), None);
        backend.password = Secret::from("p");
        assert_eq!(
            backend.credentials(),
            Some((String::new(), "p".to_string()))
        );
        // Hand-built and undecryptable: no credentials rather than garbage.
        backend.auth_secure = true;
        backend.password = Secret::from("not base64?");
        assert_eq!(backend.credentials(), None);
    }

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        assert_eq!(format!("{:?}", Secret::from("hunter2")), "\"***\"");
        assert_eq!(format!("{:?}", Secret::default()), "\"\"");
        assert_eq!(Secret::new("hunter2").expose(), "hunter2");
        let cfg = load(
            r#"{"circles": [{"backends": [{"name": "b", "url": "http://h:1",
                 "username": "backend-user", "password": "backend-pass"}]}],
                 "username": "proxy-user", "password": "proxy-pass"}"#,
        );
        let debug = format!("{cfg:?} {cfg:#?}");
        for secret in ["backend-user", "backend-pass", "proxy-user", "proxy-pass"] {
            assert!(!debug.contains(secret), "{secret} leaked");
        }
        assert!(debug.contains("***"));
    }

    #[test]
    fn config_compares_equal_only_when_equal() {
        let a = load(include_str!("../../packaging/proxy.json"));
        let mut b = a.clone();
        assert_eq!(a, b);
        b.circles[0].backends[0].write_only = true;
        assert_ne!(a, b);
        let c: Config = include_str!("../../packaging/proxy.json").parse().unwrap();
        assert_eq!(a, c);
    }
}
