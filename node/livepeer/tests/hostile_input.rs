//! Bytes from an orchestrator (or a gateway, for the emulator) never panic:
//! decoding fails with an error or yields a message whose conversion is
//! bounded.

use std::collections::HashMap;

use livepeer::convert::{
    MAX_GPUS, MAX_PRICES, capabilities_from_proto, capabilities_to_proto,
    orchestrator_info_from_proto,
};
use livepeer::credentials::decode_header;
use livepeer::proto;
use livepeer::{Session, job_capabilities};
use mesh_core::capability::MAX_BITSTRING_WORDS;
use mesh_core::{OrchestratorId, Pipeline};
use proptest::prelude::*;
use prost::Message as _;

fn id() -> OrchestratorId {
    OrchestratorId::parse("127.0.0.1:8935").unwrap()
}

/// A rich, valid reply to mutate: every field the conversion reads is set.
fn rich_reply() -> Vec<u8> {
    let mut capabilities = job_capabilities(Pipeline::TextToImage, "sdxl");
    capabilities.version = "0.9.1".into();
    proto::OrchestratorInfo {
        transcoder: "https://127.0.0.1:8935".into(),
        price_info: Some(proto::PriceInfo {
            price_per_unit: 5,
            pixels_per_unit: 2,
            ..Default::default()
        }),
        address: vec![0; 20],
        capabilities: Some(capabilities),
        auth_token: Some(proto::AuthToken {
            token: vec![9; 32],
            session_id: "session".into(),
            expiration: 1_800,
        }),
        hardware: vec![proto::HardwareInformation {
            pipeline: "text-to-image".into(),
            model_id: "sdxl".into(),
            gpu_info: HashMap::from([(
                "0".into(),
                proto::GpuComputeInfo {
                    id: "0".into(),
                    name: "RTX".into(),
                    major: 8,
                    minor: 9,
                    memory_free: 1,
                    memory_total: 2,
                },
            )]),
        }],
        capabilities_prices: vec![proto::PriceInfo {
            price_per_unit: 1,
            pixels_per_unit: 1,
            capability: 27,
            constraint: "sdxl".into(),
        }],
        nodes: vec!["https://127.0.0.1:8936".into()],
        ..Default::default()
    }
    .encode_to_vec()
}

fn check_info(bytes: &[u8]) {
    if let Ok(info) = proto::OrchestratorInfo::decode(bytes) {
        if let Ok(converted) = orchestrator_info_from_proto(id(), &info) {
            assert!(converted.capabilities.bitstring.words().len() <= MAX_BITSTRING_WORDS);
            assert!(converted.prices.len() <= MAX_PRICES);
            assert!(converted.hardware.len() <= MAX_GPUS);
        }
        let _ = Session::from_reply(id(), &info, 0).map(|s| s.needs_refresh(i64::MAX));
    }
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        check_info(&bytes);
        if let Ok(proto::SegData { capabilities: Some(capabilities), .. }) =
            proto::SegData::decode(bytes.as_slice())
        {
            let _ = capabilities_from_proto(&capabilities);
        }
        if let Ok(capabilities) = proto::Capabilities::decode(bytes.as_slice()) {
            let converted = capabilities_from_proto(&capabilities);
            // Whatever we accepted converts back and forth stably.
            let again = capabilities_from_proto(&capabilities_to_proto(&converted));
            prop_assert_eq!(again, converted);
        }
        let _ = decode_header::<proto::SegData>(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn mutated_replies_never_panic(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = rich_reply();
        for (index, value) in edits {
            let at = index.index(bytes.len());
            bytes[at] = value;
        }
        check_info(&bytes);
        let at = cut.index(bytes.len());
        check_info(&bytes[..at]);
    }
}

#[test]
fn the_rich_reply_converts() {
    let info = proto::OrchestratorInfo::decode(rich_reply().as_slice()).unwrap();
    let session = Session::from_reply(id(), &info, 0).unwrap();
    assert_eq!(session.info.prices.len(), 1);
    assert_eq!(session.info.hardware.len(), 1);
    assert_eq!(
        session.info.model_state(Pipeline::TextToImage, "sdxl"),
        Some(false)
    );
}
