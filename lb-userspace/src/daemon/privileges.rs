//! `chroot`, `user`, `group` and `daemon` from the global section, as HAProxy applies them:
//! after everything that needs root is open (maps, XDP links, sockets, sysctl files).
//!
//! Unlike HAProxy, lb keeps two capabilities across the switch: CAP_BPF (map updates: Debian
//! forbids bpf() to unprivileged users) and CAP_NET_ADMIN (attaching on reload, restoring the
//! interface sysctls at exit). Everything else is dropped.
use std::{
    ffi::CString,
    io::{Read, Write},
    os::fd::{FromRawFd, OwnedFd},
};

use anyhow::{Context, Result, anyhow, bail};
use caps::{CapSet, Capability, CapsHashSet};

use crate::config::Global;

/// What lb keeps once it is no longer root (CAP_PERFMON with CAP_BPF lets the kernel take
/// the program's pointer arithmetic as a privileged user's).
const KEEP: [Capability; 3] = [
    Capability::CAP_NET_ADMIN,
    Capability::CAP_PERFMON,
    Capability::CAP_BPF,
];

/// Who to become, resolved while /etc/passwd is still reachable.
pub struct Identity {
    uid: Option<libc::uid_t>,
    gid: Option<libc::gid_t>,
}

pub fn resolve(g: &Global) -> Result<Identity> {
    let uid = match &g.user {
        Some(u) => Some(lookup_user(u)?),
        None => None,
    };
    let gid = match &g.group {
        Some(grp) => Some(lookup_group(grp)?),
        None => None,
    };
    Ok(Identity { uid, gid })
}

fn lookup_user(name: &str) -> Result<libc::uid_t> {
    let c = CString::new(name).map_err(|_| anyhow!("bad user name {name:?}"))?;
    // SAFETY: getpwnam returns a pointer into static storage or NULL; read at once.
    let pw = unsafe { libc::getpwnam(c.as_ptr()) };
    if pw.is_null() {
        bail!("global 'user {name}': no such user");
    }
    Ok(unsafe { (*pw).pw_uid })
}

fn lookup_group(name: &str) -> Result<libc::gid_t> {
    let c = CString::new(name).map_err(|_| anyhow!("bad group name {name:?}"))?;
    // SAFETY: as for getpwnam.
    let gr = unsafe { libc::getgrnam(c.as_ptr()) };
    if gr.is_null() {
        bail!("global 'group {name}': no such group");
    }
    Ok(unsafe { (*gr).gr_gid })
}

/// Applies `chroot`, then `group` and `user`, keeping CAP_BPF and CAP_NET_ADMIN.
pub fn drop_privileges(g: &Global, id: &Identity) -> Result<()> {
    if let Some(dir) = &g.chroot {
        let c = CString::new(dir.as_os_str().as_encoded_bytes())
            .map_err(|_| anyhow!("bad chroot path"))?;
        // SAFETY: plain syscalls with a valid path.
        if unsafe { libc::chroot(c.as_ptr()) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("chroot {}", dir.display()));
        }
        std::env::set_current_dir("/").context("chdir / in the chroot")?;
    }
    if id.uid.is_none() && id.gid.is_none() {
        return Ok(());
    }
    // Permitted capabilities survive the switch of uid; the effective ones are cleared by it
    // and raised again below.
    caps::securebits::set_keepcaps(true).context("PR_SET_KEEPCAPS")?;
    // SAFETY: setgroups/setgid/setuid with plain integer arguments.
    unsafe {
        if let Some(gid) = id.gid
            && (libc::setgroups(1, &gid) != 0 || libc::setgid(gid) != 0)
        {
            return Err(std::io::Error::last_os_error()).context("setgid");
        }
        if let Some(uid) = id.uid
            && libc::setuid(uid) != 0
        {
            return Err(std::io::Error::last_os_error()).context("setuid");
        }
    }
    let keep: CapsHashSet = KEEP.into_iter().collect();
    // The effective set may only hold permitted capabilities: it is narrowed (or raised
    // again, after setuid) before the permitted one.
    caps::set(None, CapSet::Effective, &keep).context("capset (effective)")?;
    caps::set(None, CapSet::Permitted, &keep).context("capset (permitted)")?;
    caps::clear(None, CapSet::Inheritable).context("capset (inheritable)")?;
    Ok(())
}

/// `daemon`: forks before any thread exists. The parent waits until the child says it is
/// attached and serving (or failed), so `lb run` returns only once the balancer runs, with
/// the child's status. Returns in the child with the pipe to report readiness on.
pub fn daemonize() -> Result<Readiness> {
    let mut fds = [0; 2];
    // SAFETY: pipe(2) into a local array.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error()).context("pipe");
    }
    // SAFETY: the fds were just created and are owned here.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: single-threaded at this point (no runtime yet), as fork requires.
    match unsafe { libc::fork() } {
        -1 => Err(std::io::Error::last_os_error()).context("fork"),
        0 => {
            drop(rd);
            // SAFETY: setsid has no preconditions.
            unsafe { libc::setsid() };
            Ok(Readiness {
                pipe: Some(std::fs::File::from(wr)),
            })
        }
        child => {
            drop(wr);
            let mut msg = String::new();
            let _ = std::fs::File::from(rd).read_to_string(&mut msg);
            if msg.starts_with("ready") {
                eprintln!("[NOTICE] lb running in the background (pid {child})");
                std::process::exit(0);
            }
            std::process::exit(1);
        }
    }
}

/// The child's end of the readiness pipe (nothing when running in the foreground).
pub struct Readiness {
    pipe: Option<std::fs::File>,
}

impl Readiness {
    pub fn foreground() -> Readiness {
        Readiness { pipe: None }
    }

    /// Tells the waiting parent that the balancer runs, and detaches from the terminal.
    pub fn ready(&mut self) {
        if let Some(mut p) = self.pipe.take() {
            let _ = p.write_all(b"ready\n");
            let devnull = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null");
            if let Ok(null) = devnull {
                use std::os::fd::AsRawFd;
                // SAFETY: dup2 onto the standard descriptors.
                unsafe {
                    libc::dup2(null.as_raw_fd(), 0);
                    libc::dup2(null.as_raw_fd(), 1);
                    libc::dup2(null.as_raw_fd(), 2);
                }
            }
        }
    }
}
