//! `GET|POST /query`: InfluxQL, answered as one InfluxDB would.

use std::io::Write as _;

use actix_web::http::{header, Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::Value;

use super::{auth, body, ApiError, AppState, Params};
use crate::answer;
use crate::query::{self, merge, Answer};

/// Largest form body accepted for `POST /query` (when `memory_budget_mb` allows one request
/// that much: `api::body`).
const MAX_FORM_BYTES: usize = 16 << 20;

/// The query handler.
pub(super) async fn query(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if req.method() != Method::GET && req.method() != Method::POST {
        return Err(ApiError::MethodNotAllowed);
    }
    let mut pairs: Vec<(String, String)> = serde_urlencoded::from_str(req.query_string())
        .map_err(|e| ApiError::BadRequest(format!("invalid query string: {e}")))?;
    // A form body is charged to the memory budget until the answer is built: its bytes,
    // the decoded pairs and the query taken from them.
    let mut _charge = None;
    if req.method() == Method::POST && is_form(&req) {
        let shape = body::Shape {
            encoding: body::Encoding::Plain,
            copies: 3,
            max_body: MAX_FORM_BYTES,
            max_decompressed: MAX_FORM_BYTES,
        };
        let (raw, charge) = body::receive(&req, payload, state.admission(), &shape).await?;
        _charge = Some(charge);
        let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&raw)
            .map_err(|e| ApiError::BadRequest(format!("invalid form body: {e}")))?;
        // As in Go's FormValue, body values take precedence over the URL.
        let mut merged = form;
        merged.extend(pairs);
        pairs = merged;
    }
    let params = Params::from_pairs(pairs.clone());
    auth::check(&req, &params, &state.config())?;
    let q = params.str("q").trim().to_string();
    if q.is_empty() {
        return Err(ApiError::BadRequest(
            "missing required parameter \"q\"".into(),
        ));
    }
    let request = query::Request {
        q,
        db: params.str("db").to_string(),
        rp: params.str("rp").to_string(),
        epoch: params.str("epoch").to_string(),
        params: pairs
            .into_iter()
            .filter(|(k, _)| k != "u" && k != "p")
            .collect(),
        db_list: state.config().db_list.clone(),
    };
    let headers = forwarded_headers(&req);
    let started = std::time::Instant::now();
    let answer = query::execute(&state.cluster(), &request, &headers).await?;
    if state.config().query_tracing {
        tracing::info!(
            db = %request.db,
            rp = %request.rp,
            query = %request.q,
            relayed = matches!(answer, Answer::Relay(_)),
            took_us = started.elapsed().as_micros() as u64,
            "Query."
        );
    }
    Ok(match answer {
        Answer::Relay(relay) => relay_response(relay),
        Answer::Json(body) => json_answer(&req, &params, body),
    })
}

fn is_form(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
}

/// Content negotiation headers passed to the backend on relayed reads.
fn forwarded_headers(req: &HttpRequest) -> query::Headers {
    copy_headers(req, [header::ACCEPT, header::ACCEPT_ENCODING])
}

/// The client's `names` headers, for a request to a backend. Credentials are never among
/// them: the backend gets its own.
pub(super) fn copy_headers(
    req: &HttpRequest,
    names: impl IntoIterator<Item = header::HeaderName>,
) -> query::Headers {
    names
        .into_iter()
        .filter_map(|name| {
            let value = req.headers().get(&name)?;
            let name = awc::http::header::HeaderName::from_bytes(name.as_str().as_bytes()).ok()?;
            let value = awc::http::header::HeaderValue::from_bytes(value.as_bytes()).ok()?;
            Some((name, value))
        })
        .collect()
}

fn relay_response(relay: query::Relay) -> HttpResponse {
    relay_with(relay, &["content-type", "content-encoding", "request-id"])
}

/// Streams a backend response to the client: its status, the `headers` named, its body
/// (cut short if the backend goes silent mid-answer, [`query::Relay::into_body`]).
pub(super) fn relay_with(relay: query::Relay, headers: &[&str]) -> HttpResponse {
    let response = &relay.response;
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::OK);
    let mut out = HttpResponse::build(status);
    for &name in headers {
        if let Some(v) = response.headers().get(name) {
            out.insert_header((name, v.as_bytes()));
        }
    }
    out.streaming(relay.into_body())
}

fn wants(req: &HttpRequest, name: header::HeaderName, what: &str) -> bool {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(what))
}

/// Formats a proxy-built answer: JSON (pretty with `pretty=true`) or CSV,
/// gzip-compressed when the client accepts it.
fn json_answer(req: &HttpRequest, params: &Params, body: Value) -> HttpResponse {
    let (content_type, mut bytes) = if wants(req, header::ACCEPT, "application/csv") {
        (
            "text/csv",
            merge::to_csv(answer::results(&body)).into_bytes(),
        )
    } else {
        let mut v = super::json_bytes(&body, params.pretty());
        v.push(b'\n');
        ("application/json", v)
    };
    let mut out = HttpResponse::Ok();
    out.insert_header((header::CONTENT_TYPE, content_type));
    if wants(req, header::ACCEPT_ENCODING, "gzip") {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        if enc.write_all(&bytes).is_ok() {
            if let Ok(z) = enc.finish() {
                bytes = z;
                out.insert_header((header::CONTENT_ENCODING, "gzip"));
            }
        }
    }
    out.body(bytes)
}
