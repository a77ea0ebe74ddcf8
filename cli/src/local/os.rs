//! What `wsctl dev` asks of the operating system: children that cannot outlive it, and enough
//! file descriptors for many connections.

/// Makes `cmd` a child wsctl dev owns: killed when dropped, and when wsctl dies even by
/// SIGKILL; in its own process group, so Ctrl-C in the terminal reaches wsctl dev only, which
/// then stops its children in order.
pub fn own_child(cmd: &mut tokio::process::Command) {
    cmd.kill_on_drop(true);
    #[cfg(unix)]
    cmd.process_group(0);
    #[cfg(target_os = "linux")]
    unsafe {
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// 10,000 connections need as many descriptors; the soft limit is often 1,024. Returns the
/// limit now in force (`None` where it cannot be read).
pub fn raise_fd_limit() -> Option<u64> {
    #[cfg(unix)]
    unsafe {
        // SAFETY: plain syscalls on a stack-allocated struct.
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every Unix
            return Some(lim.rlim_cur as u64);
        }
    }
    None
}

/// Gives the heap that start-up left free (the deploy's SDK clients and answers, the build's
/// output, the mirror of the tables) back to the system, so what the gateway keeps resident
/// is what its connections use: glibc keeps freed memory in its arenas otherwise.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        // SAFETY: malloc_trim only walks the allocator's own free lists.
        libc::malloc_trim(0);
    }
}
