#!/bin/sh
# Prepares a real server for lb's direct server return (`nat dsr-ipip`): lb sends it each
# client packet unchanged inside an IPIP header (an IPv6 one for an IPv6 VIP: IPv6-in-IPv6,
# RFC 2473); the server takes the header off, finds the VIP on its loopback, and answers the
# client directly from the VIP.
#
#   dsr-server.sh up [--no-ipip] VIP [VIP...]     # idempotent; VIPs of either family
#   dsr-server.sh down VIP [VIP...]
#
# What it does, and why:
# - for IPv4 VIPs, loads `ipip` and brings up `tunl0`, its catch-all device: it accepts IPIP
#   packets from any lb node, so adding an lb node needs nothing here;
# - for IPv6 VIPs, loads `ip6_tunnel` and brings up `ip6tnl0`, its catch-all device (mode
#   ip6ip6, local and remote any): it likewise accepts IPv6-in-IPv6 from any lb node to any
#   of this server's addresses. (A tunnel per lb node does the same job:
#   `ip -6 tunnel add lb1 mode ip6ip6 local SERVER remote NODE && ip link set lb1 up`.)
# - puts each VIP on `lo` as a /32 (/128): the server owns the address it answers from, but
#   `lo` is never on the wire; Linux answers neighbour solicitations only for addresses of the
#   interface asked, so an IPv6 VIP needs nothing more;
# - arp_ignore=1 / arp_announce=2: the server never answers ARP for the VIP (the lb nodes, or
#   the router, own it on the LAN) nor uses it as a source in its own ARP requests;
# - rp_filter off on tunl0 (and loose, not strict, for "all" if it was strict): a packet
#   from a client arrives on tunl0 while the route back to that client is another interface.
# Health checks keep going to the server's own address: nothing changes for them.
#
# --no-ipip: the kernel has no `ipip` or `ip6_tunnel` (CONFIG_NET_IPIP, CONFIG_IPV6_TUNNEL
# unset, as in some cloud and microVM kernels): the script skips tunl0 and ip6tnl0, and
# something else takes the outer header off. lb's XDP object has a decapsulator for that
# (`ipip_decap`, both families, attached to the server's interface; the several-nodes test
# does so).
# The server's web server must listen on the VIP's port (0.0.0.0:PORT covers it).
#
# MTU: the tunnel adds 20 bytes (40 for IPv6). lb answers clients whose packets would not
# fit any more with ICMP "fragmentation needed" (ICMPv6 "packet too big"), which costs the
# first full-size packet a round trip. To spare that, raise the MTU between lb and the
# servers by 20 (40), or lower the MSS the server announces for its VIP connections, e.g.:
#   ip route change default via GW dev eth0 advmss 1440
#   ip -6 route change default via GW dev eth0 advmss 1400
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

# The prefix a VIP takes on lo: one address of its family.
prefix() {
    case "$1" in
    *:*) echo "$1/128" ;;
    *) echo "$1/32" ;;
    esac
}

has_v4=0
has_v6=0
for vip in "$@"; do
    case "$vip" in
    *:*) has_v6=1 ;;
    *) has_v4=1 ;;
    esac
done

# Brings up the catch-all tunnel device $2 of module $1.
catch_all() {
    modprobe "$1" 2>/dev/null || true
    ip link show "$2" >/dev/null 2>&1 || {
        echo "$0: no $2 device: is the $1 module available? (see --no-ipip)" >&2
        exit 1
    }
    ip link set "$2" up
}

case "$action" in
up)
    if [ "$has_v4" = 1 ]; then
        if [ "$tunnel" = 1 ]; then
            catch_all ipip tunl0
            sysctl_set net.ipv4.conf.tunl0.rp_filter 0
        fi
        if [ "$(sysctl -n net.ipv4.conf.all.rp_filter)" = 1 ]; then
            sysctl_set net.ipv4.conf.all.rp_filter 2
        fi
        sysctl_set net.ipv4.conf.all.arp_ignore 1
        sysctl_set net.ipv4.conf.all.arp_announce 2
    fi
    if [ "$has_v6" = 1 ] && [ "$tunnel" = 1 ]; then
        catch_all ip6_tunnel ip6tnl0
    fi
    for vip in "$@"; do
        ip addr replace "$(prefix "$vip")" dev lo
    done
    ;;
down)
    for vip in "$@"; do
        ip addr del "$(prefix "$vip")" dev lo 2>/dev/null || true
    done
    ;;
*)
    usage
    ;;
esac
