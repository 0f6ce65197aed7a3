//! `POST /api/v1/prom/write` and `POST /api/v1/prom/read`: Prometheus remote storage, as
//! InfluxDB 1.x serves it, spread over the circles.
//!
//! A remote write is converted to line protocol (`crate::prom`) and takes the `/write` path
//! from there: 204 only once every point is in the write-ahead queue of each target backend,
//! and the same 4xx/5xx verdicts. (The Go proxy could answer an empty 200 when its enqueue
//! failed; Prometheus took that as success.)
//!
//! A remote read names one metric; it is relayed untouched to the owner of (db, metric),
//! failing over to another circle on a transport error, and the backend's answer is relayed
//! as it is. A read the proxy cannot route gets one 400 and is not forwarded (the Go proxy
//! wrote its 400 and then forwarded anyway, garbling the response).

use actix_web::http::header::{self, HeaderName};
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;

use super::body;
use super::query::{copy_headers, relay_with};
use super::write::{authorized_post, ingest, BodyKind, Destination};
use super::{check_db_allowed, forwarded_path, ApiError, AppState};
use crate::line_protocol::Precision;
use crate::query;

/// Path of the remote-read endpoint on the backends.
const READ_PATH: &str = "/api/v1/prom/read";

/// `POST /api/v1/prom/write?db=&rp=`.
pub(super) async fn write(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params = authorized_post(&req, &state)?;
    let destination = Destination::of_params(&params, Precision::Nanoseconds)?;
    ingest(req, payload, state, destination, BodyKind::PromWrite).await
}

/// `POST /api/v1/prom/read?db=`.
pub(super) async fn read(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params = authorized_post(&req, &state)?;
    let db = params.required_db()?;
    let config = state.config();
    check_db_allowed(&config, db)?;
    let shape = body::Shape {
        encoding: body::Encoding::Plain,
        copies: 1,
        max_body: config.max_body_bytes,
        max_decompressed: config.max_decompressed_bytes,
    };
    // Held, with the body, until the backend has answered.
    let (raw, mut charge) = body::receive(&req, payload, state.admission(), &shape).await?;
    let request = body::prom_read(&raw, &shape, &mut charge).await?;
    let metric = crate::prom::read_metric(&request).map_err(body::prom_error)?;
    let path = forwarded_path(READ_PATH, req.query_string())?;
    let headers = copy_headers(
        &req,
        [
            header::CONTENT_TYPE,
            header::CONTENT_ENCODING,
            HeaderName::from_static("x-prometheus-remote-read-version"),
        ],
    );
    // The original compressed body, shared by every attempt.
    let body = Bytes::from(raw);
    let cluster = state.cluster();
    let relay = query::relay_to_owner(&cluster, db, metric, |client| {
        let (path, body, headers) = (&path, body.clone(), &headers);
        async move { client.forward(path, body, headers).await }
    })
    .await?;
    if config.query_tracing {
        tracing::info!(
            db,
            measurement = metric,
            status = relay.response.status().as_u16(),
            "Prometheus remote read."
        );
    }
    Ok(relay_with(relay, &["content-type", "content-encoding"]))
}
