#!/bin/bash
# Captures how HAProxy 2.6 prints IPv6 addresses, for lb's formatters to be checked against
# (lb-userspace/src/{logs,api}/testdata/haproxy-2.6-ipv6-*). Run as root; everything happens
# in a throwaway network namespace with ULA addresses:
#
#   scripts/haproxy-ipv6-reference.sh [OUTDIR]     # default target/haproxy-ipv6
#
# fd00:16::1   the VIP (bind [fd00:16::1]:80) and a dual-stack bind (:::8080 v4v6)
# fd00:16::2   the client
# fd00:16::10  web10, fd00:16::11 web11: python3 http.server with /health_check.html
# [::1]:5514   a UDP syslog receiver writing HAProxy's datagrams as they come
#
# The scenario: both servers UP, six tcplog connections from fd00:16::2, one IPv4 client on
# the dual-stack bind, web11 stopped (DOWN) and started again (UP), the stats socket's
# outputs, `set server ... addr` with IPv6 addresses (good and bad), the outputs again.
set -euo pipefail

out=$(realpath -m "${1:-target/haproxy-ipv6}")
ns=hapv6ref$$
dir=$(mktemp -d /tmp/hapv6ref.XXXXXX)
mkdir -p "$out"
pids=()

cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

in_ns() { ip netns exec "$ns" "$@"; }
api() { echo "$1" | in_ns socat stdio "unix-connect:$dir/stats"; }

ip netns add "$ns"
in_ns ip link set lo up
# On lo: no dummy or veth needed (some test kernels have neither module).
for a in 1 2 10 11; do in_ns ip -6 addr add "fd00:16::$a/128" dev lo nodad; done

mkdir -p "$dir/www"
echo OK >"$dir/www/health_check.html"
echo hello >"$dir/www/index.html"

serve() { # serve ADDR: a web server in the namespace (exec: the caller's $! is its pid)
    exec ip netns exec "$ns" python3 -m http.server --bind "$1" --directory "$dir/www" 8000 \
        >/dev/null 2>&1
}
serve fd00:16::10 & pids+=($!)
serve fd00:16::11 & web11=$!; pids+=($!)

# The syslog receiver: one raw datagram per line, in arrival order.
ip netns exec "$ns" python3 -u -c '
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.bind(("::1", 5514))
with open(sys.argv[1], "wb", buffering=0) as f:
    while True:
        d, _ = s.recvfrom(65536)
        f.write(d.rstrip(b"\n") + b"\n")
' "$out/datagrams.txt" </dev/null >/dev/null 2>&1 &
pids+=($!)

cat >"$out/haproxy.cfg" <<EOF
global
    maxconn 4000
    stats socket $dir/stats level admin
    log [::1]:5514 local6 debug
defaults
    mode tcp
    log global
    option tcplog
    option log-health-checks
    option httpchk GET /health_check.html HTTP/1.0\r\nUser-agent:\ Proxy-Check
    timeout connect 10s
    timeout client 1m
    timeout server 1m
    timeout check 10s
frontend main
    bind [fd00:16::1]:80
    bind :::8080 v4v6
    default_backend hoge
backend hoge
    balance roundrobin
    server web10 [fd00:16::10]:8000 check inter 1000 fall 2 rise 2
    server web11 fd00:16::11:8000 check inter 1000 fall 2 rise 2 weight 50
EOF
# The stats socket's path is the throwaway directory's; the copy kept says where it was.
sed -i "s|$dir/stats|/tmp/hapv6ref/stats|" "$out/haproxy.cfg"
sed "s|/tmp/hapv6ref/stats|$dir/stats|" "$out/haproxy.cfg" >"$dir/haproxy.cfg"

ip netns exec "$ns" /usr/sbin/haproxy -db -f "$dir/haproxy.cfg" >"$out/haproxy-stderr.txt" 2>&1 &
pids+=($!)
sleep 3.5   # two checks each: both UP

get() { # get URL [curl options]: one connection through HAProxy
    in_ns curl -s -o /dev/null --max-time 3 "$@" || true
}
for _ in 1 2 3 4 5 6; do get --interface fd00:16::2 'http://[fd00:16::1]/'; done
get --interface 127.0.0.1 'http://127.0.0.1:8080/'   # IPv4 client on the dual-stack bind
get --interface fd00:16::2 'http://[::1]:8080/'

{
    for c in "show stat" "show stat typed" "show servers state" "show servers conn" \
        "show info" "show sess"; do
        echo "### $c"
        api "$c"
    done
} >"$out/runtime-api-up.txt"

kill "$web11"; sleep 3.5   # two failed checks: web11 DOWN
{
    echo "### show stat (web11 DOWN)"
    api "show stat"
    echo "### show servers state (web11 DOWN)"
    api "show servers state"
} >>"$out/runtime-api-up.txt"
serve fd00:16::11 & pids+=($!)
sleep 3.5   # two good checks: UP again

{
    for c in "set server hoge/web10 addr fd00:16::12" \
        "set server hoge/web10 addr fd00:16::12" \
        "set server hoge/web10 addr [fd00:16::13]" \
        "set server hoge/web10 addr fd00:16::14 port 8001" \
        "set server hoge/web10 addr 127.0.0.5" \
        "set server hoge/web10 addr fd00:16::10 port 8000" \
        "set server hoge/web10 addr fd00:16::zz" \
        "set server hoge/web10 addr fd00:16::10 port abc" \
        "set server hoge/web10 addr fd00:16::10 port 99999" \
        "set server hoge/web10 addr" \
        "set server hoge/web10 addr ::ffff:127.0.0.1" \
        "set server hoge/web10 addr fd00:16::10" \
        "set server hoge/web10 addr fd00:16::10 port 8000" \
        "show servers state" "show stat"; do
        echo "### $c"
        api "$c"
    done
} >"$out/runtime-api-addr.txt"
sleep 0.5   # the last datagrams
echo "done: $out"
