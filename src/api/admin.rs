//! `/ping`, `/health` and `/replica`.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::future::join_all;
use serde_json::{json, Value};

use super::{auth, json_response, ApiError, AppState, Params};
use crate::cipher;
use crate::circle::{BackendHandle, Circle};
use crate::query::{self, freshness};
use crate::ring::ShardKey;

/// `/ping`: 204 with the version headers (any method, no auth); with
/// `verbose=true`, 200 and the version in JSON, as InfluxDB does.
pub async fn ping(req: HttpRequest) -> HttpResponse {
    let verbose = Params::from_request(&req)
        .map(|p| p.get("verbose") == Some("true"))
        .unwrap_or(false);
    if verbose {
        return json_response(&json!({ "version": super::VERSION }), false);
    }
    HttpResponse::NoContent().finish()
}

/// `/health`: per circle and backend, liveness, queue state and where each
/// measurement lives (`load`). `backlog` follows `query::freshness`: true
/// while writes wait for a retry (backend down or draining, or a record
/// queued longer than `flush_time` plus a slack), false for records that
/// only wait for their `flush_time` on a healthy backend.
pub async fn health(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params = Params::from_request(&req)?;
    auth::check(&req, &params, &state.config())?;
    let cluster = state.cluster();
    let shard_key = cluster.shard_key.clone();
    let circles = join_all(
        cluster
            .circles
            .iter()
            .map(|c| circle_health(c.clone(), shard_key.clone())),
    )
    .await;
    Ok(json_response(&Value::Array(circles), params.pretty()))
}

async fn circle_health(circle: Arc<Circle>, shard_key: ShardKey) -> Value {
    let backends = join_all(
        circle
            .backends
            .iter()
            .enumerate()
            .map(|(i, b)| backend_health(circle.clone(), i, b.clone(), shard_key.clone())),
    )
    .await;
    json!({ "circle": circle.name, "backends": backends })
}

async fn backend_health(
    circle: Arc<Circle>,
    index: usize,
    handle: Arc<BackendHandle>,
    shard_key: ShardKey,
) -> Value {
    let b = &handle.backend;
    let stats = &b.queue.stats;
    let active = b.status.is_active();
    let (load, load_error) = if active {
        match load(&circle, index, &handle, &shard_key).await {
            Ok(l) => (l, None),
            Err(e) => (BTreeMap::new(), Some(e)),
        }
    } else {
        (BTreeMap::new(), None)
    };
    let mut v = json!({
        "name": b.info.name,
        "url": b.info.url,
        "active": active,
        // Writes waiting for a retry, not records waiting for flush_time.
        "backlog": freshness::has_backlog(&handle),
        "rewrite": b.status.is_rewriting(),
        "write_only": b.info.write_only,
        "load": load,
        "queue": {
            "records": stats.records.load(Ordering::Relaxed),
            "bytes": stats.bytes.load(Ordering::Relaxed),
            "points": stats.points.load(Ordering::Relaxed),
        },
        "dead_letters": {
            "records": stats.dead_records.load(Ordering::Relaxed),
            "points": stats.dead_points.load(Ordering::Relaxed),
        },
    });
    if let (Some(e), Some(obj)) = (load_error, v.as_object_mut()) {
        obj.insert("load_error".into(), Value::String(e));
    }
    v
}

/// Measurements per database on one backend, split into those the ring
/// places here (`inplace`) and those it places elsewhere (`incorrect`).
async fn load(
    circle: &Circle,
    index: usize,
    handle: &BackendHandle,
    shard_key: &ShardKey,
) -> Result<BTreeMap<String, Value>, String> {
    let dbs = run(handle, "", "SHOW DATABASES").await?;
    let mut out = BTreeMap::new();
    let mut key = String::new();
    for db in first_column(&dbs) {
        if db == "_internal" {
            continue;
        }
        let ms = run(handle, &db, "SHOW MEASUREMENTS").await?;
        let measurements = first_column(&ms);
        let inplace = measurements
            .iter()
            .filter(|m| {
                shard_key.build_into(&db, m, &mut key);
                circle.owner_index(key.as_bytes()) == index
            })
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

/// One statement on `handle`'s backend, through the same per-thread client as queries.
async fn run(handle: &BackendHandle, db: &str, q: &str) -> Result<Value, String> {
    query::client_for(handle)
        .query(db, q)
        .await
        .map_err(|e| e.to_string())
}

/// First column of every row of the first series of the first result.
fn first_column(v: &Value) -> Vec<String> {
    v.pointer("/results/0/series/0/values")
        .and_then(Value::as_array)
        .map(|rows| {
            rows.iter()
                .filter_map(|r| r.get(0).and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// `/encrypt?msg=` (or `text=`): the reference cipher's form of a
/// credential, for `auth_secure` configs. Plain text answer.
pub async fn encrypt(
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
pub async fn decrypt(
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
pub async fn replica(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params = Params::from_request(&req)?;
    auth::check(&req, &params, &state.config())?;
    let db = params.str("db");
    let mm = params
        .get("meas")
        .or_else(|| params.get("mm"))
        .unwrap_or("");
    if db.is_empty() || mm.is_empty() {
        return Err(ApiError::BadRequest("invalid db or meas".into()));
    }
    let cluster = state.cluster();
    let owners: Vec<Value> = cluster
        .owners(db, mm)
        .into_iter()
        .map(|(c, b)| {
            json!({
                "circle": c.name,
                "circle_id": c.id,
                "name": b.backend.info.name,
                "url": b.backend.info.url,
            })
        })
        .collect();
    Ok(json_response(&Value::Array(owners), params.pretty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_column_reads_show_output() {
        let v = json!({"results":[{"statement_id":0,"series":[{"name":"databases","columns":["name"],"values":[["_internal"],["db1"]]}]}]});
        assert_eq!(first_column(&v), vec!["_internal", "db1"]);
        assert!(first_column(&json!({"results":[{"statement_id":0}]})).is_empty());
    }
}
