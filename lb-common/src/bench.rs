//! Benchmark-only programs and maps (`lb-bench`): a traffic generator, a counting sink and
//! an `XDP_TX` bounce. They live in the same object as the balancer but never run on its
//! packet path: the daemon neither loads nor attaches them.

/// The generator: `BPF_PROG_TEST_RUN` in live-frames mode runs it once per frame it sends.
pub const PROG_BENCH_GEN: &str = "bench_gen";
/// Counts IPv4 and IPv6 TCP frames (per CPU, by the last byte of the destination) and drops
/// them; passes everything else (ARP and neighbour discovery must keep working).
pub const PROG_BENCH_SINK: &str = "bench_sink";
/// Swaps the MACs and bounces every frame back out of the interface it came in on.
pub const PROG_BENCH_TX: &str = "bench_tx";
/// The floor of a conntrack hit: lb's parse, one `LB_FLOWS` lookup and lb's rewrite.
pub const PROG_BENCH_FLOOR_HIT: &str = "bench_floor_hit";
/// The floor of a new flow: lb's parse and its two entries inserted into `LB_HALFOPEN`.
pub const PROG_BENCH_FLOOR_NEW: &str = "bench_floor_new";

pub const MAP_BENCH_GEN: &str = "BENCH_GEN";
pub const MAP_BENCH_SEQ: &str = "BENCH_SEQ";
pub const MAP_BENCH_COUNT: &str = "BENCH_COUNT";

/// Bytes of every generated IPv4 frame (the minimum Ethernet frame without FCS): Ethernet,
/// 20-byte IPv4 and TCP headers, 10 bytes of payload.
pub const GEN_FRAME_LEN: usize = 64;
/// Bytes of every generated IPv6 frame: the IPv4 frame's segment (TCP header and 10 bytes of
/// payload) behind a 40-byte IPv6 header.
pub const GEN6_FRAME_LEN: usize = GEN_FRAME_LEN + 20;
/// Room for a template of either family (a multiple of 8: the generator copies `u64`s).
pub const GEN_FRAME_MAX: usize = GEN6_FRAME_LEN.next_multiple_of(8);
/// Template frames the generator takes in turn (e.g. one per destination).
pub const GEN_TEMPLATES: usize = 4;
/// Slots of `BENCH_COUNT`: the last byte of the destination address, modulo this.
pub const SINK_SLOTS: u32 = 16;
/// Offsets in an Ethernet + 20-byte IPv4 + TCP frame.
pub const GEN_SPORT_OFF: usize = 14 + 20;
pub const GEN_TCP_CHECK_OFF: usize = 14 + 20 + 16;
/// Offsets in an Ethernet + 40-byte IPv6 + TCP frame.
pub const GEN6_SPORT_OFF: usize = 14 + 40;
pub const GEN6_TCP_CHECK_OFF: usize = 14 + 40 + 16;

/// `BENCH_GEN[0]`: what the generator writes. Frame `n` (counting per CPU from the start of
/// the run) is template `n % templates` with TCP source port
/// `sport_base + (n / templates) % flows` (checksum fixed up), so a run of `templates * flows`
/// frames sends every flow once.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GenConfig {
    /// Complete frames with valid checksums and source port `sport_base`, `frame_len` bytes
    /// each (the rest is not sent).
    pub frames: [[u8; GEN_FRAME_MAX]; GEN_TEMPLATES],
    /// `GEN_FRAME_LEN` (IPv4 frames) or `GEN6_FRAME_LEN` (IPv6 frames): the family, for the
    /// generator, which must be run on frames of this length.
    pub frame_len: u32,
    /// Templates in use, 1..=GEN_TEMPLATES.
    pub templates: u32,
    /// Source ports per template, at least 1.
    pub flows: u32,
    /// Host order.
    pub sport_base: u16,
    pub _pad: u16,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            frames: [[0; GEN_FRAME_MAX]; GEN_TEMPLATES],
            frame_len: GEN_FRAME_LEN as u32,
            templates: 1,
            flows: 1,
            sport_base: 0,
            _pad: 0,
        }
    }
}
