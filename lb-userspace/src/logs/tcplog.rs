//! `option tcplog` lines for new flows, HAProxy's `%ci:%cp [%t] %ft %b/%s` (what an L4 data
//! plane knows when a connection starts; HAProxy's timers and byte counts come at its end).
pub use super::time::LogTime;
use crate::addr_text::LogAddrPort;

/// `10.200.0.2:49342 [26/Nov/2026:17:35:39.296] main hoge/web10`, plus ` (redispatched)`
/// when the flow moved from a server that left. An IPv6 client prints as HAProxy's `%ci:%cp`
/// does, without brackets: `fd00:16::2:33906 [...]`.
pub fn new_flow_line(
    client: std::net::SocketAddr,
    at: LogTime,
    frontend: &str,
    backend: &str,
    server: &str,
    redispatched: bool,
) -> String {
    format!(
        "{} [{}] {frontend} {backend}/{server}{}",
        LogAddrPort(client),
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

    /// `29/Nov/2026:15:21:36.719`, as `%t` prints it.
    fn accept_date(t: &str) -> LogTime {
        let n: Vec<&str> = t.split(['/', ':', '.']).collect();
        let num = |i: usize| n[i].parse::<u16>().expect("number");
        LogTime {
            year: i32::from(num(2)),
            month: [
                "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
            ]
            .iter()
            .position(|m| *m == n[1])
            .expect("month") as u8,
            day: num(0) as u8,
            hour: num(3) as u8,
            minute: num(4) as u8,
            second: num(5) as u8,
            millis: num(6),
        }
    }

    /// Each IPv6 tcplog line of the HAProxy capture, up to its timers (which HAProxy writes at
    /// the connection's end and an L4 data plane does not know), made from its parts.
    #[test]
    fn ipv6_clients_as_haproxy_prints_them() {
        let capture = include_str!("testdata/haproxy-2.6-ipv6-datagrams.txt");
        let mut seen = 0;
        for dgram in capture.lines().filter(|l| l.starts_with("<182>")) {
            let msg = dgram.split_once("]: ").expect("tag").1;
            let head: Vec<&str> = msg.splitn(5, ' ').collect();
            let (client, date, frontend, bs) = (head[0], head[1], head[2], head[3]);
            let (ip, port) = client.rsplit_once(':').expect("port");
            let client =
                std::net::SocketAddr::new(ip.parse().expect("ip"), port.parse().expect("port"));
            let at = accept_date(&date[1..date.len() - 1]);
            let (b, s) = bs.split_once('/').expect("b/s");
            let line = new_flow_line(client, at, frontend, b, s, false);
            assert_eq!(line, head[..4].join(" "));
            assert!(msg.starts_with(&line));
            seen += 1;
        }
        assert_eq!(
            seen, 8,
            "six IPv6 clients, one IPv4-mapped, one on [::1]:8080"
        );
    }
}
