//! Small host facts the benchmarks read: CPU time and memory of processes, map memory, the
//! BPF run-time statistics switch; and running a closure inside a namespace.
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use lb_testbed::netns::Netns;

/// Runs `f` on a scoped thread that entered `ns` (so `f` may borrow from the caller).
pub fn in_ns<T: Send>(ns: &Netns, f: impl FnOnce() -> T + Send) -> Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| -> Result<T> {
            ns.enter_current_thread()?;
            Ok(f())
        })
        .join()
        .map_err(|_| anyhow!("a thread inside {} panicked", ns.name))?
    })
}

/// Interface index in the calling thread's namespace.
pub fn ifindex(name: &str) -> Result<u32> {
    let c = std::ffi::CString::new(name)?;
    // SAFETY: a valid NUL-terminated string.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => bail!("no interface {name}"),
        i => Ok(i),
    }
}

/// MAC address of `ifname` in `ns`, from `ip -o link`.
pub fn mac_of(ns: &Netns, ifname: &str) -> Result<[u8; 6]> {
    let out = ns.exec("ip", &["-o", "link", "show", "dev", ifname])?;
    let text = out
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .with_context(|| format!("no MAC address for {ifname} in {out:?}"))?;
    let mut mac = [0u8; 6];
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() != 6 {
        bail!("cannot parse MAC {text:?}");
    }
    for (b, p) in mac.iter_mut().zip(parts) {
        *b = u8::from_str_radix(p, 16).with_context(|| format!("cannot parse MAC {text:?}"))?;
    }
    Ok(mac)
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// User + system CPU time of a process (all its threads) so far.
pub fn cpu_time(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .with_context(|| format!("unexpected /proc/{pid}/stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime 14 and stime 15 (1-based), i.e. 11 and 12 here.
    let tick = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("unexpected /proc/{pid}/stat"))
    };
    let ticks = tick(11)? + tick(12)?;
    Ok(Duration::from_secs_f64(ticks as f64 / clock_ticks()))
}

/// A `/proc/PID/status` field in kB (e.g. `VmRSS`, `VmHWM`).
pub fn status_kb(pid: u32, field: &str) -> Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    s.lines()
        .find_map(|l| {
            let v = l.strip_prefix(field)?.strip_prefix(':')?;
            v.split_whitespace().next()?.parse().ok()
        })
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

/// The `memlock` line of an fd's fdinfo (bytes): for a BPF map, the kernel's estimate of the
/// memory it uses.
pub fn memlock(fd: i32) -> Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))
        .with_context(|| format!("reading /proc/self/fdinfo/{fd}"))?;
    s.lines()
        .find_map(|l| l.strip_prefix("memlock:")?.trim().parse().ok())
        .with_context(|| format!("no memlock in /proc/self/fdinfo/{fd}"))
}

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// `kernel.bpf_stats_enabled=1` while alive; the previous value is written back on drop (also
/// when a benchmark fails or panics).
pub struct BpfStats {
    previous: String,
}

impl BpfStats {
    pub fn enable() -> Result<BpfStats> {
        let previous = std::fs::read_to_string(BPF_STATS)
            .with_context(|| format!("reading {BPF_STATS}"))?
            .trim()
            .to_string();
        std::fs::write(BPF_STATS, "1").with_context(|| format!("writing {BPF_STATS}"))?;
        Ok(BpfStats { previous })
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        if let Err(e) = std::fs::write(BPF_STATS, &self.previous) {
            eprintln!(
                "[lb-bench] could not restore kernel.bpf_stats_enabled={}: {e}",
                self.previous
            );
        }
    }
}
