//! Unary calls to another member (what must reach the leader outside
//! raft: lease keep-alives and time-to-live questions). One lazily
//! connected channel per member, reused.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use strata_proto::peerpb::peer_client::PeerClient;
use tonic::transport::{Channel, Endpoint};

use super::MAX_FRAME;
use crate::membership::Membership;

#[derive(Default)]
pub struct PeerClients {
    channels: Mutex<HashMap<u64, Channel>>,
}

impl PeerClients {
    /// A client for member `id` (its first peer URL), or None if the
    /// member is unknown or its URL unusable.
    pub fn get(&self, membership: &Membership, id: u64) -> Option<PeerClient<Channel>> {
        let mut g = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        let channel = match g.get(&id) {
            Some(c) => c.clone(),
            None => {
                let url = membership.get(id)?.peer_urls.into_iter().next()?;
                let c = Endpoint::from_shared(url)
                    .ok()?
                    .connect_timeout(Duration::from_secs(1))
                    .timeout(Duration::from_secs(5))
                    .tcp_nodelay(true)
                    .connect_lazy();
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
