//! The Prometheus remote-write 1.0 receiver: a snappy-compressed (block format) protobuf
//! `WriteRequest`, decoded into label sets and samples. This is the only module of the alerter
//! that touches the generated remote-write types: they stop here.

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

/// Decodes a request body under the given size caps.
pub fn decode(
    body: &[u8],
    body_max: usize,
    decoded_max: usize,
) -> Result<Vec<DecodedSeries>, RemoteWriteError> {
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
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| RemoteWriteError::NotSnappy(e.to_string()))?;
    let req = WriteRequest::decode(raw.as_slice())
        .map_err(|e| RemoteWriteError::NotProtobuf(e.to_string()))?;
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
mod tests {
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
}
