//! Unary calls to another member (what must reach the leader outside
//! raft: lease keep-alives and time-to-live questions). One lazily
//! connected channel per member, reused.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use strata_proto::peerpb::peer_client::PeerClient;
use tonic::transport::{Channel, Endpoint};

use crate::statemachine::membership::Membership;
use crate::transport::tls::dial::Dialer;

/// Largest frame a member sends or accepts (raft appends are capped at
/// 1 MiB of entries, but a single entry may be larger).
pub const MAX_FRAME: usize = 64 << 20;

pub struct PeerClients {
    channels: Mutex<HashMap<u64, Channel>>,
    dialer: Dialer,
}

impl PeerClients {
    pub fn new(dialer: Dialer) -> Self {
        PeerClients {
            channels: Mutex::default(),
            dialer,
        }
    }

    /// A client for member `id` (its first peer URL), or None if the
    /// member is unknown or its URL unusable.
    pub fn get(&self, membership: &Membership, id: u64) -> Option<PeerClient<Channel>> {
        let mut g = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        let channel = match g.get(&id) {
            Some(c) => c.clone(),
            None => {
                let url = membership.get(id)?.peer_urls.into_iter().next()?;
                let c = self.dialer.lazy(
                    Endpoint::from_shared(url)
                        .ok()?
                        .connect_timeout(Duration::from_secs(1))
                        .timeout(Duration::from_secs(5)),
                );
                g.insert(id, c.clone());
                c
            }
        };
        Some(
            PeerClient::new(channel)
                .max_decoding_message_size(MAX_FRAME)
                .max_encoding_message_size(MAX_FRAME),
        )
    }
}

/// A client of the peer at `url` (None: it did not answer).
pub async fn connect(dialer: &Dialer, url: &str) -> Option<PeerClient<Channel>> {
    let endpoint = Endpoint::from_shared(url.to_string())
        .ok()?
        .connect_timeout(Duration::from_secs(1))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5));
    let channel = dialer.connect(endpoint).await.ok()?;
    Some(
        PeerClient::new(channel)
            .max_encoding_message_size(MAX_FRAME)
            .max_decoding_message_size(MAX_FRAME),
    )
}
