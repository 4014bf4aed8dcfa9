//! Frames: a u32 big-endian payload length, then a bincode 2 payload.
//!
//! Decoders check the length against [`MAX_FRAME_LEN`] before allocating, and bincode runs with
//! the same allocation limit, so no input makes a decoder allocate more than one frame's worth or
//! panic. Trailing bytes inside a frame are an error: they mean the peers disagree on a type.

use std::io::{self, Read, Write};

use bincode::config::{Configuration, Limit, LittleEndian, Varint};
use serde::Serialize;
use serde::de::DeserializeOwned;
use thiserror::Error;

/// Largest payload a frame may carry (16 MiB).
pub const MAX_FRAME_LEN: usize = 16 * 1024 * 1024;

/// Bytes of the length prefix.
pub const HEADER_LEN: usize = 4;

type Config = Configuration<LittleEndian, Varint, Limit<MAX_FRAME_LEN>>;

fn config() -> Config {
    bincode::config::standard().with_limit::<MAX_FRAME_LEN>()
}

/// Errors of framing and decoding.
#[derive(Debug, Error)]
pub enum CodecError {
    /// Reading or writing the stream failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// The peer closed the stream cleanly between frames.
    #[error("connection closed")]
    Closed,
    /// The stream ended inside a frame.
    #[error("connection closed in the middle of a frame")]
    Truncated,
    /// A frame announced more than [`MAX_FRAME_LEN`] bytes.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// Announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The payload is not a valid message.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// A message could not be encoded.
    #[error("cannot encode message: {0}")]
    Encode(String),
}

/// Encodes `msg` into a complete frame (length prefix included).
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, CodecError> {
    let mut frame = vec![0u8; HEADER_LEN];
    bincode::serde::encode_into_std_write(msg, &mut frame, config())
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    let len = frame.len() - HEADER_LEN;
    if len > MAX_FRAME_LEN {
        return Err(CodecError::FrameTooLarge {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    frame[..HEADER_LEN].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(frame)
}

/// Decodes one payload (without its length prefix). The whole payload must be consumed.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, CodecError> {
    if payload.len() > MAX_FRAME_LEN {
        return Err(CodecError::FrameTooLarge {
            len: payload.len(),
            max: MAX_FRAME_LEN,
        });
    }
    let (msg, used) = bincode::serde::decode_from_slice(payload, config())
        .map_err(|e| CodecError::Malformed(e.to_string()))?;
    if used != payload.len() {
        return Err(CodecError::Malformed(format!(
            "{} trailing bytes after the message",
            payload.len() - used
        )));
    }
    Ok(msg)
}

/// Parses a length prefix, rejecting lengths over the limit.
pub fn frame_len(header: [u8; HEADER_LEN]) -> Result<usize, CodecError> {
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_FRAME_LEN {
        return Err(CodecError::FrameTooLarge {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    Ok(len)
}

/// Writes one frame with a single `write_all`, so concurrent writers that each own the stream
/// through a lock never interleave partial frames.
pub fn write_frame<W: Write, T: Serialize>(w: &mut W, msg: &T) -> Result<(), CodecError> {
    let frame = encode(msg)?;
    w.write_all(&frame)?;
    Ok(())
}

/// Reads one frame. A clean end of stream before the first byte is [`CodecError::Closed`].
pub fn read_frame<R: Read, T: DeserializeOwned>(r: &mut R) -> Result<T, CodecError> {
    let mut header = [0u8; HEADER_LEN];
    read_exact_or_closed(r, &mut header)?;
    let len = frame_len(header)?;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => CodecError::Truncated,
        _ => CodecError::Io(e),
    })?;
    decode(&payload)
}

fn read_exact_or_closed<R: Read>(r: &mut R, buf: &mut [u8]) -> Result<(), CodecError> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return Err(CodecError::Closed),
            Ok(0) => return Err(CodecError::Truncated),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(CodecError::Io(e)),
        }
    }
    Ok(())
}

#[cfg(feature = "tokio")]
pub use self::async_codec::FrameCodec;

#[cfg(feature = "tokio")]
mod async_codec {
    use std::marker::PhantomData;

    use bytes::{Buf, BufMut, BytesMut};
    use serde::Serialize;
    use serde::de::DeserializeOwned;
    use tokio_util::codec::{Decoder, Encoder};

    use super::{CodecError, HEADER_LEN, config, decode, frame_len};

    /// A tokio-util codec that sends `Out` and receives `In` messages as frames.
    #[derive(Debug)]
    pub struct FrameCodec<Out, In> {
        _types: PhantomData<fn(Out) -> In>,
    }

    impl<Out, In> Default for FrameCodec<Out, In> {
        fn default() -> Self {
            Self {
                _types: PhantomData,
            }
        }
    }

    impl<Out, In> FrameCodec<Out, In> {
        /// A new codec.
        pub fn new() -> Self {
            Self::default()
        }
    }

    impl<Out: Serialize, In> Encoder<Out> for FrameCodec<Out, In> {
        type Error = CodecError;

        fn encode(&mut self, item: Out, dst: &mut BytesMut) -> Result<(), CodecError> {
            let start = dst.len();
            dst.put_u32(0);
            let mut writer = dst.writer();
            bincode::serde::encode_into_std_write(&item, &mut writer, config())
                .map_err(|e| CodecError::Encode(e.to_string()))?;
            let dst = writer.into_inner();
            let len = dst.len() - start - HEADER_LEN;
            if len > super::MAX_FRAME_LEN {
                dst.truncate(start);
                return Err(CodecError::FrameTooLarge {
                    len,
                    max: super::MAX_FRAME_LEN,
                });
            }
            dst[start..start + HEADER_LEN].copy_from_slice(&(len as u32).to_be_bytes());
            Ok(())
        }
    }

    impl<Out, In: DeserializeOwned> Decoder for FrameCodec<Out, In> {
        type Item = In;
        type Error = CodecError;

        fn decode(&mut self, src: &mut BytesMut) -> Result<Option<In>, CodecError> {
            if src.len() < HEADER_LEN {
                return Ok(None);
            }
            let len = frame_len(src[..HEADER_LEN].try_into().expect("4 header bytes"))?;
            if src.len() < HEADER_LEN + len {
                // Reserve at most what this (already length-checked) frame needs.
                src.reserve(HEADER_LEN + len - src.len());
                return Ok(None);
            }
            src.advance(HEADER_LEN);
            let payload = src.split_to(len);
            decode(&payload).map(Some)
        }

        fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<In>, CodecError> {
            match self.decode(src)? {
                Some(item) => Ok(Some(item)),
                None if src.is_empty() => Ok(None),
                None => Err(CodecError::Truncated),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::ClientMessage;

    #[test]
    fn oversize_length_is_rejected_before_reading_payload() {
        let mut input: &[u8] = &[0xff, 0xff, 0xff, 0xff, 1, 2, 3];
        let err = read_frame::<_, ClientMessage>(&mut input).unwrap_err();
        assert!(
            matches!(
                err,
                CodecError::FrameTooLarge {
                    len: 0xffff_ffff,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn empty_stream_is_closed_and_partial_header_is_truncated() {
        let mut empty: &[u8] = &[];
        assert!(matches!(
            read_frame::<_, ClientMessage>(&mut empty),
            Err(CodecError::Closed)
        ));
        let mut partial: &[u8] = &[0, 0];
        assert!(matches!(
            read_frame::<_, ClientMessage>(&mut partial),
            Err(CodecError::Truncated)
        ));
    }

    #[test]
    fn trailing_bytes_are_malformed() {
        let mut frame = encode(&ClientMessage::Ping(7)).unwrap();
        frame.push(0);
        let len = (frame.len() - HEADER_LEN) as u32;
        frame[..4].copy_from_slice(&len.to_be_bytes());
        let err = read_frame::<_, ClientMessage>(&mut frame.as_slice()).unwrap_err();
        assert!(matches!(err, CodecError::Malformed(_)), "{err:?}");
    }

    #[test]
    fn unknown_variant_is_malformed() {
        let frame = [0, 0, 0, 1, 200];
        let err = read_frame::<_, ClientMessage>(&mut frame.as_slice()).unwrap_err();
        assert!(matches!(err, CodecError::Malformed(_)), "{err:?}");
    }

    #[test]
    fn huge_inner_length_does_not_allocate() {
        // A Payload claiming u64::MAX bytes inside a tiny frame must fail, not allocate.
        let mut body = vec![2u8]; // ClientMessage::Stream
        body.push(0); // StreamMessage::Data
        body.push(1); // conn_id = 1
        body.push(253); // varint marker: a u64 length follows
        body.extend_from_slice(&u64::MAX.to_le_bytes());
        let err = decode::<ClientMessage>(&body).unwrap_err();
        let CodecError::Malformed(why) = err else {
            panic!("{err:?}")
        };
        assert!(why.to_lowercase().contains("limit"), "{why}");
    }
}
