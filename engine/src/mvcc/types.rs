//! Requests and responses of the store, shaped like etcd's KV API so the
//! server maps the protobuf messages field by field.

use super::kv::KeyValue;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SortOrder {
    #[default]
    None,
    Ascend,
    Descend,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SortTarget {
    #[default]
    Key,
    Version,
    Create,
    Mod,
    Value,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeRequest {
    pub key: Vec<u8>,
    /// etcd's rules: empty = `key` alone, `"\0"` = every key >= `key`,
    /// otherwise keys in `[key, range_end)`.
    pub range_end: Vec<u8>,
    /// At most this many keys (0: no limit); `more` says whether it cut.
    pub limit: i64,
    /// Read at this revision (0 or less: the current one).
    pub revision: i64,
    pub sort_order: SortOrder,
    pub sort_target: SortTarget,
    pub keys_only: bool,
    pub count_only: bool,
    pub min_mod_revision: i64,
    pub max_mod_revision: i64,
    pub min_create_revision: i64,
    pub max_create_revision: i64,
}

impl RangeRequest {
    /// Whether a key-value of these revisions passes the revision filters.
    pub fn passes_filters(&self, mod_revision: i64, create_revision: i64) -> bool {
        (self.max_mod_revision == 0 || mod_revision <= self.max_mod_revision)
            && (self.min_mod_revision == 0 || mod_revision >= self.min_mod_revision)
            && (self.max_create_revision == 0 || create_revision <= self.max_create_revision)
            && (self.min_create_revision == 0 || create_revision >= self.min_create_revision)
    }

    /// The order the answer is sorted in after the index's key order, as
    /// etcd decides it: a target other than KEY with no order sorts
    /// ascending; KEY ascending is the index's order already (None).
    pub fn effective_order(&self) -> SortOrder {
        match (self.sort_target, self.sort_order) {
            (t, SortOrder::None) if t != SortTarget::Key => SortOrder::Ascend,
            (SortTarget::Key, SortOrder::Ascend) => SortOrder::None,
            (_, o) => o,
        }
    }

    /// How many keys to take from the index: all (None) when an order or
    /// a filter applies after it, else one more than the limit (which
    /// tells whether the limit cut the answer).
    pub fn index_fetch(&self) -> Option<usize> {
        let filtered = self.sort_order != SortOrder::None
            || self.min_mod_revision != 0
            || self.max_mod_revision != 0
            || self.min_create_revision != 0
            || self.max_create_revision != 0;
        (!filtered && self.limit > 0).then(|| self.limit as usize + 1)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeResponse {
    pub kvs: Vec<KeyValue>,
    pub more: bool,
    /// Keys in the range at the revision read (whatever the limit).
    pub count: i64,
    /// The store's revision when the request was served.
    pub revision: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutRequest {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub lease: i64,
    pub prev_kv: bool,
    /// Keep the current value (the key must exist; `value` must be empty).
    pub ignore_value: bool,
    /// Keep the current lease (`lease` must be 0).
    pub ignore_lease: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutResponse {
    pub prev_kv: Option<KeyValue>,
    pub revision: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteRangeRequest {
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
    pub prev_kv: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteRangeResponse {
    pub deleted: i64,
    pub prev_kvs: Vec<KeyValue>,
    pub revision: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareResult {
    Equal,
    Greater,
    Less,
    NotEqual,
}

/// What a comparison looks at, with the value to compare against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompareTarget {
    Version(i64),
    Create(i64),
    Mod(i64),
    Value(Vec<u8>),
    Lease(i64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compare {
    pub result: CompareResult,
    pub target: CompareTarget,
    pub key: Vec<u8>,
    /// As in a range: compare every key in the range (all must hold).
    pub range_end: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestOp {
    Range(RangeRequest),
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(TxnRequest),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseOp {
    Range(RangeResponse),
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TxnRequest {
    pub compare: Vec<Compare>,
    pub success: Vec<RequestOp>,
    pub failure: Vec<RequestOp>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TxnResponse {
    pub succeeded: bool,
    pub responses: Vec<ResponseOp>,
    pub revision: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change, as a watcher sees it: a put carries the new KeyValue; a
/// delete carries the key with `mod_revision` set to the deleting revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub kv: KeyValue,
    pub prev_kv: Option<KeyValue>,
}
