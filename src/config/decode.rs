//! Decoding: `proxy.json` text -> `Node` tree (key order and duplicate keys kept) -> typed
//! [`Config`], collecting every problem with its path. Aliases, case-insensitive keys, weak
//! typing and "did you mean" hints live here.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::line_protocol::Precision;
use crate::memory;
use crate::ring::{HashKey, ShardKey};

use super::model::*;
use super::validate::{join, unknown_cipher, unknown_tls_version};

/// A config file's format, chosen by its extension as viper does: `.json` (or none), `.yaml`
/// or `.yml`, `.toml`, any case. All three are read by serde into the same [`Node`] tree and
/// decoded by the same code, so keys, aliases, weak typing and messages are the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `proxy.json`.
    Json,
    /// `proxy.yaml`, `proxy.yml`.
    Yaml,
    /// `proxy.toml`.
    Toml,
}

impl Format {
    /// The format of the file at `path`; `None` for an extension no format has.
    pub fn of(path: &Path) -> Option<Format> {
        let Some(ext) = path.extension() else {
            return Some(Format::Json);
        };
        let ext = ext.to_string_lossy().to_ascii_lowercase();
        match ext.as_str() {
            "json" => Some(Format::Json),
            "yaml" | "yml" => Some(Format::Yaml),
            "toml" => Some(Format::Toml),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Format::Json => "JSON",
            Format::Yaml => "YAML",
            Format::Toml => "TOML",
        }
    }

    /// The text as a [`Node`] tree, or the parser's message (with line and column).
    fn parse(self, text: &str) -> std::result::Result<Node, String> {
        match self {
            Format::Json => serde_json::from_str(text).map_err(|e| e.to_string()),
            Format::Yaml => serde_yaml_ng::from_str(text).map_err(|e| e.to_string()),
            Format::Toml => toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string()),
        }
    }
}

impl Config {
    /// Decodes, defaults and validates JSON text. Pure.
    // An inherent `from_str` (also available as `str::parse` through `FromStr`) so callers need
    // no trait import.
    #[allow(clippy::should_implement_trait)]
    pub fn from_str(json: &str) -> Result<Config> {
        Config::from_text(json, Format::Json)
    }

    /// Decodes, defaults and validates config text in `format`. Pure.
    pub fn from_text(text: &str, format: Format) -> Result<Config> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let root = match format.parse(text) {
            // An empty YAML document is "no settings", as an empty JSON object would be.
            Ok(Node::Null) if format == Format::Yaml => Node::Object(Vec::new()),
            Ok(root) => root,
            Err(err) => return Err(Error::Parse(format!("invalid {}: {err}", format.name()))),
        };
        if !matches!(root, Node::Object(_)) {
            let object = match format {
                Format::Yaml => "a YAML mapping",
                _ => "a JSON object",
            };
            return Err(Error::Parse(format!(
                "the top level must be {object}, found {}",
                root.kind()
            )));
        }
        let mut cx = Cx::default();
        let config = decode_config(&root, &mut cx);
        // A value that failed to decode was replaced by its default; do not also report what
        // validation thinks of that default at the same path.
        let decode_paths: HashSet<String> = cx.problems.iter().map(|(p, _)| p.clone()).collect();
        if let Some(config) = &config {
            for (path, msg) in config.problems() {
                if !decode_paths.contains(&path) {
                    cx.problems.push((path, msg));
                }
            }
        }
        match config {
            Some(config) if cx.problems.is_empty() => Ok(config),
            _ => Err(Error::Invalid(cx.into_messages())),
        }
    }

    /// Reads and decodes the file at `path`, in the [`Format`] its extension names; any other
    /// extension is refused with [`Error::UnsupportedFormat`].
    pub fn load(path: &Path) -> Result<Config> {
        let Some(format) = Format::of(path) else {
            return Err(Error::UnsupportedFormat {
                path: path.to_path_buf(),
                ext: path
                    .extension()
                    .map(|e| e.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            });
        };
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_text(&text, format)
    }
}

impl FromStr for Config {
    type Err = Error;

    fn from_str(json: &str) -> Result<Config> {
        Config::from_str(json)
    }
}

/// A config value of any of the three formats that keeps object keys in order, duplicates
/// included (so case-insensitive duplicates can be reported), unlike `serde_json::Value`.
#[derive(Debug)]
enum Node {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Node>),
    Object(Vec<(String, Node)>),
}

impl Node {
    /// "a string", "an object", ... for messages.
    fn kind(&self) -> &'static str {
        match self {
            Node::Null => "null",
            Node::Bool(_) => "a boolean",
            Node::Number(_) => "a number",
            Node::String(_) => "a string",
            Node::Array(_) => "an array",
            Node::Object(_) => "an object",
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Node, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

/// Builds a [`Node`] from any value a JSON, YAML or TOML deserializer hands over.
struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any config value")
    }

    fn visit_bool<E>(self, v: bool) -> std::result::Result<Node, E> {
        Ok(Node::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> std::result::Result<Node, E> {
        Ok(Node::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> std::result::Result<Node, E> {
        Ok(Node::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> std::result::Result<Node, E> {
        // JSON has no NaN or infinity; YAML's `.nan`/`.inf` and TOML's `nan`/`inf` fit no
        // setting, and are reported as a string would be.
        Ok(serde_json::Number::from_f64(v)
            .map_or_else(|| Node::String(v.to_string()), Node::Number))
    }

    fn visit_str<E>(self, v: &str) -> std::result::Result<Node, E> {
        Ok(Node::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> std::result::Result<Node, E> {
        Ok(Node::String(v))
    }

    fn visit_unit<E>(self) -> std::result::Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_none<E>(self) -> std::result::Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some((key, value)) = map.next_entry::<String, Node>()? {
            entries.push((key, value));
        }
        Ok(Node::Object(entries))
    }
}

/// Decoding context: the problems found so far, as (path, message).
#[derive(Default)]
struct Cx {
    problems: Vec<(String, String)>,
}

impl Cx {
    fn err(&mut self, path: &str, msg: impl Into<String>) {
        self.problems.push((path.to_string(), msg.into()));
    }

    fn into_messages(self) -> Vec<String> {
        self.problems
            .into_iter()
            .map(|(path, msg)| format!("{path}: {msg}"))
            .collect()
    }

    /// A string; `None` when absent or on a type error.
    fn string(&mut self, path: &str, node: Option<&Node>) -> Option<String> {
        match node? {
            Node::String(s) => Some(s.clone()),
            other => {
                self.err(path, format!("expected a string, found {}", other.kind()));
                None
            }
        }
    }

    /// An integer, weakly typed: numbers with no fraction, decimal strings (`""` = unset).
    fn int(&mut self, path: &str, node: Option<&Node>) -> Option<i64> {
        match node? {
            Node::Number(n) => {
                if let Some(v) = n.as_i64() {
                    return Some(v);
                }
                match n.as_f64() {
                    Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(f as i64),
                    Some(f) if f.fract() == 0.0 => {
                        self.err(path, format!("integer {n} is out of range"));
                        None
                    }
                    _ => {
                        self.err(path, format!("expected an integer, found {n}"));
                        None
                    }
                }
            }
            Node::String(s) if s.trim().is_empty() => None,
            Node::String(s) => match s.trim().parse::<i64>() {
                Ok(v) => Some(v),
                Err(_) => {
                    self.err(path, format!("expected an integer, found {s:?}"));
                    None
                }
            },
            other => {
                self.err(path, format!("expected an integer, found {}", other.kind()));
                None
            }
        }
    }

    /// A boolean, weakly typed: Go's `strconv.ParseBool` strings (`""` = unset), numbers
    /// (non-zero = true).
    fn boolean(&mut self, path: &str, node: Option<&Node>) -> Option<bool> {
        match node? {
            Node::Bool(b) => Some(*b),
            Node::Number(n) => Some(n.as_f64().is_some_and(|f| f != 0.0)),
            Node::String(s) => match s.trim() {
                "" => None,
                "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
                "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
                _ => {
                    self.err(path, format!("expected a boolean, found {s:?}"));
                    None
                }
            },
            other => {
                self.err(path, format!("expected a boolean, found {}", other.kind()));
                None
            }
        }
    }

    /// A list of strings; a single string is split on commas (viper's string-to-slice hook),
    /// items trimmed, empty items dropped.
    fn strings(&mut self, path: &str, node: Option<&Node>) -> Option<Vec<String>> {
        match node? {
            Node::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    if let Some(s) = self.string(&format!("{path}[{i}]"), Some(item)) {
                        out.push(s);
                    }
                }
                Some(out)
            }
            Node::String(s) if s.is_empty() => Some(Vec::new()),
            Node::String(s) => Some(
                s.split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(str::to_string)
                    .collect(),
            ),
            other => {
                self.err(
                    path,
                    format!("expected an array of strings, found {}", other.kind()),
                );
                None
            }
        }
    }

    /// Merges an old and a new name of one setting; different values are an error naming both.
    fn alias<T: PartialEq + fmt::Debug>(
        &mut self,
        new_path: &str,
        new: Option<T>,
        old_path: &str,
        old: Option<T>,
    ) -> Option<T> {
        match (new, old) {
            (Some(n), Some(o)) if n != o => {
                self.err(
                    old_path,
                    format!(
                        "conflicts with {new_path} ({o:?} vs {n:?}); they are two names of one \
                         setting, keep one"
                    ),
                );
                Some(n)
            }
            (n, o) => n.or(o),
        }
    }
}

/// The fields of one JSON object, keys lower-cased; tracks which keys were used so the rest
/// can be reported as unknown.
struct Fields<'a> {
    path: String,
    /// (lower-cased key, key as written, value, used)
    entries: Vec<(String, &'a str, &'a Node, bool)>,
    /// Every key asked for, known or not present (the candidates for "did you mean").
    known: Vec<&'static str>,
}

impl<'a> Fields<'a> {
    /// `None` (with a problem recorded) when `node` is not an object.
    fn new(cx: &mut Cx, path: &str, node: &'a Node) -> Option<Fields<'a>> {
        let Node::Object(map) = node else {
            cx.err(path, format!("expected an object, found {}", node.kind()));
            return None;
        };
        let mut entries: Vec<(String, &'a str, &'a Node, bool)> = Vec::with_capacity(map.len());
        for (key, value) in map {
            let lower = key.to_lowercase();
            if let Some(first) = entries.iter().find(|e| e.0 == lower) {
                cx.err(
                    &join(path, key),
                    format!(
                        "duplicate key (keys are case-insensitive; first given as {:?})",
                        first.1
                    ),
                );
                continue;
            }
            entries.push((lower, key.as_str(), value, false));
        }
        Some(Fields {
            path: path.to_string(),
            entries,
            known: Vec::new(),
        })
    }

    /// The value of `key` (lower case); `None` when absent or `null`.
    fn take(&mut self, key: &'static str) -> Option<&'a Node> {
        self.known.push(key);
        let entry = self.entries.iter_mut().find(|e| e.0 == key)?;
        entry.3 = true;
        match entry.2 {
            Node::Null => None,
            node => Some(node),
        }
    }

    fn path(&self, key: &str) -> String {
        join(&self.path, key)
    }

    fn string(&mut self, cx: &mut Cx, key: &'static str) -> Option<String> {
        let node = self.take(key);
        cx.string(&self.path(key), node)
    }

    /// A string where `""` means "use the default".
    fn string_or(&mut self, cx: &mut Cx, key: &'static str, default: &str) -> String {
        self.string(cx, key)
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| default.to_string())
    }

    fn boolean(&mut self, cx: &mut Cx, key: &'static str) -> Option<bool> {
        let node = self.take(key);
        cx.boolean(&self.path(key), node)
    }

    fn strings(&mut self, cx: &mut Cx, key: &'static str) -> Option<Vec<String>> {
        let node = self.take(key);
        cx.strings(&self.path(key), node)
    }

    /// A positive integer; 0, negative or absent gives `default`.
    fn positive(&mut self, cx: &mut Cx, key: &'static str, default: u64) -> u64 {
        let node = self.take(key);
        match cx.int(&self.path(key), node) {
            Some(v) if v > 0 => v.unsigned_abs(),
            _ => default,
        }
    }

    /// A non-negative integer (0 allowed); absent gives `default`, negative is an error.
    fn unsigned(&mut self, cx: &mut Cx, key: &'static str, default: u64) -> u64 {
        let node = self.take(key);
        let path = self.path(key);
        match cx.int(&path, node) {
            Some(v) if v < 0 => {
                cx.err(&path, format!("must not be negative, got {v}"));
                default
            }
            Some(v) => v.unsigned_abs(),
            None => default,
        }
    }

    /// Like [`Fields::positive`], as a `usize`.
    fn count(&mut self, cx: &mut Cx, key: &'static str, default: usize) -> usize {
        let value = self.positive(cx, key, default as u64);
        usize::try_from(value).unwrap_or_else(|_| {
            cx.err(&self.path(key), format!("{value} is out of range"));
            default
        })
    }

    /// Whole seconds as a `Duration`; 0, negative or absent gives `default` seconds.
    fn secs(&mut self, cx: &mut Cx, key: &'static str, default: u64) -> Duration {
        Duration::from_secs(self.positive(cx, key, default))
    }

    /// Reports every key that was not used.
    fn finish(self, cx: &mut Cx) {
        for (_, key, _, used) in &self.entries {
            if !used {
                let hint = suggest(&key.to_lowercase(), &self.known)
                    .map(|k| format!(" (did you mean {k:?}?)"))
                    .unwrap_or_default();
                cx.err(&join(&self.path, key), format!("unknown field{hint}"));
            }
        }
    }
}

/// The known key closest to `key` if it is a likely typo (edit distance at most 2). Plain
/// Levenshtein over chars, not Damerau/OSA: a transposition (`nmae`) costs 2, which keeps the
/// hints the proxy always gave. Ties go to the first key asked for.
fn suggest(key: &str, known: &[&'static str]) -> Option<&'static str> {
    known
        .iter()
        .map(|k| (strsim::levenshtein(key, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Decodes the top-level object. Problems go to `cx`; the returned config has defaults in
/// place of values that failed to decode. `None` only if a built-in default is rejected by
/// the ring module (a bug, reported as a problem).
fn decode_config(root: &Node, cx: &mut Cx) -> Option<Config> {
    let mut f = Fields::new(cx, "", root)?;

    let (auth_secure, legacy_auth_secure) = {
        let new = f.boolean(cx, "auth_encrypt");
        let old = f.boolean(cx, "auth_secure");
        (
            cx.alias("auth_encrypt", new, "auth_secure", old)
                .unwrap_or(false),
            old.unwrap_or(false),
        )
    };
    let mut circles = decode_circles(cx, &mut f);
    if legacy_auth_secure {
        // 2.5.0: one proxy-level flag covered the backends' credentials too (spec §15.1).
        for backend in circles.iter_mut().flat_map(|c| c.backends.iter_mut()) {
            backend.auth_secure = true;
        }
    }

    let mlog_dir = {
        let new = f.string(cx, "tlog_dir").filter(|s| !s.is_empty());
        let old = f.string(cx, "mlog_dir").filter(|s| !s.is_empty());
        cx.alias("tlog_dir", new, "mlog_dir", old)
            .unwrap_or_else(|| DEFAULT_MLOG_DIR.to_string())
    };

    let (write_tracing, query_tracing) = {
        let write = f.boolean(cx, "write_tracing");
        let query = f.boolean(cx, "query_tracing");
        let legacy = f.boolean(cx, "log_enabled");
        (
            cx.alias("write_tracing", write, "log_enabled", legacy)
                .unwrap_or(false),
            cx.alias("query_tracing", query, "log_enabled", legacy)
                .unwrap_or(false),
        )
    };

    let hash_key_text = f.string_or(cx, "hash_key", DEFAULT_HASH_KEY);
    let hash_key = HashKey::parse(&hash_key_text).unwrap_or_else(|msg| {
        cx.err("hash_key", msg);
        HashKey::Idx
    });
    let shard_key_text = f.string_or(cx, "shard_key", DEFAULT_SHARD_KEY);
    let shard_key = match ShardKey::parse(&shard_key_text) {
        Ok(key) => Some(key),
        Err(msg) => {
            cx.err("shard_key", msg);
            ShardKey::parse(DEFAULT_SHARD_KEY).ok()
        }
    };

    let tls = decode_tls(cx, &mut f);

    let config = Config {
        circles,
        listen_addr: f.string_or(cx, "listen_addr", DEFAULT_LISTEN_ADDR),
        db_list: f.strings(cx, "db_list").unwrap_or_default(),
        data_dir: PathBuf::from(f.string_or(cx, "data_dir", DEFAULT_DATA_DIR)),
        mlog_dir: PathBuf::from(mlog_dir),
        hash_key,
        shard_key: shard_key?,
        vnode_size: f.count(cx, "vnode_size", DEFAULT_VNODE_SIZE),
        flush_size: f.count(cx, "flush_size", DEFAULT_FLUSH_SIZE),
        flush_time: f.secs(cx, "flush_time", default_secs::FLUSH_TIME),
        check_interval: f.secs(cx, "check_interval", default_secs::CHECK_INTERVAL),
        rewrite_interval: f.secs(cx, "rewrite_interval", default_secs::REWRITE_INTERVAL),
        rewrite_threads: f.count(cx, "rewrite_threads", DEFAULT_REWRITE_THREADS),
        write_timeout: f.secs(cx, "write_timeout", default_secs::WRITE_TIMEOUT),
        query_timeout: f.secs(cx, "query_timeout", default_secs::QUERY_TIMEOUT),
        idle_timeout: f.secs(cx, "idle_timeout", default_secs::IDLE_TIMEOUT),
        conn_pool_size: f.count(cx, "conn_pool_size", DEFAULT_CONN_POOL_SIZE),
        username: Secret::from(f.string(cx, "username").unwrap_or_default()),
        password: Secret::from(f.string(cx, "password").unwrap_or_default()),
        auth_secure,
        ping_auth_enabled: f.boolean(cx, "ping_auth_enabled").unwrap_or(false),
        pprof_enabled: f.boolean(cx, "pprof_enabled").unwrap_or(false),
        write_tracing,
        query_tracing,
        https_enabled: f.boolean(cx, "https_enabled").unwrap_or(false),
        https_cert: f.string(cx, "https_cert").unwrap_or_default(),
        https_key: f.string(cx, "https_key").unwrap_or_default(),
        tls,
        ha_addrs: f.strings(cx, "ha_addrs").unwrap_or_default(),
        migrate_cpus: f.count(cx, "migrate_cpus", DEFAULT_MIGRATE_CPUS),
        migrate_batch: f.count(cx, "migrate_batch", DEFAULT_MIGRATE_BATCH),
        wal_sync: f.boolean(cx, "wal_sync").unwrap_or(false),
        write_concurrency: f.count(cx, "write_concurrency", DEFAULT_WRITE_CONCURRENCY),
        write_gzip: f.boolean(cx, "write_gzip").unwrap_or(true),
        wal_max_bytes: f.positive(cx, "wal_max_bytes", DEFAULT_WAL_MAX_BYTES),
        dead_letter_max_bytes: f.positive(
            cx,
            "dead_letter_max_bytes",
            DEFAULT_DEAD_LETTER_MAX_BYTES,
        ),
        wal_min_free_mb: f.unsigned(cx, "wal_min_free_mb", DEFAULT_WAL_MIN_FREE_MB),
        log_level: f.string_or(cx, "log_level", DEFAULT_LOG_LEVEL),
        max_body_bytes: f.count(cx, "max_body_bytes", DEFAULT_MAX_BODY_BYTES),
        max_decompressed_bytes: f.count(
            cx,
            "max_decompressed_bytes",
            DEFAULT_MAX_DECOMPRESSED_BYTES,
        ),
        max_line_bytes: f.count(cx, "max_line_bytes", DEFAULT_MAX_LINE_BYTES),
        shutdown_timeout: f.secs(cx, "shutdown_timeout", default_secs::SHUTDOWN_TIMEOUT),
        memory_budget_mb: f.positive(cx, "memory_budget_mb", memory::DEFAULT_BUDGET_MB),
        rules: decode_rules(cx, &mut f),
        timestamp_window: {
            let new = f.positive(cx, "timestamp_window", 0);
            let old = f.positive(cx, "max_time_delta_secs", 0);
            let secs = cx.alias(
                "timestamp_window",
                (new > 0).then_some(new),
                "max_time_delta_secs",
                (old > 0).then_some(old),
            );
            secs.map(Duration::from_secs)
        },
        udp: decode_udp(cx, &mut f),
        anti_entropy_interval: {
            let secs = f.positive(cx, "anti_entropy_interval", 0);
            (secs > 0).then(|| Duration::from_secs(secs))
        },
        anti_entropy_window: f.secs(cx, "anti_entropy_window", DEFAULT_ANTI_ENTROPY_WINDOW),
        anti_entropy_rate: f.unsigned(cx, "anti_entropy_rate", DEFAULT_ANTI_ENTROPY_RATE),
        write_pace_max_wait: Duration::from_millis(f.unsigned(
            cx,
            "write_pace_max_wait_ms",
            DEFAULT_WRITE_PACE_MAX_WAIT_MS,
        )),
    };
    f.finish(cx);
    Some(config)
}

/// Decodes `circles` (absent or `null` = empty, which validation reports).
fn decode_circles(cx: &mut Cx, f: &mut Fields<'_>) -> Vec<CircleConfig> {
    let path = f.path("circles");
    let items = match f.take("circles") {
        None => return Vec::new(),
        Some(Node::Array(items)) => items,
        Some(other) => {
            cx.err(
                &path,
                format!("expected an array of circles, found {}", other.kind()),
            );
            return Vec::new();
        }
    };
    let mut circles = Vec::with_capacity(items.len());
    for (ci, item) in items.iter().enumerate() {
        let at = format!("{path}[{ci}]");
        let Some(mut cf) = Fields::new(cx, &at, item) else {
            continue;
        };
        let name = cf.string(cx, "name").unwrap_or_default();
        let mut backends = Vec::new();
        let backends_path = cf.path("backends");
        match cf.take("backends") {
            None => {}
            Some(Node::Array(items)) => {
                for (bi, item) in items.iter().enumerate() {
                    if let Some(backend) =
                        decode_backend(cx, &format!("{backends_path}[{bi}]"), item)
                    {
                        backends.push(backend);
                    }
                }
            }
            Some(other) => cx.err(
                &backends_path,
                format!("expected an array of backends, found {}", other.kind()),
            ),
        }
        cf.finish(cx);
        circles.push(CircleConfig { name, backends });
    }
    circles
}

/// Decodes `rules` (absent or `null` = none). Regexes are compiled here, so a bad one is a
/// load error at its path; what depends on the circles (pinned backends) is `validate`'s.
fn decode_rules(cx: &mut Cx, f: &mut Fields<'_>) -> Vec<LineRule> {
    let path = f.path("rules");
    let items = match f.take("rules") {
        None => return Vec::new(),
        Some(Node::Array(items)) => items,
        Some(other) => {
            cx.err(
                &path,
                format!("expected an array of rules, found {}", other.kind()),
            );
            return Vec::new();
        }
    };
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| decode_rule(cx, &format!("{path}[{i}]"), i, item))
        .collect()
}

/// Decodes one rule object.
fn decode_rule(cx: &mut Cx, at: &str, index: usize, node: &Node) -> Option<LineRule> {
    let mut f = Fields::new(cx, at, node)?;
    let name = f
        .string(cx, "name")
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| format!("rule-{index}"));
    let database = {
        let new = f.string(cx, "database").filter(|s| !s.is_empty());
        let old = f.string(cx, "db").filter(|s| !s.is_empty());
        cx.alias(&f.path("database"), new, &f.path("db"), old)
    };
    let pattern = |cx: &mut Cx, f: &mut Fields<'_>, key: &'static str| {
        let text = f.string(cx, key).filter(|s| !s.is_empty())?;
        Pattern::new(&text)
            .map_err(|e| cx.err(&f.path(key), format!("invalid regex: {e}")))
            .ok()
    };
    let exact = f.string(cx, "measurement").filter(|s| !s.is_empty());
    let regex = pattern(cx, &mut f, "measurement_regex");
    let measurement = match (exact, regex) {
        (Some(_), Some(_)) => {
            cx.err(
                &f.path("measurement_regex"),
                "give measurement or measurement_regex, not both",
            );
            MeasurementMatch::Any
        }
        (Some(name), None) => MeasurementMatch::Exact(name),
        (None, Some(p)) => MeasurementMatch::Regex(p),
        (None, None) => MeasurementMatch::Any,
    };
    let tag_key = f.string(cx, "tag").filter(|s| !s.is_empty());
    let tag_value = pattern(cx, &mut f, "tag_regex");
    let tag = match (tag_key, tag_value) {
        (Some(key), Some(value)) => Some(TagMatch { key, value }),
        (None, None) => None,
        (Some(_), None) => {
            cx.err(&f.path("tag_regex"), "a tag condition needs tag_regex");
            None
        }
        (None, Some(_)) => {
            cx.err(&f.path("tag"), "tag_regex needs the tag key it applies to");
            None
        }
    };
    let backends = f.strings(cx, "backends");
    let action_path = f.path("action");
    let action = match f
        .string(cx, "action")
        .map(|a| a.to_ascii_lowercase())
        .as_deref()
    {
        Some("drop") => RuleAction::Drop,
        Some("keep") => RuleAction::Keep,
        Some("pin") => RuleAction::Pin(backends.clone().unwrap_or_default()),
        Some(other) => {
            cx.err(
                &action_path,
                format!("unknown action {other:?} (use \"drop\", \"keep\" or \"pin\")"),
            );
            RuleAction::Drop
        }
        None => {
            cx.err(&action_path, "missing (\"drop\", \"keep\" or \"pin\")");
            RuleAction::Drop
        }
    };
    if backends.is_some() && !matches!(action, RuleAction::Pin(_)) {
        cx.err(&f.path("backends"), "only a pin rule names backends");
    }
    f.finish(cx);
    Some(LineRule {
        name,
        database,
        measurement,
        tag,
        action,
    })
}

/// Decodes one backend object.
fn decode_backend(cx: &mut Cx, at: &str, node: &Node) -> Option<BackendConfig> {
    let mut f = Fields::new(cx, at, node)?;
    let auth_new = f.boolean(cx, "auth_encrypt");
    let auth_old = f.boolean(cx, "auth_secure");
    let backend = BackendConfig {
        name: f.string(cx, "name").unwrap_or_default(),
        url: f.string(cx, "url").unwrap_or_default(),
        username: Secret::from(f.string(cx, "username").unwrap_or_default()),
        password: Secret::from(f.string(cx, "password").unwrap_or_default()),
        auth_secure: cx
            .alias(
                &f.path("auth_encrypt"),
                auth_new,
                &f.path("auth_secure"),
                auth_old,
            )
            .unwrap_or(false),
        write_only: f.boolean(cx, "write_only").unwrap_or(false),
        tls_skip_verify: f.boolean(cx, "tls_skip_verify").unwrap_or(false),
    };
    f.finish(cx);
    Some(backend)
}

/// Decodes `tls`; `None` when absent, `null` or all of its fields are empty (as in Go).
fn decode_tls(cx: &mut Cx, f: &mut Fields<'_>) -> Option<TlsConfig> {
    let path = f.path("tls");
    let node = f.take("tls")?;
    let mut tf = Fields::new(cx, &path, node)?;
    let ciphers = tf.strings(cx, "ciphers").unwrap_or_default();
    for (i, name) in ciphers.iter().enumerate() {
        if !TLS_CIPHERS.contains(&name.trim().to_ascii_uppercase().as_str()) {
            cx.err(
                &format!("{}[{i}]", tf.path("ciphers")),
                unknown_cipher(name),
            );
        }
    }
    let mut version = |cx: &mut Cx, key: &'static str| {
        let text = tf.string(cx, key).filter(|s| !s.is_empty())?;
        let parsed = TlsVersion::parse(&text);
        if parsed.is_none() {
            cx.err(&tf.path(key), unknown_tls_version(&text));
        }
        parsed
    };
    let min_version = version(cx, "min_version");
    let max_version = version(cx, "max_version");
    tf.finish(cx);
    if ciphers.is_empty() && min_version.is_none() && max_version.is_none() {
        return None;
    }
    Some(TlsConfig {
        ciphers: ciphers
            .into_iter()
            .map(|c| c.trim().to_ascii_uppercase())
            .collect(),
        min_version,
        max_version,
    })
}

/// Decodes `udp` (absent or `null`: no listener), each entry under influxd's, influxdb-relay's
/// and influx-spout's key names too.
fn decode_udp(cx: &mut Cx, f: &mut Fields<'_>) -> Vec<UdpConfig> {
    let path = f.path("udp");
    let items = match f.take("udp") {
        None => return Vec::new(),
        Some(Node::Array(items)) => items,
        Some(other) => {
            cx.err(
                &path,
                format!("expected an array of UDP listeners, found {}", other.kind()),
            );
            return Vec::new();
        }
    };
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| decode_udp_listener(cx, &format!("{path}[{i}]"), item))
        .collect()
}

/// The values given under `keys` (several names of one setting), each read by `read`, with
/// their paths.
fn named<T>(
    cx: &mut Cx,
    f: &mut Fields<'_>,
    keys: &[&'static str],
    mut read: impl FnMut(&mut Cx, &str, Option<&Node>) -> Option<T>,
) -> Vec<(String, Option<T>)> {
    keys.iter()
        .map(|&key| {
            let path = f.path(key);
            let node = f.take(key);
            let value = read(cx, &path, node);
            (path, value)
        })
        .collect()
}

/// The first value given of several names of one setting; each other name given with a
/// different value is an error naming both.
fn one_of<T: PartialEq + fmt::Debug>(cx: &mut Cx, named: Vec<(String, Option<T>)>) -> Option<T> {
    let mut given = named.into_iter().filter_map(|(path, v)| Some((path, v?)));
    let (first_path, first) = given.next()?;
    for (path, value) in given {
        if value != first {
            cx.err(
                &path,
                format!(
                    "conflicts with {first_path} ({value:?} vs {first:?}); they are two names of \
                     one setting, keep one"
                ),
            );
        }
    }
    Some(first)
}

/// Decodes one `udp[]` entry.
fn decode_udp_listener(cx: &mut Cx, at: &str, node: &Node) -> Option<UdpConfig> {
    let mut f = Fields::new(cx, at, node)?;
    let text = |cx: &mut Cx, path: &str, node: Option<&Node>| {
        cx.string(path, node).filter(|s| !s.is_empty())
    };
    let int = |cx: &mut Cx, path: &str, node: Option<&Node>| cx.int(path, node);
    let mut bind = named(
        cx,
        &mut f,
        &["bind_addr", "bind-address", "bind_address", "bind-addr"],
        text,
    );
    // influx-spout names a port only: every interface.
    bind.extend(named(cx, &mut f, &["port"], |cx, path, node| {
        cx.int(path, node).map(|port| format!(":{port}"))
    }));
    let bind_addr = one_of(cx, bind).unwrap_or_default();
    let database = named(cx, &mut f, &["database"], text);
    let database = one_of(cx, database).unwrap_or_default();
    let rp = named(cx, &mut f, &["retention_policy", "retention-policy"], text);
    let retention_policy = one_of(cx, rp).unwrap_or_default();
    let precision = match f.string(cx, "precision") {
        None => Precision::Nanoseconds,
        Some(text) => Precision::parse(text.trim()).unwrap_or_else(|msg| {
            cx.err(&f.path("precision"), msg);
            Precision::Nanoseconds
        }),
    };
    let read_buffer = named(
        cx,
        &mut f,
        &["read_buffer", "read-buffer", "read_buffer_bytes"],
        |cx, path, node| match cx.int(path, node)? {
            v if v < 0 => {
                cx.err(path, format!("must not be negative, got {v}"));
                None
            }
            v => Some(v),
        },
    );
    let read_buffer = one_of(cx, read_buffer).unwrap_or(0);
    // 0 or negative: the default, as for every count.
    let mut count = |cx: &mut Cx, keys: &[&'static str], default: usize| {
        let values = named(cx, &mut f, keys, int);
        match one_of(cx, values) {
            Some(v) if v > 0 => usize::try_from(v).unwrap_or(usize::MAX),
            _ => default,
        }
    };
    let batch_size = count(
        cx,
        &["batch_size", "batch-size", "batch"],
        DEFAULT_UDP_BATCH_SIZE,
    );
    let batch_pending = count(
        cx,
        &["batch_pending", "batch-pending"],
        DEFAULT_UDP_BATCH_PENDING,
    );
    let timeout = named(cx, &mut f, &["batch_timeout", "batch-timeout"], duration);
    let batch_timeout = one_of(cx, timeout)
        .filter(|d| !d.is_zero())
        .unwrap_or(DEFAULT_UDP_BATCH_TIMEOUT);
    let enabled = f.boolean(cx, "enabled").unwrap_or(true);
    f.finish(cx);
    Some(UdpConfig {
        bind_addr,
        enabled,
        database,
        retention_policy,
        precision,
        read_buffer: usize::try_from(read_buffer).unwrap_or(usize::MAX),
        batch_size,
        batch_timeout,
        batch_pending,
    })
}

/// A duration: a number of seconds (as every duration key), or a Go duration string as influxd
/// writes them (`"1s"`, `"500ms"`, `"1m30s"`); `None` when absent or invalid (reported).
fn duration(cx: &mut Cx, path: &str, node: Option<&Node>) -> Option<Duration> {
    match node? {
        Node::String(s)
            if s.trim()
                .ends_with(|c: char| c.is_ascii_alphabetic() || c == 'µ') =>
        {
            parse_go_duration(s.trim()).or_else(|| {
                cx.err(
                    path,
                    format!("expected seconds or a duration such as \"500ms\", found {s:?}"),
                );
                None
            })
        }
        other => {
            let secs = cx.int(path, Some(other))?;
            Some(Duration::from_secs(secs.max(0).unsigned_abs()))
        }
    }
}

/// Go's `time.ParseDuration` for non-negative values: decimal numbers each with a unit (`ns`,
/// `us`, `µs`, `ms`, `s`, `m`, `h`), e.g. `1h2m0.5s`. Also the console's `--interval`.
pub(crate) fn parse_go_duration(text: &str) -> Option<Duration> {
    let mut rest = text;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|&n| n > 0)?;
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos_per_unit = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += number * nanos_per_unit;
        rest = &rest[unit_len..];
    }
    (total.is_finite() && total < u64::MAX as f64).then(|| Duration::from_nanos(total as u64))
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::cipher;
    use crate::config::test_support::*;

    #[test]
    fn packaged_readme_sample_loads_with_defaults() {
        let cfg = load(include_str!("../../packaging/proxy.json"));
        let names: Vec<Vec<(&str, &str)>> = cfg
            .circles
            .iter()
            .map(|c| {
                c.backends
                    .iter()
                    .map(|b| (b.name.as_str(), b.url.as_str()))
                    .collect()
            })
            .collect();
        assert_eq!(
            names,
            [
                [
                    ("influxdb-1-1", "http://127.0.0.1:8086"),
                    ("influxdb-1-2", "http://127.0.0.1:8087")
                ],
                [
                    ("influxdb-2-1", "http://127.0.0.1:8088"),
                    ("influxdb-2-2", "http://127.0.0.1:8089")
                ]
            ]
        );
        assert_eq!(cfg.circles[0].name, "circle-1");
        assert_eq!(cfg.circles[1].name, "circle-2");
        assert_eq!(
            cfg.socket_addr(),
            Ok("0.0.0.0:7076".parse::<SocketAddr>().unwrap())
        );
        assert_eq!(cfg.data_dir, PathBuf::from("data"));
        assert_eq!(cfg.mlog_dir, PathBuf::from("log"));
        assert!(!cfg.auth_enabled());
        assert!(!cfg.auth_secure);
        assert!(cfg.circles[0].backends[0].credentials().is_none());
        // Everything not in the file has the same defaults as a minimal config.
        let minimal = load(&minimal(""));
        assert_eq!(cfg.shard_key, minimal.shard_key);
        assert_eq!(cfg.flush_time, minimal.flush_time);
        assert_eq!(cfg.wal_max_bytes, minimal.wal_max_bytes);
    }

    #[test]
    fn every_default_of_a_minimal_config() {
        let cfg = load(&minimal(""));
        assert_eq!(cfg.listen_addr, ":7076");
        assert!(cfg.db_list.is_empty());
        assert_eq!(cfg.data_dir, PathBuf::from("data"));
        assert_eq!(cfg.mlog_dir, PathBuf::from("log"));
        assert_eq!(cfg.hash_key, hash_key("idx"));
        assert_eq!(cfg.shard_key, shard_key("%db,%mm"));
        assert_eq!(cfg.vnode_size, 256);
        assert_eq!(cfg.flush_size, 10_000);
        assert_eq!(cfg.flush_time, Duration::from_secs(1));
        assert_eq!(cfg.check_interval, Duration::from_secs(1));
        assert_eq!(cfg.rewrite_interval, Duration::from_secs(10));
        assert_eq!(cfg.rewrite_threads, 5);
        assert_eq!(cfg.write_timeout, Duration::from_secs(10));
        assert_eq!(cfg.query_timeout, Duration::from_secs(60));
        assert_eq!(cfg.idle_timeout, Duration::from_secs(10));
        assert_eq!(cfg.conn_pool_size, 20);
        assert!(cfg.username.is_empty() && cfg.password.is_empty());
        assert!(!cfg.auth_secure && !cfg.ping_auth_enabled && !cfg.pprof_enabled);
        assert!(!cfg.write_tracing && !cfg.query_tracing);
        assert!(!cfg.https_enabled && cfg.https_cert.is_empty() && cfg.https_key.is_empty());
        assert_eq!(cfg.tls, None);
        assert!(cfg.ha_addrs.is_empty());
        assert_eq!(cfg.migrate_cpus, 1);
        assert_eq!(cfg.migrate_batch, 25_000);
        assert!(!cfg.wal_sync);
        assert_eq!((cfg.write_concurrency, cfg.write_gzip), (4, true));
        assert_eq!(cfg.wal_max_bytes, 1_073_741_824);
        assert_eq!(cfg.dead_letter_max_bytes, 1_073_741_824);
        assert_eq!(cfg.wal_min_free_mb, 256);
        assert_eq!(cfg.log_level, "info");
        assert_eq!(cfg.max_body_bytes, 67_108_864);
        assert_eq!(cfg.max_decompressed_bytes, 536_870_912);
        assert_eq!(cfg.max_line_bytes, 4_194_304);
        assert_eq!(cfg.shutdown_timeout, Duration::from_secs(30));
        let b = &cfg.circles[0].backends[0];
        assert!(!b.auth_secure && !b.write_only && !b.tls_skip_verify);
        assert!(b.username.is_empty() && b.password.is_empty());
    }

    #[test]
    fn the_free_space_reserve_may_be_zero_but_not_negative() {
        assert_eq!(load(&minimal(r#""wal_min_free_mb": 0"#)).wal_min_free_mb, 0);
        assert_eq!(
            load(&minimal(r#""wal_min_free_mb": 64"#)).wal_min_free_mb,
            64
        );
        assert_eq!(
            problems(&minimal(r#""wal_min_free_mb": -1"#)),
            ["wal_min_free_mb: must not be negative, got -1"]
        );
    }

    #[test]
    fn zero_negative_null_and_empty_values_mean_default() {
        let cfg = load(&minimal(
            r#""flush_size": 0, "flush_time": -3, "check_interval": null,
               "rewrite_interval": "", "conn_pool_size": -1, "vnode_size": 0,
               "wal_max_bytes": 0, "shutdown_timeout": -1, "query_timeout": 0, "listen_addr": "",
               "data_dir": "", "hash_key": "", "shard_key": null, "log_level": """#,
        ));
        let default = load(&minimal(""));
        assert_eq!(cfg, default);
    }

    #[test]
    fn every_value_is_read_when_set() {
        let cfg = load(&minimal(
            r#""listen_addr": "127.0.0.1:8000", "db_list": ["a", "b"], "data_dir": "/d",
               "tlog_dir": "/t", "hash_key": "name", "shard_key": "%mm", "vnode_size": 100,
               "flush_size": 5, "flush_time": 2, "check_interval": 3, "rewrite_interval": 4,
               "rewrite_threads": 6, "write_timeout": 7, "idle_timeout": 8,
               "conn_pool_size": 9, "username": "u", "password": "p",
               "ping_auth_enabled": true, "pprof_enabled": true, "write_tracing": true,
               "query_tracing": true, "ha_addrs": ["p1:7076", "p2:7076"], "migrate_cpus": 4,
               "migrate_batch": 1000, "wal_sync": true, "wal_max_bytes": 8192,
               "write_concurrency": 2, "write_gzip": false,
               "dead_letter_max_bytes": 4096, "log_level": "debug,influx_proxy=trace",
               "max_body_bytes": 10, "max_decompressed_bytes": 20, "max_line_bytes": 30,
               "shutdown_timeout": 5, "query_timeout": 11"#,
        ));
        assert_eq!(cfg.listen_addr, "127.0.0.1:8000");
        assert_eq!(cfg.db_list, ["a", "b"]);
        assert_eq!(cfg.data_dir, PathBuf::from("/d"));
        assert_eq!(cfg.mlog_dir, PathBuf::from("/t"));
        assert_eq!(cfg.hash_key, hash_key("name"));
        assert_eq!(cfg.shard_key, shard_key("%mm"));
        assert_eq!(
            (
                cfg.vnode_size,
                cfg.flush_size,
                cfg.rewrite_threads,
                cfg.conn_pool_size
            ),
            (100, 5, 6, 9)
        );
        assert_eq!(
            [cfg.flush_time, cfg.check_interval, cfg.rewrite_interval],
            [2, 3, 4].map(Duration::from_secs)
        );
        assert_eq!(
            [
                cfg.write_timeout,
                cfg.idle_timeout,
                cfg.shutdown_timeout,
                cfg.query_timeout
            ],
            [7, 8, 5, 11].map(Duration::from_secs)
        );
        assert_eq!((cfg.username.expose(), cfg.password.expose()), ("u", "p"));
        assert!(cfg.auth_enabled());
        assert!(cfg.ping_auth_enabled && cfg.pprof_enabled);
        assert!(cfg.write_tracing && cfg.query_tracing);
        assert_eq!(cfg.ha_addrs, ["p1:7076", "p2:7076"]);
        assert_eq!((cfg.migrate_cpus, cfg.migrate_batch), (4, 1000));
        assert!(cfg.wal_sync);
        assert_eq!((cfg.write_concurrency, cfg.write_gzip), (2, false));
        assert_eq!((cfg.wal_max_bytes, cfg.dead_letter_max_bytes), (8192, 4096));
        assert_eq!(cfg.log_level, "debug,influx_proxy=trace");
        assert_eq!(
            (
                cfg.max_body_bytes,
                cfg.max_decompressed_bytes,
                cfg.max_line_bytes
            ),
            (10, 20, 30)
        );
    }

    #[test]
    fn go_2_5_12_config_with_every_field_loads() {
        let cfg = load(
            r#"{
            "circles": [{"name": "circle-1", "backends": [
                {"name": "influxdb-1-1", "url": "https://10.0.0.1:8086", "username": "",
                 "password": "", "auth_encrypt": false, "write_only": true}]}],
            "listen_addr": ":7076", "db_list": [], "data_dir": "data", "tlog_dir": "log",
            "hash_key": "%idx", "shard_key": "%db,%mm", "flush_size": 10000, "flush_time": 1,
            "check_interval": 1, "rewrite_interval": 10, "rewrite_threads": 5,
            "conn_pool_size": 20, "write_timeout": 10, "idle_timeout": 10, "username": "",
            "password": "", "auth_encrypt": false, "ping_auth_enabled": false,
            "write_tracing": false, "query_tracing": false, "pprof_enabled": false,
            "https_enabled": false, "https_cert": "", "https_key": "",
            "tls": {"ciphers": [], "min_version": "", "max_version": ""}
        }"#,
        );
        assert_eq!(cfg.hash_key, hash_key("%idx"));
        assert!(cfg.circles[0].backends[0].write_only);
        assert!(!cfg.circles[0].backends[0].tls_skip_verify);
        assert_eq!(cfg.tls, None, "an all-empty tls object is no restriction");
    }

    #[test]
    fn go_2_5_0_config_with_legacy_fields_loads() {
        let cfg = load(&minimal(
            r#""mlog_dir": "mlog", "vnode_size": 512, "log_enabled": true,
               "ha_addrs": ["10.0.0.1:7076", "proxy-2.local:7076"], "migrate_cpus": 2,
               "migrate_batch": 5000"#,
        ));
        assert_eq!(cfg.mlog_dir, PathBuf::from("mlog"));
        assert_eq!(cfg.vnode_size, 512);
        assert!(cfg.write_tracing && cfg.query_tracing);
        assert_eq!(cfg.ha_addrs.len(), 2);
        assert_eq!((cfg.migrate_cpus, cfg.migrate_batch), (2, 5000));
    }

    #[test]
    fn keys_are_case_insensitive_at_every_level() {
        let cfg = load(
            r#"{"Circles": [{"NAME": "c", "Backends": [{"Name": "b", "URL": "http://h:1",
                 "Write_Only": true}]}], "Listen_Addr": ":9000", "FLUSH_SIZE": 7,
                 "TLS": {"Min_Version": "tls1.2"}}"#,
        );
        assert_eq!(cfg.circles[0].name, "c");
        assert_eq!(cfg.circles[0].backends[0].url, "http://h:1");
        assert!(cfg.circles[0].backends[0].write_only);
        assert_eq!(cfg.listen_addr, ":9000");
        assert_eq!(cfg.flush_size, 7);
        assert_eq!(cfg.tls.and_then(|t| t.min_version), Some(TlsVersion::Tls12));
    }

    #[test]
    fn keys_differing_only_in_case_are_a_duplicate() {
        let p = problems(&minimal(r#""flush_size": 1, "Flush_Size": 2"#));
        assert_problem(&p, "Flush_Size", "duplicate key");
        assert_eq!(p.len(), 1, "{p:?}");
    }

    #[test]
    fn values_are_weakly_typed_like_viper() {
        let cfg = load(
            r#"{"circles": [{"backends": [{"name": "b", "url": "http://h:1",
                 "write_only": "true", "auth_encrypt": "0", "tls_skip_verify": 1}]}],
                 "flush_size": "5", "flush_time": " 2 ", "vnode_size": 300.0,
                 "https_enabled": "false", "pprof_enabled": "1", "wal_sync": "T",
                 "db_list": "db1, db2,", "ha_addrs": "", "wal_max_bytes": "65536"}"#,
        );
        assert_eq!(cfg.flush_size, 5);
        assert_eq!(cfg.flush_time, Duration::from_secs(2));
        assert_eq!(cfg.vnode_size, 300);
        assert!(!cfg.https_enabled && cfg.pprof_enabled && cfg.wal_sync);
        assert_eq!(cfg.db_list, ["db1", "db2"]);
        assert!(cfg.ha_addrs.is_empty());
        assert_eq!(cfg.wal_max_bytes, 65536);
        let b = &cfg.circles[0].backends[0];
        assert!(b.write_only && !b.auth_secure && b.tls_skip_verify);
    }

    #[test]
    fn wrong_types_are_reported_with_their_paths() {
        let p = problems(
            r#"{"circles": [{"name": 5, "backends": [{"name": "b", "url": "http://h:1",
                 "username": 12, "write_only": "yes"}]}],
                 "listen_addr": 7076, "flush_size": "many", "flush_time": 1.5,
                 "https_enabled": [], "db_list": ["a", 1], "tls": "tls1.2",
                 "idle_timeout": true, "max_body_bytes": 1e300}"#,
        );
        assert_problem(&p, "max_body_bytes", "is out of range");
        assert_problem(&p, "circles[0].name", "expected a string, found a number");
        assert_problem(&p, "circles[0].backends[0].username", "expected a string");
        assert_problem(
            &p,
            "circles[0].backends[0].write_only",
            "expected a boolean",
        );
        assert_problem(&p, "listen_addr", "expected a string, found a number");
        assert_problem(&p, "flush_size", "expected an integer, found \"many\"");
        assert_problem(&p, "flush_time", "expected an integer, found 1.5");
        assert_problem(&p, "https_enabled", "expected a boolean, found an array");
        assert_problem(&p, "db_list[1]", "expected a string");
        assert_problem(&p, "tls", "expected an object");
        assert_problem(&p, "idle_timeout", "expected an integer, found a boolean");
        assert_eq!(p.len(), 11, "{p:#?}");
    }

    #[test]
    fn a_type_error_is_not_reported_again_by_validation() {
        // `circles` is not an array: one problem, not also "circles cannot be empty".
        let p = problems(r#"{"circles": "c1"}"#);
        assert_eq!(p, ["circles: expected an array of circles, found a string"]);
        let p = problems(r#"{"circles": [{"backends": [{"name": 1, "url": "http://h:1"}]}]}"#);
        assert_eq!(
            p,
            ["circles[0].backends[0].name: expected a string, found a number"]
        );
    }

    #[test]
    fn tlog_dir_and_mlog_dir_are_aliases() {
        assert_eq!(
            load(&minimal(r#""tlog_dir": "/x""#)).mlog_dir,
            PathBuf::from("/x")
        );
        assert_eq!(
            load(&minimal(r#""mlog_dir": "/x""#)).mlog_dir,
            PathBuf::from("/x")
        );
        assert_eq!(
            load(&minimal(r#""mlog_dir": "/x", "tlog_dir": "/x""#)).mlog_dir,
            PathBuf::from("/x")
        );
        // An empty old name does not conflict with a new one.
        assert_eq!(
            load(&minimal(r#""mlog_dir": "", "tlog_dir": "/y""#)).mlog_dir,
            PathBuf::from("/y")
        );
    }

    #[test]
    fn auth_secure_and_auth_encrypt_are_aliases_for_the_proxy_credentials() {
        let admin = cipher::encrypt("admin");
        for key in ["auth_encrypt", "auth_secure", "AUTH_SECURE"] {
            let cfg = load(&minimal(&format!(
                r#""{key}": true, "username": "{admin}", "password": "{admin}""#
            )));
            assert!(cfg.auth_secure, "{key}");
            assert!(cfg.auth_enabled());
            assert_eq!(cfg.username.expose(), "YgvEyuPZlDYAH8sGDkC!Ag");
        }
    }

    #[test]
    fn conflicting_aliases_are_an_error_naming_both_paths() {
        let p = problems(
            r#"{"circles": [{"backends": [{"name": "b", "url": "http://h:1",
                 "auth_encrypt": true, "auth_secure": false}]}],
                 "tlog_dir": "/a", "mlog_dir": "/b", "auth_encrypt": false,
                 "auth_secure": "true", "write_tracing": false, "log_enabled": true}"#,
        );
        assert_problem(
            &p,
            "circles[0].backends[0].auth_secure",
            "conflicts with circles[0].backends[0].auth_encrypt",
        );
        assert_problem(&p, "mlog_dir", "conflicts with tlog_dir");
        assert_problem(&p, "auth_secure", "conflicts with auth_encrypt");
        assert_problem(&p, "log_enabled", "conflicts with write_tracing");
        assert_eq!(p.len(), 4, "{p:#?}");
    }

    #[test]
    fn log_enabled_sets_both_tracing_flags_unless_they_agree_explicitly() {
        let cfg = load(&minimal(r#""log_enabled": true, "query_tracing": true"#));
        assert!(cfg.write_tracing && cfg.query_tracing);
        let cfg = load(&minimal(r#""log_enabled": false"#));
        assert!(!cfg.write_tracing && !cfg.query_tracing);
        let cfg = load(&minimal(r#""write_tracing": true"#));
        assert!(cfg.write_tracing && !cfg.query_tracing);
    }

    #[test]
    fn legacy_proxy_auth_secure_also_decrypts_backend_credentials() {
        let admin = cipher::encrypt("admin");
        let secret = cipher::encrypt("s3cret");
        let json = format!(
            r#"{{"circles": [{{"backends": [{{"name": "b", "url": "http://h:1",
                 "username": "{admin}", "password": "{secret}"}}]}}],
                 "auth_secure": true, "username": "{admin}", "password": "{secret}"}}"#
        );
        let cfg = load(&json);
        let backend = &cfg.circles[0].backends[0];
        assert!(backend.auth_secure);
        assert_eq!(
            backend.credentials(),
            Some(("admin".to_string(), "s3cret".to_string()))
        );
    }

    #[test]
    fn auth_encrypt_covers_only_proxy_credentials() {
        let admin = cipher::encrypt("admin");
        let json = format!(
            r#"{{"circles": [{{"backends": [{{"name": "b", "url": "http://h:1",
                 "username": "plain-user", "password": "plain-pass"}}]}}],
                 "auth_encrypt": true, "username": "{admin}", "password": "{admin}"}}"#
        );
        let backend = load(&json).circles[0].backends[0].clone();
        assert!(!backend.auth_secure);
        assert_eq!(
            backend.credentials(),
            Some(("plain-user".to_string(), "plain-pass".to_string()))
        );
    }

    #[test]
    fn per_backend_auth_flag_decrypts_with_either_name() {
        for key in ["auth_encrypt", "auth_secure"] {
            let json = format!(
                r#"{{"circles": [{{"backends": [{{"name": "b", "url": "http://h:1",
                     "username": "YgvEyuPZlDYAH8sGDkC!Ag", "password": "",
                     "{key}": true}}]}}]}}"#
            );
            let backend = &load(&json).circles[0].backends[0];
            assert!(backend.auth_secure, "{key}");
            assert_eq!(
                backend.credentials(),
                Some(("admin".to_string(), String::new()))
            );
        }
    }

    #[test]
    fn unknown_fields_are_reported_with_path_and_hint() {
        let p = problems(
            r#"{"circles": [{"backends": [{"name": "a", "url": "http://h:1"},
                 {"nmae": "b", "url": "http://h:2"}], "colour": "red"}],
                 "flush_sise": 1, "tls": {"ciphers": [], "min": "1.2"},
                 "completely_unrelated": 0}"#,
        );
        assert_problem(
            &p,
            "circles[0].backends[1].nmae",
            "unknown field (did you mean \"name\"?)",
        );
        assert_problem(&p, "circles[0].colour", "unknown field");
        assert_problem(&p, "flush_sise", "did you mean \"flush_size\"?");
        assert_problem(&p, "tls.min", "unknown field");
        assert!(p.contains(&"completely_unrelated: unknown field".to_string()));
        // The misspelt name leaves the backend without one.
        assert_problem(
            &p,
            "circles[0].backends[1].name",
            "backend name cannot be empty",
        );
        assert_eq!(p.len(), 6, "{p:#?}");
    }

    #[test]
    fn invalid_hash_key_and_shard_key_are_reported() {
        let p = problems(&minimal(r#""hash_key": "md5", "shard_key": "%rp""#));
        assert!(p.iter().any(|m| m.starts_with("hash_key: ")), "{p:?}");
        assert!(p.iter().any(|m| m.starts_with("shard_key: ")), "{p:?}");
        assert_eq!(p.len(), 2);
        for key in ["idx", "exi", "name", "url", "node-%idx"] {
            let cfg = load(&minimal(&format!(r#""hash_key": "{key}""#)));
            assert_eq!(cfg.hash_key, hash_key(key));
        }
        let cfg = load(&minimal(r#""shard_key": "%db.%mm""#));
        assert_eq!(cfg.shard_key, shard_key("%db.%mm"));
    }

    #[test]
    fn tls_names_are_case_insensitive_and_unknown_ones_reported() {
        let cfg = load(&minimal(
            r#""tls": {"ciphers": ["tls_aes_128_gcm_sha256",
               "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"], "min_version": "1.2",
               "max_version": "TLS1.3"}"#,
        ));
        assert_eq!(
            cfg.tls,
            Some(TlsConfig {
                ciphers: vec![
                    "TLS_AES_128_GCM_SHA256".into(),
                    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".into()
                ],
                min_version: Some(TlsVersion::Tls12),
                max_version: Some(TlsVersion::Tls13),
            })
        );
        for name in ["ssl3.0", "tls1.0", "1.0", "TLS1.1", "1.1", "tls1.2", "1.3"] {
            assert!(TlsVersion::parse(name).is_some(), "{name}");
        }
        let p = problems(&minimal(
            r#""tls": {"ciphers": ["TLS_AES_128_GCM_SHA256", "rot13"],
               "min_version": "tls1.4", "max_version": "ssl2"}"#,
        ));
        assert_problem(
            &p,
            "tls.ciphers[1]",
            "unknown cipher suite: \"rot13\". available ciphers: TLS_AES_128_GCM_SHA256, ",
        );
        assert_problem(
            &p,
            "tls.min_version",
            "unknown tls version: \"tls1.4\". available versions: \
             SSL3.0, TLS1.0, TLS1.1, TLS1.2, TLS1.3",
        );
        assert_problem(&p, "tls.max_version", "unknown tls version: \"ssl2\"");
        assert_eq!(p.len(), 3, "{p:#?}");
        let p = problems(&minimal(
            r#""tls": {"min_version": "1.3", "max_version": "1.2"}"#,
        ));
        assert_eq!(
            p,
            ["tls.min_version: min_version TLS1.3 is greater than max_version TLS1.2"]
        );
    }

    #[test]
    fn bad_json_names_line_and_column() {
        let err = Config::from_str("{\n  \"circles\": [\n  ,\n}").unwrap_err();
        assert!(matches!(err, Error::Parse(_)), "{err:?}");
        let text = err.to_string();
        assert!(
            text.starts_with("illegal config file: invalid JSON: "),
            "{text}"
        );
        assert!(text.contains("line 3 column 3"), "{text}");
        let err = Config::from_str("").unwrap_err();
        assert!(err.to_string().contains("line 1 column 0"), "{err}");
        // Trailing commas and comments are not JSON.
        assert!(matches!(
            Config::from_str(r#"{"circles": [],}"#),
            Err(Error::Parse(_))
        ));
        assert!(matches!(Config::from_str("// c\n{}"), Err(Error::Parse(_))));
    }

    #[test]
    fn top_level_must_be_an_object() {
        for json in ["[]", "null", "\"proxy\"", "7076"] {
            let err = Config::from_str(json).unwrap_err();
            assert!(
                err.to_string()
                    .contains("the top level must be a JSON object"),
                "{json}: {err}"
            );
        }
    }

    #[test]
    fn a_utf8_byte_order_mark_is_ignored() {
        let json = format!("\u{feff}{}", minimal(""));
        assert_eq!(load(&json), load(&minimal("")));
    }

    /// One config in the three formats, written as an operator of each would: aliases, mixed
    /// case, weak typing (a string for a number, a comma list for a list).
    const SAME_JSON: &str = r#"{
        "Circles": [{"name": "c1", "backends": [
            {"name": "b1", "url": "http://127.0.0.1:8086", "username": "u", "password": "p"},
            {"name": "b2", "url": "http://127.0.0.1:8087", "write_only": true}]}],
        "listen_addr": ":7076", "DB_LIST": "db1,db2", "flush_size": "500",
        "mlog_dir": "/tmp/m", "auth_secure": false, "log_enabled": true}"#;

    const SAME_YAML: &str = "
Circles:
  - name: c1
    backends:
      - {name: b1, url: 'http://127.0.0.1:8086', username: u, password: p}
      - name: b2
        url: http://127.0.0.1:8087
        write_only: true
listen_addr: ':7076'
DB_LIST: db1,db2
flush_size: '500'
mlog_dir: /tmp/m
auth_secure: false
log_enabled: true
";

    const SAME_TOML: &str = r#"
listen_addr = ":7076"
DB_LIST = "db1,db2"
flush_size = "500"
mlog_dir = "/tmp/m"
auth_secure = false
log_enabled = true

[[Circles]]
name = "c1"
backends = [
  { name = "b1", url = "http://127.0.0.1:8086", username = "u", password = "p" },
  { name = "b2", url = "http://127.0.0.1:8087", write_only = true },
]
"#;

    #[test]
    fn json_yaml_and_toml_files_give_one_config() {
        let dir = tempfile::tempdir().unwrap();
        let want = load(SAME_JSON);
        assert_eq!(want.flush_size, 500);
        assert_eq!(want.db_list, ["db1", "db2"]);
        for (name, text) in [
            ("proxy.json", SAME_JSON),
            ("proxy", SAME_JSON),
            ("proxy.JSON", SAME_JSON),
            ("proxy.yaml", SAME_YAML),
            ("proxy.YML", SAME_YAML),
            ("proxy.toml", SAME_TOML),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            assert_eq!(Config::load(&path).unwrap(), want, "{name}");
        }
        let path = dir.path().join("proxy.ini");
        std::fs::write(&path, SAME_JSON).unwrap();
        let err = Config::load(&path).unwrap_err();
        assert!(
            matches!(&err, Error::UnsupportedFormat { ext, .. } if ext == "ini"),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("use .json, .yaml, .yml or .toml"),
            "{err}"
        );
        let missing = dir.path().join("missing.yaml");
        let err = Config::load(&missing).unwrap_err();
        assert!(matches!(err, Error::Read { .. }), "{err:?}");
        assert!(
            err.to_string().starts_with("cannot read config file "),
            "{err}"
        );
    }

    #[test]
    fn the_three_formats_report_the_same_problems_at_the_same_paths() {
        let json = r#"{"circles": [{"name": "c", "backends": [
            {"name": "b1", "url": "ftp://x", "nmae": "y"}]}], "flush_size": true,
            "mlog_dir": "/a", "migrate_log_dir": "/b"}"#;
        let yaml = "
circles:
  - name: c
    backends:
      - {name: b1, url: 'ftp://x', nmae: y}
flush_size: true
mlog_dir: /a
migrate_log_dir: /b
";
        let toml = r#"
flush_size = true
mlog_dir = "/a"
migrate_log_dir = "/b"
[[circles]]
name = "c"
backends = [{ name = "b1", url = "ftp://x", nmae = "y" }]
"#;
        let problems = |text: &str, format: Format| match Config::from_text(text, format) {
            Err(Error::Invalid(p)) => p,
            other => panic!("{format:?}: expected Error::Invalid, got {other:?}"),
        };
        let want = problems(json, Format::Json);
        assert!(want.len() >= 3, "{want:#?}");
        assert_problem(&want, "circles[0].backends[0].nmae", "did you mean");
        assert_eq!(problems(yaml, Format::Yaml), want);
        assert_eq!(problems(toml, Format::Toml), want);
    }

    #[test]
    fn syntax_errors_name_the_format_and_the_place() {
        let err = Config::from_text("circles: [", Format::Yaml).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("illegal config file: invalid YAML: "),
            "{err}"
        );
        assert!(err.to_string().contains("line"), "{err}");
        let err = Config::from_text("circles = [", Format::Toml).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("illegal config file: invalid TOML: "),
            "{err}"
        );
        let err = Config::from_text("- a\n- b\n", Format::Yaml).unwrap_err();
        assert!(err.to_string().contains("found an array"), "{err}");
        // An empty YAML file has no circles, like `{}`: the same message.
        let empty = Config::from_text("", Format::Yaml).unwrap_err().to_string();
        assert_eq!(empty, Config::from_str("{}").unwrap_err().to_string());
    }

    #[test]
    fn edit_distance_and_suggestions() {
        // The distance the hints are tuned for: Levenshtein, a transposition costs 2.
        assert_eq!(strsim::levenshtein("nmae", "name"), 2);
        assert_eq!(strsim::levenshtein("", "abc"), 3);
        assert_eq!(strsim::levenshtein("url", "url"), 0);
        assert_eq!(suggest("urll", &["name", "url"]), Some("url"));
        assert_eq!(suggest("zzzzzz", &["name", "url"]), None);
    }

    #[test]
    fn rules_decode_in_order_with_their_aliases_and_defaults() {
        let cfg = load(&minimal(
            r#""rules": [
                {"action": "drop", "db": "telegraf", "measurement_regex": "^debug_",
                 "tag": "host", "tag_regex": "^test-"},
                {"name": "heavy", "action": "PIN", "database": "d", "measurement": "big",
                 "backends": "b1"}],
               "max_time_delta_secs": 300"#,
        ));
        assert_eq!(cfg.rules.len(), 2);
        let (drop, pin) = (&cfg.rules[0], &cfg.rules[1]);
        assert_eq!(drop.name, "rule-0");
        assert_eq!(drop.database.as_deref(), Some("telegraf"));
        assert_eq!(
            drop.measurement,
            MeasurementMatch::Regex(Pattern::new("^debug_").unwrap())
        );
        assert_eq!(drop.tag.as_ref().map(|t| t.key.as_str()), Some("host"));
        assert_eq!(drop.action, RuleAction::Drop);
        assert_eq!(pin.name, "heavy");
        assert_eq!(pin.measurement, MeasurementMatch::Exact("big".into()));
        assert_eq!(pin.action, RuleAction::Pin(vec!["b1".into()]));
        assert_eq!(cfg.timestamp_window, Some(Duration::from_secs(300)));
        let cfg = load(&minimal(r#""timestamp_window": 60"#));
        assert_eq!(cfg.timestamp_window, Some(Duration::from_secs(60)));
        let cfg = load(&minimal(""));
        assert!(cfg.rules.is_empty());
        assert_eq!(cfg.timestamp_window, None);
    }

    #[test]
    fn bad_rules_are_refused_at_their_path() {
        let p = problems(&minimal(
            r#""rules": [
                {"action": "pin", "measurement": "m", "backends": ["b1", "nope"]},
                {"action": "pin", "measurement": "m", "tag": "h", "tag_regex": "x", "backends": ["b1"]},
                {"action": "explode"},
                {"measurement_regex": "(", "action": "drop"},
                {"action": "drop", "backends": ["b1"]},
                {"action": "drop", "measurement": "a", "measurement_regex": "b"},
                {"action": "drop", "tag": "h"},
                {"action": "pin", "name": "rule-0"}]"#,
        ));
        assert_problem(&p, "rules[0].backends[1]", "no backend is named \"nope\"");
        assert_problem(&p, "rules[1].tag", "a tag condition only goes with drop");
        assert_problem(&p, "rules[2].action", "unknown action \"explode\"");
        assert_problem(&p, "rules[3].measurement_regex", "invalid regex");
        assert_problem(&p, "rules[4].backends", "only a pin rule names backends");
        assert_problem(&p, "rules[5].measurement_regex", "not both");
        assert_problem(&p, "rules[6].tag_regex", "needs tag_regex");
        assert_problem(&p, "rules[7].name", "duplicated");
        assert_problem(&p, "rules[7].backends", "names the backends");
        let p = problems(
            r#"{"rules": [{"action": "pin", "backends": ["a", "b"]}],
                "circles": [{"backends": [{"name": "a", "url": "http://h:1"},
                                          {"name": "b", "url": "http://h:2"}]}]}"#,
        );
        assert_problem(&p, "rules[0].backends[1]", "at most one backend per circle");
        let p = problems(&minimal(
            r#""timestamp_window": 60, "max_time_delta_secs": 30"#,
        ));
        assert_problem(&p, "max_time_delta_secs", "conflicts with timestamp_window");
    }
}
