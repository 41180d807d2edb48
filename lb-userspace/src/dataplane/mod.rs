//! The control plane's one door to the XDP program: load it, pin its maps, attach it, write
//! its maps. Everything above this module talks in config terms; everything below in map terms.
pub mod access;
pub mod clock;
pub mod ids;
pub mod kernel_hz;
pub mod layout;
pub mod links;
pub mod maps;
pub mod table;
pub mod testrun;
pub mod writer;

use std::{net::IpAddr, path::PathBuf};

use anyhow::{Context, Result, anyhow};
use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, RingBuf},
    programs::{ProgramError, Xdp},
};
use lb_common::{
    Keep, MAPS, PROG_LB, PROG_LB4, PROG_LB6, PROG_PASS, PROGS_LB4, PROGS_LB6,
    flow_cache::{GLOBAL_FLOW_CACHE_TTL, MIN_HZ, flow_cache_ttl},
    trace,
};

use ids::PoolSlot;
pub use links::Attachment;
pub use maps::{Maps, TableSizes, pin_dir};
use writer::Publisher;

/// The XDP object built by `build.rs` from `lb-ebpf`.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb-xdp"));

/// Where `build.rs` left another build of the same data plane (lb-ebpf's `variant` feature),
/// for tests that upgrade a running instance to a different object.
pub const VARIANT_OBJECT: &str = concat!(env!("OUT_DIR"), "/lb-xdp-variant");

#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Pin (and reuse) maps here; `None` keeps them private to this process (tests, bench).
    pub pin_dir: Option<PathBuf>,
    /// Capacities in flows of the confirmed and half-open tables.
    pub conntrack_entries: u32,
    pub halfopen_entries: u32,
    /// Drop pinned state this build cannot adopt (established flows) instead of refusing to
    /// start (`lb run --discard-state`).
    pub discard_state: bool,
    /// Another build of the XDP object than the one built in (`lb run --xdp-object`, for
    /// trying an upgrade).
    pub object: Option<PathBuf>,
    /// Load the copy that traces (`lb trace on`), for the packets the filter picks; see
    /// `lb_common::trace`.
    pub trace: Option<TraceFilter>,
    /// Some service is IPv6: the IPv6 conntrack tables get the IPv4 ones' capacities (else
    /// they take no memory, `TableSizes::flows6`) and the IPv6 program is verified and
    /// installed (else IPv6 frames pass untouched, and the start spares its verification:
    /// about half the load time).
    pub ipv6: bool,
}

/// Which packets a tracing copy of the program reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TraceFilter {
    /// Packets to this VIP, or rewritten to come from it; `None`: every packet, of either
    /// family.
    pub vip: Option<IpAddr>,
    /// ... at this port (0: any).
    pub port: u16,
}

/// The globals a tracing copy is loaded with: `LB_TRACE` (the families traced: a VIP's
/// alone), `LB_TRACE_VIP`, `LB_TRACE_VIP6`, `LB_TRACE_PORT` (as the program compares them).
fn trace_globals(f: TraceFilter) -> (u32, u32, lb_common::Addr6, u32) {
    let port = u32::from(f.port.to_be());
    match f.vip {
        None => (trace::TRACE_V4 | trace::TRACE_V6, 0, [0; 4], port),
        Some(IpAddr::V4(a)) => (trace::TRACE_V4, layout::addr_be(a), [0; 4], port),
        Some(IpAddr::V6(a)) => (
            trace::TRACE_V6,
            0,
            lb_common::addr6_from_octets(a.octets()),
            port,
        ),
    }
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            pin_dir: None,
            conntrack_entries: lb_common::DEFAULT_CONNTRACK_ENTRIES,
            halfopen_entries: lb_common::DEFAULT_HALFOPEN_ENTRIES,
            discard_state: false,
            object: None,
            trace: None,
            ipv6: false,
        }
    }
}

impl LoadOptions {
    pub fn sizes(&self) -> TableSizes {
        let v4 = TableSizes::for_flows(self.conntrack_entries, self.halfopen_entries);
        match self.ipv6 {
            true => TableSizes {
                flows6: v4.flows,
                halfopen6: v4.halfopen,
                ..v4
            },
            false => v4,
        }
    }
}

pub struct Dataplane {
    ebpf: Ebpf,
    pub maps: Maps,
    /// New-flow events (`option tcplog`), for whoever takes them.
    pub events: Option<RingBuf<MapData>>,
    publisher: Publisher,
    attachments: Vec<Attachment>,
    /// Links are pinned here (with the maps) so the program outlives the process.
    pin_dir: Option<PathBuf>,
    /// Things worth a log line that happened while loading (pins recreated, ...).
    pub notes: Vec<String>,
    /// How it was loaded (a tracing copy is loaded the same way).
    opts: LoadOptions,
}

impl Dataplane {
    /// Loads the object, verifies both programs and opens (or creates and pins) the maps.
    pub fn load(opts: &LoadOptions) -> Result<Dataplane> {
        let mut notes = Vec::new();
        let mut loader = EbpfLoader::new();
        // The verifier's whole log in the error, for whoever changes the data plane.
        if std::env::var_os("LB_VERIFIER_LOG").is_some() {
            loader
                .verifier_log_level(aya::VerifierLogLevel::VERBOSE | aya::VerifierLogLevel::STATS);
        }
        let sizes = opts.sizes();
        for def in MAPS {
            if sizes.max_entries(def) != def.max_entries {
                loader.map_max_entries(def.name, sizes.max_entries(def));
            }
        }
        if let Some(dir) = &opts.pin_dir {
            crate::net::ensure_bpffs()?;
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            notes.extend(maps::prepare_pins(dir, sizes, opts.discard_state)?);
            for def in MAPS.iter().filter(|d| d.keep != Keep::Private) {
                loader.map_pin_path(def.name, dir.join(maps::pin_name(def)));
            }
        }
        // Tracing is a constant of the program: off, the verifier removes every trace path.
        let globals = opts.trace.map(trace_globals);
        if let Some((on, vip, vip6, port)) = &globals {
            loader.override_global(trace::GLOBAL_TRACE, on, true);
            loader.override_global(trace::GLOBAL_TRACE_VIP, vip, true);
            loader.override_global(trace::GLOBAL_TRACE_VIP6, vip6, true);
            loader.override_global(trace::GLOBAL_TRACE_PORT, port, true);
        }
        // The flow cache's copies live 100 ms, in jiffies of this kernel.
        let hz = kernel_hz::kernel_hz().unwrap_or_else(|| {
            notes.push(format!(
                "kernel HZ unknown (no CONFIG_HZ in /boot/config-<release> or /proc/config.gz): \
                 flow cache copies live {} jiffies, {} ms at {} Hz and less on a faster kernel",
                flow_cache_ttl(MIN_HZ),
                lb_common::FLOW_CACHE_TTL_MS,
                MIN_HZ
            ));
            MIN_HZ
        });
        let ttl = flow_cache_ttl(hz);
        loader.override_global(GLOBAL_FLOW_CACHE_TTL, &ttl, true);
        let object = match &opts.object {
            Some(path) => std::borrow::Cow::Owned(
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
            ),
            None => std::borrow::Cow::Borrowed(OBJECT),
        };
        let mut ebpf = loader.load(&object).context("loading the XDP object")?;
        for name in [PROG_LB, PROG_LB4, PROG_PASS] {
            verify(&mut ebpf, name)?;
        }
        if opts.ipv6 {
            verify(&mut ebpf, PROG_LB6)?;
        }
        let mut maps = Maps::from_ebpf(&mut ebpf)?;
        // What `lb_xdp` does not serve itself goes on in the programs of `LB_PROGS`: IPv4's
        // whole path, IPv6's if there is one. The table is pinned, so an IPv4-only start also
        // takes an earlier instance's IPv6 program out. A tracing copy's go in with its
        // `lb_xdp` (`run_program_of`): until then the running program's packets stay untraced.
        if opts.trace.is_none() {
            install_paths(&mut ebpf, &mut maps, opts.ipv6)?;
        }
        let events = maps.events.take();
        Ok(Dataplane {
            ebpf,
            maps,
            events,
            publisher: Publisher::default(),
            attachments: Vec::new(),
            pin_dir: opts.pin_dir.clone(),
            notes,
            opts: opts.clone(),
        })
    }

    /// Loads a copy of this data plane's program that traces the packets `filter` picks,
    /// sharing every pinned map (see [`Dataplane::run_program_of`]). Needs pinned maps.
    pub fn tracing_copy(&self, filter: TraceFilter) -> Result<Dataplane> {
        Dataplane::load(&self.tracing_options(filter)?)
    }

    /// Whether the IPv6 conntrack tables were sized for IPv6 services when loaded.
    pub fn sized_for_ipv6(&self) -> bool {
        self.opts.ipv6
    }

    /// How [`Dataplane::tracing_copy`] loads, for a caller that loads elsewhere (the
    /// verifier takes seconds).
    pub fn tracing_options(&self, filter: TraceFilter) -> Result<LoadOptions> {
        anyhow::ensure!(
            self.pin_dir.is_some(),
            "tracing needs a data plane with pinned maps"
        );
        if let Some(vip @ IpAddr::V6(_)) = filter.vip {
            anyhow::ensure!(
                self.opts.ipv6,
                "{vip}: this instance has no IPv6 service, so no IPv6 packet path to trace"
            );
        }
        Ok(LoadOptions {
            trace: Some(filter),
            ..self.opts.clone()
        })
    }

    /// Points every interface this data plane is attached to at `other`'s program (same
    /// maps): a tracing copy, or back to this one's own (`other` = `None`). One atomic link
    /// update per interface; no packet meets an interface without lb.
    pub fn run_program_of(&mut self, other: Option<&mut Dataplane>) -> Result<()> {
        let ebpf = match other {
            Some(o) => &mut o.ebpf,
            None => &mut self.ebpf,
        };
        // The whole paths go on in the same copy's programs (the tail-call table is shared,
        // pinned).
        install_paths(ebpf, &mut self.maps, self.opts.ipv6)?;
        let prog = program(ebpf, PROG_LB)?;
        for a in &self.attachments {
            a.point_at(prog)?;
        }
        Ok(())
    }

    /// Starts reading this program's aya-log records into `logger` (`lb trace`).
    pub fn trace_logger<T: log::Log>(&mut self, logger: T) -> Result<aya_log::EbpfLogger<T>> {
        aya_log::EbpfLogger::init_with_logger(&mut self.ebpf, logger)
            .context("reading the data plane's trace records")
    }

    /// Attaches the balancer to `ifname` (see [`links`]): takes over the link an earlier
    /// daemon pinned there, or creates one, natively if the driver allows, else in generic
    /// (skb) mode. The caller logs what happened.
    pub fn attach(&mut self, ifname: &str) -> Result<&Attachment> {
        let pin_dir = self.pin_dir.clone();
        let prog = program(&mut self.ebpf, PROG_LB)?;
        let a = links::attach(prog, ifname, pin_dir.as_deref())?;
        self.attachments.push(a);
        self.attachments
            .last()
            .ok_or_else(|| anyhow!("attachment of {ifname} vanished"))
    }

    pub fn attachments(&self) -> &[Attachment] {
        &self.attachments
    }

    /// Detaches from one interface.
    pub fn detach(&mut self, ifname: &str) -> Result<()> {
        let Some(i) = self.attachments.iter().position(|a| a.ifname == ifname) else {
            return Ok(());
        };
        let a = self.attachments.remove(i);
        a.detach(program(&mut self.ebpf, PROG_LB)?)
    }

    pub fn is_attached(&self, ifname: &str) -> bool {
        self.attachments.iter().any(|a| a.ifname == ifname)
    }

    /// Detaches from every interface.
    pub fn detach_all(&mut self) -> Result<()> {
        let prog = program(&mut self.ebpf, PROG_LB)?;
        for a in self.attachments.drain(..) {
            a.detach(prog)?;
        }
        Ok(())
    }

    /// The balancer program, e.g. for `BPF_PROG_TEST_RUN`.
    pub fn lb_program(&mut self) -> Result<&mut Xdp> {
        program(&mut self.ebpf, PROG_LB)
    }

    /// The whole IPv4 path the balancer tail-calls for what its flow cache does not serve.
    pub fn lb4_program(&mut self) -> Result<&mut Xdp> {
        program(&mut self.ebpf, PROG_LB4)
    }

    /// The IPv6 path the balancer tail-calls (what the verifier made of it, say).
    pub fn lb6_program(&mut self) -> Result<&mut Xdp> {
        program(&mut self.ebpf, PROG_LB6)
    }

    /// The empty `XDP_PASS` program (benchmark floor, veth peers in tests).
    pub fn pass_program(&mut self) -> Result<&mut Xdp> {
        program(&mut self.ebpf, PROG_PASS)
    }

    /// A benchmark-only program of the object (`lb_common::bench`'s floors), verified on
    /// first use against this data plane's maps.
    pub fn bench_program(&mut self, name: &str) -> Result<&mut Xdp> {
        if program(&mut self.ebpf, name)?.fd().is_err() {
            verify(&mut self.ebpf, name)?;
        }
        program(&mut self.ebpf, name)
    }

    /// Installs a pool's table, flags and timeouts, see [`writer::Publisher`].
    pub fn publish(
        &mut self,
        pool: PoolSlot,
        flags: u32,
        timeouts: lb_common::Timeouts,
        table: writer::Table,
    ) -> Result<()> {
        self.publisher
            .publish(&mut self.maps, pool, flags, timeouts, table)
    }
}

/// Loads (verifies) one program. The verifier gives up with EAGAIN when a signal is pending
/// on the loading thread (any thread of a process that handles SIGCHLD, say); libbpf tries
/// again then, and so does this, a few times.
fn verify(ebpf: &mut Ebpf, name: &str) -> Result<()> {
    const TRIES: u32 = 5;
    let mut tries = 1;
    loop {
        match program(ebpf, name)?.load() {
            Err(ProgramError::LoadError { io_error, .. })
                if io_error.kind() == std::io::ErrorKind::WouldBlock && tries < TRIES =>
            {
                tries += 1;
            }
            r => return r.with_context(|| format!("verifying XDP program {name}")),
        }
    }
}

/// Points `LB_PROGS` at `ebpf`'s IPv4 path and, when IPv6 is served, its IPv6 path, else
/// empties that slot (IPv6 frames then pass untouched: the tail call fails and `lb_xdp`
/// passes).
fn install_paths(ebpf: &mut Ebpf, maps: &mut Maps, ipv6: bool) -> Result<()> {
    let lb4 = program(ebpf, PROG_LB4)?.fd()?.try_clone()?;
    maps.progs
        .set(PROGS_LB4, &lb4, 0)
        .context("installing the IPv4 packet path")?;
    if !ipv6 {
        return match maps.progs.clear_index(&PROGS_LB6) {
            Err(aya::maps::MapError::SyscallError(e))
                if e.io_error.raw_os_error() != Some(libc::ENOENT) =>
            {
                Err(e).context("taking the IPv6 program out")
            }
            // Done, or it was empty.
            _ => Ok(()),
        };
    }
    let lb6 = program(ebpf, PROG_LB6)?.fd()?.try_clone()?;
    maps.progs
        .set(PROGS_LB6, &lb6, 0)
        .context("installing the IPv6 program")
}

/// One of the object's small programs alone, verified: `ipip_decap` for a direct-server-return
/// server whose kernel has no `ipip` (see `scripts/dsr-server.sh`), `xdp_pass` for the far
/// end of a veth that must pick up what an XDP program sends it. The object's flow tables
/// are created at their smallest, as these use none. Keep the returned object to keep the
/// program attached.
pub fn load_alone(name: &str) -> Result<Ebpf> {
    let mut loader = EbpfLoader::new();
    for table in [
        lb_common::names::LB_FLOWS,
        lb_common::names::LB_HALFOPEN,
        lb_common::names::LB6_FLOWS,
        lb_common::names::LB6_HALFOPEN,
    ] {
        loader.map_max_entries(table, maps::UNUSED_TABLE);
    }
    let mut ebpf = loader.load(OBJECT).context("loading the XDP object")?;
    verify(&mut ebpf, name)?;
    Ok(ebpf)
}

/// Attaches [`load_alone`]'s program `name` to `ifname` (natively if the driver allows).
pub fn attach_alone(ebpf: &mut Ebpf, name: &str, ifname: &str) -> Result<()> {
    let prog = program(ebpf, name)?;
    links::attach(prog, ifname, None).map(|_| ())
}

/// An XDP program of the object by name (loaded or not).
pub fn xdp_program<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut Xdp> {
    program(ebpf, name)
}

fn program<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut Xdp> {
    ebpf.program_mut(name)
        .ok_or_else(|| anyhow!("the XDP object has no program {name}"))?
        .try_into()
        .with_context(|| format!("{name} is not an XDP program"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trace_vip_traces_its_family_alone() {
        let both = trace::TRACE_V4 | trace::TRACE_V6;
        assert_eq!(trace_globals(TraceFilter::default()), (both, 0, [0; 4], 0));
        let v4 = TraceFilter {
            vip: Some("10.0.0.1".parse().expect("ip")),
            port: 80,
        };
        assert_eq!(
            trace_globals(v4),
            (
                trace::TRACE_V4,
                u32::from_ne_bytes([10, 0, 0, 1]),
                [0; 4],
                0x5000
            )
        );
        let v6 = TraceFilter {
            vip: Some("fd00::1".parse().expect("ip")),
            port: 0,
        };
        let (on, vip, vip6, port) = trace_globals(v6);
        assert_eq!((on, vip, port), (trace::TRACE_V6, 0, 0));
        assert_eq!(lb_common::addr6_octets(vip6)[..2], [0xfd, 0]);
        assert_eq!(lb_common::addr6_octets(vip6)[15], 1);
    }
}
