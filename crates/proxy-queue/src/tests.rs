use super::*;
use crate::record::QUEUE_PREFIX;
use proptest::prelude::*;
use std::collections::VecDeque;

fn points<'a>(db: &'a str, lines: &'a [u8]) -> Record<'a> {
    Record::Points {
        db,
        rp: "",
        points: lines.iter().filter(|&&b| b == b'\n').count() as u32,
        lines,
    }
}

fn lines_of(e: &Entry) -> Vec<u8> {
    match e.record().unwrap() {
        Record::Points { lines, .. } => lines.to_vec(),
        Record::Statement { query, .. } => query.as_bytes().to_vec(),
        Record::Shared { .. } => panic!("shared record left unresolved"),
    }
}

#[test]
fn appended_records_are_read_in_order_and_gone_after_ack() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), Durability::Buffered).unwrap();
    let q = wal.queue("a", 1 << 20).unwrap();
    for i in 0..5 {
        let body = format!("m f={i} {i}\n");
        wal.append(&[Append {
            queue: &q,
            record: points("db", body.as_bytes()),
        }])
        .unwrap();
    }
    assert_eq!(q.stats.records.load(Ordering::Relaxed), 5);
    assert_eq!(q.stats.points.load(Ordering::Relaxed), 5);
    let batch = wal.read(&q, 0, 3, u64::MAX).unwrap();
    assert_eq!(batch.len(), 3);
    assert_eq!(lines_of(&batch[0]), b"m f=0 0\n");
    wal.ack(&q, &batch).unwrap();
    let rest = wal.read(&q, 0, 100, u64::MAX).unwrap();
    assert_eq!(rest.len(), 2);
    assert_eq!(lines_of(&rest[0]), b"m f=3 3\n");
    wal.ack(&q, &rest).unwrap();
    assert!(q.is_empty());
    assert_eq!(q.stats.bytes.load(Ordering::Relaxed), 0);
    // What went in stays counted after delivery: the rate in, beside the rate delivered.
    assert_eq!(q.stats.snapshot().appended_points, 5);
}

#[test]
fn one_append_reaches_every_target_queue_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), Durability::Buffered).unwrap();
    let a = wal.queue("a", 1 << 20).unwrap();
    let b = wal.queue("b", 1 << 20).unwrap();
    let seq = wal
        .append(&[
            Append {
                queue: &a,
                record: points("db", b"x f=1\n"),
            },
            Append {
                queue: &b,
                record: points("db", b"y f=1\n"),
            },
        ])
        .unwrap();
    let ra = wal.read(&a, 0, 10, u64::MAX).unwrap();
    let rb = wal.read(&b, 0, 10, u64::MAX).unwrap();
    assert_eq!((ra[0].seq, rb[0].seq), (seq, seq));
    assert_eq!(lines_of(&rb[0]), b"y f=1\n");
}

#[test]
fn a_full_queue_refuses_the_whole_append_and_keeps_what_it_has() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), Durability::Buffered).unwrap();
    let small = wal.queue("small", 40).unwrap();
    let big = wal.queue("big", 1 << 20).unwrap();
    let line = b"m f=1 1\n";
    wal.append(&[Append {
        queue: &small,
        record: points("db", line),
    }])
    .unwrap();
    let err = wal
        .append(&[
            Append {
                queue: &big,
                record: points("db", line),
            },
            Append {
                queue: &small,
                record: points("db", &[b'x'; 64]),
            },
        ])
        .unwrap_err();
    assert!(matches!(err, Error::Full { ref backend, .. } if backend == "small"));
    assert!(err.to_string().contains("full"));
    assert!(big.is_empty(), "nothing of a refused append is stored");
    assert_eq!(small.stats.records.load(Ordering::Relaxed), 1);
}

#[test]
fn queues_and_counters_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let last_seq;
    {
        let wal = Wal::open(dir.path(), Durability::Buffered).unwrap();
        let q = wal.queue("a", 1 << 20).unwrap();
        let other = wal.queue("b", 1 << 20).unwrap();
        for _ in 0..3 {
            wal.append(&[Append {
                queue: &q,
                record: points("db", b"m f=1\nm f=2\n"),
            }])
            .unwrap();
        }
        last_seq = wal
            .append(&[Append {
                queue: &other,
                record: points("db", b"m f=1\n"),
            }])
            .unwrap();
        let first = wal.read(&q, 0, 2, u64::MAX).unwrap();
        wal.ack(&q, &first).unwrap();
    }
    let wal = Wal::open(dir.path(), Durability::Buffered).unwrap();
    let q = wal.queue("a", 1 << 20).unwrap();
    assert_eq!(q.stats.records.load(Ordering::Relaxed), 2);
    assert_eq!(q.stats.points.load(Ordering::Relaxed), 4);
    let next = wal
        .append(&[Append {
            queue: &q,
            record: points("db", b"m f=3\n"),
        }])
        .unwrap();
    assert!(next > last_seq, "sequence numbers never go back");
    let mut names = wal.registered().unwrap();
    names.sort();
    assert_eq!(names, vec!["a", "b"]);
}

#[test]
fn dead_letters_leave_the_queue_and_keep_the_original_record() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), Durability::Buffered).unwrap();
    let q = wal.queue("a", 1 << 20).unwrap();
    wal.append(&[Append {
        queue: &q,
        record: points("db", b"bad\n"),
    }])
    .unwrap();
    wal.append(&[Append {
        queue: &q,
        record: points("db", b"good f=1\n"),
    }])
    .unwrap();
    let first = wal.read(&q, 0, 1, u64::MAX).unwrap();
    wal.dead_letter(&q, &first, 400, "unable to parse 'bad'")
        .unwrap();
    assert_eq!(q.stats.dead_records.load(Ordering::Relaxed), 1);
    assert_eq!(q.stats.dead_points.load(Ordering::Relaxed), 1);
    let rest = wal.read(&q, 0, 10, u64::MAX).unwrap();
    assert_eq!(lines_of(&rest[0]), b"good f=1\n");
    let mut seen = Vec::new();
    wal.dead_letters(&q, |_, d| {
        let rec = record::decode_record(d.value).unwrap();
        seen.push((d.status, d.error.to_string(), rec.points()));
    })
    .unwrap();
    assert_eq!(seen, vec![(400, "unable to parse 'bad'".to_string(), 1)]);
    drop(wal);
    let wal = Wal::open(dir.path(), Durability::Buffered).unwrap();
    let q = wal.queue("a", 1 << 20).unwrap();
    assert_eq!(q.stats.dead_records.load(Ordering::Relaxed), 1);
}

#[test]
fn statements_queue_in_order_with_points() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), Durability::Fsync).unwrap();
    let q = wal.queue("a", 1 << 20).unwrap();
    wal.append(&[Append {
        queue: &q,
        record: points("db", b"m f=1\n"),
    }])
    .unwrap();
    wal.append(&[Append {
        queue: &q,
        record: Record::Statement {
            db: "db",
            query: "DROP MEASUREMENT m",
        },
    }])
    .unwrap();
    let all = wal.read(&q, 0, 100, u64::MAX).unwrap();
    assert!(matches!(all[1].record().unwrap(), Record::Statement { .. }));
}

#[test]
fn concurrent_appends_are_never_skipped_by_a_reader() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Arc::new(Wal::open(dir.path(), Durability::Buffered).unwrap());
    let q = wal.queue("a", 1 << 30).unwrap();
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let (wal, q) = (wal.clone(), q.clone());
            std::thread::spawn(move || {
                for i in 0..500 {
                    let body = format!("m,t={t} f={i}\n");
                    wal.append(&[Append {
                        queue: &q,
                        record: points("db", body.as_bytes()),
                    }])
                    .unwrap();
                }
            })
        })
        .collect();
    let mut got = 0usize;
    let mut last = 0u64;
    while got < 2000 {
        let batch = wal.read(&q, last, 64, u64::MAX).unwrap();
        if let Some(e) = batch.last() {
            last = e.seq;
        }
        got += batch.len();
        wal.ack(&q, &batch).unwrap();
    }
    for w in writers {
        w.join().unwrap();
    }
    assert_eq!(got, 2000);
    assert!(q.is_empty());
}

#[test]
fn two_readers_acknowledging_the_same_records_remove_and_count_them_once() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), Durability::Buffered).unwrap();
    let q = wal.queue("a", 1 << 20).unwrap();
    for _ in 0..3 {
        wal.append(&[Append {
            queue: &q,
            record: points("db", b"m f=1\n"),
        }])
        .unwrap();
    }
    let first = wal.read(&q, 0, 2, u64::MAX).unwrap();
    let second = wal.read(&q, 0, 2, u64::MAX).unwrap();
    wal.ack(&q, &first).unwrap();
    wal.ack(&q, &second).unwrap();
    wal.dead_letter(&q, &second, 400, "late").unwrap();
    assert_eq!(q.stats.records.load(Ordering::Relaxed), 1);
    assert_eq!(q.stats.points.load(Ordering::Relaxed), 1);
    assert_eq!(q.stats.dead_records.load(Ordering::Relaxed), 0);
}

#[derive(Debug, Clone)]
enum Op {
    Append(u8),
    Deliver(u8),
    Dead(u8),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u8..20).prop_map(Op::Append),
        2 => (1u8..5).prop_map(Op::Deliver),
        1 => (1u8..3).prop_map(Op::Dead),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    /// The queue behaves like a FIFO of the appended bodies, across reopens.
    #[test]
    fn queue_matches_a_fifo_model(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), Durability::Buffered).unwrap();
        let mut q = wal.queue("a", u64::MAX).unwrap();
        let mut model: VecDeque<Vec<u8>> = VecDeque::new();
        let mut dead = 0u64;
        let mut n = 0u32;
        for op in ops {
            match op {
                Op::Append(lines) => {
                    let body: Vec<u8> = (0..lines).flat_map(|i| format!("m f={n}{i}\n").into_bytes()).collect();
                    n += 1;
                    wal.append(&[Append { queue: &q, record: points("db", &body) }]).unwrap();
                    model.push_back(body);
                }
                Op::Deliver(k) => {
                    let batch = wal.read(&q, 0, u64::from(k) * 20, u64::MAX).unwrap();
                    for e in &batch {
                        prop_assert_eq!(Some(lines_of(e)), model.pop_front());
                    }
                    wal.ack(&q, &batch).unwrap();
                }
                Op::Dead(k) => {
                    let batch = wal.read(&q, 0, u64::from(k), u64::MAX).unwrap();
                    for e in &batch {
                        prop_assert_eq!(Some(lines_of(e)), model.pop_front());
                    }
                    dead += batch.len() as u64;
                    wal.dead_letter(&q, &batch, 400, "bad").unwrap();
                }
                Op::Reopen => {
                    drop(q);
                    drop(wal);
                    wal = Wal::open(dir.path(), Durability::Buffered).unwrap();
                    q = wal.queue("a", u64::MAX).unwrap();
                }
            }
            prop_assert_eq!(q.stats.records.load(Ordering::Relaxed), model.len() as u64);
            prop_assert_eq!(q.stats.dead_records.load(Ordering::Relaxed), dead);
        }
        let all = wal.read(&q, 0, u64::MAX, u64::MAX).unwrap();
        prop_assert_eq!(all.len(), model.len());
    }
}

#[test]
fn oldest_age_follows_the_oldest_pending_append_group() {
    let stats = QueueStats::default();
    assert_eq!(stats.oldest_age(), Duration::ZERO);
    let t0 = Instant::now().checked_sub(Duration::from_secs(10)).unwrap();
    stats.note_appended(t0, 2);
    stats.note_appended(t0 + Duration::from_millis(500), 1);
    stats.note_appended(t0 + Duration::from_millis(4000), 1);
    stats.records.store(4, Ordering::Relaxed);
    let age = stats.oldest_age();
    assert!(
        age >= Duration::from_secs(10) && age < Duration::from_secs(11),
        "{age:?}"
    );
    // The first group (3 records within one second) goes first.
    stats.note_removed(2);
    stats.records.store(2, Ordering::Relaxed);
    assert!(stats.oldest_age() >= Duration::from_secs(10));
    stats.note_removed(1);
    stats.records.store(1, Ordering::Relaxed);
    let age = stats.oldest_age();
    assert!(
        age >= Duration::from_secs(6) && age < Duration::from_secs(7),
        "{age:?}"
    );
    stats.note_removed(1);
    stats.records.store(0, Ordering::Relaxed);
    assert_eq!(stats.oldest_age(), Duration::ZERO);
    assert!(stats.ages.lock().is_empty());
}

#[test]
fn oldest_age_tracks_appends_acks_dead_letters_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let wal = Wal::open(dir.path(), Durability::Buffered).unwrap();
        let q = wal.queue("a", 1 << 20).unwrap();
        for _ in 0..3 {
            wal.append(&[Append {
                queue: &q,
                record: points("db", b"m f=1\n"),
            }])
            .unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
        assert!(q.stats.oldest_age() >= Duration::from_millis(20));
        let first = wal.read(&q, 0, 1, u64::MAX).unwrap();
        wal.dead_letter(&q, &first, 400, "bad").unwrap();
        let all = wal.read(&q, 0, 100, u64::MAX).unwrap();
        wal.ack(&q, &all[..1]).unwrap();
        assert!(q.stats.oldest_age() > Duration::ZERO);
        assert_eq!(
            q.stats.ages.lock().iter().map(|g| g.records).sum::<u64>(),
            1
        );
        // Leave one record for the reopen.
    }
    let wal = Wal::open(dir.path(), Durability::Buffered).unwrap();
    let q = wal.queue("a", 1 << 20).unwrap();
    assert_eq!(q.stats.records.load(Ordering::Relaxed), 1);
    // Recovered records count as appended at open.
    assert!(q.stats.oldest_age() < Duration::from_secs(5));
    assert_eq!(
        q.stats.ages.lock().iter().map(|g| g.records).sum::<u64>(),
        1
    );
    let rest = wal.read(&q, 0, 100, u64::MAX).unwrap();
    wal.ack(&q, &rest).unwrap();
    assert_eq!(q.stats.oldest_age(), Duration::ZERO);
    assert!(q.stats.ages.lock().is_empty());
}

/// Appends `lines` once, shared by one record per `(queue, spans)`.
fn append_shared(wal: &Wal, lines: &[u8], targets: &[(&Queue, &[(u64, u64)])]) -> u64 {
    let mut value = record::SHARED_VALUE_HEADER.to_vec();
    value.extend_from_slice(lines);
    let encoded: Vec<(Vec<u8>, u64, u64)> = targets
        .iter()
        .map(|(_, spans)| {
            let mut packed = Vec::new();
            record::encode_spans(spans, &mut packed);
            let covered: Vec<u8> = spans
                .iter()
                .flat_map(|&(s, l)| lines[s as usize..(s + l) as usize].to_vec())
                .collect();
            let r = Record::Shared {
                db: "db",
                rp: "",
                points: covered.iter().filter(|&&b| b == b'\n').count() as u32,
                lines: covered.len() as u64,
                sharers: targets.len() as u32,
                spans: &packed,
            };
            let v = record::encode_record(&r);
            let bytes = r.accounted_len(v.len());
            (v, r.points(), bytes)
        })
        .collect();
    let values: Vec<Encoded<'_>> = targets
        .iter()
        .zip(&encoded)
        .map(|((q, _), (value, points, bytes))| Encoded {
            queue: q,
            value,
            points: *points,
            bytes: *bytes,
        })
        .collect();
    wal.append_encoded(&values, Some(&value)).unwrap()
}

const SHARED_LINES: &[u8] = b"a f=1 1\nb f=1 1\na f=2 2\nb f=2 2\n";
/// Lines 1 and 3 of [`SHARED_LINES`], and lines 2 and 4.
const SPANS_A: &[(u64, u64)] = &[(0, 8), (16, 8)];
const SPANS_B: &[(u64, u64)] = &[(8, 8), (24, 8)];

fn shared_value_exists(wal: &Wal, seq: u64) -> bool {
    wal.db()
        .unwrap()
        .get(record::shared_key(seq))
        .unwrap()
        .is_some()
}

#[test]
fn shared_lines_read_back_as_points_and_go_with_their_last_record() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), Durability::Buffered).unwrap();
    let (a, b, c) = (
        wal.queue("a", 1 << 20).unwrap(),
        wal.queue("b", 1 << 20).unwrap(),
        wal.queue("c", 1 << 20).unwrap(),
    );
    let seq = append_shared(
        &wal,
        SHARED_LINES,
        &[(&a, SPANS_A), (&b, SPANS_B), (&c, &[(0, 32)])],
    );
    let expected_bytes = record::encode_record(&points("db", b"a f=1 1\na f=2 2\n")).len();
    assert_eq!(a.stats.bytes.load(Ordering::Relaxed), expected_bytes as u64);
    assert_eq!(a.stats.points.load(Ordering::Relaxed), 2);
    let read_a = wal.read(&a, 0, 100, u64::MAX).unwrap();
    assert_eq!(lines_of(&read_a[0]), b"a f=1 1\na f=2 2\n");
    let read_b = wal.read(&b, 0, 100, u64::MAX).unwrap();
    assert_eq!(lines_of(&read_b[0]), b"b f=1 1\nb f=2 2\n");
    let read_c = wal.read(&c, 0, 100, u64::MAX).unwrap();
    assert_eq!(lines_of(&read_c[0]), SHARED_LINES);
    wal.ack(&a, &read_a).unwrap();
    wal.dead_letter(&b, &read_b, 400, "refused").unwrap();
    assert!(
        shared_value_exists(&wal, seq),
        "c still refers to the lines"
    );
    wal.ack(&c, &read_c).unwrap();
    assert!(!shared_value_exists(&wal, seq));
    assert_eq!(wal.shared_appends(), 0);
    for q in [&a, &b, &c] {
        assert_eq!(q.stats.bytes.load(Ordering::Relaxed), 0, "{}", q.name());
    }
    // The dead letter holds the points themselves, not a reference.
    let mut dead = Vec::new();
    wal.dead_letters(&b, |_, d| dead.push(d.value.to_vec()))
        .unwrap();
    match record::decode_record(&dead[0]).unwrap() {
        Record::Points { lines, .. } => assert_eq!(lines, b"b f=1 1\nb f=2 2\n"),
        other => panic!("dead letter holds {other:?}"),
    }
}

#[test]
fn late_records_are_unshared_once_others_were_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), Durability::Buffered).unwrap();
    let (a, b) = (
        wal.queue("a", 1 << 20).unwrap(),
        wal.queue("b", 1 << 20).unwrap(),
    );
    let seq = append_shared(&wal, SHARED_LINES, &[(&a, SPANS_A), (&b, SPANS_B)]);
    assert_eq!(
        wal.unshare_older_than(Duration::ZERO, 10).unwrap(),
        0,
        "nothing delivered yet: both records still share the lines"
    );
    let read_a = wal.read(&a, 0, 100, u64::MAX).unwrap();
    // b read its record before the unsharing and acknowledges it after.
    let early_b = wal.read(&b, 0, 100, u64::MAX).unwrap();
    wal.ack(&a, &read_a).unwrap();
    let bytes_b = b.stats.bytes.load(Ordering::Relaxed);
    assert_eq!(
        wal.unshare_older_than(Duration::from_secs(3600), 10)
            .unwrap(),
        0,
        "too recent"
    );
    assert_eq!(wal.unshare_older_than(Duration::ZERO, 10).unwrap(), 1);
    assert!(!shared_value_exists(&wal, seq));
    let stored = wal
        .db()
        .unwrap()
        .get(record::key(QUEUE_PREFIX, b.id, seq))
        .unwrap()
        .unwrap();
    assert!(matches!(
        record::decode_record(&stored).unwrap(),
        Record::Points { .. }
    ));
    assert_eq!(b.stats.bytes.load(Ordering::Relaxed), bytes_b);
    let read_b = wal.read(&b, 0, 100, u64::MAX).unwrap();
    assert_eq!(lines_of(&read_b[0]), b"b f=1 1\nb f=2 2\n");
    assert_eq!(read_b[0].value, early_b[0].value);
    wal.ack(&b, &early_b).unwrap();
    assert!(b.is_empty());
    assert_eq!(b.stats.bytes.load(Ordering::Relaxed), 0);
}

#[test]
fn shared_references_are_rebuilt_at_open_and_orphans_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let (seq, orphan);
    {
        let wal = Wal::open(dir.path(), Durability::Buffered).unwrap();
        let (a, b) = (
            wal.queue("a", 1 << 20).unwrap(),
            wal.queue("b", 1 << 20).unwrap(),
        );
        seq = append_shared(&wal, SHARED_LINES, &[(&a, SPANS_A), (&b, SPANS_B)]);
        orphan = seq + 100;
        wal.db()
            .unwrap()
            .put(record::shared_key(orphan), b"\x01x f=1\n")
            .unwrap();
        let read_a = wal.read(&a, 0, 100, u64::MAX).unwrap();
        wal.ack(&a, &read_a).unwrap();
    }
    let wal = Wal::open(dir.path(), Durability::Buffered).unwrap();
    assert!(!shared_value_exists(&wal, orphan));
    assert!(shared_value_exists(&wal, seq));
    assert_eq!(wal.shared_appends(), 1);
    let next = wal.append(&[]).unwrap();
    assert!(next > orphan, "sequence numbers never go back");
    // a was delivered before the restart: b's record is a candidate.
    assert_eq!(wal.unshare_older_than(Duration::ZERO, 10).unwrap(), 1);
    let b = wal.queue("b", 1 << 20).unwrap();
    let read_b = wal.read(&b, 0, 100, u64::MAX).unwrap();
    assert_eq!(lines_of(&read_b[0]), b"b f=1 1\nb f=2 2\n");
}

#[test]
fn a_record_whose_shared_lines_are_missing_is_read_unresolved() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), Durability::Buffered).unwrap();
    let a = wal.queue("a", 1 << 20).unwrap();
    let seq = append_shared(&wal, SHARED_LINES, &[(&a, SPANS_A)]);
    wal.db().unwrap().delete(record::shared_key(seq)).unwrap();
    let read = wal.read(&a, 0, 100, u64::MAX).unwrap();
    assert!(matches!(read[0].record(), Ok(Record::Shared { .. })));
    wal.dead_letter(&a, &read, 0, "shared record whose lines are missing")
        .unwrap();
    assert!(a.is_empty());
    assert_eq!(a.stats.bytes.load(Ordering::Relaxed), 0);
}

#[test]
fn close_closes_the_database_while_other_handles_live_and_later_calls_fail() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Arc::new(Wal::open(dir.path(), Durability::Buffered).unwrap());
    let q = wal.queue("a", 1 << 20).unwrap();
    wal.append_lines(&[&q], "db", "", 1, b"m f=1 1\n").unwrap();
    spawn_maintainer(&wal).unwrap();
    let holder = Arc::clone(&wal);
    let started = Instant::now();
    wal.close(Duration::from_secs(5)).unwrap();
    assert!(
        started.elapsed() < recover::MAINTAIN_EVERY,
        "the maintenance thread is woken, not waited out"
    );
    assert!(
        wal.maintainer.lock().is_none(),
        "the maintenance thread is joined"
    );
    assert!(matches!(
        holder.append_statement(&q, "db", "q"),
        Err(Error::Closed)
    ));
    assert!(matches!(
        holder.reader(q.clone()).read(0, 10, u64::MAX),
        Err(Error::Closed)
    ));
    wal.close(Duration::ZERO).unwrap();
    // RocksDB let go of its lock: the queue opens again, with the record.
    let again = Wal::open(dir.path(), Durability::Buffered).unwrap();
    let q = again.queue("a", 1 << 20).unwrap();
    assert_eq!(q.stats.records.load(Ordering::Acquire), 1);
    drop(holder);
}

#[test]
fn close_waits_for_the_operation_in_progress_and_gives_up_after_its_bound() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), Durability::Buffered).unwrap();
    let in_progress = wal.db().unwrap();
    assert!(matches!(
        wal.close(Duration::from_millis(20)),
        Err(Error::StillInUse(_))
    ));
    drop(in_progress);
    wal.close(Duration::from_millis(20)).unwrap();
}

#[test]
fn a_write_is_stored_once_for_many_queues_and_in_place_for_one() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Arc::new(Wal::open(dir.path(), Durability::Buffered).unwrap());
    let (a, b) = (
        wal.queue("a", 1 << 20).unwrap(),
        wal.queue("b", 1 << 20).unwrap(),
    );
    let body = b"cpu f=1 1\nmem f=1 1\ncpu f=2 2\n";
    let mut lines = WriteLines::reusing(b"old".to_vec(), "db", "rp");
    lines.buffer().extend_from_slice(body);
    let (mut all, mut cpu, empty) = (
        LineSpans::default(),
        LineSpans::default(),
        LineSpans::default(),
    );
    for (start, len) in [(0, 10), (10, 10), (20, 10)] {
        all.push(start, len);
        if start != 10 {
            cpu.push(start, len);
        }
    }
    assert_eq!(wal.append_write(&mut lines, &[(&a, &empty)]).unwrap(), 0);
    assert!(a.is_empty(), "nothing is appended for empty shares");
    wal.append_write(&mut lines, &[(&a, &all), (&b, &empty)])
        .unwrap();
    assert_eq!(wal.shared_appends(), 0, "one receiver: its own record");
    wal.append_write(&mut lines, &[(&a, &all), (&b, &cpu)])
        .unwrap();
    assert_eq!(wal.shared_appends(), 1);
    let read_a = wal.read(&a, 0, 100, u64::MAX).unwrap();
    let read_b = wal.read(&b, 0, 100, u64::MAX).unwrap();
    assert_eq!(lines_of(&read_a[0]), body);
    assert_eq!(lines_of(&read_a[1]), body);
    assert_eq!(lines_of(&read_b[0]), b"cpu f=1 1\ncpu f=2 2\n");
    // A queue is charged the length of the record each entry reads back as.
    for (q, read) in [(&a, &read_a), (&b, &read_b)] {
        let charged: usize = read.iter().map(|e| e.value.len()).sum();
        assert_eq!(q.stats.bytes.load(Ordering::Acquire), charged as u64);
        assert_eq!(
            q.stats.points.load(Ordering::Acquire),
            read.iter()
                .map(|e| e.work().map_or(0, |w| match w {
                    Work::Points { points, .. } => u64::from(points),
                    Work::Statement { .. } => 0,
                }))
                .sum::<u64>()
        );
    }
}

#[test]
fn settle_keeps_the_refused_lines_as_a_points_dead_letter() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Arc::new(Wal::open(dir.path(), Durability::Buffered).unwrap());
    let q = wal.queue("a", 1 << 20).unwrap();
    wal.append_lines(&[&q], "db", "rp", 2, b"good f=1 1\nbad f=1 1\n")
        .unwrap();
    let reader = wal.reader(q.clone());
    let read = reader.read(0, 10, u64::MAX).unwrap();
    let refused = RefusedLines {
        seq: read[0].seq,
        status: 400,
        error: "field type conflict",
        points: 1,
        lines: b"bad f=1 1\n",
    };
    reader.settle(&read, "db", "rp", &[refused]).unwrap();
    assert!(q.is_empty());
    let mut letters = 0;
    wal.dead_letters(&q, |seq, d| {
        letters += 1;
        assert_eq!(
            (seq, d.status, d.error),
            (read[0].seq, 400, "field type conflict")
        );
        let expected = Work::Points {
            db: "db",
            rp: "rp",
            points: 1,
            lines: b"bad f=1 1\n",
        };
        assert_eq!(d.work().unwrap(), expected);
    })
    .unwrap();
    assert_eq!(letters, 1);
    assert_eq!(q.stats.dead_points.load(Ordering::Acquire), 1);
}

#[test]
fn the_free_space_reserve_refuses_appends_but_never_removals() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), Durability::Buffered).unwrap();
    let q = wal.queue("a", 1 << 20).unwrap();
    wal.append_lines(&[&q], "db", "", 1, b"m f=1 1\n").unwrap();
    // More than any disk has free.
    wal.set_min_free_mb(u64::MAX >> 21);
    let refused = wal.append_lines(&[&q], "db", "", 1, b"m f=2 2\n");
    assert!(matches!(refused, Err(Error::LowDisk { .. })), "{refused:?}");
    assert!(refused.unwrap_err().is_temporary());
    assert!(wal.storage_state().low);
    assert_eq!(wal.storage_state().refused_low, 1);
    let read = wal.read(&q, 0, 10, u64::MAX).unwrap();
    assert_eq!(read.len(), 1, "only the append made before the reserve");
    wal.ack(&q, &read).unwrap();
    assert!(q.is_empty(), "acknowledgements are never refused");
    wal.set_min_free_mb(0);
    wal.append_lines(&[&q], "db", "", 1, b"m f=3 3\n").unwrap();
}

/// Storage faults injected at each step of the queue (`--features failpoints`).
#[cfg(feature = "failpoints")]
mod failpoints {
    use std::path::Path;

    use log_rate_limit::RateLimit;

    use super::*;

    /// Failpoints are process-wide: tests that configure them take turns
    /// (each is also scoped to its own queue's directory, so the other
    /// tests running meanwhile are not affected).
    static TURN: Mutex<()> = parking_lot::const_mutex(());

    /// A failpoint failing `step` of the queue at `dir` (`times` times, or
    /// always), removed on drop.
    struct Fault(Step);

    impl Fault {
        fn inject(step: Step, dir: &Path, times: Option<u32>) -> Fault {
            let times = times.map(|n| format!("{n}*")).unwrap_or_default();
            fail::cfg(step.name(), &format!("{times}return({})", dir.display())).unwrap();
            Fault(step)
        }
    }

    impl Drop for Fault {
        fn drop(&mut self) {
            fail::remove(self.0.name());
        }
    }

    fn open() -> (tempfile::TempDir, Arc<Wal>, Queue) {
        let dir = tempfile::tempdir().unwrap();
        let wal = Arc::new(Wal::open(dir.path(), Durability::Buffered).unwrap());
        let q = wal.queue("a", 1 << 20).unwrap();
        (dir, wal, q)
    }

    fn append(wal: &Wal, q: &Queue, i: u32) -> Result<u64> {
        wal.append_lines(&[q], "db", "", 1, format!("m f={i} {i}\n").as_bytes())
    }

    /// What a fresh open of the queue at `dir` holds: (lines queued, dead
    /// letters).
    fn stored(wal: &Wal, dir: &Path) -> (Vec<Vec<u8>>, u64) {
        wal.close(Duration::from_secs(5)).unwrap();
        let again = Wal::open(dir, Durability::Buffered).unwrap();
        let q = again.queue("a", 1 << 20).unwrap();
        let lines = again
            .read(&q, 0, u64::MAX, u64::MAX)
            .unwrap()
            .iter()
            .map(lines_of)
            .collect();
        (lines, q.stats.dead_records.load(Ordering::Acquire))
    }

    fn recover(wal: &Wal) {
        wal.maintain(&RateLimit::new(Duration::ZERO)).unwrap();
        assert_eq!(wal.storage_state().failed, None, "recovered");
    }

    #[test]
    fn a_failed_append_is_refused_whole_and_appends_wait_for_the_recovery() {
        let _turn = TURN.lock();
        let (dir, wal, q) = open();
        append(&wal, &q, 1).unwrap();
        let fault = Fault::inject(Step::Append, dir.path(), None);
        let failed = append(&wal, &q, 2);
        assert!(
            matches!(&failed, Err(e @ Error::Failed { error }) if e.is_temporary() && error.contains("injected")),
            "{failed:?}"
        );
        drop(fault);
        let refused = append(&wal, &q, 3);
        assert!(
            matches!(&refused, Err(e @ Error::Failed { .. }) if e.is_temporary()),
            "refused until the storage recovered: {refused:?}"
        );
        assert_eq!(q.stats.records.load(Ordering::Acquire), 1);
        recover(&wal);
        append(&wal, &q, 4).unwrap();
        let (lines, _) = stored(&wal, dir.path());
        assert_eq!(lines, [b"m f=1 1\n".to_vec(), b"m f=4 4\n".to_vec()]);
    }

    #[test]
    fn a_failed_read_is_retried_and_loses_nothing() {
        let _turn = TURN.lock();
        let (dir, wal, q) = open();
        append(&wal, &q, 1).unwrap();
        let fault = Fault::inject(Step::Read, dir.path(), None);
        assert!(matches!(
            wal.read(&q, 0, 10, u64::MAX),
            Err(Error::Storage(_))
        ));
        // Reading is not writing: appends go on.
        append(&wal, &q, 2).unwrap();
        drop(fault);
        let read = wal.read(&q, 0, 10, u64::MAX).unwrap();
        assert_eq!(read.len(), 2);
    }

    #[test]
    fn acks_that_cannot_be_written_are_kept_and_the_reader_moves_on() {
        let _turn = TURN.lock();
        let (dir, wal, q) = open();
        let other = wal.queue("b", 1 << 20).unwrap();
        for i in 1..=3 {
            append(&wal, &q, i).unwrap();
        }
        let seq = append_shared(&wal, SHARED_LINES, &[(&q, SPANS_A), (&other, SPANS_B)]);
        let fault = Fault::inject(Step::Ack, dir.path(), None);
        let reader = wal.reader(q.clone());
        let first = reader.read(0, 1, u64::MAX).unwrap();
        reader.ack(&first).unwrap();
        // Moved on: a reader from the head (a restarted actor) too.
        let next = reader.read(0, 1, u64::MAX).unwrap();
        assert_eq!(lines_of(&next[0]), b"m f=2 2\n");
        reader.ack(&next).unwrap();
        let state = wal.storage_state();
        assert!(state.failed.is_some(), "{state:?}");
        assert_eq!(state.deferred_records, 2);
        assert!(matches!(append(&wal, &q, 9), Err(Error::Failed { .. })));
        // The shared record's lines stay while its removal is deferred.
        let rest = reader.read(0, 10, u64::MAX).unwrap();
        assert_eq!(rest.len(), 2);
        assert_eq!(lines_of(&rest[1]), b"a f=1 1\na f=2 2\n");
        reader.ack(&rest).unwrap();
        assert!(q.is_empty(), "counted as removed");
        assert!(
            shared_value_exists(&wal, seq),
            "b still refers to the lines"
        );
        drop(fault);
        recover(&wal);
        assert_eq!(wal.storage_state().deferred_records, 0);
        let b = wal.read(&other, 0, 10, u64::MAX).unwrap();
        wal.ack(&other, &b).unwrap();
        assert!(
            !shared_value_exists(&wal, seq),
            "released by the last removal"
        );
        let (lines, _) = stored(&wal, dir.path());
        assert!(lines.is_empty(), "{lines:?}");
    }

    #[test]
    fn a_failed_unsharing_is_tried_again_after_the_recovery() {
        let _turn = TURN.lock();
        let (dir, wal, a) = open();
        let b = wal.queue("b", 1 << 20).unwrap();
        let seq = append_shared(&wal, SHARED_LINES, &[(&a, SPANS_A), (&b, SPANS_B)]);
        let read_a = wal.read(&a, 0, 10, u64::MAX).unwrap();
        wal.ack(&a, &read_a).unwrap();
        let fault = Fault::inject(Step::Unshare, dir.path(), None);
        assert!(wal.unshare_older_than(Duration::ZERO, 10).is_err());
        assert!(wal.storage_state().failed.is_some());
        drop(fault);
        recover(&wal);
        assert_eq!(wal.unshare_older_than(Duration::ZERO, 10).unwrap(), 1);
        assert!(!shared_value_exists(&wal, seq));
        let read_b = wal.read(&b, 0, 10, u64::MAX).unwrap();
        assert_eq!(lines_of(&read_b[0]), b"b f=1 1\nb f=2 2\n");
    }

    #[test]
    fn dead_letters_that_cannot_be_written_wait_in_memory_until_the_recovery() {
        let _turn = TURN.lock();
        let (dir, wal, q) = open();
        append(&wal, &q, 1).unwrap();
        append(&wal, &q, 2).unwrap();
        let fault = Fault::inject(Step::DeadLetter, dir.path(), None);
        let reader = wal.reader(q.clone());
        let first = reader.read(0, 1, u64::MAX).unwrap();
        reader.dead_letter(&first, 400, "refused").unwrap();
        assert_eq!(
            q.stats.dead_records.load(Ordering::Acquire),
            0,
            "not stored yet"
        );
        let second = reader.read(0, 1, u64::MAX).unwrap();
        assert_eq!(lines_of(&second[0]), b"m f=2 2\n", "moved on");
        drop(fault);
        recover(&wal);
        assert_eq!(q.stats.dead_records.load(Ordering::Acquire), 1);
        let (lines, dead) = stored(&wal, dir.path());
        assert_eq!((lines, dead), (vec![b"m f=2 2\n".to_vec()], 1));
    }

    #[test]
    fn storage_that_still_refuses_is_reopened_and_recounted() {
        let _turn = TURN.lock();
        let (dir, wal, q) = open();
        append(&wal, &q, 1).unwrap();
        let ack = Fault::inject(Step::Ack, dir.path(), None);
        let read = wal.read(&q, 0, 10, u64::MAX).unwrap();
        wal.ack(&q, &read).unwrap();
        drop(ack);
        append(&wal, &q, 2).unwrap_err();
        // The probe fails once: the queue is reopened, then recovers.
        let _probe = Fault::inject(Step::Upkeep, dir.path(), Some(1));
        recover(&wal);
        assert_eq!(q.stats.records.load(Ordering::Acquire), 0);
        append(&wal, &q, 3).unwrap();
        assert_eq!(q.stats.records.load(Ordering::Acquire), 1);
        let (lines, _) = stored(&wal, dir.path());
        assert_eq!(lines, [b"m f=3 3\n".to_vec()]);
    }
}

#[test]
fn disk_bytes_count_the_queue_files_and_grow_with_what_it_holds() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), Durability::Buffered).unwrap();
    let q = wal.queue("a", 1 << 30).unwrap();
    let empty = wal.disk_bytes();
    assert!(empty > 0, "RocksDB's own files");
    let body: String = (0..4000)
        .map(|i| format!("m,host=h{i} f={i} {i}\n"))
        .collect();
    wal.append(&[Append {
        queue: &q,
        record: points("db", body.as_bytes()),
    }])
    .unwrap();
    wal.flush().unwrap();
    assert!(
        wal.disk_bytes() >= empty + body.len() as u64 / 2,
        "{} then {}",
        empty,
        wal.disk_bytes()
    );
}
