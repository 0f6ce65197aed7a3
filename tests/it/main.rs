//! Integration tests: the release binary in front of real `influxd`
//! servers started by the harness (`crates/harness`, here as `support`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use harness as support;

mod antientropy;
mod bombs;
mod cli;
mod ctl;
mod ddl;
mod faults_disk;
mod flux;
mod hostile_names;
mod http10;
mod hung;
mod logs;
mod metrics;
mod migrate;
mod prom;
mod query;
mod reads;
mod refusals;
mod rules;
mod security;
mod service;
mod settings;
mod top;
mod udp;
mod verdicts;
mod write;
