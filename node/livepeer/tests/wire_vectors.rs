//! Golden wire vectors, derived by hand from the protocol description
//! (livepeer-protocol.md §1.4–§1.6, §2.1, §3) and the protobuf encoding rules:
//! a field key is `(field_number << 3) | wire_type` as a varint (wire type 0 =
//! varint, 1 = fixed64, 2 = length-delimited); proto3 fields holding their
//! default value are not written; a repeated scalar is "packed" (one
//! length-delimited field); a map entry is a message {1: key, 2: value}.
//!
//! The vectors show prost's encoding, which leaves default keys/values out of
//! map entries; Go writes them. Both decode to the same message, which
//! `go_style_map_entries_decode_the_same` checks.

use livepeer::credentials::{GatewayIdentity, decode_header, encode_header, segment_credentials};
use livepeer::proto;
use livepeer::{Session, job_capabilities};
use mesh_core::{JobBody, JobSpec, OrchestratorId, Pipeline};
use prost::Message as _;

/// Parses hex with whitespace and `#` comments, so vectors can be annotated.
fn hex(annotated: &str) -> Vec<u8> {
    let digits: String = annotated
        .lines()
        .map(|line| line.split('#').next().unwrap_or(""))
        .flat_map(|line| line.chars().filter(|c| c.is_ascii_hexdigit()))
        .collect();
    assert_eq!(digits.len() % 2, 0, "odd number of hex digits");
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).unwrap())
        .collect()
}

/// `Capabilities` for a text-to-image job with model "sdxl": 28 bytes.
const JOB_CAPABILITIES_T2I_SDXL: &str = "
    0a 04          # field 1 bitstring, packed: 4 bytes
    ff bf 81 60    #   varint 0xC005FFF: bits 0-6 = 7f, 7-13 = 3f, 14-20 = 01, 21-27 = 60
                   #   (defaults {0-12, 14, 26} = 0x4005FFF, plus bit 27 text-to-image)
    1a 04          # field 3 capacities, one map entry of 4 bytes
    08 1b          #   key (1, varint) = 27
    10 01          #   value (2, varint) = 1
    2a 0e          # field 5 constraints: 14 bytes (minVersion empty, not written)
    12 0c          #   field 2 PerCapability, one map entry of 12 bytes
    08 1b          #     key = 27
    12 08          #     value CapabilityConstraints: 8 bytes
    0a 06          #       field 1 models, one map entry of 6 bytes
    0a 04 73 64 78 6c #       key = \"sdxl\"; value ModelConstraint{warm: false} is
                   #         all defaults, so prost leaves it out
";

#[test]
fn orchestrator_request_for_text_to_image() {
    let expected = hex(&format!(
        "
        0a 14                      # field 1 address: 20 bytes
        0000000000 0000000000 0000000000 0000000000   # the zero address (offchain)
                                   # field 2 sig: empty offchain, not written
        1a 1c                      # field 3 capabilities: 28 bytes
        {JOB_CAPABILITIES_T2I_SDXL}
                                   # field 4 ignoreCapacityCheck: false, not written
        "
    ));
    assert_eq!(expected.len(), 52);

    let request = GatewayIdentity::offchain()
        .orchestrator_request(Some(job_capabilities(Pipeline::TextToImage, "sdxl")));
    assert_eq!(request.encode_to_vec(), expected);

    let decoded = proto::OrchestratorRequest::decode(expected.as_slice()).unwrap();
    assert_eq!(decoded, request);
    assert_eq!(decoded.encode_to_vec(), expected);
}

fn session_with_token() -> Session {
    let reply = proto::OrchestratorInfo {
        transcoder: "https://o.test:8935".into(),
        auth_token: Some(proto::AuthToken {
            token: vec![1, 2, 3, 4],
            session_id: "s1".into(),
            expiration: 1800,
        }),
        ..Default::default()
    };
    Session::from_reply(OrchestratorId::parse("o.test").unwrap(), &reply, 0).unwrap()
}

#[test]
fn segment_credentials_for_text_to_image() {
    let expected = hex(&format!(
        "
        0a 07 32 37 5f 73 64 78 6c  # field 1 manifestId = \"27_sdxl\"
                                    # field 2 seq = 0, not written
        1a 20                       # field 3 hash: 32 bytes of keccak256(\"\")
        c5d2460186f7233c927e7db2dcc703c0 e500b653ca82273b7bfad8045d85a470
        22 07 69 6e 76 61 6c 69 64  # field 4 profiles = \"invalid\"
                                    # field 5 sig: empty offchain; field 6 duration = 0
        3a 1c                       # field 7 capabilities: 28 bytes
        {JOB_CAPABILITIES_T2I_SDXL}
        42 0d                       # field 8 auth_token: 13 bytes
        0a 04 01 02 03 04           #   field 1 token
        12 02 73 31                 #   field 2 session_id = \"s1\"
        18 88 0e                    #   field 3 expiration = 1800 = 0b1110_0001000: 0x88, 0x0e
        "
    ));
    assert_eq!(expected.len(), 97);

    let job = JobSpec {
        pipeline: Pipeline::TextToImage,
        model_id: "sdxl".into(),
        body: JobBody::Json(b"{\"prompt\":\"a cat\"}".to_vec()),
        stream: false,
        units: 512 * 512,
    };
    let credentials = segment_credentials(&session_with_token(), &job);
    assert_eq!(credentials.encode_to_vec(), expected);

    let decoded = proto::SegData::decode(expected.as_slice()).unwrap();
    assert_eq!(decoded, credentials);
    assert_eq!(decoded.encode_to_vec(), expected);

    // The header is the same bytes in standard base64.
    let header = encode_header(&credentials);
    assert_eq!(
        decode_header::<proto::SegData>(&header).unwrap(),
        credentials
    );
    use base64::Engine as _;
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(&header)
            .unwrap(),
        expected
    );
}

#[test]
fn go_style_map_entries_decode_the_same() {
    // Go writes both key and value of every map entry, even when the value is
    // an empty message: the model entry becomes 10 bytes with "12 00".
    let go_encoded = hex("
        0a 04 ff bf 81 60       # bitstring
        1a 04 08 1b 10 01       # capacities {27: 1}
        2a 10                   # constraints: 16 bytes
        12 0e                   #   PerCapability entry: 14 bytes
        08 1b                   #     key 27
        12 0a                   #     value: 10 bytes
        0a 08                   #       models entry: 8 bytes
        0a 04 73 64 78 6c       #         key \"sdxl\"
        12 00                   #         value: empty ModelConstraint, written by Go
    ");
    let decoded = proto::Capabilities::decode(go_encoded.as_slice()).unwrap();
    assert_eq!(decoded, job_capabilities(Pipeline::TextToImage, "sdxl"));
}

#[test]
fn unknown_fields_are_skipped() {
    let bytes = hex("
        0a 13 68747470733a2f2f 6f2e74657374 3a38393335   # field 1 transcoder \"https://o.test:8935\"
        98 06 01                # field 99, varint: key 99 << 3 = 792 = 0x98 0x06; value 1
        7a 03 61 62 63          # field 15, length-delimited \"abc\"
        a1 01 0102030405060708  # field 20, fixed64: key 161 = 0xa1 0x01
        32 09                   # field 6 auth_token: 9 bytes
        12 02 73 31             #   session_id \"s1\"
        18 88 0e                #   expiration 1800
        28 07                   #   field 5, unknown inside AuthToken: varint 7
    ");
    let info = proto::OrchestratorInfo::decode(bytes.as_slice()).unwrap();
    assert_eq!(info.transcoder, "https://o.test:8935");
    let token = info.auth_token.clone().unwrap();
    assert_eq!((token.session_id.as_str(), token.expiration), ("s1", 1800));

    // Re-encoding keeps what we know and drops the rest.
    let reencoded = hex("
        0a 13 68747470733a2f2f 6f2e74657374 3a38393335
        32 07 12 02 73 31 18 88 0e
    ");
    assert_eq!(info.encode_to_vec(), reencoded);
}

#[test]
fn truncated_and_malformed_messages_are_errors() {
    let request = GatewayIdentity::offchain()
        .orchestrator_request(Some(job_capabilities(Pipeline::TextToImage, "sdxl")))
        .encode_to_vec();
    for cut in 1..request.len() {
        // Every strict prefix ends inside a field (the message is one run of
        // length-delimited fields whose lengths point past the cut) or is a
        // complete shorter message; neither may panic.
        let _ = proto::OrchestratorRequest::decode(&request[..cut]);
    }
    assert!(proto::OrchestratorRequest::decode(&request[..10]).is_err());
    // Wire type 7 does not exist.
    assert!(proto::OrchestratorInfo::decode(hex("0f 00").as_slice()).is_err());
    // A length pointing past the end.
    assert!(proto::SegData::decode(hex("0a 7f 00").as_slice()).is_err());
}
