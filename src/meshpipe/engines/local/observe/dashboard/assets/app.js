// The meshpipe dashboard: one small script, no libraries. It picks the view from the address, opens one
// server-sent-event stream for it (/api/stream) and redraws what each message changes; nothing polls.
'use strict';

(() => {
  const WINDOW_S = 900; // the charts' span: the last 15 minutes
  const MAX_EVENTS = 500;
  const SVGNS = 'http://www.w3.org/2000/svg';

  // --- small helpers ------------------------------------------------------------------------------------

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') e.className = v;
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const kid of kids.flat()) {
      if (kid === null || kid === undefined || kid === false) continue;
      e.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return e;
  }

  function svg(tag, attrs) {
    const e = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    return e;
  }

  const fmt = {
    int: (n) => (n === null || n === undefined ? '–' : Math.round(n).toLocaleString('en-US')),
    rps: (n) => (n === null || n === undefined ? '–' : n < 10 ? n.toFixed(2) : n.toFixed(1)),
    pct: (n) => (n === null || n === undefined ? '–' : (100 * n).toFixed(n >= 0.9995 || n === 0 ? 0 : 2) + '%'),
    // A figure that is already a percentage (a rollout window's success rate), as `rollout status` shows it.
    percent: (p) => (p === null || p === undefined ? '–' : Number(p).toFixed(2) + ' %'),
    ms: (n) => (n === null || n === undefined ? '–' : n < 10 ? n.toFixed(2) + ' ms' : Math.round(n) + ' ms'),
    time: (iso) => (iso ? new Date(iso).toLocaleTimeString('en-GB') : ''),
    short: (commit) => (commit ? String(commit).slice(0, 8) : ''),
  };

  // The server's clock (the series' "at" values) as of now: its last "now", moved on by local time.
  const clock = { server: 0, local: 0 };
  const serverNow = () => clock.server + (performance.now() - clock.local) / 1000;

  // "p50 / p99 ms", each to two significant-enough places.
  function latency(p50, p99) {
    const one = (n) => (n === null || n === undefined ? '–' : n < 10 ? n.toFixed(2) : String(Math.round(n)));
    return `${one(p50)} / ${one(p99)} ms`;
  }

  function badge(status) {
    const s = String(status || '');
    const tone = /fail|unhealthy|rolled.?back|abort/i.test(s) ? 'bad'
      : /progress|pending|starting|running|paus|confirm/i.test(s) ? 'busy'
        : /complete|succeeded|healthy|promoted|passed/i.test(s) ? 'good' : 'plain';
    return el('span', { class: `badge ${tone}` }, s || '–');
  }

  // A weight bar; its width is set through the style object (the page's policy forbids style attributes).
  function bar(share) {
    const fill = el('span', { class: 'fill' });
    fill.style.width = `${share}%`;
    return el('span', { class: 'bar' }, fill);
  }

  // --- sparklines --------------------------------------------------------------------------------------

  // A small chart of the last ``opts.span`` seconds (at most 15 minutes): one polyline per series, broken
  // where a value is unknown.
  function sparkline(series, opts) {
    const span = opts.span || WINDOW_S;
    const w = opts.width || 100;
    const h = opts.height || 34;
    const now = serverNow();
    let max = opts.max;
    if (max === undefined) {
      max = 0;
      for (const s of series) for (const [, y] of s.points) if (y !== null && y > max) max = y;
      max = max > 0 ? max * 1.1 : 1;
    }
    const min = opts.min || 0;
    const chart = svg('svg', { width: w, height: h, viewBox: `0 0 ${w} ${h}`, class: 'spark' });
    chart.append(svg('rect', { x: 0, y: 0, width: w, height: h, class: 'spark-bg' }));
    for (const s of series) {
      let run = [];
      const flush = () => {
        if (run.length === 1) run.push([run[0][0] + 1, run[0][1]]);
        if (run.length > 1) {
          chart.append(svg('polyline', { points: run.map((p) => p.join(',')).join(' '), class: `line ${s.cls}` }));
        }
        run = [];
      };
      for (const [at, y] of s.points) {
        const x = w * (1 - (now - at) / span);
        if (x < 0) continue;
        if (y === null) { flush(); continue; }
        const yy = h - 2 - ((Math.min(Math.max(y, min), max) - min) / (max - min || 1)) * (h - 4);
        run.push([x.toFixed(1), yy.toFixed(1)]);
      }
      flush();
    }
    const title = svg('title', {});
    title.textContent = opts.title || '';
    chart.append(title);
    return chart;
  }

  // --- the live stream ---------------------------------------------------------------------------------

  function connect(query, handlers) {
    const live = document.getElementById('live');
    const stream = new EventSource(`/api/stream?${query}`);
    stream.onopen = () => { live.textContent = 'live'; live.className = 'live on'; };
    stream.onerror = () => { live.textContent = 'reconnecting…'; live.className = 'live off'; };
    const all = { nav: showNav, ...handlers };
    for (const [name, handle] of Object.entries(all)) {
      stream.addEventListener(name, (e) => {
        handle(JSON.parse(e.data));
        document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
      });
    }
    return stream;
  }

  function showNav(d) {
    document.getElementById('environment').textContent = d.environment ? `environment ${d.environment}` : '';
    document.title = `${d.environment} · meshpipe dashboard`;
    const picker = document.getElementById('service-picker');
    const current = document.body.dataset.service || '';
    picker.replaceChildren(el('option', { value: '' }, 'choose…'),
      ...d.services.map((s) => el('option', { value: s, selected: s === current }, s)));
  }

  // --- topology ----------------------------------------------------------------------------------------

  function topologyView(main) {
    const summary = el('p', { class: 'summary', id: 'summary' });
    const graph = el('div', { class: 'graph fit', id: 'graph' });
    const rows = el('tbody', { id: 'service-rows' });
    const table = el('div', { class: 'wide' }, el('table', { class: 'services' },
      el('thead', {}, el('tr', {}, ...['service', 'versions: weight, requests/s', 'requests/s', '5xx']
        .map((t) => el('th', {}, t)))), rows));
    const fit = el('button', { type: 'button', id: 'fit', 'aria-pressed': 'true' }, 'Fit to width');
    fit.addEventListener('click', () => {
      const on = graph.classList.toggle('fit');
      fit.setAttribute('aria-pressed', String(on));
    });
    main.append(
      el('h1', {}, 'Topology'), summary,
      el('p', { class: 'legend' },
        'Edges from a service to its versions: width = route weight, label = weight and requests/s, colour = 5xx share ',
        el('span', { class: 'swatch ok' }), ' < 1 % ', el('span', { class: 'swatch warn' }), ' < 5 % ',
        el('span', { class: 'swatch bad' }), ' ≥ 5 % ', el('span', { class: 'swatch idle' }), ' no traffic. ',
        'Click a service for its page. ', fit),
      graph, el('h2', {}, 'Services'), table);
    return {
      query: 'view=topology',
      handlers: {
        topology(d) {
          graph.innerHTML = d.svg; // drawn by meshpipe.mesh.graph on the server, every text escaped there
          for (const node of graph.querySelectorAll('g.node.service')) {
            const name = node.querySelector('text').textContent;
            node.setAttribute('role', 'link');
            node.setAttribute('tabindex', '0');
            node.dataset.service = name;
            const open = () => window.location.assign(`/services/${encodeURIComponent(name)}`);
            node.addEventListener('click', open);
            node.addEventListener('keydown', (e) => { if (e.key === 'Enter') open(); });
          }
          rows.replaceChildren(...d.services.map((s) => {
            const total = s.versions.reduce((n, v) => n + v.weight, 0);
            const rps = s.versions.reduce((n, v) => n + (v.rps || 0), 0);
            const known = s.versions.filter((v) => v.rps);
            const errors = known.length ? known.reduce((n, v) => n + v.rps * (v.error_rate || 0), 0) / (rps || 1) : null;
            return el('tr', { 'data-service': s.name },
              el('td', {}, el('a', { href: `/services/${encodeURIComponent(s.name)}` }, s.name)),
              el('td', { class: 'chips' }, s.versions.map((v) => el('span', { class: `chip${v.weight ? '' : ' idle'}`,
                'data-version': v.version, 'data-weight': v.weight },
              el('code', {}, v.version), ` ${total ? Math.round((100 * v.weight) / total) : 0} %`,
              v.rps ? ` · ${fmt.rps(v.rps)}/s` : ''))),
              el('td', { class: 'num' }, known.length ? fmt.rps(rps) : '–'),
              el('td', { class: 'num' }, errors === null ? '–' : fmt.pct(errors)));
          }));
          const versions = d.services.reduce((n, s) => n + s.versions.length, 0);
          const rps = d.services.reduce((n, s) => n + s.versions.reduce((m, v) => m + (v.rps || 0), 0), 0);
          summary.textContent = `${d.services.length} services, ${versions} versions, `
            + `${d.gateway_routes.length} gateway routes · ${fmt.rps(rps)} req/s to versions · `
            + `config generation ${d.generation ?? '–'}` + (d.ingress_url ? ` · ingress ${d.ingress_url}` : '');
          document.body.dataset.generation = String(d.generation ?? '');
        },
      },
    };
  }

  // --- one service -------------------------------------------------------------------------------------

  function serviceView(main, name) {
    document.body.dataset.service = name;
    const points = {}; // version -> [[at, requests, rps, success, p50, p99], ...]
    let totals = {};
    let doc = null;
    const heading = el('h1', {}, name);
    const meta = el('p', { class: 'summary', id: 'service-meta' });
    const versions = el('section', { id: 'versions' });
    const rollout = el('section', { id: 'rollout', hidden: true });
    const runs = el('section', { id: 'runs' });
    const events = el('tbody');
    main.append(heading, meta, versions, rollout, runs,
      el('section', { id: 'service-events' }, el('h2', {}, 'Events'),
        el('table', { class: 'events' }, el('thead', {}, el('tr', {}, el('th', {}, 'time'), el('th', {}, 'kind'),
          el('th', {}, 'version'), el('th', {}, 'what happened'))), events)));

    // The charts' span: the last 15 minutes, or since the first point when that is shorter (the daemon
    // records only while a page is open), but at least a minute.
    function span() {
      let first = Infinity;
      for (const pts of Object.values(points)) if (pts.length && pts[0][0] < first) first = pts[0][0];
      return Math.min(WINDOW_S, Math.max(60, Math.ceil(serverNow() - first)));
    }

    function spanText(s) {
      return s >= 120 ? `${Math.round(s / 60)} min` : `${s} s`;
    }

    function charts(ver, s) {
      const pts = points[ver] || [];
      const col = (i) => pts.map((p) => [p[0], p[i]]);
      const last = pts.length ? pts[pts.length - 1] : null;
      return {
        rps: [sparkline([{ points: col(2), cls: 'rps' }], { span: s, title: `requests/s, last ${spanText(s)}` }),
          el('span', { class: 'value' }, last ? `${fmt.rps(last[2])}/s` : '–')],
        success: [sparkline([{ points: col(3), cls: 'success' }],
          { span: s, min: 0, max: 1, title: `success rate (not 5xx), last ${spanText(s)}` }),
          el('span', { class: 'value' }, last ? fmt.pct(last[3]) : '–')],
        latency: [sparkline([{ points: col(4), cls: 'p50' }, { points: col(5), cls: 'p99' }],
          { span: s, title: `latency p50 (blue) and p99 (orange), last ${spanText(s)}` }),
        el('span', { class: 'value' }, last ? latency(last[4], last[5]) : '–')],
      };
    }

    function drawCharts() {
      const s = span();
      const caption = versions.querySelector('.chart-span');
      if (caption) caption.textContent = `Charts: the last ${spanText(s)}, a point every few seconds while this page is open.`;
      for (const row of versions.querySelectorAll('tr[data-version]')) {
        const ver = row.dataset.version;
        const c = charts(ver, s);
        for (const key of ['rps', 'success', 'latency']) row.querySelector(`td.${key}`).replaceChildren(...c[key]);
        const total = totals[ver];
        const cell = row.querySelector('td.requests');
        cell.textContent = total ? fmt.int(total.requests) : '0';
        cell.dataset.count = String(total ? total.requests : 0);
        cell.title = total ? `${total.requests} requests, ${total['5xx']} answered 5xx (callers' proxies, since they started)` : '';
      }
    }

    function drawVersions() {
      const route = doc.route;
      const total = doc.versions.reduce((n, v) => n + (v.weight || 0), 0);
      meta.textContent = `virtual service ${doc.virtual_service} · router ${doc.router} · `
        + (route ? `route r-${name}: ${route.targets.map((t) => `${t.version} ${t.weight}`).join(', ')}` : 'no route yet');
      const rows = doc.versions.map((v) => {
        const share = total ? Math.round((100 * v.weight) / total) : 0;
        const tasks = v.tasks.map((t) => `${t.task_id}: ${t.actual}${t.restarts ? `, ${t.restarts} restarts` : ''}`);
        return el('tr', { 'data-version': v.version },
          el('td', { class: 'version' }, el('code', {}, v.version),
            v.commit && !String(v.commit).startsWith(v.version)
              ? el('div', { class: 'sub' }, `commit ${fmt.short(v.commit)}`) : null),
          el('td', { class: 'status' }, badge(v.status), v.reason ? el('div', { class: 'sub' }, v.reason) : null),
          el('td', { class: 'tasks', title: tasks.join('\n') }, `${v.healthy_tasks ?? 0}/${v.desired_tasks ?? 0}`),
          el('td', { class: 'weight', 'data-weight': v.weight, title: `weight ${v.weight} of ${total}` }, bar(share),
            el('span', { class: 'value' }, `${share} %`)),
          el('td', { class: 'requests num', 'data-count': '0' }, '0'),
          el('td', { class: 'chart rps' }), el('td', { class: 'chart success' }), el('td', { class: 'chart latency' }));
      });
      versions.replaceChildren(el('h2', {}, 'Versions'), doc.versions.length ? el('div', { class: 'wide' },
        el('table', { class: 'versions' },
          el('thead', {}, el('tr', {}, ...['version', 'status', 'tasks', 'weight', 'requests', 'requests/s',
            'success rate', 'p50 / p99'].map((t) => el('th', {}, t)))),
          el('tbody', {}, rows)), el('p', { class: 'legend chart-span' }))
        : el('p', { class: 'note' }, 'No versions yet: push a manifest to the config repo.'));
      drawCharts();
    }

    // The service's rollout (the daemon's GET /v1/rollouts/{svc} document): its steps, where it is, and
    // each judged window with its verdict and the figures it was judged on.
    function drawRollout() {
      const r = doc.rollout;
      rollout.hidden = !r;
      if (!r) { rollout.replaceChildren(); return; }
      const planned = r.plan && Array.isArray(r.plan.steps) ? r.plan.steps : [];
      const finished = !/running/i.test(String(r.status || ''));
      const steps = planned.map((weight, i) => {
        const n = i + 1;
        const state = (finished && /promot|succe/i.test(r.status)) || n < r.step ? 'done'
          : n === r.step && !finished ? 'current' : 'pending';
        return el('li', { class: `step ${state}`, 'data-step': n }, `${weight} %`);
      });
      const windows = (r.windows || []).map((w) => el('tr', { class: `verdict-${w.verdict}`, 'data-window': w.number },
        el('td', {}, w.number), el('td', {}, w.step), el('td', {}, `${w.weight} %`), el('td', {}, w.phase || ''),
        el('td', { class: 'verdict' }, badge(w.verdict)), el('td', { class: 'sub' }, figures(w.candidate)),
        el('td', { class: 'sub' }, figures(w.stable)), el('td', {}, (w.reasons || []).join('; '))));
      rollout.replaceChildren(
        el('h2', {}, 'Rollout'),
        el('p', { class: 'rollout-head' }, badge(r.status), ' ', el('code', {}, r.candidate), ' over ',
          el('code', {}, r.stable), r.phase ? ` · ${r.phase}` : '',
          r.steps ? ` · step ${r.step} of ${r.steps}` : '', ` · candidate weight ${r.candidate_weight ?? '–'} %`,
          r.paused ? ' · paused' : '', r.next_decision_in_s !== null && r.next_decision_in_s !== undefined
            ? ` · next decision in ${r.next_decision_in_s} s` : ''),
        r.describe ? el('p', { class: 'sub' }, r.describe) : null,
        steps.length ? el('ol', { class: 'steps' }, steps) : null,
        r.holding ? el('p', { class: 'holding' }, r.holding) : null,
        r.reason ? el('p', { class: 'sub' }, r.reason) : null,
        windows.length ? el('div', { class: 'wide' }, el('table', { class: 'windows' },
          el('thead', {}, el('tr', {}, ...['window', 'step', 'weight', 'phase', 'verdict', 'candidate', 'stable',
            'reasons'].map((t) => el('th', {}, t)))),
          el('tbody', {}, windows))) : el('p', { class: 'note' }, 'No window judged yet.'));
    }

    // A window's figures: requests, errors, success rate, p99 (and whatever else it carries).
    function figures(f) {
      if (!f || typeof f !== 'object') return '';
      const known = [];
      if (f.requests !== undefined) known.push(`${fmt.int(f.requests)} req`);
      if (f.errors !== undefined) known.push(`${fmt.int(f.errors)} err`);
      if (f.success_rate !== undefined && f.success_rate !== null) known.push(`${fmt.percent(f.success_rate)} ok`);
      if (f.p99_ms !== undefined && f.p99_ms !== null) known.push(`p99 ${fmt.ms(f.p99_ms)}`);
      const rest = Object.entries(f).filter(([k, v]) => !['requests', 'errors', 'success_rate', 'p99_ms'].includes(k)
        && v !== null && typeof v !== 'object').map(([k, v]) => `${k} ${v}`);
      return [...known, ...rest].join(', ');
    }

    function drawRuns() {
      const cards = doc.runs.map((r) => el('li', { class: 'run', 'data-run': r.run_id },
        el('div', {}, el('code', {}, r.run_id), ' ', badge(r.status), ' ',
          el('span', { class: 'sub' }, `commit ${fmt.short(r.commit)}`, r.version ? ` → version ${r.version}` : '',
            ` · ${fmt.time(r.started_at)}`, r.finished_at ? ` – ${fmt.time(r.finished_at)}` : '')),
        el('ol', { class: 'stages' }, r.stages.map((s) => el('li', { class: `stage ${String(s.status).toLowerCase()}` },
          s.name, ' ', el('span', { class: 'sub' }, s.status),
          s.log ? el('details', {}, el('summary', {}, 'log'), el('pre', {}, s.log)) : null)))));
      runs.replaceChildren(el('h2', {}, 'Pipeline runs'),
        cards.length ? el('ol', { class: 'runs' }, cards) : el('p', { class: 'note' }, 'No pipeline runs yet.'));
    }

    return {
      query: `view=service&service=${encodeURIComponent(name)}`,
      handlers: {
        service(d) {
          doc = d;
          if (d.missing) {
            versions.replaceChildren(el('p', { class: 'note' }, `The environment has no service ${name}.`));
            rollout.hidden = true;
            runs.replaceChildren();
            return;
          }
          drawVersions();
          drawRollout();
          drawRuns();
        },
        series(d) {
          clock.server = d.now;
          clock.local = performance.now();
          for (const [ver, pts] of Object.entries(d.points)) {
            const list = points[ver] || (points[ver] = []);
            list.push(...pts);
            while (list.length && list[0][0] < d.now - WINDOW_S) list.shift();
          }
          totals = d.totals;
          if (doc && !doc.missing) drawCharts();
        },
        events(list) {
          for (const e of list) {
            events.prepend(el('tr', {}, el('td', {}, fmt.time(e.at)), el('td', {}, e.kind),
              el('td', {}, e.version || ''), el('td', {}, e.message)));
          }
          while (events.children.length > 50) events.lastChild.remove();
        },
      },
    };
  }

  // --- events ------------------------------------------------------------------------------------------

  function eventsView(main) {
    const body = el('tbody', { id: 'event-rows' });
    const filter = el('input', { type: 'search', placeholder: 'filter: service, kind or words', id: 'event-filter' });
    const apply = () => {
      const words = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
      for (const row of body.children) {
        const text = row.textContent.toLowerCase();
        row.hidden = !words.every((w) => text.includes(w));
      }
    };
    filter.addEventListener('input', apply);
    main.append(el('h1', {}, 'Events'), el('p', { class: 'summary' }, 'What happened in the environment, newest first, as it happens.'),
      filter, el('table', { class: 'events' }, el('thead', {}, el('tr', {}, ...['time', 'kind', 'service',
        'version', 'what happened'].map((t) => el('th', {}, t)))), body));
    return {
      query: 'view=events',
      handlers: {
        events(list) {
          for (const e of list) {
            body.prepend(el('tr', { 'data-event': e.id }, el('td', { title: e.at }, fmt.time(e.at)),
              el('td', {}, el('span', { class: `kind ${e.kind}` }, e.kind)),
              el('td', {}, e.service ? el('a', { href: `/services/${encodeURIComponent(e.service)}` }, e.service) : ''),
              el('td', {}, e.version || ''), el('td', {}, e.message)));
          }
          while (body.children.length > MAX_EVENTS) body.lastChild.remove();
          apply();
        },
      },
    };
  }

  // --- start -------------------------------------------------------------------------------------------

  function start() {
    const main = document.getElementById('view');
    const path = window.location.pathname;
    let view;
    if (path.startsWith('/services/')) view = serviceView(main, decodeURIComponent(path.slice('/services/'.length)));
    else if (path === '/events') view = eventsView(main);
    else view = topologyView(main);
    document.body.dataset.view = path === '/' ? 'topology' : path.split('/')[1];
    for (const a of document.querySelectorAll('nav a')) {
      if (a.dataset.nav === document.body.dataset.view) a.setAttribute('aria-current', 'page');
    }
    document.getElementById('service-picker').addEventListener('change', (e) => {
      if (e.target.value) window.location.assign(`/services/${encodeURIComponent(e.target.value)}`);
    });
    connect(view.query, view.handlers);
  }

  start();
})();
