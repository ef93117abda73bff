//! A repair on the way into the gRPC server: grpc-go clients that dial a
//! `passthrough:///http://host:port` target (etcdctl 3.4's `endpoint
//! status`, `endpoint hashkv`, `defrag` and `move-leader` given
//! `--endpoints=http://...`) send the whole URL as the HTTP/2
//! `:authority`. etcd's Go server takes it; the h2 crate refuses it as
//! malformed and resets the stream. [`AuthorityFix`] reads the client's
//! side of a connection frame by frame and gives the server the same
//! bytes, except that in such a connection every header block is decoded
//! and encoded again with `:authority` cut to `host:port`.
//!
//! Invariants: the first header block decides. If its `:authority` is
//! sound, it and everything after it pass through untouched (the server's
//! HPACK table then matches the client's, as we forwarded what the client
//! sent) and no more decoding happens. If not, every block from then on is
//! re-encoded without the dynamic table (literals without indexing), so
//! the server's table stays empty and never disagrees with what it is
//! sent; our decoder follows the client's table. Anything that is not
//! HTTP/2 with a sound frame layout is passed through for the server to
//! judge.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use loona_hpack::Decoder;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The largest frame a server accepts before it says otherwise (RFC 9113).
const MAX_FRAME: usize = 16_384;
/// A header block larger than this is left to the server to refuse.
const MAX_BLOCK: usize = 1 << 20;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// Waiting for the client preface.
    Preface,
    /// Reading frames until the first header block ends.
    Inspect,
    /// A bad authority was seen: re-encode every header block.
    Rewrite,
    /// Nothing to repair: bytes go through as they come.
    Pass,
}

/// A header block being gathered (HEADERS, then CONTINUATIONs).
struct Block {
    stream: [u8; 4],
    end_stream: bool,
    priority: Option<[u8; 5]>,
    /// The frames as received, forwarded as they are if no repair is due.
    raw: Vec<u8>,
    fragment: Vec<u8>,
}

pub struct AuthorityFix<IO> {
    io: IO,
    mode: Mode,
    /// Client bytes not yet sorted into frames.
    pending: Vec<u8>,
    /// Bytes ready for the server.
    out: Vec<u8>,
    out_pos: usize,
    block: Option<Block>,
    decoder: Decoder<'static>,
    eof: bool,
}

impl<IO> AuthorityFix<IO> {
    pub fn new(io: IO) -> Self {
        AuthorityFix {
            io,
            mode: Mode::Preface,
            pending: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            block: None,
            decoder: Decoder::new(),
            eof: false,
        }
    }

    /// Sorts what is pending into bytes for the server.
    fn process(&mut self) {
        if self.mode == Mode::Preface {
            let n = self.pending.len().min(PREFACE.len());
            if self.pending[..n] != PREFACE[..n] {
                self.pass_all();
                return;
            }
            if n < PREFACE.len() {
                return;
            }
            self.out.extend(self.pending.drain(..PREFACE.len()));
            self.mode = Mode::Inspect;
        }
        while self.mode != Mode::Pass && self.pending.len() >= 9 {
            let len =
                u32::from_be_bytes([0, self.pending[0], self.pending[1], self.pending[2]]) as usize;
            if self.pending.len() < 9 + len {
                return;
            }
            let frame: Vec<u8> = self.pending.drain(..9 + len).collect();
            self.frame(frame);
        }
        if self.mode == Mode::Pass {
            self.pass_all();
        }
    }

    fn pass_all(&mut self) {
        self.mode = Mode::Pass;
        if let Some(b) = self.block.take() {
            self.out.extend(b.raw);
        }
        self.out.append(&mut self.pending);
    }

    fn frame(&mut self, frame: Vec<u8>) {
        let kind = frame[3];
        let flags = frame[4];
        let payload = &frame[9..];
        let fragment = match (kind, self.block.is_some()) {
            (HEADERS, false) => {
                let mut start = 0;
                let mut end = payload.len();
                if flags & PADDED != 0 {
                    let Some(&pad) = payload.first() else {
                        return self.give_up(frame);
                    };
                    start = 1;
                    end = match end.checked_sub(pad as usize) {
                        Some(e) if e >= start => e,
                        _ => return self.give_up(frame),
                    };
                }
                let mut priority = None;
                if flags & PRIORITY != 0 {
                    if end < start + 5 {
                        return self.give_up(frame);
                    }
                    let mut p = [0u8; 5];
                    p.copy_from_slice(&payload[start..start + 5]);
                    priority = Some(p);
                    start += 5;
                }
                self.block = Some(Block {
                    stream: [frame[5], frame[6], frame[7], frame[8]],
                    end_stream: flags & END_STREAM != 0,
                    priority,
                    raw: Vec::new(),
                    fragment: Vec::new(),
                });
                payload[start..end].to_vec()
            }
            (CONTINUATION, true) => payload.to_vec(),
            (_, false) => {
                self.out.extend(frame);
                return;
            }
            // Another frame inside a header block: the server will refuse
            // the connection; let it see exactly this.
            (_, true) => return self.give_up(frame),
        };
        let Some(block) = self.block.as_mut() else {
            return;
        };
        block.raw.extend_from_slice(&frame);
        block.fragment.extend_from_slice(&fragment);
        if block.fragment.len() > MAX_BLOCK {
            return self.give_up(Vec::new());
        }
        if flags & END_HEADERS != 0 {
            if let Some(b) = self.block.take() {
                self.finish(b);
            }
        }
    }

    /// Stops repairing: what is held goes through as received.
    fn give_up(&mut self, frame: Vec<u8>) {
        if let Some(b) = self.block.take() {
            self.out.extend(b.raw);
        }
        self.out.extend(frame);
        self.mode = Mode::Pass;
    }

    fn finish(&mut self, b: Block) {
        let headers = match self.decoder.decode(&b.fragment) {
            Ok(h) => h,
            Err(_) => {
                self.out.extend(b.raw);
                self.mode = Mode::Pass;
                return;
            }
        };
        let bad = headers
            .iter()
            .any(|(n, v)| n == b":authority" && repaired(v).is_some());
        match self.mode {
            Mode::Inspect if !bad => {
                self.out.extend(b.raw);
                self.mode = Mode::Pass;
            }
            _ => {
                self.mode = Mode::Rewrite;
                self.write_block(&b, &headers);
            }
        }
    }

    /// `headers` as a fresh block: literals without indexing, `:authority`
    /// repaired, cut into frames the server accepts.
    fn write_block(&mut self, b: &Block, headers: &[(Vec<u8>, Vec<u8>)]) {
        let mut block = Vec::new();
        if let Some(p) = b.priority {
            block.extend_from_slice(&p);
        }
        for (name, value) in headers {
            let value = match (name.as_slice(), repaired(value)) {
                (b":authority", Some(v)) => v,
                _ => value.as_slice(),
            };
            block.push(0x00);
            block.extend(loona_hpack::encoder::encode_integer(name.len(), 7));
            block.extend_from_slice(name);
            block.extend(loona_hpack::encoder::encode_integer(value.len(), 7));
            block.extend_from_slice(value);
        }
        let mut chunks = block.chunks(MAX_FRAME).peekable();
        let mut first = true;
        while let Some(chunk) = chunks.next() {
            let last = chunks.peek().is_none();
            let (kind, mut flags) = if first {
                let mut f = 0;
                if b.end_stream {
                    f |= END_STREAM;
                }
                if b.priority.is_some() {
                    f |= PRIORITY;
                }
                (HEADERS, f)
            } else {
                (CONTINUATION, 0)
            };
            if last {
                flags |= END_HEADERS;
            }
            let len = (chunk.len() as u32).to_be_bytes();
            self.out.extend_from_slice(&len[1..]);
            self.out.push(kind);
            self.out.push(flags);
            self.out.extend_from_slice(&b.stream);
            self.out.extend_from_slice(chunk);
            first = false;
        }
    }
}

/// The `host:port` inside an authority that holds a URL, if it does.
fn repaired(value: &[u8]) -> Option<&[u8]> {
    let at = value.windows(3).position(|w| w == b"://")?;
    let rest = &value[at + 3..];
    let end = rest.iter().position(|&c| c == b'/').unwrap_or(rest.len());
    (end > 0).then_some(&rest[..end])
}

impl<IO: AsyncRead + Unpin> AsyncRead for AuthorityFix<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        loop {
            if me.out_pos < me.out.len() {
                let n = (me.out.len() - me.out_pos).min(buf.remaining());
                buf.put_slice(&me.out[me.out_pos..me.out_pos + n]);
                me.out_pos += n;
                if me.out_pos == me.out.len() {
                    me.out.clear();
                    me.out_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if me.mode == Mode::Pass || me.eof {
                if me.eof {
                    // What was held back unparsed goes to the server as is.
                    me.out.append(&mut me.pending);
                    if let Some(b) = me.block.take() {
                        me.out.extend(b.raw);
                    }
                    if !me.out.is_empty() {
                        continue;
                    }
                    return Poll::Ready(Ok(()));
                }
                return Pin::new(&mut me.io).poll_read(cx, buf);
            }
            let mut chunk = [0u8; 8192];
            let mut rb = ReadBuf::new(&mut chunk);
            match Pin::new(&mut me.io).poll_read(cx, &mut rb) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {
                    if rb.filled().is_empty() {
                        me.eof = true;
                    } else {
                        me.pending.extend_from_slice(rb.filled());
                        me.process();
                    }
                }
            }
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl<IO: tonic::transport::server::Connected> tonic::transport::server::Connected
    for AuthorityFix<IO>
{
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        f.push(kind);
        f.push(flags);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// What the server side reads from `client` bytes, in `step`-byte
    /// pieces (frames cut anywhere).
    async fn through(client: Vec<u8>, step: usize) -> Vec<u8> {
        let (mut a, b) = tokio::io::duplex(1 << 20);
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for piece in client.chunks(step) {
                a.write_all(piece).await.unwrap();
                tokio::task::yield_now().await;
            }
        });
        let mut fix = AuthorityFix::new(b);
        let mut got = Vec::new();
        let _ = writer.await;
        // The writer is gone: the duplex ends, so read_to_end returns.
        fix.read_to_end(&mut got).await.unwrap();
        got
    }

    fn headers_of(bytes: &[u8]) -> Vec<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut d = Decoder::new();
        let mut rest = &bytes[PREFACE.len()..];
        let mut out = Vec::new();
        let mut block = Vec::new();
        while rest.len() >= 9 {
            let len = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
            let (kind, flags) = (rest[3], rest[4]);
            let payload = &rest[9..9 + len];
            if kind == HEADERS || kind == CONTINUATION {
                let skip = if kind == HEADERS && flags & PRIORITY != 0 {
                    5
                } else {
                    0
                };
                block.extend_from_slice(&payload[skip..]);
                if flags & END_HEADERS != 0 {
                    out.push(d.decode(&block).unwrap());
                    block.clear();
                }
            }
            rest = &rest[9 + len..];
        }
        out
    }

    fn request(enc: &mut loona_hpack::Encoder<'static>, authority: &[u8], stream: u32) -> Vec<u8> {
        let block = enc.encode([
            (&b":method"[..], &b"POST"[..]),
            (b":scheme", b"http"),
            (b":path", b"/etcdserverpb.Maintenance/Status"),
            (b":authority", authority),
            (b"content-type", b"application/grpc"),
        ]);
        frame(HEADERS, END_HEADERS, stream, &block)
    }

    #[tokio::test]
    async fn a_url_as_authority_is_cut_to_host_and_port_in_every_block() {
        let mut enc = loona_hpack::Encoder::new();
        let mut client = PREFACE.to_vec();
        client.extend(frame(0x4, 0, 0, &[]));
        // The encoder indexes the bad authority: the second block refers
        // to it through the client's dynamic table.
        for stream in [1, 3, 5] {
            client.extend(request(&mut enc, b"http://localhost:2379", stream));
            client.extend(frame(0x0, END_STREAM, stream, b"\0\0\0\0\0"));
        }
        for step in [1, 7, 4096] {
            let got = through(client.clone(), step).await;
            let blocks = headers_of(&got);
            assert_eq!(blocks.len(), 3);
            for b in blocks {
                let auth = b.iter().find(|(n, _)| n == b":authority").unwrap();
                assert_eq!(auth.1, b"localhost:2379");
                assert!(b
                    .iter()
                    .any(|(n, v)| n == b":path" && v.starts_with(b"/etcdserverpb")));
            }
        }
    }

    #[tokio::test]
    async fn a_sound_connection_passes_byte_for_byte() {
        let mut enc = loona_hpack::Encoder::new();
        let mut client = PREFACE.to_vec();
        for stream in [1, 3] {
            client.extend(request(&mut enc, b"localhost:2379", stream));
        }
        assert_eq!(through(client.clone(), 5).await, client);
        // Not HTTP/2 at all: untouched too.
        let http1 = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        assert_eq!(through(http1.clone(), 3).await, http1);
    }

    #[tokio::test]
    async fn a_truncated_connection_is_forwarded_as_received() {
        let mut enc = loona_hpack::Encoder::new();
        let mut client = PREFACE.to_vec();
        let req = request(&mut enc, b"http://localhost:2379", 1);
        client.extend_from_slice(&req[..req.len() - 3]);
        assert_eq!(through(client.clone(), 11).await, client);
    }

    #[test]
    fn repairs_only_urls() {
        assert_eq!(repaired(b"http://h:1"), Some(&b"h:1"[..]));
        assert_eq!(repaired(b"https://h:1/x"), Some(&b"h:1"[..]));
        assert_eq!(repaired(b"h:1"), None);
        assert_eq!(repaired(b"http:///"), None);
    }
}
