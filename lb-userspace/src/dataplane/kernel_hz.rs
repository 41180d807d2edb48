//! The kernel's HZ (how often `jiffies` ticks), read from its build configuration: the flow
//! cache's copies are timed in jiffies (`lb_common::flow_cache`), their lifetime is set per
//! kernel when the program is loaded.
use std::{io::Read, path::Path, sync::OnceLock};

/// `CONFIG_HZ` in a kernel configuration's text.
pub fn hz_from_kconfig(text: &str) -> Option<u32> {
    text.lines()
        .find_map(|l| l.strip_prefix("CONFIG_HZ="))
        .and_then(|v| v.trim().parse().ok())
        .filter(|&hz| hz > 0)
}

/// The running kernel's HZ, from `/boot/config-<release>` (Debian's packages install it) or
/// `/proc/config.gz` (kernels built with `CONFIG_IKCONFIG_PROC`); `None` if neither says.
/// Read once per process.
pub fn kernel_hz() -> Option<u32> {
    static HZ: OnceLock<Option<u32>> = OnceLock::new();
    *HZ.get_or_init(|| {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
        let boot = Path::new("/boot").join(format!("config-{}", release.trim()));
        std::fs::read_to_string(boot)
            .ok()
            .and_then(|t| hz_from_kconfig(&t))
            .or_else(|| gzipped_kconfig(Path::new("/proc/config.gz")))
    })
}

fn gzipped_kconfig(path: &Path) -> Option<u32> {
    let file = std::fs::File::open(path).ok()?;
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .ok()?;
    hz_from_kconfig(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_config_hz_among_its_neighbours() {
        let text = "# CONFIG_HZ_100 is not set\nCONFIG_HZ_250=y\n# CONFIG_HZ_1000 is not set\nCONFIG_HZ=250\nCONFIG_SCHED_HRTICK=y\n";
        assert_eq!(hz_from_kconfig(text), Some(250));
        assert_eq!(
            hz_from_kconfig("CONFIG_HZ_1000=y\nCONFIG_HZ=1000"),
            Some(1000)
        );
        for bad in [
            "",
            "CONFIG_HZ_250=y",
            "CONFIG_HZ=",
            "CONFIG_HZ=fast",
            "CONFIG_HZ=0",
        ] {
            assert_eq!(hz_from_kconfig(bad), None, "{bad:?}");
        }
    }

    /// The machines lb is tested on keep their kernel's configuration where lb looks: if
    /// this fails, copies live 10 jiffies (shorter than they should on a kernel above
    /// 100 Hz) and `lb run` says so.
    #[test]
    fn this_kernels_hz_is_found() {
        let hz = kernel_hz().expect("no /boot/config-<release> or /proc/config.gz with CONFIG_HZ");
        assert!([100, 250, 300, 1000].contains(&hz), "{hz}");
    }
}
