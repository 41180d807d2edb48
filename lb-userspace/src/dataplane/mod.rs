//! The control plane's one door to the XDP program: load it, pin its maps, attach it, write
//! its maps. Everything above this module talks in config terms; everything below in map terms.
pub mod clock;
pub mod ids;
pub mod layout;
pub mod maps;
pub mod table;
pub mod testrun;
pub mod writer;

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};
use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, RingBuf},
    programs::{Xdp, XdpMode, xdp::XdpLinkId},
};
use lb_common::{Keep, MAPS, PROG_LB, PROG_PASS};

use ids::{PoolSlot, ServerSlot};
pub use maps::{Maps, TableSizes, pin_dir};
use writer::Publisher;

/// The XDP object built by `build.rs` from `lb-ebpf`.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb-xdp"));

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
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            pin_dir: None,
            conntrack_entries: lb_common::DEFAULT_CONNTRACK_ENTRIES,
            halfopen_entries: lb_common::DEFAULT_HALFOPEN_ENTRIES,
            discard_state: false,
        }
    }
}

impl LoadOptions {
    pub fn sizes(&self) -> TableSizes {
        TableSizes::for_flows(self.conntrack_entries, self.halfopen_entries)
    }
}

pub struct Attachment {
    pub ifname: String,
    pub mode: XdpMode,
    link: XdpLinkId,
}

pub struct Dataplane {
    ebpf: Ebpf,
    pub maps: Maps,
    /// New-flow events (`option tcplog`), for whoever takes them.
    pub events: Option<RingBuf<MapData>>,
    publisher: Publisher,
    attachments: Vec<Attachment>,
    /// Things worth a log line that happened while loading (pins recreated, ...).
    pub notes: Vec<String>,
}

impl Dataplane {
    /// Loads the object, verifies both programs and opens (or creates and pins) the maps.
    pub fn load(opts: &LoadOptions) -> Result<Dataplane> {
        let mut notes = Vec::new();
        let mut loader = EbpfLoader::new();
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
        let mut ebpf = loader.load(OBJECT).context("loading the XDP object")?;
        for name in [PROG_LB, PROG_PASS] {
            program(&mut ebpf, name)?
                .load()
                .with_context(|| format!("verifying XDP program {name}"))?;
        }
        let mut maps = Maps::from_ebpf(&mut ebpf)?;
        let events = maps.events.take();
        Ok(Dataplane {
            ebpf,
            maps,
            events,
            publisher: Publisher::default(),
            attachments: Vec::new(),
            notes,
        })
    }

    /// Attaches the balancer to `ifname`, natively if the driver allows, else in generic (skb)
    /// mode. Returns the mode used; the caller logs a fallback.
    pub fn attach(&mut self, ifname: &str) -> Result<XdpMode> {
        let prog = program(&mut self.ebpf, PROG_LB)?;
        let (link, mode) = match prog.attach(ifname, XdpMode::Driver) {
            Ok(link) => (link, XdpMode::Driver),
            Err(native) => match prog.attach(ifname, XdpMode::Skb) {
                Ok(link) => (link, XdpMode::Skb),
                Err(skb) => {
                    return Err(anyhow!(
                        "attaching XDP to {ifname}: native mode: {native}; generic mode: {skb}"
                    ));
                }
            },
        };
        self.attachments.push(Attachment {
            ifname: ifname.into(),
            mode,
            link,
        });
        Ok(mode)
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
        program(&mut self.ebpf, PROG_LB)?
            .detach(a.link)
            .with_context(|| format!("detaching from {ifname}"))
    }

    pub fn is_attached(&self, ifname: &str) -> bool {
        self.attachments.iter().any(|a| a.ifname == ifname)
    }

    /// Detaches from every interface (also happens when the process exits).
    pub fn detach_all(&mut self) -> Result<()> {
        let prog = program(&mut self.ebpf, PROG_LB)?;
        for a in self.attachments.drain(..) {
            prog.detach(a.link)
                .with_context(|| format!("detaching from {}", a.ifname))?;
        }
        Ok(())
    }

    /// The balancer program, e.g. for `BPF_PROG_TEST_RUN`.
    pub fn lb_program(&mut self) -> Result<&mut Xdp> {
        program(&mut self.ebpf, PROG_LB)
    }

    /// The empty `XDP_PASS` program (benchmark floor, veth peers in tests).
    pub fn pass_program(&mut self) -> Result<&mut Xdp> {
        program(&mut self.ebpf, PROG_PASS)
    }

    /// Installs a pool's table, flags and timeouts, see [`writer::Publisher`].
    pub fn publish(
        &mut self,
        pool: PoolSlot,
        flags: u32,
        timeouts: lb_common::Timeouts,
        table: &[ServerSlot],
    ) -> Result<()> {
        self.publisher
            .publish(&mut self.maps, pool, flags, timeouts, table)
    }
}

fn program<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut Xdp> {
    ebpf.program_mut(name)
        .ok_or_else(|| anyhow!("the XDP object has no program {name}"))?
        .try_into()
        .with_context(|| format!("{name} is not an XDP program"))
}
