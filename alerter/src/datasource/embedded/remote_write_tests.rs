//! The remote-write decoder against prost's, the series cache, and bad bodies.

use super::*;
use crate::promql::{STALE_NAN, is_stale};

#[test]
fn round_trip_keeps_labels_and_special_values() {
    let l = Labels::from_pairs([("__name__", "m"), ("a", "b")]);
    let series = vec![(l, vec![(1, f64::NAN), (2, STALE_NAN), (3, -1e-300)])];
    let back = decode(&encode(&series), 1 << 20, 1 << 20).unwrap();
    assert_eq!(back[0].0, series[0].0);
    assert!(back[0].1[0].1.is_nan() && !is_stale(back[0].1[0].1));
    assert!(is_stale(back[0].1[1].1));
    assert_eq!(back[0].1[2], (3, -1e-300));
}

#[test]
fn bad_bodies_are_refused_by_kind() {
    assert!(matches!(
        decode(
            b"definitely not snappy \xff\xff\xff\xff\xff",
            1 << 20,
            1 << 20
        ),
        Err(RemoteWriteError::NotSnappy(_))
    ));
    let not_proto = snap::raw::Encoder::new()
        .compress_vec(b"\xff\xff\xff garbage")
        .unwrap();
    assert!(matches!(
        decode(&not_proto, 1 << 20, 1 << 20),
        Err(RemoteWriteError::NotProtobuf(_))
    ));
    let big = snap::raw::Encoder::new()
        .compress_vec(&vec![0u8; 100_000])
        .unwrap();
    assert!(matches!(
        decode(&big, 1 << 20, 50_000),
        Err(RemoteWriteError::TooLarge { len: 100_000, .. })
    ));
    assert!(matches!(
        decode(&big, 10, 1 << 20),
        Err(RemoteWriteError::TooLarge { .. })
    ));
}

/// The decoder this module had before [`walk`]: prost's types, then [`Labels::from_pairs`].
fn prost_decode(raw: &[u8]) -> Result<Vec<DecodedSeries>, prost::DecodeError> {
    let req = WriteRequest::decode(raw)?;
    Ok(req
        .timeseries
        .into_iter()
        .map(|ts| {
            let labels = Labels::from_pairs(ts.labels.into_iter().map(|l| (l.name, l.value)));
            let samples = ts
                .samples
                .into_iter()
                .map(|s| (s.timestamp, s.value))
                .collect();
            (labels, samples)
        })
        .collect())
}

/// Decodes protobuf bytes (no snappy) the new way, as [`decode`] does after decompressing.
fn walk_decode(raw: &[u8]) -> Result<Vec<DecodedSeries>, RemoteWriteError> {
    let mut series = Vec::new();
    let mut samples = Vec::new();
    walk(raw, &mut series, &mut samples)?;
    series
        .iter()
        .map(|s| Ok((labels_of(&s.labels)?, samples[s.samples.clone()].to_vec())))
        .collect()
}

/// Series and samples with values compared bit for bit (NaNs included).
fn bits(d: &[DecodedSeries]) -> Vec<(Labels, Vec<(i64, u64)>)> {
    d.iter()
        .map(|(l, s)| {
            (
                l.clone(),
                s.iter().map(|(t, v)| (*t, v.to_bits())).collect(),
            )
        })
        .collect()
}

/// Both decoders agree on `raw`: the same series, or both refuse it.
fn agree(raw: &[u8]) -> Result<(), String> {
    match (prost_decode(raw), walk_decode(raw)) {
        (Ok(a), Ok(b)) if bits(&a) == bits(&b) => Ok(()),
        (Err(_), Err(RemoteWriteError::NotProtobuf(_))) => Ok(()),
        (a, b) => Err(format!("{raw:02x?}: prost {a:?}, walk {b:?}")),
    }
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited field.
fn field(num: u64, payload: &[u8], out: &mut Vec<u8>) {
    varint(num << 3 | 2, out);
    varint(payload.len() as u64, out);
    out.extend_from_slice(payload);
}

fn label(name: &[u8], value: &[u8]) -> Vec<u8> {
    let mut l = Vec::new();
    field(1, name, &mut l);
    field(2, value, &mut l);
    l
}

fn sample_bytes(t: i64, v: f64) -> Vec<u8> {
    let mut s = vec![0x09];
    s.extend_from_slice(&v.to_le_bytes());
    s.push(0x10);
    varint(t as u64, &mut s);
    s
}

#[test]
fn unusual_encodings_decode_as_prost_decodes_them() {
    let mut ts = Vec::new();
    // Labels with samples between them, unknown fields of every wire type, a group.
    field(1, &label(b"__name__", b"m"), &mut ts);
    field(2, &sample_bytes(-5, 1.5), &mut ts);
    ts.extend_from_slice(&[0x18, 0x96, 0x01]); // field 3, varint
    ts.extend_from_slice(&[0x25, 1, 2, 3, 4]); // field 4, fixed32
    ts.extend_from_slice(&[0x2b, 0x08, 0x01, 0x2c]); // field 5, group holding a varint
    field(1, &label(b"b", b"x"), &mut ts);
    field(1, &label(b"a", b""), &mut ts); // empty value: dropped
    field(1, &label(b"b", b"y"), &mut ts); // duplicate: the later wins
    // A label with its fields reversed and repeated, and an unknown field.
    let mut odd = Vec::new();
    field(2, b"v1", &mut odd);
    field(1, b"c", &mut odd);
    field(2, b"v2", &mut odd);
    odd.extend_from_slice(&[0x19, 0, 0, 0, 0, 0, 0, 0, 0]); // field 3, fixed64
    field(1, &odd, &mut ts);
    // A sample with its fields reversed and repeated; an empty sample (zeros).
    let mut s = Vec::new();
    s.push(0x10);
    varint(7, &mut s);
    s.push(0x09);
    s.extend_from_slice(&2.5f64.to_le_bytes());
    s.push(0x10);
    varint(9, &mut s);
    field(2, &s, &mut ts);
    field(2, &[], &mut ts);
    let mut req = Vec::new();
    field(1, &ts, &mut req);
    req.extend_from_slice(&[0x10, 0x01]); // WriteRequest field 2, varint (reserved)
    field(3, b"metadata", &mut req);
    field(1, &[], &mut req); // an empty series
    agree(&req).unwrap();
    let got = walk_decode(&req).unwrap();
    assert_eq!(
        got[0].0,
        Labels::from_pairs([("__name__", "m"), ("b", "y"), ("c", "v2")])
    );
    assert_eq!(got[0].1, vec![(-5, 1.5), (9, 2.5), (0, 0.0)]);
    assert_eq!(got[1], (Labels::empty(), vec![]));
    // Scattered labels are gathered; contiguous ones borrowed.
    let mut series = Vec::new();
    walk(&req, &mut series, &mut Vec::new()).unwrap();
    assert!(matches!(series[0].labels, Cow::Owned(_)));
    let plain = remote_write_body(&[(Labels::from_pairs([("__name__", "m")]), vec![(1, 1.0)])]);
    walk(&plain, &mut series, &mut Vec::new()).unwrap();
    assert!(matches!(series[2].labels, Cow::Borrowed(_)));
}

/// The protobuf bytes (no snappy) of `series`.
fn remote_write_body(series: &[DecodedSeries]) -> Vec<u8> {
    snap::raw::Decoder::new()
        .decompress_vec(&encode(series))
        .unwrap()
}

#[test]
fn malformed_protobuf_is_refused_as_prost_refuses_it() {
    let good = remote_write_body(&[(
        Labels::from_pairs([("__name__", "m"), ("job", "j")]),
        vec![(1_700_000_000_000, 1.0), (1_700_000_015_000, f64::NAN)],
    )]);
    agree(&good).unwrap();
    // Every truncation, and every single-byte change to a few values.
    for end in 0..good.len() {
        agree(&good[..end]).unwrap();
    }
    for i in 0..good.len() {
        for b in [0x00, 0x01, 0x07, 0x0a, 0x0f, 0x7f, 0x80, 0xc3, 0xff] {
            let mut bad = good.clone();
            bad[i] = b;
            agree(&bad).unwrap();
        }
    }
    // Not UTF-8 in a label, a zero tag, a wrong wire type, an over-long varint, a group end.
    let mut not_utf8 = Vec::new();
    field(1, &label(b"__name__", b"\xff\xfe"), &mut not_utf8);
    let mut req = Vec::new();
    field(1, &not_utf8, &mut req);
    for bad in [
        req,
        vec![0x00, 0x00],
        vec![0x08, 0x01],
        vec![
            0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
        ],
        vec![0x1c],
        vec![0x1b, 0x24],
    ] {
        assert!(prost_decode(&bad).is_err());
        assert!(matches!(
            walk_decode(&bad),
            Err(RemoteWriteError::NotProtobuf(_))
        ));
    }
}

proptest::proptest! {
    /// Any request prost encodes decodes to what prost decodes.
    #[test]
    fn any_request_decodes_as_prost_decodes_it(
        series in proptest::collection::vec(
            (
                proptest::collection::vec(("[a-z_]{0,3}", "\\PC{0,4}"), 0..5),
                proptest::collection::vec(
                    (proptest::num::i64::ANY, proptest::num::f64::ANY), 0..4),
            ),
            0..6,
        ),
    ) {
        use tocsin_proto::pb::prometheus::{Label, Sample, TimeSeries};
        let req = WriteRequest {
            timeseries: series
                .iter()
                .map(|(l, s)| TimeSeries {
                    labels: l
                        .iter()
                        .map(|(n, v)| Label { name: n.clone(), value: v.clone() })
                        .collect(),
                    samples: s
                        .iter()
                        .map(|(t, v)| Sample { value: *v, timestamp: *t })
                        .collect(),
                })
                .collect(),
        };
        let raw = req.encode_to_vec();
        proptest::prop_assert!(agree(&raw).is_ok(), "{:?}", agree(&raw));
    }

    /// Any bytes: both decoders refuse them or decode them alike.
    #[test]
    fn any_bytes_are_refused_or_decoded_as_prost_does(
        raw in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
    ) {
        proptest::prop_assert!(agree(&raw).is_ok(), "{:?}", agree(&raw));
    }
}

#[test]
fn the_series_cache_builds_labels_once_and_stays_bounded() {
    let body = |i: usize| {
        let l = Labels::from_pairs([("__name__", "m".to_string()), ("i", i.to_string())]);
        remote_write_body(&[(l, vec![(1, 1.0)])])
    };
    let key = |raw: &[u8]| {
        let mut series = Vec::new();
        walk(raw, &mut series, &mut Vec::new()).unwrap();
        series[0].labels.to_vec()
    };
    let mut cache = SeriesCache::new(4);
    let (k0, k1) = (key(&body(0)), key(&body(1)));
    let first = cache.resolve(&k0).unwrap();
    assert_eq!(first.get("i"), "0");
    assert!(Labels::same_allocation(
        &first,
        &cache.resolve(&k0).unwrap()
    ));
    assert_ne!(cache.resolve(&k1).unwrap().get("i"), "0");
    for i in 2..50 {
        cache.resolve(&key(&body(i))).unwrap();
        assert!(cache.len() <= 4, "{} entries", cache.len());
    }
    // Bad label bytes are refused and not cached.
    let mut bad = Vec::new();
    field(1, &label(b"__name__", b"\xff"), &mut bad);
    assert!(matches!(
        cache.resolve(&bad),
        Err(RemoteWriteError::NotProtobuf(_))
    ));
    assert!(cache.len() <= 4);
    assert!(!cache.is_empty());
}
