//! Integer socket options that neither `std` nor `socket2` sets (`TCP_DEFER_ACCEPT`, `SO_NO_CHECK`):
//! one `setsockopt(2)` call, the crate's only one.

use std::io;
use std::os::fd::AsFd;
use std::os::fd::AsRawFd as _;

/// Sets option `name` at `level` of `sock` to `value`.
pub fn set_int(
    sock: &impl AsFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    let fd = sock.as_fd();
    // SAFETY: `fd` is borrowed from `sock`, so it stays open for the whole call, and the option value
    // is a live `c_int` whose size is passed with it.
    #[allow(unsafe_code)]
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            std::ptr::from_ref(&value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
