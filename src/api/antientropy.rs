//! Anti-entropy endpoints: `/anti-entropy/compare` (which buckets differ between circles) and
//! `/anti-entropy/repair` (mend them, in the background; progress in
//! `/migrate/stats?type=repair`). See `migrate::antientropy` and `migrate::repair`.

use std::time::{Duration, Instant};

use actix_web::http::{header, Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use tracing::{info, warn};

use super::{auth, json_response, parse_bool, ApiError, AppState, Params};
use crate::config::Config;
use crate::migrate::antientropy::{self, Scope, MAX_TIME, MIN_TIME};
use crate::migrate::repair::{self, Spec};
use crate::migrate::{Operation, Start};

/// How often the background task looks whether a pass is due (the interval is reloadable).
const SCHEDULE_TICK: Duration = Duration::from_secs(1);
/// A background pass leaves out the last minute: points still in the queues would look
/// missing in the circles that have not received them yet.
const SETTLE_S: i64 = 60;
/// Default `min_bucket`: buckets are not split below a minute.
const DEFAULT_MIN_BUCKET_S: i64 = 60;
const NS_PER_S: i64 = 1_000_000_000;

/// Unix seconds now.
fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn seconds(params: &Params, name: &str) -> Result<Option<i64>, ApiError> {
    match params.get(name).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| n.checked_mul(NS_PER_S).is_some())
            .map(Some)
            .ok_or_else(|| ApiError::BadRequest(format!("invalid {name}, require unix seconds"))),
    }
}

/// What a request compares: `db`/`dbs`, `start`/`end` (unix seconds) or a recent window
/// (`seconds`, `minutes`, `hours`, `days`), `min_bucket` (seconds).
fn scope(params: &Params) -> Result<Scope, ApiError> {
    let mut start = seconds(params, "start")?.map_or(MIN_TIME, |s| s * NS_PER_S);
    let end = seconds(params, "end")?.map_or(MAX_TIME, |s| s * NS_PER_S);
    let window = params.window_s()?;
    if window > 0 {
        start = (now_s() - window).saturating_mul(NS_PER_S);
    }
    if start >= end {
        return Err(ApiError::BadRequest(
            "invalid range, start must be before end".into(),
        ));
    }
    let min_bucket = seconds(params, "min_bucket")?.unwrap_or(DEFAULT_MIN_BUCKET_S);
    if min_bucket <= 0 {
        return Err(ApiError::BadRequest(
            "invalid min_bucket, require positive seconds".into(),
        ));
    }
    let dbs = params.databases();
    let deep = match params.get("deep") {
        None => false,
        Some(v) => parse_bool(v)
            .ok_or_else(|| ApiError::BadRequest("invalid deep, require true or false".into()))?,
    };
    Ok(Scope {
        dbs,
        start,
        end,
        min_bucket: min_bucket * NS_PER_S,
        deep,
    })
}

/// `GET /anti-entropy/compare`: the differing buckets, computed now (synchronously).
pub(super) async fn compare(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params = Params::from_request(&req)?;
    auth::check(&req, &params, &state.config())?;
    let scope = scope(&params)?;
    let cluster = state.cluster();
    let report = antientropy::compare(&cluster, &scope)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let body = antientropy::report_json(&report, &cluster);
    Ok(json_response(&body, params.pretty()))
}

/// The repair a request (or the scheduled pass) asks for.
pub(crate) fn spec(scope: Scope, rate: u64, config: &Config) -> Spec {
    Spec {
        scope,
        rate,
        batch: config.migrate_batch,
    }
}

/// `POST /anti-entropy/repair`: compares and mends in the background (202); 409 while another
/// migration of the circles runs.
pub(super) async fn repair(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if req.method() != Method::POST {
        return Err(ApiError::MethodNotAllowed);
    }
    let params = Params::from_request(&req)?;
    let config = state.config();
    auth::check(&req, &params, &config)?;
    let scope = scope(&params)?;
    let rate = match params.get("rate").filter(|v| !v.is_empty()) {
        None => config.anti_entropy_rate,
        Some(v) => v.parse::<u64>().map_err(|_| {
            ApiError::BadRequest("invalid rate, require non-negative integer".into())
        })?,
    };
    let op = Operation::Repair {
        spec: spec(scope, rate, &config),
        resume: None,
    };
    let id = start(&state, op).await?;
    Ok(HttpResponse::build(StatusCode::ACCEPTED)
        .insert_header((header::CONTENT_TYPE, "text/plain; charset=utf-8"))
        .insert_header((super::migrate::JOB_HEADER, id.to_string()))
        .body("accepted\n"))
}

/// Hands a repair to the migration actor; its job id. A busy circle is a 409.
pub(crate) async fn start(state: &AppState, op: Operation) -> Result<u64, ApiError> {
    let msg = Start {
        op,
        dbs: Vec::new(),
        workers: 1,
        batch: state.config().migrate_batch,
        since: 0,
        ha_addrs: Vec::new(),
        cluster: state.cluster(),
        config: state.config(),
    };
    state
        .migrator()
        .send(msg)
        .await
        .map_err(|e| ApiError::Internal(format!("migration actor: {e}")))?
        .map_err(ApiError::Conflict)
}

/// Resumes the repair a restart interrupted, then runs the background passes
/// (`anti_entropy_interval`, over the last `anti_entropy_window`) for as long as the proxy runs.
pub(crate) async fn background(state: web::Data<AppState>) {
    if let Some(saved) = repair::unfinished(&state.config().data_dir) {
        info!(
            buckets = saved.buckets.len(),
            buckets_done = saved.next,
            "Resuming the anti-entropy repair a restart interrupted."
        );
        let op = Operation::Repair {
            spec: saved.spec.clone(),
            resume: Some(Box::new(saved)),
        };
        if let Err(e) = start(&state, op).await {
            warn!(error = %e, "Cannot resume the anti-entropy repair now; it resumes at the next start.");
        }
    }
    let mut last = Instant::now();
    loop {
        actix_web::rt::time::sleep(SCHEDULE_TICK).await;
        let config = state.config();
        let Some(interval) = config.anti_entropy_interval else {
            last = Instant::now();
            continue;
        };
        if last.elapsed() < interval {
            continue;
        }
        last = Instant::now();
        let now = now_s();
        let window = i64::try_from(config.anti_entropy_window.as_secs()).unwrap_or(i64::MAX);
        let scope = Scope {
            dbs: Vec::new(),
            start: now.saturating_sub(window).saturating_mul(NS_PER_S),
            end: (now - SETTLE_S).saturating_mul(NS_PER_S),
            min_bucket: DEFAULT_MIN_BUCKET_S * NS_PER_S,
            deep: false,
        };
        let op = Operation::Repair {
            spec: spec(scope, config.anti_entropy_rate, &config),
            resume: None,
        };
        match start(&state, op).await {
            Ok(_) => info!(
                window_s = window,
                rate = config.anti_entropy_rate,
                "Anti-entropy pass started."
            ),
            Err(e) => info!(reason = %e, "Anti-entropy pass skipped."),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_scope_defaults_to_all_time_and_every_database() {
        let s = scope(&Params::of(&[])).unwrap();
        assert_eq!((s.start, s.end), (MIN_TIME, MAX_TIME));
        assert!(s.dbs.is_empty());
        assert_eq!(s.min_bucket, 60 * NS_PER_S);
        let s = scope(&Params::of(&[
            ("db", "a,b"),
            ("start", "10"),
            ("end", "20"),
        ]))
        .unwrap();
        assert_eq!((s.start, s.end), (10 * NS_PER_S, 20 * NS_PER_S));
        assert_eq!(s.dbs, ["a", "b"]);
        assert!(scope(&Params::of(&[("start", "20"), ("end", "10")])).is_err());
        assert!(scope(&Params::of(&[("start", "x")])).is_err());
        let s = scope(&Params::of(&[("hours", "1")])).unwrap();
        assert!((now_s() * NS_PER_S - s.start - 3_600 * NS_PER_S).abs() < 5 * NS_PER_S);
    }
}
