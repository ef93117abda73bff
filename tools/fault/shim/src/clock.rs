//! The shifted wall clock: with `STRATA_SHIM_CLOCK` naming an 8-byte file,
//! realtime clocks read the real time plus its little-endian i64 of
//! nanoseconds (see the crate's docs). Monotonic clocks pass through.

use std::ffi::{c_int, c_long, c_void};
use std::sync::OnceLock;

use crate::journal::cstring;

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
