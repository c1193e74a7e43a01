/*
 * A small stand-in for LuCI's client runtime (luci.js + rpc.js + uci.js + ui.js + form.js),
 * written for the mape-py tests. It implements the subset of the documented API the
 * MAP-E view uses, with the same observable behaviour where a view can see it:
 *
 *  - class loader: 'require x' directives, module factory(window, document, L, deps...),
 *    the module's class is instantiated (a view renders on instantiation);
 *  - L.env, L.bind, L.resolveDefault, L.isObject, L.toArray, L.error, String.format,
 *    E(), _() (catalog loaded from the app's po file by the test server);
 *  - poll: add(fn[, interval]) with L.env.pollinterval as default, one tick per second;
 *  - rpc.declare: JSON-RPC 2.0 "call" to /ubus with [sid, object, method, args]; replies
 *    [code, data]; non-zero code resolves to the number unless reject:true; `expect`
 *    and `filter` behave as in LuCI;
 *  - uci: load/get/set/unset/add/remove/sections/save over the ubus "uci" object;
 *  - ui: addNotification, showModal, hideModal, createHandlerFn, changes.apply; widgets
 *    with LuCI's validation contract (cbi-input-invalid class, data-tooltip, bubbling
 *    validation-failure / validation-success events, validate(section_id, value) gets
 *    the raw string and returns true or a message);
 *  - form: Map, NamedSection, TypedSection (anonymous, addremove), Value, Flag,
 *    ListValue, DynamicList; section.formvalue/getUIElement/getOption; Map.save with
 *    LuCI's "Option ... contains an invalid input value" error modal;
 *  - view: load() -> render() -> #view, footer with Save & Apply / Save / Reset unless
 *    the handler is null.
 */
(function(window, document) {
	'use strict';

	/* ---------- String.prototype.format (subset: %s %d %f %x %%, with precision) ---------- */
	String.prototype.format = function() {
		var args = arguments, i = 0;
		return String(this).replace(/%(-)?(0)?(\d+)?(?:\.(\d+))?([sdfx%])/g, function(m, left, zero, width, prec, type) {
			if (type == '%')
				return '%';
			var v = args[i++], s;
			switch (type) {
			case 'd': s = String(Math.trunc(+v || 0)); break;
			case 'f': s = (prec != null) ? (+v || 0).toFixed(+prec) : String(+v || 0); break;
			case 'x': s = (Math.trunc(+v) >>> 0).toString(16); break;
			default: s = (v == null) ? '' : String(v); if (prec != null) s = s.substr(0, +prec);
			}
			while (width && s.length < +width)
				s = left ? s + ' ' : (zero ? '0' : ' ') + s;
			return s;
		});
	};

	/* ---------- baseclass ---------- */
	var Class = Object.assign(function() {}, {
		extend: function(properties) {
			var props = { __base__: { value: this.prototype }, __name__: { value: properties.__name__ || 'anonymous' } };
			var C = function() {
				if (!(this instanceof C))
					throw new TypeError('Constructor must not be called without "new"');
				var owner = Object.getPrototypeOf(this);
				while (owner && !owner.hasOwnProperty('__init__'))
					owner = Object.getPrototypeOf(owner);
				if (owner && typeof(owner.__init__) == 'function')
					callWithContext(this, owner, '__init__', arguments);
			};
			for (var key in properties)
				if (!props[key] && properties.hasOwnProperty(key))
					props[key] = { value: properties[key], writable: true };
			C.prototype = Object.create(this.prototype, props);
			C.prototype.constructor = C;
			Object.assign(C, this);
			return C;
		},
		singleton: function(properties) {
			return Class.extend(properties).instantiate(Array.prototype.slice.call(arguments, 1));
		},
		instantiate: function(args) {
			return new (Function.prototype.bind.apply(this, [ null ].concat(args)))();
		},
		isSubclass: function(c) {
			return (typeof(c) == 'function' && c.prototype instanceof this);
		},
		prototype: {
			varargs: function(args, offset) {
				return Array.prototype.slice.call(arguments, 2).concat(Array.prototype.slice.call(args, offset));
			},
			super: function(key, callArgs) {
				/* continue above the prototype whose `key` is running, else above the first owner */
				var ctx = (this.__superctx__ || {})[key], proto = ctx;
				if (!proto) {
					proto = Object.getPrototypeOf(this);
					while (proto && !proto.hasOwnProperty(key))
						proto = Object.getPrototypeOf(proto);
				}
				proto = proto ? Object.getPrototypeOf(proto) : null;
				while (proto && !proto.hasOwnProperty(key))
					proto = Object.getPrototypeOf(proto);
				if (!proto)
					return null;
				if (arguments.length < 2)
					return proto[key];
				if (typeof(proto[key]) != 'function')
					throw new ReferenceError(key + ' is not a function in base class');
				if (typeof(callArgs) != 'object' || callArgs == null)
					callArgs = Array.prototype.slice.call(arguments, 1);
				return callWithContext(this, proto, key, callArgs);
			}
		}
	});

	function callWithContext(self, proto, key, args) {
		if (!self.hasOwnProperty('__superctx__'))
			Object.defineProperty(self, '__superctx__', { value: {}, writable: true });
		var saved = self.__superctx__[key];
		self.__superctx__[key] = proto;
		try { return proto[key].apply(self, args); }
		finally { self.__superctx__[key] = saved; }
	}

	/* ---------- dom ---------- */
	var registry = {};
	var DOM = Class.singleton({
		elem: function(e) { return (e != null && typeof(e) == 'object' && 'nodeType' in e); },
		parse: function(s) {
			var d = document.createElement('div');
			d.innerHTML = s;
			return d.firstChild;
		},
		matches: function(node, sel) { return this.elem(node) && node.matches ? node.matches(sel) : false; },
		parent: function(node, sel) { return (this.elem(node) && node.closest) ? node.closest(sel) : null; },
		append: function(node, children) {
			if (!this.elem(node))
				return null;
			if (Array.isArray(children)) {
				for (var i = 0; i < children.length; i++)
					if (this.elem(children[i]))
						node.appendChild(children[i]);
					else if (children[i] !== null && children[i] !== undefined)
						node.appendChild(document.createTextNode('' + children[i]));
				return node.lastChild;
			}
			else if (typeof(children) === 'function')
				return this.append(node, children(node));
			else if (this.elem(children))
				return node.appendChild(children);
			else if (children !== null && children !== undefined) {
				node.innerHTML = '' + children;
				return node.lastChild;
			}
			return null;
		},
		content: function(node, children) {
			if (!this.elem(node))
				return null;
			while (node.firstChild)
				node.removeChild(node.firstChild);
			return this.append(node, children);
		},
		attr: function(node, key, val) {
			if (!this.elem(node))
				return;
			var attr = (typeof(key) === 'object' && key !== null) ? key : {};
			if (typeof(key) === 'string')
				attr[key] = val;
			for (key in attr) {
				if (!attr.hasOwnProperty(key) || attr[key] == null)
					continue;
				switch (typeof(attr[key])) {
				case 'function': node.addEventListener(key, attr[key]); break;
				case 'object': node.setAttribute(key, JSON.stringify(attr[key])); break;
				default: node.setAttribute(key, attr[key]);
				}
			}
		},
		create: function() {
			var html = arguments[0], attr = arguments[1], data = arguments[2], elem;
			if (!(attr instanceof Object) || Array.isArray(attr))
				data = attr, attr = null;
			if (Array.isArray(html)) {
				elem = document.createDocumentFragment();
				for (var i = 0; i < html.length; i++)
					elem.appendChild(this.create(html[i]));
			}
			else if (this.elem(html))
				elem = html;
			else if (html.charCodeAt(0) === 60)
				elem = this.parse(html);
			else
				elem = document.createElement(html);
			if (!elem)
				return null;
			this.attr(elem, attr);
			this.append(elem, data);
			return elem;
		},
		addClass: function(node, c) { if (this.elem(node)) node.classList.add(c); },
		removeClass: function(node, c) { if (this.elem(node)) node.classList.remove(c); },
		data: function(node, key, val) {
			var id = node.getAttribute('data-idref');
			if (arguments.length > 2) {
				if (id == null) {
					id = Math.floor(Math.random() * 0xffffffff).toString(16);
					node.setAttribute('data-idref', id);
					registry[id] = {};
				}
				return (registry[id][key] = val);
			}
			return (id != null && registry[id]) ? registry[id][key] : null;
		},
		bindClassInstance: function(node, inst) { return this.data(node, '_class', inst); },
		findClassInstance: function(node) {
			var inst = null;
			while (node && node.getAttribute && !(inst = this.data(node, '_class')))
				node = node.parentNode;
			return inst;
		},
		callClassMethod: function(node, method) {
			var inst = this.findClassInstance(node);
			if (inst == null || typeof(inst[method]) != 'function')
				return null;
			return inst[method].apply(inst, Array.prototype.slice.call(arguments, 2));
		}
	});

	var E = window.E = function() { return DOM.create.apply(DOM, arguments); };

	/* Translations as LuCI delivers them: window.TR maps the SuperFastHash (8 hex digits) of
	 * the whitespace-normalised msgid to the text, built from the installed .lmo catalogs. */
	function sfh(s) {
		var b = new TextEncoder().encode(s), len = b.length, h = len >>> 0, i = 0, tmp;
		var u16 = function(o) { return b[o] | (b[o + 1] << 8); };
		var s8 = function(o) { return b[o] > 127 ? b[o] - 256 : b[o]; };
		if (!len)
			return '00000000';
		for (var n = len >> 2; n > 0; n--, i += 4) {
			h = (h + u16(i)) >>> 0;
			tmp = ((u16(i + 2) << 11) ^ h) >>> 0;
			h = ((h << 16) ^ tmp) >>> 0;
			h = (h + (h >>> 11)) >>> 0;
		}
		switch (len & 3) {
		case 3:
			h = (h + u16(i)) >>> 0; h = (h ^ (h << 16)) >>> 0;
			h = (h ^ (s8(i + 2) << 18)) >>> 0; h = (h + (h >>> 11)) >>> 0; break;
		case 2:
			h = (h + u16(i)) >>> 0; h = (h ^ (h << 11)) >>> 0; h = (h + (h >>> 17)) >>> 0; break;
		case 1:
			h = (h + s8(i)) >>> 0; h = (h ^ (h << 10)) >>> 0; h = (h + (h >>> 1)) >>> 0;
		}
		h = (h ^ (h << 3)) >>> 0; h = (h + (h >>> 5)) >>> 0;
		h = (h ^ (h << 4)) >>> 0; h = (h + (h >>> 17)) >>> 0;
		h = (h ^ (h << 25)) >>> 0; h = (h + (h >>> 6)) >>> 0;
		return (0x100000000 + h).toString(16).substr(1);
	}
	window.sfh = sfh;

	var catalog = {};
	window._ = function(s, c) {
		var k = (c != null ? String(c).trim().replace(/[ \t\n]+/g, ' ') + '\u0001' : '') + String(s).trim().replace(/[ \t\n]+/g, ' ');
		return catalog[sfh(k)] || s;
	};
	var _ = window._;

	/* ---------- poll ---------- */
	var Poll = Class.singleton({
		queue: [],
		add: function(fn, interval) {
			if (interval == null || interval <= 0)
				interval = L.env.pollinterval;
			if (isNaN(interval) || typeof(fn) != 'function')
				throw new TypeError('Invalid argument to LuCI.poll.add()');
			for (var i = 0; i < this.queue.length; i++)
				if (this.queue[i].fn === fn)
					return false;
			this.queue.push({ r: true, i: interval >>> 0, fn: fn });
			if (this.tick != null && !this.active())
				this.start();
			return true;
		},
		remove: function(fn) {
			var len = this.queue.length;
			this.queue = this.queue.filter(function(e) { return e.fn !== fn; });
			return len != this.queue.length;
		},
		start: function() {
			if (this.active())
				return false;
			this.tick = 0;
			if (this.queue.length) {
				this.timer = window.setInterval(this.step, 1000);
				this.step();
			}
			return true;
		},
		stop: function() {
			if (!this.active())
				return false;
			window.clearInterval(this.timer);
			delete this.timer;
			delete this.tick;
			return true;
		},
		step: function() {
			for (var i = 0, e = null; (e = Poll.queue[i]) != null; i++) {
				if ((Poll.tick % e.i) != 0 || !e.r)
					continue;
				e.r = false;
				Promise.resolve(e.fn()).finally((function() { this.r = true; }).bind(e));
			}
			Poll.tick = (Poll.tick + 1) % Math.pow(2, 32);
		},
		active: function() { return (this.timer != null); }
	});

	/* ---------- request ---------- */
	var Request = Class.singleton({
		post: function(url, data) {
			return window.fetch(url, {
				method: 'POST', body: JSON.stringify(data), credentials: 'same-origin',
				headers: { 'Content-Type': 'application/json' }
			}).then(function(res) {
				return res.text().then(function(text) {
					return { ok: res.ok, status: res.status, statusText: res.statusText,
						json: function() { return JSON.parse(text); } };
				});
			});
		}
	});

	/* ---------- rpc ---------- */
	var rpcRequestID = 1;
	var rpc = Class.singleton({
		getStatusText: function(code) {
			return ({ 0: _('Command OK'), 1: _('Invalid command'), 2: _('Invalid argument'), 3: _('Method not found'),
				4: _('Resource not found'), 5: _('No data received'), 6: _('Permission denied'), 7: _('Request timeout'),
				8: _('Not supported'), 9: _('Unspecified error'), 10: _('Connection lost') })[code] || _('Unknown error code');
		},
		declare: function(options) {
			var self = this;
			return function() {
				var args = Array.prototype.slice.call(arguments);
				return new Promise(function(resolveFn, rejectFn) {
					var params = {}, p = 0, priv = [ undefined, undefined ];
					if (Array.isArray(options.params))
						for (p = 0; p < options.params.length; p++)
							params[options.params[p]] = args[p];
					for (; p < args.length; p++)
						priv.push(args[p]);
					var msg = { jsonrpc: '2.0', id: rpcRequestID++, method: 'call',
						params: [ L.env.sessionid, options.object, options.method, params ] };
					Request.post(L.env.ubuspath + options.object + '.' + options.method, msg).then(function(res) {
						if (!res.ok)
							throw new Error('RPC call to %s/%s failed with HTTP error %d: %s'.format(options.object, options.method, res.status, res.statusText || '?'));
						var reply = res.json(), ret = null, type = Object.prototype.toString;
						if (!L.isObject(reply) || reply.jsonrpc != '2.0')
							throw new Error('RPC call to %s/%s returned invalid message frame'.format(options.object, options.method));
						if (L.isObject(reply.error) && reply.error.code && reply.error.message)
							throw new Error('RPC call to %s/%s failed with error %d: %s'.format(options.object, options.method, reply.error.code, reply.error.message));
						if (Array.isArray(reply.result)) {
							if (options.reject && reply.result[0] !== 0)
								throw new Error('RPC call to %s/%s failed with ubus code %d: %s'.format(options.object, options.method, reply.result[0], self.getStatusText(reply.result[0])));
							ret = (reply.result.length > 1) ? reply.result[1] : reply.result[0];
						}
						if (options.expect) {
							for (var key in options.expect) {
								if (ret != null && key != '')
									ret = ret[key];
								if (ret == null || type.call(ret) != type.call(options.expect[key]))
									ret = options.expect[key];
								break;
							}
						}
						if (typeof(options.filter) == 'function') {
							priv[0] = ret;
							priv[1] = params;
							ret = options.filter.apply(self, priv);
						}
						resolveFn(ret);
					}).catch(rejectFn);
				});
			};
		}
	});

	/* ---------- uci ---------- */
	var callUciGet = rpc.declare({ object: 'uci', method: 'get', params: [ 'config' ], expect: { values: {} }, reject: true });
	var callUciAdd = rpc.declare({ object: 'uci', method: 'add', params: [ 'config', 'type', 'name', 'values' ], expect: { section: '' }, reject: true });
	var callUciSet = rpc.declare({ object: 'uci', method: 'set', params: [ 'config', 'section', 'values' ], reject: true });
	var callUciDelete = rpc.declare({ object: 'uci', method: 'delete', params: [ 'config', 'section', 'options' ], reject: true });
	var callUciApply = rpc.declare({ object: 'uci', method: 'apply', params: [ 'timeout', 'rollback' ], reject: true });
	var callUciConfirm = rpc.declare({ object: 'uci', method: 'confirm', reject: true });

	var uci = Class.singleton({
		state: { values: {}, creates: {}, changes: {}, deletes: {}, removed: {} },
		newid: 0,
		load: function(config) {
			var self = this;
			return callUciGet(config).then(function(values) {
				self.state.values[config] = values;
				self.state.creates[config] = {};
				self.state.changes[config] = {};
				self.state.deletes[config] = {};
				self.state.removed[config] = {};
				return config;
			});
		},
		section: function(config, sid) {
			var c = this.state.creates[config] || {}, v = this.state.values[config] || {};
			if ((this.state.removed[config] || {})[sid])
				return null;
			return c[sid] || v[sid] || null;
		},
		get: function(config, sid, opt) {
			var s = this.section(config, sid);
			if (!s)
				return null;
			if (opt == null)
				return s;
			var ch = (this.state.changes[config] || {})[sid], del = (this.state.deletes[config] || {})[sid];
			if (ch && ch.hasOwnProperty(opt))
				return ch[opt];
			if (del && del[opt])
				return null;
			return s.hasOwnProperty(opt) ? s[opt] : null;
		},
		set: function(config, sid, opt, value) {
			if (value == null || value === '' || (Array.isArray(value) && !value.length))
				return this.unset(config, sid, opt);
			var ch = this.state.changes[config], del = this.state.deletes[config];
			(ch[sid] = ch[sid] || {})[opt] = value;
			if (del[sid])
				delete del[sid][opt];
		},
		unset: function(config, sid, opt) {
			var ch = this.state.changes[config], del = this.state.deletes[config];
			if (ch[sid])
				delete ch[sid][opt];
			(del[sid] = del[sid] || {})[opt] = true;
		},
		add: function(config, type, name) {
			var sid = name || 'new' + (++this.newid);
			this.state.creates[config][sid] = { '.type': type, '.name': sid, '.anonymous': !name, '.index': 1000 + this.newid };
			return sid;
		},
		remove: function(config, sid) {
			if (this.state.creates[config][sid])
				delete this.state.creates[config][sid];
			else
				this.state.removed[config][sid] = true;
		},
		sections: function(config, type, cb) {
			var all = [], self = this, seen = {};
			[ this.state.values[config] || {}, this.state.creates[config] || {} ].forEach(function(src) {
				for (var sid in src)
					if (!seen[sid] && self.section(config, sid) && (type == null || src[sid]['.type'] == type)) {
						seen[sid] = true;
						all.push(src[sid]);
					}
			});
			all.sort(function(a, b) { return a['.index'] - b['.index']; });
			if (typeof(cb) == 'function')
				all.forEach(function(s) { cb.call(self, s, s['.name']); });
			return all;
		},
		save: function() {
			var self = this, tasks = [], configs = Object.keys(this.state.values);
			configs.forEach(function(config) {
				var creates = self.state.creates[config] || {}, changes = self.state.changes[config] || {},
				    deletes = self.state.deletes[config] || {}, removed = self.state.removed[config] || {};
				Object.keys(removed).forEach(function(sid) { tasks.push(function() { return callUciDelete(config, sid, null); }); });
				Object.keys(creates).forEach(function(sid) {
					tasks.push(function() {
						return callUciAdd(config, creates[sid]['.type'], creates[sid]['.anonymous'] ? null : sid, changes[sid] || {}).then(function(newsid) {
							delete changes[sid];
							delete deletes[sid];
						});
					});
				});
				Object.keys(changes).forEach(function(sid) {
					if (!creates[sid] && !removed[sid] && Object.keys(changes[sid]).length)
						tasks.push(function() { return callUciSet(config, sid, changes[sid]); });
				});
				Object.keys(deletes).forEach(function(sid) {
					var opts = Object.keys(deletes[sid]).filter(function(o) { return (self.state.values[config][sid] || {}).hasOwnProperty(o); });
					if (!creates[sid] && !removed[sid] && opts.length)
						tasks.push(function() { return callUciDelete(config, sid, opts); });
				});
			});
			return tasks.reduce(function(p, t) { return p.then(t); }, Promise.resolve()).then(function() {
				return Promise.all(configs.map(function(c) { return self.load(c); }));
			});
		},
		apply: function(timeout) {
			return callUciApply(timeout || 10, true).then(function() { return callUciConfirm(); });
		}
	});

	/* ---------- ui ---------- */
	var validationTooltip = null;
	document.addEventListener('mouseover', showTooltip, true);
	document.addEventListener('focus', showTooltip, true);
	document.addEventListener('blur', hideTooltip, true);
	document.addEventListener('mouseout', hideTooltip, true);

	function showTooltip(ev) {
		var t = (ev.target && ev.target.closest) ? ev.target.closest('[data-tooltip]') : null;
		if (!t)
			return;
		hideTooltip();
		var r = t.getBoundingClientRect();
		validationTooltip = E('div', {
			'class': 'cbi-tooltip' + (t.getAttribute('data-tooltip-style') ? ' ' + t.getAttribute('data-tooltip-style') : ''),
			/* fixed, not absolute: a tooltip must not change the scrollable size of the page */
			'style': 'position:fixed;left:%dpx;top:%dpx'.format(r.left, r.bottom + 4)
		}, [ t.getAttribute('data-tooltip') ]);
		document.body.appendChild(validationTooltip);
	}

	function hideTooltip() {
		if (validationTooltip && validationTooltip.parentNode)
			validationTooltip.parentNode.removeChild(validationTooltip);
		validationTooltip = null;
	}

	/* the validation contract of LuCI's validation.js, for custom validator functions */
	function makeValidator(field, optional, vfunc) {
		return function() {
			if (!document.body.contains(field))
				return true;
			var value = (field.value != null) ? field.value : '', msg = null, valid;
			field.classList.remove('cbi-input-invalid');
			if (value.length === 0 && !optional)
				msg = _('Expecting: %s').format(_('non-empty value'));
			else if (typeof(vfunc) == 'function' && (valid = vfunc(value)) !== true)
				msg = (typeof(valid) == 'string') ? valid : _('Invalid value');
			if (msg != null) {
				field.classList.add('cbi-input-invalid');
				field.setAttribute('data-tooltip', msg);
				field.setAttribute('data-tooltip-style', 'error');
				field.dispatchEvent(new CustomEvent('validation-failure', { bubbles: true, detail: { message: msg } }));
				return false;
			}
			field.removeAttribute('data-tooltip');
			field.removeAttribute('data-tooltip-style');
			field.dispatchEvent(new CustomEvent('validation-success', { bubbles: true }));
			return true;
		};
	}

	var UIElement = Class.extend({
		__init__: function(value, options) {
			this.value = value;
			this.options = Object.assign({}, options);
			this.validState = true;
			this.error = null;
		},
		setValidator: function(field) {
			var self = this, v = makeValidator(field, this.options.optional !== false, this.options.validate);
			this.validator = function() {
				self.validState = v();
				self.error = self.validState ? null : field.getAttribute('data-tooltip');
				return self.validState;
			};
			[ 'input', 'keyup', 'blur' ].forEach(function(e) { field.addEventListener(e, self.validator); });
		},
		triggerValidation: function() { return this.validator ? this.validator() : true; },
		isValid: function() { return this.validState !== false; },
		getValidationError: function() { return this.error || ''; },
		isChanged: function() { return this.changed === true; },
		setChangeEvents: function(field, onchange) {
			var self = this;
			field.addEventListener('change', function(ev) {
				self.changed = true;
				if (typeof(onchange) == 'function')
					onchange(ev);
			});
		}
	});

	var UITextfield = UIElement.extend({
		render: function() {
			this.input = E('input', { 'type': 'text', 'class': 'cbi-input-text', 'id': this.options.id,
				'placeholder': this.options.placeholder || null, 'value': this.value != null ? this.value : '' });
			this.node = E('div', { 'id': this.options.id ? 'wrap.' + this.options.id : null }, [ this.input ]);
			this.setValidator(this.input);
			return this.node;
		},
		getValue: function() { return this.input.value; },
		setValue: function(v) { this.input.value = (v != null) ? v : ''; }
	});

	var UICheckbox = UIElement.extend({
		render: function() {
			this.input = E('input', { 'type': 'checkbox', 'id': this.options.id });
			this.input.checked = (this.value == this.options.value_enabled);
			this.node = E('div', { 'class': 'cbi-checkbox' }, [ this.input, E('label', { 'for': this.options.id }) ]);
			return this.node;
		},
		isChecked: function() { return this.input.checked; },
		getValue: function() { return this.input.checked ? this.options.value_enabled : this.options.value_disabled; }
	});

	var UISelect = UIElement.extend({
		render: function() {
			var self = this;
			this.input = E('select', { 'class': 'cbi-input-select', 'id': this.options.id }, this.options.choices.map(function(c) {
				var o = E('option', { 'value': c[0] }, [ c[1] ]);
				if (c[0] == (self.value != null ? self.value : ''))
					o.selected = true;
				return o;
			}));
			this.node = E('div', {}, [ this.input ]);
			return this.node;
		},
		getValue: function() { return this.input.value; }
	});

	var UIDynamicList = UIElement.extend({
		render: function() {
			var self = this;
			this.items = L.toArray(this.value).slice();
			this.list = E('div', { 'class': 'cbi-dynlist-items' });
			this.input = E('input', { 'type': 'text', 'class': 'cbi-input-text', 'id': this.options.id,
				'placeholder': this.options.placeholder || null });
			this.node = E('div', { 'class': 'cbi-dynlist' }, [ this.list,
				E('div', { 'class': 'add-item' }, [ this.input,
					E('button', { 'class': 'cbi-button cbi-button-add', 'click': function(ev) { ev.preventDefault(); self.addItem(); } }, [ '+' ]) ]) ]);
			this.input.addEventListener('keydown', function(ev) {
				if (ev.keyCode == 13) { ev.preventDefault(); self.addItem(); }
			});
			this.setValidator(this.input);
			this.input.addEventListener('blur', function() { if (self.input.value === '') self.resetValidity(); });
			this.redraw();
			return this.node;
		},
		resetValidity: function() {
			this.input.classList.remove('cbi-input-invalid');
			this.input.removeAttribute('data-tooltip');
			this.validState = true;
			this.input.dispatchEvent(new CustomEvent('validation-success', { bubbles: true }));
		},
		addItem: function() {
			var v = this.input.value.trim();
			if (v === '' || !this.triggerValidation())
				return;
			this.items.push(v);
			this.input.value = '';
			this.changed = true;
			this.redraw();
		},
		redraw: function() {
			var self = this;
			DOM.content(this.list, this.items.map(function(item, i) {
				return E('div', { 'class': 'item', 'data-value': item }, [ E('span', {}, [ item ]), ' ',
					E('span', { 'class': 'remove', 'title': _('Remove'), 'click': function() { self.items.splice(i, 1); self.changed = true; self.redraw(); } }, [ '\u00d7' ]) ]);
			}));
		},
		triggerValidation: function() {
			if (this.input.value === '') { this.resetValidity(); return true; }
			return this.validator();
		},
		getValue: function() { return this.items.slice(); }
	});

	var ui = Class.singleton({
		Textfield: UITextfield, Checkbox: UICheckbox, Select: UISelect, DynamicList: UIDynamicList,
		addNotification: function(title, children) {
			var classes = Array.prototype.slice.call(arguments, 2);
			var mc = document.getElementById('maincontent') || document.body;
			var msg = E('div', { 'class': 'alert-message fade-in' }, [
				E('div', { 'style': 'float:right' }, [ E('button', { 'class': 'btn', 'click': function(ev) {
					var n = ev.target.closest('.alert-message');
					n.parentNode.removeChild(n);
				} }, [ _('Dismiss') ]) ]),
				title ? E('h4', {}, [ title ]) : '', E('div', {}, children)
			]);
			classes.forEach(function(c) { msg.classList.add(c); });
			mc.insertBefore(msg, mc.firstChild);
			return msg;
		},
		showModal: function(title, children) {
			var dlg = document.getElementById('modal_overlay') || document.body.appendChild(
				E('div', { 'id': 'modal_overlay' }, [ E('div', { 'class': 'modal', 'role': 'dialog' }) ]));
			var modal = dlg.firstChild;
			DOM.content(modal, [ title ? E('h4', {}, [ title ]) : '' ].concat(children));
			document.body.classList.add('modal-overlay-active');
			return modal;
		},
		hideModal: function() { document.body.classList.remove('modal-overlay-active'); },
		createHandlerFn: function(ctx, fn) {
			if (typeof(fn) == 'string')
				fn = ctx[fn];
			if (typeof(fn) != 'function')
				return null;
			var args = Array.prototype.slice.call(arguments, 2);
			return function(ev) {
				var t = ev.currentTarget;
				DOM.addClass(t, 'spinning');
				t.disabled = true;
				Promise.resolve(fn.apply(ctx, args.concat([ ev ]))).finally(function() {
					DOM.removeClass(t, 'spinning');
					t.disabled = false;
				});
			};
		},
		changes: {
			apply: function(checked) {
				return uci.apply(10).then(function() {
					ui.addNotification(null, E('p', {}, [ _('Configuration changes applied.') ]), 'info');
				});
			}
		}
	});

	/* ---------- form ---------- */
	var AbstractElement = Class.extend({
		__init__: function(title, description) {
			this.title = title || '';
			this.description = description || '';
			this.children = [];
		},
		append: function(o) { this.children.push(o); }
	});

	var CBIMap = AbstractElement.extend({
		__init__: function(config, title, description) {
			this.super('__init__', [ title, description ]);
			this.config = config;
			this.data = uci;
		},
		section: function(cls) {
			if (!AbstractSection.isSubclass(cls))
				throw new TypeError('Class must be a descendent of CBIAbstractSection');
			var obj = cls.instantiate(this.varargs(arguments, 1, this));
			this.append(obj);
			return obj;
		},
		load: function() { return uci.load(this.config); },
		lookupOption: function(name, section_id) {
			for (var i = 0; i < this.children.length; i++) {
				var o = this.children[i].getOption(name);
				if (o)
					return [ o, section_id ];
			}
			return null;
		},
		renderContents: function() {
			var self = this;
			return Promise.all(this.children.map(function(s) { return s.render(); })).then(function(nodes) {
				return [ self.title ? E('h2', {}, [ self.title ]) : '',
					self.description ? E('div', { 'class': 'cbi-map-descr' }, [ self.description ]) : '' ].concat(nodes);
			});
		},
		render: function() {
			var self = this;
			return this.load().then(function() { return self.renderContents(); }).then(function(nodes) {
				self.root = E('div', { 'class': 'cbi-map', 'id': 'cbi-' + self.config }, nodes);
				DOM.bindClassInstance(self.root, self);
				return self.root;
			});
		},
		rerender: function() {
			var self = this;
			return this.renderContents().then(function(nodes) { DOM.content(self.root, nodes); });
		},
		parse: function() {
			var tasks = [];
			this.children.forEach(function(s) { tasks.push(s.parse()); });
			return Promise.all(tasks);
		},
		save: function(cb, silent) {
			var self = this;
			return this.parse().then(function() {
				if (typeof(cb) == 'function')
					cb();
				return uci.save();
			}).then(function() { return self.rerender(); }).catch(function(e) {
				if (!silent)
					ui.showModal(_('Save error'), [
						E('p', {}, [ _('An error occurred while saving the form:') ]),
						E('p', {}, [ E('em', { 'style': 'white-space:pre-wrap' }, [ e.message ]) ]),
						E('div', { 'class': 'right' }, [ E('button', { 'class': 'cbi-button', 'click': ui.hideModal }, [ _('Dismiss') ]) ])
					]);
				return Promise.reject(e);
			});
		},
		reset: function() { return this.rerender(); }
	});

	var AbstractSection = AbstractElement.extend({
		__init__: function(map, sectionType, title, description) {
			this.super('__init__', [ title, description ]);
			this.map = map;
			this.sectiontype = sectionType;
			this.anonymous = false;
			this.addremove = false;
		},
		option: function(cls, name, title, description) {
			var o = cls.instantiate([ this, name, title, description ]);
			this.append(o);
			return o;
		},
		getOption: function(name) {
			for (var i = 0; i < this.children.length; i++)
				if (this.children[i].option == name)
					return this.children[i];
			return null;
		},
		getUIElement: function(section_id, name) {
			var o = this.getOption(name);
			return o ? o.getUIElement(section_id) : null;
		},
		formvalue: function(section_id, name) {
			var rv = (arguments.length == 1) ? {} : null;
			for (var i = 0, o; (o = this.children[i]) != null; i++) {
				if (rv)
					rv[o.option] = o.formvalue(section_id);
				else if (o.option == name)
					return o.formvalue(section_id);
			}
			return rv;
		},
		cfgvalue: function(section_id, name) { return uci.get(this.map.config, section_id, name); },
		cfgsections: function() { return []; },
		parse: function() {
			var self = this, tasks = [];
			this.cfgsections().forEach(function(sid) {
				self.children.forEach(function(o) { tasks.push(o.parse(sid)); });
			});
			return Promise.all(tasks);
		},
		renderOptions: function(section_id) {
			return E('div', { 'class': 'cbi-section-node', 'id': 'cbi-%s-%s'.format(this.map.config, section_id) },
				this.children.map(function(o) { return o.render(section_id); }));
		},
		renderHead: function() {
			return [ this.title ? E('h3', {}, [ this.title ]) : '',
				this.description ? E('div', { 'class': 'cbi-section-descr' }, [ this.description ]) : '' ];
		}
	});

	var CBINamedSection = AbstractSection.extend({
		__init__: function(map, section_id, sectionType, title, description) {
			this.super('__init__', [ map, sectionType, title, description ]);
			this.section = section_id;
		},
		cfgsections: function() { return uci.get(this.map.config, this.section) ? [ this.section ] : []; },
		render: function() {
			var sid = this.section;
			var body = uci.get(this.map.config, sid) ? this.renderOptions(sid)
				: E('div', { 'class': 'cbi-section-node' }, [ E('em', {}, [ _('This section contains no values yet') ]) ]);
			return E('div', { 'class': 'cbi-section', 'id': 'cbi-%s-%s'.format(this.map.config, sid), 'data-section-id': sid },
				this.renderHead().concat([ body ]));
		}
	});

	var CBITypedSection = AbstractSection.extend({
		cfgsections: function() {
			return uci.sections(this.map.config, this.sectiontype).map(function(s) { return s['.name']; });
		},
		render: function() {
			var self = this, sids = this.cfgsections();
			var nodes = sids.map(function(sid) {
				return E('div', { 'class': 'cbi-section-node-wrap', 'data-section-id': sid }, [
					self.anonymous ? '' : E('h4', {}, [ sid ]),
					self.renderOptions(sid),
					self.addremove ? E('div', { 'class': 'cbi-section-remove right' }, [
						E('button', { 'class': 'cbi-button cbi-button-remove', 'click': function(ev) {
							ev.preventDefault();
							uci.remove(self.map.config, sid);
							return self.map.save(null, true);
						} }, [ _('Delete') ]) ]) : ''
				]);
			});
			if (!sids.length)
				nodes.push(E('em', { 'class': 'cbi-section-empty' }, [ _('This section contains no values yet') ]));
			if (this.addremove)
				nodes.push(E('div', { 'class': 'cbi-section-create' }, [
					E('button', { 'class': 'cbi-button cbi-button-add', 'title': _('Add'), 'click': function(ev) {
						ev.preventDefault();
						uci.add(self.map.config, self.sectiontype);
						return self.map.save(null, true);
					} }, [ _('Add') ]) ]));
			return E('div', { 'class': 'cbi-section', 'id': 'cbi-%s-%s'.format(this.map.config, this.sectiontype) },
				this.renderHead().concat(nodes));
		}
	});

	var AbstractValue = AbstractElement.extend({
		__init__: function(section, option, title, description) {
			this.super('__init__', [ title, description ]);
			this.section = section;
			this.map = section.map;
			this.option = option;
			this.rmempty = true;
			this.optional = false;
			this.default = null;
			this.placeholder = null;
			this.uiElements = {};
		},
		cbid: function(sid) { return 'cbid.%s.%s.%s'.format(this.map.config, sid, this.option); },
		cfgvalue: function(sid) { return uci.get(this.map.config, sid, this.option); },
		getUIElement: function(sid) { return this.uiElements[sid] || null; },
		validate: function(sid, value) { return true; },
		formvalue: function(sid) {
			var el = this.getUIElement(sid);
			return el ? el.getValue() : null;
		},
		isValid: function(sid) {
			var el = this.getUIElement(sid);
			return el ? el.triggerValidation() : true;
		},
		write: function(sid, value) { uci.set(this.map.config, sid, this.option, value); },
		remove: function(sid) { uci.unset(this.map.config, sid, this.option); },
		parse: function(sid) {
			var fval = this.formvalue(sid), cval = this.cfgvalue(sid);
			if (!this.isValid(sid)) {
				var title = String(this.title || this.option);
				return Promise.reject(new TypeError(_('Option "%s" contains an invalid input value.').format(title) + ' ' + this.getUIElement(sid).getValidationError()));
			}
			if (fval != null && fval !== '' && !(Array.isArray(fval) && !fval.length)) {
				if (JSON.stringify(cval) !== JSON.stringify(fval))
					this.write(sid, fval);
			}
			else if (cval != null) {
				this.remove(sid);
			}
			return Promise.resolve();
		},
		widgetOptions: function(sid) {
			return { id: this.cbid(sid), optional: this.optional || this.rmempty, placeholder: this.placeholder,
				validate: L.bind(this.validate, this, sid) };
		},
		renderWidget: function(sid, value) {
			return new ui.Textfield(value, this.widgetOptions(sid));
		},
		render: function(sid) {
			var cval = this.cfgvalue(sid), value = (cval != null) ? cval : this.default;
			var widget = this.renderWidget(sid, value), self = this;
			this.uiElements[sid] = widget;
			var node = widget.render();
			if (typeof(this.onchange) == 'function')
				widget.setChangeEvents(widget.input, function(ev) { self.onchange(ev, sid, widget.getValue()); });
			return E('div', { 'class': 'cbi-value', 'id': 'cbi-%s-%s-%s'.format(this.map.config, sid, this.option), 'data-name': this.option }, [
				E('label', { 'class': 'cbi-value-title', 'for': this.cbid(sid) }, [ this.title ]),
				E('div', { 'class': 'cbi-value-field' }, [ node,
					this.description ? E('div', { 'class': 'cbi-value-description' }, [ this.description ]) : '' ])
			]);
		}
	});

	var CBIValue = AbstractValue.extend({
		value: function(key, label) {
			(this.keylist = this.keylist || []).push([ String(key), label != null ? label : String(key) ]);
		}
	});

	var CBIFlagValue = CBIValue.extend({
		__init__: function() {
			this.super('__init__', arguments);
			this.enabled = '1';
			this.disabled = '0';
			this.default = this.disabled;
		},
		renderWidget: function(sid, value) {
			return new ui.Checkbox(value, { id: this.cbid(sid), value_enabled: this.enabled, value_disabled: this.disabled });
		},
		isValid: function() { return true; },
		formvalue: function(sid) {
			var el = this.getUIElement(sid);
			return el ? (el.isChecked() ? this.enabled : this.disabled) : null;
		},
		parse: function(sid) {
			/* as LuCI: the default value of an optional/rmempty flag is removed, not written */
			var fval = this.formvalue(sid), cval = this.cfgvalue(sid);
			if (fval == this.default && (this.optional || this.rmempty)) {
				if (cval != null)
					this.remove(sid);
			}
			else if (cval != fval) {
				this.write(sid, fval);
			}
			return Promise.resolve();
		}
	});

	var CBIListValue = CBIValue.extend({
		renderWidget: function(sid, value) {
			var choices = (this.keylist || []).slice();
			return new ui.Select(value, { id: this.cbid(sid), choices: choices });
		},
		isValid: function() { return true; }
	});

	var CBIDynamicList = CBIValue.extend({
		renderWidget: function(sid, value) {
			return new ui.DynamicList(value, this.widgetOptions(sid));
		}
	});

	var form = Class.singleton({
		Map: CBIMap, AbstractSection: AbstractSection, NamedSection: CBINamedSection, TypedSection: CBITypedSection,
		AbstractValue: AbstractValue, Value: CBIValue, Flag: CBIFlagValue, ListValue: CBIListValue, DynamicList: CBIDynamicList
	});

	/* ---------- view ---------- */
	var View = Class.extend({
		__init__: function() {
			var vp = document.getElementById('view'), self = this;
			DOM.content(vp, E('div', { 'class': 'spinning' }, [ _('Loading view…') ]));
			return Promise.resolve(this.load()).then(L.bind(this.render, this)).then(function(nodes) {
				DOM.content(vp, nodes);
				DOM.append(vp, self.addFooter());
				document.body.setAttribute('data-view-ready', '1');
			}).catch(L.error);
		},
		load: function() {},
		render: function() {},
		handleSave: function(ev) {
			var tasks = [];
			document.getElementById('maincontent').querySelectorAll('.cbi-map').forEach(function(map) {
				tasks.push(DOM.callClassMethod(map, 'save'));
			});
			return Promise.all(tasks);
		},
		handleSaveApply: function(ev) {
			return this.handleSave(ev).then(function() { return ui.changes.apply(true); });
		},
		handleReset: function(ev) {
			var tasks = [];
			document.getElementById('maincontent').querySelectorAll('.cbi-map').forEach(function(map) {
				tasks.push(DOM.callClassMethod(map, 'reset'));
			});
			return Promise.all(tasks);
		},
		addFooter: function() {
			var footer = E([]), self = this;
			var has = this.handleSaveApply || this.handleSave || this.handleReset;
			if (has && document.getElementById('maincontent').querySelector('.cbi-map')) {
				footer.appendChild(E('div', { 'class': 'cbi-page-actions' }, [
					this.handleSaveApply ? E('button', { 'class': 'cbi-button cbi-button-apply', 'click': ui.createHandlerFn(this, 'handleSaveApply') }, [ _('Save & Apply') ]) : '', ' ',
					this.handleSave ? E('button', { 'class': 'cbi-button cbi-button-save', 'click': ui.createHandlerFn(this, 'handleSave') }, [ _('Save') ]) : '', ' ',
					this.handleReset ? E('button', { 'class': 'cbi-button cbi-button-reset', 'click': ui.createHandlerFn(this, 'handleReset') }, [ _('Reset') ]) : ''
				]));
			}
			return footer;
		}
	});

	/* ---------- L ---------- */
	var classes = { baseclass: Class, dom: DOM, poll: Poll, request: Request, view: View, rpc: rpc, uci: uci, ui: ui, form: form };

	var LuCI = Class.extend({
		__init__: function(env) {
			this.env = env;
		},
		bind: function(fn, self) {
			return Function.prototype.bind.apply(fn, [ self ].concat(Array.prototype.slice.call(arguments, 2)));
		},
		url: function() {
			return [ this.env.scriptname || '/cgi-bin/luci' ].concat(Array.prototype.slice.call(arguments)).join('/');
		},
		isObject: function(v) { return (v != null && typeof(v) == 'object'); },
		toArray: function(v) {
			if (v == null) return [];
			if (Array.isArray(v)) return v;
			if (typeof(v) == 'object') return [ v ];
			var s = String(v).trim();
			return s == '' ? [] : s.split(/\s+/);
		},
		resolveDefault: function(value, defvalue) {
			return Promise.resolve(value).catch(function() { return defvalue; });
		},
		raise: function(type, fmt) {
			var e = new Error(fmt ? String.prototype.format.apply(fmt, Array.prototype.slice.call(arguments, 2)) : 'Unspecified error');
			e.name = type || 'Error';
			throw e;
		},
		error: function(e) {
			var mc = document.getElementById('view') || document.body;
			DOM.content(mc, E('pre', { 'class': 'alert-message error', 'id': 'luci-runtime-error' }, [ String(e && e.stack || e) ]));
			window.__luciErrors = (window.__luciErrors || []).concat([ String(e) ]);
			throw e;
		},
		require: function(name, from) {
			var self = this;
			if (classes[name] != null)
				return Promise.resolve(classes[name]);
			from = from || [];
			if (from.indexOf(name) != -1)
				return Promise.reject(new Error('Circular dependency: ' + name));
			var url = '%s/%s.js'.format(this.env.base_url, name.replace(/\./g, '/'));
			classes[name] = window.fetch(url, { cache: 'no-store' }).then(function(res) {
				if (!res.ok)
					throw new Error('HTTP error %d while loading class file "%s"'.format(res.status, url));
				return res.text();
			}).then(function(source) {
				/* leading string statements: 'use strict' and 'require x [as y]' */
				var deps = [], names = [], re = /^\s*(?:\/\/[^\n]*\n|\/\*[\s\S]*?\*\/|(['"])([^'"]*)\1\s*;)/, m, rest = source;
				while ((m = re.exec(rest)) != null) {
					rest = rest.substr(m[0].length);
					if (m[2] == null)
						continue;
					var r = /^require[ \t]+(\S+)(?:[ \t]+as[ \t]+([a-zA-Z_]\S*))?$/.exec(m[2]);
					if (r) {
						deps.push(self.require(r[1], [ name ].concat(from)));
						names.push(r[2] || r[1].replace(/[^a-zA-Z0-9_]/g, '_'));
					}
					else if (!/^use[ \t]+strict$/.test(m[2]))
						break;
				}
				return Promise.all(deps).then(function(instances) {
					var factory = new Function([ 'window', 'document', 'L' ].concat(names).join(','), source + '\n//# sourceURL=' + url);
					var cls = factory.apply(factory, [ window, document, self ].concat(instances));
					if (!Class.isSubclass(cls))
						throw new TypeError('"%s" factory yields invalid constructor'.format(name));
					var instance = new cls();
					classes[name] = instance;
					return instance;
				});
			});
			return classes[name];
		}
	});

	var env = window.LUCI_ENV || {};
	var L = window.L = new LuCI(Object.assign({ base_url: '/luci-static/resources', pollinterval: 5,
		sessionid: '00000000000000000000000000000000', ubuspath: '/ubus/', lang: 'en' }, env));
	L.dom = DOM;
	L.ui = ui;
	L.Poll = Poll;
	L.Class = Class;

	/* boot: translations first (LuCI serves them with the page), then the view */
	document.addEventListener('DOMContentLoaded', function() {
		window.fetch('/i18n/' + L.env.lang + '.json').then(function(r) { return r.ok ? r.json() : {}; }).then(function(tr) {
			catalog = tr || {};
			Poll.start();
			if (L.env.include) {
				/* Status -> Overview: LuCI loads each include, then calls load() and render() */
				return L.require('view.status.include.' + L.env.include).then(function(inc) {
					return Promise.resolve(inc.load()).then(function(data) { return inc.render(data); }).then(function(node) {
						var vp = document.getElementById('view');
						DOM.content(vp, node ? E('div', { 'class': 'cbi-section', 'id': 'status-include' }, [ E('h3', {}, [ inc.title ]), node ]) : '');
						document.body.setAttribute('data-view-ready', '1');
					});
				});
			}
			return L.require('view.' + L.env.view.replace(/\//g, '.'));
		}).catch(function(e) { try { L.error(e); } catch (x) {} });
	});
})(window, document);
