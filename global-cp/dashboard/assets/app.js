// meshfed dashboard: plain browser JavaScript, no framework, no build step.
// The token lives in sessionStorage and travels only in the Authorization
// header: the live stream is read with fetch() rather than EventSource
// (which cannot set headers), so no token ever appears in a URL.
/* global document, sessionStorage, fetch, AbortController, TextDecoderStream, console, setTimeout */
'use strict';

(() => {
  const TOKEN_KEY = 'meshfed.dashboard.token';
  const SVG = 'http://www.w3.org/2000/svg';
  const $ = (id) => document.getElementById(id);
  let controller;
  let retryMs = 1000;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null) continue;
      if (k === 'class') node.className = v;
      else if (k === 'text') node.textContent = v;
      else node.setAttribute(k, String(v));
    }
    for (const c of children) node.append(c);
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'text') node.textContent = v;
      else node.setAttribute(k, String(v));
    }
    return node;
  }

  function ago(iso) {
    if (!iso) return 'never';
    const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
    if (s < 60) return `${s} s ago`;
    if (s < 3600) return `${Math.round(s / 60)} min ago`;
    return `${Math.round(s / 3600)} h ago`;
  }

  function until(iso) {
    if (!iso) return 'unknown';
    const s = Math.round((Date.parse(iso) - Date.now()) / 1000);
    if (s <= 0) return 'expired';
    if (s < 3600) return `in ${Math.round(s / 60)} min`;
    if (s < 86400 * 2) return `in ${Math.round(s / 3600)} h`;
    return `in ${Math.round(s / 86400)} d`;
  }

  const pct = (r) => (r === null || r === undefined ? '–' : `${(r * 100).toFixed(1)}%`);
  const ms = (v) => (v === null || v === undefined ? '–' : `${v < 10 ? v.toFixed(1) : Math.round(v)} ms`);
  const health = (r) =>
    r === null || r === undefined ? 'none' : r >= 0.99 ? 'ok' : r >= 0.9 ? 'warn' : 'bad';

  function setLive(on, text) {
    const live = $('live');
    live.className = `live ${on ? 'on' : 'off'}`;
    live.textContent = text;
  }

  function showLogin(message) {
    if (controller) controller.abort();
    $('app').hidden = true;
    $('logout').hidden = true;
    $('login').hidden = false;
    $('login-error').textContent = message || '';
    setLive(false, 'offline');
  }

  function renderZones(zones) {
    const box = $('zones');
    box.replaceChildren();
    if (zones.length === 0) box.append(el('p', { class: 'empty', text: 'No zone has connected yet.' }));
    for (const z of zones) {
      const state = !z.enabled ? 'disabled' : z.connected ? 'connected' : 'disconnected';
      const dl = el('dl');
      const row = (k, v) => dl.append(el('dt', { text: k }), el('dd', { text: v }));
      row('status', state);
      row('last sync', ago(z.lastSync));
      row('config revision', z.configRevision === null ? '–' : String(z.configRevision));
      row('proxies', String(z.proxies));
      row('version', z.version || '–');
      row('telemetry', ago(z.lastTelemetry));
      const card = el(
        'div',
        {
          class: `card${z.connected ? ' connected' : ''}`,
          'data-zone': z.name,
          'data-connected': String(z.connected),
        },
        el('h3', { text: z.name }),
        dl,
      );
      if (z.errors.length > 0)
        card.append(el('div', { class: 'errors', text: z.errors.slice(0, 3).join('\n') }));
      box.append(card);
    }
  }

  function renderGraph(state) {
    const graph = $('graph');
    graph.replaceChildren();
    const zones = [
      ...new Set([...state.zones.map((z) => z.name), ...state.services.map((s) => s.zone)]),
    ].sort();
    const colW = 300;
    const nodeW = 190;
    const nodeH = 40;
    const gapY = 70;
    const top = 44;
    const pos = new Map();
    let maxRows = 1;
    zones.forEach((zone, zi) => {
      const nodes = state.services.filter((s) => s.zone === zone);
      maxRows = Math.max(maxRows, nodes.length);
      nodes.forEach((n, ni) =>
        pos.set(n.id, { x: 40 + zi * colW + (colW - 80 - nodeW) / 2, y: top + ni * gapY, n }),
      );
    });
    const height = top + maxRows * gapY + 10;
    const width = Math.max(40 + zones.length * colW, 400);
    graph.setAttribute('viewBox', `0 0 ${width} ${height}`);
    graph.setAttribute('height', String(height));
    zones.forEach((zone, zi) => {
      graph.append(
        svg('rect', {
          class: 'zone-box',
          x: 20 + zi * colW,
          y: 8,
          width: colW - 40,
          height: height - 16,
          rx: 10,
        }),
      );
      graph.append(svg('text', { class: 'zone-title', x: 36 + zi * colW, y: 30, text: zone }));
    });
    const defs = svg('defs');
    for (const h of ['ok', 'warn', 'bad', 'none']) {
      const marker = svg('marker', {
        id: `arrow-${h}`,
        viewBox: '0 0 10 10',
        refX: 10,
        refY: 5,
        markerWidth: 7,
        markerHeight: 7,
        orient: 'auto-start-reverse',
      });
      marker.append(
        svg('path', {
          d: 'M 0 0 L 10 5 L 0 10 z',
          class: `head-${h}`,
          fill: { ok: '#3fb950', warn: '#d29922', bad: '#f85149', none: '#8b98a5' }[h],
        }),
      );
      defs.append(marker);
    }
    graph.append(defs);
    for (const e of state.edges) {
      const a = pos.get(e.from);
      const b = pos.get(e.to);
      if (!a || !b) continue;
      const h = health(e.successRate);
      const g = svg('g', { class: `edge ${h}`, 'data-edge': e.id });
      let d;
      let lx;
      let ly;
      if (a === b) {
        d = `M ${a.x + nodeW} ${a.y + 12} C ${a.x + nodeW + 50} ${a.y - 20}, ${a.x + nodeW + 50} ${a.y + 60}, ${a.x + nodeW} ${a.y + 28}`;
        lx = a.x + nodeW + 10;
        ly = a.y - 6;
      } else if (Math.abs(a.x - b.x) < 1) {
        const x = a.x + nodeW;
        const y1 = a.y + nodeH / 2;
        const y2 = b.y + nodeH / 2;
        d = `M ${x} ${y1} C ${x + 60} ${y1}, ${x + 60} ${y2}, ${x + 2} ${y2}`;
        lx = x + 30;
        ly = (y1 + y2) / 2;
      } else {
        const forward = b.x > a.x;
        const x1 = forward ? a.x + nodeW : a.x;
        const x2 = forward ? b.x : b.x + nodeW;
        const y1 = a.y + nodeH / 2;
        const y2 = b.y + nodeH / 2;
        const mx = (x1 + x2) / 2;
        d = `M ${x1} ${y1} C ${mx} ${y1}, ${mx} ${y2}, ${x2} ${y2}`;
        lx = mx - 60;
        ly = (y1 + y2) / 2 - 8;
      }
      g.append(svg('path', { d, 'marker-end': `url(#arrow-${h})` }));
      g.append(
        svg('text', {
          x: lx,
          y: ly,
          text: `${e.rps.toFixed(1)} rps · ${pct(e.successRate)} · p99 ${ms(e.p99Ms)}`,
        }),
      );
      graph.append(g);
    }
    for (const { x, y, n } of pos.values()) {
      const g = svg('g', { class: 'node', 'data-node': n.id });
      g.append(svg('rect', { x, y, width: nodeW, height: nodeH }));
      g.append(svg('text', { x: x + 10, y: y + 17, text: n.name }));
      const sub = n.total === null ? n.namespace : `${n.namespace} · ${n.healthy}/${n.total} healthy`;
      g.append(svg('text', { class: 'sub', x: x + 10, y: y + 32, text: sub }));
      graph.append(g);
    }
  }

  function renderEdges(edges) {
    const body = $('edges').tBodies[0];
    body.replaceChildren();
    if (edges.length === 0) {
      body.append(el('tr', {}, el('td', { class: 'empty', colspan: 8, text: 'No traffic in the window.' })));
    }
    for (const e of edges) {
      const h = health(e.successRate);
      const zones = Object.entries(e.destination.zones)
        .map(([z, n]) => `${z}: ${n}`)
        .join(', ');
      body.append(
        el(
          'tr',
          { 'data-edge': e.id, 'data-success': e.successRate === null ? '' : String(e.successRate) },
          el('td', { text: `${e.source.service}.${e.source.namespace} (${e.source.zone})` }),
          el('td', {
            text: `${e.destination.service}.${e.destination.namespace} (${zones || e.destination.zone})`,
          }),
          el('td', { class: 'num', text: e.rps.toFixed(2) }),
          el('td', { class: 'num success' }, el('span', { class: `badge ${h}`, text: pct(e.successRate) })),
          el('td', { class: 'num', text: ms(e.p99Ms) }),
          el('td', { class: 'num', text: ms(e.p50Ms) }),
          el('td', { class: 'num', text: String(e.requests) }),
          el('td', { class: 'num', text: String(e.totalRequests) }),
        ),
      );
    }
  }

  function renderPolicies(policies) {
    const body = $('policies').tBodies[0];
    body.replaceChildren();
    if (policies.length === 0)
      body.append(el('tr', {}, el('td', { class: 'empty', colspan: 4, text: 'No policies.' })));
    const cls = { applied: 'ok', pending: 'warn', disconnected: 'none', rejected: 'bad' };
    for (const p of policies) {
      const zones = el('td');
      for (const z of p.zones) {
        zones.append(
          el('span', {
            class: `badge ${cls[z.state]}`,
            title: z.error || z.state,
            text: `${z.zone}: ${z.state}`,
          }),
          ' ',
        );
      }
      body.append(
        el(
          'tr',
          { 'data-policy': `${p.kind}/${p.namespace}/${p.name}`, 'data-state': p.state },
          el('td', { text: p.kind }),
          el('td', { text: p.namespace ? `${p.namespace}/${p.name}` : p.name }),
          el('td', {}, el('span', { class: `badge ${cls[p.state]}`, text: p.state })),
          zones,
        ),
      );
    }
  }

  function renderVms(vms) {
    const body = $('vms').tBodies[0];
    body.replaceChildren();
    if (vms.length === 0)
      body.append(el('tr', {}, el('td', { class: 'empty', colspan: 6, text: 'No VMs enrolled.' })));
    for (const vm of vms) {
      const expires = vm.certificateExpiry ? until(vm.certificateExpiry) : 'unknown';
      body.append(
        el(
          'tr',
          { 'data-vm': `${vm.zone}/${vm.namespace}/${vm.name}`, 'data-healthy': String(vm.healthy) },
          el('td', { text: `${vm.name}.${vm.namespace}` }),
          el('td', { text: vm.zone }),
          el('td', { text: vm.address }),
          el(
            'td',
            {},
            el('span', {
              class: `badge ${vm.healthy ? 'ok' : 'bad'}`,
              text: vm.healthy ? 'healthy' : 'unhealthy',
            }),
          ),
          el('td', { text: vm.proxyConnected ? 'connected' : 'disconnected' }),
          el('td', { title: vm.certificateExpiry || '', text: expires }),
        ),
      );
    }
  }

  function render(state) {
    renderZones(state.zones);
    renderGraph(state);
    renderEdges(state.edges);
    renderPolicies(state.policies);
    renderVms(state.vms);
    $('window').textContent = `(last ${Math.round(state.windowMs / 1000)} s)`;
    $('updated').textContent = `updated ${new Date(state.generatedAt).toLocaleTimeString()}`;
  }

  async function stream(token) {
    controller = new AbortController();
    const signal = controller.signal;
    const res = await fetch('/api/v1/dashboard/events', {
      headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream' },
      signal,
    });
    if (res.status === 401 || res.status === 403) {
      sessionStorage.removeItem(TOKEN_KEY);
      showLogin(
        res.status === 401
          ? 'The token was refused (expired, revoked or mistyped).'
          : 'This token may not read the mesh.',
      );
      return false;
    }
    if (!res.ok || !res.body) throw new Error(`events answered ${res.status}`);
    $('login').hidden = true;
    $('app').hidden = false;
    $('logout').hidden = false;
    setLive(true, 'live');
    retryMs = 1000;
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return true;
      buffer += value;
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let event = 'message';
        const data = [];
        for (const line of frame.split('\n')) {
          if (line.startsWith('event:')) event = line.slice(6).trim();
          else if (line.startsWith('data:')) data.push(line.slice(5).trimStart());
        }
        if (event === 'state' && data.length > 0) render(JSON.parse(data.join('\n')));
      }
    }
  }

  async function run(token) {
    for (;;) {
      let again;
      try {
        again = await stream(token);
      } catch (err) {
        if (controller && controller.signal.aborted) return;
        again = true;
        setLive(false, 'reconnecting');
        console.warn('dashboard stream failed', err);
      }
      if (!again || sessionStorage.getItem(TOKEN_KEY) !== token) return;
      setLive(false, 'reconnecting');
      await new Promise((r) => setTimeout(r, retryMs));
      retryMs = Math.min(retryMs * 2, 15000);
    }
  }

  document.addEventListener('DOMContentLoaded', () => {
    $('login-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const token = $('token').value.trim();
      if (!token) return;
      sessionStorage.setItem(TOKEN_KEY, token);
      $('token').value = '';
      $('login-error').textContent = '';
      void run(token);
    });
    $('logout').addEventListener('click', () => {
      sessionStorage.removeItem(TOKEN_KEY);
      showLogin('');
    });
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) void run(token);
    else showLogin('');
  });
})();
