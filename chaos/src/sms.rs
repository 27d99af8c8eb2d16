//! SMS segment arithmetic shared by the SMS emulators: GSM-7 vs UCS-2 and the segment count
//! (providers.md §4.1).

use serde::Serialize;

/// The GSM 03.38 basic character set (one septet each).
const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";

/// The GSM 03.38 extension table (an escape plus a septet: two each).
const GSM7_EXTENDED: &str = "^{}\\[~]|€\u{c}";

/// How a message body is encoded on the air.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING-KEBAB-CASE")]
pub enum Encoding {
    #[serde(rename = "GSM-7")]
    Gsm7,
    #[serde(rename = "UCS-2")]
    Ucs2,
}

/// The encoding, length in encoding units, and segment count of a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Segments {
    pub encoding: Encoding,
    /// Septets for GSM-7, UTF-16 code units for UCS-2.
    pub units: usize,
    pub segments: usize,
}

/// Counts the segments `body` needs: 160/153 septets for GSM-7, 70/67 units for UCS-2.
pub fn segments(body: &str) -> Segments {
    let mut septets = 0usize;
    let mut gsm = true;
    for c in body.chars() {
        if GSM7_BASIC.contains(c) {
            septets += 1;
        } else if GSM7_EXTENDED.contains(c) {
            septets += 2;
        } else {
            gsm = false;
            break;
        }
    }
    let (encoding, units, single, multi) = if gsm {
        (Encoding::Gsm7, septets, 160, 153)
    } else {
        (Encoding::Ucs2, body.encode_utf16().count(), 70, 67)
    };
    let segments = match units {
        0 => 1,
        n if n <= single => 1,
        n => n.div_ceil(multi),
    };
    Segments {
        encoding,
        units,
        segments,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gsm7_boundaries() {
        assert_eq!(segments(&"a".repeat(160)).segments, 1);
        assert_eq!(segments(&"a".repeat(161)).segments, 2);
        assert_eq!(segments(&"a".repeat(306)).segments, 2);
        assert_eq!(segments(&"a".repeat(307)).segments, 3);
        let ext = segments("{}");
        assert_eq!((ext.encoding, ext.units), (Encoding::Gsm7, 4));
    }

    #[test]
    fn one_non_gsm_character_switches_everything_to_ucs2() {
        let s = segments(&format!("{}”", "a".repeat(69)));
        assert_eq!((s.encoding, s.units, s.segments), (Encoding::Ucs2, 70, 1));
        let s = segments(&format!("{}”", "a".repeat(70)));
        assert_eq!((s.units, s.segments), (71, 2));
        // Outside the BMP: two UTF-16 units.
        assert_eq!(segments("🔥").units, 2);
    }
}
