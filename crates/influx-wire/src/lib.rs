//! InfluxDB 1.x's wire formats, read and written the way `influxd` reads and writes them.
//!
//! Everything the proxy (and its benchmark tool) needs to know about what travels between
//! clients, the proxy and InfluxDB, with no I/O: so each concept has one home, the fuzz targets
//! and property tests reach all of it, and the proxy's layers above cannot leak into it (this
//! crate depends on none of them).
//!
//! - [`line_protocol`]: splitting a `/write` body into lines, influxd's verdict on each,
//!   timestamps to nanoseconds, and [`line_protocol::escape`], the one escaper.
//! - [`influxql`]: statements classified and parsed as far as routing needs, the one quoting
//!   of identifiers, strings and regexes, and the name checks.
//! - [`answer`]: the JSON answers of `/query`; [`civil`]: Unix times as UTC dates.
//! - [`prom`]: Prometheus remote write and read messages, samples to line protocol.
//! - [`flux`]: the bucket and measurement a Flux query reads.

#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

pub mod answer;
pub mod civil;
pub mod flux;
pub mod influxql;
pub mod line_protocol;
pub mod prom;
