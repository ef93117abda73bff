//! The value stored under each revision in the `key` bucket: etcd's
//! `mvccpb.KeyValue`. It is declared here with prost's derive (same field
//! numbers as etcd's kv.proto), so the engine needs no generated code; the
//! proto crate's tests check that both encode identically.

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct KeyValue {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(int64, tag = "2")]
    pub create_revision: i64,
    #[prost(int64, tag = "3")]
    pub mod_revision: i64,
    #[prost(int64, tag = "4")]
    pub version: i64,
    #[prost(bytes = "vec", tag = "5")]
    pub value: Vec<u8>,
    #[prost(int64, tag = "6")]
    pub lease: i64,
}
