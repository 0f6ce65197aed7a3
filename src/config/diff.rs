//! What a config reload changes, and what it may not change live.
//!
//! A reload is applied as a diff against the running config: fields that
//! only a restart can change (the listen socket, the queue directory, TLS
//! files) are refused by name and nothing is applied; everything else is
//! reported so the reload touches only what changed.

use super::Config;

/// The difference between the running config and a reloaded one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigDiff {
    /// Fields that changed but cannot be applied without a restart.
    pub refused: Vec<&'static str>,
    /// Circles, backends or placement settings changed: the ring and the
    /// backend actors must be rebuilt.
    pub topology: bool,
    /// Delivery settings of backends changed (batching, timeouts, queue
    /// bound): backend actors restart with the new settings.
    pub delivery: bool,
    /// Fields read per request (auth, db_list, limits): swapping the
    /// config is enough.
    pub request: Vec<&'static str>,
    /// The log filter changed.
    pub log_level: bool,
}

impl ConfigDiff {
    /// Compares two valid configs.
    pub fn new(old: &Config, new: &Config) -> ConfigDiff {
        let mut d = ConfigDiff::default();
        macro_rules! changed {
            ($list:expr, $($field:ident),+) => {
                $( if old.$field != new.$field { $list.push(stringify!($field)); } )+
            };
        }
        changed!(
            d.refused,
            listen_addr,
            data_dir,
            https_enabled,
            https_cert,
            https_key,
            tls,
            wal_sync,
            idle_timeout,
            shutdown_timeout
        );
        changed!(
            d.request,
            db_list,
            username,
            password,
            auth_secure,
            ping_auth_enabled,
            pprof_enabled,
            write_tracing,
            query_tracing,
            max_body_bytes,
            max_decompressed_bytes,
            max_line_bytes,
            mlog_dir,
            ha_addrs,
            migrate_cpus,
            migrate_batch
        );
        d.topology = old.circles != new.circles
            || old.hash_key != new.hash_key
            || old.shard_key != new.shard_key
            || old.vnode_size != new.vnode_size;
        d.delivery = old.flush_size != new.flush_size
            || old.flush_time != new.flush_time
            || old.check_interval != new.check_interval
            || old.rewrite_interval != new.rewrite_interval
            || old.write_timeout != new.write_timeout
            || old.write_concurrency != new.write_concurrency
            || old.write_gzip != new.write_gzip
            || old.wal_max_bytes != new.wal_max_bytes
            || old.dead_letter_max_bytes != new.dead_letter_max_bytes;
        d.log_level = old.log_level != new.log_level;
        d
    }

    /// Nothing changed at all.
    pub fn is_empty(&self) -> bool {
        self.refused.is_empty()
            && !self.topology
            && !self.delivery
            && self.request.is_empty()
            && !self.log_level
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Config {
        include_str!("../../packaging/proxy.json").parse().unwrap()
    }

    #[test]
    fn the_same_config_is_an_empty_diff() {
        assert!(ConfigDiff::new(&base(), &base()).is_empty());
    }

    #[test]
    fn socket_and_storage_fields_are_refused_by_name() {
        let mut new = base();
        new.listen_addr = ":9999".into();
        new.data_dir = "/elsewhere".into();
        let d = ConfigDiff::new(&base(), &new);
        assert_eq!(d.refused, vec!["listen_addr", "data_dir"]);
    }

    #[test]
    fn circles_and_delivery_and_request_fields_are_classified() {
        let mut new = base();
        new.circles[0].backends.pop();
        new.flush_size = 5;
        new.db_list = vec!["x".into()];
        new.log_level = "debug".into();
        let d = ConfigDiff::new(&base(), &new);
        assert!(d.topology && d.delivery && d.log_level);
        assert_eq!(d.request, vec!["db_list"]);
        assert!(d.refused.is_empty());
    }
}
