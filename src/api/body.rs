//! Request bodies in memory: read, inflated and decoded within the memory budget.
//!
//! Every buffer a body needs (as received; inflated from gzip; Prometheus' snappy protobuf
//! decompressed, decoded and converted to line protocol; and, for a write, the normalised
//! lines and the queue's batch made from it) is charged to the request's [`Charge`] *before*
//! it is allocated, and buffers grow by steps that are checked first. So a body never holds
//! more than [`crate::memory::Admission::body_limit`] (the memory budget's in-flight share),
//! however far it would inflate, and is refused with 413 when it would need more; bodies
//! together stay within that share plus the one overdraft (`crate::memory`).
//!
//! Reading waits for room where it is (the handler's task). Decoding runs on a thread (the
//! HTTP worker for small bodies, the blocking pool for others) and never waits there: a step
//! that needs room the share does not have now hands the body back ([`Progress::Needs`]) and
//! the task waits before the next step.

use std::io::{Cursor, Read as _};

use actix_web::{web, HttpRequest};
use futures_util::StreamExt as _;
use prost::Message as _;

use super::ApiError;
use crate::buffers;
use crate::memory::{Admission, Charge};
use crate::prom;

/// How many times its size a compressed body is expected to inflate, for its first charge:
/// gzip'd line protocol about tenfold, and a remote write as well (snappy about threefold,
/// then every sample repeats its series' labels as text). Only an estimate: the charge grows
/// when a body inflates further.
pub(super) const INFLATION: u64 = 10;
/// First charge of a body of unknown length (chunked), and the smallest step a buffer grows by.
const FIRST_STEP: usize = 64 << 10;
/// Longest time a client may take to send a body: a client that trickles bytes cannot hold a
/// worker and its memory forever.
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// How a body is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Encoding {
    /// As it is.
    Plain,
    /// `Content-Encoding: gzip`.
    Gzip,
    /// A Prometheus remote write: a snappy block holding a protobuf `WriteRequest`.
    PromWrite,
}

/// What a body may take and how it is used.
#[derive(Debug, Clone, Copy)]
pub(super) struct Shape {
    pub(super) encoding: Encoding,
    /// Copies of the plain body held at once: 3 for a write (the lines, normalised, in the
    /// queue's batch), 1 for a body only parsed.
    pub(super) copies: u64,
    /// `max_body_bytes`.
    pub(super) max_body: usize,
    /// `max_decompressed_bytes`.
    pub(super) max_decompressed: usize,
}

/// Copies of the plain body a write holds at once: the lines, the normalised lines and the
/// queue's write batch.
pub(super) const WRITE_COPIES: u64 = crate::cluster::WRITE_COPIES;

impl Shape {
    /// Charge per byte received: the received bytes are the plain body when not encoded.
    fn per_raw_byte(&self) -> u64 {
        match self.encoding {
            Encoding::Plain => self.copies,
            Encoding::Gzip | Encoding::PromWrite => 1,
        }
    }

    /// What a body of `declared` bytes (0: unknown) is charged before it is read: as much as
    /// it is expected to take, or the first step of its read buffer when its length is
    /// unknown.
    fn first_charge(&self, declared: usize) -> u64 {
        let sent = declared as u64;
        match (declared, self.encoding) {
            (0, _) => FIRST_STEP as u64 * self.per_raw_byte(),
            (_, Encoding::Plain) => sent.saturating_mul(self.copies),
            (_, Encoding::Gzip | Encoding::PromWrite) => {
                sent.saturating_add(sent.saturating_mul(INFLATION * self.copies))
            }
        }
    }

    /// Most bytes received, with `body_limit` bytes of memory for the request.
    fn raw_limit(&self, body_limit: u64) -> (usize, Bound) {
        let memory = usize::try_from(body_limit / self.per_raw_byte()).unwrap_or(usize::MAX);
        if memory < self.max_body {
            (memory, Bound::Memory)
        } else {
            (self.max_body, Bound::Setting)
        }
    }

    /// Most bytes of plain body, with `fixed` bytes already charged out of `body_limit`.
    fn plain_limit(&self, body_limit: u64, fixed: usize) -> (usize, Bound) {
        let left = body_limit.saturating_sub(fixed as u64) / self.copies.max(1);
        let memory = usize::try_from(left).unwrap_or(usize::MAX);
        if memory < self.max_decompressed {
            (memory, Bound::Memory)
        } else {
            (self.max_decompressed, Bound::Setting)
        }
    }
}

/// Which limit a body reached: a setting, or what the memory budget allows one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bound {
    Setting,
    Memory,
}

/// The 413 for `what` (`request body`, `decompressed body`) over `limit` bytes.
fn too_large(what: &str, limit: usize, bound: Bound) -> ApiError {
    let why = match bound {
        Bound::Setting => "",
        Bound::Memory => " (what memory_budget_mb allows one request)",
    };
    ApiError::TooLarge(format!("{what} too large: limit is {limit} bytes{why}"))
}

/// Admits and reads a request's whole body ([`admit`], then [`read`], its `Content-Length`
/// declaring what to charge first): the body, and the charge that holds its memory for as long
/// as the caller keeps it.
pub(super) async fn receive(
    req: &HttpRequest,
    payload: web::Payload,
    admission: &Admission,
    shape: &Shape,
) -> Result<(Vec<u8>, Charge), ApiError> {
    let declared = super::write::content_length(req);
    let mut charge = admit(admission, declared, shape).await?;
    let raw = read(payload, declared, shape, &mut charge).await?;
    Ok((raw, charge))
}

/// Charges a request's body of `declared` bytes (its `Content-Length`, 0 when unknown) to
/// `admission` before it is read, waiting for room; refuses (413) at once a body declared
/// larger than it may be.
pub(super) async fn admit(
    admission: &Admission,
    declared: usize,
    shape: &Shape,
) -> Result<Charge, ApiError> {
    let (limit, bound) = shape.raw_limit(admission.body_limit());
    if declared > limit {
        return Err(too_large("request body", limit, bound));
    }
    Ok(admission.admit(shape.first_charge(declared)).await)
}

/// Reads a body of `declared` bytes (its `Content-Length`, 0 when unknown), charging each
/// step its buffer grows by before it grows; waits for room as needed. Refuses (413) a body
/// larger than `max_body_bytes` or than its memory allows, before reading it when its length
/// is declared, and a client slower than [`READ_TIMEOUT`] (408).
pub(super) async fn read(
    payload: web::Payload,
    declared: usize,
    shape: &Shape,
    charge: &mut Charge,
) -> Result<Vec<u8>, ApiError> {
    let read = read_unbounded_time(payload, declared, shape, charge);
    tokio::time::timeout(READ_TIMEOUT, read)
        .await
        .map_err(|_| ApiError::Timeout("timeout reading the request body".into()))?
}

async fn read_unbounded_time(
    mut payload: web::Payload,
    declared: usize,
    shape: &Shape,
    charge: &mut Charge,
) -> Result<Vec<u8>, ApiError> {
    let (limit, bound) = shape.raw_limit(charge.limit());
    if declared > limit {
        return Err(too_large("request body", limit, bound));
    }
    let mut room = declared;
    charge.grow(room as u64 * shape.per_raw_byte()).await?;
    let mut body = buffers::take(room);
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("reading body: {e}")))?;
        let len = body.len() + chunk.len();
        if len > limit {
            return Err(too_large("request body", limit, bound));
        }
        if len > room {
            room = len.max(room * 2).max(FIRST_STEP).min(limit);
            charge.grow(room as u64 * shape.per_raw_byte()).await?;
            body.reserve_exact(room - body.len());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A body on its way to plain bytes, advanced by [`Decoder::run`] as its charge allows.
pub(super) struct Decoder {
    shape: Shape,
    state: State,
}

enum State {
    /// Nothing to do: the body is plain.
    Plain(Vec<u8>),
    /// Boxed: the gzip decoder is much larger than the other states.
    Gzip(Box<Inflate>),
    PromWrite(PromWrite),
}

/// What a decoding step came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Progress {
    /// The plain body is complete.
    Done,
    /// The next step needs the charge grown to this many bytes, and the share has no room now.
    Needs(u64),
}

/// A decoded body: as received, and its plain form when it was encoded.
#[derive(Debug)]
pub(super) struct Decoded {
    pub(super) raw: Vec<u8>,
    plain: Option<Vec<u8>>,
}

impl Decoded {
    /// The plain body.
    pub(super) fn plain(&self) -> &[u8] {
        self.plain.as_deref().unwrap_or(&self.raw)
    }

    /// Gives the buffers back for reuse by this thread.
    pub(super) fn recycle(self) {
        buffers::give(self.raw);
        if let Some(plain) = self.plain {
            buffers::give(plain);
        }
    }
}

impl Decoder {
    /// A decoder for `raw`, received as `shape` says; `db` names the database in its log lines.
    pub(super) fn new(raw: Vec<u8>, shape: Shape, db: &str) -> Decoder {
        let state = match shape.encoding {
            Encoding::Plain => State::Plain(raw),
            Encoding::Gzip => State::Gzip(Box::new(Inflate::new(raw))),
            Encoding::PromWrite => State::PromWrite(PromWrite {
                raw,
                db: db.to_string(),
                stage: PromStage::Compressed,
            }),
        };
        Decoder { shape, state }
    }

    /// Decodes as far as `charge` can grow without waiting.
    pub(super) fn run(&mut self, charge: &mut Charge) -> Result<Progress, ApiError> {
        match &mut self.state {
            State::Plain(_) => Ok(Progress::Done),
            State::Gzip(inflate) => inflate.run(charge, &self.shape),
            State::PromWrite(write) => write.run(charge, &self.shape),
        }
    }

    /// The body, once [`Decoder::run`] said [`Progress::Done`].
    pub(super) fn finish(self) -> Decoded {
        match self.state {
            State::Plain(raw) => Decoded { raw, plain: None },
            State::Gzip(inflate) => Decoded {
                raw: inflate.decoder.into_inner().into_inner(),
                plain: Some(inflate.out),
            },
            State::PromWrite(write) => {
                let plain = match write.stage {
                    PromStage::Converted(lines) => Some(lines),
                    _ => None,
                };
                Decoded {
                    raw: write.raw,
                    plain,
                }
            }
        }
    }
}

/// Decodes a body, then runs `then` on it on the same thread, waiting for room between steps.
/// `inline`: on this thread (small bodies); else on the blocking pool, so that one large body
/// cannot stall the worker's other connections. A body that needs more room than it was
/// first charged for continues on the blocking pool.
pub(super) async fn decode_then<R, F>(
    decoder: Decoder,
    charge: Charge,
    inline: bool,
    then: F,
) -> Result<R, ApiError>
where
    R: Send + 'static,
    F: FnOnce(Decoded, Charge) -> Result<R, ApiError> + Send + 'static,
{
    enum Step<R, F> {
        Finished(Result<R, ApiError>),
        Needs(Decoder, Charge, F, u64),
    }
    fn step<R, F>(mut decoder: Decoder, mut charge: Charge, then: F) -> Step<R, F>
    where
        F: FnOnce(Decoded, Charge) -> Result<R, ApiError>,
    {
        match decoder.run(&mut charge) {
            Err(e) => Step::Finished(Err(e)),
            Ok(Progress::Done) => Step::Finished(then(decoder.finish(), charge)),
            Ok(Progress::Needs(bytes)) => Step::Needs(decoder, charge, then, bytes),
        }
    }
    let (mut decoder, mut charge, mut then, mut inline) = (decoder, charge, then, inline);
    loop {
        let result = if inline {
            step(decoder, charge, then)
        } else {
            web::block(move || step(decoder, charge, then))
                .await
                .map_err(|e| ApiError::Internal(format!("body task failed: {e}")))?
        };
        match result {
            Step::Finished(r) => return r,
            Step::Needs(d, mut c, t, bytes) => {
                c.grow(bytes).await?;
                (decoder, charge, then, inline) = (d, c, t, false);
            }
        }
    }
}

/// A gzip body being inflated into `out`, never beyond the bytes charged for it (`room`).
struct Inflate {
    decoder: flate2::bufread::MultiGzDecoder<Cursor<Vec<u8>>>,
    raw_len: usize,
    out: Vec<u8>,
    /// Bytes of `out` charged for; `out` never holds more.
    room: usize,
    /// A byte read to learn whether more follow a full `out`, kept until it has room.
    carry: Option<u8>,
}

impl Inflate {
    fn new(raw: Vec<u8>) -> Inflate {
        Inflate {
            raw_len: raw.len(),
            decoder: flate2::bufread::MultiGzDecoder::new(Cursor::new(raw)),
            out: Vec::new(),
            room: 0,
            carry: None,
        }
    }

    fn run(&mut self, charge: &mut Charge, shape: &Shape) -> Result<Progress, ApiError> {
        let (limit, bound) = shape.plain_limit(charge.limit(), self.raw_len);
        if self.room == 0 {
            // What the first charge already covers.
            let covered = charge.bytes().saturating_sub(self.raw_len as u64) / shape.copies;
            self.room = usize::try_from(covered).unwrap_or(usize::MAX).min(limit);
            self.out = buffers::take(self.room);
        }
        loop {
            if self.out.len() < self.room {
                if let Some(byte) = self.carry.take() {
                    self.out.push(byte);
                    continue;
                }
                let spare = self.room - self.out.len();
                let read = (&mut self.decoder)
                    .take(spare as u64)
                    .read_to_end(&mut self.out)
                    .map_err(gzip_error)?;
                if read < spare {
                    return Ok(Progress::Done);
                }
                continue;
            }
            // Full: does more follow?
            if self.carry.is_none() {
                let mut one = [0u8; 1];
                if self.decoder.read(&mut one).map_err(gzip_error)? == 0 {
                    return Ok(Progress::Done);
                }
                self.carry = Some(one[0]);
            }
            if self.room >= limit {
                return Err(too_large("decompressed body", limit, bound));
            }
            let next = (self.room * 2).max(FIRST_STEP).min(limit);
            let need = (self.raw_len as u64).saturating_add(next as u64 * shape.copies);
            if !charge.try_grow(need)? {
                return Ok(Progress::Needs(need));
            }
            self.room = next;
            self.out.reserve_exact(next - self.out.len());
        }
    }
}

fn gzip_error(e: std::io::Error) -> ApiError {
    ApiError::BadRequest(format!("unable to decode gzip body: {e}"))
}

/// A Prometheus remote write on its way to line protocol.
struct PromWrite {
    raw: Vec<u8>,
    db: String,
    stage: PromStage,
}

enum PromStage {
    /// As received: snappy.
    Compressed,
    /// The protobuf, and what was charged with it.
    Decompressed(Vec<u8>, u64),
    /// The decoded request, and what was charged with it.
    Decoded(prom::WriteRequest, u64),
    /// Line protocol.
    Converted(Vec<u8>),
}

impl PromWrite {
    fn run(&mut self, charge: &mut Charge, shape: &Shape) -> Result<Progress, ApiError> {
        loop {
            match &mut self.stage {
                PromStage::Compressed => {
                    let len = prom::decompressed_len(&self.raw, shape.max_decompressed)
                        .map_err(prom_error)?;
                    let need = (self.raw.len() + len) as u64;
                    if !charge.try_grow(need)? {
                        return Ok(Progress::Needs(need));
                    }
                    let pb = prom::unsnappy(&self.raw, len).map_err(prom_error)?;
                    self.stage = PromStage::Decompressed(pb, need);
                }
                PromStage::Decompressed(pb, charged) => {
                    let need = charged.saturating_add(prom::write_heap_bytes(pb) as u64);
                    if !charge.try_grow(need)? {
                        return Ok(Progress::Needs(need));
                    }
                    let request = prom::WriteRequest::decode(pb.as_slice())
                        .map_err(|e| prom_error(e.into()))?;
                    self.stage = PromStage::Decoded(request, need);
                }
                PromStage::Decoded(request, charged) => {
                    let fixed = usize::try_from(*charged).unwrap_or(usize::MAX);
                    let (limit, bound) = shape.plain_limit(charge.limit(), fixed);
                    let covered = charge.bytes().saturating_sub(*charged) / shape.copies;
                    let room = usize::try_from(covered).unwrap_or(usize::MAX).min(limit);
                    let mut out = buffers::take(room.min(self.raw.len() * INFLATION as usize));
                    match prom::to_line_protocol(request, &mut out, room) {
                        Ok(converted) => {
                            log_left_out(&self.db, &converted);
                            self.stage = PromStage::Converted(out);
                            return Ok(Progress::Done);
                        }
                        Err(prom::Error::TooLarge { .. }) if room < limit => {
                            buffers::give(out);
                            let next = (room * 2).max(FIRST_STEP).min(limit);
                            let need = charged.saturating_add(next as u64 * shape.copies);
                            if !charge.try_grow(need)? {
                                return Ok(Progress::Needs(need));
                            }
                        }
                        Err(prom::Error::TooLarge { .. }) => {
                            return Err(too_large(
                                "line protocol built from the remote write",
                                limit,
                                bound,
                            ))
                        }
                        Err(e) => return Err(prom_error(e)),
                    }
                }
                PromStage::Converted(_) => return Ok(Progress::Done),
            }
        }
    }
}

/// Logs the samples a remote write left out.
fn log_left_out(db: &str, converted: &prom::Converted) {
    if converted.non_finite > 0 {
        // NaN is how Prometheus marks a series stale: expected, not the client's fault.
        tracing::debug!(
            db,
            points = converted.points,
            skipped = converted.non_finite,
            "Remote-write NaN/Inf samples left out."
        );
    }
    if converted.unrepresentable > 0 {
        // Data lost on purpose (line protocol cannot carry it): worth an operator's look.
        tracing::warn!(
            db,
            points = converted.points,
            skipped = converted.unrepresentable,
            "Remote-write samples left out: a label line protocol cannot carry, or a timestamp beyond the nanosecond range."
        );
    }
}

/// A remote-storage body refused: too large (413) or not what it should be (400).
pub(super) fn prom_error(e: prom::Error) -> ApiError {
    match e {
        prom::Error::TooLarge { .. } => ApiError::TooLarge(e.to_string()),
        other => ApiError::BadRequest(other.to_string()),
    }
}

/// Decodes a Prometheus remote read (`raw`, snappy), charging the protobuf and the decoded
/// request before each exists.
pub(super) async fn prom_read(
    raw: &[u8],
    shape: &Shape,
    charge: &mut Charge,
) -> Result<prom::ReadRequest, ApiError> {
    let len = prom::decompressed_len(raw, shape.max_decompressed).map_err(prom_error)?;
    let charged = (raw.len() + len) as u64;
    charge.grow(charged).await?;
    let pb = prom::unsnappy(raw, len).map_err(prom_error)?;
    charge
        .grow(charged.saturating_add(prom::read_heap_bytes(&pb) as u64))
        .await?;
    prom::ReadRequest::decode(pb.as_slice()).map_err(|e| prom_error(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn shape(encoding: Encoding, copies: u64, max_decompressed: usize) -> Shape {
        Shape {
            encoding,
            copies,
            max_body: 64 << 20,
            max_decompressed,
        }
    }

    /// Runs a decoder to the end, growing its charge without waiting (none else holds any).
    fn decode(raw: Vec<u8>, shape: Shape, charge: &mut Charge) -> Result<Decoded, ApiError> {
        let mut decoder = Decoder::new(raw, shape, "db");
        loop {
            match decoder.run(charge)? {
                Progress::Done => return Ok(decoder.finish()),
                Progress::Needs(bytes) => {
                    assert!(charge.try_grow(bytes).unwrap(), "room was free");
                }
            }
        }
    }

    #[actix_rt::test]
    async fn a_gzip_body_inflates_within_its_charge() {
        let admission = Admission::new(64 << 20);
        let body = b"m f=1\n".repeat(100_000);
        let mut charge = admission.admit(1 << 10).await;
        let decoded = decode(gz(&body), shape(Encoding::Gzip, 3, 1 << 30), &mut charge).unwrap();
        assert_eq!(decoded.plain(), &body[..]);
        assert!(
            charge.bytes() >= 3 * body.len() as u64,
            "{}",
            charge.bytes()
        );
        assert!(charge.bytes() <= 3 * 2 * body.len() as u64 + (1 << 20));
    }

    #[actix_rt::test]
    async fn a_bomb_stops_at_max_decompressed_bytes_without_growing_past_it() {
        let admission = Admission::new(64 << 20);
        let bomb = gz(&vec![b'a'; 10_000]);
        let mut charge = admission.admit(1 << 10).await;
        let e = decode(bomb.clone(), shape(Encoding::Gzip, 1, 9_999), &mut charge).unwrap_err();
        assert_eq!(
            e.to_string(),
            "decompressed body too large: limit is 9999 bytes"
        );
        let mut charge = admission.admit(1 << 10).await;
        let decoded = decode(bomb, shape(Encoding::Gzip, 1, 10_000), &mut charge).unwrap();
        assert_eq!(decoded.plain().len(), 10_000);
    }

    #[actix_rt::test]
    async fn a_bomb_stops_at_what_memory_allows_one_request() {
        // 64 KiB of memory for the request: 3 copies of at most ~21 KB inflated.
        let admission = Admission::new(64 << 10);
        let bomb = gz(&vec![b'\n'; 10 << 20]);
        let mut charge = admission.admit(1 << 10).await;
        let e = decode(
            bomb.clone(),
            shape(Encoding::Gzip, 3, 512 << 20),
            &mut charge,
        )
        .unwrap_err();
        let limit = ((64 << 10) - bomb.len()) / 3;
        assert_eq!(
            e.to_string(),
            format!("decompressed body too large: limit is {limit} bytes (what memory_budget_mb allows one request)")
        );
        assert!(charge.bytes() <= 64 << 10);
    }

    #[actix_rt::test]
    async fn corrupt_and_truncated_gzip_is_a_bad_request() {
        let admission = Admission::new(64 << 20);
        let z = gz(b"m f=1\nm f=2\n");
        for raw in [b"not gzip".to_vec(), z[..z.len() - 6].to_vec()] {
            let mut charge = admission.admit(1 << 10).await;
            let e = decode(raw, shape(Encoding::Gzip, 3, 100), &mut charge).unwrap_err();
            assert!(matches!(e, ApiError::BadRequest(_)), "{e}");
        }
    }

    #[actix_rt::test]
    async fn an_exact_fit_is_not_refused() {
        let admission = Admission::new(64 << 20);
        let body = vec![b'x'; FIRST_STEP * 2];
        let mut charge = admission.admit(1).await;
        let decoded = decode(
            gz(&body),
            shape(Encoding::Gzip, 1, FIRST_STEP * 2),
            &mut charge,
        )
        .unwrap();
        assert_eq!(decoded.plain().len(), FIRST_STEP * 2);
    }

    fn remote_write(series: usize, samples: usize) -> Vec<u8> {
        let ts = prom::TimeSeries {
            labels: vec![
                prom::Label {
                    name: "__name__".into(),
                    value: "up".into(),
                },
                prom::Label {
                    name: "job".into(),
                    value: "x".repeat(100),
                },
            ],
            samples: vec![
                prom::Sample {
                    value: 1.0,
                    timestamp: 1
                };
                samples
            ],
        };
        prom::snappy(
            &prom::WriteRequest {
                timeseries: vec![ts; series],
            }
            .encode_to_vec(),
        )
    }

    #[actix_rt::test]
    async fn a_remote_write_is_converted_within_its_charge() {
        let admission = Admission::new(64 << 20);
        let raw = remote_write(10, 1000);
        let mut charge = admission.admit(1 << 10).await;
        let decoded = decode(raw, shape(Encoding::PromWrite, 3, 64 << 20), &mut charge).unwrap();
        let lines = decoded.plain();
        assert_eq!(lines.iter().filter(|&&b| b == b'\n').count(), 10_000);
        assert!(charge.bytes() >= 3 * lines.len() as u64);
    }

    #[actix_rt::test]
    async fn a_remote_write_whose_lines_outgrow_memory_is_refused() {
        // ~1.2 MB of lines from a few KB of snappy.
        let admission = Admission::new(1 << 20);
        let mut charge = admission.admit(1 << 10).await;
        let e = decode(
            remote_write(1, 10_000),
            shape(Encoding::PromWrite, 3, 64 << 20),
            &mut charge,
        )
        .unwrap_err();
        assert!(matches!(e, ApiError::TooLarge(_)), "{e}");
        assert!(e.to_string().contains("memory_budget_mb"), "{e}");
        assert!(charge.bytes() <= 1 << 20);
    }

    #[actix_rt::test]
    async fn a_remote_write_declaring_a_huge_length_is_refused_before_allocating() {
        let admission = Admission::new(64 << 20);
        // A snappy header declaring 1 GiB (varint), then nothing.
        let raw = vec![0x80, 0x80, 0x80, 0x80, 0x04];
        let mut charge = admission.admit(1 << 10).await;
        let e = decode(
            raw.clone(),
            shape(Encoding::PromWrite, 3, 512 << 20),
            &mut charge,
        )
        .unwrap_err();
        assert!(matches!(e, ApiError::TooLarge(_)), "{e}");
        // Under max_decompressed_bytes, the memory bound refuses it.
        let mut charge = admission.admit(1 << 10).await;
        let e = decode(raw, shape(Encoding::PromWrite, 3, 2 << 30), &mut charge).unwrap_err();
        assert!(matches!(e, ApiError::TooLarge(_)), "{e}");
        assert!(charge.bytes() <= 64 << 20);
    }
}
