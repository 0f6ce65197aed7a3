//! `/dead_letters`: list, export, replay and purge the lines backends
//! refused (see `crate::dead_letters`). Authenticated like `/health`.

use std::sync::Arc;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde_json::{json, Value};

use super::{auth, json_response, ApiError, AppState, Params};
use crate::circle::BackendHandle;
use crate::cluster::Cluster;
use crate::dead_letters::{self, Export};

/// Most dead letters one replay call moves back into a queue.
const REPLAY_LIMIT: usize = 1_000_000;

/// The backend named by the `backend` parameter (required).
fn backend(cluster: &Cluster, params: &Params) -> Result<Arc<BackendHandle>, ApiError> {
    let name = params
        .get("backend")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::BadRequest("missing parameter: backend".into()))?;
    cluster
        .backends()
        .find(|h| h.backend.info.name == name)
        .cloned()
        .ok_or_else(|| ApiError::BadRequest(format!("unknown backend: {name}")))
}

/// Runs blocking queue work off the event loop.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::wal::Error> + Send + 'static,
) -> Result<T, ApiError> {
    web::block(f)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(ApiError::from)
}

/// `GET /dead_letters[?backend=NAME]`: a summary per backend.
pub(super) async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params = Params::from_request(&req)?;
    auth::check(&req, &params, &state.config())?;
    let cluster = state.cluster();
    let handles: Vec<Arc<BackendHandle>> = match params.get("backend") {
        Some(_) => vec![backend(&cluster, &params)?],
        None => cluster.backends().cloned().collect(),
    };
    let wal = cluster.wal().clone();
    let summaries = blocking(move || {
        handles
            .iter()
            .map(|h| {
                let s = dead_letters::summary(&wal, &h.backend.queue)?;
                let mut v = serde_json::to_value(s).unwrap_or(Value::Null);
                if let Some(obj) = v.as_object_mut() {
                    obj.insert("backend".into(), json!(h.backend.info.name));
                    obj.insert("circle".into(), json!(h.backend.info.circle));
                }
                Ok(v)
            })
            .collect::<Result<Vec<Value>, crate::wal::Error>>()
    })
    .await?;
    Ok(json_response(
        &json!({ "backends": summaries }),
        params.pretty(),
    ))
}

/// `GET /dead_letters/export?backend=NAME[&db=DB]`: the refused lines in
/// InfluxDB's export format, streamed page by page.
pub(super) async fn export(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params = Params::from_request(&req)?;
    auth::check(&req, &params, &state.config())?;
    let cluster = state.cluster();
    let handle = backend(&cluster, &params)?;
    let wal = cluster.wal().clone();
    let export = Export::new(params.get("db").map(str::to_string));
    let pages = futures_util::stream::unfold(Some(export), move |export| {
        let (wal, handle) = (wal.clone(), handle.clone());
        async move {
            let mut export = export?;
            let page = web::block(move || {
                let page = export.next_page(&wal, &handle.backend.queue);
                (export, page)
            })
            .await;
            match page {
                Ok((export, Ok(Some(text)))) => {
                    Some((Ok::<Bytes, ApiError>(Bytes::from(text)), Some(export)))
                }
                Ok((_, Ok(None))) => None,
                Ok((_, Err(e))) => Some((Err(ApiError::from(e)), None)),
                Err(e) => Some((Err(ApiError::Internal(e.to_string())), None)),
            }
        }
    });
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/plain; charset=utf-8"))
        .streaming(pages))
}

/// `POST /dead_letters/replay?backend=NAME`: queues the backend's dead
/// letters again, oldest first (after the cause is fixed).
pub(super) async fn replay(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params = post_params(&req)?;
    auth::check(&req, &params, &state.config())?;
    let cluster = state.cluster();
    let handle = backend(&cluster, &params)?;
    let wal = cluster.wal().clone();
    let h = handle.clone();
    let (records, points) =
        blocking(move || wal.replay_dead_letters(&h.backend.queue, REPLAY_LIMIT)).await?;
    handle.notify();
    tracing::info!(backend = %handle.backend.info.name, records, points, "Dead letters queued again.");
    Ok(json_response(
        &json!({ "backend": handle.backend.info.name, "records": records, "points": points }),
        params.pretty(),
    ))
}

/// `POST /dead_letters/purge?backend=NAME`: deletes the backend's dead
/// letters.
pub(super) async fn purge(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params = post_params(&req)?;
    auth::check(&req, &params, &state.config())?;
    let cluster = state.cluster();
    let handle = backend(&cluster, &params)?;
    let wal = cluster.wal().clone();
    let h = handle.clone();
    let (records, points) = blocking(move || wal.purge_dead_letters(&h.backend.queue)).await?;
    tracing::warn!(backend = %handle.backend.info.name, records, points, "Dead letters purged.");
    Ok(json_response(
        &json!({ "backend": handle.backend.info.name, "records": records, "points": points }),
        params.pretty(),
    ))
}

/// Parameters of a changing call: POST only, so a crawler or a prefetch
/// following a link never replays or purges.
fn post_params(req: &HttpRequest) -> Result<Params, ApiError> {
    if req.method() != actix_web::http::Method::POST {
        return Err(ApiError::MethodNotAllowed);
    }
    Params::from_request(req)
}
