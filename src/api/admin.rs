//! `/ping`, `/health` and `/replica`, each in the Go proxy's 2.4 and 2.5.12 shapes.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::future::join_all;
use serde_json::{json, Value};

use super::{auth, json_response, ApiError, AppState, Params};
use crate::backend::catalog;
use crate::cipher;
use crate::circle::{BackendHandle, Circle};
use crate::cluster::Placement;
use crate::query::{self, freshness};

/// `/ping`: 204 with the version headers (any method); with `verbose=true`, 200 and the
/// version in JSON, as InfluxDB does. Open to anyone unless `ping_auth_enabled` (and auth is
/// on), as in the Go proxy.
pub(super) async fn ping(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params = Params::from_request(&req)?;
    let config = state.config();
    if config.ping_auth_enabled {
        auth::check(&req, &params, &config)?;
    }
    if params.get("verbose") == Some("true") {
        return Ok(json_response(&json!({ "version": super::VERSION }), false));
    }
    Ok(HttpResponse::NoContent().finish())
}

/// Which generation of the Go proxy's `/health` and `/replica` answers to give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// 2.4: an array of circles, backends with `load` (what each holds).
    V24,
    /// 2.5.12: an object with `circles`, `{backend, circle}` replica entries; what each
    /// backend holds only with `stats=true`.
    V25,
}

impl Shape {
    /// The documented rule: `version=2.5` or `version=2.4` chooses; otherwise a parameter only
    /// 2.5.12 clients send (`stats` for `/health`, `mm` for `/replica`) means 2.5, and
    /// anything else the 2.4 answer this proxy has always given.
    fn of(params: &Params, v25_param: &str) -> Shape {
        match params.get("version") {
            Some(v) if v.starts_with("2.5") => Shape::V25,
            Some(v) if v.starts_with("2.4") => Shape::V24,
            _ if params.get(v25_param).is_some() => Shape::V25,
            _ => Shape::V24,
        }
    }
}

/// `/health`, in the 2.4 or the 2.5.12 shape ([`Shape::of`]): per circle and backend,
/// liveness, queue state, and (2.4 always, 2.5 with `stats=true`) where each measurement
/// lives. `backlog` follows `query::freshness`: true while writes wait for a retry (backend
/// down or draining, or a record queued longer than `flush_time` plus a slack), false for
/// records that only wait for their `flush_time` on a healthy backend.
pub(super) async fn health(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params = Params::from_request(&req)?;
    auth::check(&req, &params, &state.config())?;
    let shape = Shape::of(&params, "stats");
    let with_load = match shape {
        Shape::V24 => true,
        Shape::V25 => params.get("stats") == Some("true"),
    };
    let cluster = state.cluster();
    let ask = Ask {
        placement: cluster.placement.clone(),
        cache: state.load_cache().clone(),
        steps: state.migration().steps(),
        fresh: params.get("fresh") == Some("true"),
        with_load,
    };
    let circles = join_all(
        cluster
            .circles
            .iter()
            .map(|c| circle_health(c.clone(), ask.clone(), shape)),
    )
    .await;
    let body = match shape {
        Shape::V24 => Value::Array(circles),
        Shape::V25 => health_v25(circles, &cluster.wal_storage()),
    };
    Ok(json_response(&body, params.pretty()))
}

/// The 2.5.12 envelope around the circles. Unlike the Go proxy, `status` says whether some
/// circle can serve every read (`pass`) or none can (`fail`), instead of `pass` always, and
/// `fail` with a `write-ahead queue` check while new writes are refused for want of disk
/// space or because the queue's storage failed.
fn health_v25(circles: Vec<Value>, storage: &crate::wal::StorageState) -> Value {
    let serving = circles
        .iter()
        .any(|c| c["circle"]["active"] == Value::Bool(true));
    let queue = queue_check(storage);
    let (status, message) = if !serving {
        ("fail", "no circle has every backend active")
    } else if queue.is_some() {
        ("fail", "new writes are refused; see checks")
    } else {
        ("pass", "ready for queries and writes")
    };
    json!({
        "checks": queue.into_iter().collect::<Vec<_>>(),
        "circles": circles,
        "message": message,
        "name": "influx-proxy",
        "status": status,
        "version": super::VERSION,
    })
}

/// A failing `write-ahead queue` check while the queue refuses new writes, in InfluxDB 2's
/// check shape; `None` while it takes them.
fn queue_check(s: &crate::wal::StorageState) -> Option<Value> {
    let message = match (&s.failed, s.low) {
        (Some(error), _) => format!("storage failed ({error}); recovering by itself"),
        (None, true) => format!(
            "{} MiB free on data_dir, under wal_min_free_mb ({} MiB)",
            s.free_bytes >> 20,
            s.reserve_bytes >> 20
        ),
        (None, false) => return None,
    };
    Some(json!({ "name": "write-ahead queue", "status": "fail", "message": message }))
}

/// What a `/health` request asks of each backend.
#[derive(Clone)]
struct Ask {
    placement: Arc<Placement>,
    cache: Arc<LoadCache>,
    steps: u64,
    fresh: bool,
    with_load: bool,
}

async fn circle_health(circle: Arc<Circle>, ask: Ask, shape: Shape) -> Value {
    let backends = join_all(
        circle
            .backends
            .iter()
            .enumerate()
            .map(|(i, b)| backend_health(circle.clone(), i, b.clone(), ask.clone(), shape)),
    )
    .await;
    match shape {
        Shape::V24 => json!({ "circle": circle.name, "backends": backends }),
        Shape::V25 => json!({
            "circle": {
                "id": circle.id,
                "name": circle.name,
                "active": circle.backends.iter().all(|b| b.backend.status.is_active()),
                "write_only": circle.is_migrating()
                    || circle.backends.iter().any(|b| b.backend.info.write_only),
            },
            "backends": backends,
        }),
    }
}

async fn backend_health(
    circle: Arc<Circle>,
    index: usize,
    handle: Arc<BackendHandle>,
    ask: Ask,
    shape: Shape,
) -> Value {
    let b = &handle.backend;
    let stats = b.queue.stats.snapshot();
    let active = b.status.is_active();
    let (load, load_error) = if active && ask.with_load {
        match ask.cache.load(&circle, index, &handle, &ask).await {
            Ok(l) => (l, None),
            Err(e) => (BTreeMap::new(), Some(e)),
        }
    } else {
        (BTreeMap::new(), None)
    };
    // Writes waiting for a retry, not records waiting for flush_time.
    let backlog = freshness::has_backlog(&handle);
    let mut v = match shape {
        Shape::V24 => json!({
            "name": b.info.name,
            "url": b.info.url,
            "active": active,
            "backlog": backlog,
            "rewrite": b.status.is_draining(),
            "write_only": b.info.write_only,
            "load": load,
            "queue": {
                "records": stats.records,
                "bytes": stats.bytes,
                "points": stats.points,
                "oldest_age_s": b.queue.stats.oldest_age().as_secs(),
            },
            "dead_letters": {
                "records": stats.dead_records,
                "points": stats.dead_points,
            },
        }),
        Shape::V25 => {
            let mut v = json!({
                "name": b.info.name,
                "url": b.info.url,
                "active": active,
                "backlog": backlog,
                "rewriting": b.status.is_draining(),
                "write_only": b.info.write_only,
            });
            if ask.with_load && active {
                // The Go proxy leaves `healthy` out when false; it is always here.
                let healthy = load.values().all(|db| db["incorrect"] == 0);
                v["stats"] = json!(load);
                v["healthy"] = json!(healthy && load_error.is_none());
            }
            v
        }
    };
    if let (Some(e), Some(obj)) = (load_error, v.as_object_mut()) {
        obj.insert("load_error".into(), Value::String(e));
    }
    v
}

/// How long a backend's `load` is reused: monitors poll `/health` every few seconds, and
/// computing it is a SHOW DATABASES plus a SHOW MEASUREMENTS per database on every backend.
/// A migration step, a statement run on the backend (DDL, a delete, a migration's DROP) or a
/// reload (new circles) makes it stale at once; `fresh=true` skips it. New measurements
/// written meanwhile show up within the TTL.
const LOAD_TTL: Duration = Duration::from_secs(5);

/// The last `load` of each backend, keyed by its circle (a reload builds new ones) and index.
#[derive(Debug, Default)]
pub(crate) struct LoadCache(Mutex<HashMap<(usize, usize), CachedLoad>>);

#[derive(Debug, Clone)]
struct CachedLoad {
    at: Instant,
    /// Migration steps and statements the backend had run when it was computed: either
    /// moving means what it holds changed.
    steps: (u64, u64),
    load: Result<BTreeMap<String, Value>, String>,
}

impl LoadCache {
    async fn load(
        &self,
        circle: &Arc<Circle>,
        index: usize,
        handle: &BackendHandle,
        ask: &Ask,
    ) -> Result<BTreeMap<String, Value>, String> {
        let key = (Arc::as_ptr(circle) as usize, index);
        let statements = handle
            .backend
            .status
            .statements_applied
            .load(Ordering::Acquire);
        let steps = (ask.steps, statements);
        if !ask.fresh {
            let cached = self.0.lock().get(&key).cloned();
            if let Some(c) = cached.filter(|c| c.steps == steps && c.at.elapsed() < LOAD_TTL) {
                return c.load;
            }
        }
        let load = load(circle, index, handle, &ask.placement).await;
        let mut map = self.0.lock();
        // Entries of circles a reload replaced are never asked for again.
        map.retain(|_, c| c.at.elapsed() < LOAD_TTL);
        map.insert(
            key,
            CachedLoad {
                at: Instant::now(),
                steps,
                load: load.clone(),
            },
        );
        load
    }
}

/// Measurements per database on one backend, split into those the ring
/// places here (`inplace`) and those it places elsewhere (`incorrect`).
async fn load(
    circle: &Circle,
    index: usize,
    handle: &BackendHandle,
    placement: &Placement,
) -> Result<BTreeMap<String, Value>, String> {
    let client = query::client_for(handle);
    let dbs = catalog::databases(&client)
        .await
        .map_err(|e| e.to_string())?;
    let mut out = BTreeMap::new();
    let mut key = String::new();
    for db in dbs {
        let measurements = catalog::measurements(&client, &db)
            .await
            .map_err(|e| e.to_string())?;
        let inplace = measurements
            .iter()
            .filter(|m| placement.owner_index(circle, &db, m, &mut key) == index)
            .count();
        out.insert(
            db,
            json!({
                "measurements": measurements.len(),
                "inplace": inplace,
                "incorrect": measurements.len() - inplace,
            }),
        );
    }
    Ok(out)
}

/// `/encrypt?msg=` (or `text=`): the reference cipher's form of a
/// credential, for `auth_secure` configs. Plain text answer.
pub(super) async fn encrypt(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params = Params::from_request(&req)?;
    auth::check(&req, &params, &state.config())?;
    let text = params
        .get("msg")
        .or_else(|| params.get("text"))
        .unwrap_or("");
    Ok(plain(cipher::encrypt(text)))
}

/// `/decrypt?key=consistentcipher&msg=` (or `text=`). A wrong key is a 400;
/// undecodable input answers the decoder's message, like the reference.
pub(super) async fn decrypt(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params = Params::from_request(&req)?;
    auth::check(&req, &params, &state.config())?;
    if params.str("key") != cipher::KEY {
        return Err(ApiError::BadRequest("invalid key".into()));
    }
    let text = params
        .get("msg")
        .or_else(|| params.get("text"))
        .unwrap_or("");
    let out = match cipher::decrypt_bytes(text) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => e.to_string(),
    };
    Ok(plain(out))
}

fn plain(mut text: String) -> HttpResponse {
    text.push('\n');
    HttpResponse::Ok()
        .insert_header((
            actix_web::http::header::CONTENT_TYPE,
            "text/plain; charset=utf-8",
        ))
        .body(text)
}

/// `/replica?db=&meas=` (or `mm=`): the owner backend in every circle.
pub(super) async fn replica(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params = Params::from_request(&req)?;
    auth::check(&req, &params, &state.config())?;
    let shape = Shape::of(&params, "mm");
    let db = params.str("db");
    let mm = params
        .get("mm")
        .or_else(|| params.get("meas"))
        .unwrap_or("");
    if db.is_empty() || mm.is_empty() {
        return Err(ApiError::BadRequest(match shape {
            Shape::V24 => "invalid db or meas".into(),
            Shape::V25 => "invalid db or mm".into(),
        }));
    }
    let cluster = state.cluster();
    let owners: Vec<Value> = cluster
        .owners(db, mm)
        .into_iter()
        .map(|(c, b)| match shape {
            Shape::V24 => json!({
                "circle": c.name,
                "circle_id": c.id,
                "name": b.backend.info.name,
                "url": b.backend.info.url,
            }),
            Shape::V25 => json!({
                "backend": { "name": b.backend.info.name, "url": b.backend.info.url },
                "circle": { "id": c.id, "name": c.name },
            }),
        })
        .collect();
    Ok(json_response(&Value::Array(owners), params.pretty()))
}
