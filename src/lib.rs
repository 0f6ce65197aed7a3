//! influx-proxy: a high-availability and sharding proxy for InfluxDB 1.x,
//! drop-in compatible with chengshiwen/influx-proxy v2.
//!
//! # Layout
//! The workspace's crates are the bottom layers: `influx-wire` (InfluxDB's wire formats,
//! re-exported here as [`line_protocol`], [`influxql`], [`answer`], [`prom`], [`flux`]) and
//! `proxy-queue` (the RocksDB write-ahead queue, re-exported as [`wal`]) cannot see this
//! crate. Within it, dependencies point down this list, never up:
//! - [`app`]: composition root (config -> queue -> circles -> HTTP -> signals).
//! - `api`: the InfluxDB-compatible HTTP API (actix-web); `udp`: line protocol in datagrams,
//!   written through the same path.
//! - `cluster`: all circles and the write path (route, stamp, queue).
//! - `circle`: one consistent-hash ring of backends and its supervisor.
//! - `backend`: one actor per InfluxDB, draining its write-ahead queue; `backend::catalog`
//!   asks a backend what it holds.
//! - Pure modules, no I/O: [`ring`] (Go-compatible placement), [`config`], [`cipher`].
//! - [`runtime`]: logging and signals; [`cli`]: flags; `tls`: client TLS.
//! - [`console`]: `ctl` and `top`, clients of a running proxy over its HTTP API only.
//! - `memory`: the memory budget's shares; `buffers`: per-thread reuse of the write path's
//!   large buffers.
//! - [`metrics`]: Prometheus registry and text format (used by any layer).
//!
//! Only what the binary, the integration tests, the benches and the fuzz targets use is
//! public; the rest is `pub(crate)`, and `unreachable_pub` keeps it so.

#![forbid(unsafe_code)]
#![deny(unreachable_pub)]
#![warn(missing_docs, rust_2018_idioms, missing_debug_implementations)]

pub use influx_wire::{answer, flux, influxql, line_protocol, prom};
pub use proxy_queue as wal;

use log_rate_limit as rate_limit;

mod api;
pub mod app;
mod backend;
mod buffers;
pub mod cipher;
mod circle;
pub mod cli;
mod cluster;
pub mod config;
pub mod console;
mod dead_letters;
mod memory;
pub mod metrics;
mod migrate;
mod pace;
pub mod query;
pub mod ring;
pub mod rules;
pub mod runtime;
mod schema;
mod tls;
mod udp;
