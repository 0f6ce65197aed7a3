//! Migration endpoints: `/migrate/state`, `/migrate/stats`, `/rebalance`,
//! `/recovery`, `/resync`, `/clear`, and the 2.5.12 names
//! (`/transfer/state`, `/transfer/stats`, `/cleanup`; parameters `dbs`,
//! `worker`, `batch`, `since`, `transferring`); `/migrate/jobs`, every job with its id,
//! phase and progress (`migrate::history`), which the job endpoints name in
//! [`JOB_HEADER`].

use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix_web::http::{header, Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt as _;
use serde_json::{json, Map, Value};

use super::{auth, comma_list, json_response, parse_bool, ApiError, AppState, Params};
use crate::backend::client::Target;
use crate::config::Config;
use crate::migrate::{self, JobKind, Operation, SourceBackend, Start};

/// The header naming the id of the job a request started (`/migrate/jobs`): the body stays
/// the Go proxy's `accepted`.
pub(super) const JOB_HEADER: &str = "X-Influx-Proxy-Job";

/// Largest JSON body accepted by `/rebalance?operation=rm`.
const MAX_BODY: usize = 1 << 20;

/// The newer API generation answers with 2.5.12 names.
fn is_transfer(req: &HttpRequest) -> bool {
    req.path().starts_with("/transfer")
}

fn circle_json(state: &AppState, id: usize, transfer: bool) -> Value {
    let cluster = state.cluster();
    let (name, on) = cluster
        .circles
        .get(id)
        .map(|c| (c.name.clone(), c.is_migrating()))
        .unwrap_or_default();
    if transfer {
        json!({"id": id, "name": name, "transferring": on})
    } else {
        json!({"circle_id": id, "circle_name": name, "is_migrating": on})
    }
}

fn circle_id(params: &Params, name: &str, circles: usize) -> Result<usize, ApiError> {
    params
        .get(name)
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&id| id < circles)
        .ok_or_else(|| ApiError::BadRequest(format!("invalid {name}")))
}

/// `GET|POST /migrate/state` (and `/transfer/state`).
pub(super) async fn state(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params = Params::from_request(&req)?;
    auth::check(&req, &params, &state.config())?;
    let transfer = is_transfer(&req);
    let shared = state.migration();
    if req.method() == Method::GET {
        let n = state.cluster().circles.len();
        let circles: Vec<Value> = (0..n).map(|i| circle_json(&state, i, transfer)).collect();
        let resyncing = shared.resyncing.load(Ordering::Acquire);
        let body = if transfer {
            json!({"circles": circles, "resyncing": resyncing})
        } else {
            json!({"circles": circles, "is_resyncing": resyncing})
        };
        return Ok(json_response(&body, params.pretty()));
    }
    if req.method() != Method::POST {
        return Err(ApiError::MethodNotAllowed);
    }
    let mut out = Map::new();
    if let Some(v) = params.get("resyncing") {
        let on = parse_bool(v).ok_or_else(|| ApiError::BadRequest("illegal resyncing".into()))?;
        shared.resyncing.store(on, Ordering::Release);
        out.insert("resyncing".into(), json!(on));
    }
    if params.get("circle_id").is_some() {
        let cluster = state.cluster();
        let id = circle_id(&params, "circle_id", cluster.circles.len())?;
        let flag = params
            .get("migrating")
            .or_else(|| params.get("transferring"))
            .ok_or_else(|| ApiError::BadRequest("missing query parameter".into()))?;
        let on = parse_bool(flag).ok_or_else(|| {
            ApiError::BadRequest(
                if transfer {
                    "illegal transferring"
                } else {
                    "illegal migrating"
                }
                .into(),
            )
        })?;
        if let Some(c) = cluster.circles.get(id) {
            c.migrating.store(on, Ordering::Release);
        }
        out.insert("circle".into(), circle_json(&state, id, transfer));
    }
    if out.is_empty() {
        return Err(ApiError::BadRequest("missing query parameter".into()));
    }
    Ok(json_response(&Value::Object(out), params.pretty()))
}

/// `GET /migrate/stats?circle_id=&type=` (and `/transfer/stats`).
pub(super) async fn stats(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params = Params::from_request(&req)?;
    auth::check(&req, &params, &state.config())?;
    let cluster = state.cluster();
    let kind = JobKind::parse(params.str("type"))
        .ok_or_else(|| ApiError::BadRequest("invalid stats type".into()))?;
    if kind == JobKind::Repair {
        // One repair spans every circle: its progress, without `circle_id`.
        let body = migrate::repair::progress_json(state.migration());
        return Ok(json_response(&body, params.pretty()));
    }
    let id = circle_id(&params, "circle_id", cluster.circles.len())?;
    let count_key = if is_transfer(&req) {
        "transfer_count"
    } else {
        "migrate_count"
    };
    let mut stats = state.migration().stats(id, kind);
    if stats.is_empty() {
        // Before any job: every backend of the circle at zero.
        if let Some(c) = cluster.circles.get(id) {
            for b in &c.backends {
                stats.insert(b.backend.info.url.clone(), migrate::Stats::default());
            }
        }
    }
    let body: Map<String, Value> = stats
        .into_iter()
        .map(|(url, s)| {
            (
                url,
                json!({
                    "database_total": s.database_total,
                    "database_done": s.database_done,
                    "measurement_total": s.measurement_total,
                    "measurement_done": s.measurement_done,
                    count_key: s.migrate_count,
                    "inplace_count": s.inplace_count,
                    "points": s.points,
                }),
            )
        })
        .collect();
    Ok(json_response(&Value::Object(body), params.pretty()))
}

/// Parameters every job endpoint shares.
struct Common {
    dbs: Vec<String>,
    workers: usize,
    batch: usize,
    since: i64,
    ha_addrs: Vec<String>,
}

fn positive(
    params: &Params,
    names: &[&str],
    default: usize,
    what: &str,
) -> Result<usize, ApiError> {
    match names.iter().find_map(|n| params.get(n)) {
        None | Some("") => Ok(default),
        Some(v) => v.parse::<usize>().ok().filter(|&n| n > 0).ok_or_else(|| {
            ApiError::BadRequest(format!("invalid {what}, require positive integer"))
        }),
    }
}

/// The parameters every job takes. Those a request leaves out come from the config
/// (`migrate_cpus`, `migrate_batch`, `ha_addrs`: the 2.5.0 config keys 2.5.12 moved into the
/// request).
fn common(params: &Params, config: &Config) -> Result<Common, ApiError> {
    let workers = positive(params, &["cpus", "worker"], config.migrate_cpus, "cpus")?;
    let batch = positive(params, &["batch"], config.migrate_batch, "batch")?;
    let mut since = match params.get("since").or_else(|| params.get("tick")) {
        None | Some("") => 0,
        Some(v) => v.parse::<i64>().ok().filter(|&n| n >= 0).ok_or_else(|| {
            ApiError::BadRequest("invalid since, require non-negative integer".into())
        })?,
    };
    // Legacy window: data newer than now minus days/hours/minutes/seconds.
    let window = params.window_s()?;
    if window > 0 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        since = now - window;
    }
    let ha_addrs = match params.get("ha_addrs").filter(|v| !v.is_empty()) {
        None => config.ha_addrs.clone(),
        Some(v) => {
            let addrs = comma_list(v);
            let valid = addrs.len() >= 2
                && addrs.iter().all(|a| {
                    a.rsplit_once(':').is_some_and(|(h, p)| {
                        !h.is_empty()
                            && h.chars()
                                .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
                            && p.len() <= 5
                            && p.parse::<u16>().is_ok()
                    })
                });
            if !valid {
                return Err(ApiError::BadRequest(
                    "invalid ha_addrs, require at least two addresses as <host:port>, comma-separated".into(),
                ));
            }
            addrs
        }
    };
    Ok(Common {
        dbs: params.databases(),
        workers,
        batch,
        since,
        ha_addrs,
    })
}

async fn start(state: &AppState, op: Operation, c: Common) -> Result<HttpResponse, ApiError> {
    let cluster = state.cluster();
    let msg = Start {
        op,
        dbs: c.dbs,
        workers: c.workers,
        batch: c.batch,
        since: c.since,
        ha_addrs: c.ha_addrs,
        cluster,
        config: state.config(),
    };
    let answer = state
        .migrator()
        .send(msg)
        .await
        .map_err(|e| ApiError::Internal(format!("migration actor: {e}")))?;
    let mut response = HttpResponse::build(StatusCode::ACCEPTED);
    response.insert_header((header::CONTENT_TYPE, "text/plain; charset=utf-8"));
    let text = match answer {
        Ok(id) => {
            response.insert_header((JOB_HEADER, id.to_string()));
            "accepted".to_string()
        }
        // Busy: the reference answers 202 with the reason as text.
        Err(busy) => busy,
    };
    Ok(response.body(text + "\n"))
}

/// `GET /migrate/jobs[?id=]`: every job since the start (running, and the last finished
/// ones), oldest first, each with its own progress: per source backend for copies and
/// clears (live while it runs), the repair's for a repair.
pub(super) async fn jobs(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params = Params::from_request(&req)?;
    auth::check(&req, &params, &state.config())?;
    let wanted = match params.get("id").filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => Some(
            v.parse::<u64>()
                .map_err(|_| ApiError::BadRequest("invalid id".into()))?,
        ),
    };
    let shared = state.migration();
    let jobs: Vec<Value> = shared
        .jobs()
        .into_iter()
        .filter(|j| wanted.is_none_or(|id| j.id == id))
        .map(|mut j| {
            let live = j.phase != migrate::history::Phase::Done;
            let kind = JobKind::parse(j.operation);
            if live && kind == Some(JobKind::Repair) {
                j.repair = Some(migrate::repair::progress_json(shared));
            } else if let (true, Some(kind)) = (live, kind) {
                j.sources = Some(shared.sources(kind, &j.circles));
            }
            serde_json::to_value(&j).unwrap_or(Value::Null)
        })
        .collect();
    Ok(json_response(&json!({ "jobs": jobs }), params.pretty()))
}

/// The prologue of every job endpoint: POST only, parameters, auth.
fn job_request(req: &HttpRequest, state: &AppState) -> Result<Params, ApiError> {
    if req.method() != Method::POST {
        return Err(ApiError::MethodNotAllowed);
    }
    let params = Params::from_request(req)?;
    auth::check(req, &params, &state.config())?;
    Ok(params)
}

#[derive(serde::Deserialize)]
struct RemovedBody {
    backends: Vec<RemovedBackend>,
}

#[derive(serde::Deserialize)]
struct RemovedBackend {
    name: String,
    url: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default, alias = "auth_encrypt")]
    auth_secure: bool,
}

/// `POST /rebalance?circle_id=&operation=add|rm` (rm: removed backends in
/// the JSON body).
pub(super) async fn rebalance(
    req: HttpRequest,
    mut payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params = job_request(&req, &state)?;
    let circle = circle_id(&params, "circle_id", state.cluster().circles.len())?;
    let removed = match params.str("operation") {
        "add" => Vec::new(),
        "rm" => {
            let mut body = web::BytesMut::new();
            while let Some(chunk) = payload.next().await {
                let chunk =
                    chunk.map_err(|e| ApiError::BadRequest(format!("reading body: {e}")))?;
                if body.len() + chunk.len() > MAX_BODY {
                    return Err(ApiError::TooLarge("body too large".into()));
                }
                body.extend_from_slice(&chunk);
            }
            let parsed: RemovedBody = serde_json::from_slice(&body)
                .map_err(|_| ApiError::BadRequest("invalid backends from body".into()))?;
            if parsed.backends.is_empty() {
                return Err(ApiError::BadRequest("invalid backends from body".into()));
            }
            parsed.backends.into_iter().map(removed_source).collect()
        }
        _ => return Err(ApiError::BadRequest("invalid operation".into())),
    };
    let c = common(&params, &state.config())?;
    start(&state, Operation::Rebalance { circle, removed }, c).await
}

fn removed_source(b: RemovedBackend) -> SourceBackend {
    let (user, pass) = if b.auth_secure {
        let d = |s: &str| crate::cipher::decrypt(s).unwrap_or_default();
        (d(&b.username), d(&b.password))
    } else {
        (b.username, b.password)
    };
    let credentials = (!user.is_empty() || !pass.is_empty()).then_some((user, pass));
    SourceBackend {
        name: b.name,
        target: Arc::new(Target {
            url: b.url.trim_end_matches('/').to_string(),
            credentials,
            tls_skip_verify: false,
        }),
    }
}

/// `POST /recovery?from_circle_id=&to_circle_id=[&backend_urls=]`.
pub(super) async fn recovery(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params = job_request(&req, &state)?;
    let n = state.cluster().circles.len();
    let from = circle_id(&params, "from_circle_id", n)?;
    let to = circle_id(&params, "to_circle_id", n)?;
    if from == to {
        return Err(ApiError::BadRequest(
            "from_circle_id and to_circle_id cannot be same".into(),
        ));
    }
    let urls: Vec<String> = comma_list(params.str("backend_urls"))
        .into_iter()
        .map(|u| u.trim_end_matches('/').to_string())
        .collect();
    let c = common(&params, &state.config())?;
    start(&state, Operation::Recovery { from, to, urls }, c).await
}

/// `POST /resync[?seconds=...]`.
pub(super) async fn resync(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params = job_request(&req, &state)?;
    let c = common(&params, &state.config())?;
    start(&state, Operation::Resync, c).await
}

/// `POST /clear?circle_id=` (and `/cleanup`).
pub(super) async fn clear(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params = job_request(&req, &state)?;
    let circle = circle_id(&params, "circle_id", state.cluster().circles.len())?;
    let c = common(&params, &state.config())?;
    start(&state, Operation::Clear { circle }, c).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_migrate_settings_are_the_defaults_of_a_job_request() {
        let config: Config = r#"{"migrate_cpus": 3, "migrate_batch": 700,
            "ha_addrs": ["p1:7076", "p2:7076"],
            "circles": [{"name": "c", "backends": [{"name": "a", "url": "http://127.0.0.1:1"}]}]}"#
            .parse()
            .unwrap();
        let c = common(&Params::of(&[]), &config).unwrap();
        assert_eq!((c.workers, c.batch), (3, 700));
        assert_eq!(c.ha_addrs, ["p1:7076", "p2:7076"]);
        let c = common(
            &Params::of(&[("cpus", "2"), ("batch", "9"), ("ha_addrs", "q1:1,q2:2")]),
            &config,
        )
        .unwrap();
        assert_eq!((c.workers, c.batch), (2, 9));
        assert_eq!(c.ha_addrs, ["q1:1", "q2:2"]);
    }
}
