//! `GET /metrics` (Prometheus text format) and the middleware that counts
//! and times every HTTP request.
//!
//! Per-backend numbers are read from the running cluster at scrape time
//! (see `crate::metrics` for the list of sources); the request metrics live
//! in the global registry.

use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};

use super::{auth, ApiError, AppState, Params};
use crate::backend::Backend;
use crate::circle::Circle;
use crate::cluster::Cluster;
use crate::metrics::{self, Counter, Encoder, Family, Histogram, MetricType, Value};

/// `/metrics`: every metric in the Prometheus text format (0.0.4).
pub(super) async fn metrics(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params = Params::from_request(&req)?;
    auth::check(&req, &params, &state.config())?;
    let mut enc = Encoder::new();
    encode_build_info(&mut enc);
    encode_cluster(&mut enc, &state.cluster());
    encode_memory(&mut enc, &state);
    encode_wal_storage(&mut enc, &state.cluster());
    encode_pace(&mut enc, state.pace());
    crate::migrate::metrics::encode(&mut enc, &state.cluster(), state.migration());
    crate::udp::encode_metrics(&mut enc);
    metrics::global().encode_into(&mut enc);
    metrics::encode_process(&mut enc);
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, metrics::CONTENT_TYPE))
        .body(enc.finish()))
}

fn encode_build_info(enc: &mut Encoder) {
    enc.header(
        "influx_proxy_build_info",
        "Version and git commit of the running binary (always 1).",
        MetricType::Gauge,
    );
    enc.sample(
        "influx_proxy_build_info",
        &[
            ("version", super::VERSION),
            ("commit", env!("INFLUX_PROXY_GIT_COMMIT")),
        ],
        1u64,
    );
}

/// The memory budget and what its parts hold now, so an operator sees which share a resident
/// size comes from (`crate::memory`).
fn encode_memory(enc: &mut Encoder, state: &AppState) {
    let budget = state.config().memory_budget();
    enc.single(
        "influx_proxy_memory_budget_bytes",
        "The memory budget (memory_budget_mb).",
        MetricType::Gauge,
        budget.total(),
    );
    let admission = state.admission();
    let mut parts = vec![("request_bodies", admission.in_use_bytes())];
    if let Some(wal) = state.cluster().wal_memory() {
        parts.push(("wal_memtables", wal.memtables));
        parts.push(("wal_block_cache", wal.block_cache));
        parts.push(("wal_table_readers", wal.table_readers));
    }
    parts.push(("kept_buffers", crate::buffers::kept_bytes() as u64));
    if let Some(heap) = crate::memory::allocator() {
        parts.push(("heap_allocated", heap.allocated));
        parts.push(("heap_resident", heap.resident));
    }
    enc.header(
        "influx_proxy_memory_bytes",
        "Bytes held now by each part of the memory budget; heap_allocated is what the program \
         holds from the allocator, heap_resident what the allocator holds from the kernel.",
        MetricType::Gauge,
    );
    for (part, bytes) in parts {
        enc.sample("influx_proxy_memory_bytes", &[("part", part)], bytes);
    }
}

/// Whether writes wait for delivery, and how much they waited (`crate::pace`).
fn encode_pace(enc: &mut Encoder, pace: &crate::pace::Pace) {
    enc.single(
        "influx_proxy_write_pacing",
        "1 while write requests wait for delivery to catch up: the proxy's CPU is used up and \
         a delivering backend is behind by more than its next batch.",
        MetricType::Gauge,
        u64::from(pace.is_pacing()),
    );
    let (paced, waited) = pace.waits();
    enc.single(
        "influx_proxy_writes_paced_total",
        "Write requests that waited for delivery to catch up.",
        MetricType::Counter,
        paced,
    );
    enc.single(
        "influx_proxy_write_pace_wait_seconds_total",
        "Time write requests waited for delivery to catch up, summed.",
        MetricType::Counter,
        waited.as_secs_f64(),
    );
}

/// The queue's storage: whether it takes writes, and the free-space reserve
/// (`wal::StorageState`).
fn encode_wal_storage(enc: &mut Encoder, cluster: &Cluster) {
    let s = cluster.wal_storage();
    enc.single(
        "influx_proxy_wal_storage_ok",
        "1 while the write-ahead queue's storage takes writes; 0 from a failed write (a full \
         disk, an I/O error) until it recovers by itself.",
        MetricType::Gauge,
        u64::from(s.failed.is_none()),
    );
    enc.single(
        "influx_proxy_wal_storage_failures_total",
        "Times the write-ahead queue's storage failed.",
        MetricType::Counter,
        s.failures,
    );
    enc.single(
        "influx_proxy_wal_deferred_records",
        "Delivered records whose deletion waits for the queue's storage to recover.",
        MetricType::Gauge,
        s.deferred_records,
    );
    if s.free_bytes != u64::MAX {
        enc.single(
            "influx_proxy_wal_free_bytes",
            "Free bytes on data_dir's filesystem.",
            MetricType::Gauge,
            s.free_bytes,
        );
    }
    enc.single(
        "influx_proxy_wal_disk_bytes",
        "Bytes the write-ahead queue's files take on data_dir's filesystem.",
        MetricType::Gauge,
        cluster.wal_disk_bytes(),
    );
    enc.single(
        "influx_proxy_wal_min_free_bytes",
        "The free-space reserve (wal_min_free_mb): new writes get 503 while less is free.",
        MetricType::Gauge,
        s.reserve_bytes,
    );
    enc.single(
        "influx_proxy_wal_low_disk_refusals_total",
        "Writes refused because less than wal_min_free_mb was free.",
        MetricType::Counter,
        s.refused_low,
    );
}

/// One metric with a sample per backend, labelled `circle` and `backend`.
fn per_backend<V: Value>(
    enc: &mut Encoder,
    cluster: &Cluster,
    name: &str,
    help: &str,
    kind: MetricType,
    value: impl Fn(&Backend) -> V,
) {
    enc.header(name, help, kind);
    for (circle, b) in backends(cluster) {
        enc.sample(name, &labels(circle, b), value(b));
    }
}

fn backends(cluster: &Cluster) -> impl Iterator<Item = (&Arc<Circle>, &Backend)> {
    cluster
        .circles
        .iter()
        .flat_map(|c| c.backends.iter().map(move |h| (c, &*h.backend)))
}

fn labels<'a>(circle: &'a Circle, b: &'a Backend) -> [(&'static str, &'a str); 2] {
    [("circle", &circle.name), ("backend", &b.info.name)]
}

fn encode_cluster(enc: &mut Encoder, cluster: &Cluster) {
    enc.header(
        "influx_proxy_circle_active",
        "1 when every backend of the circle is active.",
        MetricType::Gauge,
    );
    for c in &cluster.circles {
        enc.sample(
            "influx_proxy_circle_active",
            &[("circle", &c.name)],
            c.is_active(),
        );
    }
    enc.header(
        "influx_proxy_circle_migrating",
        "1 while a migration writes into the circle (reads avoid it).",
        MetricType::Gauge,
    );
    for c in &cluster.circles {
        enc.sample(
            "influx_proxy_circle_migrating",
            &[("circle", &c.name)],
            c.is_migrating(),
        );
    }
    enc.header(
        "influx_proxy_circle_reads_total",
        "Reads the circle answered (queries, Flux, Prometheus remote reads): how reads \
         spread over the circles.",
        MetricType::Counter,
    );
    for c in &cluster.circles {
        enc.sample(
            "influx_proxy_circle_reads_total",
            &[("circle", &c.name)],
            c.reads.get(),
        );
    }
    per_backend(
        enc,
        cluster,
        "influx_proxy_backend_active",
        "1 when the backend answered its last health check or write.",
        MetricType::Gauge,
        |b| b.status.is_active(),
    );
    per_backend(
        enc,
        cluster,
        "influx_proxy_backend_rewriting",
        "1 while the backend drains a backlog after a failure.",
        MetricType::Gauge,
        |b| b.status.is_draining(),
    );
    per_backend(
        enc,
        cluster,
        "influx_proxy_backend_state_changes_total",
        "Active/inactive transitions of the backend.",
        MetricType::Counter,
        |b| b.status.state_changes.load(Ordering::Relaxed),
    );
    per_backend(
        enc,
        cluster,
        "influx_proxy_backend_queue_records",
        "Records waiting in the backend's write-ahead queue.",
        MetricType::Gauge,
        |b| b.queue.stats.records(),
    );
    per_backend(
        enc,
        cluster,
        "influx_proxy_backend_queue_points",
        "Points waiting in the backend's write-ahead queue.",
        MetricType::Gauge,
        |b| b.queue.stats.points(),
    );
    per_backend(
        enc,
        cluster,
        "influx_proxy_backend_queue_bytes",
        "Bytes waiting in the backend's write-ahead queue.",
        MetricType::Gauge,
        |b| b.queue.stats.snapshot().bytes,
    );
    per_backend(
        enc,
        cluster,
        "influx_proxy_backend_queue_max_bytes",
        "Bound of the backend's write-ahead queue (wal_max_bytes).",
        MetricType::Gauge,
        |b| b.queue.stats.snapshot().max_bytes,
    );
    per_backend(
        enc,
        cluster,
        "influx_proxy_backend_queue_oldest_record_age_seconds",
        "Age of the oldest record in the backend's queue (0 when empty; \
         records recovered at start count from the start).",
        MetricType::Gauge,
        |b| b.queue.stats.oldest_age().as_secs_f64(),
    );
    per_backend(
        enc,
        cluster,
        "influx_proxy_backend_queued_points_total",
        "Points accepted into the backend's write-ahead queue (writes and migration copies).",
        MetricType::Counter,
        |b| b.queue.stats.snapshot().appended_points,
    );
    per_backend(
        enc,
        cluster,
        "influx_proxy_backend_delivered_points_total",
        "Points the backend acknowledged.",
        MetricType::Counter,
        |b| b.status.delivered_points.load(Ordering::Relaxed),
    );
    per_backend(
        enc,
        cluster,
        "influx_proxy_backend_failed_attempts_total",
        "Delivery attempts that failed and will be retried.",
        MetricType::Counter,
        |b| b.status.failed_attempts.load(Ordering::Relaxed),
    );
    per_backend(
        enc,
        cluster,
        "influx_proxy_backend_failed_points_total",
        "Points in delivery attempts that failed and will be retried \
         (counted once per attempt).",
        MetricType::Counter,
        |b| b.status.failed_points.load(Ordering::Relaxed),
    );
    per_backend(
        enc,
        cluster,
        "influx_proxy_backend_dead_letter_records_total",
        "Records the backend refused, kept in the dead-letter store.",
        MetricType::Counter,
        |b| b.queue.stats.snapshot().dead_records,
    );
    per_backend(
        enc,
        cluster,
        "influx_proxy_backend_dead_letter_points_total",
        "Points the backend refused, kept in the dead-letter store.",
        MetricType::Counter,
        |b| b.queue.stats.snapshot().dead_points,
    );
    per_backend(
        enc,
        cluster,
        "influx_proxy_backend_dead_letter_bytes",
        "Bytes the dead-letter store of the backend holds (bounded by dead_letter_max_bytes).",
        MetricType::Gauge,
        |b| b.queue.stats.snapshot().dead_bytes,
    );
    per_backend(
        enc,
        cluster,
        "influx_proxy_backend_dead_letter_dropped_records_total",
        "Dead letters dropped, oldest first, to stay within dead_letter_max_bytes.",
        MetricType::Counter,
        |b| b.queue.stats.snapshot().dead_dropped_records,
    );
    per_backend(
        enc,
        cluster,
        "influx_proxy_backend_dead_letter_dropped_points_total",
        "Points in dead letters dropped to stay within dead_letter_max_bytes.",
        MetricType::Counter,
        |b| b.queue.stats.snapshot().dead_dropped_points,
    );
    let name = "influx_proxy_backend_write_duration_seconds";
    enc.header(
        name,
        "Duration of successful write requests to the backend.",
        MetricType::Histogram,
    );
    for (circle, b) in backends(cluster) {
        enc.histogram(name, &labels(circle, b), &b.status.write_latency);
    }
}

/// Label of requests that matched no route (bounded, unlike the raw path).
const UNMATCHED: &str = "other";

/// Request metric families in the global registry.
#[derive(Debug)]
struct HttpMetrics {
    requests: Arc<Family<Counter>>,
    errors: Arc<Family<Counter>>,
    duration: Arc<Family<Histogram>>,
}

fn http_metrics() -> &'static HttpMetrics {
    static HTTP: OnceLock<HttpMetrics> = OnceLock::new();
    HTTP.get_or_init(|| {
        let r = metrics::global();
        HttpMetrics {
            requests: r.counter(
                "influx_proxy_http_requests_total",
                "HTTP requests by route and status code.",
                &["path", "status"],
            ),
            errors: r.counter(
                "influx_proxy_http_request_errors_total",
                "HTTP requests answered with 4xx or 5xx, by route and status class.",
                &["path", "status"],
            ),
            duration: r.histogram(
                "influx_proxy_http_request_duration_seconds",
                "Time from receiving a request to its response being ready \
                 (the body is not included), by route.",
                &["path"],
                metrics::LATENCY_BUCKETS,
            ),
        }
    })
}

impl HttpMetrics {
    fn record(&self, path: &str, status: StatusCode, started: Instant) {
        self.duration
            .with(&[path])
            .observe_duration(started.elapsed());
        self.requests.with(&[path, status.as_str()]).inc();
        let class = if status.is_server_error() {
            "5xx"
        } else if status.is_client_error() {
            "4xx"
        } else {
            return;
        };
        self.errors.with(&[path, class]).inc();
    }
}

/// Middleware counting and timing every request by route pattern (`path`)
/// and status. Register it outermost (last `.wrap`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RequestMetrics;

impl<S, B> Transform<S, ServiceRequest> for RequestMetrics
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
    S::Future: 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Transform = RequestMetricsService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(RequestMetricsService {
            service,
            metrics: http_metrics(),
        }))
    }
}

/// The service built by [`RequestMetrics`].
#[derive(Debug)]
pub(crate) struct RequestMetricsService<S> {
    service: S,
    metrics: &'static HttpMetrics,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T>>>;

impl<S, B> Service<ServiceRequest> for RequestMetricsService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
    S::Future: 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let started = Instant::now();
        let fut = self.service.call(req);
        let metrics = self.metrics;
        Box::pin(async move {
            let result = fut.await;
            match &result {
                Ok(res) => {
                    let pattern = res.request().match_pattern();
                    let path = pattern.as_deref().unwrap_or(UNMATCHED);
                    metrics.record(path, res.status(), started);
                }
                Err(e) => {
                    let status = e.as_response_error().status_code();
                    metrics.record(UNMATCHED, status, started);
                }
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::{test, App};

    #[actix_web::test]
    async fn middleware_counts_requests_by_route_and_status() {
        let app = test::init_service(
            App::new()
                .wrap(RequestMetrics)
                .service(web::resource("/t-ok").to(|| async { HttpResponse::NoContent().finish() }))
                .service(
                    web::resource("/t-bad").to(|| async { HttpResponse::BadRequest().finish() }),
                )
                .default_service(web::to(|| async { HttpResponse::NotFound().finish() })),
        )
        .await;
        for uri in ["/t-ok", "/t-ok", "/t-bad", "/t-nowhere"] {
            let req = test::TestRequest::get().uri(uri).to_request();
            let _ = test::call_service(&app, req).await;
        }
        let m = http_metrics();
        assert_eq!(m.requests.with(&["/t-ok", "204"]).get(), 2);
        assert_eq!(m.requests.with(&["/t-bad", "400"]).get(), 1);
        assert_eq!(m.errors.with(&["/t-bad", "4xx"]).get(), 1);
        assert_eq!(m.errors.with(&["/t-ok", "4xx"]).get(), 0);
        assert!(m.requests.with(&[UNMATCHED, "404"]).get() >= 1);
        let (buckets, _) = m.duration.with(&["/t-ok"]).snapshot();
        assert_eq!(buckets.last().copied(), Some(2));
        let text = metrics::global().encode();
        assert!(
            text.contains("influx_proxy_http_requests_total{path=\"/t-ok\",status=\"204\"} 2\n"),
            "{text}"
        );
    }
}
