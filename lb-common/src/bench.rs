//! Benchmark-only programs and maps (`lb-bench`): a traffic generator, a counting sink and
//! an `XDP_TX` bounce. They live in the same object as the balancer but never run on its
//! packet path: the daemon neither loads nor attaches them.

/// The generator: `BPF_PROG_TEST_RUN` in live-frames mode runs it once per frame it sends.
pub const PROG_BENCH_GEN: &str = "bench_gen";
/// Counts IPv4 TCP frames (per CPU, by the last byte of the destination) and drops them;
/// passes everything else (ARP must keep working).
pub const PROG_BENCH_SINK: &str = "bench_sink";
/// Swaps the MACs and bounces every frame back out of the interface it came in on.
pub const PROG_BENCH_TX: &str = "bench_tx";

pub const MAP_BENCH_GEN: &str = "BENCH_GEN";
pub const MAP_BENCH_SEQ: &str = "BENCH_SEQ";
pub const MAP_BENCH_COUNT: &str = "BENCH_COUNT";

/// Bytes of every generated frame (the minimum Ethernet frame without FCS).
pub const GEN_FRAME_LEN: usize = 64;
/// Template frames the generator takes in turn (e.g. one per destination).
pub const GEN_TEMPLATES: usize = 4;
/// Slots of `BENCH_COUNT`: the last byte of the IPv4 destination, modulo this.
pub const SINK_SLOTS: u32 = 16;
/// Offsets in an Ethernet + 20-byte IPv4 + TCP frame.
pub const GEN_SPORT_OFF: usize = 14 + 20;
pub const GEN_TCP_CHECK_OFF: usize = 14 + 20 + 16;

/// `BENCH_GEN[0]`: what the generator writes. Frame `n` (counting per CPU from the start of
/// the run) is template `n % templates` with TCP source port
/// `sport_base + (n / templates) % flows` (checksum fixed up), so a run of `templates * flows`
/// frames sends every flow once.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GenConfig {
    /// Complete frames with valid checksums and source port `sport_base`.
    pub frames: [[u8; GEN_FRAME_LEN]; GEN_TEMPLATES],
    /// Templates in use, 1..=GEN_TEMPLATES.
    pub templates: u32,
    /// Source ports per template, at least 1.
    pub flows: u32,
    /// Host order.
    pub sport_base: u16,
    pub _pad: u16,
    pub _pad2: u32,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            frames: [[0; GEN_FRAME_LEN]; GEN_TEMPLATES],
            templates: 1,
            flows: 1,
            sport_base: 0,
            _pad: 0,
            _pad2: 0,
        }
    }
}
