//! The console's one HTTP client of a running proxy.
//!
//! The address and credentials default from the proxy's own config file, so on a packaged
//! host `influx-proxy ctl status` needs no flags: `listen_addr` with an unspecified host
//! becomes loopback, `https_enabled` selects TLS (trusting the system roots and the proxy's
//! own `https_cert`, so a self-signed certificate works on the host that serves it), and
//! `username`/`password` are sent as HTTP Basic (decrypted first under `auth_secure`).

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use crate::cipher;
use crate::config::Config;

/// Why a console command could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The config file could not be read or is invalid.
    #[error("{0}")]
    Config(String),
    /// The proxy could not be reached (refused, timed out, TLS failed).
    #[error("cannot reach the proxy at {url}: {reason}")]
    Unreachable {
        /// The URL asked.
        url: String,
        /// What went wrong, from the transport.
        reason: String,
    },
    /// The proxy answered with an error status.
    #[error("{url}: HTTP {status}: {message}")]
    Status {
        /// The URL asked.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The `error` field of InfluxDB-shaped JSON errors, else the body.
        message: String,
    },
    /// The proxy's answer was not what this version of the console understands.
    #[error("{url}: unexpected answer: {reason}")]
    Answer {
        /// The URL asked.
        url: String,
        /// Why it could not be read.
        reason: String,
    },
    /// Writing what the proxy sent failed.
    #[error("writing {url}'s answer: {source}")]
    Write {
        /// The URL asked.
        url: String,
        /// The local error.
        source: std::io::Error,
    },
}

impl ConsoleError {
    /// The proxy could not be reached, or refused the credentials (401, 403): nothing was
    /// asked of it, as opposed to a request it answered with an error.
    pub fn is_unreachable_or_unauthorized(&self) -> bool {
        matches!(
            self,
            ConsoleError::Unreachable { .. }
                | ConsoleError::Status {
                    status: 401 | 403,
                    ..
                }
        )
    }
}

/// What a `POST` answered ([`Target::post`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    /// The body, as text.
    pub text: String,
    /// The id of the job the request started (`X-Influx-Proxy-Job`), if any.
    pub job: Option<u64>,
}

/// `path?query`, the query URL-encoded (`path` alone when it is empty).
pub fn with_query(path: &str, query: &[(&str, &str)]) -> String {
    if query.is_empty() {
        return path.to_string();
    }
    // Encoding string pairs cannot fail.
    let encoded = serde_urlencoded::to_string(query).unwrap_or_default();
    format!("{path}?{encoded}")
}

/// The header a job endpoint names its job in (`api::migrate::JOB_HEADER`).
const JOB_HEADER: &str = "X-Influx-Proxy-Job";

/// A request body.
enum Body<'a> {
    None,
    Form(&'a [(&'a str, &'a str)]),
    Json(&'a serde_json::Value),
}

/// Where and how to reach a running proxy.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Base URL (`http://host:port`); default from the config's `listen_addr` and `https_enabled`.
    pub url: Option<String>,
    /// User name; default from the config.
    pub username: Option<String>,
    /// Password; default from the config.
    pub password: Option<String>,
    /// Accept any server certificate.
    pub insecure: bool,
    /// Per-request timeout.
    pub timeout: Option<Duration>,
}

/// A running proxy, ready to be asked.
pub struct Target {
    base: String,
    auth: Option<String>,
    agent: ureq::Agent,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("base", &self.base)
            .field("auth", &self.auth.as_ref().map(|_| "***"))
            .finish()
    }
}

/// The default per-request timeout: long enough for a `/health` that asks every backend.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

impl Target {
    /// The proxy `config` describes, with `options` taking precedence.
    pub fn new(config: Option<&Config>, options: &Options) -> Result<Target, ConsoleError> {
        let base = match (&options.url, config) {
            (Some(url), _) => url.trim_end_matches('/').to_string(),
            (None, Some(cfg)) => base_url(cfg)?,
            (None, None) => "http://127.0.0.1:7076".to_string(),
        };
        let (user, pass) = credentials(config, options)?;
        let auth = (!user.is_empty() || !pass.is_empty()).then(|| basic(&user, &pass));
        let https_cert = config
            .filter(|c| c.https_enabled && !c.https_cert.is_empty())
            .map(|c| c.https_cert.as_str());
        let tls = crate::tls::console_client_config(options.insecure, https_cert)
            .map_err(ConsoleError::Config)?;
        let agent = ureq::AgentBuilder::new()
            .timeout(options.timeout.unwrap_or(DEFAULT_TIMEOUT))
            .redirects(0)
            .tls_config(tls)
            .build();
        Ok(Target { base, auth, agent })
    }

    /// The base URL asked.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET path` (with its query), answered as text.
    pub fn get_text(&self, path: &str) -> Result<String, ConsoleError> {
        let response = self.send("GET", path, Body::None, None)?;
        self.text(path, response)
    }

    /// `GET path`, answered as JSON, waiting up to `timeout` instead of the usual timeout:
    /// for answers the proxy computes from every backend's data (a comparison, sizes).
    pub fn get_json_within(
        &self,
        path: &str,
        timeout: Duration,
    ) -> Result<serde_json::Value, ConsoleError> {
        let response = self.send("GET", path, Body::None, Some(timeout))?;
        let text = self.text(path, response)?;
        self.json(path, &text)
    }

    /// `GET path`, the answer streamed into `out` as it comes; the bytes written.
    pub fn get_to(&self, path: &str, out: &mut dyn Write) -> Result<u64, ConsoleError> {
        let response = self.send("GET", path, Body::None, None)?;
        std::io::copy(&mut response.into_reader(), out).map_err(|e| ConsoleError::Write {
            url: self.url(path),
            source: e,
        })
    }

    /// `POST path?query`, with `json` as the body when given; the answer's text and the job
    /// it started.
    pub fn post(
        &self,
        path: &str,
        query: &[(&str, &str)],
        json: Option<&serde_json::Value>,
    ) -> Result<Posted, ConsoleError> {
        let path = with_query(path, query);
        let body = json.map_or(Body::None, Body::Json);
        let response = self.send("POST", &path, body, None)?;
        let job = response
            .header(JOB_HEADER)
            .and_then(|v| v.trim().parse().ok());
        let text = self.text(&path, response)?;
        Ok(Posted { text, job })
    }

    /// `GET path`, answered as JSON.
    pub fn get_json(&self, path: &str) -> Result<serde_json::Value, ConsoleError> {
        let text = self.get_text(path)?;
        self.json(path, &text)
    }

    /// `POST path` with `form` as `application/x-www-form-urlencoded`, answered as JSON
    /// (an empty answer is `null`).
    pub fn post_form(
        &self,
        path: &str,
        form: &[(&str, &str)],
    ) -> Result<serde_json::Value, ConsoleError> {
        let response = self.send("POST", path, Body::Form(form), None)?;
        let text = self.text(path, response)?;
        if text.trim().is_empty() {
            return Ok(serde_json::Value::Null);
        }
        self.json(path, &text)
    }

    fn json(&self, path: &str, text: &str) -> Result<serde_json::Value, ConsoleError> {
        serde_json::from_str(text).map_err(|e| ConsoleError::Answer {
            url: self.url(path),
            reason: e.to_string(),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    fn text(&self, path: &str, response: ureq::Response) -> Result<String, ConsoleError> {
        response.into_string().map_err(|e| ConsoleError::Answer {
            url: self.url(path),
            reason: e.to_string(),
        })
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        body: Body<'_>,
        timeout: Option<Duration>,
    ) -> Result<ureq::Response, ConsoleError> {
        let url = self.url(path);
        let mut request = self.agent.request(method, &url);
        if let Some(t) = timeout {
            request = request.timeout(t);
        }
        if let Some(auth) = &self.auth {
            request = request.set("Authorization", auth);
        }
        let result = match body {
            Body::None if method == "POST" => request.send_bytes(&[]),
            Body::None => request.call(),
            Body::Form(form) => request.send_form(form),
            Body::Json(json) => request
                .set("Content-Type", "application/json")
                .send_bytes(json.to_string().as_bytes()),
        };
        match result {
            Ok(response) => Ok(response),
            Err(ureq::Error::Status(status, response)) => {
                let body = response.into_string().unwrap_or_default();
                Err(ConsoleError::Status {
                    url,
                    status,
                    message: error_message(&body),
                })
            }
            Err(ureq::Error::Transport(t)) => {
                // ureq's text starts with the URL, which the error already names.
                let text = t.to_string();
                let reason = text
                    .strip_prefix(&format!("{url}: "))
                    .unwrap_or(&text)
                    .to_string();
                Err(ConsoleError::Unreachable { url, reason })
            }
        }
    }
}

/// `http(s)://host:port` for the proxy `cfg` describes; an unspecified host is loopback.
fn base_url(cfg: &Config) -> Result<String, ConsoleError> {
    let addr = cfg.socket_addr().map_err(ConsoleError::Config)?;
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let scheme = if cfg.https_enabled { "https" } else { "http" };
    Ok(format!("{scheme}://{}", SocketAddr::new(ip, addr.port())))
}

/// The credentials to present: flags first, else the config's (plaintext under `auth_secure`).
fn credentials(
    config: Option<&Config>,
    options: &Options,
) -> Result<(String, String), ConsoleError> {
    let from_config = |pick: fn(&Config) -> &str| -> Result<String, ConsoleError> {
        let Some(cfg) = config else {
            return Ok(String::new());
        };
        let value = pick(cfg);
        if cfg.auth_secure && !value.is_empty() {
            cipher::decrypt(value).map_err(|e| {
                ConsoleError::Config(format!("cannot decrypt the config's credentials: {e}"))
            })
        } else {
            Ok(value.to_string())
        }
    };
    let user = match &options.username {
        Some(u) => u.clone(),
        None => from_config(|c| c.username.expose())?,
    };
    let pass = match &options.password {
        Some(p) => p.clone(),
        None => from_config(|c| c.password.expose())?,
    };
    Ok((user, pass))
}

fn basic(user: &str, pass: &str) -> String {
    use base64::Engine as _;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    format!("Basic {token}")
}

/// The `error` field of an InfluxDB-shaped JSON error, else the body itself.
fn error_message(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or_else(|| body.trim().to_string())
}

/// Config files tried, in order, when `--config` is not given: the packages' path (an operator
/// on a packaged host runs the console from anywhere), then the proxy's own default (the
/// working directory).
pub const DEFAULT_CONFIGS: [&str; 2] = ["/etc/influx-proxy/proxy.json", crate::cli::DEFAULT_CONFIG];

/// The flags that say which proxy to ask and how, shared by every console command (`ctl`'s
/// subcommands take them anywhere on the line).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConnectArgs {
    /// The proxy's config file: its address, credentials and TLS are used [default:
    /// /etc/influx-proxy/proxy.json if it exists, else ./proxy.json if it exists]
    #[arg(
        long,
        short = 'c',
        global = true,
        value_name = "PATH",
        env = "INFLUX_PROXY_CONFIG"
    )]
    pub config: Option<std::path::PathBuf>,
    /// The proxy's base URL, e.g. https://proxy:7076 [default: from the config's listen_addr
    /// and https_enabled]
    #[arg(long, global = true, value_name = "URL", env = "INFLUX_PROXY_URL")]
    pub url: Option<String>,
    /// User name [default: the config's]
    #[arg(
        long,
        short = 'u',
        global = true,
        value_name = "NAME",
        env = "INFLUX_PROXY_USERNAME"
    )]
    pub username: Option<String>,
    /// Password [default: the config's]
    #[arg(
        long,
        short = 'p',
        global = true,
        value_name = "PASSWORD",
        env = "INFLUX_PROXY_PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<String>,
    /// Accept any TLS certificate from the proxy
    #[arg(long, short = 'k', global = true)]
    pub insecure: bool,
}

impl ConnectArgs {
    /// The config file to read: `--config` (or `INFLUX_PROXY_CONFIG`), else the first of
    /// [`DEFAULT_CONFIGS`] that exists.
    pub fn config_path(&self) -> Option<std::path::PathBuf> {
        if let Some(p) = &self.config {
            return Some(p.clone());
        }
        DEFAULT_CONFIGS
            .iter()
            .map(std::path::PathBuf::from)
            .find(|p| p.is_file())
    }

    /// The config [`ConnectArgs::config_path`] names (`None`: no file, defaults apply). With
    /// `--url` given, a file that cannot be read is not needed: a warning, not an error.
    pub fn load_config(&self) -> Result<Option<Config>, ConsoleError> {
        let Some(path) = self.config_path() else {
            return Ok(None);
        };
        match Config::load(&path) {
            Ok(c) => Ok(Some(c)),
            Err(e) if self.url.is_some() => {
                eprintln!("influx-proxy: ignoring {}: {e}", path.display());
                Ok(None)
            }
            Err(e) => Err(ConsoleError::Config(format!(
                "{}: {e}\n(the packaged file is readable by root and the influx-proxy group: use \
                 sudo; or pass --url, and --username/--password if needed)",
                path.display()
            ))),
        }
    }

    /// The proxy these flags name, each request bounded by `timeout`.
    pub fn target(&self, timeout: Duration) -> Result<Target, ConsoleError> {
        let config = self.load_config()?;
        let options = Options {
            url: self.url.clone(),
            username: self.username.clone(),
            password: self.password.clone(),
            insecure: self.insecure,
            timeout: Some(timeout),
        };
        Target::new(config.as_ref(), &options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> Config {
        let json = r#"{"circles": [{"name": "c", "backends": [
            {"name": "b1", "url": "http://127.0.0.1:8086"}]}]}"#;
        Config::from_str(json).unwrap()
    }

    #[test]
    fn an_unspecified_listen_host_is_reached_on_loopback() {
        let mut cfg = minimal();
        cfg.listen_addr = ":7076".into();
        assert_eq!(base_url(&cfg).unwrap(), "http://127.0.0.1:7076");
        cfg.listen_addr = "[::]:8086".into();
        cfg.https_enabled = true;
        assert_eq!(base_url(&cfg).unwrap(), "https://[::1]:8086");
        cfg.listen_addr = "10.1.2.3:9000".into();
        assert_eq!(base_url(&cfg).unwrap(), "https://10.1.2.3:9000");
    }

    #[test]
    fn encrypted_credentials_are_sent_in_plaintext_and_flags_win() {
        let mut cfg = minimal();
        cfg.auth_secure = true;
        cfg.username = crate::config::Secret::new(cipher::encrypt("admin"));
        cfg.password = crate::config::Secret::new(cipher::encrypt("s3cret"));
        let got = credentials(Some(&cfg), &Options::default()).unwrap();
        assert_eq!(got, ("admin".to_string(), "s3cret".to_string()));
        let flags = Options {
            username: Some("other".into()),
            ..Options::default()
        };
        assert_eq!(credentials(Some(&cfg), &flags).unwrap().0, "other");
    }

    #[test]
    fn influxdb_shaped_errors_are_unwrapped() {
        assert_eq!(
            error_message(r#"{"error":"circle 3 not found"}"#),
            "circle 3 not found"
        );
        assert_eq!(error_message("plain text\n"), "plain text");
    }
}
