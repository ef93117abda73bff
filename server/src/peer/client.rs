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
use crate::tls::dial::Dialer;

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
