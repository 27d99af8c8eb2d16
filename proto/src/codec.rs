//! The one binary encoding of Tocsin's internal messages.
//!
//! postcard (compact, maintained, `serde`-based; bincode is unmaintained) prefixed with a
//! format byte so that a peer or a data directory written by an incompatible build is
//! refused with a clear error rather than decoded into garbage.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Version of the encoding. Bump on any incompatible change to an encoded type.
pub const FORMAT_VERSION: u8 = 1;

/// Largest encoded message accepted (64 MiB): bounds memory for a hostile or corrupt payload.
/// Snapshots are sent in chunks far smaller than this.
pub const MAX_ENCODED_BYTES: usize = 64 * 1024 * 1024;

/// Largest encoded *state* accepted (1 GiB): a snapshot (its file, or one installed from the
/// leader) and an answer to a read (a whole-machine replica). The cluster produces these
/// itself, and they grow with the alerts and notification streams held (about 1–2 KB per
/// active alert with its notification), so [`MAX_ENCODED_BYTES`] would cap a cluster at a
/// few tens of thousands of alerts: past it, a node could not restart from its own snapshot.
pub const MAX_STATE_BYTES: usize = 1024 * 1024 * 1024;

/// A payload that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot decode {what}: {reason}")]
pub struct DecodeError {
    /// What was being decoded (a field or message name), for the error message.
    pub what: &'static str,
    /// Why it failed.
    pub reason: String,
}

/// Encodes `value` with the format byte in front.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let out = vec![FORMAT_VERSION];
    // Serializing plain data into a Vec cannot fail: postcard only errors on I/O sinks that
    // run out of room and on types that refuse to serialize, neither of which we have.
    postcard::to_extend(value, out).expect("postcard encoding into a Vec is infallible")
}

/// Decodes a message produced by [`encode`] (at most [`MAX_ENCODED_BYTES`]); `what` names it
/// in the error.
pub fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, DecodeError> {
    decode_bounded(what, bytes, MAX_ENCODED_BYTES)
}

/// Decodes state produced by [`encode`] (a snapshot, a read's answer: at most
/// [`MAX_STATE_BYTES`]); `what` names it in the error.
pub fn decode_state<T: DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
) -> Result<T, DecodeError> {
    decode_bounded(what, bytes, MAX_STATE_BYTES)
}

fn decode_bounded<T: DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
    limit: usize,
) -> Result<T, DecodeError> {
    let err = |reason: String| DecodeError { what, reason };
    if bytes.len() > limit {
        return Err(err(format!(
            "{} bytes exceeds the limit of {limit}",
            bytes.len()
        )));
    }
    let (version, body) = bytes
        .split_first()
        .ok_or_else(|| err("empty payload".to_string()))?;
    if *version != FORMAT_VERSION {
        return Err(err(format!(
            "format version {version}, this build speaks {FORMAT_VERSION}"
        )));
    }
    let (value, rest) = postcard::take_from_bytes(body).map_err(|e| err(e.to_string()))?;
    if !rest.is_empty() {
        return Err(err(format!("{} trailing bytes", rest.len())));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Sample {
        id: u64,
        name: String,
        tags: Vec<(String, String)>,
    }

    #[test]
    fn round_trips() {
        let s = Sample {
            id: 7,
            name: "a".into(),
            tags: vec![("k".into(), "v".into())],
        };
        assert_eq!(decode::<Sample>("sample", &encode(&s)).unwrap(), s);
    }

    #[test]
    fn state_may_exceed_the_message_limit() {
        let big = vec![7u8; MAX_ENCODED_BYTES + 1];
        let bytes = encode(&big);
        let e = decode::<Vec<u8>>("message", &bytes).unwrap_err();
        assert!(e.to_string().contains("exceeds the limit"), "{e}");
        assert_eq!(decode_state::<Vec<u8>>("state", &bytes).unwrap(), big);
    }

    #[test]
    fn rejects_garbage_version_and_trailing_bytes() {
        assert!(decode::<Sample>("sample", &[]).is_err());
        let e = decode::<Sample>("sample", &[9, 1, 2]).unwrap_err();
        assert!(e.to_string().contains("format version 9"), "{e}");
        let mut bytes = encode(&Sample {
            id: 1,
            name: String::new(),
            tags: vec![],
        });
        bytes.push(0);
        let e = decode::<Sample>("sample", &bytes).unwrap_err();
        assert!(e.to_string().contains("trailing"), "{e}");
        let e = decode::<Sample>("sample", &[FORMAT_VERSION, 0xff, 0xff]).unwrap_err();
        assert_eq!(e.what, "sample");
    }
}
