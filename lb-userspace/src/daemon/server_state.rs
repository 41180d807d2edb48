//! HAProxy's server state file (`server-state-file`, `load-server-state-from-file`): the
//! `show servers state` dump, read back at start so operators' changes (drain, maintenance,
//! weights) and servers' health survive a restart.
//!
//! HAProxy only reads the file; its operators dump it before a reload. lb also writes it
//! after every operator change and when it stops (in the same format, so a dump made with
//! `socat` works too), which also covers a crash. Without the keywords, state resets to the
//! configuration on restart, as in HAProxy.
use std::{
    collections::BTreeMap,
    ffi::CString,
    fs::File,
    io::{Read, Write},
    net::IpAddr,
    os::fd::{AsRawFd, FromRawFd},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, anyhow, bail};

use super::servers::Admin;
use crate::config::{Backend, Config, Global, LoadState};

/// One server's line, as far as lb applies it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Saved {
    pub backend: String,
    pub server: String,
    /// `srv_op_state`: running (2) or not.
    pub up: bool,
    /// From `srv_admin_state`: forced maintenance (0x01) or forced drain (0x08).
    pub admin: Admin,
    /// `srv_uweight`.
    pub weight: u32,
    /// `srv_addr`: where `init-addr last` starts a server given by host name.
    /// Either family (HAProxy prints IPv6 bare here).
    pub addr: Option<IpAddr>,
}

const SRV_ADMF_FMAINT: u32 = 0x01;
const SRV_ADMF_FDRAIN: u32 = 0x08;
const SRV_ST_RUNNING: u32 = 2;

/// Reads a `show servers state` dump (version 1, columns named by its header line).
pub fn parse(text: &str) -> Result<Vec<Saved>> {
    let mut lines = text.lines();
    match lines.next().map(str::trim) {
        Some("1") => {}
        Some(v) => bail!("unknown server state file version '{v}' (lb reads version 1)"),
        None => return Ok(Vec::new()),
    }
    let header = lines
        .next()
        .and_then(|h| h.strip_prefix('#'))
        .ok_or_else(|| anyhow!("the second line must name the columns ('# be_id be_name ...')"))?;
    let cols: Vec<&str> = header.split_whitespace().collect();
    let col = |name: &str| {
        cols.iter()
            .position(|c| *c == name)
            .ok_or_else(|| anyhow!("no column '{name}'"))
    };
    let (be, srv, op, admin, weight) = (
        col("be_name")?,
        col("srv_name")?,
        col("srv_op_state")?,
        col("srv_admin_state")?,
        col("srv_uweight")?,
    );
    let addr = col("srv_addr").ok();
    let mut out = Vec::new();
    for (n, line) in lines.enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        let field = |i: usize| {
            f.get(i)
                .copied()
                .ok_or_else(|| anyhow!("line {}: too few fields", n + 3))
        };
        let num = |i: usize| -> Result<u32> {
            field(i)?
                .parse()
                .map_err(|_| anyhow!("line {}: '{}' is not a number", n + 3, f[i]))
        };
        let flags = num(admin)?;
        out.push(Saved {
            backend: field(be)?.to_string(),
            server: field(srv)?.to_string(),
            up: num(op)? == SRV_ST_RUNNING,
            admin: if flags & SRV_ADMF_FMAINT != 0 {
                Admin::Maint
            } else if flags & SRV_ADMF_FDRAIN != 0 {
                Admin::Drain
            } else {
                Admin::Ready
            },
            weight: num(weight)?,
            addr: addr.and_then(|i| f.get(i)?.parse().ok()),
        });
    }
    Ok(out)
}

/// The file a backend's state comes from, if it loads one: the global `server-state-file`
/// (`load-server-state-from-file global`) or its own (`local`: `server-state-file-name`, else
/// the backend's name), relative names under `server-state-base`.
pub fn path_for(g: &Global, b: &Backend) -> Option<PathBuf> {
    let under_base = |p: &Path| match (&g.server_state_base, p.is_absolute()) {
        (Some(base), false) => base.join(p),
        _ => p.to_path_buf(),
    };
    match b.load_state {
        LoadState::None => None,
        LoadState::Global => g.server_state_file.as_deref().map(under_base),
        LoadState::Local => {
            let name = b.state_file_name.clone().unwrap_or_else(|| b.name.clone());
            Some(under_base(Path::new(&name)))
        }
    }
}

/// The addresses recorded for servers in the state files `cfg`'s backends load, by (backend,
/// server): what `init-addr last` gives a server named by host name. `read` answers a file's
/// content (`None`: missing or unreadable; the method is then skipped, as HAProxy does).
pub fn last_addrs(
    cfg: &Config,
    read: impl Fn(&Path) -> Option<String>,
) -> BTreeMap<(String, String), IpAddr> {
    let mut out = BTreeMap::new();
    let mut files: BTreeMap<PathBuf, Vec<Saved>> = BTreeMap::new();
    for b in cfg
        .backends
        .iter()
        .filter(|b| b.servers.iter().any(|s| s.fqdn.is_some()))
    {
        let Some(path) = path_for(&cfg.global, b) else {
            continue;
        };
        let saved = files
            .entry(path.clone())
            .or_insert_with(|| read(&path).and_then(|t| parse(&t).ok()).unwrap_or_default());
        for s in saved.iter().filter(|s| s.backend == b.name) {
            if let Some(a) = s.addr.filter(|a| !a.is_unspecified()) {
                out.insert((s.backend.clone(), s.server.clone()), a);
            }
        }
    }
    out
}

/// A state file, reachable after `chroot`: its directory is opened up front.
pub struct StateFile {
    pub path: PathBuf,
    dir: File,
    name: CString,
}

impl StateFile {
    pub fn open(path: &Path) -> Result<StateFile> {
        let dir_path = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let dir = File::open(dir_path)
            .with_context(|| format!("opening directory {}", dir_path.display()))?;
        let name = path
            .file_name()
            .and_then(|n| CString::new(n.as_encoded_bytes()).ok())
            .ok_or_else(|| anyhow!("{} names no file", path.display()))?;
        Ok(StateFile {
            path: path.to_path_buf(),
            dir,
            name,
        })
    }

    /// The file's content; `None` when it does not exist (yet).
    pub fn read(&self) -> Result<Option<String>> {
        // SAFETY: openat on a directory fd we own, with a valid C string.
        let fd = unsafe {
            libc::openat(
                self.dir.as_raw_fd(),
                self.name.as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::NotFound {
                return Ok(None);
            }
            return Err(e).with_context(|| format!("opening {}", self.path.display()));
        }
        // SAFETY: a fresh fd, owned by the File from here on.
        let mut f = unsafe { File::from_raw_fd(fd) };
        let mut s = String::new();
        f.read_to_string(&mut s)
            .with_context(|| format!("reading {}", self.path.display()))?;
        Ok(Some(s))
    }

    /// Replaces the file with `text` (a temporary file renamed over it: readers never see
    /// half a dump).
    pub fn write(&self, text: &str) -> Result<()> {
        let mut tmp = self.name.as_bytes().to_vec();
        tmp.extend_from_slice(b".lb-tmp");
        let tmp = CString::new(tmp).map_err(|_| anyhow!("bad file name"))?;
        // SAFETY: openat on our directory fd with a valid C string.
        let fd = unsafe {
            libc::openat(
                self.dir.as_raw_fd(),
                tmp.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
                0o600,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("writing next to {}", self.path.display()));
        }
        // SAFETY: a fresh fd, owned by the File from here on.
        let mut f = unsafe { File::from_raw_fd(fd) };
        f.write_all(text.as_bytes())?;
        drop(f);
        // SAFETY: renameat within the directory we own.
        let rc = unsafe {
            libc::renameat(
                self.dir.as_raw_fd(),
                tmp.as_ptr(),
                self.dir.as_raw_fd(),
                self.name.as_ptr(),
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("replacing {}", self.path.display()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    // As `show servers state` prints it (lb's and HAProxy 2.6's captured output).
    const DUMP: &str = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n\
3 hoge 1 web10 10.200.10.10 2 0 1 1 19 15 3 3 6 0 0 0 - 80 - 0 0 - - 0\n\
3 hoge 2 web11 10.200.11.11 2 8 3 1 25 15 3 3 6 0 0 0 - 80 - 0 0 - - 0\n\
3 hoge 3 web12 10.200.11.12 0 1 1 1 25 15 3 3 6 0 0 0 - 80 - 0 0 - - 0\n\
3 hoge 4 web13 10.200.11.13 0 0 1 1 25 7 2 0 6 0 0 0 - 80 - 0 0 - - 0\n\
3 hoge 5 web14 fd00:16::10 2 0 1 1 25 15 3 3 6 0 0 0 - 80 - 0 0 - - 0\n";

    #[test]
    fn a_dump_reads_back() {
        let s = parse(DUMP).expect("parses");
        let got: Vec<_> = s
            .iter()
            .map(|x| (x.server.as_str(), x.up, x.admin, x.weight))
            .collect();
        assert_eq!(
            got,
            [
                ("web10", true, Admin::Ready, 1),
                ("web11", true, Admin::Drain, 3),
                ("web12", false, Admin::Maint, 1),
                ("web13", false, Admin::Ready, 1),
                ("web14", true, Admin::Ready, 1),
            ]
        );
        assert!(s.iter().all(|x| x.backend == "hoge"));
    }

    #[test]
    fn last_addresses_come_from_the_file_the_backend_loads() {
        let text = "global\n  server-state-file /s/global.state\nfrontend f\n  bind 10.0.0.1:80\n  default_backend hoge\nbackend hoge\n  load-server-state-from-file global\n  server web10 app.example:80\n  server web11 10.0.0.2:80\nbackend other\n  server web10 app.example:80\n";
        let cfg = crate::config::parse_bytes("t.cfg", text.as_bytes(), false)
            .expect("config")
            .config;
        let got = last_addrs(&cfg, |p| {
            (p == Path::new("/s/global.state")).then(|| DUMP.into())
        });
        // Every server of `hoge` the file names; `other` loads no file.
        assert_eq!(
            got.get(&("hoge".into(), "web10".into())),
            Some(&IpAddr::from(Ipv4Addr::new(10, 200, 10, 10)))
        );
        // IPv6 as HAProxy prints it in `srv_addr` (bare), for a server that resolved to one.
        assert_eq!(
            got.get(&("hoge".into(), "web14".into())),
            Some(&"fd00:16::10".parse::<IpAddr>().expect("ip"))
        );
        assert_eq!(got.len(), 5);
        assert!(last_addrs(&cfg, |_| None).is_empty());
    }

    #[test]
    fn bad_dumps_say_why() {
        assert!(parse("").expect("empty").is_empty());
        let e = parse("2\n# be_name\n").expect_err("version");
        assert!(e.to_string().contains("version '2'"), "{e}");
        let e = parse("1\n# be_name srv_name\nx y\n").expect_err("columns");
        assert!(e.to_string().contains("srv_op_state"), "{e}");
        let e = parse(&DUMP.replace(" 2 8 3 ", " 2 x 3 ")).expect_err("number");
        assert!(e.to_string().contains("line 4"), "{e}");
    }

    #[test]
    fn files_are_found_as_haproxy_finds_them() {
        let g = Global {
            server_state_file: Some("global.state".into()),
            server_state_base: Some("/var/lib/lb".into()),
            ..Global::default()
        };
        let b = |load, name: Option<&str>| {
            Backend {
            load_state: load,
            state_file_name: name.map(Into::into),
            ..crate::config::native::parse(
                "t.toml",
                "[frontend.f]\nbind = [\"10.0.0.1:80\"]\ndefault_backend = \"hoge\"\n[backend.hoge]\nserver = [{ name = \"a\", address = \"10.0.1.1:80\" }]\n",
            )
            .expect("config")
            .backends[0]
                .clone()
        }
        };
        assert_eq!(path_for(&g, &b(LoadState::None, None)), None);
        assert_eq!(
            path_for(&g, &b(LoadState::Global, None)),
            Some("/var/lib/lb/global.state".into())
        );
        assert_eq!(
            path_for(&g, &b(LoadState::Local, None)),
            Some("/var/lib/lb/hoge".into())
        );
        assert_eq!(
            path_for(&g, &b(LoadState::Local, Some("/etc/x"))),
            Some("/etc/x".into())
        );
    }
}
