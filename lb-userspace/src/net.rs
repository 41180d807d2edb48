//! What the daemon asks the host's network stack: routes (netlink `RTM_GETROUTE`, i.e.
//! `ip route get`), local addresses, interface indexes, forwarding sysctls, bpffs.
use std::{
    ffi::{CStr, CString},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
};

use anyhow::{Context, Result, anyhow, bail};
use netlink_packet_core::{NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    route::{RouteAddress, RouteAttribute, RouteMessage},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

/// The kernel's answer to `ip route get DST`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub oif: u32,
    pub ifname: String,
    /// The source address the kernel would use: the LB's own address towards `dst`.
    pub prefsrc: Option<IpAddr>,
    pub gateway: Option<IpAddr>,
}

/// A netlink socket to the kernel's routing subsystem, bound and connected.
fn route_socket() -> Result<Socket> {
    let mut socket = Socket::new(NETLINK_ROUTE).context("opening a netlink socket")?;
    socket.bind_auto().context("binding the netlink socket")?;
    socket
        .connect(&SocketAddr::new(0, 0))
        .context("connecting the netlink socket")?;
    Ok(socket)
}

/// Looks up the route to `dst` in the current network namespace.
pub fn route_get(dst: IpAddr) -> Result<Route> {
    let socket = route_socket()?;

    let mut msg = RouteMessage::default();
    match dst {
        IpAddr::V4(a) => {
            msg.header.address_family = AddressFamily::Inet;
            msg.header.destination_prefix_length = 32;
            msg.attributes
                .push(RouteAttribute::Destination(RouteAddress::Inet(a)));
        }
        IpAddr::V6(a) => {
            msg.header.address_family = AddressFamily::Inet6;
            msg.header.destination_prefix_length = 128;
            msg.attributes
                .push(RouteAttribute::Destination(RouteAddress::Inet6(a)));
        }
    }
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST;
    header.sequence_number = 1;
    let mut req = NetlinkMessage::new(
        header,
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::GetRoute(msg)),
    );
    req.finalize();
    let mut buf = vec![0u8; req.buffer_len()];
    req.serialize(&mut buf);
    socket.send(&buf, 0).context("sending RTM_GETROUTE")?;

    let (reply, _) = socket
        .recv_from_full()
        .context("reading RTM_GETROUTE reply")?;
    let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&reply)
        .map_err(|e| anyhow!("decoding route reply: {e}"))?;
    let route = match msg.payload {
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(r)) => r,
        NetlinkPayload::Error(e) => {
            let err = e
                .code
                .map(|c| std::io::Error::from_raw_os_error(-c.get()))
                .map_or_else(|| "unknown error".to_string(), |e| e.to_string());
            bail!("no route to {dst}: {err}");
        }
        other => bail!("unexpected netlink reply to a route query: {other:?}"),
    };
    let mut out = Route {
        oif: 0,
        ifname: String::new(),
        prefsrc: None,
        gateway: None,
    };
    for a in route.attributes {
        match a {
            RouteAttribute::Oif(i) => out.oif = i,
            RouteAttribute::PrefSource(RouteAddress::Inet(a)) => out.prefsrc = Some(a.into()),
            RouteAttribute::PrefSource(RouteAddress::Inet6(a)) => out.prefsrc = Some(a.into()),
            RouteAttribute::Gateway(RouteAddress::Inet(a)) => out.gateway = Some(a.into()),
            RouteAttribute::Gateway(RouteAddress::Inet6(a)) => out.gateway = Some(a.into()),
            _ => {}
        }
    }
    if out.oif == 0 {
        bail!("the route to {dst} has no output interface");
    }
    out.ifname = ifname(out.oif)?;
    Ok(out)
}

/// Adds (`add`) or removes the route `vip/32 dev lo` (`vip/128` for an IPv6 VIP) in routing
/// table `table`: the signal a routing daemon exports as this node's announcement of `vip`
/// (`daemon::announce`). Adding replaces, removing a route that is not there is not an error.
pub fn vip_route(vip: IpAddr, table: u32, add: bool) -> Result<()> {
    use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE};
    use netlink_packet_route::route::{RouteProtocol, RouteScope, RouteType};
    let socket = route_socket()?;
    let mut msg = RouteMessage::default();
    let (family, len, dst, scope) = match vip {
        // Link scope, as `ip route add VIP/32 dev lo` gives an IPv4 route without a gateway;
        // IPv6 routes have no scope but the universe.
        IpAddr::V4(a) => (
            AddressFamily::Inet,
            32,
            RouteAddress::Inet(a),
            RouteScope::Link,
        ),
        IpAddr::V6(a) => (
            AddressFamily::Inet6,
            128,
            RouteAddress::Inet6(a),
            RouteScope::Universe,
        ),
    };
    msg.header.address_family = family;
    msg.header.destination_prefix_length = len;
    msg.header.table = if table < 256 { table as u8 } else { 252 }; // RT_TABLE_COMPAT
    msg.header.protocol = RouteProtocol::Static;
    msg.header.scope = scope;
    msg.header.kind = RouteType::Unicast;
    msg.attributes.push(RouteAttribute::Destination(dst));
    msg.attributes.push(RouteAttribute::Oif(ifindex("lo")?));
    msg.attributes.push(RouteAttribute::Table(table));
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_ACK;
    if add {
        header.flags |= NLM_F_CREATE | NLM_F_REPLACE;
    }
    header.sequence_number = 1;
    let payload = if add {
        RouteNetlinkMessage::NewRoute(msg)
    } else {
        RouteNetlinkMessage::DelRoute(msg)
    };
    let mut req = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(payload));
    req.finalize();
    let mut buf = vec![0u8; req.buffer_len()];
    req.serialize(&mut buf);
    let what = if add { "adding" } else { "removing" };
    let route = format!("the route {vip}/{len} in table {table}");
    socket
        .send(&buf, 0)
        .with_context(|| format!("{what} {route}"))?;
    let (reply, _) = socket
        .recv_from_full()
        .context("reading the route change's acknowledgment")?;
    let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&reply)
        .map_err(|e| anyhow!("decoding the route change's acknowledgment: {e}"))?;
    if let NetlinkPayload::Error(e) = msg.payload
        && let Some(code) = e.code
    {
        let err = std::io::Error::from_raw_os_error(-code.get());
        if !add && err.raw_os_error() == Some(libc::ESRCH) {
            return Ok(());
        }
        return Err(err).with_context(|| format!("{what} {route}"));
    }
    Ok(())
}

/// A local address and the interface holding it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalAddr {
    pub ifname: String,
    pub addr: IpAddr,
    pub up: bool,
    pub loopback: bool,
}

/// Every IPv4 and IPv6 address configured in this network namespace, but IPv6 link-local
/// ones (`fe80::/10`): a link-local address is only unique on its link and needs a scope,
/// which a service key has not, and HAProxy users reach VIPs by global or ULA addresses.
/// Tentative addresses (duplicate address detection under way) are listed: the kernel drops
/// what arrives for them until DAD ends, so listing them early opens no gap.
pub fn local_addrs() -> Result<Vec<LocalAddr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(std::io::Error::last_os_error()).context("getifaddrs");
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` walks the list returned by getifaddrs, which stays valid until freed.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: non-null, filled in by getifaddrs.
        let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
        let addr = if family == libc::AF_INET {
            // SAFETY: family is AF_INET, so this is a sockaddr_in.
            let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
            IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)))
        } else if family == libc::AF_INET6 {
            // SAFETY: family is AF_INET6, so this is a sockaddr_in6.
            let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
            let a = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            if a.is_unicast_link_local() {
                continue;
            }
            IpAddr::V6(a)
        } else {
            continue;
        };
        let name = unsafe { CStr::from_ptr(ifa.ifa_name) }
            .to_string_lossy()
            .into_owned();
        out.push(LocalAddr {
            ifname: name,
            addr,
            up: ifa.ifa_flags & libc::IFF_UP as u32 != 0,
            loopback: ifa.ifa_flags & libc::IFF_LOOPBACK as u32 != 0,
        });
    }
    // SAFETY: `head` came from getifaddrs.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

pub fn ifindex(name: &str) -> Result<u32> {
    let c = CString::new(name).map_err(|_| anyhow!("bad interface name {name:?}"))?;
    // SAFETY: a valid NUL-terminated string.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => bail!("no interface named {name}"),
        i => Ok(i),
    }
}

pub fn ifname(index: u32) -> Result<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `buf` has IF_NAMESIZE bytes as the call requires.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        bail!("no interface with index {index}");
    }
    // SAFETY: if_indextoname wrote a NUL-terminated name into `buf`.
    Ok(unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned())
}

/// `/proc/sys`, opened once before any `chroot`: sysctls are read and written through it, so
/// a reload inside the chroot still reaches them (with CAP_NET_ADMIN kept).
static PROC_SYS: std::sync::OnceLock<std::fs::File> = std::sync::OnceLock::new();

/// Opens `/proc/sys` for later use; call before `chroot`.
pub fn open_proc_sys() -> Result<()> {
    if PROC_SYS.get().is_none() {
        let dir = std::fs::File::open("/proc/sys").context("opening /proc/sys")?;
        let _ = PROC_SYS.set(dir);
    }
    Ok(())
}

/// The sysctl `key` (`net.ipv4.ip_forward`), opened through [`open_proc_sys`]'s handle.
pub fn sysctl_file(key: &str, write: bool) -> Result<std::fs::File> {
    use std::os::fd::{AsRawFd, FromRawFd};
    open_proc_sys()?;
    let dir = PROC_SYS
        .get()
        .ok_or_else(|| anyhow!("/proc/sys is not open"))?;
    let rel = CString::new(key.replace('.', "/")).map_err(|_| anyhow!("bad sysctl {key:?}"))?;
    let flags = if write {
        libc::O_WRONLY
    } else {
        libc::O_RDONLY
    } | libc::O_CLOEXEC;
    // SAFETY: openat on a directory fd we own, with a valid relative path.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), rel.as_ptr(), flags) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("opening {key}"));
    }
    // SAFETY: a fresh fd, owned by the File from here on.
    Ok(unsafe { std::fs::File::from_raw_fd(fd) })
}

pub fn sysctl_get(key: &str) -> Result<String> {
    let mut s = String::new();
    std::io::Read::read_to_string(&mut sysctl_file(key, false)?, &mut s)
        .with_context(|| format!("reading {key}"))?;
    Ok(s.trim().to_string())
}

pub fn sysctl_set(key: &str, value: &str) -> Result<()> {
    std::io::Write::write_all(&mut sysctl_file(key, true)?, value.as_bytes())
        .with_context(|| format!("setting {key}={value}"))
}

/// `net.ipv4.ip_local_port_range`, the ports this host's own connections use.
pub fn ephemeral_ports() -> Option<(u16, u16)> {
    let s = sysctl_get("net.ipv4.ip_local_port_range").ok()?;
    let mut it = s.split_whitespace().map(str::parse::<u16>);
    Some((it.next()?.ok()?, it.next()?.ok()?))
}

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Mounts bpffs on /sys/fs/bpf if it is not there yet (some minimal systems lack it).
pub fn ensure_bpffs() -> Result<()> {
    let path = Path::new("/sys/fs/bpf");
    let c = CString::new("/sys/fs/bpf").map_err(|e| anyhow!("{e}"))?;
    // SAFETY: statfs writes into a zeroed struct we own.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } == 0 && st.f_type as i64 == BPF_FS_MAGIC {
        return Ok(());
    }
    std::fs::create_dir_all(path).context("creating /sys/fs/bpf")?;
    let fstype = CString::new("bpf").map_err(|e| anyhow!("{e}"))?;
    // SAFETY: plain mount(2) with valid C strings and no data.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            c.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("mounting bpffs on /sys/fs/bpf");
    }
    Ok(())
}
