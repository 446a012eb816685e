//! Socket options that neither `std` nor `socket2` sets: integers (`TCP_DEFER_ACCEPT`, `SO_NO_CHECK`,
//! `SO_RCVBUFFORCE`) and the `SO_REUSEPORT` group's steering program. One `setsockopt(2)` call, the
//! crate's only one.

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
    set(sock, level, name, &value)
}

/// `SO_ATTACH_REUSEPORT_CBPF` (asm-generic/socket.h; `libc` defines it for Android only).
#[cfg(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "riscv64"
))]
const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 51;

/// Makes the `SO_REUSEPORT` group of `sock` (`groups` sockets) give a new connection or datagram to its
/// socket number `cpu % groups`, `cpu` being the core the kernel receives it on, instead of one chosen
/// by a hash of the addresses. Sockets are numbered in the order they were bound.
pub fn steer_reuseport_by_cpu(sock: &impl AsFd, groups: u32) -> io::Result<()> {
    #[cfg(any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_arch = "riscv64"
    ))]
    {
        // A = the receiving core; A %= groups; return A.
        let mut code = [
            filter(
                libc::BPF_LD | libc::BPF_W | libc::BPF_ABS,
                (libc::SKF_AD_OFF + libc::SKF_AD_CPU) as u32,
            ),
            filter(libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K, groups.max(1)),
            filter(libc::BPF_RET | libc::BPF_A, 0),
        ];
        let program = libc::sock_fprog {
            len: code.len() as libc::c_ushort,
            filter: code.as_mut_ptr(),
        };
        set(sock, libc::SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &program)
    }
    #[cfg(not(any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_arch = "riscv64"
    )))]
    {
        let _ = (sock, groups);
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
}

#[cfg(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "riscv64"
))]
fn filter(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

fn set<T>(sock: &impl AsFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    let fd = sock.as_fd();
    // SAFETY: `fd` is borrowed from `sock`, so it stays open for the whole call, and `value` is a live
    // `T` whose size is passed with it (a `sock_fprog`'s filter array outlives the call too: the
    // kernel copies it before returning).
    #[allow(unsafe_code)]
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            std::ptr::from_ref(value).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
