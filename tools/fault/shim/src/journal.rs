//! The journal: where the process's changes under the root are recorded
//! before they are made (see the crate's docs), and the path and file
//! helpers that decide what it covers. Its own I/O goes to the kernel
//! directly (`syscall`), never back through the wrapped calls.

use std::collections::HashMap;
use std::ffi::{c_char, c_int, CStr};
use std::sync::{Mutex, OnceLock};

use strata_fault_record::{replaced, Record};

pub(crate) struct Journal {
    /// The root, without a trailing slash.
    pub(crate) root: Vec<u8>,
    pub(crate) fd: c_int,
    pub(crate) saved_dir: Vec<u8>,
    pub(crate) seq: u64,
    /// Each file's length as last journaled, to notice changes made past
    /// this library.
    pub(crate) sizes: HashMap<u64, u64>,
}

pub(crate) fn journal() -> Option<&'static Mutex<Journal>> {
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

pub(crate) fn cstring(b: &[u8]) -> Vec<u8> {
    let mut v = b.to_vec();
    v.push(0);
    v
}

pub(crate) fn errno() -> c_int {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

pub(crate) fn set_errno(e: c_int) {
    // SAFETY: the calling thread's errno.
    unsafe { *libc::__errno_location() = e };
}

/// Stat by path, not following a final symlink.
pub(crate) fn lstat(path: &[u8]) -> Option<libc::stat> {
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

pub(crate) fn fstat(fd: c_int) -> Option<libc::stat> {
    // SAFETY: zeroed stat is a valid out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid out pointer; a bad fd gives an error.
    let r = unsafe { libc::syscall(libc::SYS_fstat, fd, &mut st as *mut libc::stat) };
    (r == 0).then_some(st)
}

pub(crate) fn is_reg(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFREG
}

pub(crate) fn is_dir(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

/// The path an open fd names (from /proc), if it still has one.
pub(crate) fn fd_path(fd: c_int) -> Option<Vec<u8>> {
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
pub(crate) fn absolute(dirfd: c_int, path: *const c_char) -> Option<Vec<u8>> {
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
pub(crate) fn normalize(p: &[u8]) -> Vec<u8> {
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

pub(crate) fn parent(p: &[u8]) -> &[u8] {
    match p.iter().rposition(|&b| b == b'/') {
        Some(0) => b"/",
        Some(i) => &p[..i],
        None => b".",
    }
}

impl Journal {
    /// Strictly inside the root.
    pub(crate) fn inside(&self, p: &[u8]) -> bool {
        p.len() > self.root.len() + 1 && p.starts_with(&self.root) && p[self.root.len()] == b'/'
    }

    /// Inside the root, or the root itself (a directory fsync of it counts).
    pub(crate) fn covers(&self, p: &[u8]) -> bool {
        p == self.root.as_slice() || self.inside(p)
    }

    pub(crate) fn append(&mut self, rec: &Record) {
        let rec = rec.encode();
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
    pub(crate) fn note_size(&mut self, ino: u64, size: u64, path: &[u8]) {
        match self.sizes.insert(ino, size) {
            Some(known) if known != size => {
                self.append(&Record::Size {
                    ino,
                    old: known,
                    new: size,
                    tail: Vec::new(),
                    path: path.to_vec(),
                });
            }
            _ => {}
        }
    }

    /// Journals a write of `len` bytes at `off` to the file behind `fd`.
    pub(crate) fn write(&mut self, st: &libc::stat, path: &[u8], off: u64, len: u64) {
        let ino = st.st_ino;
        let size = st.st_size as u64;
        self.note_size(ino, size, path);
        let have = replaced(off, len, size);
        let mut old = vec![0u8; have as usize];
        if have > 0 {
            read_at(path, &mut old, off);
        }
        let zeroed = old.iter().all(|&b| b == 0);
        self.append(&Record::Write {
            ino,
            off,
            len,
            old_size: size,
            old: (!zeroed).then_some(old),
            path: path.to_vec(),
        });
        self.sizes.insert(ino, size.max(off + len));
    }

    /// Journals the file's length becoming `new`.
    pub(crate) fn resize(&mut self, st: &libc::stat, path: &[u8], new: u64) {
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
        self.append(&Record::Size {
            ino,
            old: size,
            new,
            tail,
            path: path.to_vec(),
        });
        self.sizes.insert(ino, new);
    }

    /// Keeps what `path` names as a hard link under the saved dir.
    pub(crate) fn save(&mut self, path: &[u8]) -> Vec<u8> {
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

/// Reads what the file at `path` holds at `off` (through a descriptor of
/// its own: the caller's may be write-only). Short reads leave zeros.
pub(crate) fn read_at(path: &[u8], buf: &mut [u8], off: u64) {
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
pub(crate) fn tracked(
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
pub(crate) fn tracked_path(
    dirfd: c_int,
    path: *const c_char,
) -> Option<(std::sync::MutexGuard<'static, Journal>, Vec<u8>)> {
    let j = journal()?;
    let p = absolute(dirfd, path)?;
    let g = j.lock().unwrap_or_else(|e| e.into_inner());
    g.inside(&p).then_some((g, p))
}

pub(crate) fn parent_ino(p: &[u8]) -> u64 {
    lstat(parent(p)).map_or(0, |st| st.st_ino)
}
