//! The InfluxDB-compatible HTTP API (actix-web).
//!
//! Handlers parse and check the request, call into the cluster, and turn
//! failures into [`ApiError`]. They never touch the write-ahead queue or
//! backend actors directly except through `cluster`/`circle` types.

mod admin;
mod antientropy;
mod auth;
mod body;
mod dead_letters;
pub(crate) mod error;
mod flux;
mod inventory;
mod metrics;
mod migrate;
mod pprof;
mod process;
mod prom;
mod query;
mod write;

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::body::{BodySize, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, ConnectionType, Version};
use actix_web::middleware::Next;
use actix_web::{middleware, web, HttpRequest, HttpResponse};
use arc_swap::ArcSwap;

use crate::cluster::Cluster;
use crate::config::Config;
pub(crate) use antientropy::background as anti_entropy_background;
pub(crate) use error::ApiError;
pub(crate) use metrics::RequestMetrics;

/// Value of `X-Influxdb-Version` on every response.
pub(crate) const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Shared state of every handler. Both parts are swapped whole by a
/// config reload; a request keeps the snapshot it started with.
#[derive(Debug)]
pub(crate) struct AppState {
    config: ArcSwap<Config>,
    cluster: ArcSwap<Cluster>,
    migration: Arc<crate::migrate::Jobs>,
    migrator: actix::Addr<crate::migrate::Migrator>,
    load_cache: Arc<admin::LoadCache>,
    /// Request bodies in flight, within the memory budget (`memory_budget_mb`, not reloadable).
    admission: crate::memory::Admission,
    /// This process and its reloads (`/process`).
    process: process::Process,
    /// Holds writes back while delivery catches up (`crate::pace`).
    pace: Arc<crate::pace::Pace>,
}

impl AppState {
    /// State for a starting proxy.
    pub(crate) fn new(
        config: Arc<Config>,
        cluster: Arc<Cluster>,
        migration: Arc<crate::migrate::Jobs>,
        migrator: actix::Addr<crate::migrate::Migrator>,
    ) -> AppState {
        AppState {
            admission: crate::memory::Admission::new(config.memory_budget().in_flight_bytes()),
            config: ArcSwap::new(config),
            cluster: ArcSwap::new(cluster),
            migration,
            migrator,
            load_cache: Arc::default(),
            process: process::Process::default(),
            pace: Arc::default(),
        }
    }

    /// This process, the config file it reloads, and what its last reload did.
    pub(crate) fn process(&self) -> &process::Process {
        &self.process
    }

    /// Whether writes wait for delivery (`crate::pace`).
    pub(crate) fn pace(&self) -> &Arc<crate::pace::Pace> {
        &self.pace
    }

    /// Admission of request bodies against the memory budget.
    pub(crate) fn admission(&self) -> &crate::memory::Admission {
        &self.admission
    }

    /// What each backend held at the last `/health` (see `admin::LoadCache`).
    pub(crate) fn load_cache(&self) -> &Arc<admin::LoadCache> {
        &self.load_cache
    }

    /// Migration flags and progress.
    pub(crate) fn migration(&self) -> &crate::migrate::Jobs {
        &self.migration
    }

    /// The migration actor.
    pub(crate) fn migrator(&self) -> &actix::Addr<crate::migrate::Migrator> {
        &self.migrator
    }

    /// The running configuration.
    pub(crate) fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// Circles and the write path.
    pub(crate) fn cluster(&self) -> Arc<Cluster> {
        self.cluster.load_full()
    }

    /// Installs a reloaded configuration and the cluster built from it.
    pub(crate) fn replace(&self, config: Arc<Config>, cluster: Arc<Cluster>) {
        self.cluster.store(cluster);
        self.config.store(config);
    }
}

/// Registers every route on an actix-web app.
pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/ping").to(admin::ping))
        .service(web::resource("/write").to(write::write))
        .service(web::resource("/api/v2/write").to(write::write_v2))
        .service(web::resource("/api/v1/prom/write").to(prom::write))
        .service(web::resource("/api/v1/prom/read").to(prom::read))
        .service(web::resource("/query").to(query::query))
        .service(web::resource("/api/v2/query").to(flux::query))
        .service(web::resource("/health").to(admin::health))
        .service(web::resource("/replica").to(admin::replica))
        .service(web::resource("/inventory").to(inventory::inventory))
        .service(web::resource("/process").to(process::process))
        .service(web::resource("/encrypt").to(admin::encrypt))
        .service(web::resource("/decrypt").to(admin::decrypt))
        .service(web::resource("/metrics").to(metrics::metrics))
        .service(web::resource("/dead_letters").to(dead_letters::list))
        .service(web::resource("/dead_letters/export").to(dead_letters::export))
        .service(web::resource("/dead_letters/replay").to(dead_letters::replay))
        .service(web::resource("/dead_letters/purge").to(dead_letters::purge))
        .service(web::resource("/debug/pprof/profile").to(pprof::profile))
        .service(web::resource(["/migrate/state", "/transfer/state"]).to(migrate::state))
        .service(web::resource(["/migrate/stats", "/transfer/stats"]).to(migrate::stats))
        .service(web::resource("/migrate/jobs").to(migrate::jobs))
        .service(web::resource("/rebalance").to(migrate::rebalance))
        .service(web::resource("/recovery").to(migrate::recovery))
        .service(web::resource("/resync").to(migrate::resync))
        .service(web::resource(["/clear", "/cleanup"]).to(migrate::clear))
        .service(web::resource("/anti-entropy/compare").to(antientropy::compare))
        .service(web::resource("/anti-entropy/repair").to(antientropy::repair))
        .default_service(web::to(not_found));
}

/// Headers every response carries, as InfluxDB and the reference send them.
pub(crate) fn default_headers() -> middleware::DefaultHeaders {
    middleware::DefaultHeaders::new()
        .add(("X-Influxdb-Version", VERSION))
        .add(("X-Influxdb-Build", "InfluxDB Proxy"))
}

/// HTTP/1.0 framing for every answer (`middleware::from_fn`). actix-web sends a streamed
/// body (a relayed backend answer, a dead-letter export) with `Transfer-Encoding: chunked`
/// whatever the request's version, and an HTTP/1.0 client, which knows no chunked coding
/// (RFC 9112 6.1), reads the chunk sizes as part of the body. To such a client the body is
/// sent as it comes and the connection closed after it, as influxd does; an answer whose
/// length is known keeps its `Content-Length`.
pub(crate) async fn http10_framing(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let http10 = req.version() == Version::HTTP_10;
    let mut res = next.call(req).await?;
    if http10 && matches!(res.response().body().size(), BodySize::Stream) {
        let head = res.response_mut().head_mut();
        head.no_chunking(true);
        head.set_connection_type(ConnectionType::Close);
    }
    Ok(res)
}

async fn not_found() -> HttpResponse {
    HttpResponse::NotFound()
        .insert_header((header::CONTENT_TYPE, "text/plain; charset=utf-8"))
        .body("404 page not found\n")
}

/// URL query parameters; the first occurrence of a name wins.
#[derive(Debug, Default)]
pub(crate) struct Params(HashMap<String, String>);

/// The non-empty items of a comma-separated parameter, trimmed.
fn comma_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// A boolean parameter as Go's `strconv.ParseBool` reads it.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

impl Params {
    /// A recent window in seconds, `days`, `hours`, `minutes` and `seconds` added up
    /// (non-negative integers; 0 when none is given), as the Go proxy's `/resync` reads it.
    pub(super) fn window_s(&self) -> Result<i64, ApiError> {
        let mut window = 0i64;
        for (name, unit) in [
            ("days", 86_400),
            ("hours", 3_600),
            ("minutes", 60),
            ("seconds", 1),
        ] {
            if let Some(v) = self.get(name).filter(|v| !v.is_empty()) {
                let n = v.parse::<i64>().ok().filter(|&n| n >= 0).ok_or_else(|| {
                    ApiError::BadRequest("invalid days, hours, minutes or seconds".into())
                })?;
                window = window.saturating_add(n.saturating_mul(unit));
            }
        }
        Ok(window)
    }

    /// The databases a request names: `dbs` (or `db`), comma-separated; empty: all.
    pub(super) fn databases(&self) -> Vec<String> {
        comma_list(self.get("dbs").or_else(|| self.get("db")).unwrap_or(""))
    }

    /// Parses the query string of a request.
    pub(crate) fn from_request(req: &HttpRequest) -> Result<Params, ApiError> {
        Params::parse(req.query_string())
    }

    /// Builds parameters from decoded pairs (first occurrence wins).
    pub(crate) fn from_pairs(pairs: Vec<(String, String)>) -> Params {
        let mut map = HashMap::with_capacity(pairs.len());
        for (k, v) in pairs {
            map.entry(k).or_insert(v);
        }
        Params(map)
    }

    /// Parameters from literal pairs, for tests.
    #[cfg(test)]
    pub(crate) fn of(pairs: &[(&str, &str)]) -> Params {
        Params::from_pairs(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    /// Parses a URL-encoded string.
    pub(crate) fn parse(s: &str) -> Result<Params, ApiError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(s)
            .map_err(|e| ApiError::BadRequest(format!("invalid query string: {e}")))?;
        let mut map = HashMap::with_capacity(pairs.len());
        for (k, v) in pairs {
            map.entry(k).or_insert(v);
        }
        Ok(Params(map))
    }

    /// Value of a parameter, if present.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// Value of a parameter, empty when absent.
    pub(crate) fn str(&self, name: &str) -> &str {
        self.get(name).unwrap_or("")
    }

    /// The `db` parameter of an endpoint that cannot do without one.
    pub(crate) fn required_db(&self) -> Result<&str, ApiError> {
        match self.str("db") {
            "" => Err(ApiError::DatabaseNotFound),
            db => Ok(db),
        }
    }

    /// `pretty=true`.
    pub(crate) fn pretty(&self) -> bool {
        self.get("pretty") == Some("true")
    }
}

/// A JSON success body, compact or indented by four spaces like the
/// reference (`pretty=true`), ending with a newline.
pub(crate) fn json_response(value: &serde_json::Value, pretty: bool) -> HttpResponse {
    let mut body = json_bytes(value, pretty);
    body.push(b'\n');
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "application/json"))
        .body(body)
}

/// JSON text, compact or indented by four spaces (`pretty=true`).
pub(crate) fn json_bytes(value: &serde_json::Value, pretty: bool) -> Vec<u8> {
    if pretty {
        let mut out = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
        let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
        // Serialising a Value into a Vec cannot fail.
        let _ = serde::Serialize::serialize(value, &mut ser);
        out
    } else {
        serde_json::to_vec(value).unwrap_or_default()
    }
}

/// `path?<the client's URL parameters but u and p>`, for a request relayed to a backend: the
/// backend gets its own credentials, never the client's.
pub(crate) fn forwarded_path(path: &str, query_string: &str) -> Result<String, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query_string)
        .map_err(|e| ApiError::BadRequest(format!("invalid query string: {e}")))?;
    let kept: Vec<(String, String)> = pairs
        .into_iter()
        .filter(|(k, _)| k != "u" && k != "p")
        .collect();
    let encoded = serde_urlencoded::to_string(&kept)
        .map_err(|e| ApiError::BadRequest(format!("invalid query string: {e}")))?;
    Ok(format!("{path}?{encoded}"))
}

/// Checks that `db` is allowed by the configured `db_list`.
pub(crate) fn check_db_allowed(config: &Config, db: &str) -> Result<(), ApiError> {
    if config.db_list.is_empty() || config.db_list.iter().any(|d| d == db) {
        Ok(())
    } else {
        Err(ApiError::DatabaseForbidden(db.to_string()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_relayed_request_never_carries_the_clients_credentials() {
        assert_eq!(
            forwarded_path("/api/v1/prom/read", "db=prom&u=me&p=secret&rp=a%20b").unwrap(),
            "/api/v1/prom/read?db=prom&rp=a+b"
        );
        assert_eq!(
            forwarded_path("/api/v2/query", "").unwrap(),
            "/api/v2/query?"
        );
    }

    #[test]
    fn a_window_adds_up_its_units_and_refuses_what_is_not_a_count() {
        let p = Params::of(&[("days", "1"), ("hours", "2"), ("seconds", "3")]);
        assert_eq!(p.window_s().unwrap(), 86_400 + 7_200 + 3);
        assert_eq!(Params::of(&[]).window_s().unwrap(), 0);
        for bad in ["-1", "x", "1.5"] {
            assert!(Params::of(&[("minutes", bad)]).window_s().is_err(), "{bad}");
        }
    }

    #[test]
    fn databases_are_a_trimmed_comma_list_of_dbs_or_db() {
        let p = Params::of(&[("dbs", " a, ,b ")]);
        assert_eq!(p.databases(), ["a", "b"]);
        assert_eq!(Params::of(&[("db", "c")]).databases(), ["c"]);
        assert!(Params::of(&[]).databases().is_empty());
    }
}
