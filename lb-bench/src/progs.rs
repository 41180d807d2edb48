//! The benchmark-only XDP programs (`lb_common::bench`) and the empty `xdp_pass`: loading them
//! from lb's object, attaching them inside namespaces, configuring the generator, reading the
//! sink and the programs' run-time statistics.
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, PerCpuArray},
    programs::{TestRun, TestRunAttrs, TestRunOptions, Xdp, XdpMode, xdp::XdpLinkId},
};
use lb::dataplane::OBJECT;
use lb_common::{
    PROG_PARSE_ONLY, PROG_PASS,
    bench::{
        GenConfig, MAP_BENCH_COUNT, MAP_BENCH_GEN, PROG_BENCH_GEN, PROG_BENCH_SINK, PROG_BENCH_TX,
        SINK_SLOTS,
    },
    names,
};
use lb_testbed::netns::Netns;

use crate::{
    balancer::ProgStats,
    sys::{ifindex, in_ns},
};

/// The programs, loaded from the balancer's object (whose own maps are created tiny and
/// never used here).
pub struct BenchProgs {
    ebpf: Ebpf,
}

/// One attachment, to hand back to [`BenchProgs::detach`] (or left to be detached when the
/// programs are dropped).
pub struct Link {
    name: &'static str,
    id: XdpLinkId,
}

fn prog<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut Xdp> {
    ebpf.program_mut(name)
        .ok_or_else(|| anyhow!("the XDP object has no program {name}"))?
        .try_into()
        .with_context(|| format!("{name} is not an XDP program"))
}

impl BenchProgs {
    pub fn load() -> Result<BenchProgs> {
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(names::LB_FLOWS, 16)
            .map_max_entries(names::LB_HALFOPEN, 16)
            .load(OBJECT)
            .context("loading the XDP object")?;
        for name in [
            PROG_BENCH_GEN,
            PROG_BENCH_SINK,
            PROG_BENCH_TX,
            PROG_PASS,
            PROG_PARSE_ONLY,
        ] {
            prog(&mut ebpf, name)?
                .load()
                .with_context(|| format!("verifying {name}"))?;
        }
        Ok(BenchProgs { ebpf })
    }

    /// Attaches `name` (native mode) to `ifname` inside `ns`.
    pub fn attach(&mut self, name: &'static str, ns: &Netns, ifname: &str) -> Result<Link> {
        let p = prog(&mut self.ebpf, name)?;
        let id = in_ns(ns, || -> Result<XdpLinkId> {
            p.attach(ifname, XdpMode::Driver)
                .with_context(|| format!("attaching {name} to {ifname}"))
        })??;
        Ok(Link { name, id })
    }

    pub fn detach(&mut self, link: Link) -> Result<()> {
        prog(&mut self.ebpf, link.name)?
            .detach(link.id)
            .with_context(|| format!("detaching {}", link.name))
    }

    /// `name`'s run-time statistics so far (`kernel.bpf_stats_enabled=1`), over every
    /// interface it is attached to.
    pub fn stats(&mut self, name: &str) -> Result<ProgStats> {
        let info = prog(&mut self.ebpf, name)?
            .info()
            .with_context(|| format!("reading {name}'s info"))?;
        Ok(ProgStats {
            run_time: info.run_time(),
            runs: info.run_count(),
        })
    }

    pub fn set_generator(&mut self, cfg: &GenConfig) -> Result<()> {
        let map = self
            .ebpf
            .map_mut(MAP_BENCH_GEN)
            .ok_or_else(|| anyhow!("no map {MAP_BENCH_GEN}"))?;
        let mut a: Array<_, GenConfig> = Array::try_from(map)?;
        a.set(0, cfg, 0).context("writing the generator config")
    }

    /// Frames the sink counted so far, per slot (last byte of the destination address).
    pub fn counts(&self) -> Result<[u64; SINK_SLOTS as usize]> {
        let map = self
            .ebpf
            .map(MAP_BENCH_COUNT)
            .ok_or_else(|| anyhow!("no map {MAP_BENCH_COUNT}"))?;
        let a: PerCpuArray<_, u64> = PerCpuArray::try_from(map)?;
        let mut out = [0u64; SINK_SLOTS as usize];
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = a.get(&(i as u32), 0)?.iter().sum();
        }
        Ok(out)
    }

    /// Sends `frames` frames out of `ifname` in `ns` (the generator's `XDP_TX`, i.e. towards
    /// the veth peer) with `BPF_PROG_TEST_RUN` in live-frames mode. Returns the wall time of
    /// the call, which is bounded by `frames`.
    pub fn generate(
        &mut self,
        ns: &Netns,
        ifname: &str,
        template_len: usize,
        frames: u32,
    ) -> Result<Duration> {
        let p = prog(&mut self.ebpf, PROG_BENCH_GEN)?;
        let ifname = ifname.to_string();
        in_ns(ns, || -> Result<Duration> {
            let ifx = ifindex(&ifname)?;
            // The initial content does not matter (the program rewrites every frame), only
            // its length does.
            let data = vec![0u8; template_len];
            // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, ...
            let mut ctx = [0u8; 24];
            ctx[4..8].copy_from_slice(&(template_len as u32).to_ne_bytes());
            ctx[12..16].copy_from_slice(&ifx.to_ne_bytes());
            let t = Instant::now();
            p.test_run(TestRunOptions {
                data_in: Some(&data),
                ctx_in: Some(&ctx),
                repeat: frames,
                attrs: TestRunAttrs::new().xdp_live_frames(64),
                ..TestRunOptions::default()
            })
            .context("BPF_PROG_TEST_RUN (live frames)")?;
            Ok(t.elapsed())
        })?
    }
}
