#!/bin/sh
# Smoke check of a built OpenWrt layer; runs inside the namespace root of shell.py:
#   python3 tools/openwrt/shell.py PROFILE -- sh tools/openwrt/smoke.sh
# Starts ubusd, rpcd and netifd the way procd would, then pokes each tool once. With ISC
# dhcpd on the host it also leases a /56 through proto dhcpv6 (odhcp6c) from a peer netns.
set -eu
profile=${MAPE_OPENWRT_PROFILE:?run me through tools/openwrt/shell.py}
step() { printf '\n== %s\n' "$*"; }
wait_for() { # wait_for SECONDS CMD...: retry CMD until it succeeds
	n=$(($1 * 10)); shift
	while ! "$@" >/dev/null 2>&1; do
		n=$((n - 1)); [ "$n" -gt 0 ] || { echo "timed out: $*" >&2; return 1; }
		sleep 0.1
	done
}

step "ubusd, rpcd"
ubusd &
wait_for 5 ubus list
rpcd &
wait_for 5 ubus list session
ubus list

step "uci show"
printf "config thing 'one'\n\toption name 'smoke'\n\tlist item 'a'\n\tlist item 'b'\n" >/etc/config/smoke
uci show smoke
uci set smoke.one.name=changed && uci commit smoke && uci get smoke.one.name

step "netifd"
if [ "$profile" = 21.02 ]; then dev=ifname; else dev=device; fi
ip link add wan type veth peer name wanpeer
dhcpv6=
if command -v dhcpd >/dev/null; then
	dhcpv6=1
	ip netns add isp
	ip link add wanb type veth peer name ispb netns isp
	ip -n isp link set ispb up
	ip -n isp addr add 2001:db8:ffff::1/64 dev ispb nodad
	cat >/tmp/dhcpd6.conf <<-EOC
	subnet6 2001:db8:ffff::/64 {
	  range6 2001:db8:ffff::100 2001:db8:ffff::1ff;
	  prefix6 2001:db8:1200:: 2001:db8:12ff:: /56;
	  option dhcp6.name-servers 2001:db8:ffff::53;
	}
	EOC
	: >/tmp/dhcpd6.leases
	ip netns exec isp dhcpd -6 -q -cf /tmp/dhcpd6.conf -lf /tmp/dhcpd6.leases -pf /tmp/dhcpd6.pid ispb
fi
cat >/etc/config/network <<EOF2
config interface 'loopback'
	option $dev 'lo'
	option proto 'static'
	option ipaddr '127.0.0.1'
	option netmask '255.0.0.0'

config interface 'wan6'
	option $dev 'wan'
	option proto 'static'
	option ip6addr '2001:db8:1234:5600::1/56'
	list ip6prefix '2001:db8:1234:5600::/56'
EOF2
[ -n "$dhcpv6" ] && printf "\nconfig interface 'wanb'\n\toption %s 'wanb'\n\toption proto 'dhcpv6'\n\toption reqprefix '56'\n" "$dev" >>/etc/config/network
netifd &
wait_for 10 ubus -t 1 call network.interface.wan6 status
ubus call network.interface dump | head -n 12
ubus call network.interface.wan6 status | jsonfilter -e '@["ipv6-prefix"][0].address' -e '@.up'
if [ -n "$dhcpv6" ]; then
	step "proto dhcpv6 (odhcp6c) leases a prefix from dhcpd -6"
	pd_up() { ubus call network.interface.wanb status | jsonfilter -e '@["ipv6-prefix"][0].address' | grep -q .; }
	wait_for 30 pd_up
	ubus call network.interface.wanb status | jsonfilter -e '@["ipv6-prefix"][0]' -e '@["ipv6-address"][0].address'
fi

step "mapcalc (pd=/pdlen= rule, then one matched against netifd's wan6)"
mapcalc '*' 'type=map-e,ipv6prefix=2001:db8::,prefix6len=32,ipv4prefix=192.0.2.0,prefix4len=24,ealen=16,psidlen=8,offset=4,pd=2001:db8:1234:5600::,pdlen=56,br=2001:db8::1'
mapcalc wan6 'type=map-e,ipv6prefix=2001:db8::,prefix6len=32,ipv4prefix=192.0.2.0,prefix4len=24,ealen=16,psidlen=8,offset=4,br=2001:db8::1' | grep RULE_1_IPV4ADDR

step "firewall"
if [ "$profile" = 21.02 ]; then
	# the 2021 fw3 learns the tables from /proc/net/ip_tables_names: touch them first
	for t in filter nat mangle raw; do iptables -t $t -S >/dev/null; ip6tables -t $t -S >/dev/null; done
	fw3 print | head -n 8
	fw3 start && iptables -S | grep -c . && fw3 reload && fw3 stop
else
	fw4 print | head -n 8
	fw4 start && nft list tables && fw4 reload && fw4 stop
fi

step "opkg"
opkg --version
opkg list-installed | head -n 3

step "sh is the dynamic busybox, which runs ifdown from PATH (map.sh relies on it)"
readlink -f /bin/sh
sh -c 'command -v ifdown'

echo
echo "smoke: OK ($profile)"
