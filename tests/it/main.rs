//! Integration tests: the release binary in front of real `influxd`
//! servers started by the harness in `support/`.

mod support;

mod cli;
mod write;
