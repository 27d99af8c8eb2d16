//! Gorilla-compressed sample chunks (delta-of-delta timestamps, XOR'd values) and a
//! [`ChunkedStore`] built on them.
//!
//! The bit layout follows Prometheus's XOR chunk: the first sample is stored raw (64-bit
//! timestamp, 64-bit value); every later timestamp is a delta-of-delta in a `0` / `10`+14 /
//! `110`+17 / `1110`+20 / `1111`+64-bit bucket; every later value is the XOR with its
//! predecessor, stored as `0` (same), `10`+meaningful bits (fits the previous window) or
//! `11`+5-bit leading zeros+6-bit length+bits. Regular scrapes of slowly changing series cost
//! one to two bytes per sample. Values round-trip bit for bit, NaN payloads and staleness
//! markers included.

use std::collections::BTreeMap;

use promql_parser::label::Matcher;

use super::labels::Labels;
use super::store::{Point, Series, Store, StoreError, matches_all};

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
        if self.len.is_multiple_of(8) {
            self.bytes.push(0);
        }
        if bit {
            let idx = self.len / 8;
            self.bytes[idx] |= 0x80 >> (self.len % 8);
        }
        self.len += 1;
    }

    /// Writes the low `n` bits of `v`, most significant first.
    fn write_bits(&mut self, v: u64, n: u32) {
        for i in (0..n).rev() {
            self.write_bit((v >> i) & 1 == 1);
        }
    }
}

#[derive(Debug)]
struct BitReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl BitReader<'_> {
    fn read_bit(&mut self) -> Option<bool> {
        let byte = self.bytes.get(self.pos / 8)?;
        let bit = byte & (0x80 >> (self.pos % 8)) != 0;
        self.pos += 1;
        Some(bit)
    }

    fn read_bits(&mut self, n: u32) -> Option<u64> {
        let mut v = 0u64;
        for _ in 0..n {
            v = (v << 1) | u64::from(self.read_bit()?);
        }
        Some(v)
    }
}

/// Delta-of-delta buckets: (control bits, control length, payload bits).
const DOD_BUCKETS: [(u64, u32, u32); 3] = [(0b10, 2, 14), (0b110, 3, 17), (0b1110, 4, 20)];

/// Whether `x` fits Prometheus's signed `nbits` range `[-(2^(n-1)-1), 2^(n-1)]`.
fn fits(x: i64, nbits: u32) -> bool {
    let half = 1i64 << (nbits - 1);
    -(half - 1) <= x && x <= half
}

/// Sign-extends an `nbits` payload written by [`fits`]-checked encoding.
fn unfit(v: u64, nbits: u32) -> i64 {
    let half = 1u64 << (nbits - 1);
    if v > half {
        v as i64 - (1i64 << nbits)
    } else {
        v as i64
    }
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
            self.write_xor(v_bits ^ self.last_v_bits);
        }
        self.last_t = t;
        self.last_v_bits = v_bits;
        self.count += 1;
        Ok(())
    }

    fn write_dod(&mut self, dod: i64) {
        if dod == 0 {
            self.bits.write_bit(false);
            return;
        }
        for (ctrl, ctrl_len, nbits) in DOD_BUCKETS {
            if fits(dod, nbits) {
                self.bits.write_bits(ctrl, ctrl_len);
                self.bits.write_bits(dod as u64, nbits);
                return;
            }
        }
        self.bits.write_bits(0b1111, 4);
        self.bits.write_bits(dod as u64, 64);
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
}

/// Decodes `count` samples from encoded chunk bytes. Never panics on corrupt input.
pub fn decode_bytes(bytes: &[u8], count: usize) -> Result<Vec<Point>, ChunkError> {
    let mut r = BitReader { bytes, pos: 0 };
    // A sample takes at least two bits, which bounds the allocation on corrupt counts.
    let mut out = Vec::with_capacity(count.min(bytes.len() * 4 + 1));
    let truncated = |decoded| ChunkError::Truncated { decoded, count };
    if count == 0 {
        return Ok(out);
    }
    let mut t = r.read_bits(64).ok_or(truncated(0))? as i64;
    let mut v_bits = r.read_bits(64).ok_or(truncated(0))?;
    out.push(Point {
        t,
        v: f64::from_bits(v_bits),
    });
    let (mut delta, mut window) = (0i64, (0u32, 0u32));
    while out.len() < count {
        let decoded = out.len();
        let dod = read_dod(&mut r).ok_or(truncated(decoded))?;
        delta = delta.wrapping_add(dod);
        t = t.wrapping_add(delta);
        v_bits ^= read_xor(&mut r, &mut window).ok_or(truncated(decoded))?;
        out.push(Point {
            t,
            v: f64::from_bits(v_bits),
        });
    }
    Ok(out)
}

fn read_dod(r: &mut BitReader<'_>) -> Option<i64> {
    let mut ones = 0;
    while ones < 4 && r.read_bit()? {
        ones += 1;
    }
    Some(match ones {
        0 => 0,
        1..=3 => {
            let nbits = DOD_BUCKETS[ones - 1].2;
            unfit(r.read_bits(nbits)?, nbits)
        }
        _ => r.read_bits(64)? as i64,
    })
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

/// A [`Store`] keeping each series as a list of compressed [`Chunk`]s.
#[derive(Debug, Clone, Default)]
pub struct ChunkedStore {
    series: BTreeMap<Labels, Vec<Chunk>>,
}

impl ChunkedStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a sample; samples of a series must arrive in strictly increasing time order.
    pub fn append(&mut self, labels: Labels, t_ms: i64, v: f64) -> Result<(), StoreError> {
        let chunks = self.series.entry(labels.clone()).or_default();
        if chunks.last().is_none_or(|c| c.len() >= SAMPLES_PER_CHUNK) {
            if let Some((_, last)) = chunks.last().and_then(Chunk::time_range)
                && t_ms <= last
            {
                return Err(StoreError::OutOfOrder {
                    labels: labels.to_string(),
                    t_ms,
                    last_ms: last,
                });
            }
            chunks.push(Chunk::new());
        }
        let Some(chunk) = chunks.last_mut() else {
            return Err(StoreError::Backend("chunk list unexpectedly empty".into()));
        };
        chunk.append(t_ms, v).map_err(|e| match e {
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
        self.series
            .values()
            .flatten()
            .fold((0, 0), |(b, n), c| (b + c.encoded_len(), n + c.len()))
    }
}

impl Store for ChunkedStore {
    fn select(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Series>, StoreError> {
        let mut out = Vec::new();
        for (labels, chunks) in &self.series {
            if !matches_all(labels, matchers) {
                continue;
            }
            let mut points = Vec::new();
            for c in chunks {
                let Some((first, last)) = c.time_range() else {
                    continue;
                };
                if last < start_ms || first > end_ms {
                    continue;
                }
                let decoded = c.decode().map_err(|e| StoreError::Backend(e.to_string()))?;
                points.extend(
                    decoded
                        .into_iter()
                        .filter(|p| p.t >= start_ms && p.t <= end_ms),
                );
            }
            if !points.is_empty() {
                out.push(Series {
                    labels: labels.clone(),
                    points,
                });
            }
        }
        Ok(out)
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

        #[test]
        fn corrupt_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64), count in 0usize..100) {
            let _ = decode_bytes(&bytes, count);
        }
    }
}
