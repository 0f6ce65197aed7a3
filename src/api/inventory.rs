//! `/inventory`: what every backend of every circle holds, per database and measurement, with
//! its size. The console's what-if placement (`influx-proxy ctl placement --what-if`) reads
//! it to say which measurements another config would move, and how much data that is, before
//! anything changes; it asks the backends through `backend::catalog` like `/health`'s load.

use std::collections::BTreeMap;
use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::future::join_all;
use serde_json::{json, Value};

use super::{auth, json_response, ApiError, AppState, Params};
use crate::backend::{catalog, client};
use crate::circle::BackendHandle;

// Longest a backend may take to answer one question: counting the points of a large
// database reads every field, so as long as a migration's reads (README: `query_timeout`).
use crate::migrate::READ_TIMEOUT;

/// `GET /inventory[?db=|dbs=][&sizes=false]`: per circle and backend, the measurements of
/// each database (`_internal` left out), with `series` and `points` unless `sizes=false`.
/// A backend that is down or cannot be asked has an `error` instead.
pub(super) async fn inventory(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params = Params::from_request(&req)?;
    auth::check(&req, &params, &state.config())?;
    let ask = Ask {
        dbs: params.databases(),
        sizes: params.get("sizes") != Some("false"),
    };
    let cluster = state.cluster();
    let mut circles = Vec::with_capacity(cluster.circles.len());
    for c in &cluster.circles {
        let backends = join_all(c.backends.iter().map(|b| backend(b.clone(), &ask))).await;
        circles.push(json!({ "id": c.id, "name": c.name, "backends": backends }));
    }
    Ok(json_response(
        &json!({ "circles": circles }),
        params.pretty(),
    ))
}

/// What a request asks of each backend.
struct Ask {
    /// Only these databases (empty: all).
    dbs: Vec<String>,
    /// Count series and points.
    sizes: bool,
}

async fn backend(handle: Arc<BackendHandle>, ask: &Ask) -> Value {
    let b = &handle.backend;
    let mut v = json!({ "name": b.info.name, "url": b.info.url });
    let held = if b.status.is_active() {
        holdings(&handle, ask).await.map_err(|e| e.to_string())
    } else {
        Err("backend is down".to_string())
    };
    match held {
        Ok(dbs) => v["databases"] = json!(dbs),
        Err(e) => v["error"] = json!(e),
    }
    v
}

/// Database -> measurement -> size (`null` sizes unless asked).
async fn holdings(
    handle: &BackendHandle,
    ask: &Ask,
) -> Result<BTreeMap<String, BTreeMap<String, Value>>, client::Error> {
    let client = client::cached(&handle.backend.target, READ_TIMEOUT);
    let mut dbs = catalog::databases(&client).await?;
    dbs.retain(|d| ask.dbs.is_empty() || ask.dbs.contains(d));
    let mut out = BTreeMap::new();
    for db in dbs {
        let measurements = catalog::measurements(&client, &db).await?;
        let sized: BTreeMap<String, Value> = if ask.sizes {
            let policies = catalog::retention_policies(&client, &db).await?;
            catalog::sizes(&client, &db, &measurements, &policies)
                .await?
                .into_iter()
                .map(|(m, s)| (m, json!(s)))
                .collect()
        } else {
            measurements
                .into_iter()
                .map(|m| (m, json!({ "series": null, "points": null })))
                .collect()
        };
        out.insert(db, sized);
    }
    Ok(out)
}
