//! A listener against a real cluster (its write-ahead queue in a temp dir, backends that never
//! take a write): what reaches the queue, and what is dropped when memory or the writer runs
//! short. The integration tests (`tests/it/udp.rs`) cover the rest against real influxd.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::counters::Dropped;
use super::receive::{Listener, Unstarted};
use super::Ingest;
use crate::cluster::Cluster;
use crate::config::{Config, UdpConfig};
use crate::memory::Admission;
use crate::wal::{self, Wal};

struct TestIngest {
    config: Arc<Config>,
    cluster: Arc<Cluster>,
    admission: Admission,
    /// Writes wait (on the flush thread) until this is true.
    open: AtomicBool,
    /// Writes begun.
    writes: AtomicUsize,
}

impl TestIngest {
    fn new(config: Arc<Config>, cluster: &Arc<Cluster>, admission: Admission) -> TestIngest {
        TestIngest {
            config,
            cluster: Arc::clone(cluster),
            admission,
            open: AtomicBool::new(true),
            writes: AtomicUsize::new(0),
        }
    }
}

impl Ingest for TestIngest {
    fn config(&self) -> Arc<Config> {
        Arc::clone(&self.config)
    }

    fn cluster(&self) -> Arc<Cluster> {
        self.writes.fetch_add(1, Ordering::AcqRel);
        while !self.open.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(5));
        }
        Arc::clone(&self.cluster)
    }

    fn admission(&self) -> &Admission {
        &self.admission
    }
}

/// A cluster of one backend at `url`, and its queue's directory.
fn cluster(url: &str, extra: &str) -> (Arc<Config>, Arc<Cluster>, Arc<Wal>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::from_str(&format!(
        r#"{{"circles": [{{"name": "c", "backends": [{{"name": "a", "url": "{url}"}}]}}] {extra}}}"#
    ))
    .unwrap();
    let wal = Arc::new(Wal::open(dir.path(), wal::Durability::Buffered).unwrap());
    let cluster = Arc::new(Cluster::start(&config, Arc::clone(&wal)).unwrap());
    (Arc::new(config), cluster, wal, dir)
}

fn settings(batch_size: usize, batch_pending: usize) -> UdpConfig {
    UdpConfig {
        bind_addr: "127.0.0.1:0".into(),
        enabled: true,
        database: "db".into(),
        retention_policy: String::new(),
        precision: Default::default(),
        read_buffer: 0,
        batch_size,
        batch_timeout: Duration::from_secs(3600),
        batch_pending,
    }
}

fn start(source: &Arc<dyn Ingest>, settings: UdpConfig) -> (Listener, SocketAddr) {
    let unstarted = Unstarted::bind("127.0.0.1:0".parse().unwrap(), 0).unwrap();
    let listener = unstarted.start(settings, Arc::clone(source));
    let addr = listener.label.parse().unwrap();
    (listener, addr)
}

/// Polls `done` for up to 10 s.
async fn eventually(mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..1000 {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[actix_rt::test]
async fn datagrams_become_lines_of_one_write_and_memory_or_size_drops_are_counted() {
    let (config, cluster, wal, _dir) = cluster("http://127.0.0.1:1", r#", "max_body_bytes": 4096"#);
    let admission = Admission::new(256 << 10);
    // The share is nearly all taken (by bodies being written over HTTP, say).
    let held = admission.try_admit((256 << 10) - (4 << 10)).unwrap();
    let source: Arc<dyn Ingest> = Arc::new(TestIngest::new(config, &cluster, admission.clone()));
    let (mut listener, addr) = start(&source, settings(1000, 10));
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let send = |data: &[u8]| {
        sender.send_to(data, addr).unwrap();
    };
    let read = || listener.counters.datagrams.get();

    // 2,000 bytes are charged three times over: more than the 4 KiB left.
    send(format!("m v=0,pad=\"{}\" 1", "x".repeat(1980)).as_bytes());
    // No final newline: the next datagram must not run into it.
    send(b"m v=1 1");
    assert!(eventually(|| read() == 2).await);
    drop(held);
    send(b"m v=2 2\n");
    // Larger than max_body_bytes: no batch may hold it.
    send("x".repeat(5000).as_bytes());
    assert!(eventually(|| read() == 4).await);
    let dropped = |why| listener.counters.dropped_so_far(why);
    assert_eq!(
        (dropped(Dropped::Memory), dropped(Dropped::TooLarge)),
        (1, 1)
    );
    assert!(admission.in_use_bytes() > 0, "the batch is charged");

    // Stopping writes the batch; its charge is given back.
    let flushed = listener.stop().unwrap();
    tokio::time::timeout(Duration::from_secs(30), flushed)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(admission.in_use_bytes(), 0);
    let backend = cluster.backends().next().unwrap();
    let entries = wal
        .reader(backend.backend.queue.clone())
        .read(0, u64::MAX, u64::MAX)
        .unwrap();
    let lines: Vec<u8> = entries
        .iter()
        .flat_map(|e| match e.work().unwrap() {
            wal::Work::Points { lines, .. } => lines.to_vec(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(String::from_utf8(lines).unwrap(), "m v=1 1\nm v=2 2\n");
    cluster.stop();
}

#[actix_rt::test]
async fn datagrams_beyond_batch_pending_are_dropped_while_a_write_waits() {
    let (config, cluster, _wal, _dir) = cluster("http://127.0.0.1:1", "");
    let source = Arc::new(TestIngest::new(config, &cluster, Admission::new(1 << 20)));
    source.open.store(false, Ordering::Release);
    let dyn_source: Arc<dyn Ingest> = source.clone();
    // Every datagram is a batch (batch_size 1); one may wait for the writer (batch_pending 1).
    let (listener, addr) = start(&dyn_source, settings(1, 1));
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let send = |i: usize| {
        sender
            .send_to(format!("m v={i} {i}").as_bytes(), addr)
            .unwrap();
    };
    send(0);
    assert!(eventually(|| source.writes.load(Ordering::Acquire) == 1).await);
    // The first batch is being written (and waits); the second waits for the writer, the third
    // for room among the waiting ones; the others are dropped.
    for i in 1..6 {
        send(i);
    }
    let read = || listener.counters.datagrams.get();
    assert!(eventually(|| read() == 6).await);
    let dropped = |why| listener.counters.dropped_so_far(why);
    assert_eq!(dropped(Dropped::Pending), 3);
    source.open.store(true, Ordering::Release);
    // The waiting ones are written once the writer is free again.
    assert!(eventually(|| source.writes.load(Ordering::Acquire) == 3).await);
    assert_eq!(dropped(Dropped::Pending), 3);
    cluster.stop();
}
