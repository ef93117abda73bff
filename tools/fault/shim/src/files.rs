//! The wrapped file calls: each journals what it is about to change under
//! the root (through [`crate::journal`]) and then makes the change with a
//! raw syscall; anything outside the root passes straight through.

use std::ffi::{c_char, c_int, c_long, c_uint, c_void};

use libc::{iovec, mode_t, off64_t, size_t, ssize_t};

use crate::journal::*;
use strata_fault_record::Record;

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
            j.append(&Record::Create {
                parent: parent_ino(&p),
                path: p.clone(),
            });
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
    j.append(&Record::SyncBegin {
        ino: st.st_ino,
        seq,
    });
    // Let other changes go on while this one syncs: a change journaled
    // after the `S` is not counted as covered by it.
    drop(j);
    let res = raw();
    let e = errno();
    if let Some(j) = journal() {
        let mut j = j.lock().unwrap_or_else(|e| e.into_inner());
        j.append(&Record::SyncEnd {
            seq,
            result: if res == 0 { 0 } else { e.max(1) as u64 },
        });
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
    j.append(&Record::Rename {
        ino: src.st_ino,
        from_parent: parent_ino(&from),
        to_parent: parent_ino(&to),
        from: from.clone(),
        to: to.clone(),
        saved,
    });
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
    let parent = parent_ino(&p);
    let rec = if is_dir(&st) {
        Record::Rmdir { parent, path: p }
    } else {
        let saved = j.save(&p);
        Record::Unlink {
            parent,
            path: p,
            saved,
        }
    };
    j.append(&rec);
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
    j.append(&Record::Mkdir {
        parent: parent_ino(&p),
        path: p,
    });
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
