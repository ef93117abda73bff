//! The engine declares mvccpb.KeyValue by hand (prost derive) to stay free of
//! generated code; it must encode exactly like the type generated from our
//! kv.proto, in both directions.

use proptest::prelude::*;
use prost::Message;
use strata_engine::mvcc::KeyValue as EngineKv;
use strata_proto::mvccpb::KeyValue as WireKv;

proptest! {
    #[test]
    fn engine_and_generated_key_values_are_wire_identical(
        key in prop::collection::vec(any::<u8>(), 1..40),
        value in prop::collection::vec(any::<u8>(), 0..100),
        create in any::<i64>(), modr in any::<i64>(), version in any::<i64>(), lease in any::<i64>(),
    ) {
        let e = EngineKv { key: key.clone(), create_revision: create, mod_revision: modr, version, value: value.clone(), lease };
        let w = WireKv { key, create_revision: create, mod_revision: modr, version, value, lease };
        prop_assert_eq!(e.encode_to_vec(), w.encode_to_vec());
        let back = WireKv::decode(e.encode_to_vec().as_slice()).unwrap();
        prop_assert_eq!(&back, &w);
        let back = EngineKv::decode(w.encode_to_vec().as_slice()).unwrap();
        prop_assert_eq!(back, e);
    }
}

#[test]
fn field_numbers_match_etcd() {
    // Field 1 (key, bytes): tag 0x0a; field 6 (lease, varint): tag 0x30.
    let w = WireKv {
        key: b"k".to_vec(),
        lease: 1,
        ..Default::default()
    };
    assert_eq!(w.encode_to_vec(), vec![0x0a, 1, b'k', 0x30, 1]);
}
