//! influx-proxy: a high-availability and sharding proxy for InfluxDB 1.x,
//! drop-in compatible with chengshiwen/influx-proxy v2.
//!
//! # Layout
//! Dependencies point down this list, never up:
//! - [`app`]: composition root (config -> queue -> circles -> HTTP -> signals).
//! - [`api`]: the InfluxDB-compatible HTTP API (actix-web).
//! - [`cluster`]: all circles and the write path (route, stamp, queue).
//! - [`circle`]: one consistent-hash ring of backends and its supervisor.
//! - [`backend`]: one actor per InfluxDB, draining its write-ahead queue.
//! - [`wal`]: the RocksDB write-ahead queue.
//! - Pure modules, no I/O: [`ring`] (Go-compatible placement), [`answer`] (InfluxDB's JSON answers),
//!   [`line_protocol`] (scan and stamp lines), [`flux`] (what a Flux query reads),
//!   [`prom`] (Prometheus remote storage messages), [`config`], [`cipher`].
//! - [`runtime`]: logging and signals; [`cli`]: flags; [`tls`]: client TLS.
//! - [`buffers`]: per-thread reuse of the write path's large buffers.
//! - [`metrics`]: Prometheus registry and text format (used by any layer).
//! - [`rate_limit`]: one log line per interval for errors that repeat (any layer).

#![forbid(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms, missing_debug_implementations)]

pub mod answer;
pub mod api;
pub mod app;
pub mod backend;
pub mod buffers;
pub mod cipher;
pub mod circle;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod dead_letters;
pub mod flux;
pub mod influxql;
pub mod line_protocol;
pub mod memory;
pub mod metrics;
pub mod migrate;
pub mod prom;
pub mod query;
pub mod rate_limit;
pub mod ring;
pub mod runtime;
pub mod schema;
pub mod tls;
pub mod wal;
