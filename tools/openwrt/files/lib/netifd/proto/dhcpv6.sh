#!/bin/sh
# mape-py test bed stand-in for OpenWrt's proto "dhcpv6" handler (package odhcp6c), whose
# package files are not among the pinned tarballs. Our own minimal version: it runs the real
# odhcp6c with the options below and lets /lib/netifd/dhcpv6.script report to netifd.
# Not covered: DS-Lite/MAP/464XLAT child interfaces, source routing, fake routes.

. /lib/functions.sh
. ../netifd-proto.sh
init_proto "$@"

proto_dhcpv6_init_config() {
	renew_handler=1

	proto_config_add_string 'reqaddress:or("try","force","none")'
	proto_config_add_string 'reqprefix:or("auto","no",range(0, 64))'
	proto_config_add_string clientid
	proto_config_add_string 'reqopts:list(uinteger)'
	proto_config_add_boolean norelease
	proto_config_add_boolean forceprefix
	proto_config_add_string 'ip6prefix:list(ip6addr)'
	proto_config_add_int soltimeout
	proto_config_add_boolean verbose
	proto_config_add_boolean delegate
	proto_config_add_string zone
}

proto_dhcpv6_setup() {
	local config="$1" iface="$2"
	local reqaddress reqprefix clientid reqopts norelease forceprefix ip6prefix soltimeout verbose delegate zone
	json_get_vars reqaddress reqprefix clientid reqopts norelease forceprefix soltimeout verbose delegate zone
	json_get_values ip6prefix ip6prefix

	local args="-s /lib/netifd/dhcpv6.script -N ${reqaddress:-try}"
	case "${reqprefix:-auto}" in
		no) ;;
		auto) args="$args -P 0" ;;
		*) args="$args -P $reqprefix" ;;
	esac
	[ "$forceprefix" = 1 ] && args="$args -F"
	[ -n "$clientid" ] && args="$args -c $clientid"
	local opt
	for opt in $reqopts; do args="$args -r $opt"; done
	[ "$norelease" = 1 ] && args="$args -k"
	[ -n "$soltimeout" ] && args="$args -t $soltimeout"
	[ "$verbose" = 1 ] && args="$args -v -e"

	proto_export "INTERFACE=$config"
	[ -n "$ip6prefix" ] && proto_export "USERPREFIX=$ip6prefix"
	[ -n "$delegate" ] && proto_export "IFACE_DELEGATE=$delegate"
	[ -n "$zone" ] && proto_export "ZONE=$zone"
	# shellcheck disable=SC2086
	proto_run_command "$config" odhcp6c $args "$iface"
}

proto_dhcpv6_renew() {
	# SIGUSR1: renew now (dash's kill -l knows no names)
	proto_kill_command "$1" "$(kill -l USR1 2>/dev/null || echo 10)"
}

proto_dhcpv6_teardown() {
	proto_kill_command "$1"
}

add_protocol dhcpv6
