//! Opening a member's data dir, or creating it: the backend and what its
//! meta bucket records (consistent index, snapshot mark), the members
//! (stored from `--initial-cluster` in a new data dir), the WAL (created
//! with the bootstrap marker naming every member a voter, or recovered),
//! member and cluster ids, and the lessor and alarms rebuilt from the db. Hands back a raft node ready
//! to run; [`crate::server`] starts its threads.
//!
//! Data dir layout (docs/format.md): `member/wal/` the raft log,
//! `member/db` the backend, `member/snap/` temporary files. Start-up opens
//! the WAL at the db's snapshot marker and replays the entries above the
//! consistent index.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use strata_engine::backend::{Backend, BackendConfig};
use strata_engine::mvcc::{Store, WatchableStore};
use strata_engine::wal::{self, Metadata, SnapshotMark, Wal, WalOptions};
use tokio::sync::watch;

use crate::raftnode::storage::LogStore;
use crate::raftnode::{Node, NodeConfig, NodeStatus, StateMachine, Transport};
use crate::server::join::{self, Joined};
use crate::server::ServerConfig;
use crate::statemachine::apply::{self, Applier};
use crate::statemachine::lease::Lessor;
use crate::statemachine::membership::{self, Member, Membership};
use crate::statemachine::meta;
use crate::statemachine::snapdir;
use crate::statemachine::state::{Shared, Waiters};
use crate::transport::peer::PeerTransport;
use crate::transport::tls::dial::Dialer;

/// A member opened from its data dir, not yet running.
pub struct Bootstrapped<T: Transport = PeerTransport, S: StateMachine = Applier> {
    pub shared: Arc<Shared>,
    pub node: Node<T, S>,
    pub membership: Arc<Membership>,
    /// The data dir already held this member's log.
    pub initialized: bool,
    /// The applied index, as raft's thread publishes it.
    pub applied_rx: watch::Receiver<u64>,
}

fn wal_options(cfg: &ServerConfig) -> WalOptions {
    WalOptions {
        no_sync: cfg.unsafe_no_fsync,
        segment_size: cfg.wal_segment_size,
    }
}

fn has_wal(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|rd| {
        rd.flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".wal"))
    })
}

/// The WAL, what recovery found in it, and the snapshot marker raft's log
/// starts at.
struct OpenedWal {
    wal: Wal,
    recovered: wal::Recovered,
    at: SnapshotMark,
}

/// Opens the WAL at the db's marker `mark` (`initialized`: the directory
/// holds one), or creates it for a new cluster of `members` with a
/// bootstrap marker (index 0) naming them as voters.
fn open_or_create_wal(
    cfg: &ServerConfig,
    wal_dir: &std::path::Path,
    mark: Option<SnapshotMark>,
    members: &[Member],
    initialized: bool,
    joined: Option<&Joined>,
    backend: &Backend,
) -> anyhow::Result<OpenedWal> {
    if initialized {
        let at = mark.clone().unwrap_or_default();
        let (wal, recovered) = Wal::open(wal_dir, &at, wal_options(cfg))
            .with_context(|| format!("opening the WAL in {}", wal_dir.display()))?;
        // With no marker recorded yet, the conf state is the bootstrap
        // marker's (index 0) in the log.
        let at = match (&mark, &recovered.last_snapshot) {
            (None, Some(first)) if first.index == 0 => first.clone(),
            _ => at,
        };
        if let Some(p) = &recovered.repaired {
            tracing::warn!(kept = %p.display(), "repaired a torn WAL tail");
        }
        return Ok(OpenedWal { wal, recovered, at });
    }
    if let Some(j) = joined {
        // Joining: an empty log and no configuration; the leader's
        // snapshot brings both.
        let metadata = Metadata {
            member_id: j.member_id,
            cluster_id: j.cluster_id,
        };
        let mut wal = Wal::create(wal_dir, metadata, wal_options(cfg))?;
        let at = SnapshotMark::default();
        wal.save_snapshot(&at)?;
        wal.sync()?;
        tracing::info!(
            member = format!("{:x}", j.member_id),
            cluster = format!("{:x}", j.cluster_id),
            "joining an existing cluster"
        );
        return Ok(OpenedWal {
            wal,
            recovered: wal::Recovered {
                metadata,
                ..Default::default()
            },
            at,
        });
    }
    if cfg.join_existing {
        anyhow::bail!("--initial-cluster-state=existing needs the cluster's members to answer (none was asked)");
    }
    // This member, by its name (config validation made sure the initial
    // cluster names it).
    let me = members
        .iter()
        .find(|m| m.name == cfg.name)
        .map(|m| m.id)
        .ok_or_else(|| anyhow::anyhow!("{:?} is not in the initial cluster", cfg.name))?;
    let metadata = Metadata {
        member_id: me,
        cluster_id: membership::cluster_id_of(members),
    };
    // The bootstrap state is a snapshot marker at index 1, term 1 (every
    // member's log starts after it): a member that joins later has an
    // empty log the leader cannot extend, so it is sent a db snapshot,
    // which carries the membership and raft's configuration. The db
    // records the marker first: a crash before the WAL exists leaves a
    // data dir that bootstraps again.
    let at = SnapshotMark {
        index: 1,
        term: 1,
        conf_state: wal::ConfState {
            voters: members.iter().map(|m| m.id).collect(),
            ..Default::default()
        },
    };
    {
        let mut b = backend.batch()?;
        b.put(
            strata_engine::backend::Bucket::Meta,
            meta::SNAPSHOT_KEY,
            &at.encode(),
        )?;
    }
    backend.force_commit()?;
    let mut wal = Wal::create(wal_dir, metadata, wal_options(cfg))?;
    wal.save_snapshot(&at)?;
    wal.sync()?;
    tracing::info!(
        member = format!("{me:x}"),
        cluster = format!("{:x}", metadata.cluster_id),
        members = members.len(),
        dir = %cfg.data_dir.clone().display(),
        "bootstrapped a new cluster"
    );
    Ok(OpenedWal {
        wal,
        recovered: wal::Recovered {
            metadata,
            ..Default::default()
        },
        at,
    })
}

/// What a member's transport is built from.
pub struct TransportParts {
    pub member_id: u64,
    pub cluster_id: u64,
    pub membership: Arc<Membership>,
    /// The db, which snapshots for followers are copied from.
    pub backend: Backend,
}

/// Opens or bootstraps the member's data dir, with the peer transport
/// (inside a tokio runtime).
pub fn bootstrap(cfg: &ServerConfig, dialer: Dialer) -> anyhow::Result<Bootstrapped> {
    let rt = tokio::runtime::Handle::try_current()
        .map_err(|_| anyhow::anyhow!("a member starts inside a tokio runtime"))?;
    let wal_dir = cfg.wal_dir.clone();
    let joined = if cfg.join_existing && !has_wal(&wal_dir) {
        let local =
            membership::from_initial_cluster(&cfg.initial_cluster, &cfg.initial_cluster_token)?;
        let mine = crate::urls::parse_urls(
            "initial-advertise-peer-urls",
            &cfg.initial_advertise_peer_urls,
        )?
        .into_iter()
        .map(|u| u.raw)
        .collect::<Vec<_>>();
        let within = std::time::Duration::from_secs(30);
        Some(rt.block_on(join::join(&dialer, &local, &mine, within))?)
    } else {
        None
    };
    bootstrap_with(
        cfg,
        None,
        joined,
        |p| {
            PeerTransport::new(
                p.member_id,
                p.cluster_id,
                p.membership,
                rt,
                p.backend,
                dialer,
            )
        },
        |applier| applier,
    )
}

/// Opens or bootstraps the member's data dir, with the transport
/// `transport` builds (a simulation's in-memory network, say), the state
/// machine `machine` makes of the applier (a simulation records what is
/// applied), and, if given, a fixed election timeout range in ticks.
pub fn bootstrap_with<T: Transport, S: StateMachine>(
    cfg: &ServerConfig,
    election_tick_range: Option<(usize, usize)>,
    joined: Option<Joined>,
    transport: impl FnOnce(TransportParts) -> T,
    machine: impl FnOnce(Applier) -> S,
) -> anyhow::Result<Bootstrapped<T, S>> {
    let member_dir = cfg.data_dir.clone().join("member");
    let wal_dir = cfg.wal_dir.clone();
    std::fs::create_dir_all(&wal_dir).with_context(|| format!("creating {}", wal_dir.display()))?;
    std::fs::create_dir_all(member_dir.join("snap"))?;
    if !cfg.unsafe_no_fsync {
        // Every start: an earlier one may have died before these syncs.
        let top = cfg.data_dir.clone();
        crate::statemachine::snapdir::sync_dirs_up(&[&wal_dir, &member_dir.join("snap")], &top)
            .with_context(|| format!("syncing the directories of {}", top.display()))?;
    }
    let db_path = member_dir.join("db");
    finish_interrupted_install(&member_dir, &wal_dir, &wal_options(cfg), &db_path)?;
    let mut bcfg = BackendConfig::new(db_path.clone());
    bcfg.no_sync = cfg.unsafe_no_fsync;
    bcfg.batch_interval = cfg.backend_batch_interval;
    bcfg.batch_limit = cfg.backend_batch_limit.max(1);
    let backend = Backend::open(bcfg).with_context(|| format!("opening {}", db_path.display()))?;
    let view = backend.read();
    let ci = meta::read_u64(&view, meta::CONSISTENT_INDEX_KEY)?;
    let ci_term = meta::read_u64(&view, meta::TERM_KEY)?;
    let mark = meta::read_mark(&view)?;
    let db_conf = meta::read_conf(&view)?;
    let mut removed = membership::load_removed(&view)?;
    drop(view);

    // The members: the db's once it has them (a restart ignores the
    // --initial-* flags, as etcd does), else --initial-cluster's.
    let mut members = membership::load(&backend)?;
    if members.is_empty() {
        members = match &joined {
            Some(j) => {
                removed = j.removed.clone();
                j.members.clone()
            }
            None => {
                membership::from_initial_cluster(&cfg.initial_cluster, &cfg.initial_cluster_token)?
            }
        };
        membership::store(&backend, &members)?;
    }
    let initialized = has_wal(&wal_dir);
    let OpenedWal { wal, recovered, at } = open_or_create_wal(
        cfg,
        &wal_dir,
        mark,
        &members,
        initialized,
        joined.as_ref(),
        &backend,
    )?;
    let md = recovered.metadata;
    if removed.contains(&md.member_id) {
        anyhow::bail!("the member has been permanently removed from the cluster");
    }
    let mut is_learner = members.iter().any(|m| m.id == md.member_id && m.is_learner);
    let membership = Arc::new(Membership::new(members));
    membership.set_removed(removed);

    let (store, leased_keys) = Store::open_with_leases(backend)?;
    let status = Arc::new(NodeStatus::default());
    let shared = Arc::new(Shared {
        store: WatchableStore::new(store),
        lessor: Lessor::new(cfg.min_lease_ttl),
        waiters: Waiters::default(),
        alarms: Mutex::new(Default::default()),
        cluster_id: md.cluster_id,
        member_id: md.member_id,
        status: status.clone(),
        auth: crate::statemachine::auth::AuthStore::new(
            crate::statemachine::auth::token::Tokens::new(&cfg.auth_token, cfg.auth_token_ttl)?,
            cfg.bcrypt_cost,
        ),
        marks: Default::default(),
        versions: Default::default(),
    });
    shared.restore_leases_and_alarms(leased_keys)?;
    shared.settle_storage_version()?;

    let cells = Arc::new(apply::IndexCells::default());
    cells.index.store(ci, Ordering::Release);
    cells.term.store(ci_term, Ordering::Release);
    apply::install_consistent_index_hook(shared.store.store(), cells.clone());
    shared
        .store
        .store()
        .backend()
        .set_commit_observer(Box::new(|d| {
            crate::metrics::global()
                .backend_commit
                .observe(d.as_secs_f64())
        }));
    let applied = ci.max(at.index);
    // Membership changes the db holds past the WAL's marker: raft starts
    // with the configuration they made.
    let mut conf = db_conf
        .filter(|c| c.index >= at.index)
        .map(|c| c.conf_state);
    if cfg.force_new_cluster && initialized {
        conf = Some(force_new_cluster(
            shared.store.store().backend(),
            &membership,
            md.member_id,
            applied,
        )?);
        is_learner = false;
    }
    let log = LogStore::restore(wal, &at, recovered, applied, conf)?;
    status.learner.store(is_learner, Ordering::Release);
    let (applied_tx, applied_rx) = watch::channel(applied);
    let ncfg = NodeConfig {
        id: md.member_id,
        pre_vote: cfg.pre_vote,
        election_ticks: cfg.election_ticks,
        heartbeat_ticks: 1,
        snapshot_count: cfg.snapshot_count,
        catch_up_entries: cfg.snapshot_catchup_entries,
        applied,
        snapshot_index: at.index,
        election_tick_range,
    };
    let transport = transport(TransportParts {
        member_id: md.member_id,
        cluster_id: md.cluster_id,
        membership: membership.clone(),
        backend: shared.store.store().backend().clone(),
    });
    let node = Node::new(
        &ncfg,
        log,
        transport,
        machine(
            Applier::new(shared.clone(), membership.clone(), applied, cells)
                .with_max_learners(cfg.max_learners)
                .with_warning_apply_duration(cfg.warning_apply_duration),
        ),
        status,
        applied_tx,
    )?;
    Ok(Bootstrapped {
        shared,
        node,
        applied_rx,
        membership,
        initialized,
    })
}

/// etcd's `--force-new-cluster`: this member's data, as a one-member
/// cluster. Every other member is removed (for good: it cannot come back
/// with its old data) and raft's configuration becomes this member alone,
/// recorded in the db so that later restarts keep it. What this member's
/// log holds past its commit index is committed in the new term (etcd
/// discards it; either way no client was told it succeeded).
fn force_new_cluster(
    backend: &Backend,
    membership: &Membership,
    me: u64,
    applied: u64,
) -> anyhow::Result<wal::ConfState> {
    use strata_engine::backend::Bucket;
    let conf = wal::ConfState {
        voters: vec![me],
        ..Default::default()
    };
    {
        let mut b = backend.batch()?;
        for m in membership.list() {
            if m.id == me {
                let mut m = m.clone();
                m.is_learner = false;
                b.put(
                    Bucket::Members,
                    &membership::key(m.id),
                    &prost::Message::encode_to_vec(&m.to_pb()),
                )?;
                continue;
            }
            b.delete(Bucket::Members, &membership::key(m.id))?;
            b.put(Bucket::MembersRemoved, &membership::key(m.id), &[])?;
        }
        let mark = SnapshotMark {
            index: applied,
            term: 0,
            conf_state: conf.clone(),
        };
        b.put(Bucket::Meta, meta::CONF_STATE_KEY, &mark.encode())?;
    }
    backend.force_commit()?;
    for m in membership.list() {
        if m.id != me {
            membership.remove(m.id);
        }
    }
    if membership.get(me).is_some_and(|m| m.is_learner) {
        membership.promote(me);
    }
    tracing::warn!(
        member = format!("{me:x}"),
        "forcing a new one-member cluster from this data dir (--force-new-cluster)"
    );
    Ok(conf)
}

/// A snapshot install a crash interrupted is finished, and left-over
/// snapshot files removed ([`snapdir::recover`]), before the db opens.
fn finish_interrupted_install(
    member_dir: &std::path::Path,
    wal_dir: &std::path::Path,
    wal: &WalOptions,
    db_path: &std::path::Path,
) -> anyhow::Result<()> {
    let snap_dir = member_dir.join("snap");
    let any = std::fs::read_dir(&snap_dir).is_ok_and(|mut rd| rd.next().is_some());
    if !any {
        return Ok(());
    }
    let db_mark = if db_path.exists() {
        let backend = Backend::open(BackendConfig::new(db_path))
            .with_context(|| format!("opening {}", db_path.display()))?;
        let mark = meta::read_mark(&backend.read())?.map_or(0, |m| m.index);
        backend.close()?;
        mark
    } else {
        0
    };
    snapdir::recover(member_dir, wal_dir, wal, db_mark)
}
