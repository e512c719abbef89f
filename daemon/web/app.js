/* sluice: the technicians' page. Reads the daemon's JSON (/api/status, /api/devices/ID,
   /api/alerts) and asks it to probe (/api/probe); builds every element with the DOM, never
   from HTML text, so a device's name cannot become markup. No library: the box is
   offline and the page must stay small. */
'use strict';
(function () {
	const T = {
		zh: {
			'nav.overview': '概览', 'nav.alerts': '告警', 'nav.probe': '探测', 'nav.logout': '退出',
			other: 'English', loading: '正在加载…', unreachable: '连不上网关：显示的是 {0} 的数据',
			gateway: '网关', up: '运行 {0}', version: '版本 {0}',
			uplink: '上行（MQTT）', connected: '已连接', disconnected: '未连接', since: '自 {0}',
			backlog: '积压', rows: '{0} 条', oldest: '最早 {0}', dropped: '丢弃', not_stored: '未存',
			set_aside: '搁置', store_error: '存储出错', firing: '正在告警', none_firing: '没有正在告警的',
			bus: '总线', devices: '设备', last_poll: '轮询 {0}', never: '从未', last_error: '错误：{0}',
			values_at: '数值 {0}', online: '在线', offline: '离线', unknown: '未知', 'not polled': '未轮询',
			comms: '通信中断', state_firing: '告警', state_resolved: '已解除', state_pending: '待定',
			blue: '蓝色', yellow: '黄色', orange: '橙色', red: '红色', pending: '待定', resolved: '已解除',
			ago_now: '刚刚', ago_s: '{0} 秒前', ago_m: '{0} 分钟前', ago_h: '{0} 小时前', ago_d: '{0} 天前',
			dur_s: '{0} 秒', dur_m: '{0} 分钟', dur_h: '{0} 小时', dur_d: '{0} 天',
			on: '开', off: '关', point: '测点', value: '数值', unit: '单位', where: '寄存器', type: '类型',
			registers: '原始寄存器', read_regs: '读取寄存器', reading: '正在读取…', history: '近 {0} 小时',
			no_history: '存储里还没有这台设备的读数', history_error: '读不到历史：{0}',
			readings: '{0} 个读数', active: '当前告警', recent: '最近的变化', time: '时间', alert: '告警',
			state: '状态', severity: '等级', message: '说明', no_alerts: '没有', probe_title: '探测寄存器',
			probe_note: '经由 sluiced 在两次轮询之间读取：只读，不写。',
			unit_id: '站号', table: '表', address: '地址（从 0 起）', count: '数量', timeout: '超时 ms',
			read: '读取', via: '经由 sluiced（总线 {0}，在两次轮询之间）', device_state: 'sluiced 认为设备 {0}：{1}',
			wire: '地址', one_based: '从 1 起', around: '+ 表示读了所问地址的前后：手册从 1 编号时，地址 N 是第 N+1 个寄存器。',
			pairs: '每个寄存器与下一个组成的 32 位数', quads: '{0}..{1} 组成的 64 位数',
			no_device: '没有这台设备', back: '返回概览', failed: '失败：{0}', notfound: '找不到：{0}',
			holding: '保持寄存器', input: '输入寄存器', coil: '线圈', discrete: '离散输入', device: '设备',
			'timeout': '超时', 'connection failed': '连接失败', 'connection closed': '连接被关闭',
			'malformed reply': '应答格式错误', 'CRC error': 'CRC 校验错误', 'reply from another unit': '别的站号应答',
			'illegal function': '非法功能码', 'illegal data address': '非法数据地址', 'illegal data value': '非法数据值',
			'server device failure': '从站设备故障', 'gateway path unavailable': '网关路径不可用',
			'gateway target failed to respond': '网关后的设备没有应答', 'i/o error': '读写错误'
		},
		en: {
			'nav.overview': 'Overview', 'nav.alerts': 'Alerts', 'nav.probe': 'Probe', 'nav.logout': 'Log out',
			other: '中文', loading: 'Loading…', unreachable: 'The gateway does not answer: showing data of {0}',
			gateway: 'Gateway', up: 'up {0}', version: 'version {0}',
			uplink: 'Uplink (MQTT)', connected: 'connected', disconnected: 'not connected', since: 'since {0}',
			backlog: 'Backlog', rows: '{0} rows', oldest: 'oldest {0}', dropped: 'dropped', not_stored: 'not stored',
			set_aside: 'set aside', store_error: 'Store error', firing: 'Firing', none_firing: 'No alert is firing',
			bus: 'Bus', devices: 'Devices', last_poll: 'polled {0}', never: 'never', last_error: 'error: {0}',
			values_at: 'values of {0}', online: 'online', offline: 'offline', unknown: 'unknown', 'not polled': 'not polled',
			comms: 'not answering', state_firing: 'firing', state_resolved: 'resolved',
			state_pending: 'pending', blue: 'blue', yellow: 'yellow', orange: 'orange', red: 'red', pending: 'pending', resolved: 'resolved',
			ago_now: 'just now', ago_s: '{0} s ago', ago_m: '{0} min ago', ago_h: '{0} h ago', ago_d: '{0} d ago',
			dur_s: '{0} s', dur_m: '{0} min', dur_h: '{0} h', dur_d: '{0} d',
			on: 'on', off: 'off', point: 'Point', value: 'Value', unit: 'Unit', where: 'Register', type: 'Type',
			registers: 'Raw registers', read_regs: 'Read the registers', reading: 'Reading…', history: 'last {0} hours',
			no_history: 'No reading of this device is stored yet', history_error: 'No history: {0}',
			readings: '{0} readings', active: 'Active', recent: 'Recent transitions', time: 'Time', alert: 'Alert',
			state: 'State', severity: 'Grade', message: 'Message', no_alerts: 'none', probe_title: 'Probe registers',
			probe_note: 'Read through sluiced between two of its polls: reads only, never writes.',
			unit_id: 'Unit', table: 'Table', address: 'Address (from 0)', count: 'Count', timeout: 'Timeout ms',
			read: 'Read', via: 'via sluiced (bus {0}, between its polls)', device_state: 'sluiced has device {0}: {1}',
			wire: 'wire', one_based: '1-based', around: '+ read around the address asked for: a manual that numbers registers from 1 calls wire address N register N+1.',
			pairs: '32-bit values from each register and the next', quads: '64-bit values from wire {0}..{1}',
			no_device: 'No such device', back: 'Back to the overview', failed: 'Failed: {0}', notfound: 'Not found: {0}',
			holding: 'holding', input: 'input', coil: 'coil', discrete: 'discrete', device: 'Device'
		}
	};
	let lang = localStorage.getItem('sluice.lang') === 'en' ? 'en' : 'zh';
	function t(k) {
		const a = arguments;
		const s = T[lang][k] !== undefined ? T[lang][k] : (T.en[k] !== undefined ? T.en[k] : k);
		return String(s).replace(/\{(\d)\}/g, (m, i) => a[+i + 1]);
	}

	/* el('div', {class: 'x'}, child, 'text', ...): no HTML text is ever parsed */
	function el(tag, attrs) {
		const e = document.createElement(tag);
		for (const k in attrs || {})
			if (attrs[k] !== undefined && attrs[k] !== null && attrs[k] !== false)
				e.setAttribute(k, attrs[k] === true ? '' : attrs[k]);
		for (let i = 2; i < arguments.length; i++) {
			const c = arguments[i];
			if (c === null || c === undefined || c === false)
				continue;
			if (Array.isArray(c))
				c.forEach(x => x && e.append(x));
			else
				e.append(c instanceof Node ? c : String(c));
		}
		return e;
	}
	const SVG = 'http://www.w3.org/2000/svg';
	function sv(tag, attrs, text) {
		const e = document.createElementNS(SVG, tag);
		for (const k in attrs)
			e.setAttribute(k, attrs[k]);
		if (text !== undefined)
			e.textContent = text;
		return e;
	}

	let session = { csrf: '', login: false };
	let status = null;         /* the last /api/status */
	let offset = 0;            /* the box's clock minus this one's */
	let timer = 0, gen = 0;
	const regs = {};           /* device id -> the last register read of the page */

	function boxNow() { return Date.now() + offset; }
	function ago(ms) {
		if (!ms)
			return t('never');
		const s = Math.max(0, Math.round((boxNow() - ms) / 1000));
		if (s < 3) return t('ago_now');
		if (s < 60) return t('ago_s', s);
		if (s < 3600) return t('ago_m', Math.floor(s / 60));
		if (s < 86400) return t('ago_h', Math.floor(s / 3600));
		return t('ago_d', Math.floor(s / 86400));
	}
	function dur(s) {
		if (s < 60) return t('dur_s', s);
		if (s < 3600) return t('dur_m', Math.floor(s / 60));
		if (s < 86400) return t('dur_h', Math.floor(s / 3600));
		return t('dur_d', Math.floor(s / 86400));
	}
	/* a time of day in the gateway's own time zone */
	function clock(ms, withDate) {
		if (!ms)
			return '—';
		const o = { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false };
		if (withDate) { o.month = '2-digit'; o.day = '2-digit'; }
		try {
			o.timeZone = status && status.gateway.timezone || undefined;
			return new Date(ms).toLocaleString(lang === 'zh' ? 'zh-CN' : 'en-GB', o);
		} catch (e) {
			delete o.timeZone;
			return new Date(ms).toLocaleString(undefined, o);
		}
	}
	function num(v) {
		if (typeof v === 'boolean')
			return t(v ? 'on' : 'off');
		if (typeof v !== 'number')
			return v === null ? '—' : String(v);
		if (Number.isInteger(v) || Math.abs(v) >= 1e6)
			return String(Math.round(v));
		/* seven digits: a totalizer keeps its decimals, a noisy float loses its tail */
		return String(parseFloat(v.toPrecision(7)));
	}
	function err(s) { return T.zh[s] && lang === 'zh' ? t(s) : s; }
	function badge(cls, text) { return el('span', { class: 'badge ' + cls }, text); }
	function stateBadge(s) { return badge('st-' + s.replace(' ', '-'), t(s)); }
	function sevBadge(s) { return badge('sev-' + (s || 'none'), s ? t(s) : '—'); }

	/* ---- the daemon ---- */

	async function api(path, opts) {
		const o = Object.assign({ credentials: 'same-origin', cache: 'no-store' }, opts || {});
		const r = await fetch(path, o);
		if (r.status === 401) {
			location.href = '/login';
			throw new Error('login');
		}
		let body = null;
		try { body = await r.json(); } catch (e) { body = null; }
		return { status: r.status, ok: r.ok, body: body };
	}

	function banner(text) {
		const b = document.getElementById('banner');
		if (b)
			b.remove();
		if (text)
			document.getElementById('main').prepend(el('div', { id: 'banner', class: 'banner' }, text));
	}

	/* ---- pages ---- */

	function devName(id) {
		const d = status && status.devices.find(x => x.id === id);
		return d && d.name || id;
	}
	/* what people call the alert: the rule's name, or a device's name for its comms alert */
	function alertName(a) {
		if (a.name)
			return a.name;
		if (a.device || /^comms-/.test(a.rule))
			return devName(a.device || a.rule.slice(6)) + ' · ' + t('comms');
		return a.rule + '/' + a.check;
	}
	function alertCard(a) {
		const title = alertName(a);
		return el('div', { class: 'card alert sev-' + a.severity + '-l' },
			el('div', { class: 'row' }, sevBadge(a.severity),
				a.state === 'pending' ? badge('st-unknown', t('pending')) : null,
				el('strong', { class: 'grow' }, title),
				el('span', { class: 'muted small' }, clock(a.since, true) + ' · ' + ago(a.since))),
			el('div', null, a.message),
			el('div', { class: 'muted small' }, a.rule + '/' + a.check),
			a.device ? el('a', { href: '#/device/' + a.device, class: 'small' }, a.device) : null);
	}

	function deviceCard(d) {
		const stale = d.state === 'offline';
		const name = d.name || d.id;
		return el('a', { class: 'card dev ' + d.state.replace(' ', '-'), href: '#/device/' + d.id,
			'data-device': d.id },
		el('div', { class: 'row' }, el('span', { class: 'name grow' }, name), stateBadge(d.state)),
		el('div', { class: 'muted small' }, (d.name ? d.id + ' · ' : '') + t('last_poll', ago(d.last_poll)),
			d.last_error && d.state !== 'online' ? el('span', { class: 'bad' }, ' · ' + t('last_error', err(d.last_error))) : null),
		/* a device that answers nothing: its error once, not once per point */
		d.points.length && d.points.every(p => p.error) ? null :
			el('div', { class: 'vals' + (stale ? ' stale' : '') }, d.points.map(p =>
				el('div', { class: 'val' + (p.error ? ' err' : '') },
					el('span', { class: 'k' }, p.name),
					el('span', { class: 'v' }, p.error ? err(p.error) : (p.value === undefined ? '—' : num(p.value))),
					p.unit && !p.error ? el('span', { class: 'u' }, p.unit) : null))));
	}

	function renderOverview(st) {
		const u = st.uplink, g = st.gateway;
		const firing = st.alerts || [];
		const out = [];
		out.push(el('div', { class: 'card' },
			el('div', { class: 'row' }, el('strong', { class: 'grow' }, t('gateway') + ' ' + (g.name || g.id)),
				el('span', { class: 'muted small' }, g.id + ' · ' + t('up', dur(g.uptime_s)) + ' · ' + t('version', g.version))),
			el('div', { class: 'row', id: 'uplink' },
				el('span', null, t('uplink')),
				el('strong', { class: u.connected ? 'ok' : 'bad' }, t(u.connected ? 'connected' : 'disconnected')),
				el('span', { class: 'muted small' }, u.host + ':' + u.port + (u.since ? ' · ' + t('since', ago(u.since)) : ''))),
			u.error ? el('div', { class: 'bad small' }, u.error) : null,
			el('div', { class: 'row small' },
				el('span', null, t('backlog') + ' ', el('strong', { id: 'backlog' }, t('rows', u.backlog))),
				u.backlog ? el('span', { class: 'muted' }, t('oldest', ago(u.backlog_oldest))) : null,
				el('span', { class: u.dropped ? 'bad' : 'muted' }, t('dropped') + ' ' + u.dropped),
				el('span', { class: u.not_stored ? 'bad' : 'muted' }, t('not_stored') + ' ' + u.not_stored),
				el('span', { class: u.set_aside ? 'bad' : 'muted' }, t('set_aside') + ' ' + u.set_aside)),
			u.store_error ? el('div', { class: 'bad small' }, t('store_error') + ': ' + u.store_error) : null));
		out.push(el('h2', null, t('firing') + ' (' + firing.length + ')'));
		out.push(firing.length ? el('div', { id: 'firing' }, firing.map(alertCard))
			: el('p', { class: 'muted', id: 'firing' }, t('none_firing')));
		st.buses.forEach(b => {
			const devs = st.devices.filter(d => d.bus === b.id);
			if (!devs.length)
				return;
			const on = devs.filter(d => d.state === 'online').length;
			out.push(el('h2', null, t('bus') + ' ' + b.id + ' ',
				el('span', { class: 'muted small' }, b.kind + ' ' + b.address + ' · ' + on + '/' + devs.length)));
			devs.forEach(d => out.push(deviceCard(d)));
		});
		return out;
	}

	/* A point's history as an SVG line: its lowest and highest value, and the hours. */
	function plot(s, from, to) {
		const W = 360, H = 130, L = 54, R = 6, TOP = 8, B = 18;
		const svg = sv('svg', { viewBox: '0 0 ' + W + ' ' + H, class: 'plot', role: 'img',
			'data-point': s.point, 'aria-label': s.point });
		let lo = Math.min.apply(null, s.v), hi = Math.max.apply(null, s.v);
		if (!(hi > lo)) { lo -= 1; hi += 1; }
		const x = ts => L + (ts - from) / Math.max(1, to - from) * (W - L - R);
		const y = v => TOP + (hi - v) / (hi - lo) * (H - TOP - B);
		svg.append(sv('line', { class: 'ax', x1: L, y1: H - B, x2: W - R, y2: H - B }));
		svg.append(sv('line', { class: 'ax', x1: L, y1: TOP, x2: L, y2: H - B }));
		svg.append(sv('text', { x: L - 4, y: TOP + 9, 'text-anchor': 'end' }, num(hi)));
		svg.append(sv('text', { x: L - 4, y: H - B, 'text-anchor': 'end' }, num(lo)));
		svg.append(sv('text', { x: L, y: H - 5 }, clock(from)));
		svg.append(sv('text', { x: W - R, y: H - 5, 'text-anchor': 'end' }, clock(to)));
		let d = '';
		for (let i = 0; i < s.t.length; i++)
			d += (i ? 'L' : 'M') + x(s.t[i]).toFixed(1) + ' ' + y(s.v[i]).toFixed(1);
		if (s.t.length === 1)
			d += 'h2';
		svg.append(sv('path', { class: 'ln', d: d }));
		return svg;
	}

	function regsText(rd) {
		if (!rd)
			return '';
		if (rd.error)
			return err(rd.error);
		const v = rd.registers || rd.bits || [];
		return v.map(x => rd.bits ? String(x) : hex(x)).join(' ');
	}

	function renderDevice(res) {
		const d = res.device, h = res.history;
		const out = [];
		const rr = regs[d.id];
		const byName = {};
		if (rr && rr.body && rr.body.points && rr.body.probe && rr.body.probe.reads)
			rr.body.points.forEach((n, i) => { byName[n] = rr.body.probe.reads[i]; });
		out.push(el('h1', null, (d.name || d.id) + ' ', stateBadge(d.state)));
		out.push(el('div', { class: 'card small' },
			el('div', null, d.id + ' · ' + t('bus') + ' ' + d.bus + ' · ' + t('unit_id') + ' ' + d.unit +
				(d.profile ? ' · ' + d.profile : '')),
			el('div', null, t('last_poll', ago(d.last_poll)) + (d.values_ts ? ' · ' + t('values_at', clock(d.values_ts)) : '')),
			d.last_error ? el('div', { class: d.state === 'online' ? 'muted' : 'bad' }, t('last_error', err(d.last_error))) : null));
		const btn = el('button', { class: 'act', type: 'button', id: 'read-regs' }, t('read_regs'));
		btn.addEventListener('click', () => readRegisters(d.id, btn));
		out.push(el('div', { class: 'card scroll' },
			el('table', { id: 'points' },
				el('tr', null, el('th', null, t('point')), el('th', { class: 'num' }, t('value')), el('th', null, t('unit')),
					el('th', null, t('where')), el('th', null, t('type')), el('th', null, t('registers'))),
				d.points.map(p => el('tr', null,
					el('td', null, p.name),
					el('td', { class: 'num' + (p.error ? ' bad' : '') }, p.error ? err(p.error) : (p.value === undefined ? '—' : num(p.value))),
					el('td', null, p.unit || ''),
					el('td', { class: 'mono' }, t(p.table) + ' ' + p.address + (p.bit !== undefined ? '.' + p.bit : '')),
					el('td', { class: 'mono' }, p.type + (p.order ? ' ' + p.order : '') + (p.scale !== 1 ? ' ×' + p.scale : '')),
					el('td', { class: 'mono regs' }, regsText(byName[p.name]))))),
			el('div', { style: false }, btn),
			rr && rr.error ? el('div', { class: 'bad' }, rr.error) : null,
			rr && rr.body && rr.body.probe && !rr.body.probe.ok ? el('div', { class: 'bad' }, t('failed', rr.body.probe.message)) : null));
		out.push(el('h2', null, t('history', 3)));
		if (!h)
			out.push(el('p', { class: 'bad' }, t('history_error', res.history_error || '?')));
		else if (!h.series.length)
			out.push(el('p', { class: 'muted' }, t('no_history')));
		else {
			const units = {};
			d.points.forEach(p => { units[p.name] = p.unit; });
			/* from the first reading kept: a device added an hour ago fills the plot */
			const from = Math.max(h.from, Math.min.apply(null, h.series.map(s => s.t[0])));
			out.push(el('p', { class: 'muted small' }, t('readings', h.readings) + ' · ' + clock(from, true) + ' – ' + clock(h.to)));
			h.series.forEach(s => out.push(el('div', { class: 'card' },
				el('div', { class: 'row' }, el('strong', { class: 'grow' }, s.point), el('span', { class: 'muted small' }, units[s.point] || '')),
				plot(s, from, h.to))));
		}
		return out;
	}

	async function readRegisters(id, btn) {
		btn.disabled = true;
		btn.textContent = t('reading');
		try {
			const r = await api('/api/probe', post({ device: id }));
			regs[id] = r.ok || r.body && r.body.probe ? { body: r.body } :
				{ error: t('failed', r.body && r.body.message || r.status) };
		} catch (e) {
			regs[id] = { error: t('failed', e.message) };
		}
		show();
	}

	function renderAlerts(a) {
		const out = [el('h2', null, t('active') + ' (' + a.active.length + ')')];
		out.push(a.active.length ? el('div', { id: 'active' }, a.active.map(alertCard)) : el('p', { class: 'muted' }, t('no_alerts')));
		out.push(el('h2', null, t('recent')));
		if (!a.recent)
			out.push(el('p', { class: 'bad' }, t('history_error', a.history_error || '?')));
		else
			out.push(el('div', { class: 'card scroll' }, el('table', { id: 'recent' },
				el('tr', null, el('th', null, t('time')), el('th', null, t('alert')), el('th', null, t('state')),
					el('th', null, t('severity')), el('th', { class: 'num' }, t('value')), el('th', null, t('message'))),
				a.recent.map(r => el('tr', null,
					el('td', null, clock(r.ts, true)),
					el('td', null, alertName(r)),
					el('td', null, t('state_' + r.state)),
					el('td', null, sevBadge(r.severity)),
					el('td', { class: 'num' }, r.value === null || r.value === undefined ? '—' : num(r.value) + (r.unit ? ' ' + r.unit : '')),
					el('td', null, r.message))))));
		return out;
	}

	/* ---- probe: every order, as sluicectl probe prints them ---- */

	function hex(v) { return ('000' + v.toString(16).toUpperCase()).slice(-4); }
	function swap(v) { return ((v & 0xff) << 8) | (v >> 8); }
	const ORD = ['ABCD', 'CDAB', 'BADC', 'DCBA'];
	function pair(a, b, o) {
		if (o >= 2) { a = swap(a); b = swap(b); }
		return (o === 1 || o === 3) ? ((b << 16) | a) >>> 0 : ((a << 16) | b) >>> 0;
	}
	function f32(u) {
		const dv = new DataView(new ArrayBuffer(4));
		dv.setUint32(0, u);
		const f = dv.getFloat32(0);
		if (isNaN(f)) return 'nan';
		for (let p = 1; p <= 9; p++) {
			const s = f.toPrecision(p);
			if (Math.fround(parseFloat(s)) === f)
				return String(parseFloat(s));
		}
		return String(f);
	}
	/* the four registers in one of the 64-bit orders, as 8 bytes */
	function quad(r, o) {
		const w = (o === 1 || o === 3) ? [r[3], r[2], r[1], r[0]] : r.slice(0, 4);
		const dv = new DataView(new ArrayBuffer(8));
		w.forEach((x, i) => dv.setUint16(2 * i, o >= 2 ? swap(x) : x));
		return dv;
	}

	function renderProbeResult(q, res) {
		const out = [];
		const p = res.body && res.body.probe;
		if (!p)
			return [el('p', { class: 'bad' }, t('failed', res.body && res.body.message || res.status))];
		if (!p.ok)
			return [el('p', { class: 'bad' }, t('failed', p.message))];
		out.push(el('p', { class: 'muted small' }, t('via', p.bus)));
		if (p.device)
			out.push(el('p', { class: 'small' }, t('device_state', p.device.id, t(p.device.state)) +
				(p.device.last_error ? ' (' + err(p.device.last_error) + ')' : '')));
		const rd = p.reads[0];
		if (rd.error) {
			out.push(el('p', { class: 'bad', id: 'probe-error' }, t('failed', err(rd.error))));
			return out;
		}
		const lo = rd.address, v = rd.registers || rd.bits;
		const asked = a => a >= q.address && a < q.address + q.count;
		const bits = !!rd.bits;
		out.push(el('div', { class: 'card scroll' }, el('table', { id: 'probe-regs' },
			el('tr', null, el('th', null, ''), el('th', { class: 'num' }, t('wire')), el('th', { class: 'num' }, t('one_based')),
				bits ? el('th', { class: 'num' }, t('value')) : [el('th', null, 'hex'), el('th', { class: 'num' }, 'uint16'), el('th', { class: 'num' }, 'int16')]),
			v.map((x, i) => el('tr', { class: asked(lo + i) ? '' : 'around' },
				el('td', null, asked(lo + i) ? '' : '+'), el('td', { class: 'num' }, lo + i), el('td', { class: 'num' }, lo + i + 1),
				bits ? el('td', { class: 'num' }, x) : [el('td', { class: 'mono' }, hex(x)), el('td', { class: 'num' }, x),
					el('td', { class: 'num' }, x > 32767 ? x - 65536 : x)])))));
		if (!bits && v.length >= 2) {
			out.push(el('h2', null, t('pairs')));
			const rows = [];
			for (let i = 0; i + 1 < v.length; i++) {
				const u = [0, 1, 2, 3].map(o => pair(v[i], v[i + 1], o));
				rows.push(el('tr', { class: asked(lo + i) ? '' : 'around' },
					el('td', { class: 'num' }, lo + i), el('td', { class: 'mono' }, hex(v[i]) + ' ' + hex(v[i + 1])),
					u.map(x => el('td', { class: 'num' }, f32(x))),
					el('td', { class: 'num' }, u[0]), el('td', { class: 'num' }, u[1]),
					el('td', { class: 'num' }, u[0] | 0), el('td', { class: 'num' }, u[1] | 0)));
			}
			out.push(el('div', { class: 'card scroll' }, el('table', { id: 'probe-pairs' },
				el('tr', null, el('th', { class: 'num' }, t('wire')), el('th', null, 'regs'),
					ORD.map(o => el('th', { class: 'num' }, 'float32 ' + o)),
					el('th', { class: 'num' }, 'uint32 ABCD'), el('th', { class: 'num' }, 'uint32 CDAB'),
					el('th', { class: 'num' }, 'int32 ABCD'), el('th', { class: 'num' }, 'int32 CDAB')), rows)));
		}
		if (!bits && q.count === 4) {
			const k = q.address - lo, r4 = v.slice(k, k + 4);
			const O8 = ['ABCDEFGH', 'GHEFCDAB', 'BADCFEHG', 'HGFEDCBA'];
			out.push(el('h2', null, t('quads', q.address, q.address + 3)));
			out.push(el('div', { class: 'card scroll' }, el('table', { id: 'probe-quads' },
				el('tr', null, el('th', null, 'regs'), O8.map(o => el('th', { class: 'num' }, 'float64 ' + o)),
					el('th', { class: 'num' }, 'uint64 ABCDEFGH'), el('th', { class: 'num' }, 'uint64 GHEFCDAB')),
				el('tr', null, el('td', { class: 'mono' }, r4.map(hex).join(' ')),
					O8.map((o, i) => el('td', { class: 'num' }, String(quad(r4, i).getFloat64(0)))),
					el('td', { class: 'num' }, String(quad(r4, 0).getBigUint64(0))),
					el('td', { class: 'num' }, String(quad(r4, 1).getBigUint64(0)))))));
		}
		if (lo < q.address || lo + v.length > q.address + q.count)
			out.push(el('p', { class: 'muted small' }, t('around')));
		return out;
	}

	let probeLast = null;      /* {q, res}: shown again when the page is drawn again */

	function renderProbe() {
		const buses = status ? status.buses : [];
		const f = el('form', { class: 'probe', id: 'probe-form' },
			el('div', null, el('label', { for: 'p-bus' }, t('bus')),
				el('select', { id: 'p-bus', name: 'bus' }, buses.map(b => el('option', { value: b.id }, b.id + ' (' + b.address + ')')))),
			el('div', null, el('label', { for: 'p-unit' }, t('unit_id')), el('input', { id: 'p-unit', name: 'unit', type: 'number', min: 0, max: 255, value: 1 })),
			el('div', null, el('label', { for: 'p-table' }, t('table')),
				el('select', { id: 'p-table', name: 'table' }, ['holding', 'input', 'coil', 'discrete'].map(x => el('option', { value: x }, t(x))))),
			el('div', null, el('label', { for: 'p-address' }, t('address')), el('input', { id: 'p-address', name: 'address', type: 'number', min: 0, max: 65535, value: 0 })),
			el('div', null, el('label', { for: 'p-count' }, t('count')), el('input', { id: 'p-count', name: 'count', type: 'number', min: 1, max: 123, value: 2 })),
			el('div', null, el('label', { for: 'p-timeout' }, t('timeout')), el('input', { id: 'p-timeout', name: 'timeout', type: 'number', min: 1, max: 10000, placeholder: '—' })),
			el('div', null, el('label', null, '\u00a0'), el('button', { class: 'act', type: 'submit', id: 'p-read' }, t('read'))));
		if (probeLast) {
			f.elements.bus.value = probeLast.q.bus;
			f.elements.unit.value = probeLast.q.unit;
			f.elements.table.value = probeLast.q.table;
			f.elements.address.value = probeLast.q.address;
			f.elements.count.value = probeLast.q.count;
			f.elements.timeout.value = probeLast.q.timeout || '';
		}
		const result = el('div', { id: 'probe-result' }, probeLast ? renderProbeResult(probeLast.q, probeLast.res) : null);
		f.addEventListener('submit', ev => {
			ev.preventDefault();
			const e = f.elements;
			const q = { bus: e.bus.value, unit: +e.unit.value, table: e.table.value, address: +e.address.value,
				count: +e.count.value, timeout: +e.timeout.value || 0 };
			runProbe(q, e['p-read'] || document.getElementById('p-read'), result);
		});
		return [el('h1', null, t('probe_title')), el('p', { class: 'muted small' }, t('probe_note')), el('div', { class: 'card' }, f), result];
	}

	/* As sluicectl probe: the register before and after too (a manual that counts from 1
	   is seen in the same read); when the device refuses them, the range asked alone. */
	async function runProbe(q, btn, result) {
		btn.disabled = true;
		result.replaceChildren(el('p', { class: 'muted' }, t('reading')));
		const ask = (address, count) => {
			const b = { bus: q.bus, unit: q.unit, reads: [{ table: q.table, address: address, count: count }] };
			if (q.timeout)
				b.timeout_ms = q.timeout;
			return api('/api/probe', post(b));
		};
		try {
			const lo = Math.max(0, q.address - 1), hi = Math.min(65536, q.address + q.count + 1);
			let res = await ask(lo, hi - lo);
			const rd = res.body && res.body.probe && res.body.probe.reads && res.body.probe.reads[0];
			if (rd && rd.code >= 256 && (lo !== q.address || hi - lo !== q.count))
				res = await ask(q.address, q.count);
			probeLast = { q: q, res: res };
			result.replaceChildren.apply(result, renderProbeResult(q, res));
		} catch (e) {
			result.replaceChildren(el('p', { class: 'bad' }, t('failed', e.message)));
		}
		btn.disabled = false;
	}

	function post(body) {
		return { method: 'POST', headers: { 'Content-Type': 'application/json', 'X-Sluice-CSRF': session.csrf },
			body: JSON.stringify(body) };
	}

	/* ---- the loop: the page as the hash names it, drawn again every few seconds ---- */

	function route() {
		const h = location.hash.replace(/^#/, '') || '/';
		const m = /^\/device\/([A-Za-z0-9_-]+)$/.exec(h);
		if (m) return { page: 'device', id: m[1], every: 10000 };
		if (h === '/alerts') return { page: 'alerts', every: 5000 };
		if (h === '/probe') return { page: 'probe', every: 0 };
		/* a large site's overview is large (about 750 bytes a device) and slow to draw on a
		   phone: every 2 s up to 100 devices, then 2 s more per 100, at most every 30 s */
		const n = status ? status.devices.length : 0;
		return { page: 'overview', every: Math.min(30000, 2000 * Math.max(1, Math.ceil(n / 100))) };
	}

	function draw(nodes) {
		const main = document.getElementById('main');
		const b = document.getElementById('banner');
		main.replaceChildren.apply(main, nodes);
		if (b)
			main.prepend(b);
	}

	function chrome() {
		document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
		document.querySelectorAll('[data-t]').forEach(e => { e.textContent = t(e.dataset.t); });
		document.getElementById('lang').textContent = t('other');
		const r = route().page;
		['overview', 'alerts', 'probe'].forEach(p => document.getElementById('nav-' + p).classList.toggle('on', p === r));
		if (status) {
			document.getElementById('gw').textContent = 'sluice · ' + (status.gateway.name || status.gateway.id);
			document.title = (status.gateway.name || status.gateway.id) + ' · sluice';
			document.getElementById('foot').textContent = 'sluiced ' + status.gateway.version + ' · ' + clock(status.now, true);
		}
	}

	async function refresh(my) {
		const r = route();
		try {
			if (r.page === 'overview' || !status) {
				const s = await api('/api/status');
				if (s.ok) {
					status = s.body;
					offset = status.now - Date.now();
				}
			}
			if (my !== gen)
				return;
			if (r.page === 'overview' && status)
				draw(renderOverview(status));
			else if (r.page === 'device') {
				const d = await api('/api/devices/' + r.id);
				if (my !== gen)
					return;
				draw(d.ok ? renderDevice(d.body) : [el('p', { class: 'bad' }, d.status === 404 ? t('notfound', r.id) : t('failed', d.body && d.body.message || d.status)),
					el('a', { href: '#/' }, t('back'))]);
			} else if (r.page === 'alerts') {
				const a = await api('/api/alerts');
				if (my !== gen)
					return;
				draw(a.ok ? renderAlerts(a.body) : [el('p', { class: 'bad' }, t('failed', a.status))]);
			} else if (r.page === 'probe' && !document.getElementById('probe-form'))
				draw(renderProbe());
			banner(null);
		} catch (e) {
			if (e.message === 'login')
				return;
			banner(t('unreachable', status ? clock(status.now, true) : '—'));
		}
		chrome();
		if (r.every && my === gen)
			timer = setTimeout(() => refresh(my), r.every);
	}

	function show() {
		clearTimeout(timer);
		gen++;
		if (route().page === 'probe')
			document.getElementById('main').replaceChildren();
		refresh(gen);
	}

	document.getElementById('lang').addEventListener('click', () => {
		lang = lang === 'zh' ? 'en' : 'zh';
		localStorage.setItem('sluice.lang', lang);
		chrome();
		show();
	});
	document.getElementById('logout').addEventListener('click', async () => {
		try { await fetch('/logout', { method: 'POST', credentials: 'same-origin', headers: { 'X-Sluice-CSRF': session.csrf } }); } catch (e) { /* gone anyway */ }
		location.href = '/login';
	});
	window.addEventListener('hashchange', show);
	chrome();
	api('/api/session').then(s => {
		if (s.ok) {
			session = s.body;
			document.getElementById('logout').hidden = !session.login;
		}
		show();
	}).catch(() => show());
})();
