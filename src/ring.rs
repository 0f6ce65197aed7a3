//! Consistent hash ring that places a (database, measurement) pair on one backend of a circle.
//!
//! Placement must match the Go proxy (chengshiwen/influx-proxy v2, which uses
//! `stathat.com/c/consistent` v1.0.0) bit for bit: data written by either proxy must be found by
//! the other, and an operator switching implementations must not have to rebalance. The rules
//! (reference spec §4):
//!
//! * every backend gets a *node key* from the `hash_key` setting ([`HashKey`]);
//! * for each backend in config order and each replica `r` in `0..replicas`, the virtual node
//!   `decimal(r) ++ node_key` is hashed with CRC-32/IEEE; a later insert with the same hash
//!   overwrites the earlier one (so with `hash_key: idx` and more than ten backends, backend 0
//!   loses some points to backend 10, exactly like the Go code);
//! * when two backends share a node key, the later backend owns all of that key's points;
//! * a shard key ([`ShardKey`]) is looked up by taking the first ring point strictly greater than
//!   its CRC-32, wrapping around to the smallest point.
//!
//! Invariants: a [`Ring`] is immutable once built (a config change builds a new one and swaps it
//! in), its points are sorted and distinct, and every point names a backend index smaller than
//! the number of node keys it was built from. The module does no I/O and never panics.

use std::collections::HashMap;

/// Virtual nodes per backend. The Go proxy fixed this at 256 from v2.5.2 on (`vnode_size` was
/// configurable before), so anything else changes placement.
pub const DEFAULT_REPLICAS: usize = 256;

/// How a backend's node key is derived (config field `hash_key`).
///
/// The node key, not the backend's position, is what the ring hashes; choosing `name` or `url`
/// lets operators reorder backends without moving data, while `idx`/`exi` survive renames.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum HashKey {
    /// Decimal position in the circle: `"0"`, `"1"`, … (the Go default). Virtual-node strings
    /// collide from the 11th backend on (`"1" ++ "10"` == `"11" ++ "0"`).
    #[default]
    Idx,
    /// `"|"` followed by the decimal position; the separator avoids the `idx` collisions.
    Exi,
    /// The backend's configured `name`.
    Name,
    /// The backend's configured `url`, verbatim.
    Url,
    /// A template in which every `%idx` is replaced by the decimal position.
    Template(String),
}

impl HashKey {
    /// Parses the `hash_key` config value: `idx`, `exi`, `name`, `url`, or any string containing
    /// `%idx`. The error text is the Go proxy's, so operators see the same message.
    pub fn parse(s: &str) -> Result<HashKey, String> {
        match s {
            "idx" => Ok(HashKey::Idx),
            "exi" => Ok(HashKey::Exi),
            "name" => Ok(HashKey::Name),
            "url" => Ok(HashKey::Url),
            _ if s.contains("%idx") => Ok(HashKey::Template(s.to_owned())),
            _ => Err(
                "invalid hash_key, require idx, exi, name, url or template containing %idx"
                    .to_owned(),
            ),
        }
    }

    /// Node key of the backend at position `idx` (0-based, config order) with the given `name`
    /// and `url`.
    pub fn node_key(&self, idx: usize, name: &str, url: &str) -> String {
        match self {
            HashKey::Idx => idx.to_string(),
            HashKey::Exi => format!("|{idx}"),
            HashKey::Name => name.to_owned(),
            HashKey::Url => url.to_owned(),
            HashKey::Template(template) => template.replace("%idx", &idx.to_string()),
        }
    }
}

/// One piece of a pre-split shard key template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Db,
    Measurement,
}

/// Shard key template (config `shard_key`, default `"%db,%mm"`).
///
/// The template is split once at parse time so that building a key on the write hot path is a
/// few `push_str` calls into a reused buffer. There is deliberately no escaping: with the default
/// template `db="a,b", mm="c"` and `db="a", mm="b,c"` share a key, as they do in the Go proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardKey {
    parts: Vec<Part>,
}

impl ShardKey {
    /// Parses a template, scanning left to right and taking the leftmost non-overlapping `%db`
    /// or `%mm` at each position (the semantics of Go's `strings.NewReplacer`). A template that
    /// contains neither could only ever produce one key, which the Go proxy rejects.
    pub fn parse(template: &str) -> Result<ShardKey, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = template;
        let mut has_placeholder = false;
        while let Some(c) = rest.chars().next() {
            let placeholder = if rest.starts_with("%db") {
                Some(Part::Db)
            } else if rest.starts_with("%mm") {
                Some(Part::Measurement)
            } else {
                None
            };
            match placeholder {
                Some(part) => {
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(part);
                    has_placeholder = true;
                    rest = &rest[3..];
                }
                None => {
                    literal.push(c);
                    rest = &rest[c.len_utf8()..];
                }
            }
        }
        if !has_placeholder {
            return Err("invalid shard_key, require template containing %db or %mm".to_owned());
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(ShardKey { parts })
    }

    /// Writes the shard key for (`db`, `mm`) into `out`, which is cleared first; reusing `out`
    /// keeps the per-line write path free of allocations.
    pub fn build_into(&self, db: &str, mm: &str, out: &mut String) {
        out.clear();
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Db => out.push_str(db),
                Part::Measurement => out.push_str(mm),
            }
        }
    }

    /// Returns the shard key for (`db`, `mm`).
    pub fn build(&self, db: &str, mm: &str) -> String {
        let mut out = String::with_capacity(db.len() + mm.len() + 8);
        self.build_into(db, mm, &mut out);
        out
    }
}

impl Default for ShardKey {
    /// The Go default `"%db,%mm"`.
    fn default() -> ShardKey {
        ShardKey {
            parts: vec![Part::Db, Part::Literal(",".to_owned()), Part::Measurement],
        }
    }
}

/// Immutable consistent hash ring over the backends of one circle.
///
/// Built once from the node keys and replaced (never mutated) when the config changes, so it can
/// be shared behind an `Arc` without locking.
#[derive(Debug, Clone)]
pub struct Ring {
    /// Ring points sorted by hash, each with the index of the backend that owns it. Hashes are
    /// distinct.
    points: Vec<(u32, usize)>,
}

impl Ring {
    /// Builds the ring; `node_keys[i]` is the node key of backend `i` and `replicas` the number
    /// of virtual nodes per backend ([`DEFAULT_REPLICAS`] for Go compatibility).
    pub fn new(node_keys: &[String], replicas: usize) -> Ring {
        // A node key shared by several backends belongs to the last of them (Go map overwrite).
        let mut owner_of_key: HashMap<&str, usize> = HashMap::with_capacity(node_keys.len());
        for (idx, key) in node_keys.iter().enumerate() {
            owner_of_key.insert(key.as_str(), idx);
        }

        // hash -> node key; later inserts overwrite earlier ones, as in the Go circle map.
        let mut key_at_hash: HashMap<u32, &str> =
            HashMap::with_capacity(node_keys.len() * replicas);
        let mut vnode = String::new();
        for key in node_keys {
            for replica in 0..replicas {
                vnode.clear();
                push_decimal(&mut vnode, replica);
                vnode.push_str(key);
                key_at_hash.insert(crc32fast::hash(vnode.as_bytes()), key.as_str());
            }
        }

        let mut points: Vec<(u32, usize)> = key_at_hash
            .into_iter()
            .map(|(hash, key)| (hash, owner_of_key.get(key).copied().unwrap_or(0)))
            .collect();
        points.sort_unstable_by_key(|&(hash, _)| hash);
        Ring { points }
    }

    /// Index of the backend that owns `shard_key` (the bytes of the UTF-8 shard key string).
    ///
    /// An empty ring (no backends or zero replicas) returns 0; callers never build one because
    /// config validation requires at least one backend per circle.
    pub fn get(&self, shard_key: &[u8]) -> usize {
        let hash = crc32fast::hash(shard_key);
        let next = self.points.partition_point(|&(point, _)| point <= hash);
        self.points
            .get(next)
            .or_else(|| self.points.first())
            .map_or(0, |&(_, backend)| backend)
    }

    /// Number of distinct points on the ring.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// True when the ring has no points, i.e. it was built from no backends.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }
}

/// Appends `n` in decimal without going through `fmt` (this runs 256 times per backend).
fn push_decimal(out: &mut String, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        // `n % 10` is below 10, so the cast cannot truncate.
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &digit in &digits[start..] {
        out.push(char::from(digit));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Node keys of `n` backends, named and addressed like the spec's single-circle vectors.
    fn single_circle_keys(hash_key: &HashKey, n: usize) -> Vec<String> {
        (0..n)
            .map(|i| {
                let name = format!("influxdb-{i}");
                let url = format!("http://127.0.0.1:{}", 8086 + i);
                hash_key.node_key(i, &name, &url)
            })
            .collect()
    }

    /// The straightforward reading of the Go code: an ordered map of hash -> node key with
    /// overwrite, a node-key -> backend map with overwrite, and a linear scan for the lookup.
    struct NaiveRing {
        circle: std::collections::BTreeMap<u32, String>,
        members: HashMap<String, usize>,
    }

    impl NaiveRing {
        fn new(node_keys: &[String], replicas: usize) -> NaiveRing {
            let mut circle = std::collections::BTreeMap::new();
            for key in node_keys {
                for r in 0..replicas {
                    circle.insert(crc32fast::hash(format!("{r}{key}").as_bytes()), key.clone());
                }
            }
            let mut members = HashMap::new();
            for (i, key) in node_keys.iter().enumerate() {
                members.insert(key.clone(), i);
            }
            NaiveRing { circle, members }
        }

        fn owner(&self, shard_key: &[u8]) -> usize {
            let hash = crc32fast::hash(shard_key);
            let (_, key) = self
                .circle
                .iter()
                .find(|(&point, _)| point > hash)
                .or_else(|| self.circle.iter().next())
                .unwrap();
            self.members[key]
        }
    }

    fn all_hash_keys() -> Vec<HashKey> {
        vec![
            HashKey::Idx,
            HashKey::Exi,
            HashKey::Name,
            HashKey::Url,
            HashKey::Template("backend-%idx".to_owned()),
        ]
    }

    #[test]
    fn crc32_matches_the_go_checksum_ieee_vectors() {
        assert_eq!(crc32fast::hash(b"db1,cpu"), 2496467285);
        assert_eq!(crc32fast::hash(b"00"), 3091600544);
        assert_eq!(crc32fast::hash(b"2551"), 2854816449);
    }

    #[test]
    fn two_idx_backends_make_512_points_with_the_expected_extremes() {
        let ring = Ring::new(&["0".to_owned(), "1".to_owned()], DEFAULT_REPLICAS);
        assert_eq!(ring.len(), 512);
        assert!(!ring.is_empty());
        assert_eq!(ring.points.first(), Some(&(5736230, 1)));
        assert_eq!(ring.points.last(), Some(&(4293609826, 0)));
        let after = ring.points.partition_point(|&(p, _)| p <= 2496467285);
        assert_eq!(ring.points[after - 1], (2495110704, 1));
        assert_eq!(ring.points[after], (2506490956, 0));
        assert_eq!(ring.get(b"db1,cpu"), 0);
    }

    #[test]
    fn config_a_places_every_vector_like_the_go_proxy() {
        // (db, mm, [owner in circle-1 | circle-2 for idx, name, url, exi, backend-%idx]),
        // owners written as "1-1" etc. exactly as in spec §4.4.
        let table: &[(&str, &str, [&str; 5])] = &[
            (
                "db1",
                "cpu",
                ["1-1|2-1", "1-2|2-2", "1-1|2-1", "1-1|2-1", "1-2|2-2"],
            ),
            (
                "db1",
                "mem",
                ["1-2|2-2", "1-2|2-1", "1-2|2-2", "1-2|2-2", "1-2|2-2"],
            ),
            (
                "db1",
                "disk",
                ["1-1|2-1", "1-2|2-2", "1-1|2-1", "1-1|2-1", "1-2|2-2"],
            ),
            (
                "db1",
                "net",
                ["1-1|2-1", "1-1|2-1", "1-1|2-2", "1-1|2-1", "1-2|2-2"],
            ),
            (
                "db1",
                "cpu1",
                ["1-2|2-2", "1-1|2-2", "1-1|2-2", "1-2|2-2", "1-1|2-1"],
            ),
            (
                "db1",
                "cpu2",
                ["1-2|2-2", "1-2|2-1", "1-1|2-1", "1-2|2-2", "1-1|2-1"],
            ),
            (
                "db2",
                "cpu3",
                ["1-2|2-2", "1-1|2-2", "1-1|2-2", "1-2|2-2", "1-1|2-1"],
            ),
            (
                "db2",
                "cpu4",
                ["1-1|2-1", "1-1|2-2", "1-2|2-1", "1-2|2-2", "1-2|2-2"],
            ),
            (
                "telegraf",
                "cpu",
                ["1-1|2-1", "1-2|2-2", "1-1|2-2", "1-1|2-1", "1-2|2-2"],
            ),
            (
                "telegraf",
                "mem",
                ["1-2|2-2", "1-1|2-2", "1-1|2-2", "1-2|2-2", "1-1|2-1"],
            ),
            (
                "telegraf",
                "disk",
                ["1-1|2-1", "1-2|2-2", "1-2|2-2", "1-2|2-2", "1-2|2-2"],
            ),
            (
                "mydb",
                "cpu.load",
                ["1-2|2-2", "1-1|2-2", "1-2|2-1", "1-1|2-1", "1-2|2-2"],
            ),
            (
                "db1",
                "measurement with spaces, commas and 'quotes'",
                ["1-1|2-1", "1-1|2-2", "1-1|2-2", "1-1|2-1", "1-1|2-1"],
            ),
        ];
        let hash_keys = [
            HashKey::Idx,
            HashKey::Name,
            HashKey::Url,
            HashKey::Exi,
            HashKey::Template("backend-%idx".to_owned()),
        ];
        let circles = [(1, 8086), (2, 8088)];
        let shard_key = ShardKey::default();
        for (column, hash_key) in hash_keys.iter().enumerate() {
            let rings: Vec<Ring> = circles
                .iter()
                .map(|&(circle, port)| {
                    let keys: Vec<String> = (0..2)
                        .map(|i| {
                            let name = format!("influxdb-{circle}-{}", i + 1);
                            let url = format!("http://127.0.0.1:{}", port + i);
                            hash_key.node_key(i, &name, &url)
                        })
                        .collect();
                    Ring::new(&keys, DEFAULT_REPLICAS)
                })
                .collect();
            for (db, mm, expected) in table {
                let key = shard_key.build(db, mm);
                let got = format!(
                    "1-{}|2-{}",
                    rings[0].get(key.as_bytes()) + 1,
                    rings[1].get(key.as_bytes()) + 1
                );
                assert_eq!(got, expected[column], "{hash_key:?} {db},{mm}");
            }
        }
    }

    #[test]
    fn single_circle_vectors_match_the_go_proxy() {
        // (hash_key, shard_key, backends, db, mm, expected shard key string, owner)
        let table: &[(&str, &str, usize, &str, &str, &str, usize)] = &[
            ("idx", "%db,%mm", 4, "telegraf", "cpu", "telegraf,cpu", 0),
            ("idx", "%db,%mm", 4, "telegraf", "mem", "telegraf,mem", 2),
            ("idx", "%db,%mm", 4, "db1", "h2o_feet", "db1,h2o_feet", 2),
            ("exi", "%db,%mm", 4, "telegraf", "mem", "telegraf,mem", 1),
            ("name", "%db,%mm", 4, "telegraf", "cpu", "telegraf,cpu", 1),
            ("url", "%db,%mm", 4, "telegraf", "cpu", "telegraf,cpu", 0),
            (
                "backend-%idx",
                "shard-%db-%mm",
                6,
                "db1",
                "cpu1",
                "shard-db1-cpu1",
                3,
            ),
            (
                "backend-%idx",
                "shard-%db-%mm",
                6,
                "db1",
                "cpu2",
                "shard-db1-cpu2",
                4,
            ),
            (
                "backend-%idx",
                "shard-%db-%mm",
                6,
                "db2",
                "cpu3",
                "shard-db2-cpu3",
                4,
            ),
            ("idx", "%mm", 3, "anydb", "cpu", "cpu", 1),
            (
                "idx",
                "%db,%mm",
                3,
                "db",
                "measurement with spaces",
                "db,measurement with spaces",
                2,
            ),
            ("idx", "%db,%mm", 3, "数据库", "温度", "数据库,温度", 2),
            ("idx", "%db,%mm", 12, "telegraf", "cpu", "telegraf,cpu", 10),
            ("exi", "%db,%mm", 12, "telegraf", "cpu", "telegraf,cpu", 11),
        ];
        for &(hash_key, template, n, db, mm, expected_key, owner) in table {
            let hash_key = HashKey::parse(hash_key).unwrap();
            let shard_key = ShardKey::parse(template).unwrap();
            let key = shard_key.build(db, mm);
            assert_eq!(key, expected_key);
            let ring = Ring::new(&single_circle_keys(&hash_key, n), DEFAULT_REPLICAS);
            assert_eq!(
                ring.get(key.as_bytes()),
                owner,
                "{hash_key:?} {template} n={n} {key}"
            );
        }
    }

    #[test]
    fn later_backend_wins_a_vnode_collision() {
        // "11" ++ "0" and "1" ++ "10" are the same string: backend 10 takes the point.
        let ring = Ring::new(&single_circle_keys(&HashKey::Idx, 11), DEFAULT_REPLICAS);
        let collided = crc32fast::hash(b"110");
        let at = ring
            .points
            .binary_search_by_key(&collided, |&(p, _)| p)
            .unwrap();
        assert_eq!(ring.points[at].1, 10);
        let owned_by_0 = ring.points.iter().filter(|&&(_, b)| b == 0).count();
        assert_eq!(owned_by_0, 231);
        assert_eq!(ring.len(), 11 * 256 - 25);
    }

    #[test]
    fn later_backend_wins_a_shared_node_key() {
        let keys = vec!["http://a".to_owned(), "http://a".to_owned()];
        let ring = Ring::new(&keys, DEFAULT_REPLICAS);
        assert_eq!(ring.len(), 256);
        assert!(ring.points.iter().all(|&(_, b)| b == 1));
    }

    #[test]
    fn empty_ring_answers_backend_zero() {
        let ring = Ring::new(&[], DEFAULT_REPLICAS);
        assert!(ring.is_empty());
        assert_eq!(ring.get(b"db,cpu"), 0);
    }

    #[test]
    fn key_hashing_past_the_largest_point_wraps_to_the_smallest() {
        let ring = Ring::new(&["0".to_owned(), "1".to_owned()], DEFAULT_REPLICAS);
        // Find a key whose hash lies above the largest point (4293609826).
        let key = (0..)
            .map(|i| format!("wrap-{i}"))
            .find(|k| crc32fast::hash(k.as_bytes()) > 4293609826)
            .unwrap();
        assert_eq!(ring.get(key.as_bytes()), 1);
    }

    #[test]
    fn hash_key_parses_names_and_templates() {
        assert_eq!(HashKey::parse("idx"), Ok(HashKey::Idx));
        assert_eq!(HashKey::parse("exi"), Ok(HashKey::Exi));
        assert_eq!(HashKey::parse("name"), Ok(HashKey::Name));
        assert_eq!(HashKey::parse("url"), Ok(HashKey::Url));
        assert_eq!(
            HashKey::parse("node-%idx-%idx"),
            Ok(HashKey::Template("node-%idx-%idx".to_owned()))
        );
        for bad in ["", "IDX", "%id", "index"] {
            assert_eq!(
                HashKey::parse(bad),
                Err(
                    "invalid hash_key, require idx, exi, name, url or template containing %idx"
                        .to_owned()
                )
            );
        }
        assert_eq!(HashKey::default(), HashKey::Idx);
    }

    #[test]
    fn node_keys_follow_the_hash_key_table() {
        let (name, url) = ("influxdb-1", "http://127.0.0.1:8086");
        assert_eq!(HashKey::Idx.node_key(12, name, url), "12");
        assert_eq!(HashKey::Exi.node_key(12, name, url), "|12");
        assert_eq!(HashKey::Name.node_key(12, name, url), name);
        assert_eq!(HashKey::Url.node_key(12, name, url), url);
        let template = HashKey::Template("b-%idx/%idx".to_owned());
        assert_eq!(template.node_key(3, name, url), "b-3/3");
    }

    #[test]
    fn shard_key_replaces_placeholders_in_one_left_to_right_pass() {
        let build = |t: &str, db: &str, mm: &str| ShardKey::parse(t).unwrap().build(db, mm);
        assert_eq!(build("%db,%mm", "telegraf", "cpu"), "telegraf,cpu");
        assert_eq!(build("%mm", "x", "cpu"), "cpu");
        assert_eq!(build("%db", "x", "cpu"), "x");
        assert_eq!(build("%%db%mm%", "d", "m"), "%dm%");
        // Values are not rescanned: a db named "%mm" stays literal.
        assert_eq!(build("%db/%mm", "%mm", "%db"), "%mm/%db");
        assert_eq!(build("%dbmm", "d", "m"), "dmm");
        assert_eq!(build("%d%mm", "d", "m"), "%dm");
        assert_eq!(build("é%db€%mm✓", "d", "m"), "éd€m✓");
    }

    #[test]
    fn shard_key_without_placeholders_is_rejected() {
        for bad in ["", "db,mm", "%d b", "%MM"] {
            assert_eq!(
                ShardKey::parse(bad),
                Err("invalid shard_key, require template containing %db or %mm".to_owned())
            );
        }
    }

    #[test]
    fn shard_key_default_is_db_comma_mm() {
        assert_eq!(ShardKey::default(), ShardKey::parse("%db,%mm").unwrap());
        let mut out = String::from("stale");
        ShardKey::default().build_into("a,b", "c", &mut out);
        assert_eq!(out, "a,b,c");
    }

    proptest! {
        // Each case builds up to ten rings of up to 7,680 points; 64 cases keep debug runs short.
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn get_always_names_an_existing_backend(
            n in 1usize..30,
            keys in proptest::collection::vec(any::<Vec<u8>>(), 1..20),
        ) {
            for hash_key in all_hash_keys() {
                let ring = Ring::new(&single_circle_keys(&hash_key, n), DEFAULT_REPLICAS);
                for key in &keys {
                    prop_assert!(ring.get(key) < n);
                }
            }
        }

        #[test]
        fn get_matches_a_naive_linear_scan(
            n in 1usize..30,
            replicas in prop_oneof![Just(DEFAULT_REPLICAS), 1usize..40],
            keys in proptest::collection::vec("\\PC{0,24}", 1..20),
        ) {
            for hash_key in all_hash_keys() {
                let node_keys = single_circle_keys(&hash_key, n);
                let ring = Ring::new(&node_keys, replicas);
                let naive = NaiveRing::new(&node_keys, replicas);
                for key in &keys {
                    let key = format!("db,{key}");
                    prop_assert_eq!(
                        ring.get(key.as_bytes()),
                        naive.owner(key.as_bytes()),
                        "{:?} n={} key={}", hash_key, n, key
                    );
                }
            }
        }

        #[test]
        fn building_twice_gives_the_same_ring(
            names in proptest::collection::vec("[a-z0-9:/.-]{0,16}", 1..12),
        ) {
            let a = Ring::new(&names, DEFAULT_REPLICAS);
            let b = Ring::new(&names, DEFAULT_REPLICAS);
            prop_assert_eq!(a.points, b.points);
        }

        #[test]
        fn adding_a_backend_only_moves_keys_onto_it(
            n in 1usize..20,
            use_exi in any::<bool>(),
            keys in proptest::collection::vec("\\PC{1,24}", 1..50),
        ) {
            let hash_key = if use_exi { HashKey::Exi } else { HashKey::Name };
            let before = Ring::new(&single_circle_keys(&hash_key, n), DEFAULT_REPLICAS);
            let after = Ring::new(&single_circle_keys(&hash_key, n + 1), DEFAULT_REPLICAS);
            for key in &keys {
                let (old, new) = (before.get(key.as_bytes()), after.get(key.as_bytes()));
                prop_assert!(new == old || new == n, "{key} moved {old} -> {new}");
            }
        }
    }
}
