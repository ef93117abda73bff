//! Database snapshots for followers behind the leader's retained log, on
//! their own `Peer/Snapshot` stream (never on the raft message stream).
//!
//! Sender (the leader, [`send`]): a consistent copy of the db is written
//! straight into the stream in 1 MiB pieces (a bounded channel between the
//! copying thread and the stream: memory stays a few MiB whatever the db's
//! size), after a first piece with the raft `MsgSnapshot`, and with the
//! SHA-256 of the bytes in the last piece. Success or failure goes back to
//! raft as a transport report. One snapshot per peer at a time.
//!
//! Receiver ([`receive`]): the bytes go to `member/snap/<term>-<index>.db.part`
//! as they arrive; the digest is checked, the file synced, opened as a db
//! (it must hold at least the snapshot's index) and sealed with the
//! snapshot's mark, renamed to `.db` and the directory synced; only then
//! is the message (its data naming the file) handed to raft, and the
//! sender told. One snapshot at a time per member.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use raft::eraftpb::{Message, MessageType};
use sha2::Digest;
use strata_engine::backend::Backend;
use strata_engine::wal::SnapshotMark;
use strata_proto::peerpb as p;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use super::convert;
use crate::raftnode::storage::conf_to_wal;
use crate::raftnode::TransportReport;
use crate::statemachine::snapdir;

/// Bytes per stream piece.
const PIECE: usize = 1 << 20;
/// Pieces buffered between the copying thread and the stream.
const PIECES_IN_FLIGHT: usize = 4;

/// What the leader needs to send one snapshot.
pub struct Outgoing {
    pub msg: Message,
    pub header: p::PeerHeader,
    pub urls: Vec<String>,
    pub backend: Backend,
    pub reports: Arc<Mutex<Vec<TransportReport>>>,
    /// Peers with a snapshot on its way (this one is taken out at the end).
    pub in_flight: Arc<Mutex<std::collections::HashSet<u64>>>,
    pub dialer: crate::transport::tls::dial::Dialer,
}

/// A writer that cuts what it is given into pieces for the stream.
struct Pieces {
    tx: mpsc::Sender<p::SnapshotChunk>,
    buf: Vec<u8>,
}

impl Pieces {
    fn ship(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        strata_engine::crash_point!(snapshotSendMidway);
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(PIECE));
        self.tx
            .blocking_send(p::SnapshotChunk {
                data,
                ..Default::default()
            })
            .map_err(|_| std::io::Error::other("the snapshot stream closed"))
    }
}

impl std::io::Write for Pieces {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let room = PIECE - self.buf.len();
        let n = room.min(buf.len());
        self.buf.extend_from_slice(&buf[..n]);
        if self.buf.len() == PIECE {
            self.ship()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Sends one snapshot; reports the outcome to raft.
pub async fn send(out: Outgoing) {
    let to = out.header.to;
    let index = out
        .msg
        .snapshot
        .as_ref()
        .and_then(|s| s.metadata.as_ref())
        .map_or(0, |md| md.index);
    let started = Instant::now();
    let res = stream(&out).await;
    let report = match &res {
        Ok(size) => {
            tracing::info!(
                to = format!("{to:x}"),
                index,
                size,
                took_ms = started.elapsed().as_millis() as u64,
                "sent a database snapshot to a follower"
            );
            TransportReport::SnapshotFinished(to)
        }
        Err(e) => {
            tracing::warn!(to = format!("{to:x}"), index, error = %e, "sending a database snapshot failed");
            crate::metrics::global().peer_send_failed(to, 1);
            TransportReport::SnapshotFailed(to)
        }
    };
    out.reports
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(report);
    out.in_flight
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&to);
}

async fn stream(out: &Outgoing) -> Result<u64, String> {
    let mut client = None;
    for url in &out.urls {
        if let Some(c) = super::client::connect(&out.dialer, url).await {
            client = Some(c);
            break;
        }
    }
    let mut client = client.ok_or("no peer URL answered")?;
    let (tx, rx) = mpsc::channel(PIECES_IN_FLIGHT);
    tx.send(p::SnapshotChunk {
        header: Some(out.header),
        message: Some(convert::to_pb(&out.msg)),
        ..Default::default()
    })
    .await
    .map_err(|e| e.to_string())?;
    let backend = out.backend.clone();
    let copier = tokio::task::spawn_blocking(move || {
        let mut w = Pieces {
            tx: tx.clone(),
            buf: Vec::with_capacity(PIECE),
        };
        let (size, digest) = backend.snapshot(&mut w).map_err(|e| e.to_string())?;
        w.ship().map_err(|e| e.to_string())?;
        tx.blocking_send(p::SnapshotChunk {
            sha256: digest.to_vec(),
            ..Default::default()
        })
        .map_err(|_| "the snapshot stream closed".to_string())?;
        Ok::<u64, String>(size)
    });
    let call = client.snapshot(ReceiverStream::new(rx)).await;
    let copied = copier.await.map_err(|e| e.to_string())?;
    // The follower's word first: a refusal also stops the copy.
    call.map_err(|s| s.message().to_string())?;
    copied
}

/// Receives one snapshot from `first` and the rest of `stream` into
/// `snap_dir` (sealed, synced, its consistent index checked) and returns
/// the raft message to step, its data now naming the file, and the size.
/// The caller steps the message: this layer never reaches the server.
pub async fn receive(
    snap_dir: &Path,
    first: p::SnapshotChunk,
    mut stream: Streaming<p::SnapshotChunk>,
) -> Result<(Message, u64), Status> {
    let mut msg = first
        .message
        .ok_or_else(|| Status::invalid_argument("a snapshot stream without its raft message"))
        .and_then(|m| convert::from_pb(m).map_err(Status::invalid_argument))?;
    let md = msg
        .snapshot
        .as_ref()
        .and_then(|s| s.metadata.as_ref())
        .cloned()
        .unwrap_or_default();
    if msg.msg_type != MessageType::MsgSnapshot || md.index == 0 {
        return Err(Status::invalid_argument(
            "a snapshot stream must start with a raft snapshot message",
        ));
    }
    let mark = SnapshotMark {
        index: md.index,
        term: md.term,
        conf_state: conf_to_wal(md.get_conf_state()),
    };
    let part = snap_dir.join(snapdir::part_name(md.term, md.index));
    let started = Instant::now();
    let res = write_part(&part, &mut stream).await;
    let size = match res {
        Ok(size) => size,
        Err(e) => {
            let _ = tokio::fs::remove_file(&part).await;
            return Err(e);
        }
    };
    let p2 = part.clone();
    let sealed = tokio::task::spawn_blocking(move || snapdir::finish(&p2, &mark))
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
    let ci = match sealed {
        Ok((_, ci)) => ci,
        Err(e) => {
            let _ = tokio::fs::remove_file(&part).await;
            tracing::warn!(error = %format!("{e:#}"), "a received database snapshot was refused");
            return Err(Status::data_loss(format!("{e:#}")));
        }
    };
    tracing::info!(
        from = format!("{:x}", msg.from),
        index = md.index,
        term = md.term,
        consistent_index = ci,
        size,
        took_ms = started.elapsed().as_millis() as u64,
        "received a database snapshot"
    );
    let name = snapdir::file_name(md.term, md.index);
    if let Some(s) = msg.snapshot.as_mut() {
        s.data = name.into_bytes().into();
    }
    Ok((msg, size))
}

/// Writes the db bytes of the stream to `part`, checks their digest and
/// syncs the file; returns the size.
async fn write_part(
    part: &PathBuf,
    stream: &mut Streaming<p::SnapshotChunk>,
) -> Result<u64, Status> {
    let io = |e: std::io::Error| Status::internal(format!("{}: {e}", part.display()));
    let mut file = tokio::fs::File::create(part).await.map_err(io)?;
    let mut hash = sha2::Sha256::new();
    let mut size = 0u64;
    loop {
        let Some(chunk) = stream.message().await? else {
            return Err(Status::invalid_argument(
                "the snapshot stream ended before its digest",
            ));
        };
        if !chunk.data.is_empty() {
            hash.update(&chunk.data);
            size += chunk.data.len() as u64;
            file.write_all(&chunk.data).await.map_err(io)?;
            strata_engine::crash_point!(snapshotReceiveMidway);
        }
        if !chunk.sha256.is_empty() {
            let got: [u8; 32] = hash.finalize().into();
            if chunk.sha256 != got {
                return Err(Status::data_loss(
                    "the snapshot's SHA-256 does not match its bytes",
                ));
            }
            break;
        }
    }
    file.flush().await.map_err(io)?;
    file.sync_all().await.map_err(io)?;
    Ok(size)
}
