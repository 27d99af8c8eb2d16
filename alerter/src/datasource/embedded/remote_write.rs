//! The Prometheus remote-write 1.0 receiver: a snappy-compressed (block format) protobuf
//! `WriteRequest`, decoded into label sets and samples. This is the only module of the alerter
//! that touches the generated remote-write types (for encoding; they stop here).
//!
//! Decoding does not build prost's types: every sample carries its series' full label set, and
//! allocating those strings per sample cost more than storing the sample. [`walk`] reads the
//! decompressed bytes in place (each series' encoded labels and its samples) and a
//! [`SeriesCache`] maps encoded labels to the [`Labels`] built the first time they were seen.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;

use prost::Message;
use tocsin_proto::pb::prometheus::WriteRequest;

use crate::promql::Labels;

/// Default cap on a compressed request body: Prometheus sends at most 2 000 samples per
/// request by default (well under 1 MiB); 16 MiB leaves room for large batches.
pub const DEFAULT_WRITE_BODY_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Default cap on the decompressed size, checked before decompressing (snappy can expand a
/// small body by a large factor).
pub const DEFAULT_WRITE_DECODED_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Why a remote-write body was refused (HTTP 400 or 413; the sender must not retry it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteWriteError {
    /// The body exceeds the compressed or decompressed size cap.
    #[error("remote-write body too large: {len} bytes exceeds {max}")]
    TooLarge {
        /// Actual (or announced decompressed) size.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// Not snappy block-format data.
    #[error("remote-write body is not snappy-compressed: {0}")]
    NotSnappy(String),
    /// Not a protobuf `WriteRequest`.
    #[error("remote-write body is not a protobuf WriteRequest: {0}")]
    NotProtobuf(String),
}

/// One decoded series: its labels and samples `(t_ms, value)`.
pub type DecodedSeries = (Labels, Vec<(i64, f64)>);

/// Decodes a request body under the given size caps (tests, benchmarks: the receiver takes
/// the cheaper path of [`decompress`], [`walk`] and a [`SeriesCache`]).
pub fn decode(
    body: &[u8],
    body_max: usize,
    decoded_max: usize,
) -> Result<Vec<DecodedSeries>, RemoteWriteError> {
    let raw = decompress(body, body_max, decoded_max)?;
    let mut series = Vec::new();
    let mut samples = Vec::new();
    walk(&raw, &mut series, &mut samples)?;
    series
        .iter()
        .map(|s| Ok((labels_of(&s.labels)?, samples[s.samples.clone()].to_vec())))
        .collect()
}

/// The protobuf bytes of a request body: its size checked against `body_max`, its announced
/// decompressed size against `decoded_max` (before decompressing: snappy can expand a small
/// body by a large factor), then decompressed.
pub fn decompress(
    body: &[u8],
    body_max: usize,
    decoded_max: usize,
) -> Result<Vec<u8>, RemoteWriteError> {
    if body.len() > body_max {
        return Err(RemoteWriteError::TooLarge {
            len: body.len(),
            max: body_max,
        });
    }
    let len =
        snap::raw::decompress_len(body).map_err(|e| RemoteWriteError::NotSnappy(e.to_string()))?;
    if len > decoded_max {
        return Err(RemoteWriteError::TooLarge {
            len,
            max: decoded_max,
        });
    }
    snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| RemoteWriteError::NotSnappy(e.to_string()))
}

/// One `TimeSeries` of a request, as found in its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawSeries<'a> {
    /// Its `labels` fields exactly as encoded (key, length and `Label` message each): the
    /// identity of the series as its sender wrote it, and a [`SeriesCache`] key. Borrowed
    /// from the body unless other fields sat between the labels (then copied together).
    pub labels: Cow<'a, [u8]>,
    /// Where its samples are in the `samples` passed to [`walk`].
    pub samples: Range<usize>,
}

/// Protobuf wire types (the low three bits of a field key).
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const GROUP_START: u8 = 3;
const GROUP_END: u8 = 4;
const FIXED32: u8 = 5;
/// Deepest nesting of (unknown, skipped) groups, as prost's recursion limit.
const GROUP_DEPTH_MAX: usize = 100;

/// Why protobuf bytes were refused, as prost words it; small, so the reader's results stay
/// in registers. Becomes [`RemoteWriteError::NotProtobuf`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Malformed(&'static str);

impl From<Malformed> for RemoteWriteError {
    fn from(m: Malformed) -> Self {
        RemoteWriteError::NotProtobuf(m.0.into())
    }
}

/// A cursor over protobuf bytes: the subset of prost's decoding a `WriteRequest` needs, with
/// the same refusals (bad varints, keys, wire types, lengths past the end).
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    #[inline]
    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// A varint; one byte (most keys and lengths) takes the short path.
    #[inline]
    fn varint(&mut self) -> Result<u64, Malformed> {
        match self.buf.get(self.pos) {
            Some(&byte) if byte < 0x80 => {
                self.pos += 1;
                Ok(u64::from(byte))
            }
            _ => self.varint_long(),
        }
    }

    fn varint_long(&mut self) -> Result<u64, Malformed> {
        let mut value = 0u64;
        for i in 0..10 {
            let byte = *self
                .buf
                .get(self.pos)
                .ok_or(Malformed("buffer underflow in a varint"))?;
            self.pos += 1;
            if i == 9 && byte > 1 {
                return Err(Malformed("invalid varint"));
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(Malformed("invalid varint"))
    }

    /// A field key: `(field number, wire type)`.
    #[inline]
    fn key(&mut self) -> Result<(u32, u8), Malformed> {
        let key = self.varint()?;
        let key = u32::try_from(key).map_err(|_| Malformed("invalid key value"))?;
        let wire = (key & 7) as u8;
        if wire > FIXED32 {
            return Err(Malformed("invalid wire type"));
        }
        if key >> 3 == 0 {
            return Err(Malformed("invalid tag value: 0"));
        }
        Ok((key >> 3, wire))
    }

    #[inline]
    fn take(&mut self, n: u64) -> Result<&'a [u8], Malformed> {
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| self.pos.checked_add(n))
            .filter(|end| *end <= self.buf.len())
            .ok_or(Malformed("buffer underflow"))?;
        let buf = self.buf;
        let bytes = &buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    /// A length-delimited field's payload.
    #[inline]
    fn bytes(&mut self) -> Result<&'a [u8], Malformed> {
        let len = self.varint()?;
        self.take(len)
    }

    #[inline]
    fn fixed64(&mut self) -> Result<[u8; 8], Malformed> {
        let b = self.take(8)?;
        let mut a = [0; 8];
        a.copy_from_slice(b);
        Ok(a)
    }

    /// Skips a field of another number than the ones read (prost's `skip_field`).
    fn skip(&mut self, field: u32, wire: u8, depth: usize) -> Result<(), Malformed> {
        match wire {
            VARINT => self.varint().map(drop),
            FIXED64 => self.take(8).map(drop),
            FIXED32 => self.take(4).map(drop),
            LEN => self.bytes().map(drop),
            GROUP_START if depth < GROUP_DEPTH_MAX => loop {
                let (inner, inner_wire) = self.key()?;
                if inner_wire == GROUP_END {
                    if inner != field {
                        return Err(Malformed("unexpected end group tag"));
                    }
                    return Ok(());
                }
                self.skip(inner, inner_wire, depth + 1)?;
            },
            GROUP_START => Err(Malformed("recursion limit reached")),
            _ => Err(Malformed("unexpected end group tag")),
        }
    }

    /// Checks that a known field came with its declared wire type.
    #[inline]
    fn expect(wire: u8, want: u8) -> Result<(), Malformed> {
        if wire == want {
            Ok(())
        } else {
            Err(Malformed("invalid wire type for a known field"))
        }
    }
}

/// Walks a decompressed `WriteRequest` without copying it: one [`RawSeries`] per
/// `TimeSeries` into `series`, its samples into `samples`. Refuses what prost refuses, except
/// the labels' own encoding (names and values must be UTF-8), checked by [`labels_of`] when
/// a series is first seen.
pub fn walk<'a>(
    raw: &'a [u8],
    series: &mut Vec<RawSeries<'a>>,
    samples: &mut Vec<(i64, f64)>,
) -> Result<(), RemoteWriteError> {
    // WriteRequest { repeated TimeSeries timeseries = 1; ... }
    let mut r = Reader::new(raw);
    while !r.done() {
        match r.key()? {
            (1, wire) => {
                Reader::expect(wire, LEN)?;
                let ts = r.bytes()?;
                series.push(walk_series(ts, samples)?);
            }
            (field, wire) => r.skip(field, wire, 0)?,
        }
    }
    Ok(())
}

/// `TimeSeries { repeated Label labels = 1; repeated Sample samples = 2; ... }`.
fn walk_series<'a>(
    ts: &'a [u8],
    samples: &mut Vec<(i64, f64)>,
) -> Result<RawSeries<'a>, Malformed> {
    let first_sample = samples.len();
    let mut labels: Option<Range<usize>> = None;
    let mut scattered = false;
    let mut r = Reader::new(ts);
    while !r.done() {
        let field_start = r.pos;
        match r.key()? {
            (1, wire) => {
                Reader::expect(wire, LEN)?;
                r.bytes()?;
                match &mut labels {
                    None => labels = Some(field_start..r.pos),
                    Some(span) if span.end == field_start => span.end = r.pos,
                    Some(_) => scattered = true,
                }
            }
            (2, wire) => {
                Reader::expect(wire, LEN)?;
                samples.push(sample(r.bytes()?)?);
            }
            (field, wire) => r.skip(field, wire, 0)?,
        }
    }
    let labels = match labels {
        None => Cow::Borrowed(&[][..]),
        Some(span) if !scattered => Cow::Borrowed(&ts[span]),
        Some(_) => Cow::Owned(gather_labels(ts)?),
    };
    Ok(RawSeries {
        labels,
        samples: first_sample..samples.len(),
    })
}

/// The `labels` fields of a `TimeSeries` whose other fields sit between them, put together.
fn gather_labels(ts: &[u8]) -> Result<Vec<u8>, Malformed> {
    let mut out = Vec::new();
    let mut r = Reader::new(ts);
    while !r.done() {
        let field_start = r.pos;
        let (field, wire) = r.key()?;
        r.skip(field, wire, 0)?;
        if field == 1 {
            out.extend_from_slice(&ts[field_start..r.pos]);
        }
    }
    Ok(out)
}

/// `Sample { double value = 1; int64 timestamp = 2; }` as `(t_ms, value)`.
#[inline]
fn sample(bytes: &[u8]) -> Result<(i64, f64), Malformed> {
    let (mut t, mut v) = (0i64, 0f64);
    let mut r = Reader::new(bytes);
    while !r.done() {
        match r.key()? {
            (1, wire) => {
                Reader::expect(wire, FIXED64)?;
                v = f64::from_le_bytes(r.fixed64()?);
            }
            (2, wire) => {
                Reader::expect(wire, VARINT)?;
                // int64 on the wire: two's complement in a varint.
                t = r.varint()? as i64;
            }
            (field, wire) => r.skip(field, wire, 0)?,
        }
    }
    Ok((t, v))
}

/// The label set of a series from its [`RawSeries::labels`] bytes: each `Label { string name
/// = 1; string value = 2; }` in order, later duplicates winning and empty values dropped, as
/// [`Labels::from_pairs`] does with prost's decoding.
pub fn labels_of(bytes: &[u8]) -> Result<Labels, RemoteWriteError> {
    let mut pairs = Vec::new();
    let mut r = Reader::new(bytes);
    while !r.done() {
        let (field, wire) = r.key()?;
        if field != 1 {
            r.skip(field, wire, 0)?;
            continue;
        }
        Reader::expect(wire, LEN)?;
        let mut label = Reader::new(r.bytes()?);
        let (mut name, mut value) = ("", "");
        while !label.done() {
            match label.key()? {
                (1, wire) => {
                    Reader::expect(wire, LEN)?;
                    name = utf8(label.bytes()?)?;
                }
                (2, wire) => {
                    Reader::expect(wire, LEN)?;
                    value = utf8(label.bytes()?)?;
                }
                (field, wire) => label.skip(field, wire, 0)?,
            }
        }
        pairs.push((name, value));
    }
    Ok(Labels::from_pairs(pairs))
}

fn utf8(b: &[u8]) -> Result<&str, Malformed> {
    std::str::from_utf8(b).map_err(|_| Malformed("invalid string value: data is not UTF-8 encoded"))
}

/// Label sets of the series a receiver has seen, by their encoded label bytes, so a series
/// seen before costs a hash and a comparison of its bytes instead of building its [`Labels`]
/// (every remote-write sample carries its series' full label set).
///
/// Bounded to `entries_max` entries in two generations: lookups go to the current one, then
/// the previous (moving the entry into the current one); when the current one is full, it
/// becomes the previous and the old previous is dropped. A series sent at least once per
/// generation stays cached; the memory held is at most `entries_max` keys and label sets.
#[derive(Debug)]
pub struct SeriesCache {
    current: HashMap<Box<[u8]>, Labels>,
    previous: HashMap<Box<[u8]>, Labels>,
    generation_max: usize,
}

impl SeriesCache {
    /// A cache of at most `entries_max` series (the store's `series_max`: more cannot be
    /// held anyway).
    pub fn new(entries_max: usize) -> Self {
        Self {
            current: HashMap::new(),
            previous: HashMap::new(),
            generation_max: (entries_max / 2).max(1),
        }
    }

    /// The label set encoded as `raw` (a [`RawSeries::labels`]), built and remembered on
    /// first sight. Keys are the bytes themselves: a hash match is confirmed by comparing
    /// them.
    pub fn resolve(&mut self, raw: &[u8]) -> Result<Labels, RemoteWriteError> {
        if let Some(labels) = self.current.get(raw) {
            return Ok(labels.clone());
        }
        let (key, labels) = match self.previous.remove_entry(raw) {
            Some(entry) => entry,
            None => (Box::from(raw), labels_of(raw)?),
        };
        if self.current.len() >= self.generation_max {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(key, labels.clone());
        Ok(labels)
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Encodes series as a remote-write body (for tests and benchmarks that act as senders).
pub fn encode(series: &[DecodedSeries]) -> Vec<u8> {
    use tocsin_proto::pb::prometheus::{Label, Sample, TimeSeries};
    let req = WriteRequest {
        timeseries: series
            .iter()
            .map(|(l, s)| TimeSeries {
                labels: l
                    .iter()
                    .map(|(n, v)| Label {
                        name: n.into(),
                        value: v.into(),
                    })
                    .collect(),
                samples: s
                    .iter()
                    .map(|(t, v)| Sample {
                        value: *v,
                        timestamp: *t,
                    })
                    .collect(),
            })
            .collect(),
    };
    let raw = req.encode_to_vec();
    // Compressing an in-memory buffer cannot fail except on absurd sizes (> 4 GiB).
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .unwrap_or_default()
}

#[cfg(test)]
#[path = "remote_write_tests.rs"]
mod tests;
