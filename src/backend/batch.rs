//! Request bodies of one delivery batch, split into lanes by series.
//!
//! # Why lanes
//! InfluxDB takes about 1.5x more points per second when two or more write
//! requests run at once than when they come one by one (216k against 320k
//! points/s with 5,000-point requests on the 2-core bench machine; see
//! `docs/perf.md`). The queue must still reach InfluxDB in order, but the
//! order InfluxDB can observe is per series: two points of one series and
//! timestamp overwrite each other and the later one must win, while points
//! of different series never interact. So a batch is cut by a hash of each
//! line's series key into up to `lanes` bodies that are sent concurrently,
//! and the next batch starts only after every body of this one was
//! answered. Each series still receives its points in queue order, and a
//! batch retried as a whole after a partial failure only re-sends points
//! InfluxDB overwrites with identical values.
//!
//! Statements (DDL, `DELETE`, `DROP`) are batches of their own, so they stay
//! barriers between the writes before and after them.
//!
//! What is no longer ordered: lines of *different* series in one batch. If
//! two of them give one field different types, which one InfluxDB accepts
//! depends on which request it handles first (with one request it was the
//! earlier line); the refused request's records go to the dead letters.

use bytes::Bytes;

use super::client;
use crate::line_protocol;

/// Fewest points worth a request of its own: below this a split costs more
/// in per-request overhead than concurrency gains.
pub(crate) const MIN_LANE_POINTS: u64 = 1_000;

/// One write request of a batch.
#[derive(Debug, Clone)]
pub(crate) struct Body {
    /// Points (lines) in `data`.
    pub points: u64,
    /// Lane of the body's lines (see [`in_lane`]); 0 for an unsplit batch.
    pub lane: usize,
    /// Line protocol, gzip-compressed when the batch was built with gzip.
    pub data: Bytes,
}

/// How many requests a batch of `points` points is cut into: one per
/// [`MIN_LANE_POINTS`], at most `max_lanes`, at least one.
pub(crate) fn lane_count(points: u64, max_lanes: usize) -> usize {
    let wanted = points.div_ceil(MIN_LANE_POINTS);
    usize::try_from(wanted)
        .unwrap_or(usize::MAX)
        .clamp(1, max_lanes.max(1))
}

/// Builds the request bodies of one batch. `parts` are the batch's records'
/// lines (newline-terminated line protocol) holding `points` points in all.
/// Empty lanes are left out, so every body carries at least one point.
pub(crate) fn bodies(parts: &[&[u8]], points: u64, max_lanes: usize, gzip: bool) -> Vec<Body> {
    let lanes = lane_count(points, max_lanes);
    if lanes == 1 {
        return vec![Body {
            points,
            lane: 0,
            data: encode(parts, gzip),
        }];
    }
    split(parts, lanes)
        .into_iter()
        .enumerate()
        .filter(|(_, (_, n))| *n > 0)
        .map(|(lane, (lines, n))| Body {
            points: n,
            lane,
            data: encode(&[&lines], gzip),
        })
        .collect()
}

/// Whether `line` went to body `lane` of a batch of `points` points cut
/// by [`bodies`] with `max_lanes`: finds a refused body's lines again.
pub(crate) fn in_lane(line: &[u8], points: u64, max_lanes: usize, lane: usize) -> bool {
    let lanes = lane_count(points, max_lanes);
    lanes == 1 || lane_of(line, lanes) == lane
}

/// Distributes lines over `lanes` buffers by series; returns each buffer
/// with its line count.
fn split(parts: &[&[u8]], lanes: usize) -> Vec<(Vec<u8>, u64)> {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let mut out: Vec<(Vec<u8>, u64)> = (0..lanes)
        .map(|_| {
            (
                Vec::with_capacity(total / lanes + total / (4 * lanes) + 64),
                0,
            )
        })
        .collect();
    for part in parts {
        for line in line_protocol::lines(part) {
            let (buf, n) = &mut out[lane_of(line, lanes)];
            buf.extend_from_slice(line);
            buf.push(b'\n');
            *n += 1;
        }
    }
    out
}

/// Lane of a line: by its series, tag order aside ([`line_protocol::series_hash`]).
fn lane_of(line: &[u8], lanes: usize) -> usize {
    // `lanes` is small; the remainder of a u64 by it fits in usize.
    (line_protocol::series_hash(line) % lanes as u64) as usize
}

/// One request body from `parts`.
fn encode(parts: &[&[u8]], gzip: bool) -> Bytes {
    if gzip {
        return client::gzip(parts);
    }
    match parts {
        [one] => Bytes::copy_from_slice(one),
        _ => Bytes::from(parts.concat()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::io::Read;

    fn plain(body: &Body) -> String {
        String::from_utf8(body.data.to_vec()).unwrap()
    }

    fn gunzip(body: &Body) -> String {
        let mut s = String::new();
        flate2::read::GzDecoder::new(&body.data[..])
            .read_to_string(&mut s)
            .unwrap();
        s
    }

    /// 2 records, `series` series, `per_series` points each, interleaved.
    fn records(series: usize, per_series: usize) -> (Vec<Vec<u8>>, u64) {
        let mut recs = vec![Vec::new(), Vec::new()];
        let mut n = 0;
        for t in 0..per_series {
            for s in 0..series {
                let line = format!("m,host=h{s} v={t}i {t}\n");
                recs[t * 2 / per_series].extend_from_slice(line.as_bytes());
                n += 1;
            }
        }
        (recs, n)
    }

    #[test]
    fn one_series_stays_in_one_lane_whatever_its_tag_order() {
        let mut body = String::new();
        for host in 0..2_000 {
            body += &format!("cpu,host=h{host},dc=x f=1 1\ncpu,dc=x,host=h{host} f=2 1\n");
        }
        let bodies = bodies(&[body.as_bytes()], 4_000, 4, false);
        assert_eq!(bodies.len(), 4);
        for b in &bodies {
            let text = std::str::from_utf8(&b.data).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines.len() % 2, 0);
            for pair in lines.chunks(2) {
                // The later point (f=2) still follows the earlier one of its series.
                assert!(
                    pair[0].ends_with("f=1 1") && pair[1].ends_with("f=2 1"),
                    "{pair:?}"
                );
            }
        }
    }

    #[test]
    fn lane_count_grows_with_points_up_to_the_limit() {
        assert_eq!(lane_count(0, 4), 1);
        assert_eq!(lane_count(1, 4), 1);
        assert_eq!(lane_count(MIN_LANE_POINTS, 4), 1);
        assert_eq!(lane_count(MIN_LANE_POINTS + 1, 4), 2);
        assert_eq!(lane_count(10_000, 4), 4);
        assert_eq!(lane_count(10_000, 1), 1);
        assert_eq!(lane_count(10_000, 0), 1);
        assert_eq!(lane_count(u64::MAX, 8), 8);
    }

    #[test]
    fn small_batch_is_one_body_of_all_parts() {
        let parts: [&[u8]; 2] = [b"a v=1 1\n", b"b v=2 2\n"];
        let b = bodies(&parts, 2, 4, false);
        assert_eq!(b.len(), 1);
        assert_eq!(
            (b[0].points, plain(&b[0]).as_str()),
            (2, "a v=1 1\nb v=2 2\n")
        );
        let z = bodies(&parts, 2, 4, true);
        assert_eq!(gunzip(&z[0]), "a v=1 1\nb v=2 2\n");
    }

    #[test]
    fn split_keeps_every_line_once_and_each_series_in_order_in_one_lane() {
        let (recs, n) = records(50, 100);
        let parts: Vec<&[u8]> = recs.iter().map(Vec::as_slice).collect();
        for gzip in [false, true] {
            let out = bodies(&parts, n, 4, gzip);
            assert_eq!(out.len(), 4, "5,000 points over 50 series fill 4 lanes");
            let mut lane_of_series: HashMap<String, usize> = HashMap::new();
            let mut total = 0;
            for (lane, body) in out.iter().enumerate() {
                let text = if gzip { gunzip(body) } else { plain(body) };
                let lines: Vec<&str> = text.lines().collect();
                assert_eq!(lines.len() as u64, body.points);
                total += body.points;
                let mut last_t: HashMap<&str, i64> = HashMap::new();
                for line in lines {
                    let (key, rest) = line.split_once(' ').unwrap();
                    let t: i64 = rest.rsplit(' ').next().unwrap().parse().unwrap();
                    assert_eq!(*lane_of_series.entry(key.to_string()).or_insert(lane), lane);
                    if let Some(prev) = last_t.insert(key, t) {
                        assert!(t > prev, "{key}: {t} after {prev}");
                    }
                }
            }
            assert_eq!(total, n);
        }
    }

    #[test]
    fn lines_with_quoted_newlines_stay_whole() {
        let mut body = Vec::new();
        for i in 0..3_000 {
            body.extend_from_slice(format!("m,k=k{i} s=\"a\nb c\" {i}\n").as_bytes());
        }
        let out = bodies(&[&body], 3_000, 3, false);
        let lines: u64 = out.iter().map(|b| b.points).sum();
        assert_eq!(lines, 3_000);
        for b in &out {
            let text = plain(b);
            assert_eq!(text.matches("\"a\nb c\"").count() as u64, b.points);
        }
    }

    #[test]
    fn in_lane_finds_each_bodys_lines_again() {
        let (recs, n) = records(50, 100);
        let parts: Vec<&[u8]> = recs.iter().map(Vec::as_slice).collect();
        for body in bodies(&parts, n, 4, false) {
            let mut again = Vec::new();
            for part in &parts {
                for line in line_protocol::lines(part) {
                    if in_lane(line, n, 4, body.lane) {
                        again.extend_from_slice(line);
                        again.push(b'\n');
                    }
                }
            }
            assert_eq!(plain(&body), String::from_utf8(again).unwrap());
        }
        let small: [&[u8]; 1] = [b"a v=1 1\n"];
        assert!(in_lane(b"a v=1 1", 1, 4, 0));
        assert_eq!(bodies(&small, 1, 4, false)[0].lane, 0);
    }

    #[test]
    fn lane_choice_is_stable() {
        assert_eq!(lane_of(b"cpu,host=a", 4), lane_of(b"cpu,host=a", 4));
        assert!(lane_of(b"anything", 1) == 0);
    }
}
