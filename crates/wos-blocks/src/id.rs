//! Chunk ids: the BLAKE3 hash of a chunk's bytes, written as 64 lowercase hex digits.

use std::fmt;
use std::str::FromStr;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The name of a chunk: the BLAKE3 hash of its bytes.
///
/// Written (`Display`, `FromStr`, serde) as exactly 64 lowercase hex digits,
/// so that one chunk has one spelling in file names, URLs and metadata.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkId(pub [u8; 32]);

impl ChunkId {
    /// The id of a chunk with these bytes.
    pub fn of(bytes: &[u8]) -> ChunkId {
        ChunkId(*blake3::hash(bytes).as_bytes())
    }

    /// The raw 32 hash bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 64 lowercase hex digits, without allocating.
    pub(crate) fn hex_digits(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        for (i, b) in self.0.iter().enumerate() {
            out[2 * i] = HEX[usize::from(b >> 4)];
            out[2 * i + 1] = HEX[usize::from(b & 0x0f)];
        }
        out
    }
}

impl From<blake3::Hash> for ChunkId {
    fn from(hash: blake3::Hash) -> ChunkId {
        ChunkId(*hash.as_bytes())
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.hex_digits();
        // Hex digits are ASCII, so this never fails; the fallback keeps the
        // code free of panics all the same.
        f.write_str(std::str::from_utf8(&digits).unwrap_or_default())
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkId({self})")
    }
}

/// Why a string is not a chunk id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseChunkIdError {
    #[error(
        "a chunk id is 64 lowercase hex digits (a BLAKE3 hash), but this one has {0} characters"
    )]
    Length(usize),
    #[error(
        "a chunk id is 64 lowercase hex digits (a BLAKE3 hash), but it has {found:?} at position {position}"
    )]
    Character { position: usize, found: char },
}

impl FromStr for ChunkId {
    type Err = ParseChunkIdError;

    fn from_str(s: &str) -> Result<ChunkId, ParseChunkIdError> {
        // Check characters first so that "not hex at all" is reported as such
        // rather than as a length problem.
        if let Some((position, found)) = s.chars().enumerate().find(|(_, c)| nibble(*c).is_none()) {
            return Err(ParseChunkIdError::Character { position, found });
        }
        let digits = s.as_bytes();
        if digits.len() != 64 {
            return Err(ParseChunkIdError::Length(digits.len()));
        }
        let mut id = [0u8; 32];
        for (byte, pair) in id.iter_mut().zip(digits.chunks_exact(2)) {
            let high = nibble(char::from(pair[0])).unwrap_or_default();
            let low = nibble(char::from(pair[1])).unwrap_or_default();
            *byte = (high << 4) | low;
        }
        Ok(ChunkId(id))
    }
}

/// The value of one lowercase hex digit; uppercase is refused so that a
/// chunk has a single spelling.
fn nibble(c: char) -> Option<u8> {
    match c {
        '0'..='9' => Some(c as u8 - b'0'),
        'a'..='f' => Some(c as u8 - b'a' + 10),
        _ => None,
    }
}

impl serde::Serialize for ChunkId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ChunkId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<ChunkId, D::Error> {
        deserializer.deserialize_str(HexVisitor)
    }
}

struct HexVisitor;

impl serde::de::Visitor<'_> for HexVisitor {
    type Value = ChunkId;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a chunk id: 64 lowercase hex digits")
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<ChunkId, E> {
        s.parse().map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn of_is_blake3() {
        let id = ChunkId::of(b"abc");
        assert_eq!(
            id.to_string(),
            "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
        );
    }

    #[test]
    fn display_parse_roundtrip() {
        let id = ChunkId::of(b"hello");
        let text = id.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(text.parse::<ChunkId>(), Ok(id));
        assert_eq!(format!("{id:?}"), format!("ChunkId({text})"));
    }

    #[test]
    fn parse_refuses_everything_else() {
        let good = ChunkId::of(b"x").to_string();
        assert_eq!("".parse::<ChunkId>(), Err(ParseChunkIdError::Length(0)));
        assert_eq!(
            good[..63].parse::<ChunkId>(),
            Err(ParseChunkIdError::Length(63))
        );
        assert_eq!(
            format!("{good}0").parse::<ChunkId>(),
            Err(ParseChunkIdError::Length(65))
        );
        let upper = good.to_uppercase();
        assert!(matches!(
            upper.parse::<ChunkId>(),
            Err(ParseChunkIdError::Character { .. })
        ));
        let mut bad = good.clone();
        bad.replace_range(10..11, "g");
        assert_eq!(
            bad.parse::<ChunkId>(),
            Err(ParseChunkIdError::Character {
                position: 10,
                found: 'g'
            })
        );
        let spaced = format!(" {}", &good[1..]);
        assert!(spaced.parse::<ChunkId>().is_err());
        let err = "zz".parse::<ChunkId>().unwrap_err().to_string();
        assert!(err.contains("64 lowercase hex"), "{err}");
    }

    #[test]
    fn serde_as_hex_string() {
        let id = ChunkId::of(b"serde");
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<ChunkId>(&json).unwrap(), id);
        let err = serde_json::from_str::<ChunkId>("\"abc\"").unwrap_err();
        assert!(err.to_string().contains("64 lowercase hex"), "{err}");
        assert!(serde_json::from_str::<ChunkId>("42").is_err());
    }
}
