//! `option tcplog` lines for new flows, HAProxy's `%ci:%cp [%t] %ft %b/%s` (what an L4 data
//! plane knows when a connection starts; HAProxy's timers and byte counts come at its end).
pub use super::time::LogTime;

/// `10.200.0.2:49342 [26/Nov/2026:17:35:39.296] main hoge/web10`, plus ` (redispatched)`
/// when the flow moved from a server that left.
pub fn new_flow_line(
    client: std::net::SocketAddrV4,
    at: LogTime,
    frontend: &str,
    backend: &str,
    server: &str,
    redispatched: bool,
) -> String {
    format!(
        "{client} [{}] {frontend} {backend}/{server}{}",
        at.accept_date(),
        if redispatched { " (redispatched)" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shaped_like_haproxy_tcplog() {
        let at = LogTime {
            year: 2026,
            month: 10,
            day: 26,
            hour: 17,
            minute: 35,
            second: 39,
            millis: 296,
        };
        // The head of the capture's `<182>... 10.200.0.2:49342 [26/Nov/2026:17:35:39.296]
        // tcp-in hoge/web10 1/0/0 280 -- 1/1/0/0/0 0/0`.
        assert_eq!(
            new_flow_line(
                "10.200.0.2:49342".parse().expect("addr"),
                at,
                "tcp-in",
                "hoge",
                "web10",
                false
            ),
            "10.200.0.2:49342 [26/Nov/2026:17:35:39.296] tcp-in hoge/web10"
        );
        let at = LogTime {
            day: 3,
            millis: 7,
            ..at
        };
        assert!(
            new_flow_line("10.0.0.1:1".parse().expect("addr"), at, "f", "b", "s", true)
                .ends_with("[03/Nov/2026:17:35:39.007] f b/s (redispatched)")
        );
    }
}
