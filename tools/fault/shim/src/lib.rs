//! `LD_PRELOAD` library for the fault harness (`strata-fault`): what it
//! needs to simulate a power loss and a wall-clock jump in a real `strata`
//! process, without root and without a special filesystem.
//!
//! # Journal (power loss)
//! With `STRATA_SHIM_ROOT` (an absolute directory: the member's data dir)
//! and `STRATA_SHIM_JOURNAL` (a file outside it) set, every change the
//! process makes to files and directories strictly inside the root is
//! first appended to the journal, with what it needs to be undone, then
//! made. After a kill -9 the harness reads the journal and undoes what a
//! power loss could have lost (`strata_fault::powerloss`): data written
//! to a file since its last completed fsync/fdatasync, and names created,
//! renamed or removed in a directory since that directory's last completed
//! fsync. Names removed or replaced are kept as hard links under
//! `<journal>.saved/` so that their contents can come back.
//!
//! Records, little-endian; `path` is a u32 length and bytes:
//! - `W` ino off len old_size zeroed:u8 [old bytes] path — a write of
//!   `len` bytes at `off`; the old bytes are the file's bytes there before
//!   it (`min(len, old_size - off)` of them), left out when all zero.
//! - `Z` ino old_size new_size tail_len [tail] path — the file's length
//!   changed (ftruncate, O_TRUNC, or a change seen but not made through
//!   this library, such as fallocate by raw syscall); `tail` is what a
//!   shrink cut off.
//! - `S` ino seq, then `s` seq result:i64 (seq: the process id, then a
//!   counter, in the high and low 32 bits) — an fsync/fdatasync of a file or
//!   directory began, and ended; only an ended, successful one counts.
//! - `C` parent_ino path — a file created (the name did not exist).
//! - `M` parent_ino path — a directory created.
//! - `R` ino from_parent to_parent from to saved — a rename of inode `ino`;
//!   `saved` (maybe empty) holds what `to` named before.
//! - `U` parent_ino path saved — a file unlinked, kept at `saved`.
//! - `D` parent_ino path — an (empty) directory removed.
//!
//! A record is written before its change, under one lock with it, so the
//! journal's order is the order of the changes; a change the process died
//! before making undoes to what is already there. The journal is not
//! fsynced: the process is killed, the machine is not.
//!
//! # Clock
//! With `STRATA_SHIM_CLOCK` naming an 8-byte file, `clock_gettime` adds the
//! little-endian i64 of nanoseconds it holds to the wall clock
//! (`CLOCK_REALTIME` and its variants), read at every call: the harness
//! steps a member's wall clock by rewriting the file. Monotonic clocks are
//! left alone: Linux never steps them, and std's timed waits hand the
//! kernel absolute monotonic deadlines, which a shifted monotonic clock
//! would stretch.
//!
//! Everything else passes through. The library calls the kernel directly
//! (`syscall`) for its own work and for the calls it wraps, so nothing it
//! does comes back into it.

#![allow(clippy::missing_safety_doc)]

use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_long, c_uint, c_void, CStr};
use std::sync::{Mutex, OnceLock};

use libc::{iovec, mode_t, off64_t, size_t, ssize_t};

struct Journal {
    /// The root, without a trailing slash.
    root: Vec<u8>,
    fd: c_int,
    saved_dir: Vec<u8>,
    seq: u64,
    /// Each file's length as last journaled, to notice changes made past
    /// this library.
    sizes: HashMap<u64, u64>,
}

fn journal() -> Option<&'static Mutex<Journal>> {
    static J: OnceLock<Option<Mutex<Journal>>> = OnceLock::new();
    J.get_or_init(|| {
        let root = std::env::var_os("STRATA_SHIM_ROOT")?;
        let path = std::env::var_os("STRATA_SHIM_JOURNAL")?;
        use std::os::unix::ffi::OsStrExt;
        let mut root = root.as_bytes().to_vec();
        while root.len() > 1 && root.ends_with(b"/") {
            root.pop();
        }
        let path = path.as_bytes().to_vec();
        let c = cstring(&path);
        // SAFETY: a valid NUL-terminated path.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat,
                libc::AT_FDCWD,
                c.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND | libc::O_CLOEXEC,
                0o644,
            )
        } as c_int;
        if fd < 0 {
            return None;
        }
        let mut saved_dir = path;
        saved_dir.extend_from_slice(b".saved");
        let c = cstring(&saved_dir);
        // SAFETY: as above; EEXIST is fine.
        unsafe { libc::syscall(libc::SYS_mkdirat, libc::AT_FDCWD, c.as_ptr(), 0o755) };
        Some(Mutex::new(Journal {
            root,
            fd,
            saved_dir,
            seq: 0,
            sizes: HashMap::new(),
        }))
    })
    .as_ref()
}

fn cstring(b: &[u8]) -> Vec<u8> {
    let mut v = b.to_vec();
    v.push(0);
    v
}

fn errno() -> c_int {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn set_errno(e: c_int) {
    // SAFETY: the calling thread's errno.
    unsafe { *libc::__errno_location() = e };
}

/// Stat by path, not following a final symlink.
fn lstat(path: &[u8]) -> Option<libc::stat> {
    let c = cstring(path);
    // SAFETY: zeroed stat is a valid out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid path and out pointer.
    let r = unsafe {
        libc::syscall(
            libc::SYS_newfstatat,
            libc::AT_FDCWD,
            c.as_ptr(),
            &mut st as *mut libc::stat,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    (r == 0).then_some(st)
}

fn fstat(fd: c_int) -> Option<libc::stat> {
    // SAFETY: zeroed stat is a valid out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid out pointer; a bad fd gives an error.
    let r = unsafe { libc::syscall(libc::SYS_fstat, fd, &mut st as *mut libc::stat) };
    (r == 0).then_some(st)
}

fn is_reg(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFREG
}

fn is_dir(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

/// The path an open fd names (from /proc), if it still has one.
fn fd_path(fd: c_int) -> Option<Vec<u8>> {
    let link = cstring(format!("/proc/self/fd/{fd}").as_bytes());
    let mut buf = vec![0u8; 4096];
    // SAFETY: valid path and buffer.
    let n = unsafe {
        libc::syscall(
            libc::SYS_readlinkat,
            libc::AT_FDCWD,
            link.as_ptr(),
            buf.as_mut_ptr(),
            buf.len(),
        )
    };
    if n <= 0 {
        return None;
    }
    buf.truncate(n as usize);
    if buf.ends_with(b" (deleted)") {
        return None;
    }
    Some(buf)
}

/// `path` made absolute against `dirfd` (or the working directory).
fn absolute(dirfd: c_int, path: *const c_char) -> Option<Vec<u8>> {
    if path.is_null() {
        return None;
    }
    // SAFETY: the caller passed a NUL-terminated path.
    let p = unsafe { CStr::from_ptr(path) }.to_bytes();
    if p.starts_with(b"/") {
        return Some(normalize(p));
    }
    let base = if dirfd == libc::AT_FDCWD {
        let mut buf = vec![0u8; 4096];
        // SAFETY: valid buffer.
        let n = unsafe { libc::syscall(libc::SYS_getcwd, buf.as_mut_ptr(), buf.len()) };
        if n <= 0 {
            return None;
        }
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        buf.truncate(end);
        buf
    } else {
        fd_path(dirfd)?
    };
    let mut full = base;
    full.push(b'/');
    full.extend_from_slice(p);
    Some(normalize(&full))
}

/// Drops `.` components and doubled slashes (`..` is kept: strata does
/// not use it under its data dir).
fn normalize(p: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(p.len());
    for part in p.split(|&b| b == b'/') {
        if part.is_empty() || part == b"." {
            continue;
        }
        out.push(b'/');
        out.extend_from_slice(part);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    out
}

fn parent(p: &[u8]) -> &[u8] {
    match p.iter().rposition(|&b| b == b'/') {
        Some(0) => b"/",
        Some(i) => &p[..i],
        None => b".",
    }
}

impl Journal {
    /// Strictly inside the root.
    fn inside(&self, p: &[u8]) -> bool {
        p.len() > self.root.len() + 1 && p.starts_with(&self.root) && p[self.root.len()] == b'/'
    }

    /// Inside the root, or the root itself (a directory fsync of it counts).
    fn covers(&self, p: &[u8]) -> bool {
        p == self.root.as_slice() || self.inside(p)
    }

    fn append(&mut self, rec: &[u8]) {
        let mut off = 0;
        while off < rec.len() {
            // SAFETY: valid buffer and length.
            let n = unsafe {
                libc::syscall(
                    libc::SYS_write,
                    self.fd,
                    rec[off..].as_ptr(),
                    rec.len() - off,
                )
            };
            if n <= 0 {
                if errno() == libc::EINTR {
                    continue;
                }
                // The journal is lost: the harness would undo wrongly.
                // SAFETY: ends the process at once.
                unsafe { libc::abort() };
            }
            off += n as usize;
        }
    }

    /// A record for a change of `ino`'s length that did not go through
    /// this library, if its length moved since it was last journaled.
    fn note_size(&mut self, ino: u64, size: u64, path: &[u8]) {
        match self.sizes.insert(ino, size) {
            Some(known) if known != size => {
                let mut r = vec![b'Z'];
                put_u64(&mut r, ino);
                put_u64(&mut r, known);
                put_u64(&mut r, size);
                put_u64(&mut r, 0);
                put_bytes(&mut r, path);
                self.append(&r);
            }
            _ => {}
        }
    }

    /// Journals a write of `len` bytes at `off` to the file behind `fd`.
    fn write(&mut self, st: &libc::stat, path: &[u8], off: u64, len: u64) {
        let ino = st.st_ino;
        let size = st.st_size as u64;
        self.note_size(ino, size, path);
        let have = if off < size { (size - off).min(len) } else { 0 };
        let mut old = vec![0u8; have as usize];
        if have > 0 {
            read_at(path, &mut old, off);
        }
        let zeroed = old.iter().all(|&b| b == 0);
        let mut r = Vec::with_capacity(64 + old.len() + path.len());
        r.push(b'W');
        put_u64(&mut r, ino);
        put_u64(&mut r, off);
        put_u64(&mut r, len);
        put_u64(&mut r, size);
        r.push(zeroed as u8);
        if !zeroed {
            r.extend_from_slice(&old);
        }
        put_bytes(&mut r, path);
        self.append(&r);
        self.sizes.insert(ino, size.max(off + len));
    }

    /// Journals the file's length becoming `new`.
    fn resize(&mut self, st: &libc::stat, path: &[u8], new: u64) {
        let ino = st.st_ino;
        let size = st.st_size as u64;
        self.note_size(ino, size, path);
        if new == size {
            return;
        }
        let mut tail = vec![0u8; size.saturating_sub(new) as usize];
        if !tail.is_empty() {
            read_at(path, &mut tail, new);
        }
        let mut r = vec![b'Z'];
        put_u64(&mut r, ino);
        put_u64(&mut r, size);
        put_u64(&mut r, new);
        put_u64(&mut r, tail.len() as u64);
        r.extend_from_slice(&tail);
        put_bytes(&mut r, path);
        self.append(&r);
        self.sizes.insert(ino, new);
    }

    /// Keeps what `path` names as a hard link under the saved dir.
    fn save(&mut self, path: &[u8]) -> Vec<u8> {
        self.seq += 1;
        let mut saved = self.saved_dir.clone();
        saved.extend_from_slice(format!("/{}-{}", std::process::id(), self.seq).as_bytes());
        let (from, to) = (cstring(path), cstring(&saved));
        // SAFETY: valid paths.
        let r = unsafe {
            libc::syscall(
                libc::SYS_linkat,
                libc::AT_FDCWD,
                from.as_ptr(),
                libc::AT_FDCWD,
                to.as_ptr(),
                0,
            )
        };
        if r != 0 {
            return Vec::new();
        }
        saved
    }
}

fn put_u64(r: &mut Vec<u8>, v: u64) {
    r.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(r: &mut Vec<u8>, b: &[u8]) {
    r.extend_from_slice(&(b.len() as u32).to_le_bytes());
    r.extend_from_slice(b);
}

/// Reads what the file at `path` holds at `off` (through a descriptor of
/// its own: the caller's may be write-only). Short reads leave zeros.
fn read_at(path: &[u8], buf: &mut [u8], off: u64) {
    let c = cstring(path);
    // SAFETY: valid path.
    let rfd = unsafe {
        libc::syscall(
            libc::SYS_openat,
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    } as c_int;
    if rfd < 0 {
        return;
    }
    let mut done = 0usize;
    while done < buf.len() {
        // SAFETY: valid buffer range.
        let n = unsafe {
            libc::syscall(
                libc::SYS_pread64,
                rfd,
                buf[done..].as_mut_ptr(),
                buf.len() - done,
                off + done as u64,
            )
        };
        if n <= 0 {
            break;
        }
        done += n as usize;
    }
    // SAFETY: our own descriptor.
    unsafe { libc::syscall(libc::SYS_close, rfd) };
}

/// For an fd-based change: the journal (locked) and the file, when `fd` is
/// a regular file (or, with `dirs`, a directory) the journal covers.
fn tracked(
    fd: c_int,
    dirs: bool,
) -> Option<(std::sync::MutexGuard<'static, Journal>, libc::stat, Vec<u8>)> {
    let j = journal()?;
    let st = fstat(fd)?;
    if !(is_reg(&st) || (dirs && is_dir(&st))) {
        return None;
    }
    let path = fd_path(fd)?;
    let g = j.lock().unwrap_or_else(|e| e.into_inner());
    let ok = if is_dir(&st) {
        g.covers(&path)
    } else {
        g.inside(&path)
    };
    ok.then_some((g, st, path))
}

/// For a path-based change: the journal (locked) and the absolute path,
/// when it lies inside the root.
fn tracked_path(
    dirfd: c_int,
    path: *const c_char,
) -> Option<(std::sync::MutexGuard<'static, Journal>, Vec<u8>)> {
    let j = journal()?;
    let p = absolute(dirfd, path)?;
    let g = j.lock().unwrap_or_else(|e| e.into_inner());
    g.inside(&p).then_some((g, p))
}

fn parent_ino(p: &[u8]) -> u64 {
    lstat(parent(p)).map_or(0, |st| st.st_ino)
}

// ---- the wrapped calls ----

unsafe fn do_openat(dirfd: c_int, path: *const c_char, flags: c_int, mode: mode_t) -> c_int {
    let raw = |dirfd: c_int| {
        // SAFETY: the caller's arguments, passed on.
        unsafe { libc::syscall(libc::SYS_openat, dirfd, path, flags, mode as c_uint) as c_int }
    };
    let changes = flags & (libc::O_CREAT | libc::O_TRUNC) != 0;
    if !changes {
        return raw(dirfd);
    }
    let Some((mut j, p)) = tracked_path(dirfd, path) else {
        return raw(dirfd);
    };
    match lstat(&p) {
        // Without its parent the open fails: nothing to journal.
        None if flags & libc::O_CREAT != 0 && lstat(parent(&p)).is_some() => {
            let mut r = vec![b'C'];
            put_u64(&mut r, parent_ino(&p));
            put_bytes(&mut r, &p);
            j.append(&r);
            let fd = raw(dirfd);
            if fd >= 0 {
                if let Some(st) = fstat(fd) {
                    j.sizes.insert(st.st_ino, 0);
                }
            }
            fd
        }
        Some(st) if flags & libc::O_TRUNC != 0 && is_reg(&st) && flags & libc::O_ACCMODE != 0 => {
            j.resize(&st, &p, 0);
            raw(dirfd)
        }
        _ => raw(dirfd),
    }
}

#[no_mangle]
pub unsafe extern "C" fn open(path: *const c_char, flags: c_int, mode: mode_t) -> c_int {
    // SAFETY: the caller's arguments.
    unsafe { do_openat(libc::AT_FDCWD, path, flags, mode) }
}

#[no_mangle]
pub unsafe extern "C" fn open64(path: *const c_char, flags: c_int, mode: mode_t) -> c_int {
    // SAFETY: the caller's arguments.
    unsafe { do_openat(libc::AT_FDCWD, path, flags, mode) }
}

#[no_mangle]
pub unsafe extern "C" fn openat(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    mode: mode_t,
) -> c_int {
    // SAFETY: the caller's arguments.
    unsafe { do_openat(dirfd, path, flags, mode) }
}

#[no_mangle]
pub unsafe extern "C" fn openat64(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    mode: mode_t,
) -> c_int {
    // SAFETY: the caller's arguments.
    unsafe { do_openat(dirfd, path, flags, mode) }
}

#[no_mangle]
pub unsafe extern "C" fn creat(path: *const c_char, mode: mode_t) -> c_int {
    let flags = libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC;
    // SAFETY: the caller's arguments.
    unsafe { do_openat(libc::AT_FDCWD, path, flags, mode) }
}

#[no_mangle]
pub unsafe extern "C" fn creat64(path: *const c_char, mode: mode_t) -> c_int {
    // SAFETY: the caller's arguments.
    unsafe { creat(path, mode) }
}

/// Where a plain `write` on `fd` lands.
fn current_offset(fd: c_int, st: &libc::stat) -> u64 {
    // SAFETY: fcntl and lseek on the caller's fd.
    let fl = unsafe { libc::syscall(libc::SYS_fcntl, fd, libc::F_GETFL) } as c_int;
    if fl >= 0 && fl & libc::O_APPEND != 0 {
        return st.st_size as u64;
    }
    // SAFETY: as above.
    let pos = unsafe { libc::syscall(libc::SYS_lseek, fd, 0 as off64_t, libc::SEEK_CUR) };
    pos.max(0) as u64
}

#[no_mangle]
pub unsafe extern "C" fn write(fd: c_int, buf: *const c_void, n: size_t) -> ssize_t {
    let raw = || {
        // SAFETY: the caller's arguments.
        unsafe { libc::syscall(libc::SYS_write, fd, buf, n) as ssize_t }
    };
    match tracked(fd, false) {
        Some((mut j, st, path)) => {
            let off = current_offset(fd, &st);
            j.write(&st, &path, off, n as u64);
            raw()
        }
        None => raw(),
    }
}

unsafe fn do_pwrite(fd: c_int, buf: *const c_void, n: size_t, off: off64_t) -> ssize_t {
    let raw = || {
        // SAFETY: the caller's arguments.
        unsafe { libc::syscall(libc::SYS_pwrite64, fd, buf, n, off) as ssize_t }
    };
    match tracked(fd, false) {
        Some((mut j, st, path)) if off >= 0 => {
            j.write(&st, &path, off as u64, n as u64);
            raw()
        }
        _ => raw(),
    }
}

#[no_mangle]
pub unsafe extern "C" fn pwrite(fd: c_int, buf: *const c_void, n: size_t, off: off64_t) -> ssize_t {
    // SAFETY: the caller's arguments.
    unsafe { do_pwrite(fd, buf, n, off) }
}

#[no_mangle]
pub unsafe extern "C" fn pwrite64(
    fd: c_int,
    buf: *const c_void,
    n: size_t,
    off: off64_t,
) -> ssize_t {
    // SAFETY: the caller's arguments.
    unsafe { do_pwrite(fd, buf, n, off) }
}

fn iov_len(iov: *const iovec, cnt: c_int) -> u64 {
    if iov.is_null() || cnt <= 0 {
        return 0;
    }
    // SAFETY: the caller's array of `cnt` iovecs.
    let v = unsafe { std::slice::from_raw_parts(iov, cnt as usize) };
    v.iter().map(|e| e.iov_len as u64).sum()
}

#[no_mangle]
pub unsafe extern "C" fn writev(fd: c_int, iov: *const iovec, cnt: c_int) -> ssize_t {
    let raw = || {
        // SAFETY: the caller's arguments.
        unsafe { libc::syscall(libc::SYS_writev, fd, iov, cnt) as ssize_t }
    };
    match tracked(fd, false) {
        Some((mut j, st, path)) => {
            let off = current_offset(fd, &st);
            j.write(&st, &path, off, iov_len(iov, cnt));
            raw()
        }
        None => raw(),
    }
}

unsafe fn do_pwritev(fd: c_int, iov: *const iovec, cnt: c_int, off: off64_t) -> ssize_t {
    let raw = || {
        // SAFETY: the caller's arguments (the kernel takes the offset as
        // two longs).
        unsafe { libc::syscall(libc::SYS_pwritev, fd, iov, cnt, off, 0) as ssize_t }
    };
    match tracked(fd, false) {
        Some((mut j, st, path)) if off >= 0 => {
            j.write(&st, &path, off as u64, iov_len(iov, cnt));
            raw()
        }
        _ => raw(),
    }
}

#[no_mangle]
pub unsafe extern "C" fn pwritev(
    fd: c_int,
    iov: *const iovec,
    cnt: c_int,
    off: off64_t,
) -> ssize_t {
    // SAFETY: the caller's arguments.
    unsafe { do_pwritev(fd, iov, cnt, off) }
}

#[no_mangle]
pub unsafe extern "C" fn pwritev64(
    fd: c_int,
    iov: *const iovec,
    cnt: c_int,
    off: off64_t,
) -> ssize_t {
    // SAFETY: the caller's arguments.
    unsafe { do_pwritev(fd, iov, cnt, off) }
}

unsafe fn do_ftruncate(fd: c_int, len: off64_t) -> c_int {
    let raw = || {
        // SAFETY: the caller's arguments.
        unsafe { libc::syscall(libc::SYS_ftruncate, fd, len) as c_int }
    };
    match tracked(fd, false) {
        Some((mut j, st, path)) if len >= 0 => {
            j.resize(&st, &path, len as u64);
            raw()
        }
        _ => raw(),
    }
}

#[no_mangle]
pub unsafe extern "C" fn ftruncate(fd: c_int, len: off64_t) -> c_int {
    // SAFETY: the caller's arguments.
    unsafe { do_ftruncate(fd, len) }
}

#[no_mangle]
pub unsafe extern "C" fn ftruncate64(fd: c_int, len: off64_t) -> c_int {
    // SAFETY: the caller's arguments.
    unsafe { do_ftruncate(fd, len) }
}

unsafe fn do_fallocate(fd: c_int, mode: c_int, off: off64_t, len: off64_t) -> c_int {
    let raw = || {
        // SAFETY: the caller's arguments.
        unsafe { libc::syscall(libc::SYS_fallocate, fd, mode, off, len) as c_int }
    };
    match tracked(fd, false) {
        Some((mut j, st, path)) => {
            let end = (off + len).max(0) as u64;
            if mode & libc::FALLOC_FL_KEEP_SIZE == 0 && end > st.st_size as u64 {
                j.resize(&st, &path, end);
            }
            raw()
        }
        None => raw(),
    }
}

#[no_mangle]
pub unsafe extern "C" fn fallocate(fd: c_int, mode: c_int, off: off64_t, len: off64_t) -> c_int {
    // SAFETY: the caller's arguments.
    unsafe { do_fallocate(fd, mode, off, len) }
}

#[no_mangle]
pub unsafe extern "C" fn fallocate64(fd: c_int, mode: c_int, off: off64_t, len: off64_t) -> c_int {
    // SAFETY: the caller's arguments.
    unsafe { do_fallocate(fd, mode, off, len) }
}

#[no_mangle]
pub unsafe extern "C" fn posix_fallocate(fd: c_int, off: off64_t, len: off64_t) -> c_int {
    // SAFETY: the caller's arguments.
    let r = unsafe { do_fallocate(fd, 0, off, len) };
    if r == 0 {
        0
    } else {
        errno()
    }
}

#[no_mangle]
pub unsafe extern "C" fn posix_fallocate64(fd: c_int, off: off64_t, len: off64_t) -> c_int {
    // SAFETY: the caller's arguments.
    unsafe { posix_fallocate(fd, off, len) }
}

fn do_sync(fd: c_int, nr: c_long) -> c_int {
    // SAFETY: the caller's fd.
    let raw = || unsafe { libc::syscall(nr, fd) as c_int };
    let Some((mut j, st, path)) = tracked(fd, true) else {
        return raw();
    };
    if is_reg(&st) {
        j.note_size(st.st_ino, st.st_size as u64, &path);
    }
    j.seq += 1;
    // Unique across the processes that share the journal (a member
    // restarted after kill -9 appends to it): a sync that never ended in
    // one must not be taken as ended by another's of the same number.
    let seq = (u64::from(std::process::id()) << 32) | (j.seq & 0xffff_ffff);
    let mut r = vec![b'S'];
    put_u64(&mut r, st.st_ino);
    put_u64(&mut r, seq);
    j.append(&r);
    // Let other changes go on while this one syncs: a change journaled
    // after the `S` is not counted as covered by it.
    drop(j);
    let res = raw();
    let e = errno();
    if let Some(j) = journal() {
        let mut j = j.lock().unwrap_or_else(|e| e.into_inner());
        let mut r = vec![b's'];
        put_u64(&mut r, seq);
        put_u64(&mut r, if res == 0 { 0 } else { e.max(1) as u64 });
        j.append(&r);
    }
    set_errno(e);
    res
}

#[no_mangle]
pub extern "C" fn fsync(fd: c_int) -> c_int {
    do_sync(fd, libc::SYS_fsync)
}

#[no_mangle]
pub extern "C" fn fdatasync(fd: c_int) -> c_int {
    do_sync(fd, libc::SYS_fdatasync)
}

unsafe fn do_renameat(
    olddir: c_int,
    old: *const c_char,
    newdir: c_int,
    new: *const c_char,
    flags: c_uint,
) -> c_int {
    let raw = || {
        // SAFETY: the caller's arguments.
        unsafe { libc::syscall(libc::SYS_renameat2, olddir, old, newdir, new, flags) as c_int }
    };
    let (Some(j), Some(from), Some(to)) = (journal(), absolute(olddir, old), absolute(newdir, new))
    else {
        return raw();
    };
    let mut j = j.lock().unwrap_or_else(|e| e.into_inner());
    if !(j.inside(&from) || j.inside(&to)) {
        drop(j);
        return raw();
    }
    let Some(src) = lstat(&from) else {
        drop(j);
        return raw();
    };
    let saved = match lstat(&to) {
        Some(st) if is_reg(&st) => j.save(&to),
        _ => Vec::new(),
    };
    let mut r = vec![b'R'];
    put_u64(&mut r, src.st_ino);
    put_u64(&mut r, parent_ino(&from));
    put_u64(&mut r, parent_ino(&to));
    put_bytes(&mut r, &from);
    put_bytes(&mut r, &to);
    put_bytes(&mut r, &saved);
    j.append(&r);
    raw()
}

#[no_mangle]
pub unsafe extern "C" fn rename(old: *const c_char, new: *const c_char) -> c_int {
    // SAFETY: the caller's arguments.
    unsafe { do_renameat(libc::AT_FDCWD, old, libc::AT_FDCWD, new, 0) }
}

#[no_mangle]
pub unsafe extern "C" fn renameat(
    olddir: c_int,
    old: *const c_char,
    newdir: c_int,
    new: *const c_char,
) -> c_int {
    // SAFETY: the caller's arguments.
    unsafe { do_renameat(olddir, old, newdir, new, 0) }
}

#[no_mangle]
pub unsafe extern "C" fn renameat2(
    olddir: c_int,
    old: *const c_char,
    newdir: c_int,
    new: *const c_char,
    flags: c_uint,
) -> c_int {
    // SAFETY: the caller's arguments.
    unsafe { do_renameat(olddir, old, newdir, new, flags) }
}

unsafe fn do_unlinkat(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int {
    let raw = || {
        // SAFETY: the caller's arguments.
        unsafe { libc::syscall(libc::SYS_unlinkat, dirfd, path, flags) as c_int }
    };
    let Some((mut j, p)) = tracked_path(dirfd, path) else {
        return raw();
    };
    let Some(st) = lstat(&p) else {
        drop(j);
        return raw();
    };
    let mut r = Vec::new();
    if is_dir(&st) {
        r.push(b'D');
        put_u64(&mut r, parent_ino(&p));
        put_bytes(&mut r, &p);
    } else {
        let saved = j.save(&p);
        r.push(b'U');
        put_u64(&mut r, parent_ino(&p));
        put_bytes(&mut r, &p);
        put_bytes(&mut r, &saved);
    }
    j.append(&r);
    raw()
}

#[no_mangle]
pub unsafe extern "C" fn unlink(path: *const c_char) -> c_int {
    // SAFETY: the caller's arguments.
    unsafe { do_unlinkat(libc::AT_FDCWD, path, 0) }
}

#[no_mangle]
pub unsafe extern "C" fn unlinkat(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int {
    // SAFETY: the caller's arguments.
    unsafe { do_unlinkat(dirfd, path, flags) }
}

#[no_mangle]
pub unsafe extern "C" fn rmdir(path: *const c_char) -> c_int {
    // SAFETY: the caller's arguments.
    unsafe { do_unlinkat(libc::AT_FDCWD, path, libc::AT_REMOVEDIR) }
}

unsafe fn do_mkdirat(dirfd: c_int, path: *const c_char, mode: mode_t) -> c_int {
    let raw = || {
        // SAFETY: the caller's arguments.
        unsafe { libc::syscall(libc::SYS_mkdirat, dirfd, path, mode as c_uint) as c_int }
    };
    let Some((mut j, p)) = tracked_path(dirfd, path) else {
        return raw();
    };
    if lstat(&p).is_some() || lstat(parent(&p)).is_none() {
        // It exists, or cannot be made: the mkdir fails.
        drop(j);
        return raw();
    }
    let mut r = vec![b'M'];
    put_u64(&mut r, parent_ino(&p));
    put_bytes(&mut r, &p);
    j.append(&r);
    raw()
}

#[no_mangle]
pub unsafe extern "C" fn mkdir(path: *const c_char, mode: mode_t) -> c_int {
    // SAFETY: the caller's arguments.
    unsafe { do_mkdirat(libc::AT_FDCWD, path, mode) }
}

#[no_mangle]
pub unsafe extern "C" fn mkdirat(dirfd: c_int, path: *const c_char, mode: mode_t) -> c_int {
    // SAFETY: the caller's arguments.
    unsafe { do_mkdirat(dirfd, path, mode) }
}

// ---- the clock ----

type ClockFn = unsafe extern "C" fn(libc::clockid_t, *mut libc::timespec) -> c_int;

fn real_clock() -> Option<ClockFn> {
    static F: OnceLock<Option<ClockFn>> = OnceLock::new();
    *F.get_or_init(|| {
        // SAFETY: looking up the next definition of a libc symbol.
        let p = unsafe { libc::dlsym(libc::RTLD_NEXT, c"clock_gettime".as_ptr()) };
        // SAFETY: clock_gettime has this signature.
        (!p.is_null()).then(|| unsafe { std::mem::transmute::<*mut c_void, ClockFn>(p) })
    })
}

/// The mapped offset file, if the harness gave one.
fn offset_map() -> Option<*const i64> {
    static M: OnceLock<Option<usize>> = OnceLock::new();
    M.get_or_init(|| {
        use std::os::unix::ffi::OsStrExt;
        let path = std::env::var_os("STRATA_SHIM_CLOCK")?;
        let c = cstring(path.as_bytes());
        // SAFETY: valid path.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat,
                libc::AT_FDCWD,
                c.as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            )
        } as c_int;
        if fd < 0 {
            return None;
        }
        // SAFETY: mapping 8 bytes of an open file read-only, shared: the
        // harness's rewrites show through.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                8,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        // SAFETY: our own descriptor; the mapping outlives it.
        unsafe { libc::syscall(libc::SYS_close, fd) };
        (p != libc::MAP_FAILED).then_some(p as usize)
    })
    .map(|p| p as *const i64)
}

#[no_mangle]
pub unsafe extern "C" fn clock_gettime(clock: libc::clockid_t, tp: *mut libc::timespec) -> c_int {
    let r = match real_clock() {
        // SAFETY: the caller's arguments.
        Some(f) => unsafe { f(clock, tp) },
        // SAFETY: as above.
        None => unsafe { libc::syscall(libc::SYS_clock_gettime, clock, tp) as c_int },
    };
    let wall = matches!(
        clock,
        libc::CLOCK_REALTIME | libc::CLOCK_REALTIME_COARSE | libc::CLOCK_TAI
    ) || clock == libc::CLOCK_REALTIME_ALARM;
    if r != 0 || !wall || tp.is_null() {
        return r;
    }
    if let Some(m) = offset_map() {
        // SAFETY: an aligned, mapped 8-byte word, read whole.
        let off = i64::from_le(unsafe { std::ptr::read_volatile(m) });
        if off != 0 {
            // SAFETY: the caller's out-parameter, filled above.
            let t = unsafe { &mut *tp };
            let ns = t.tv_sec as i128 * 1_000_000_000 + t.tv_nsec as i128 + off as i128;
            t.tv_sec = ns.div_euclid(1_000_000_000) as libc::time_t;
            t.tv_nsec = ns.rem_euclid(1_000_000_000) as c_long;
        }
    }
    r
}
