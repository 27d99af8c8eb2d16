//! Compressed sample chunks (delta-of-delta timestamps; integer delta-of-delta or XOR'd
//! values) and a [`ChunkedStore`] built on them.
//!
//! Timestamps follow Prometheus's XOR chunk: the first sample is stored raw (64-bit
//! timestamp, 64-bit value); every later timestamp is a delta-of-delta in a `0` / `10`+14 /
//! `110`+17 / `1110`+20 / `1111`+64-bit bucket.
//!
//! Values take one of two encodings, chosen by the chunk's first value:
//! - **Integer** (the first value is an integer that an `i64` holds exactly — counters, most
//!   gauges of counts, histogram buckets): every later value is the delta-of-delta of the
//!   integers, in a `0` / `10`+4 / `110`+8 / `1110`+16 / `11110`+64-bit bucket. A counter that
//!   grows at a steady rate costs one to seven bits. A value that is not such an integer (a
//!   fraction, NaN, a staleness marker, ±Inf, `-0`) writes the escape `11111` and switches the
//!   rest of the chunk to XOR.
//! - **XOR** (Gorilla, as Prometheus): the XOR with the predecessor's bits, stored as `0`
//!   (same), `10`+meaningful bits (fits the previous window) or `11`+5-bit leading zeros+6-bit
//!   length+bits.
//!
//! Regular scrapes cost about one byte per sample on integer series, one to two on others.
//! Values round-trip bit for bit, NaN payloads and staleness markers included. The format
//! lives only in memory (the on-disk log stores samples, not chunks), so it may change freely.

use promql_parser::label::Matcher;

use super::labels::Labels;
use super::store::{Point, Series, Store, StoreError};
use super::table::SeriesTable;

/// Samples per chunk before a new one is cut, as in Prometheus: bounds the work of decoding
/// a chunk that only partly overlaps a query.
pub const SAMPLES_PER_CHUNK: usize = 120;

/// Why a chunk could not be appended to or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// Timestamps must strictly increase within a chunk.
    #[error("out-of-order sample: t={t_ms} ms is not after {last_ms} ms")]
    OutOfOrder {
        /// The rejected timestamp.
        t_ms: i64,
        /// The last timestamp in the chunk.
        last_ms: i64,
    },
    /// The encoded bytes end before `count` samples were read.
    #[error("chunk data truncated after {decoded} of {count} samples")]
    Truncated {
        /// Samples decoded before the data ran out.
        decoded: usize,
        /// Samples the chunk claims to hold.
        count: usize,
    },
}

#[derive(Debug, Clone, Default)]
struct BitWriter {
    bytes: Vec<u8>,
    /// Number of valid bits in `bytes`.
    len: usize,
}

impl BitWriter {
    fn write_bit(&mut self, bit: bool) {
        self.write_bits(u64::from(bit), 1);
    }

    /// Writes the low `n` bits of `v` (`n` ≤ 64), most significant first, a byte at a time.
    fn write_bits(&mut self, v: u64, n: u32) {
        let mut left = n;
        while left > 0 {
            let used = (self.len % 8) as u32;
            if used == 0 {
                self.bytes.push(0);
            }
            let free = 8 - used;
            let take = free.min(left);
            let part = (v >> (left - take)) & ((1u64 << take) - 1);
            if let Some(last) = self.bytes.last_mut() {
                *last |= (part as u8) << (free - take);
            }
            self.len += take as usize;
            left -= take;
        }
    }
}

impl BitWriter {
    /// Writes `x` as `0` if it is zero, else in the first bucket of `payload_bits` it fits:
    /// `k + 1` ones and a zero for bucket `k`, then the payload. Writes nothing and returns
    /// false if no bucket fits (the caller writes its own escape).
    fn write_bucketed(&mut self, x: i64, payload_bits: &[u32]) -> bool {
        if x == 0 {
            self.write_bit(false);
            return true;
        }
        for (k, &nbits) in payload_bits.iter().enumerate() {
            if fits(x, nbits) {
                let ctrl_len = k as u32 + 2;
                self.write_bits((1 << ctrl_len) - 2, ctrl_len);
                self.write_bits(x as u64, nbits);
                return true;
            }
        }
        false
    }
}

#[derive(Debug)]
struct BitReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl BitReader<'_> {
    /// The 57 or more bits from `pos` on, left-aligned (zeros past the end).
    fn peek(&self) -> u64 {
        let byte = self.pos / 8;
        let shift = (self.pos % 8) as u32;
        let word = match self.bytes.get(byte..byte + 8) {
            Some(b) => u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
            None => {
                let mut buf = [0u8; 8];
                let rest = self.bytes.get(byte..).unwrap_or(&[]);
                buf[..rest.len()].copy_from_slice(rest);
                u64::from_be_bytes(buf)
            }
        };
        word << shift
    }

    fn read_bit(&mut self) -> Option<bool> {
        self.read_bits(1).map(|b| b == 1)
    }

    /// Reads `n` bits (`n` ≤ 64), or `None` when fewer remain.
    fn read_bits(&mut self, n: u32) -> Option<u64> {
        if n == 0 {
            return Some(0);
        }
        if self.pos + n as usize > self.bytes.len() * 8 {
            return None;
        }
        if n > 56 {
            let hi = self.read_bits(n - 32)?;
            let lo = self.read_bits(32)?;
            return Some(hi << 32 | lo);
        }
        let v = self.peek() >> (64 - n);
        self.pos += n as usize;
        Some(v)
    }

    /// Counts leading one bits, up to `max`, consuming them and the terminating zero (if
    /// `max` was not reached).
    fn read_ones(&mut self, max: u32) -> Option<u32> {
        let ones = (!self.peek()).leading_zeros().min(max);
        let used = if ones < max { ones + 1 } else { ones };
        if self.pos + used as usize > self.bytes.len() * 8 {
            return None;
        }
        self.pos += used as usize;
        Some(ones)
    }
}

/// Timestamp delta-of-delta buckets after the `0` one: payload bits for `10`, `110`, `1110`;
/// `1111` is followed by all 64 bits.
const DOD_BITS: [u32; 3] = [14, 17, 20];
/// Integer value delta-of-delta buckets after the `0` one: payload bits for `10`, `110`,
/// `1110`, `11110`; `11111` escapes to XOR.
const INT_BITS: [u32; 4] = [4, 8, 16, 64];

/// Whether `x` fits Prometheus's signed `nbits` range `[-(2^(n-1)-1), 2^(n-1)]`.
fn fits(x: i64, nbits: u32) -> bool {
    if nbits >= 64 {
        return true;
    }
    let half = 1i64 << (nbits - 1);
    -(half - 1) <= x && x <= half
}

/// Sign-extends an `nbits` payload written by [`fits`]-checked encoding.
fn unfit(v: u64, nbits: u32) -> i64 {
    if nbits >= 64 {
        return v as i64;
    }
    let half = 1u64 << (nbits - 1);
    if v > half {
        v as i64 - (1i64 << nbits)
    } else {
        v as i64
    }
}

/// The integer `v` holds exactly, if it is one: its bits are those of the `i64` converted
/// back (so not NaN, ±Inf, `-0` or a fraction).
fn as_int(v: f64) -> Option<i64> {
    let i = v as i64;
    ((i as f64).to_bits() == v.to_bits()).then_some(i)
}

/// How values are encoded after the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum ValueMode {
    /// Integer delta-of-delta: the last integer and its delta.
    Int { last: i64, delta: i64 },
    /// XOR with the previous value's bits.
    #[default]
    Xor,
}

/// One compressed run of samples with strictly increasing timestamps.
#[derive(Debug, Clone, Default)]
pub struct Chunk {
    bits: BitWriter,
    count: usize,
    first_t: i64,
    last_t: i64,
    last_delta: i64,
    last_v_bits: u64,
    mode: ValueMode,
    /// Leading/trailing zeros of the current XOR window (`None` before the first window).
    window: Option<(u32, u32)>,
}

impl Chunk {
    /// An empty chunk.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the chunk holds no samples.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        self.bits.bytes.len()
    }

    /// The encoded bytes (decode with [`decode_bytes`] and [`Chunk::len`]).
    pub fn bytes(&self) -> &[u8] {
        &self.bits.bytes
    }

    /// First and last timestamps, if any.
    pub fn time_range(&self) -> Option<(i64, i64)> {
        (self.count > 0).then_some((self.first_t, self.last_t))
    }

    /// Appends a sample; its timestamp must be after the last one.
    pub fn append(&mut self, t: i64, v: f64) -> Result<(), ChunkError> {
        let v_bits = v.to_bits();
        if self.count == 0 {
            self.bits.write_bits(t as u64, 64);
            self.bits.write_bits(v_bits, 64);
            self.first_t = t;
            self.mode = match as_int(v) {
                Some(last) => ValueMode::Int { last, delta: 0 },
                None => ValueMode::Xor,
            };
        } else {
            if t <= self.last_t {
                return Err(ChunkError::OutOfOrder {
                    t_ms: t,
                    last_ms: self.last_t,
                });
            }
            let delta = t.wrapping_sub(self.last_t);
            self.write_dod(delta.wrapping_sub(self.last_delta));
            self.last_delta = delta;
            self.write_value(v, v_bits);
        }
        self.last_t = t;
        self.last_v_bits = v_bits;
        self.count += 1;
        Ok(())
    }

    fn write_dod(&mut self, dod: i64) {
        if !self.bits.write_bucketed(dod, &DOD_BITS) {
            self.bits.write_bits(0b1111, 4);
            self.bits.write_bits(dod as u64, 64);
        }
    }

    fn write_value(&mut self, v: f64, v_bits: u64) {
        if let ValueMode::Int { last, delta } = self.mode {
            if let Some(i) = as_int(v) {
                let d = i.wrapping_sub(last);
                self.mode = ValueMode::Int { last: i, delta: d };
                // The last bucket holds 64 bits: every delta-of-delta fits.
                if self.bits.write_bucketed(d.wrapping_sub(delta), &INT_BITS) {
                    return;
                }
            }
            // Not an integer: escape, and XOR from here on.
            self.bits.write_bits(0b11111, 5);
            self.mode = ValueMode::Xor;
        }
        self.write_xor(v_bits ^ self.last_v_bits);
    }

    fn write_xor(&mut self, xor: u64) {
        if xor == 0 {
            self.bits.write_bit(false);
            return;
        }
        self.bits.write_bit(true);
        let leading = xor.leading_zeros().min(31);
        let trailing = xor.trailing_zeros();
        if let Some((wl, wt)) = self.window
            && leading >= wl
            && trailing >= wt
        {
            self.bits.write_bit(false);
            self.bits.write_bits(xor >> wt, 64 - wl - wt);
            return;
        }
        self.window = Some((leading, trailing));
        let sig = 64 - leading - trailing;
        self.bits.write_bit(true);
        self.bits.write_bits(u64::from(leading), 5);
        // 64 significant bits do not fit 6 bits; they are written as 0.
        self.bits.write_bits(u64::from(sig % 64), 6);
        self.bits.write_bits(xor >> trailing, sig);
    }

    /// Decodes every sample.
    pub fn decode(&self) -> Result<Vec<Point>, ChunkError> {
        decode_bytes(&self.bits.bytes, self.count)
    }

    /// Appends the samples in `[start_ms, end_ms]` to `out`, decoding no further than needed.
    pub fn decode_range(
        &self,
        start_ms: i64,
        end_ms: i64,
        out: &mut Vec<Point>,
    ) -> Result<(), ChunkError> {
        decode_into(&self.bits.bytes, self.count, start_ms, end_ms, out)
    }
}

/// Decodes `count` samples from encoded chunk bytes. Never panics on corrupt input.
pub fn decode_bytes(bytes: &[u8], count: usize) -> Result<Vec<Point>, ChunkError> {
    // A sample takes at least two bits, which bounds the allocation on corrupt counts.
    let mut out = Vec::with_capacity(count.min(bytes.len() * 4 + 1));
    decode_into(bytes, count, i64::MIN, i64::MAX, &mut out)?;
    Ok(out)
}

fn decode_into(
    bytes: &[u8],
    count: usize,
    start_ms: i64,
    end_ms: i64,
    out: &mut Vec<Point>,
) -> Result<(), ChunkError> {
    let mut r = BitReader { bytes, pos: 0 };
    let truncated = |decoded| ChunkError::Truncated { decoded, count };
    if count == 0 {
        return Ok(());
    }
    let mut t = r.read_bits(64).ok_or(truncated(0))? as i64;
    let mut v_bits = r.read_bits(64).ok_or(truncated(0))?;
    let mut mode = match as_int(f64::from_bits(v_bits)) {
        Some(last) => ValueMode::Int { last, delta: 0 },
        None => ValueMode::Xor,
    };
    let (mut delta, mut window) = (0i64, (0u32, 0u32));
    for decoded in 0..count {
        if decoded > 0 {
            let dod = read_dod(&mut r).ok_or(truncated(decoded))?;
            delta = delta.wrapping_add(dod);
            t = t.wrapping_add(delta);
            v_bits =
                read_value(&mut r, &mut mode, &mut window, v_bits).ok_or(truncated(decoded))?;
        }
        if t > end_ms {
            break;
        }
        if t >= start_ms {
            out.push(Point {
                t,
                v: f64::from_bits(v_bits),
            });
        }
    }
    Ok(())
}

/// Reads what [`BitWriter::write_bucketed`] wrote with `payload_bits`: `Some(None)` when the
/// control is all ones (the caller's escape, `payload_bits.len() + 1` ones).
fn read_bucketed(r: &mut BitReader<'_>, payload_bits: &[u32]) -> Option<Option<i64>> {
    let ones = r.read_ones(payload_bits.len() as u32 + 1)? as usize;
    Some(match ones {
        0 => Some(0),
        k if k <= payload_bits.len() => {
            let nbits = payload_bits[k - 1];
            Some(unfit(r.read_bits(nbits)?, nbits))
        }
        _ => None,
    })
}

fn read_dod(r: &mut BitReader<'_>) -> Option<i64> {
    match read_bucketed(r, &DOD_BITS)? {
        Some(dod) => Some(dod),
        None => r.read_bits(64).map(|v| v as i64),
    }
}

/// Reads the next value's bits given the previous value's.
fn read_value(
    r: &mut BitReader<'_>,
    mode: &mut ValueMode,
    window: &mut (u32, u32),
    prev_bits: u64,
) -> Option<u64> {
    if let ValueMode::Int { last, delta } = *mode {
        if let Some(dod) = read_bucketed(r, &INT_BITS)? {
            let d = delta.wrapping_add(dod);
            let i = last.wrapping_add(d);
            *mode = ValueMode::Int { last: i, delta: d };
            return Some((i as f64).to_bits());
        }
        *mode = ValueMode::Xor;
    }
    Some(prev_bits ^ read_xor(r, window)?)
}

fn read_xor(r: &mut BitReader<'_>, window: &mut (u32, u32)) -> Option<u64> {
    if !r.read_bit()? {
        return Some(0);
    }
    if r.read_bit()? {
        let leading = r.read_bits(5)? as u32;
        let sig = match r.read_bits(6)? as u32 {
            0 => 64,
            s => s,
        };
        // Corrupt input may claim more bits than a word holds.
        let trailing = 64u32.checked_sub(leading + sig)?;
        *window = (leading, trailing);
    }
    let (leading, trailing) = *window;
    let sig = 64u32.checked_sub(leading + trailing)?;
    let bits = r.read_bits(sig)?;
    Some(bits.checked_shl(trailing).unwrap_or(0))
}

/// A [`Store`] keeping each series as a list of compressed [`Chunk`]s in a
/// [`SeriesTable`] (hash and inverted indexes); it never drops data.
#[derive(Debug, Clone, Default)]
pub struct ChunkedStore {
    table: SeriesTable,
}

impl ChunkedStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a sample; samples of a series must arrive in strictly increasing time order.
    pub fn append(&mut self, labels: Labels, t_ms: i64, v: f64) -> Result<(), StoreError> {
        let id = match self.table.find(&labels) {
            Some(id) => id,
            None => self.table.insert(labels.clone()),
        };
        let Some(entry) = self.table.entry_mut(id) else {
            return Err(StoreError::Backend(
                "series vanished while appending".into(),
            ));
        };
        entry.append(t_ms, v).map_err(|e| match e {
            ChunkError::OutOfOrder { t_ms, last_ms } => StoreError::OutOfOrder {
                labels: labels.to_string(),
                t_ms,
                last_ms,
            },
            other => StoreError::Backend(other.to_string()),
        })
    }

    /// Total encoded bytes and samples, for compression accounting.
    pub fn encoded_stats(&self) -> (usize, usize) {
        self.table.encoded_stats()
    }
}

impl Store for ChunkedStore {
    fn select(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Series>, StoreError> {
        self.table
            .select(matchers, start_ms, end_ms)
            .map_err(|e| StoreError::Backend(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promql::store::{MemStore, STALE_NAN, is_stale};
    use proptest::prelude::*;

    fn roundtrip(points: &[(i64, f64)]) -> Vec<(i64, u64)> {
        let mut c = Chunk::new();
        for (t, v) in points {
            c.append(*t, *v).unwrap();
        }
        c.decode()
            .unwrap()
            .iter()
            .map(|p| (p.t, p.v.to_bits()))
            .collect()
    }

    #[test]
    fn special_values_roundtrip_bitwise() {
        let pts = [
            (0, 1.0),
            (15_000, f64::NAN),
            (30_000, STALE_NAN),
            (45_000, f64::INFINITY),
            (60_000, -0.0),
            (61_000, f64::MIN_POSITIVE),
            (i64::MAX, f64::MAX),
        ];
        let got = roundtrip(&pts);
        let want: Vec<(i64, u64)> = pts.iter().map(|(t, v)| (*t, v.to_bits())).collect();
        assert_eq!(got, want);
        assert!(is_stale(f64::from_bits(got[2].1)));
    }

    #[test]
    fn regular_scrapes_cost_at_most_two_bytes_per_sample() {
        let mut c = Chunk::new();
        let mut v = 1_000.0;
        for i in 0..SAMPLES_PER_CHUNK as i64 {
            c.append(1_710_028_800_000 + i * 15_000, v).unwrap();
            v += (i % 7) as f64;
        }
        let per_sample = c.encoded_len() as f64 / c.len() as f64;
        assert!(per_sample <= 2.0, "{per_sample} bytes/sample");
        let mut g = Chunk::new();
        for i in 0..SAMPLES_PER_CHUNK as i64 {
            g.append(i * 15_000, 1.0).unwrap();
        }
        assert!(g.encoded_len() as f64 / (g.len() as f64) < 0.5);
    }

    #[test]
    fn integer_counters_cost_about_one_byte_per_sample_and_escape_to_xor() {
        // A counter at 0.1-3 increments/s scraped every 15 s, as `bench eval` generates.
        for rate in [0.1, 1.3, 3.0] {
            let mut c = Chunk::new();
            for i in 0..SAMPLES_PER_CHUNK as i64 {
                let v = (rate * (i * 15) as f64).floor();
                c.append(1_710_028_800_000 + i * 15_000, v).unwrap();
            }
            let per_sample = c.encoded_len() as f64 / c.len() as f64;
            assert!(per_sample <= 1.1, "rate {rate}: {per_sample} bytes/sample");
        }
        // Integers first, then a fraction, a staleness marker and integers again (in XOR).
        let pts = [
            (0, 5.0),
            (15_000, 7.0),
            (30_000, 7.0),
            (45_000, -3.0),
            (60_000, 2.0f64.powi(63)),
            (75_000, -(2.0f64.powi(63))),
            (90_000, 7.5),
            (105_000, STALE_NAN),
            (120_000, 9.0),
        ];
        let got = roundtrip(&pts);
        let want: Vec<(i64, u64)> = pts.iter().map(|(t, v)| (*t, v.to_bits())).collect();
        assert_eq!(got, want);
        // A chunk starting at -0 or NaN is XOR from the start.
        for first in [-0.0, f64::NAN, 0.5] {
            let pts = [(0, first), (1, 1.0), (2, 2.0)];
            let want: Vec<(i64, u64)> = pts.iter().map(|(t, v)| (*t, v.to_bits())).collect();
            assert_eq!(roundtrip(&pts), want);
        }
    }

    #[test]
    fn decode_range_stops_at_the_window() {
        let mut c = Chunk::new();
        for i in 0..100i64 {
            c.append(i * 10, i as f64).unwrap();
        }
        let mut out = Vec::new();
        c.decode_range(205, 400, &mut out).unwrap();
        assert_eq!(out.first().map(|p| p.t), Some(210));
        assert_eq!(out.last().map(|p| p.t), Some(400));
        assert_eq!(out.len(), 20);
    }

    #[test]
    fn out_of_order_is_rejected() {
        let mut c = Chunk::new();
        c.append(10, 1.0).unwrap();
        assert!(matches!(
            c.append(10, 2.0),
            Err(ChunkError::OutOfOrder { .. })
        ));
    }

    #[test]
    fn chunked_store_selects_like_mem_store() {
        let mut a = ChunkedStore::new();
        let mut b = MemStore::new();
        let l = Labels::from_pairs([("__name__", "x")]);
        for i in 0..500i64 {
            let v = (i as f64).sin();
            a.append(l.clone(), i * 1000, v).unwrap();
            b.append(l.clone(), i * 1000, v).unwrap();
        }
        assert!(a.append(l.clone(), 499_000, 0.0).is_err());
        for (s, e) in [
            (0, 0),
            (119_000, 121_000),
            (-5, 1_000_000),
            (250_500, 250_900),
        ] {
            assert_eq!(a.select(&[], s, e).unwrap(), b.select(&[], s, e).unwrap());
        }
        let (bytes, n) = a.encoded_stats();
        assert_eq!(n, 500);
        assert!(bytes > 0);
    }

    fn arb_points() -> impl Strategy<Value = Vec<(i64, u64)>> {
        let delta = prop_oneof![
            Just(15_000i64),
            1i64..20_000,
            1i64..10_000_000,
            1i64..(i64::MAX / 1024),
        ];
        let value = prop_oneof![
            any::<u64>(),
            Just(f64::NAN.to_bits()),
            Just(STALE_NAN.to_bits()),
            (0u32..1000).prop_map(|i| f64::from(i).to_bits()),
            (-1i64 << 62..1i64 << 62).prop_map(|i| (i as f64).to_bits()),
            Just(2.0f64.powi(63).to_bits()),
            Just((-0.0f64).to_bits()),
        ];
        (any::<i32>(), prop::collection::vec((delta, value), 0..200)).prop_map(|(start, steps)| {
            let mut t = i64::from(start);
            steps
                .into_iter()
                .map(|(d, v)| {
                    t = t.saturating_add(d);
                    (t, v)
                })
                .collect::<Vec<_>>()
        })
    }

    proptest! {
        #[test]
        fn any_series_roundtrips(points in arb_points()) {
            let mut pts: Vec<(i64, u64)> = points;
            pts.dedup_by_key(|p| p.0);
            let mut c = Chunk::new();
            for (t, v) in &pts {
                c.append(*t, f64::from_bits(*v)).unwrap();
            }
            let got: Vec<(i64, u64)> =
                c.decode().unwrap().iter().map(|p| (p.t, p.v.to_bits())).collect();
            prop_assert_eq!(got, pts);
        }

        /// Counters (integer runs with small steps, the occasional reset) round-trip.
        #[test]
        fn integer_runs_roundtrip(start in any::<i32>(), steps in prop::collection::vec(
            prop_oneof![0i64..50, Just(-1_000_000), Just(i64::MAX / 4)], 1..200)) {
            let mut c = Chunk::new();
            let mut v = i64::from(start);
            let mut want = Vec::new();
            for (i, d) in steps.iter().enumerate() {
                v = v.wrapping_add(*d);
                let f = v as f64;
                c.append(i as i64 * 15_000, f).unwrap();
                want.push((i as i64 * 15_000, f.to_bits()));
            }
            let got: Vec<(i64, u64)> =
                c.decode().unwrap().iter().map(|p| (p.t, p.v.to_bits())).collect();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn corrupt_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64), count in 0usize..100) {
            let _ = decode_bytes(&bytes, count);
        }
    }
}
