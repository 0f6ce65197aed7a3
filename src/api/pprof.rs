//! `/debug/pprof/profile`: a CPU profile of the whole process, served only
//! when `pprof_enabled` is set (404 otherwise, as in the Go proxy) and
//! behind the proxy's auth.
//!
//! Parameters: `seconds` (1 to 300, default 30) and `format`: `proto`
//! (default; gzip-compressed `profile.proto`, for `go tool pprof` and other
//! pprof tools) or `flamegraph` (an SVG).
//!
//! The profiler (pprof-rs) samples every thread with `SIGPROF` at 100 Hz. It
//! runs on its own thread, so the proxy keeps serving meanwhile; one profile
//! runs at a time (409 otherwise). A client that goes away stops its
//! profile within 100 ms.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use tokio::sync::oneshot;

use super::{auth, ApiError, AppState, Params};

/// Default profile length.
const DEFAULT_SECONDS: u64 = 30;
/// Longest profile.
const MAX_SECONDS: u64 = 300;
/// Samples per second (the Go runtime's rate).
const FREQUENCY_HZ: i32 = 100;
/// How often the profiling thread checks whether its client went away.
const CANCEL_CHECK: Duration = Duration::from_millis(100);
/// Libraries whose frames are not unwound from the signal handler (their
/// unwinding can deadlock), as pprof-rs recommends.
const BLOCKLIST: &[&str] = &["libc", "libgcc", "pthread", "vdso"];

/// Set while a profile runs.
static RUNNING: AtomicBool = AtomicBool::new(false);

/// Clears [`RUNNING`] when the profiling thread ends (or never starts).
struct Running;

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING.store(false, Ordering::Release);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Proto,
    Flamegraph,
}

/// `/debug/pprof/profile?seconds=N[&format=flamegraph]`.
pub(super) async fn profile(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let config = state.config();
    if !config.pprof_enabled {
        return Ok(super::not_found().await);
    }
    let params = Params::from_request(&req)?;
    auth::check(&req, &params, &config)?;
    let seconds = match params.get("seconds") {
        None | Some("") => DEFAULT_SECONDS,
        Some(s) => s
            .parse::<u64>()
            .ok()
            .filter(|n| (1..=MAX_SECONDS).contains(n))
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "seconds must be a whole number from 1 to {MAX_SECONDS}"
                ))
            })?,
    };
    let format = match params.get("format") {
        None | Some("" | "proto" | "pprof") => Format::Proto,
        Some("flamegraph" | "svg") => Format::Flamegraph,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "unknown format {other:?}: use proto or flamegraph"
            )))
        }
    };
    if RUNNING
        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return Err(ApiError::Conflict(
            "a CPU profile is already running; try again when it is done".into(),
        ));
    }
    let running = Running;
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("pprof".into())
        .spawn(move || {
            let result = run(Duration::from_secs(seconds), format, &tx);
            // Cleared before the answer leaves: a client that asks again as soon as it has its
            // profile must not find this one still running (a test did, under CPU load).
            drop(running);
            let _ = tx.send(result);
        })
        .map_err(|e| ApiError::Internal(format!("cannot start the profiler thread: {e}")))?;
    let body = rx
        .await
        .map_err(|_| ApiError::Internal("the profiler thread died".into()))?
        .map_err(|e| ApiError::Internal(format!("CPU profile failed: {e}")))?;
    Ok(match format {
        Format::Proto => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, "application/octet-stream"))
            .insert_header((
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"profile\"",
            ))
            .body(body),
        Format::Flamegraph => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, "image/svg+xml"))
            .body(body),
    })
}

/// Profiles for `length` (less if the receiver of `tx` goes away) and
/// encodes the report.
fn run(
    length: Duration,
    format: Format,
    tx: &oneshot::Sender<Result<Vec<u8>, String>>,
) -> Result<Vec<u8>, String> {
    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(FREQUENCY_HZ)
        .blocklist(BLOCKLIST)
        .build()
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + length;
    loop {
        let now = Instant::now();
        if now >= deadline || tx.is_closed() {
            break;
        }
        std::thread::sleep(CANCEL_CHECK.min(deadline - now));
    }
    let report = guard.report().build().map_err(|e| e.to_string())?;
    drop(guard);
    match format {
        Format::Proto => {
            use pprof::protos::Message as _;
            let profile = report.pprof().map_err(|e| e.to_string())?;
            let raw = profile.encode_to_vec();
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gz.write_all(&raw).map_err(|e| e.to_string())?;
            gz.finish().map_err(|e| e.to_string())
        }
        Format::Flamegraph => {
            let mut svg = Vec::new();
            if report.data.is_empty() {
                // No samples (an idle proxy): pprof-rs writes nothing, while
                // inferno draws an SVG saying so (and returns an error).
                let mut options = pprof::flamegraph::Options::default();
                let _ = pprof::flamegraph::from_lines(&mut options, std::iter::empty(), &mut svg);
                return Ok(svg);
            }
            report.flamegraph(&mut svg).map_err(|e| e.to_string())?;
            Ok(svg)
        }
    }
}
