use std::fmt;

use serde::{Deserialize, Serialize};

/// Opaque bytes on the wire, encoded as one length-prefixed blob rather than a sequence of `u8`s
/// (bincode's serde path would otherwise encode each byte as a separate element).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Payload(#[serde(with = "serde_bytes")] pub Vec<u8>);

impl Payload {
    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }

    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<u8>> for Payload {
    fn from(v: Vec<u8>) -> Self {
        Self(v)
    }
}

impl From<&[u8]> for Payload {
    fn from(v: &[u8]) -> Self {
        Self(v.to_vec())
    }
}

impl fmt::Debug for Payload {
    // Payloads can be megabytes: show the size and a short prefix only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let head = &self.0[..self.0.len().min(16)];
        write!(
            f,
            "Payload({} bytes, {:?})",
            self.0.len(),
            String::from_utf8_lossy(head)
        )
    }
}
