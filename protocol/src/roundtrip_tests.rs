//! Every message type survives encode -> decode unchanged, through both the blocking and the
//! async codec, and every truncation of a valid frame is an error, never a panic.

use futures::{SinkExt, StreamExt};
use proptest::prelude::*;
use tokio_util::codec::{FramedRead, FramedWrite};

use crate::agent::{AgentMessage, ClientMessage};
use crate::codec::{self, CodecError, FrameCodec};
use crate::layer::{DaemonMessage, LayerMessage};

fn roundtrip<T>(msg: &T)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let frame = codec::encode(msg).expect("encode");
    let back: T = codec::read_frame(&mut frame.as_slice()).expect("decode");
    assert_eq!(&back, msg);
    for cut in 0..frame.len() {
        let res = codec::read_frame::<_, T>(&mut &frame[..cut]);
        assert!(
            matches!(res, Err(CodecError::Closed | CodecError::Truncated)),
            "cut at {cut}: {res:?}"
        );
    }
}

#[test]
fn credit_roundtrips_on_both_links_and_encodes_small() {
    use crate::outgoing::StreamMessage;
    let credit = StreamMessage::Credit {
        conn_id: crate::AGENT_CONN_ID_BIT | 5,
        bytes: crate::flow::CREDIT_BATCH,
    };
    roundtrip(&ClientMessage::Stream(credit.clone()));
    roundtrip(&AgentMessage::Stream(credit.clone()));
    // Credit is sent often: it must stay a few bytes on the wire.
    let frame = codec::encode(&ClientMessage::Stream(credit)).unwrap();
    assert!(frame.len() <= 24, "{} bytes", frame.len());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn client_messages_roundtrip(msg in any::<ClientMessage>()) { roundtrip(&msg); }

    #[test]
    fn agent_messages_roundtrip(msg in any::<AgentMessage>()) { roundtrip(&msg); }

    #[test]
    fn layer_messages_roundtrip(msg in any::<LayerMessage>()) { roundtrip(&msg); }

    #[test]
    fn daemon_messages_roundtrip(msg in any::<DaemonMessage>()) { roundtrip(&msg); }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = codec::read_frame::<_, ClientMessage>(&mut bytes.as_slice());
        let _ = codec::read_frame::<_, AgentMessage>(&mut bytes.as_slice());
        let _ = codec::decode::<LayerMessage>(&bytes);
        let _ = codec::decode::<DaemonMessage>(&bytes);
    }

    #[test]
    fn async_codec_roundtrips_a_sequence(msgs in proptest::collection::vec(any::<AgentMessage>(), 1..8)) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let (a, b) = tokio::io::duplex(64);
            let mut tx = FramedWrite::new(a, FrameCodec::<AgentMessage, ()>::new());
            let mut rx = FramedRead::new(b, FrameCodec::<(), AgentMessage>::new());
            let expected = msgs.clone();
            let writer = tokio::spawn(async move {
                for m in msgs { tx.send(m).await.unwrap(); }
            });
            for want in expected {
                let got = rx.next().await.expect("frame").expect("decode");
                assert_eq!(got, want);
            }
            writer.await.unwrap();
            assert!(rx.next().await.is_none());
        });
    }
}
