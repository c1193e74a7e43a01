'use strict';
'require baseclass';
'require rpc';

/*
 * Status -> Overview card: MAP-E state, shared IPv4 and port-set usage at a glance,
 * with a link to Services -> MAP-E. No card when mape-py's ubus object is missing.
 */

var callStatus = rpc.declare({ object: 'mape', method: 'status' });

var COLOURS = { green: '#2e7d32', amber: '#e68a00', red: '#c62828', grey: '#757575' };

/* The daemon is not running: the document is the last one it wrote (port usage included). */
function isStale(st) {
	return st.running === false || st.state == 'stopped';
}

/* Last known values of a stopped daemon: grey, and said so. */
function lastKnown(stale, text) {
	return stale ? E('span', { 'class': 'mape-stale', 'style': 'color:' + COLOURS.grey }, [ _('%s (last known)').format(text) ]) : text;
}

function state(st) {
	if (isStale(st))
		return [ 'red', _('The mape-py service is not running') ];
	switch (st.state) {
	case 'ok': return [ 'green', _('MAP-E is working') ];
	case 'applying': return [ 'amber', _('Applying the MAP-E configuration') ];
	case 'waiting-for-wan6': return [ 'amber', _('Waiting for the IPv6 uplink') ];
	case 'unsupported-prefix': return [ 'red', _('No MAP-E rule for this IPv6 prefix') ];
	case 'error': return [ 'red', _('MAP-E failed') ];
	case 'held': return [ 'amber', _('Holding off: a setting mape-py manages was changed by someone else') ];
	case 'disabled': return [ 'grey', _('Disabled in the settings') ];
	default: return [ 'grey', _('Unknown state "%s"').format(st.state || '?') ];
	}
}

return baseclass.extend({
	title: _('MAP-E'),

	load: function() {
		return callStatus().then(function(res) { return L.isObject(res) ? res : null; }, function() { return null; });
	},

	render: function(st) {
		if (!L.isObject(st))
			return null;

		var s = state(st), m = st.mapping || {}, p = (L.isObject(st.ports) && !st.ports.error) ? st.ports : null;
		var rows = [
			[ _('Status'), E('span', { 'class': 'mape-badge', 'data-health': s[0] }, [
				E('span', { 'style': 'display:inline-block;width:.8em;height:.8em;border-radius:50%;margin-right:.4em;vertical-align:middle;background-color:' + COLOURS[s[0]] }),
				E('strong', { 'style': 'color:' + COLOURS[s[0]] }, [ s[1] ])
			]) ]
		];

		if (m.ipv4)
			rows.push([ _('Shared IPv4 address'), m.ipv4 ]);
		if (m.provider_name)
			rows.push([ _('Provider'), (/^ja/.test(String(L.env.lang || document.documentElement.getAttribute('lang') || '')) && m.provider_name_ja) ? m.provider_name_ja : m.provider_name ]);
		if (p && Array.isArray(p.sets) && p.sets.length) {
			var inUse = p.sets.filter(function(x) { return x.used > 0; }).length, stale = isStale(st);
			rows.push([ _('Port sets'), lastKnown(stale, (inUse == p.sets.length)
				? _('All %d port sets in use').format(p.sets.length)
				: _('%d of %d port sets in use').format(inUse, p.sets.length)) ]);
			rows.push([ _('Ports'), lastKnown(stale, _('%d of %d ports in use (%d%%)').format(p.used || 0, p.capacity || 0,
				p.capacity ? Math.round((p.used || 0) * 100 / p.capacity) : 0)) ]);
			if (p.host_cap > 0 && Array.isArray(p.top_hosts) && p.top_hosts.length)
				rows.push([ _('Busiest LAN host'), lastKnown(stale, _('%s: %d of %d connections (the per-host cap)').format(
					p.top_hosts[0].host, p.top_hosts[0].count, p.host_cap)) ]);
			if (p.nearly_exhausted && !stale)
				rows.push([ _('Warning'), E('strong', { 'style': 'color:' + COLOURS.amber }, [
					_('More than 80% of the ports are in use: new connections will soon fail.') ]) ]);
		}
		else if (m.port_count != null) {
			rows.push([ _('Ports'), _('%d ports in %d sets').format(m.port_count, (m.port_sets || []).length) ]);
		}

		return E('div', { 'class': 'mape-overview' }, [
			E('table', { 'class': 'table' }, rows.map(function(r) {
				return E('tr', { 'class': 'tr' }, [
					E('td', { 'class': 'td left', 'width': '33%' }, [ r[0] ]),
					E('td', { 'class': 'td left' }, [ r[1] ])
				]);
			})),
			E('a', { 'href': L.url('admin/services/mape') }, [ _('Details and settings') ])
		]);
	}
});
