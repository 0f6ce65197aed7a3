//! `proxy.json`: the proxy's configuration, read from files written for the Go proxy.
//!
//! [`Config::from_text`] is pure: JSON, YAML or TOML text in, a validated [`Config`] or every problem out.
//! [`Config::load`] only adds reading the file. The same code backs `--check-config` and
//! SIGHUP reloads, so a config that loads here is exactly a config the proxy will run.
//!
//! # Compatibility with the Go proxy (README 2.4.x/2.5.0 and 2.5.12 generations)
//!
//! * **Keys are case-insensitive** (viper lower-cases them, Go's `encoding/json` matched them
//!   case-insensitively): every object key is lower-cased before decoding. Two keys of one
//!   object that differ only in case are an error (viper picked one at random).
//! * **Values are weakly typed, like viper**: a string `"5"` is accepted for an integer,
//!   `"true"`/`"1"`/`"t"` (any of Go's `strconv.ParseBool` forms) or a number for a boolean, a
//!   comma-separated string for a list of strings (`"db1,db2"`), and `null` or `""` for
//!   "unset". Deliberately stricter than viper: a number or boolean for a string field, a
//!   boolean for an integer field and a fractional number for an integer field are errors.
//! * **Both generations' names** are accepted: `tlog_dir`/`mlog_dir`,
//!   `auth_encrypt`/`auth_secure` (proxy and backend level), `write_tracing`/`query_tracing`/
//!   `log_enabled`, plus the 2.5.0-only `vnode_size`, `ha_addrs`, `migrate_cpus` and
//!   `migrate_batch`. An old and a new name for the same setting given with different values
//!   is an error naming both paths.
//! * **Proxy-level `auth_secure` (the 2.5.0 name) also covers backend credentials**, as it did
//!   in 2.5.0 (spec §15.1); the 2.5.5+ name `auth_encrypt` covers only the proxy's own
//!   credentials, backends having their own `auth_encrypt`. This is resolved at load time into
//!   [`BackendConfig::auth_secure`].
//! * **Numbers that are 0 or negative mean "unset"** and get the default, as in Go.
//! * **Stricter than Go** (each is a config that could not have worked): unknown keys are
//!   errors (with a "did you mean" hint) instead of being ignored; backend URLs must be
//!   `http://` or `https://` with a parseable host and optional port; `listen_addr` must be
//!   `:port`, `ip:port`, `[ipv6]:port` or `localhost:port`; `https_enabled` needs
//!   `https_cert` and `https_key`; credentials marked encrypted must decrypt.
//! * **Different from Go on purpose**: `https://` backends are verified unless the backend sets
//!   `tls_skip_verify` (Go never verified).
//! * **JSON, YAML and TOML files** (by extension, as 2.5.6+ with viper): `.json` or none,
//!   `.yaml`/`.yml`, `.toml`. Each is read by serde into one value tree and decoded by the
//!   same code, so the three accept the same keys and aliases and give the same messages.
//!
//! Validation collects **every** problem, each prefixed by its field path, e.g.
//! `circles[1].backends[0].name: backend name duplicated (also circles[0].backends[1].name)`,
//! and returns them together in [`Error::Invalid`]. The caller logs them one per line.

//! # Layout
//!
//! * `model.rs`: [`Config`] and the types it holds, defaults and the accepted names: what the
//!   rest of the proxy reads.
//! * `decode.rs`: the reader of all three formats ([`Config::from_str`], [`Config::load`]): case-insensitive
//!   keys, weak typing, aliases, "did you mean" hints.
//! * `validate.rs`: the semantic checks ([`Config::validate`]) and bounds.
//!
//! What a reload changes is the cluster's to decide (`cluster::ClusterDiff`).

mod decode;
mod model;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod udp_tests;
mod validate;

pub(crate) use decode::parse_go_duration;
pub use decode::Format;
pub use model::{
    BackendConfig, CircleConfig, Config, Error, LineRule, MeasurementMatch, Pattern, Result,
    RuleAction, Secret, TagMatch, TlsConfig, TlsVersion, DEFAULT_CONN_POOL_SIZE, DEFAULT_DATA_DIR,
    DEFAULT_DEAD_LETTER_MAX_BYTES, DEFAULT_FLUSH_SIZE, DEFAULT_HASH_KEY, DEFAULT_LISTEN_ADDR,
    DEFAULT_LOG_LEVEL, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_DECOMPRESSED_BYTES,
    DEFAULT_MAX_LINE_BYTES, DEFAULT_MIGRATE_BATCH, DEFAULT_MIGRATE_CPUS, DEFAULT_MLOG_DIR,
    DEFAULT_REWRITE_THREADS, DEFAULT_SHARD_KEY, DEFAULT_VNODE_SIZE, DEFAULT_WAL_MAX_BYTES,
    DEFAULT_WRITE_CONCURRENCY, MAX_WRITE_CONCURRENCY, MIN_QUEUE_BYTES,
};
pub use model::{
    UdpConfig, DEFAULT_UDP_BATCH_PENDING, DEFAULT_UDP_BATCH_SIZE, DEFAULT_UDP_BATCH_TIMEOUT,
};
pub use validate::parse_listen_addr;
