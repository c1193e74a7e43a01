'use strict';
'require view';
'require dom';
'require poll';
'require rpc';
'require ui';
'require form';
'require uci';

/*
 * Services -> MAP-E: live status, port-set usage, settings and a calculator.
 *
 * Stays within the LuCI client API shared by OpenWrt 21.02 and 23.05+:
 * view.extend, rpc.declare, poll.add, dom.content, ui.addNotification,
 * ui.createHandlerFn, form.Map/NamedSection/TypedSection and E()/_().
 * The status document is described in docs/status.md of mape-py.
 */

var callStatus = rpc.declare({ object: 'mape', method: 'status' });
var callCalc = rpc.declare({ object: 'mape', method: 'calc', params: [ 'prefix' ] });
var callRecompute = rpc.declare({ object: 'mape', method: 'recompute' });
/* a manual edit the daemon holds off for (state "held"): the three ways out */
var callAdopt = rpc.declare({ object: 'mape', method: 'adopt' });
var callGiveUp = rpc.declare({ object: 'mape', method: 'give_up' });
var callReapply = rpc.declare({ object: 'mape', method: 'reapply' });
/* move a port forward the border relay drops to the nearest free allowed port */
var callUseFreePort = rpc.declare({ object: 'mape', method: 'use_free_port', params: [ 'section' ] });
var mayWrite = true;
/* May this login call a method? (rpcd's ACL: "Recompute now" needs the write part) */
var callAccess = rpc.declare({ object: 'session', method: 'access', params: [ 'scope', 'object', 'function' ],
	expect: { access: false } });

var COLOURS = { green: '#2e7d32', amber: '#e68a00', red: '#c62828', grey: '#757575' };

/* Firewall strategies and backends offered in the settings (values of /etc/config/mape). */
var BACKENDS = [
	[ 'auto', _('Automatic') ],
	[ 'iptables', _('iptables (fw3)') ],
	[ 'nftables', _('nftables (fw4)') ],
	[ 'off', _('Off') ]
];

/* The message of a rejected call, for the user: LuCI's raise() appends the JavaScript
 * stack ("\n  at handleCallReply (.../rpc.js:82:7)") to err.message; that is for the
 * console, not for a banner. */
function errorText(err) {
	var msg = (err && err.message != null) ? String(err.message) : String(err);
	return msg.split(/\n/).filter(function(line) {
		return !/^\s+at\s|^\s*\S*@\S+:\d+:\d+\s*$/.test(line);
	}).join(' ').trim();
}

/* Fetch the status document; never rejects. */
function fetchStatus() {
	return callStatus().then(function(res) {
		if (L.isObject(res))
			return res;
		return { __unreachable: true, __code: res };
	}, function(err) {
		return { __unreachable: true, __message: errorText(err) };
	});
}

function pad2(n) { return (n < 10 ? '0' : '') + n; }

function fmtTime(ts) {
	if (!ts)
		return '-';
	var d = new Date(ts * 1000);
	return '%d-%s-%s %s:%s:%s'.format(d.getFullYear(), pad2(d.getMonth() + 1), pad2(d.getDate()),
		pad2(d.getHours()), pad2(d.getMinutes()), pad2(d.getSeconds()));
}

function fmtRange(r) {
	return (r[0] == r[1]) ? String(r[0]) : '%d\u2013%d'.format(r[0], r[1]);
}

function isJapanese() {
	/* LuCI sets <html lang="..."> to the UI language; some versions also export L.env.lang */
	return /^ja/.test(String(L.env.lang || document.documentElement.getAttribute('lang') || ''));
}

function providerName(m) {
	if (!m)
		return null;
	if (isJapanese() && m.provider_name_ja)
		return m.provider_name_ja;
	return m.provider_name || m.provider || null;
}

/* A coloured dot plus words: colour is never the only carrier of meaning. */
function badge(colour, label) {
	return E('span', { 'class': 'mape-badge', 'data-health': colour }, [
		E('span', {
			'class': 'mape-dot',
			'style': 'display:inline-block;width:.8em;height:.8em;border-radius:50%;margin-right:.4em;vertical-align:middle;background-color:' + COLOURS[colour]
		}),
		E('strong', { 'style': 'color:' + COLOURS[colour] }, [ label ])
	]);
}

function stateInfo(st) {
	var m = st.mapping || {};
	switch (st.state) {
	case 'ok':
		return [ 'green', _('MAP-E is working'),
			(m.ipv4 && m.port_count) ? _('IPv4 %s with %d ports').format(m.ipv4, m.port_count) : null ];
	case 'applying':
		return [ 'amber', _('Applying the MAP-E configuration'), null ];
	case 'waiting-for-wan6':
		return [ 'amber', _('Waiting for the IPv6 uplink'), _('No IPv6 prefix on the wan6 interface yet.') ];
	case 'unsupported-prefix':
		return [ 'red', _('No MAP-E rule for this IPv6 prefix'),
			_('The line\'s IPv6 prefix belongs to no known MAP-E provider. If your provider is not listed, enter its rule under "Custom MAP rule".') ];
	case 'error':
		return [ 'red', _('MAP-E failed'), null ];
	case 'held':
		return [ 'amber', _('Holding off: a setting mape-py manages was changed by someone else'),
			_('Nothing is written until you choose below.') ];
	case 'disabled':
		return [ 'grey', _('Disabled in the settings'), null ];
	case 'stopped':
		return [ 'red', _('The mape-py service is not running'), null ];
	default:
		return [ 'grey', _('Unknown state "%s"').format(st.state || '?'), null ];
	}
}

function wan6Info(w) {
	if (!L.isObject(w))
		return [ 'grey', _('Unknown'), null ];
	if (!w.up)
		return [ 'red', _('Down'), _('Interface %s is not up.').format(w.interface || 'wan6') ];
	if (!w.prefix)
		return [ 'amber', _('Up, no prefix'), _('Interface %s is up but has no delegated or routed IPv6 prefix.').format(w.interface || 'wan6') ];
	return [ 'green', _('Up'), '%s (%s)'.format(w.prefix, w.device || w.interface || '?') ];
}

function tunnelInfo(t) {
	if (!L.isObject(t))
		return [ 'grey', _('Unknown'), null ];
	if (!t.up)
		return [ 'red', _('Down'), _('Tunnel interface %s is not up.').format(t.interface || 'wan') ];
	return [ 'green', _('Up'), [ t.device, t.ipv4 ].filter(function(x) { return x; }).join(', ') ];
}

function firewallInfo(f) {
	if (!L.isObject(f))
		return [ 'grey', _('Unknown'), null ];
	var detail = [ f.backend, f.strategy, f.detail ].filter(function(x) { return x; }).join(', ');
	if (f.backend == 'off')
		return [ 'amber', _('NAT rules switched off in the settings'), detail ];
	switch (f.health) {
	case 'present':
		return [ 'green', _('NAT rules in place'), detail ];
	case 'missing':
		return [ 'red', _('NAT rules missing'), detail ];
	case 'duplicated':
		return [ 'red', _('NAT rules duplicated'), detail ];
	case 'stale':
		return [ 'red', _('NAT rules out of date'), detail ];
	default:
		return [ 'amber', _('NAT rules: %s').format(f.health || '?'), detail ];
	}
}

/* Warning codes are stable identifiers; messages from the daemon are English. */
function warningText(w) {
	switch (w.code) {
	case 'offload-enabled':
		return _('Flow offloading is on: offloaded connections bypass the port-set NAT and can leak ports that are not yours. Turn off software and hardware flow offloading in Network \u2192 Firewall.');
	case 'gl-acceleration':
		return _('Hardware NAT acceleration is on: accelerated connections can bypass the MAP-E tunnel and the port-set NAT. On GL.iNet firmware turn off Network Acceleration.');
	case 'mtu-high':
		return _('The tunnel MTU is above 1460: MAP-E over a 1500-byte IPv6 line carries at most 1460 bytes, larger packets are fragmented or lost.');
	case 'config-invalid':
		return _('/etc/config/mape has an invalid value; the last good settings stay in use: %s').format(w.message || '?');
	case 'pd-not-subnet-0':
		return _('The delegated /60 is not the first /60 of your /56: the MAP-E address lies outside it. The home gateway probably holds the /56 and may already run MAP-E itself.');
	case 'pd-behind-gateway':
		return _('This router got a sub-prefix from a home gateway; the mapping is still complete.');
	case 'subnet-not-0':
		return _('The /64 is not subnet 0 of your prefix: the MAP-E address uses subnet 0, as the provider\'s calculator does.');
	case 'low-confidence-rule':
		return _('The MAP rule for this prefix comes from data of unstated origin: check the result.');
	case 'unsupported-prefix':
		return _('No MAP-E rule covers this IPv6 prefix.');
	case 'ports-nearly-exhausted':
		return _('More than 80% of the ports are in use: new connections will soon fail. A per-host cap (Settings \u2192 Connections per LAN host) keeps one host from taking them all.');
	case 'every-port-forwarded':
		return _('Your port forwards cover every port of your port sets: none of them is kept out of outgoing NAT, or LAN connections would have no port left.');
	case 'upnp-lease-unreachable':
		return _('A UPnP / NAT-PMP / PCP mapping holds a port outside the ports reserved for it: the border relay never delivers it. Renew the mapping on the device (restart the console or app).');
	case 'upnp-preset-first':
		return _('miniupnpd checks a network preset before the MAP-E port rules and can grant ports that never reach this router: %s').format(w.message || '?');
	case 'upnp-ports-capped':
		return _('More ports were asked for UPnP than a port set can spare: at most a quarter of each set is reserved, the rest stays with outgoing connections.');
	case 'forward-port-not-allowed':
		return _('A port forward uses a port outside your port sets: the provider\'s border relay drops it, it never arrives. See "Port forwards" below.');
	default:
		return w.message || w.code || '?';
	}
}

function allWarnings(st) {
	var seen = {}, out = [];
	var lists = [ st.warnings, (st.mapping || {}).warnings ];
	for (var i = 0; i < lists.length; i++) {
		if (!Array.isArray(lists[i]))
			continue;
		for (var j = 0; j < lists[i].length; j++) {
			var w = lists[i][j];
			if (!L.isObject(w) || seen[w.code])
				continue;
			seen[w.code] = true;
			out.push(w);
		}
	}
	return out;
}

function eventText(ev) {
	switch (ev) {
	case 'prefix-changed': return _('Prefix changed');
	case 'applied': return _('Configuration applied');
	case 'rolled-back': return _('Rolled back');
	case 'started': return _('Service started');
	case 'recompute': return _('Recomputed on request');
	case 'error': return _('Error');
	default: return ev || '?';
	}
}

function kvTable(rows) {
	return E('table', { 'class': 'table mape-kv' }, rows.filter(function(r) { return r[1] != null; }).map(function(r) {
		return E('tr', { 'class': 'tr', 'data-key': r[2] || '' }, [
			E('td', { 'class': 'td left', 'style': 'width:33%' }, [ r[0] ]),
			E('td', { 'class': 'td left' }, [ r[1] ])
		]);
	}));
}

/* The daemon is not running: the document is the last one it wrote (the rpcd plugin keeps
 * it, port usage included), history rather than the present. */
function isStale(st) {
	return st.running === false || st.state == 'stopped';
}

/* Usage colours; greys for the last known usage of a stopped daemon. */
function usageColour(pct, stale) {
	if (stale)
		return (pct > 0) ? '#9e9e9e' : '#d0d0d0';
	return (pct >= 100) ? COLOURS.red : (pct >= 75) ? COLOURS.amber : COLOURS.green;
}

function bar(used, size, title, stale) {
	var pct = size > 0 ? Math.min(100, Math.round(used * 100 / size)) : 0;
	return E('div', { 'class': 'cbi-progressbar mape-bar', 'title': title, 'data-used': used, 'data-size': size }, [
		E('div', { 'style': 'width:%d%%;background-color:%s'.format(pct, usageColour(pct, stale)) })
	]);
}

function renderBanner(st) {
	if (st.__unreachable) {
		var why = st.__message || (st.__code != null ? _('ubus error %d').format(st.__code) : '?');
		return E('div', { 'class': 'alert-message error mape-down' }, [
			E('strong', {}, [ _('Cannot read the MAP-E status.') ]), ' ',
			_('The ubus object "mape" did not answer (%s). Is the mape-py package installed and rpcd restarted?').format(why)
		]);
	}
	if (isStale(st)) {
		return E('div', { 'class': 'alert-message error mape-down' }, [
			E('strong', {}, [ _('The mape-py service is not running.') ]), ' ',
			_('IPv4 over MAP-E is not maintained. Start it with "/etc/init.d/mape-py start" and check the system log ("logread -e mape").'),
			st.updated ? E('div', {}, [ _('The values below are the last known ones, from %s.').format(fmtTime(st.updated)) ]) : ''
		]);
	}
	return '';
}

function renderStatus(st) {
	if (st.__unreachable)
		return [ renderBanner(st) ];

	var m = st.mapping || {};
	var rows = [];
	var stale = isStale(st);
	var health = [
		[ _('MAP-E'), stateInfo(st), 'state', st ],
		[ _('IPv6 uplink'), wan6Info(st.wan6), 'wan6', st.wan6 ],
		[ _('Tunnel'), tunnelInfo(st.tunnel), 'tunnel', st.tunnel ],
		[ _('Firewall'), firewallInfo(st.firewall), 'firewall', st.firewall ]
	].filter(function(h) {
		/* a stopped daemon that left nothing about a part: nothing is known, say nothing */
		return !stale || L.isObject(h[3]);
	});

	var healthTable = E('table', { 'class': 'table mape-health' }, health.map(function(h) {
		var info = h[1], detail = info[2] ? [ info[2] ] : [], colour = info[0], label = info[1];
		if (h[2] == 'state' && st.state_reason && st.state != 'ok' && !stale)
			detail = detail.concat(detail.length ? [ E('br') ] : [], [ E('small', {}, [ st.state_reason ]) ]);
		if (stale && h[2] != 'state') {
			/* the daemon is gone: these are the last values it wrote, not the present */
			colour = 'grey';
			label = _('%s (last known)').format(label);
		}
		return E('tr', { 'class': 'tr', 'data-row': h[2] }, [
			E('td', { 'class': 'td left', 'style': 'width:33%' }, [ E('strong', {}, [ h[0] ]) ]),
			E('td', { 'class': 'td left' }, [ badge(colour, label),
				detail.length ? E('div', { 'class': 'mape-detail' }, detail) : '' ])
		]);
	}));

	rows.push([ _('Provider'), providerName(m), 'provider' ]);
	if (m.ipv4)
		rows.push([ _('Shared IPv4 address'), (m.psid_len > 0)
			? _('%s (shared by %d customers)').format(m.ipv4, Math.pow(2, m.psid_len)) : m.ipv4, 'ipv4' ]);
	if (m.psid != null)
		rows.push([ _('PSID'), _('%d (length %d, offset %d)').format(m.psid, m.psid_len, m.psid_offset), 'psid' ]);
	if (m.port_count != null)
		rows.push([ _('Ports'), _('%d ports in %d sets').format(m.port_count, (m.port_sets || []).length), 'ports' ]);
	rows.push([ _('CE address'), m.ce || null, 'ce' ]);
	rows.push([ _('BR address'), m.br || null, 'br' ]);
	rows.push([ _('IPv6 prefix'), (st.wan6 || {}).prefix || m.end_user_prefix || null, 'prefix' ]);
	rows.push([ _('Last update'), st.updated ? fmtTime(st.updated) : null, 'updated' ]);

	var out = [ renderBanner(st), healthTable, kvTable(rows) ];

	var warnings = allWarnings(st).filter(function(w) {
		return !(w.code == 'unsupported-prefix' && st.state == 'unsupported-prefix');
	});
	if (warnings.length)
		out.push(E('div', { 'class': 'mape-warnings' }, warnings.map(function(w) {
			return E('div', { 'class': 'alert-message warning', 'data-code': w.code || '' }, [
				E('strong', {}, [ _('Warning') + ': ' ]), warningText(w)
			]);
		})));

	if (st.state == 'held' && Array.isArray(st.held) && st.held.length)
		out.push(renderHeld(st.held));

	if (L.isObject(st.last_error) && st.last_error.message)
		out.push(E('div', { 'class': 'alert-message error mape-last-error' }, [
			E('strong', {}, [ _('Last error') + ' (' + fmtTime(st.last_error.time) + '): ' ]),
			st.last_error.message
		]));

	if (Array.isArray(st.history) && st.history.length) {
		out.push(E('h4', {}, [ _('Recent changes') ]));
		out.push(E('table', { 'class': 'table mape-history' }, [
			E('tr', { 'class': 'tr table-titles' }, [
				E('th', { 'class': 'th' }, [ _('Time') ]),
				E('th', { 'class': 'th' }, [ _('Event') ]),
				E('th', { 'class': 'th' }, [ _('IPv6 prefix') ]),
				E('th', { 'class': 'th' }, [ _('IPv4 address') ])
			])
		].concat(st.history.slice(-10).reverse().map(function(h) {
			return E('tr', { 'class': 'tr' }, [
				E('td', { 'class': 'td' }, [ fmtTime(h.time) ]),
				E('td', { 'class': 'td' }, [ eventText(h.event) ]),
				E('td', { 'class': 'td' }, [ h.prefix || '-' ]),
				E('td', { 'class': 'td' }, [ h.ipv4 || '-' ])
			]);
		}))));
	}

	return out;
}

function heldValue(v) {
	return (v == null) ? _('(unset)') : '\'' + v + '\'';
}

function heldAction(call, what) {
	return call().then(function(res) {
		if (L.isObject(res) && res.ok)
			ui.addNotification(null, E('p', {}, [ res.message || what ]), 'info');
		else
			ui.addNotification(null, E('p', {}, [ _('%s failed: %s').format(what,
				L.isObject(res) ? (res.error || '?') : _('ubus error %d').format(res)) ]), 'error');
	}, function(err) {
		ui.addNotification(null, E('p', {}, [ _('%s failed: %s').format(what, errorText(err)) ]), 'error');
	});
}

function renderHeld(held) {
	var adoptable = held.every(function(h) { return !!h.setting; });
	function button(id, label, call, title) {
		return E('button', {
			'class': 'cbi-button cbi-button-action', 'id': id, 'title': title,
			'disabled': (mayWrite && (id != 'mape-adopt' || adoptable)) ? null : true,
			'click': ui.createHandlerFn(this, function() { return heldAction(call, label); })
		}, [ label ]);
	}
	return E('div', { 'class': 'alert-message warning mape-held' }, [
		E('strong', {}, [ _('Changed by someone else since mape-py wrote it:') ]),
		E('table', { 'class': 'table' }, [
			E('tr', { 'class': 'tr table-titles' }, [
				E('th', { 'class': 'th' }, [ _('Option') ]),
				E('th', { 'class': 'th' }, [ _('Now') ]),
				E('th', { 'class': 'th' }, [ _('mape-py wrote') ])
			])
		].concat(held.map(function(h) {
			return E('tr', { 'class': 'tr', 'data-option': h.option }, [
				E('td', { 'class': 'td' }, [ h.option ]),
				E('td', { 'class': 'td' }, [ heldValue(h.now) ]),
				E('td', { 'class': 'td' }, [ heldValue(h.written) ])
			]);
		}))),
		E('div', {}, [
			button('mape-adopt', _('Adopt the new value'), callAdopt,
				adoptable ? _('Make it the mape-py setting (e.g. the MTU)') : _('Only the MTU can become a mape-py setting')),
			' ',
			button('mape-give-up', _('Stop managing MAP-E'), callGiveUp, _('Sets "enabled" to 0; your edit stays')),
			' ',
			button('mape-reapply', _('Re-apply mape-py\'s values'), callReapply, _('Overwrites your edit'))
		])
	]);
}

/* What keeps allowed ports of the set s away from outgoing NAT: port forwards, the
 * "Ports kept out of NAT" setting, the ports reserved for miniupnpd (status port_use[]);
 * and the UPnP / NAT-PMP leases miniupnpd holds in the set (status upnp.leases[]). */
function keptFor(st, s) {
	var use = (Array.isArray(st.port_use) ? st.port_use : []).filter(function(u) {
		return Array.isArray(u.ports) && u.ports[0] == s.first;
	})[0];
	var leases = (st.upnp && Array.isArray(st.upnp.leases) ? st.upnp.leases : []).filter(function(l) {
		return l.port >= s.first && l.port <= s.last;
	});
	var items = [];
	((use && Array.isArray(use.used)) ? use.used : []).forEach(function(u) {
		var label;
		if (u.by == 'forward')
			label = _('%s: port forward "%s"').format(fmtRange(u.ports), u.name);
		else if (u.by == 'upnp')
			label = _('%s: reserved for UPnP / NAT-PMP / PCP').format(fmtRange(u.ports));
		else
			label = _('%s: kept out of NAT').format(fmtRange(u.ports));
		items.push(E('span', { 'class': 'mape-kept-item', 'data-by': u.by }, [ label ]));
	});
	leases.forEach(function(l) {
		items.push(E('span', { 'class': 'mape-kept-item mape-upnp-lease', 'data-by': 'upnp' }, [
			_('%d/%s: UPnP lease "%s" for %s:%d').format(l.port, l.proto, l.desc, l.addr, l.int_port)
		]));
	});
	if (!items.length)
		return [ '-' ];
	var out = [];
	items.forEach(function(item, i) {
		if (i)
			out.push(E('br'));
		out.push(item);
	});
	return out;
}

function forwardInfo(f) {
	switch (f.allowed) {
	case 'yes':
		return [ 'green', _('Reachable: in your port sets, kept out of outgoing NAT') ];
	case 'partly':
		return [ 'amber', _('Partly outside your port sets: those ports never arrive') ];
	case 'no':
		return [ 'red', _('Outside your port sets: the border relay drops it, it never arrives') ];
	default:
		return [ 'grey', _('No external port') ];
	}
}

function useFreePort(f) {
	var what = _('Moving port forward "%s"').format(f.name || f.section);
	return callUseFreePort(f.section).then(function(res) {
		if (L.isObject(res) && res.ok)
			ui.addNotification(null, E('p', {}, [ _('Port forward "%s" now uses port %s; the LAN side is unchanged.').format(
				f.name || f.section, fmtRange(f.suggestion)) ]), 'info');
		else
			ui.addNotification(null, E('p', {}, [ _('%s failed: %s').format(what,
				L.isObject(res) ? (res.error || '?') : _('ubus error %d').format(res)) ]), 'error');
	}, function(err) {
		ui.addNotification(null, E('p', {}, [ _('%s failed: %s').format(what, errorText(err)) ]), 'error');
	});
}

/* Port forwards (firewall redirects from the WAN zone) against the port sets. */
function renderForwards(st) {
	var list = Array.isArray(st.forwards) ? st.forwards : [];
	if (st.__unreachable || !list.length)
		return [];
	var stale = isStale(st);
	return [
		E('h4', {}, [ _('Port forwards') ]),
		E('table', { 'class': 'table mape-forwards' }, [
			E('tr', { 'class': 'tr table-titles' }, [
				E('th', { 'class': 'th' }, [ _('Name') ]),
				E('th', { 'class': 'th' }, [ _('Protocol') ]),
				E('th', { 'class': 'th' }, [ _('External port') ]),
				E('th', { 'class': 'th' }, [ _('LAN host') ]),
				E('th', { 'class': 'th' }, [ _('State') ]),
				E('th', { 'class': 'th' }, [ '' ])
			])
		].concat(list.map(function(f) {
			var info = forwardInfo(f);
			var colour = (stale || !f.enabled) ? 'grey' : info[0];
			var label = f.enabled ? info[1] : _('Disabled');
			var action = '';
			if (f.suggestion && f.enabled && !stale)
				action = E('button', {
					'class': 'cbi-button cbi-button-action mape-use-free', 'data-section': f.section,
					'disabled': mayWrite ? null : true,
					'click': ui.createHandlerFn(this, function() { return useFreePort(f); })
				}, [ _('Use free allowed port %s').format(fmtRange(f.suggestion)) ]);
			return E('tr', { 'class': 'tr mape-forward', 'data-section': f.section, 'data-allowed': f.allowed }, [
				E('td', { 'class': 'td' }, [ f.name || f.section ]),
				E('td', { 'class': 'td' }, [ (f.proto || []).join('/') ]),
				E('td', { 'class': 'td' }, [ f.src_dport || '-' ]),
				E('td', { 'class': 'td' }, [ (f.dest_ip || '?') + ':' + (f.dest_port || f.src_dport || '?') ]),
				E('td', { 'class': 'td' }, [ badge(colour, label) ]),
				E('td', { 'class': 'td' }, [ action ])
			]);
		})))
	];
}

function renderPorts(st) {
	return renderSets(st).concat(renderForwards(st));
}

function renderSets(st) {
	if (st.__unreachable)
		return [ E('p', { 'class': 'mape-noports' }, [ _('No port information without the status service.') ]) ];

	var m = st.mapping || {}, p = (L.isObject(st.ports) && !st.ports.error) ? st.ports : null;
	var sets = (p && Array.isArray(p.sets)) ? p.sets : (m.port_sets || []).map(function(r) {
		return { first: r[0], last: r[1], used: null };
	});

	if (!sets.length)
		return [ E('p', { 'class': 'mape-noports' }, [ _('No port sets yet: MAP-E has not been set up.') ]) ];

	var known = sets.every(function(s) { return s.used != null; });
	var inUse = sets.filter(function(s) { return s.used > 0; }).length;
	var capacity = (p && p.capacity) ? p.capacity : sets.reduce(function(a, s) { return a + s.last - s.first + 1; }, 0);
	var used = (p && p.used != null) ? p.used : sets.reduce(function(a, s) { return a + (s.used || 0); }, 0);
	var stale = isStale(st);
	var out = [];

	if (known) {
		var all = (inUse == sets.length);
		var label = all ? _('All %d port sets in use').format(sets.length)
		                : _('%d of %d port sets in use').format(inUse, sets.length);
		out.push(E('p', { 'class': 'mape-ports-summary' + (stale ? ' mape-stale' : '') }, [
			stale ? badge('grey', _('%s (last known)').format(label))
			      : badge(all ? 'green' : (inUse ? 'amber' : 'grey'), label),
			' \u00a0 ',
			_('%d of %d ports in use (%d%%)').format(used, capacity, capacity ? Math.round(used * 100 / capacity) : 0),
			(p && p.connections != null) ? ' \u00a0 ' + _('%d connections').format(p.connections) : ''
		]));

		if (p && p.nearly_exhausted && !stale)
			out.push(E('div', { 'class': 'alert-message warning mape-pool-warning' }, [
				E('strong', {}, [ _('Ports nearly exhausted:') ]), ' ',
				_('%d of the %d ports NAT may use are taken (%d%%).').format(p.used, p.pool, p.pool_percent), ' ',
				p.host_cap ? '' : _('One busy host can take them all: set a cap in Settings \u2192 Connections per LAN host.')
			]));

		if (p && p.outside_sets > 0 && !stale)
			out.push(E('div', { 'class': 'alert-message error mape-leak' }, [
				E('strong', {}, [ _('Ports leak:') ]), ' ',
				_('%d connections use source ports outside your port sets. The provider\'s border relay drops them, and replies could go to another customer. Check flow offloading / hardware acceleration and the NAT rules.').format(p.outside_sets)
			]));

		/* one block per set, coloured when the set carries connections: a row without
		 * grey gaps shows at a glance that every set is in use */
		out.push(E('div', { 'class': 'mape-strip', 'style': 'display:flex;gap:3px;margin:.5em 0 1em 0' }, sets.map(function(s) {
			var size = s.last - s.first + 1, pct = Math.min(100, Math.round(s.used * 100 / size));
			return E('div', {
				'class': 'mape-strip-cell',
				'data-used': s.used,
				'title': '%s: %d / %d'.format(fmtRange([ s.first, s.last ]), s.used, size),
				'style': 'flex:1;min-width:4px;height:1.4em;border-radius:2px;background-color:%s'.format(
					(s.used > 0 || stale) ? usageColour(pct, stale) : '#d0d0d0')
			});
		})));
	}
	else {
		out.push(E('p', { 'class': 'mape-ports-summary' }, [
			_('%d ports in %d sets; usage is not known yet.').format(capacity, sets.length),
			(L.isObject(st.ports) && st.ports.error) ? E('div', { 'class': 'mape-detail' }, [ _('Reading the connection table failed: %s').format(st.ports.error) ]) : ''
		]));
		out.push(E('p', { 'class': 'mape-ranges' }, [
			sets.map(function(s) { return fmtRange([ s.first, s.last ]); }).join(', ')
		]));
		return out;
	}

	out.push(E('table', { 'class': 'table mape-sets' }, [
		E('tr', { 'class': 'tr table-titles' }, [
			E('th', { 'class': 'th' }, [ _('Port range') ]),
			E('th', { 'class': 'th' }, [ _('Ports in use') ]),
			E('th', { 'class': 'th' }, [ _('Connections') ]),
			E('th', { 'class': 'th', 'style': 'width:35%' }, [ _('Usage') ]),
			E('th', { 'class': 'th' }, [ _('Kept for') ])
		])
	].concat(sets.map(function(s) {
		var size = s.last - s.first + 1;
		return E('tr', { 'class': 'tr mape-set' }, [
			E('td', { 'class': 'td' }, [ fmtRange([ s.first, s.last ]) ]),
			E('td', { 'class': 'td' }, [ '%d / %d'.format(s.used, size) ]),
			E('td', { 'class': 'td' }, [ s.connections != null ? String(s.connections) : '-' ]),
			E('td', { 'class': 'td' }, [ bar(s.used, size, '%d / %d'.format(s.used, size), stale) ]),
			E('td', { 'class': 'td mape-kept' }, keptFor(st, s))
		]);
	}))));

	if (p && Array.isArray(p.top_hosts) && p.top_hosts.length) {
		/* with a per-host cap, each host's bar is its count against the cap */
		var cap = (p.host_cap > 0) ? p.host_cap : null, total = cap || p.connections || capacity;
		out.push(E('h4', {}, [ _('Busiest LAN hosts') ]));
		if (cap)
			out.push(E('p', { 'class': 'mape-host-cap' }, [
				_('Each LAN host may hold at most %d connections; over that, new ones are refused at once.').format(cap)
			]));
		out.push(E('table', { 'class': 'table mape-hosts' }, [
			E('tr', { 'class': 'tr table-titles' }, [
				E('th', { 'class': 'th' }, [ _('Host') ]),
				E('th', { 'class': 'th' }, [ _('Connections') ]),
				E('th', { 'class': 'th', 'style': 'width:50%' }, [ cap ? _('Usage of the per-host cap') : _('Share of all connections') ])
			])
		].concat(p.top_hosts.map(function(h) {
			return E('tr', { 'class': 'tr mape-host' + (h.at_cap ? ' mape-at-cap' : '') }, [
				E('td', { 'class': 'td' }, [ h.host ]),
				E('td', { 'class': 'td' }, [ cap ? '%d / %d'.format(h.count, cap) : String(h.count),
					(h.at_cap && !stale) ? E('span', { 'class': 'mape-at-cap-badge' }, [ ' ', badge('red', _('at the cap')) ]) : '' ]),
				E('td', { 'class': 'td' }, [ bar(h.count, total, '%d / %d'.format(h.count, total), stale) ])
			]);
		}))));
	}

	var kept = (p && Array.isArray(p.kept_out)) ? p.kept_out.map(fmtRange) : configuredKeptOut();
	if (kept.length) {
		out.push(E('h4', {}, [ _('Ports kept out of NAT') ]));
		out.push(E('p', { 'class': 'mape-kept-out' }, [
			kept.join(', '), E('br'),
			E('small', {}, [ _('These ports are never used as source ports for LAN connections, so they stay free for port forwards and services on the router.') ])
		]));
	}

	return out;
}

/* nat_keep_out of /etc/config/mape, for status documents without ports.kept_out */
function configuredKeptOut() {
	var v = uci.get('mape', 'config', 'nat_keep_out');
	return L.toArray(v).join(' ').split(/[\s,]+/).filter(function(x) { return /^\d+(?:[-:]\d+)?$/.test(x); })
		.map(function(x) { return x.replace(/[-:]/, '\u2013'); });
}

function renderCalcResult(res) {
	if (!L.isObject(res))
		return E('div', { 'class': 'alert-message error' }, [ _('The calculation failed (ubus error %s).').format(String(res)) ]);
	if (res.error)
		return E('div', { 'class': 'alert-message error' }, [ res.error ]);

	var rows = [
		[ _('Provider'), providerName(res), 'provider' ],
		[ _('IPv4 address'), res.ipv4 || null, 'ipv4' ],
		[ _('PSID'), res.psid != null ? _('%d (length %d, offset %d)').format(res.psid, res.psid_len, res.psid_offset) : null, 'psid' ],
		[ _('Ports'), res.port_count != null ? _('%d ports in %d sets').format(res.port_count, (res.port_sets || []).length) : null, 'ports' ],
		[ _('Port ranges'), Array.isArray(res.port_sets) ? res.port_sets.map(fmtRange).join(', ') : null, 'port_sets' ],
		[ _('CE address'), res.ce || null, 'ce' ],
		[ _('BR address'), res.br || null, 'br' ],
		[ _('MAP rule'), L.isObject(res.rule) ? '%s/%d \u2192 %s/%d, EA %d, PSID %d, offset %d'.format(
			res.rule.ip6prefix, res.rule.ip6prefixlen, res.rule.ipaddr, res.rule.ip4prefixlen,
			res.rule.ealen, res.rule.psidlen, res.rule.offset) : null, 'rule' ]
	];

	return E('div', {}, [ kvTable(rows) ].concat((res.warnings || []).map(function(w) {
		return E('div', { 'class': 'alert-message warning', 'data-code': w.code || '' }, [ warningText(w) ]);
	})));
}

/* ---- validation helpers: each returns true or a sentence that explains the problem ---- */

function parseIPv6(s) {
	if (!/^[0-9a-fA-F:]+$/.test(s))
		return null;
	var halves = s.split('::');
	if (halves.length > 2)
		return null;
	var head = halves[0] ? halves[0].split(':') : [];
	var tail = (halves.length == 2 && halves[1]) ? halves[1].split(':') : [];
	if (halves.length == 1 ? head.length != 8 : head.length + tail.length > 7)
		return null;
	var words = head.concat(tail);
	for (var i = 0; i < words.length; i++)
		if (!/^[0-9a-fA-F]{1,4}$/.test(words[i]))
			return null;
	return words;
}

function isIPv4(s) {
	var m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
	return !!m && m.slice(1).every(function(x) { return +x <= 255; });
}

function intIn(value, min, max) {
	return /^\d+$/.test(value) && +value >= min && +value <= max;
}

/* Interface names as mape-py's settings accept them (src/mape/settings.py): at most 15
 * characters of letters, digits, "_", "." and "-", not starting with "." or "-"; wan at most
 * 11 (its tunnel device is map-<wan>); wan, wan6 and wan6pd all different. */
var IFNAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$/;
var IFACE_DEFAULTS = { wan_iface: 'wan', wan6_iface: 'wan6', wan6pd_iface: 'wan6pd' };

function validateInterface(option, section, section_id, value) {
	if (value == null || value === '')
		return true;
	if (!IFNAME.test(value))
		return _('Enter the name of a network interface as in Network \u2192 Interfaces: letters, digits, "_", "." and "-", at most 15 characters, for example "wan6".');
	if (option == 'wan_iface' && value.length > 11)
		return _('At most 11 characters: mape-py names the tunnel device "map-%s", and a device name has at most 15.').format(value);
	for (var other in IFACE_DEFAULTS) {
		if (other == option)
			continue;
		var v = (other == 'wan6pd_iface') ? uci.get('mape', section_id, other) : section.formvalue(section_id, other);
		if ((v == null || v === '' ? IFACE_DEFAULTS[other] : v) == value)
			return _('"%s" is already the other MAP-E interface: the IPv6 uplink, the tunnel (and wan6pd) must be different interfaces.').format(value);
	}
	return true;
}

function validateMtu(section_id, value) {
	if (value == null || value === '')
		return true;
	if (!/^\d+$/.test(value))
		return _('The MTU is a whole number of bytes, for example 1460.');
	if (+value < 1280)
		return _('The MTU must be at least 1280: IPv6 cannot carry the tunnel with smaller packets.');
	if (+value > 1500)
		return _('The MTU must be 1500 or less; on FLET\'S lines use 1460: the tunnel adds a 40-byte IPv6 header to every packet.');
	return true;
}

function validateInterval(section_id, value) {
	if (value == null || value === '')
		return true;
	if (!/^\d+$/.test(value))
		return _('Enter a number of seconds between 10 and 86400, for example 300.');
	if (+value < 10)
		return _('Checking more often than every 10 seconds only costs CPU: use 10 or more.');
	if (+value > 86400)
		return _('At most 86400 seconds (one day).');
	return true;
}

/* The mark mask as mape-py reads it (Python's int(text, 0)): 0x.. hex, 0o.. octal, 0b..
 * binary or decimal without leading zeros, "_" between digits, an optional "+". */
function parseMask(value) {
	var s = String(value).trim(), m;
	if ((m = /^\+?0[xX]((?:_?[0-9a-fA-F])+)$/.exec(s)))
		return parseInt(m[1].replace(/_/g, ''), 16);
	if ((m = /^\+?0[oO]((?:_?[0-7])+)$/.exec(s)))
		return parseInt(m[1].replace(/_/g, ''), 8);
	if ((m = /^\+?0[bB]((?:_?[01])+)$/.exec(s)))
		return parseInt(m[1].replace(/_/g, ''), 2);
	if ((m = /^\+?([1-9](?:_?[0-9])*)$/.exec(s)))
		return parseInt(m[1].replace(/_/g, ''), 10);
	if (/^\+?0(?:_?0)*$/.test(s))
		return 0;
	return null;
}

function validatePort(value) {
	var m = /^(\d+)(?:-(\d+))?$/.exec(value);
	if (!m)
		return _('"%s" is not a port: enter a port (5190) or a range (5190-5199).').format(value);
	var a = +m[1], b = (m[2] != null) ? +m[2] : a;
	if (a < 1 || b > 65535)
		return _('"%s": ports go from 1 to 65535.').format(value);
	if (a > b)
		return _('"%s": the first port of a range must not be larger than the last.').format(value);
	return true;
}

function numberOption(s, section_id, name) {
	var v = s.formvalue(section_id, name);
	return (v != null && /^\d+$/.test(v)) ? +v : null;
}

return view.extend({
	load: function() {
		return Promise.all([
			fetchStatus(),
			L.resolveDefault(uci.load('mape'), null),
			L.resolveDefault(callAccess('ubus', 'mape', 'recompute'), true)
		]).then(L.bind(function(res) {
			this.mayRecompute = (res[2] !== false);
			mayWrite = this.mayRecompute;
			return res[0];
		}, this));
	},

	handleRecompute: function(ev) {
		return callRecompute().then(function(res) {
			if (L.isObject(res) && res.ok !== false && !res.error)
				ui.addNotification(null, E('p', {}, [ _('mape-py is recomputing the mapping; the status updates in a few seconds.') ]), 'info');
			else
				ui.addNotification(null, E('p', {}, [ _('Recompute failed: %s').format(L.isObject(res) ? (res.error || '?') : _('ubus error %d').format(res)) ]), 'error');
		}, function(err) {
			ui.addNotification(null, E('p', {}, [ _('Recompute failed: %s').format(errorText(err)) ]), 'error');
		});
	},

	handleCalc: function(input, output, ev) {
		var prefix = (input.value || '').trim();
		if (!prefix) {
			dom.content(output, E('div', { 'class': 'alert-message warning' }, [ _('Enter an IPv6 prefix, for example 240b:11:2233:4400::/56.') ]));
			return Promise.resolve();
		}
		dom.content(output, E('em', { 'class': 'spinning' }, [ _('Calculating\u2026') ]));
		return callCalc(prefix).then(function(res) {
			dom.content(output, renderCalcResult(res));
		}, function(err) {
			dom.content(output, E('div', { 'class': 'alert-message error' }, [ errorText(err) ]));
		});
	},

	renderSettings: function() {
		var m, s, o;

		m = new form.Map('mape', null, null);

		s = m.section(form.NamedSection, 'config', 'mape', _('Settings'));
		s.addremove = false;

		o = s.option(form.Flag, 'enabled', _('Enable'), _('Keep IPv4 working over MAP-E: follow the IPv6 prefix, configure the tunnel and the port-set NAT.'));
		o.rmempty = false;
		o.default = '1';

		o = s.option(form.Value, 'wan6_iface', _('IPv6 uplink interface'), _('The interface that receives the IPv6 prefix from the line.'));
		o.placeholder = 'wan6';
		o.validate = L.bind(validateInterface, o, 'wan6_iface', s);

		o = s.option(form.Value, 'wan_iface', _('MAP-E tunnel interface'), _('The interface mape-py writes as "proto map"; it carries IPv4.'));
		o.placeholder = 'wan';
		o.validate = L.bind(validateInterface, o, 'wan_iface', s);

		o = s.option(form.Value, 'mtu', _('Tunnel MTU'), _('1460 fits FLET\'S lines: 1500 bytes minus the 40-byte IPv6 header.'));
		o.placeholder = '1460';
		o.validate = validateMtu;

		o = s.option(form.Value, 'recheck', _('Re-check interval'), _('Seconds between safety checks that the tunnel, addresses and NAT rules are still in place; events do the real work.'));
		o.placeholder = '300';
		o.validate = validateInterval;

		o = s.option(form.Flag, 'rollback', _('Roll back on failure'), _('Restore the previous network configuration when wan does not come up with the new IPv4 address.'));
		o.default = '1';
		o.rmempty = false;

		var fw = m.section(form.NamedSection, 'config', 'mape', _('Firewall and NAT'));
		fw.addremove = false;

		o = fw.option(form.ListValue, 'nat_backend', _('Firewall backend'), _('How the port-set NAT rules are installed. Automatic: nftables with fw4, iptables with fw3. Off: mape-py installs no NAT rules.'));
		BACKENDS.forEach(function(b) { o.value(b[0], b[1]); });
		o.default = 'auto';

		o = fw.option(form.ListValue, 'nat_strategy', _('Port-set strategy'), _('How new connections are spread over the port sets. Round robin spreads them evenly; hash keeps each source address and port on one set.'));
		o.value('rr', _('Round robin'));
		o.value('hash', _('Hash'));
		o.default = 'rr';

		o = fw.option(form.Value, 'nat_mark_mask', _('Firewall mark mask'), _('The fwmark bits reserved for mape-py, in hex. The bits 0x0000f000 belong to GL.iNet\'s VPN policy routing and are never used.'));
		o.placeholder = '0x00ff0000';
		o.validate = function(section_id, value) {
			if (value == null || value === '')
				return true;
			var mask = parseMask(value);
			if (mask == null)
				return _('Enter the mask as a hexadecimal number such as 0x00ff0000 (a decimal number must not start with 0).');
			if (mask == 0)
				return _('The mask must have at least one bit set.');
			if (mask > 0xffffffff)
				return _('A mark has 32 bits: the mask is at most 0xffffffff.');
			if (mask & 0xf000)
				return _('This mask overlaps 0x0000f000, the bits GL.iNet firmware uses for VPN policy routing and its DNS leak guard: VPN clients would break, so mape-py refuses it. Choose other bits, for example 0x00ff0000 (the default).');
			return true;
		};

		o = fw.option(form.DynamicList, 'nat_keep_out', _('Ports kept out of NAT'), _('Ports or ranges (5190-5199) of your port sets that LAN connections must not use, for example for a service on the router. The ports of port forwards are kept out automatically.'));
		o.validate = function(section_id, value) {
			var items = Array.isArray(value) ? value : [ value ];
			for (var i = 0; i < items.length; i++) {
				if (items[i] == null || items[i] === '')
					continue;
				var res = validatePort(String(items[i]).trim());
				if (res !== true)
					return res;
			}
			return true;
		};

		o = fw.option(form.Value, 'nat_host_cap', _('Connections per LAN host'), _('Optional: at most this many connections through the tunnel per LAN host, as a number (60) or a share of your ports (25%), so that one host cannot take every port. Over the cap a new connection is refused at once. Empty or 0: no cap. Suggested: 25%.'));
		o.placeholder = '25%';
		o.validate = function(section_id, value) {
			if (value == null || value === '')
				return true;
			var m = String(value).trim().match(/^([0-9]{1,5}) *(%?)$/);
			if (!m)
				return _('Enter a number of connections (60) or a share of the ports (25%).');
			if (m[2] ? (+m[1] > 100) : (+m[1] > 65535))
				return m[2] ? _('A share is at most 100%.') : _('Enter at most 65535 connections.');
			return true;
		};

		o = fw.option(form.Flag, 'nat_guard', _('Leak guard'), _('Drop packets that would leave the tunnel untranslated: untracked packets and protocols without ports (GRE, ESP), which a shared IPv4 address cannot carry.'));
		o.default = '1';

		o = fw.option(form.Value, 'nat_tcp_time_wait', _('TCP TIME_WAIT (seconds)'), _('Opt-in: a shorter TIME_WAIT lets busy port sets reuse the ports of closed connections sooner. Empty or 0 leaves the kernel default (120).'));
		o.placeholder = '120';
		o.validate = function(section_id, value) {
			if (value == null || value === '')
				return true;
			return intIn(value, 0, 120) ? true : _('Enter seconds between 1 and 120, or 0 for the kernel default.');
		};

		var rs = m.section(form.TypedSection, 'rule', _('Custom MAP rule'), _('Only needed when your provider is not recognised or its rule changed: values from the provider\'s documentation. A custom rule overrides the built-in table for the prefixes it covers.'));
		rs.anonymous = true;
		rs.addremove = true;

		o = rs.option(form.Flag, 'enabled', _('Enable'));
		o.default = '1';
		o.rmempty = false;

		o = rs.option(form.Value, 'provider', _('Name'), _('A label for this rule, shown as the provider.'));
		o.placeholder = 'user';

		o = rs.option(form.Value, 'ip6prefix', _('Rule IPv6 prefix'), _('For example 240b:10:: (with /31 below) or 240b:10::/31.'));
		o.validate = function(section_id, value) {
			if (value == null || value === '')
				return _('The rule needs its IPv6 prefix.');
			var parts = String(value).split('/');
			if (parts.length > 2 || !parseIPv6(parts[0]))
				return _('"%s" is not an IPv6 prefix: write it like 240b:10:: or 240b:10::/31.').format(value);
			if (parts.length == 2 && !intIn(parts[1], 1, 64))
				return _('The prefix length after "/" must be between 1 and 64.');
			return true;
		};

		o = rs.option(form.Value, 'ip6prefixlen', _('Rule IPv6 prefix length'));
		o.placeholder = '31';
		o.validate = function(section_id, value) {
			if (value == null || value === '')
				return true;
			return intIn(value, 1, 64) ? true : _('Between 1 and 64.');
		};

		o = rs.option(form.Value, 'ipaddr', _('Rule IPv4 prefix'), _('For example 106.72.0.0.'));
		o.validate = function(section_id, value) {
			if (value == null || value === '')
				return _('The rule needs its IPv4 prefix.');
			var parts = String(value).split('/');
			if (parts.length > 2 || !isIPv4(parts[0]) || (parts.length == 2 && !intIn(parts[1], 0, 32)))
				return _('"%s" is not an IPv4 prefix: write it like 106.72.0.0 or 106.72.0.0/15.').format(value);
			return true;
		};

		o = rs.option(form.Value, 'ip4prefixlen', _('Rule IPv4 prefix length'));
		o.placeholder = '15';
		o.validate = function(section_id, value) {
			if (value == null || value === '')
				return true;
			return intIn(value, 0, 32) ? true : _('Between 0 and 32.');
		};

		o = rs.option(form.Value, 'ealen', _('EA-bits length'));
		o.placeholder = '25';
		o.validate = function(section_id, value) {
			if (!intIn(value, 0, 48))
				return _('The EA-bits length is a number between 0 and 48.');
			var p6 = numberOption(rs, section_id, 'ip6prefixlen');
			var v6 = String(rs.formvalue(section_id, 'ip6prefix') || '').split('/');
			if (v6.length == 2 && /^\d+$/.test(v6[1]))
				p6 = +v6[1];
			if (p6 != null && p6 + (+value) > 64)
				return _('IPv6 prefix length %d + EA-bits length %d is more than 64: the EA bits must fit in the first 64 bits.').format(p6, +value);
			return true;
		};

		o = rs.option(form.Value, 'psidlen', _('PSID length'));
		o.placeholder = '8';
		o.validate = function(section_id, value) {
			if (!intIn(value, 0, 16))
				return _('The PSID length is a number between 0 and 16.');
			var ea = numberOption(rs, section_id, 'ealen'), p4 = numberOption(rs, section_id, 'ip4prefixlen');
			var v4 = String(rs.formvalue(section_id, 'ipaddr') || '').split('/');
			if (v4.length == 2 && /^\d+$/.test(v4[1]))
				p4 = +v4[1];
			if (ea != null && p4 != null && ea - (32 - p4) != +value)
				return _('EA-bits length %d = IPv4 suffix bits (32 \u2212 %d = %d) + PSID length, so the PSID length must be %d.').format(ea, p4, 32 - p4, ea - (32 - p4));
			return true;
		};

		o = rs.option(form.Value, 'offset', _('PSID offset'), _('4 for v6plus, OCN and BIGLOBE style (draft-03) rules, 6 for RFC 7597.'));
		o.placeholder = '4';
		o.validate = function(section_id, value) {
			if (value == null || value === '')
				return true;
			if (!intIn(value, 0, 15))
				return _('The PSID offset is a number between 0 and 15.');
			var psid = numberOption(rs, section_id, 'psidlen');
			if (psid != null && psid + (+value) > 16)
				return _('PSID offset %d + PSID length %d is more than the 16 bits of a port.').format(+value, psid);
			return true;
		};

		o = rs.option(form.Value, 'peeraddr', _('BR address'), _('The provider\'s border relay, for example 2404:9200:225:100::64.'));
		o.validate = function(section_id, value) {
			if (value == null || value === '')
				return _('The rule needs the BR address.');
			return parseIPv6(String(value)) ? true : _('"%s" is not an IPv6 address.').format(value);
		};

		o = rs.option(form.Flag, 'legacymap', _('Japanese CE layout (draft-03)'), _('On for v6plus, OCN Virtual Connect, BIGLOBE and NURO.'));
		o.default = '1';
		o.rmempty = false;

		return m.render().then(function(node) {
			/* Show validation messages next to the field as well as in LuCI's tooltip. 21.02's
			 * validation.js fires the event without "detail"; the tooltip attribute it sets first
			 * has the same text. The message may quote what was typed: text, never markup. */
			node.addEventListener('validation-failure', function(ev) {
				var field = ev.target.closest ? ev.target.closest('.cbi-value-field') : null;
				if (!field)
					return;
				var message = (ev.detail && ev.detail.message) ||
					(ev.target.getAttribute ? ev.target.getAttribute('data-tooltip') : null) || '';
				var box = field.querySelector('.mape-field-error');
				if (!box)
					box = field.appendChild(E('div', { 'class': 'mape-field-error', 'style': 'color:' + COLOURS.red }));
				dom.content(box, [ message ]);
			});
			node.addEventListener('validation-success', function(ev) {
				var field = ev.target.closest ? ev.target.closest('.cbi-value-field') : null;
				var box = field ? field.querySelector('.mape-field-error') : null;
				if (box)
					box.parentNode.removeChild(box);
			});
			return node;
		});
	},

	render: function(st) {
		var statusNode = E('div', { 'id': 'mape-status' }, renderStatus(st));
		var portsNode = E('div', { 'id': 'mape-ports' }, renderPorts(st));
		var calcInput = E('input', { 'type': 'text', 'class': 'cbi-input-text', 'id': 'mape-calc-prefix',
			'placeholder': '240b:11:2233:4400::/56', 'style': 'width:22em' });
		var calcOutput = E('div', { 'id': 'mape-calc-result' });
		var calcButton = E('button', {
			'class': 'cbi-button cbi-button-action', 'id': 'mape-calc-button',
			'click': ui.createHandlerFn(this, 'handleCalc', calcInput, calcOutput)
		}, [ _('Calculate') ]);

		calcInput.addEventListener('keydown', function(ev) {
			if (ev.keyCode == 13)
				calcButton.click();
		});

		return this.renderSettings().then(L.bind(function(formNode) {
			var shown = JSON.stringify(st);
			poll.add(function() {
				return fetchStatus().then(function(next) {
					/* redraw only on change: the page must not jump under the user's pointer */
					var json = JSON.stringify(next);
					if (json === shown)
						return;
					shown = json;
					dom.content(statusNode, renderStatus(next));
					dom.content(portsNode, renderPorts(next));
				});
			});

			return E('div', { 'class': 'mape-page' }, [
				E('h2', {}, [ _('MAP-E') ]),
				E('div', { 'class': 'cbi-map-descr' }, [ _('IPv4 over the IPv6 line (v6plus, OCN Virtual Connect, BIGLOBE, NURO) with mape-py.') ]),
				E('div', { 'class': 'cbi-section', 'id': 'mape-status-section' }, [
					E('h3', {}, [ _('Status') ]),
					statusNode,
					E('div', { 'class': 'right' }, [
						this.mayRecompute ? '' : E('small', { 'class': 'mape-readonly-note', 'style': 'margin-right:.8em' }, [
							_('Read-only access: this login cannot recompute or change the settings.') ]),
						E('button', {
							'class': 'cbi-button cbi-button-action', 'id': 'mape-recompute',
							'disabled': this.mayRecompute ? null : true,
							'click': ui.createHandlerFn(this, 'handleRecompute')
						}, [ _('Recompute now') ])
					])
				]),
				E('div', { 'class': 'cbi-section', 'id': 'mape-ports-section' }, [
					E('h3', {}, [ _('Port sets') ]),
					portsNode
				]),
				E('div', { 'class': 'cbi-section', 'id': 'mape-calc-section' }, [
					E('h3', {}, [ _('Calculator') ]),
					E('p', {}, [ _('Work out the MAP-E mapping of any IPv6 prefix, without changing anything.') ]),
					E('div', {}, [
						calcInput, ' ', calcButton
					]),
					calcOutput
				]),
				formNode
			]);
		}, this));
	}
});
