//! `POST /api/v2/query`: Flux (InfluxDB 1.8's compatibility API, the Go proxy 2.5's
//! `/api/v2/query`). The proxy finds the bucket and measurement a query reads (`crate::flux`)
//! and relays the request to the owning backend of the best circle, failing over to the next
//! circle only when a backend cannot be reached: what a backend answers, an error status
//! included, is its verdict on the query and reaches the client as it is.

use actix_web::http::header;
use actix_web::{web, HttpMessage as _, HttpRequest, HttpResponse};
use bytes::Bytes;

use super::body;
use super::query::{copy_headers, relay_with};
use super::write::{authorized_post, is_gzipped};
use super::{check_db_allowed, forwarded_path, ApiError, AppState};
use crate::flux;
use crate::query;

/// The Flux handler.
pub(super) async fn query(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorized_post(&req, &state)?;
    let config = state.config();
    let flux_text = is_flux_text(&req)?;
    let shape = body::Shape {
        encoding: if is_gzipped(&req) {
            body::Encoding::Gzip
        } else {
            body::Encoding::Plain
        },
        copies: 1,
        max_body: config.max_body_bytes,
        max_decompressed: config.max_decompressed_bytes,
    };
    // Held, with the body, until the backend has answered.
    let (raw, charge) = body::receive(&req, payload, state.admission(), &shape).await?;
    let decoder = body::Decoder::new(raw, shape, "");
    let (body, target, _charge) = body::decode_then(decoder, charge, true, move |decoded, c| {
        let target = flux::target(decoded.plain(), flux_text);
        Ok((Bytes::from(decoded.raw), target, c))
    })
    .await?;
    let target = target.map_err(|e| ApiError::BadRequest(e.to_string()))?;
    check_db_allowed(&config, target.db())?;
    let path = forwarded_path("/api/v2/query", req.query_string())?;
    let headers = copy_headers(
        &req,
        [
            header::CONTENT_TYPE,
            header::CONTENT_ENCODING,
            header::ACCEPT,
            header::ACCEPT_ENCODING,
        ],
    );
    let started = std::time::Instant::now();
    let cluster = state.cluster();
    let relay = query::relay_to_owner(&cluster, target.db(), &target.measurement, |client| {
        let (path, body, headers) = (path.clone(), body.clone(), headers.clone());
        async move { client.forward(&path, body, &headers).await }
    })
    .await?;
    if config.query_tracing {
        tracing::info!(
            db = %target.db(),
            bucket = %target.bucket,
            measurement = %target.measurement,
            status = relay.response.status().as_u16(),
            took_us = started.elapsed().as_micros() as u64,
            "Flux query."
        );
    }
    Ok(relay_with(
        relay,
        &[
            "content-type",
            "content-encoding",
            "request-id",
            "x-influxdb-error",
        ],
    ))
}

/// `application/vnd.flux` carries Flux text; anything else (JSON by default) the JSON form.
/// A Content-Type that is not a media type is refused, as by InfluxDB.
fn is_flux_text(req: &HttpRequest) -> Result<bool, ApiError> {
    match req.mime_type() {
        Ok(Some(mime)) => Ok(mime.essence_str() == "application/vnd.flux"),
        Ok(None) => Ok(false),
        Err(e) => Err(ApiError::BadRequest(format!("invalid Content-Type: {e}"))),
    }
}
