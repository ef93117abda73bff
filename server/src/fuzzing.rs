//! Bodies of the server's fuzz targets: every parser of bytes that arrive
//! over a socket or from an operator's file. `fuzz/fuzz_targets/*` call
//! them under libFuzzer, and `tests/fuzz_seeds.rs` runs them over the seed
//! corpus in `fuzz/corpus/<target>/` (and mutations of each seed) in every
//! CI run. Each must return normally for any input: a panic is the bug.
//!
//! - [`authority`]: the HTTP/2 `:authority` repair in front of the gRPC
//!   server (preface, frames, HPACK), fed in chunks the input chooses;
//! - [`peer_batch`]: a peer's `RaftBatch` decoded with prost and converted
//!   into raft's types (and back);
//! - [`gateway_json`]: JSON gateway request bodies, whole and streamed;
//! - [`jwt`] and [`simple_token`]: auth tokens as clients send them;
//! - [`config_yaml`]: a `--config-file`.

use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use prost::Message as _;
use strata_proto::etcdserverpb as pb;
use strata_proto::peerpb;
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

/// Bytes handed out in the chunk sizes the input's first bytes choose.
struct Chunks {
    data: Vec<u8>,
    pos: usize,
    sizes: Vec<usize>,
    turn: usize,
}

impl AsyncRead for Chunks {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let me = &mut *self;
        let size = me.sizes[me.turn % me.sizes.len()];
        me.turn += 1;
        let n = size.min(me.data.len() - me.pos).min(buf.remaining());
        buf.put_slice(&me.data[me.pos..me.pos + n]);
        me.pos += n;
        Poll::Ready(Ok(()))
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime")
    })
}

/// The `:authority` repair: whatever the client sends, the bytes reach
/// the server or the read ends; nothing panics.
pub fn authority(data: &[u8]) {
    let (head, body) = data.split_at(data.len().min(4));
    let sizes: Vec<usize> = head.iter().map(|&b| usize::from(b) + 1).collect();
    let input = Chunks {
        data: body.to_vec(),
        pos: 0,
        sizes: if sizes.is_empty() { vec![4096] } else { sizes },
        turn: 0,
    };
    let mut fix = crate::transport::tls::authority::AuthorityFix::new(input);
    let mut out = Vec::new();
    let _ = runtime().block_on(fix.read_to_end(&mut out));
}

/// A peer's batch: decoded, each message converted into raft's type; a
/// message that converts converts back to the same bytes' meaning.
pub fn peer_batch(data: &[u8]) {
    let Ok(batch) = peerpb::RaftBatch::decode(data) else {
        return;
    };
    for m in batch.messages {
        if let Ok(r) = crate::transport::peer::convert::from_pb(m) {
            let again = crate::transport::peer::convert::to_pb(&r);
            let back = crate::transport::peer::convert::from_pb(again)
                .expect("a converted message converts");
            assert_eq!(back, r, "conversion does not round-trip");
        }
    }
}

/// Gateway bodies: one whole message of each kind a route takes, and the
/// same bytes as a stream of watch requests cut where the input says.
pub fn gateway_json(data: &[u8]) {
    use crate::frontend::gateway::json::{parse_one, ValueStream};
    let _ = parse_one::<pb::RangeRequest>(data);
    let _ = parse_one::<pb::PutRequest>(data);
    let _ = parse_one::<pb::DeleteRangeRequest>(data);
    let _ = parse_one::<pb::TxnRequest>(data);
    let _ = parse_one::<pb::LeaseGrantRequest>(data);
    let _ = parse_one::<pb::AuthenticateRequest>(data);
    let _ = parse_one::<pb::AuthUserAddRequest>(data);
    let _ = parse_one::<pb::AuthRoleGrantPermissionRequest>(data);
    let _ = parse_one::<pb::MemberAddRequest>(data);
    let cut = data.first().map_or(1, |&b| usize::from(b) + 1);
    let mut s = ValueStream::new(4096);
    for chunk in data.chunks(cut) {
        let (_, err) = s.push::<pb::WatchRequest>(chunk);
        if err.is_some() {
            return;
        }
    }
    let _ = s.finish();
}

/// A JWT as a client sends it, checked by a member signing ES256 (keys
/// made once per process).
pub fn jwt(data: &[u8]) {
    static TOKENS: OnceLock<crate::statemachine::auth::token::Tokens> = OnceLock::new();
    let tokens = TOKENS.get_or_init(|| {
        let key =
            rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("an ES256 key");
        let dir = std::env::temp_dir().join(format!("strata-fuzz-jwt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a key dir");
        let (public, private) = (dir.join("pub.pem"), dir.join("priv.pem"));
        std::fs::write(&public, key.public_key_pem()).expect("the public key");
        std::fs::write(&private, key.serialize_pem()).expect("the private key");
        let spec = format!(
            "jwt,pub-key={},priv-key={},sign-method=ES256",
            public.display(),
            private.display()
        );
        crate::statemachine::auth::token::Tokens::new(&spec, 0).expect("jwt tokens")
    });
    let text = String::from_utf8_lossy(data);
    let _ = tokens.parse(&text);
}

/// A simple token as a client sends it.
pub fn simple_token(data: &[u8]) {
    static TOKENS: OnceLock<crate::statemachine::auth::token::Tokens> = OnceLock::new();
    let tokens = TOKENS.get_or_init(|| {
        let t = crate::statemachine::auth::token::Tokens::new("simple", 0).expect("simple tokens");
        t.record("abcdefghijklmnop", 7, "root");
        t
    });
    let text = String::from_utf8_lossy(data);
    if let crate::statemachine::auth::token::Parsed::Simple { index } = tokens.parse(&text) {
        let _ = tokens.simple_user(&text, index);
    }
}

/// A `--config-file`, as text, into the configuration.
pub fn config_yaml(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = crate::embed::config::file::parse(&text);
}

#[cfg(test)]
mod tests {
    //! The bodies over the seed corpus in fuzz/corpus/<target>/ and over
    //! deterministic mutations of each seed (bit flips, truncations); the
    //! ignored test writes the seeds.

    use std::path::{Path, PathBuf};

    use prost::Message as _;
    use strata_proto::peerpb;

    use strata_engine::fuzzing::{corpus, mutations};

    fn dir(target: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/corpus")
            .join(target)
    }

    fn run(target: &str, n: usize, body: fn(&[u8])) {
        for seed in corpus(target) {
            for m in mutations(&seed, n) {
                body(&m);
            }
        }
    }

    #[test]
    fn authority_seeds() {
        run("authority", 200, super::authority);
    }

    #[test]
    fn peer_batch_seeds() {
        run("peer_batch", 300, super::peer_batch);
    }

    /// The seeds reach past decoding: every message of the batch seed
    /// converts, and the authority seed's first request is repaired.
    #[test]
    fn the_seeds_reach_the_parsers_far_ends() {
        let batch = peerpb::RaftBatch::decode(corpus("peer_batch")[0].as_slice()).unwrap();
        assert_eq!(batch.messages.len(), 3);
        for m in batch.messages {
            crate::transport::peer::convert::from_pb(m).unwrap();
        }
        let seed = &corpus("authority")[0];
        assert!(seed.windows(7).any(|w| w == b"http://"));
        let mut fix = crate::transport::tls::authority::AuthorityFix::new(&seed[4..]);
        let mut out = Vec::new();
        super::runtime()
            .block_on(tokio::io::AsyncReadExt::read_to_end(&mut fix, &mut out))
            .unwrap();
        let cut = out.windows(14).any(|w| w == b"localhost:2379");
        assert!(
            cut && !out.windows(7).any(|w| w == b"http://"),
            "not repaired"
        );
    }

    #[test]
    fn gateway_json_seeds() {
        run("gateway_json", 200, super::gateway_json);
    }

    #[test]
    fn jwt_seeds() {
        run("jwt", 100, super::jwt);
    }

    #[test]
    fn simple_token_seeds() {
        run("simple_token", 100, super::simple_token);
    }

    #[test]
    fn config_yaml_seeds() {
        run("config_yaml", 100, super::config_yaml);
    }

    /// Writes the seed corpus (by hand: `cargo test -p strata-server --lib
    /// fuzzing -- --ignored`).
    #[test]
    #[ignore]
    fn write_seed_corpus() {
        let put = |target: &str, name: &str, bytes: &[u8]| {
            std::fs::create_dir_all(dir(target)).unwrap();
            std::fs::write(dir(target).join(name), bytes).unwrap();
        };
        // HTTP/2: the preface, SETTINGS, a request whose authority is a
        // URL (repaired) and one that is sound, each with a DATA frame.
        let frame = |kind: u8, flags: u8, stream: u32, payload: &[u8]| {
            let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
            f.extend([kind, flags]);
            f.extend(stream.to_be_bytes());
            f.extend(payload);
            f
        };
        let mut enc = loona_hpack::Encoder::new();
        let mut h2 = vec![0, 7, 63, 255];
        h2.extend(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        h2.extend(frame(0x4, 0, 0, &[]));
        for (stream, auth) in [
            (1u32, &b"http://localhost:2379"[..]),
            (3, b"localhost:2379"),
        ] {
            let block = enc.encode([
                (&b":method"[..], &b"POST"[..]),
                (b":scheme", b"http"),
                (b":path", b"/etcdserverpb.KV/Range"),
                (b":authority", auth),
            ]);
            h2.extend(frame(0x1, 0x4, stream, &block));
            h2.extend(frame(0x0, 0x1, stream, b"\0\0\0\0\0"));
        }
        put("authority", "two-requests", &h2);
        // A peer batch: an append with a normal and a conf change entry, a
        // heartbeat, a snapshot's metadata.
        use raft::eraftpb::{EntryType, MessageType};
        use strata_proto::peerpb as p;
        let entry = |index, kind: EntryType, data: Vec<u8>| p::Entry {
            entry_type: kind as i32,
            term: 2,
            index,
            data,
            ..Default::default()
        };
        let cc = p::ConfChange {
            node_id: 9,
            ..Default::default()
        }
        .encode_to_vec();
        let batch = peerpb::RaftBatch {
            header: Some(p::PeerHeader {
                cluster_id: 1,
                from: 2,
                to: 3,
            }),
            messages: vec![
                p::Message {
                    msg_type: MessageType::MsgAppend as i32,
                    to: 3,
                    from: 2,
                    term: 2,
                    log_term: 2,
                    index: 4,
                    entries: vec![
                        entry(5, EntryType::EntryNormal, b"put".to_vec()),
                        entry(6, EntryType::EntryConfChange, cc),
                    ],
                    commit: 5,
                    ..Default::default()
                },
                p::Message {
                    msg_type: MessageType::MsgHeartbeat as i32,
                    to: 3,
                    from: 2,
                    term: 2,
                    commit: 6,
                    ..Default::default()
                },
                p::Message {
                    msg_type: MessageType::MsgSnapshot as i32,
                    to: 3,
                    from: 2,
                    term: 2,
                    snapshot: Some(p::Snapshot {
                        data: b"db".to_vec(),
                        metadata: Some(p::SnapshotMetadata {
                            conf_state: Some(p::ConfState {
                                voters: vec![1, 2, 3],
                                ..Default::default()
                            }),
                            index: 6,
                            term: 2,
                        }),
                    }),
                    ..Default::default()
                },
            ],
        };
        put(
            "peer_batch",
            "append-heartbeat-snapshot",
            &batch.encode_to_vec(),
        );
        put(
            "gateway_json",
            "range",
            br#"{"key":"Zm9v","range_end":"Zm9w","limit":"10","revision":"3","sort_order":"DESCEND","keys_only":true}"#,
        );
        put(
            "gateway_json",
            "txn",
            br#"{"compare":[{"key":"YQ==","target":"MOD","result":"EQUAL","mod_revision":"0"}],"success":[{"request_put":{"key":"YQ==","value":"MQ=="}}],"failure":[{"request_range":{"key":"YQ=="}}]}"#,
        );
        put(
            "gateway_json",
            "watch-stream",
            br#"{"create_request":{"key":"YQ==","start_revision":"2","progress_notify":true}} {"progress_request":{}} {"cancel_request":{"watch_id":"1"}}"#,
        );
        put(
            "jwt",
            "es256",
            b"eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCJ9.eyJ1c2VybmFtZSI6InJvb3QiLCJyZXZpc2lvbiI6MiwiZXhwIjo0MTAyNDQ0ODAwfQ.AAAA",
        );
        put(
            "jwt",
            "none",
            b"eyJhbGciOiJub25lIn0.eyJ1c2VybmFtZSI6InJvb3QifQ.",
        );
        put("simple_token", "known", b"abcdefghijklmnop.7");
        put(
            "simple_token",
            "odd",
            b"abcdefghijklmnop.18446744073709551616",
        );
        put(
            "config_yaml",
            "etcd-sample",
            b"name: m1\ndata-dir: /tmp/m1\nlisten-client-urls: http://127.0.0.1:2379\nadvertise-client-urls: http://127.0.0.1:2379\ninitial-cluster: m1=http://127.0.0.1:2380\nsnapshot-count: 10000\nlog-outputs: [stderr]\nclient-transport-security:\n  client-cert-auth: false\n  auto-tls: true\nenable-v2: false\n",
        );
    }
}
