//! Feeds arbitrary bytes to every decoder of both links: the blocking frame reader, the payload
//! decoder and the tokio codec. Any panic or allocation past the frame limit is a bug.
//!
//! Run with `cargo +nightly fuzz run decode` from `protocol/` (cargo-fuzz); `tests/run` builds it
//! with the stable toolchain so it cannot rot.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tether_protocol::agent::{AgentMessage, ClientMessage};
use tether_protocol::codec::{self, FrameCodec};
use tether_protocol::layer::{DaemonMessage, LayerMessage};
use tokio_util::codec::Decoder;

fn all_decoders<T: serde::de::DeserializeOwned>(data: &[u8]) {
    let _ = codec::read_frame::<_, T>(&mut &data[..]);
    let _ = codec::decode::<T>(data);
    let mut buf = BytesMut::from(data);
    let mut framed = FrameCodec::<(), T>::new();
    // Drain every whole frame, then the end-of-stream check, until an error or no progress.
    while let Ok(Some(_)) = framed.decode(&mut buf) {}
    let _ = framed.decode_eof(&mut buf);
}

fuzz_target!(|data: &[u8]| {
    all_decoders::<ClientMessage>(data);
    all_decoders::<AgentMessage>(data);
    all_decoders::<LayerMessage>(data);
    all_decoders::<DaemonMessage>(data);
});
