//! The running member, every `impl EtcdServer` in this folder: the raft
//! thread and its ticker, and what the services need of them:
//! propose-and-wait, the linearizable read barrier, the quota check, and a
//! clean stop (here); what it is told ([`config`]); opening the data dir ([`bootstrap`]); joining a
//! running cluster ([`join`]); member add/remove/update/promote
//! ([`members`]) and publishing this member's attributes ([`publish`]);
//! calls forwarded to the leader ([`forward`]); MoveLeader
//! ([`leadership`]); corruption checks ([`corrupt`]); periodic work
//! ([`duties`]).
//!
//! May use [`crate::transport`], [`crate::statemachine`],
//! [`crate::raftnode`] and the foundations; the front end and the embed
//! layer are above it.
//!
//! Invariants: a request id is unique per member (member bits, start time,
//! a counter); a proposal's waiter is registered before the proposal is
//! handed to raft and removed when it times out, so a result is never
//! delivered to nobody or twice.

pub mod bootstrap;
pub mod config;
pub mod corrupt;
pub mod duties;
pub mod forward;
pub mod join;
pub mod leadership;
pub mod members;
pub mod publish;

pub use config::ServerConfig;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prost::Message;
use strata_engine::mvcc as m;
use strata_proto::etcdserverpb as pb;
use tokio::sync::watch;

use crate::errors::EtcdError;
use crate::raftnode::readindex::ReadIndex;
use crate::raftnode::Input;
use crate::server::bootstrap::{bootstrap, Bootstrapped};
use crate::statemachine::membership::Membership;
use crate::statemachine::state::{Applied, RaftRequest, Shared};
use crate::transport::peer::PeerClients;
use crate::transport::tls::dial::Dialer;

/// etcd's maxGapBetweenApplyAndCommitIndex: past this many committed but
/// unapplied entries, proposals are refused ("too many requests").
const MAX_APPLY_GAP: u64 = 5000;

pub use crate::version::ETCD_VERSION;

/// etcd's request timeout: 5 s plus two election timeouts.
fn request_timeout(cfg: &ServerConfig) -> Duration {
    Duration::from_secs(5) + Duration::from_millis(2 * cfg.election_timeout)
}

pub struct EtcdServer {
    pub cfg: ServerConfig,
    pub shared: Arc<Shared>,
    raft_tx: Sender<Input>,
    reads: Arc<ReadIndex>,
    applied_rx: watch::Receiver<u64>,
    next_id: AtomicU64,
    raft_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    pub(crate) stopping: Arc<AtomicBool>,
    pub membership: Arc<Membership>,
    /// Channels to other members, for calls outside raft.
    pub(crate) peers: PeerClients,
    /// Peer TLS as configured (the peer listeners' side; dialing is the
    /// peers' [`Dialer`]).
    pub(crate) peer_tls: Option<crate::transport::tls::TlsInfo>,
    /// The data dir held a member before this start (etcd's
    /// "member initialized").
    pub initialized: bool,
    /// When the NOSPACE alarm was last proposed (not again for a second).
    nospace_proposed: Mutex<Option<Instant>>,
    /// The db file's size as the quota check sees it, and when it was read
    /// (ms since `started`): refreshed at most every 100 ms, so the check
    /// costs no system call per request.
    quota_size: AtomicU64,
    quota_size_at: AtomicU64,
    started: Instant,
}

impl EtcdServer {
    /// Opens or bootstraps the member and starts raft.
    pub fn start(cfg: ServerConfig) -> anyhow::Result<Arc<EtcdServer>> {
        let peer_tls = cfg.peer_tls.clone();
        for (name, stage, on) in &cfg.feature_gates {
            crate::metrics::global()
                .feature_enabled
                .with_label_values(&[name, stage])
                .set(i64::from(*on));
        }
        let dialer = Dialer::new(match &peer_tls {
            Some(info) => Some(crate::transport::tls::client_config(info)?),
            None => None,
        });
        let Bootstrapped {
            shared,
            node,
            applied_rx,
            membership,
            initialized,
        } = bootstrap(&cfg, dialer.clone())?;
        let member_id = shared.member_id;
        let (tx, rx) = std::sync::mpsc::channel();
        let raft_thread = std::thread::Builder::new()
            .name("raft".into())
            .spawn(move || node.run(rx))?;
        let stopping = Arc::new(AtomicBool::new(false));
        {
            let tx = tx.clone();
            let stopping = stopping.clone();
            let every = Duration::from_millis(cfg.heartbeat_interval);
            std::thread::Builder::new()
                .name("raft-ticker".into())
                .spawn(move || {
                    while !stopping.load(Ordering::Acquire) {
                        std::thread::sleep(every);
                        if tx.send(Input::Tick).is_err() {
                            return;
                        }
                    }
                })?;
        }
        let now_ms = crate::raftnode::now_ms();
        let reads = ReadIndex::new(
            tx.clone(),
            stopping.clone(),
            shared.status.clone(),
            request_timeout(&cfg),
        );
        let srv = Arc::new(EtcdServer {
            cfg,
            shared,
            raft_tx: tx,
            reads,
            applied_rx,
            next_id: AtomicU64::new(
                ((member_id & 0xffff) << 48) | ((now_ms & 0xff_ffff_ffff) << 8),
            ),
            raft_thread: Mutex::new(Some(raft_thread)),
            stopping,
            membership,
            peers: PeerClients::new(dialer),
            peer_tls,
            initialized,
            nospace_proposed: Mutex::new(None),
            quota_size: AtomicU64::new(0),
            quota_size_at: AtomicU64::new(u64::MAX),
            started: Instant::now(),
        });
        Ok(srv)
    }

    /// etcd's gRPC receive limit: the request limit plus 512 KiB.
    pub fn recv_limit(&self) -> usize {
        self.cfg.max_request_bytes as usize + 512 * 1024
    }

    pub fn member_id(&self) -> u64 {
        self.shared.member_id
    }

    /// Whether this member is a learner.
    pub fn is_learner(&self) -> bool {
        self.shared.status.learner.load(Ordering::Acquire)
    }

    /// Whether this member is raft's leader now.
    pub fn is_leader(&self) -> bool {
        self.shared.status.leader.load(Ordering::Acquire) == self.member_id()
    }

    /// Waits until raft has a leader and this member has applied what was
    /// committed when it asked (as etcd serves clients only once its server
    /// is ready). Returns early, with an error, if the member stopped.
    pub async fn wait_ready(&self) -> Result<(), EtcdError> {
        loop {
            self.check_running()?;
            if self.shared.status.leader.load(Ordering::Acquire) != 0
                && self.read_barrier().await.is_ok()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn store(&self) -> &m::Store {
        self.shared.store.store()
    }

    pub fn header(&self) -> pb::ResponseHeader {
        self.shared.header(self.store().revision())
    }

    pub(crate) fn send(&self, i: Input) -> Result<(), EtcdError> {
        self.raft_tx.send(i).map_err(|_| EtcdError::Stopped)
    }

    /// This member's advertised client URLs, as given (checked at start).
    pub fn client_urls(&self) -> Vec<String> {
        crate::urls::parse_urls("advertise-client-urls", &self.cfg.advertise_client_urls)
            .map(|us| us.into_iter().map(|u| u.raw).collect())
            .unwrap_or_default()
    }

    /// Hands a message from a peer to raft.
    pub fn step(&self, m: raft::eraftpb::Message) -> Result<(), EtcdError> {
        self.send(Input::Step(Box::new(m)))
    }

    /// Hands a peer's batch of messages to raft, in one piece.
    pub fn step_all(&self, ms: Vec<raft::eraftpb::Message>) -> Result<(), EtcdError> {
        if ms.is_empty() {
            return Ok(());
        }
        self.send(Input::Steps(ms))
    }

    /// A fresh request id (unique per member: member bits, start time, a
    /// counter).
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// A lease id the server picks: positive, never 0, unique per member.
    pub fn new_lease_id(&self) -> i64 {
        ((self.next_id() & (i64::MAX as u64)) as i64).max(1)
    }

    /// The grant to propose for a client's `id` and `ttl`: what this member
    /// chooses is chosen here and carried in the entry (an id when the
    /// client left it 0, the TTL raised to this member's minimum), so the
    /// entry applies alike on every member. A TTL too large is refused
    /// before raft, as etcd does, so the log holds no doomed grant.
    pub fn lease_grant_request(
        &self,
        id: i64,
        ttl: i64,
    ) -> Result<pb::LeaseGrantRequest, EtcdError> {
        let ttl = self.shared.lessor.effective_ttl(ttl)?;
        // Server-picked ids are positive, never 0.
        let id = if id == 0 { self.new_lease_id() } else { id };
        Ok(pb::LeaseGrantRequest { ttl, id })
    }

    pub(crate) fn request_timeout(&self) -> Duration {
        request_timeout(&self.cfg)
    }

    pub(crate) fn check_running(&self) -> Result<(), EtcdError> {
        if self.shared.status.failed.load(Ordering::Acquire)
            || self.stopping.load(Ordering::Acquire)
        {
            return Err(EtcdError::Stopped);
        }
        Ok(())
    }

    /// Proposes a request of the member's own (lease expiry, checkpoints,
    /// alarms it raises, its attributes) and waits for its applied result.
    pub async fn propose(&self, r: impl RaftRequest) -> Result<Applied, EtcdError> {
        let header = pb::RequestHeader {
            internal: true,
            ..Default::default()
        };
        self.propose_with(r.into_raft(), header).await
    }

    /// Proposes a client's request, with who sent it (None: no
    /// credentials), and waits for its applied result. Permissions are
    /// checked when it applies.
    pub async fn propose_for(
        &self,
        r: impl RaftRequest,
        who: Option<&crate::statemachine::auth::AuthInfo>,
    ) -> Result<Applied, EtcdError> {
        let header = pb::RequestHeader {
            username: who.map(|w| w.username.clone()).unwrap_or_default(),
            auth_revision: who.map_or(0, |w| w.revision),
            ..Default::default()
        };
        self.propose_with(r.into_raft(), header).await
    }

    async fn propose_with(
        &self,
        r: pb::InternalRaftRequest,
        header: pb::RequestHeader,
    ) -> Result<Applied, EtcdError> {
        self.check_running()?;
        // etcd's back-pressure: too far behind in applying what is
        // committed, a member refuses new proposals.
        let st = &self.shared.status;
        if st.commit.load(Ordering::Acquire) > st.applied.load(Ordering::Acquire) + MAX_APPLY_GAP {
            return Err(EtcdError::TooManyRequests);
        }
        let typ = crate::statemachine::state::request_type(&r);
        let start = std::time::Instant::now();
        let res = self.propose_timed(r, header).await;
        if let Some(typ) = typ {
            crate::metrics::global().observe_request(typ, res.is_ok(), start.elapsed());
        }
        res
    }

    /// [`Self::propose_with`] past its admission checks (the part etcd's
    /// `etcd_server_request_duration_seconds` times).
    async fn propose_timed(
        &self,
        mut r: pb::InternalRaftRequest,
        mut header: pb::RequestHeader,
    ) -> Result<Applied, EtcdError> {
        let id = self.next_id();
        header.id = id;
        r.header = Some(header);
        let data = r.encode_to_vec();
        if data.len() > self.cfg.max_request_bytes as usize {
            return Err(EtcdError::RequestTooLarge);
        }
        let rx = self.shared.waiters.register(id);
        if let Err(e) = self.send(Input::Propose { id, data }) {
            self.shared.waiters.cancel(id);
            return Err(e);
        }
        let started = crate::raftnode::now_ms();
        match tokio::time::timeout(self.request_timeout(), rx).await {
            Ok(Ok(r)) => {
                if matches!(r, Err(EtcdError::NoLeader)) {
                    crate::metrics::global().proposals_failed.inc();
                }
                r
            }
            Ok(Err(_)) => Err(EtcdError::Stopped),
            Err(_) => {
                self.shared.waiters.cancel(id);
                crate::metrics::global().proposals_failed.inc();
                Err(self.timeout_error(started))
            }
        }
    }

    /// Who a client request comes from (etcd's AuthInfoFromCtx): the
    /// `token` (or gateway `authorization`) metadata, `Bearer ` prefix
    /// allowed, else, with
    /// `--client-cert-auth`, the common name of the verified client
    /// certificate. None when auth is off or no credentials came; an
    /// unknown, expired or forged token is "invalid auth token".
    pub async fn who(
        &self,
        md: &tonic::metadata::MetadataMap,
        conn: Option<&crate::transport::tls::incoming::ConnInfo>,
    ) -> Result<Option<crate::statemachine::auth::AuthInfo>, EtcdError> {
        use crate::statemachine::auth::token::Parsed;
        use crate::statemachine::auth::AuthInfo;
        let auth = &self.shared.auth;
        if !auth.enabled() {
            return Ok(None);
        }
        if let Some(v) = md.get("token").or_else(|| md.get("authorization")) {
            let token = v.to_str().map_err(|_| EtcdError::InvalidAuthToken)?;
            // etcd 3.6 takes `Bearer <token>` too (clients that send an
            // Authorization header as HTTP APIs do).
            let token = token.strip_prefix("Bearer ").unwrap_or(token);
            let user = match auth.tokens.parse(token) {
                Parsed::Jwt(info) => return Ok(Some(info)),
                Parsed::Invalid => None,
                Parsed::Simple { index } => {
                    // Issued at `index`: usable here once this member has
                    // applied it.
                    let mut w = self.applied_rx.clone();
                    let applied =
                        tokio::time::timeout(self.request_timeout(), w.wait_for(|a| *a >= index))
                            .await;
                    match applied {
                        Ok(Ok(_)) => auth.tokens.simple_user(token, index),
                        _ => None,
                    }
                }
            };
            return match user {
                Some(username) => Ok(Some(AuthInfo {
                    username,
                    revision: auth.revision(),
                })),
                None => {
                    tracing::warn!("invalid auth token");
                    Err(EtcdError::InvalidAuthToken)
                }
            };
        }
        if self.cfg.client_cert_auth && md.get("grpcgateway-accept").is_none() {
            if let Some(cn) = conn.and_then(|c| c.cn.clone()) {
                return Ok(Some(AuthInfo {
                    username: cn,
                    revision: auth.revision(),
                }));
            }
        }
        Ok(None)
    }

    /// Status's `storageVersion`: the db's (`X.Y.0`), empty for 3.5's
    /// schema, which records none (as etcd's Status of such a db).
    pub fn storage_version(&self) -> String {
        let view = self.store().backend().read();
        match crate::statemachine::versions::storage_version(&view) {
            Ok(Some(v)) => v.full(),
            Ok(None) => String::new(),
            Err(e) => {
                tracing::warn!(error = %e, "reading the storage version");
                String::new()
            }
        }
    }

    /// The cluster version (`X.Y.0`): the binary's, or a downgrade job's
    /// target.
    pub fn cluster_version(&self) -> String {
        self.shared.versions.cluster().full()
    }

    /// etcd's admin check (the root role, once auth is on) for a gRPC
    /// request: maintenance and membership changes; who it came from.
    pub async fn require_admin<T>(
        &self,
        req: &tonic::Request<T>,
    ) -> Result<Option<crate::statemachine::auth::AuthInfo>, EtcdError> {
        let who = self.who_of(req).await?;
        self.shared.auth.check_admin(who.as_ref())?;
        Ok(who)
    }

    /// etcd 3.6's requireAuthInfo: once auth is on, the request must come
    /// from someone (a valid token or a verified client certificate);
    /// "etcdserver: user name is empty" otherwise. Status, Alarm GET,
    /// MemberList, LeaseGrant, LeaseRevoke and LeaseTimeToLive ask it.
    pub async fn require_user<T>(
        &self,
        req: &tonic::Request<T>,
    ) -> Result<Option<crate::statemachine::auth::AuthInfo>, EtcdError> {
        let who = self.who_of(req).await?;
        if who.is_none() && self.shared.auth.enabled() {
            return Err(EtcdError::UserEmpty);
        }
        Ok(who)
    }

    /// [`Self::who`] of a gRPC request.
    pub async fn who_of<T>(
        &self,
        req: &tonic::Request<T>,
    ) -> Result<Option<crate::statemachine::auth::AuthInfo>, EtcdError> {
        self.who(req.metadata(), req.extensions().get()).await
    }

    /// etcd's timeout errors: a request that started in the window where
    /// the previous leader was lost (two election timeouts before the
    /// current leader became known) timed out "possibly due to previous
    /// leader failure"; any other timed out plainly.
    fn timeout_error(&self, started_ms: u64) -> EtcdError {
        let elected = self.shared.status.leader_since_ms.load(Ordering::Acquire);
        let lost = elected.saturating_sub(2 * self.cfg.election_timeout);
        if elected != 0 && started_ms > lost && started_ms < elected {
            EtcdError::TimeoutDueToLeaderFail
        } else {
            EtcdError::Timeout
        }
    }

    /// Waits until this member has applied everything committed when the
    /// call began (raft's ReadIndex, shared by concurrent reads).
    pub async fn read_barrier(&self) -> Result<(), EtcdError> {
        self.check_running()?;
        let index = self.reads.index().await?;
        let deadline = self.request_timeout();
        let mut w = self.applied_rx.clone();
        let waited = tokio::time::timeout(deadline, async {
            w.wait_for(|a| *a >= index).await.map(|_| ())
        })
        .await;
        match waited {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(EtcdError::Stopped),
            Err(_) => Err(EtcdError::Timeout),
        }
    }

    /// The db's size and the part of it in use, as etcd counts them
    /// (bbolt's `tx.Size()`: pages up to the high-water mark, not the
    /// file's preallocated length; the quota is checked against it too).
    pub fn db_size(&self) -> (i64, i64) {
        let info = self.store().backend().db().info();
        let size = info.page_count * info.page_size as u64;
        let in_use = info
            .page_count
            .saturating_sub(info.free_pages + info.pending_pages)
            * info.page_size as u64;
        (size as i64, in_use as i64)
    }

    fn quota_db_size(&self) -> u64 {
        let now = self.started.elapsed().as_millis() as u64;
        let at = self.quota_size_at.load(Ordering::Relaxed);
        if at == u64::MAX || now.saturating_sub(at) >= 100 {
            let (size, _) = self.db_size();
            self.quota_size.store(size as u64, Ordering::Relaxed);
            self.quota_size_at.store(now, Ordering::Relaxed);
        }
        self.quota_size.load(Ordering::Relaxed)
    }

    /// etcd's quota check for a request that adds `cost` bytes: past the
    /// quota, raise NOSPACE (once) and refuse.
    pub async fn check_quota(&self, cost: usize) -> Result<(), EtcdError> {
        if self.shared.nospace() {
            return Err(EtcdError::NoSpace);
        }
        let Some(quota) = self.cfg.quota else {
            return Ok(());
        };
        let size = self.quota_db_size();
        if size.saturating_add(cost as u64) <= quota {
            return Ok(());
        }
        let propose = {
            let mut last = self
                .nospace_proposed
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let due = last.is_none_or(|t| t.elapsed() > Duration::from_secs(1));
            if due {
                *last = Some(Instant::now());
            }
            due
        };
        if propose {
            let req = pb::AlarmRequest {
                action: pb::alarm_request::AlarmAction::Activate as i32,
                member_id: self.member_id(),
                alarm: pb::AlarmType::Nospace as i32,
            };
            let _ = self.propose(req).await;
        }
        Err(EtcdError::NoSpace)
    }

    /// Stops raft and closes the storage (everything applied is committed).
    pub fn stop(&self) {
        if self.stopping.swap(true, Ordering::AcqRel) {
            return;
        }
        let _ = self.send(Input::Stop);
        if let Some(h) = self
            .raft_thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = h.join();
        }
        if let Err(e) = self.store().backend().force_commit() {
            tracing::error!(error = %e, "final commit of the backend failed");
        }
    }
}
