#!/bin/sh
# Prepares a real server for lb's direct server return (`nat dsr-ipip`): lb sends it each
# client packet unchanged inside an IPIP header; the server takes the header off, finds the
# VIP on its loopback, and answers the client directly from the VIP.
#
#   dsr-server.sh up [--no-ipip] VIP [VIP...]     # idempotent
#   dsr-server.sh down VIP [VIP...]
#
# What it does, and why:
# - loads `ipip` and brings up `tunl0`, its catch-all device: it accepts IPIP packets from
#   any lb node, so adding an lb node needs nothing here;
# - puts each VIP on `lo` as a /32: the server owns the address it answers from, but `lo` is
#   never on the wire;
# - arp_ignore=1 / arp_announce=2: the server never answers ARP for the VIP (the lb nodes, or
#   the router, own it on the LAN) nor uses it as a source in its own ARP requests;
# - rp_filter off on tunl0 (and loose, not strict, for "all" if it was strict): a packet
#   from a client arrives on tunl0 while the route back to that client is another interface.
# Health checks keep going to the server's own address: nothing changes for them.
#
# --no-ipip: the kernel has no `ipip` (CONFIG_NET_IPIP unset, as in some cloud and microVM
# kernels): the script skips tunl0, and something else takes the outer header off. lb's XDP
# object has a decapsulator for that (`ipip_decap`, attached to the server's interface; the
# several-nodes test does so).
# The server's web server must listen on the VIP's port (0.0.0.0:PORT covers it).
#
# MTU: the tunnel adds 20 bytes. lb answers clients whose packets would not fit any more
# with ICMP "fragmentation needed", which costs the first full-size packet a round trip. To
# spare that, raise the MTU between lb and the servers by 20, or lower the MSS the server
# announces for its VIP connections, e.g.:
#   ip route change default via GW dev eth0 advmss 1440
set -eu

usage() {
    echo "usage: $0 up [--no-ipip] VIP [VIP...] | down VIP [VIP...]" >&2
    exit 2
}

[ $# -ge 2 ] || usage
action=$1
shift
tunnel=1
if [ "$1" = --no-ipip ]; then
    tunnel=0
    shift
fi
[ $# -ge 1 ] || usage

sysctl_set() {
    sysctl -qw "$1=$2"
}

case "$action" in
up)
    if [ "$tunnel" = 1 ]; then
        modprobe ipip 2>/dev/null || true
        ip link show tunl0 >/dev/null 2>&1 || {
            echo "$0: no tunl0 device: is the ipip module available? (see --no-ipip)" >&2
            exit 1
        }
        ip link set tunl0 up
        sysctl_set net.ipv4.conf.tunl0.rp_filter 0
    fi
    if [ "$(sysctl -n net.ipv4.conf.all.rp_filter)" = 1 ]; then
        sysctl_set net.ipv4.conf.all.rp_filter 2
    fi
    sysctl_set net.ipv4.conf.all.arp_ignore 1
    sysctl_set net.ipv4.conf.all.arp_announce 2
    for vip in "$@"; do
        ip addr replace "$vip/32" dev lo
    done
    ;;
down)
    for vip in "$@"; do
        ip addr del "$vip/32" dev lo 2>/dev/null || true
    done
    ;;
*)
    usage
    ;;
esac
