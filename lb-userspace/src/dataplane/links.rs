//! Where the XDP program is attached, and what keeps it there.
//!
//! With a pin directory (a daemon), every attachment is a bpf_link pinned next to the maps
//! (`xdp_<ifindex>`): the program stays attached when the daemon exits, whatever the reason
//! (crash, SIGKILL, an upgrade), and keeps forwarding with the last published tables. A daemon
//! that starts on an interface whose link is pinned *adopts* it: `BPF_LINK_UPDATE` swaps in its
//! own program atomically, so no packet meets an interface without lb. Detaching is explicit
//! (`BPF_LINK_DETACH`, which works on a pinned link without touching bpffs, so a daemon that
//! dropped its privileges can still do it). Without a pin directory (tests, benchmarks)
//! attachments are plain links that go away with the process.
use std::{
    ffi::CString,
    os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, anyhow};
use aya::programs::{Xdp, XdpMode, links::FdLink, xdp::XdpLinkId};

/// An interface the program is attached to.
pub struct Attachment {
    pub ifname: String,
    pub ifindex: u32,
    /// How it was attached (for an adopted link: as the daemon before chose).
    pub mode: Option<XdpMode>,
    /// An earlier daemon's link, taken over.
    pub adopted: bool,
    hold: Hold,
}

enum Hold {
    /// A pinned link and our handle on it.
    Pinned { pin: PathBuf, link: OwnedFd },
    /// A link owned by the program object (gone with the process).
    Owned(XdpLinkId),
}

/// The pin of the link on interface `ifindex`. (Interface names may hold dots, which bpffs
/// reserves.)
pub fn pin_path(dir: &Path, ifindex: u32) -> PathBuf {
    dir.join(format!("xdp_{ifindex}"))
}

/// Attaches `prog` to `ifname`: adopts the pinned link there if there is one, else creates a
/// link (native mode if the driver allows, else generic) and pins it under `pin_dir`.
pub fn attach(prog: &mut Xdp, ifname: &str, pin_dir: Option<&Path>) -> Result<Attachment> {
    let ifindex = crate::net::ifindex(ifname)?;
    if let Some(dir) = pin_dir {
        let pin = pin_path(dir, ifindex);
        if pin.exists() {
            match adopt(prog, &pin) {
                Ok(link) => {
                    return Ok(Attachment {
                        ifname: ifname.into(),
                        ifindex,
                        mode: None,
                        adopted: true,
                        hold: Hold::Pinned { pin, link },
                    });
                }
                // A link whose interface went away and came back, or that someone detached:
                // not ours to adopt any more.
                Err(_) => std::fs::remove_file(&pin)
                    .with_context(|| format!("removing the stale link {}", pin.display()))?,
            }
        }
    }
    let (id, mode) = match prog.attach(ifname, XdpMode::Driver) {
        Ok(id) => (id, XdpMode::Driver),
        Err(native) => match prog.attach(ifname, XdpMode::Skb) {
            Ok(id) => (id, XdpMode::Skb),
            Err(skb) => {
                return Err(anyhow!(
                    "attaching XDP to {ifname}: native mode: {native}; generic mode: {skb}"
                ));
            }
        },
    };
    let hold = match pin_dir {
        None => Hold::Owned(id),
        Some(dir) => {
            let pin = pin_path(dir, ifindex);
            let link: FdLink = prog.take_link(id)?.try_into().map_err(|e| {
                anyhow!("{ifname}: the kernel attached XDP without a bpf_link: {e}")
            })?;
            // The pin holds the link from here on; our own handle comes from the pin.
            link.pin(&pin)
                .with_context(|| format!("pinning the XDP link at {}", pin.display()))?;
            Hold::Pinned {
                link: obj_get(&pin)?,
                pin,
            }
        }
    };
    Ok(Attachment {
        ifname: ifname.into(),
        ifindex,
        mode: Some(mode),
        adopted: false,
        hold,
    })
}

/// Swaps `prog` into the pinned link at `pin`.
fn adopt(prog: &mut Xdp, pin: &Path) -> Result<OwnedFd> {
    let link = obj_get(pin)?;
    let prog_fd = prog.fd().context("the program is not loaded")?;
    link_update(&link, prog_fd.as_fd())?;
    Ok(link)
}

impl Attachment {
    /// Runs `prog` on the interface instead (`BPF_LINK_UPDATE`, atomic).
    pub fn point_at(&self, prog: &Xdp) -> Result<()> {
        match &self.hold {
            Hold::Pinned { link, .. } => {
                let fd = prog.fd().context("the program is not loaded")?;
                link_update(link, fd.as_fd())
                    .with_context(|| format!("switching the program on {}", self.ifname))
            }
            Hold::Owned(_) => Err(anyhow!(
                "{}: switching programs needs a pinned link (lb run)",
                self.ifname
            )),
        }
    }

    /// Takes the program off the interface.
    pub fn detach(self, prog: &mut Xdp) -> Result<()> {
        match self.hold {
            Hold::Owned(id) => prog
                .detach(id)
                .with_context(|| format!("detaching from {}", self.ifname)),
            Hold::Pinned { pin, link } => {
                link_detach(&link).with_context(|| format!("detaching from {}", self.ifname))?;
                // The pin of a detached link is inert; a daemon without write access to bpffs
                // leaves it for the next start (or `lb stop`) to remove.
                let _ = std::fs::remove_file(pin);
                Ok(())
            }
        }
    }
}

/// Detaches every link pinned under `dir` (`lb stop`), returning the interfaces' indexes.
pub fn detach_pinned(dir: &Path) -> Result<Vec<u32>> {
    detach_pinned_except(dir, &[])
}

/// Detaches the links pinned under `dir` but those on interfaces `keep`.
pub fn detach_pinned_except(dir: &Path, keep: &[u32]) -> Result<Vec<u32>> {
    let mut done = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(done);
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(ifindex) = name
            .strip_prefix("xdp_")
            .and_then(|i| i.parse::<u32>().ok())
        else {
            continue;
        };
        if keep.contains(&ifindex) {
            continue;
        }
        if let Ok(link) = obj_get(&e.path()) {
            // A link already defunct (its interface gone) fails here: nothing to undo.
            let _ = link_detach(&link);
        }
        std::fs::remove_file(e.path())
            .with_context(|| format!("removing {}", e.path().display()))?;
        done.push(ifindex);
    }
    Ok(done)
}

// The three link commands aya 0.14 does not expose for a pinned link, as raw bpf(2) calls.
const BPF_OBJ_GET: libc::c_long = 7;
const BPF_LINK_UPDATE: libc::c_long = 29;
const BPF_LINK_DETACH: libc::c_long = 34;

fn bpf(cmd: libc::c_long, attr: &mut [u64; 4]) -> std::io::Result<i64> {
    // SAFETY: bpf(2) with an attribute union we own, sized as the kernel accepts (extra zero
    // bytes past the command's own fields are required to be zero, and are).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.as_mut_ptr(),
            std::mem::size_of_val(attr),
        )
    };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Opens the object pinned at `path`.
fn obj_get(path: &Path) -> Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| anyhow!("bad pin path {}", path.display()))?;
    // union bpf_attr { __aligned_u64 pathname; __u32 bpf_fd; __u32 file_flags; ... }
    let mut attr = [c.as_ptr() as u64, 0, 0, 0];
    let fd = bpf(BPF_OBJ_GET, &mut attr).with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: a fresh fd returned by the kernel, owned from here on.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Points `link` at `prog`.
fn link_update(link: &OwnedFd, prog: std::os::fd::BorrowedFd<'_>) -> Result<()> {
    // link_update { __u32 link_fd; __u32 new_prog_fd; __u32 flags; __u32 old_prog_fd; }
    let lo = link.as_raw_fd() as u32 as u64 | ((prog.as_raw_fd() as u32 as u64) << 32);
    let mut attr = [lo, 0, 0, 0];
    bpf(BPF_LINK_UPDATE, &mut attr).context("BPF_LINK_UPDATE")?;
    Ok(())
}

/// Takes `link`'s program off its interface, even if the link is pinned.
fn link_detach(link: &OwnedFd) -> Result<()> {
    // link_detach { __u32 link_fd; }
    let mut attr = [link.as_raw_fd() as u32 as u64, 0, 0, 0];
    bpf(BPF_LINK_DETACH, &mut attr).context("BPF_LINK_DETACH")?;
    Ok(())
}
