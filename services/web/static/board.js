/* The board: rows kept by incident id, updated one at a time from the event stream; one shared
   1-second timer for every countdown. Drill incidents carry a 演练 badge and are filtered, never mixed
   in silently: a banner says when drills are running and hidden. */
'use strict';

(() => {
  const { el } = YJ;
  const config = JSON.parse(document.getElementById('config').textContent);
  const table = document.getElementById('incidents');
  const tbody = document.getElementById('rows');
  const main = document.querySelector('.board-main');
  const feedList = document.getElementById('feed');
  const feedEmpty = document.getElementById('feed-empty');
  const conn = document.getElementById('conn');
  const drawer = document.getElementById('drawer');
  const $ = (id) => document.getElementById(id);

  const FEED_LIMIT = 100;
  const SOON_MS = 5 * 60 * 1000;
  const URGENT_MS = 60 * 1000;
  const rows = new Map(); // incident id → {data, tr, chips, since, receivedMs}
  const drillClock = { sim: null, wall: 0 }; // simulated time of running drills, from their latest event
  let filter = ['live', 'drill', 'all'].includes(localStorage.getItem('yj.board.filter'))
    ? localStorage.getItem('yj.board.filter') : config.default_filter;
  let selected = null;

  // --- time ---------------------------------------------------------------------------------
  // Drill incidents live on their drill's simulated clock: the run's (sent each second while it
  // runs, extrapolated at its speed in between) or else the latest event of any drill incident.
  const runs = new Map(); // run id → {name, speed, running, sim, wall, end}
  const runOf = new Map(); // drill incident id → run id
  function applyDrills(list) {
    runs.clear();
    for (const d of list || []) {
      runs.set(d.run_id, { name: d.name, speed: d.speed, running: d.status === 'running',
        sim: Date.parse(d.simulated_now), wall: YJ.now(), end: Date.parse(d.end) });
      for (const id of d.incidents) runOf.set(id, d.run_id);
    }
  }
  function runNow(run) {
    return run.running ? Math.min(run.sim + (YJ.now() - run.wall) * run.speed, run.end) : run.sim;
  }
  function drillNow(id) {
    const run = id !== undefined && runs.get(runOf.get(id));
    if (run) return runNow(run);
    return drillClock.sim === null ? YJ.now() : drillClock.sim + (YJ.now() - drillClock.wall);
  }
  function noteDrillClock(row) {
    if (!row.drill || !row.clock_at || runOf.has(row.id)) return; // a run's incidents keep the run's clock
    const t = Date.parse(row.clock_at);
    if (drillClock.sim === null || t > drillNow()) { drillClock.sim = t; drillClock.wall = YJ.now(); }
  }
  const refNow = (r) => (r.drill ? drillNow(r.id) : YJ.now());

  // --- rows -----------------------------------------------------------------------------------
  const STATUS_ORDER = { missed: 0, open: 1, late: 2, met: 3 };
  function urgency(r) { // breached first, then response level, then newest report
    return [r.breached ? 0 : 1, -(YJ.LEVEL_RANK[r.level] || 0), -Date.parse(r.received_at)];
  }
  function before(a, b) { // entries; their urgency keys are computed once per update
    const x = a.key; const y = b.key;
    for (let i = 0; i < x.length; i += 1) if (x[i] !== y[i]) return x[i] < y[i];
    return a.data.id < b.data.id;
  }

  function buildRow(r) {
    const tr = el('tr', { 'data-id': r.id, class: `${r.drill ? 'drill' : 'live'}${r.breached ? ' breached' : ''}` });
    const chips = [];
    const obligations = [...r.obligations].sort((a, b) =>
      (STATUS_ORDER[a.status] - STATUS_ORDER[b.status]) || (Date.parse(a.due_at) - Date.parse(b.due_at)));
    const chipNodes = obligations.map((o) => {
      const cd = el('span', { class: 'cd' });
      const node = el('span', { class: 'chip', 'data-kind': o.kind, title: `${o.label}：${YJ.OBLIGATION_STATUS[o.status] || o.status}，时限 ${YJ.dateTime(o.due_at)}` },
        el('span', { class: 'lbl', text: o.label }), cd);
      const chip = { node, cd, due: Date.parse(o.due_at), status: o.status, text: '', cls: '' };
      if (o.status === 'met') { cd.textContent = '✓ 已报'; node.classList.add('met'); }
      else if (o.status === 'late') { cd.textContent = `迟报${o.minutes_late != null ? ` ${o.minutes_late}分` : ''}`; node.classList.add('late'); }
      else chips.push(chip);
      if (o.status === 'missed' && o.escalation_step) node.append(el('span', { class: 'esc', text: `已上报第${o.escalation_step}步` }));
      return node;
    });
    const since = el('span', { class: 'ago' });
    let approvalBadge = null;
    const cmd = r.commanders[0];
    tr.append(
      el('td', {}, YJ.levelBadge(r.level)),
      el('td', {},
        el('div', { class: 'ev-type' }, r.type, r.drill ? [' ', YJ.drillBadge()] : null,
          r.needs_approval ? [' ', approvalBadge = el('span', { class: 'badge approval', text: '待批准上报', title: '向市应急办报告须经区应急委主任或副主任批准（4.1.3）' })] : null),
        el('div', { class: 'ev-sub', text: r.category || '研判中' }),
        el('div', { class: 'ev-id', text: r.id })),
      el('td', {}, r.grade ? el('span', { class: 'badge grade', text: r.grade }) : '—'),
      el('td', { class: 'place' }, el('div', { text: r.street || '未明确' }),
        r.key_area.length ? el('div', { class: 'ev-sub', text: r.key_area.join('、') }) : null),
      el('td', { class: 'units' }, el('div', { text: r.lead_units.join('、') || '—' }),
        cmd ? el('div', { class: 'cmd', title: r.commanders.map((c) => `${c.role}：${c.who}`).join('\n'), text: `${cmd.role}：${cmd.who}` }) : null,
        noticeChips(r)),
      el('td', { class: 'since' }, since, el('span', { class: 'at', text: `接报 ${YJ.dateTime(r.received_at).slice(5, 16)}` })),
      el('td', {}, el('div', { class: 'oblig' }, chipNodes.length ? chipNodes : el('span', { class: 'hint', text: r.status === 'reported' ? '研判中' : '无' }))),
    );
    return { data: r, tr, chips, since, receivedMs: Date.parse(r.received_at), sinceText: '', key: urgency(r),
             approvalBadge, approvalMs: r.approval_requested_at ? Date.parse(r.approval_requested_at) : null };
  }

  function noticeChips(r) { // what became of the incident's notices: none reached, none read yet
    const chips = [];
    if (r.notices_undeliverable) chips.push(el('span', { class: 'chip notice undeliverable', title: '通知各渠道均未能送达（或无人值班），已按升级顺序通知上一级', text: `无法送达 ${r.notices_undeliverable}` }));
    if (r.notices_unacked) chips.push(el('span', { class: 'chip notice unacked', title: '已发出、尚无人点「已阅」的通知', text: `未阅 ${r.notices_unacked}` }));
    return chips.length ? el('div', { class: 'notice-chips' }, chips) : null;
  }

  function place(entry) {
    // rows are kept in urgency order; only the changed row moves
    let next = null;
    for (const other of tbody.children) {
      const o = rows.get(other.dataset.id);
      if (o && o !== entry && before(entry, o)) { next = other; break; }
    }
    if (entry.tr.nextSibling !== next || entry.tr.parentNode !== tbody) tbody.insertBefore(entry.tr, next);
  }

  function upsert(r, fresh) {
    noteDrillClock(r);
    const old = rows.get(r.id);
    const entry = buildRow(r);
    if (old) old.tr.replaceWith(entry.tr);
    rows.set(r.id, entry);
    if (selected === r.id) entry.tr.classList.add('selected');
    place(entry);
    if (fresh && !old) entry.tr.classList.add('fresh');
    tickRow(entry, YJ.now());
  }
  function remove(id) {
    const old = rows.get(id);
    if (old) { old.tr.remove(); rows.delete(id); }
  }

  // --- the one timer ----------------------------------------------------------------------------
  function tickRow(entry, live) {
    const t = entry.data.drill ? drillNow(entry.data.id) : live;
    const since = YJ.ago(t - entry.receivedMs);
    if (since !== entry.sinceText) { entry.since.textContent = since; entry.sinceText = since; }
    if (entry.approvalBadge && entry.approvalMs) {  // the wait for approval, counted (4.1.3)
      const waited = `待批准上报 · 已等 ${YJ.ago(t - entry.approvalMs)}`;
      if (entry.approvalBadge.textContent !== waited) entry.approvalBadge.textContent = waited;
    }
    for (const c of entry.chips) {
      let text; let cls;
      if (c.status === 'missed') { text = `超时未报 +${YJ.clock(t - c.due)}`; cls = 'chip missed'; }
      else {
        const left = c.due - t;
        text = left >= 0 ? `剩 ${YJ.clock(left)}` : `已超时 ${YJ.clock(-left)}`;
        cls = left <= URGENT_MS ? 'chip urgent' : (left <= SOON_MS ? 'chip soon' : 'chip');
      }
      if (text !== c.text) { c.cd.textContent = text; c.text = text; }
      if (cls !== c.cls) { c.node.className = cls; c.cls = cls; }
    }
  }
  const visible = (r) => filter === 'all' || (filter === 'drill') === r.drill;

  function tick() {
    const live = YJ.now();
    const sum = { open: 0, l1: 0, l2: 0, l3: 0, breach: 0, due: 0 };
    let drills = 0; let lives = 0;
    for (const entry of rows.values()) {
      const r = entry.data;
      if (r.drill) drills += 1; else lives += 1;
      if (!visible(r)) continue;
      tickRow(entry, live);
      sum.open += 1;
      const lv = YJ.LEVEL_CLASS[r.level];
      if (lv) sum[lv] += 1;
      if (r.breached) sum.breach += 1;
      const t = refNow(r);
      if (entry.chips.some((c) => c.status === 'open' && c.due >= t && c.due - t <= 10 * 60 * 1000)) sum.due += 1;
    }
    for (const k of Object.keys(sum)) setText($(`sum-${k}`), String(sum[k]));
    $('sum-breach').parentNode.classList.toggle('active', sum.breach > 0);
    setText($('count-live'), String(lives));
    setText($('count-drill'), String(drills));
    setText($('count-all'), String(lives + drills));
    $('empty').hidden = sum.open > 0;
    const running = [...runs.values()].filter((run) => run.running);
    $('drill-banner').hidden = drills === 0 && running.length === 0;
    $('drill-hidden-note').hidden = filter !== 'live';
    $('drill-banner').querySelector('button').hidden = filter === 'drill';
    if (running.length) {
      setText($('drill-text'), `演练进行中：${running.map((run) => `「${run.name}」${run.speed}倍速，模拟时间 ${YJ.dateTime(runNow(run))}`).join('；')}；演练事件 ${drills} 起`);
    } else if (drills) {
      setText($('drill-text'), `演练事件 ${drills} 起，模拟时间 ${YJ.dateTime(drillNow())}（按最近的演练记录）`);
    }
  }
  function setText(node, text) { if (node.textContent !== text) node.textContent = text; }

  // --- feed ---------------------------------------------------------------------------------------
  function feedTitle(f) {
    if (f.kind === 'escalation') return `逐级上报${f.step ? ` 第${f.step}步` : ''}`;
    return YJ.EVENT_KIND[f.kind] || f.kind;
  }
  function feedItem(f, fresh) {
    const li = el('li', { class: `${f.kind} ${f.drill ? 'drill' : 'live'}${fresh ? ' fresh' : ''}`, 'data-id': f.incident_id, role: 'button' },
      el('div', { class: 'f-head' }, el('span', { class: 'f-kind', text: feedTitle(f) }), f.drill ? YJ.drillBadge() : null,
        el('span', { class: 'f-time', text: YJ.time(f.recorded_at), title: `记录于 ${YJ.dateTime(f.recorded_at)}` })),
      el('div', { class: 'f-what', text: `${f.type}${f.street ? ` · ${f.street}` : ''}` }),
      el('div', { class: 'f-reason', text: YJ.readable(f.reason) }));
    return li;
  }
  function addFeed(items, fresh) {
    for (const f of items) feedList.prepend(feedItem(f, fresh));
    while (feedList.children.length > FEED_LIMIT) feedList.lastChild.remove();
    updateFeedEmpty();
  }
  function updateFeedEmpty() {
    const shown = [...feedList.children].some((li) => filter === 'all' || li.classList.contains(filter));
    feedEmpty.hidden = shown;
  }

  // --- warnings (预警, 3.2): the active ones, each in its level's colour; a drill's marked 演练 ---------
  const warningsPanel = $('warnings-panel');
  const warningList = $('warnings');
  let warnings = [];
  function renderWarnings(list) {
    warnings = list || [];
    warningList.replaceChildren(...warnings.map((w) => el('li', { class: `warning ${w.level} ${w.drill ? 'drill' : 'live'}`, 'data-id': w.id, 'data-level': w.level },
      el('a', { href: `/warnings/${encodeURIComponent(w.id)}/page`, title: w.hazards },
        el('div', { class: 'w-head' }, el('span', { class: 'w-name', text: `${w.category}${w.level_name}预警` }),
          el('span', { class: 'w-grade', text: w.grade }), w.drill ? YJ.drillBadge() : null),
        el('div', { class: 'w-area', text: w.area.join('、') }),
        el('div', { class: 'w-sub', text: `${w.issuer} · 发布 ${YJ.dateTime(w.issued_at).slice(5, 16)}` })))));
    updateWarningsEmpty();
  }
  function updateWarningsEmpty() {
    $('warnings-empty').hidden = warnings.some((w) => filter === 'all' || (filter === 'drill') === w.drill);
  }

  // --- filter -------------------------------------------------------------------------------------
  function setFilter(value) {
    filter = value;
    localStorage.setItem('yj.board.filter', value);
    table.dataset.filter = value;
    warningsPanel.dataset.filter = value;
    updateWarningsEmpty();
    main.classList.toggle('hide-drill-feed', value === 'live');
    main.classList.toggle('hide-live-feed', value === 'drill');
    document.querySelectorAll('.segmented [data-filter]').forEach((b) => b.setAttribute('aria-pressed', String(b.dataset.filter === value)));
    updateFeedEmpty();
    tick();
  }
  document.querySelectorAll('[data-filter]').forEach((b) => {
    if (b.tagName === 'BUTTON') b.addEventListener('click', () => setFilter(b.dataset.filter));
  });

  // --- detail drawer ------------------------------------------------------------------------------
  let drawerTimer = null;
  async function showDetail(id) {
    const [inc, tl] = await Promise.all([YJ.api(`/incidents/${encodeURIComponent(id)}`), YJ.api(`/incidents/${encodeURIComponent(id)}/timeline`)]);
    if (selected !== id) return;
    const body = $('drawer-body');
    body.replaceChildren(inc.ok ? YJ.renderDetail(inc.body, tl.ok ? tl.body.events : []) : el('p', { text: YJ.statusMessage(inc) }));
    if (inc.ok) $('drawer-title').textContent = `${inc.body.decision ? inc.body.decision.type_name : inc.body.report.type}${inc.body.drill ? '（演练）' : ''}`;
  }
  function openDrawer(id) {
    if (selected && rows.get(selected)) rows.get(selected).tr.classList.remove('selected');
    selected = id;
    if (rows.get(id)) rows.get(id).tr.classList.add('selected');
    $('drawer-title').textContent = '事件详情';
    $('drawer-link').href = `/incidents/${encodeURIComponent(id)}/page`;
    $('drawer-body').replaceChildren(el('p', { class: 'hint', text: '加载中…' }));
    drawer.hidden = false;
    showDetail(id);
  }
  function closeDrawer() {
    drawer.hidden = true;
    if (selected && rows.get(selected)) rows.get(selected).tr.classList.remove('selected');
    selected = null;
  }
  function refreshDrawer(ids) {
    if (!selected || !ids.has(selected)) return;
    clearTimeout(drawerTimer);
    drawerTimer = setTimeout(() => showDetail(selected), 250);
  }
  tbody.addEventListener('click', (e) => { const tr = e.target.closest('tr[data-id]'); if (tr) openDrawer(tr.dataset.id); });
  feedList.addEventListener('click', (e) => { const li = e.target.closest('li[data-id]'); if (li) openDrawer(li.dataset.id); });
  $('drawer-close').addEventListener('click', closeDrawer);
  document.addEventListener('keydown', (e) => { if (e.key === 'Escape') closeDrawer(); });

  // --- server push --------------------------------------------------------------------------------
  let source = null;
  let lastSeen = Date.now();
  function setConn(state) {
    conn.dataset.state = state;
    conn.textContent = { live: '实时', connecting: '连接中…', retry: '连接中断，正在重连…', down: '连接已断开，稍后重试…' }[state];
  }
  function applySnapshot(data) { // the whole board at once: build, sort once, one DOM replace
    rows.clear();
    for (const r of data.rows) {
      noteDrillClock(r);
      const entry = buildRow(r);
      if (selected === r.id) entry.tr.classList.add('selected');
      rows.set(r.id, entry);
    }
    const ordered = [...rows.values()].sort((a, b) => (before(a, b) ? -1 : 1));
    tbody.replaceChildren(...ordered.map((e) => e.tr));
    feedList.replaceChildren();
    addFeed(data.feed, false);
    if (selected) refreshDrawer(new Set([selected]));
    renderWarnings(data.warnings);
  }
  function applyChanges(data) {
    if (data.warnings) renderWarnings(data.warnings);
    const ids = new Set();
    for (const r of data.rows) {
      ids.add(r.id);
      if (r.status === 'ended') remove(r.id); else upsert(r, true);
    }
    addFeed(data.feed, true);
    refreshDrawer(ids);
  }
  function connect() {
    if (source) source.close();
    setConn('connecting');
    lastSeen = Date.now();
    source = new EventSource('/board/stream');
    source.addEventListener('snapshot', (m) => {
      lastSeen = Date.now();
      const data = JSON.parse(m.data);
      YJ.setServerTime(data.server_time);
      applyDrills(data.drills);
      applySnapshot(data);
      setConn('live');
      tick();
    });
    source.addEventListener('changes', (m) => {
      lastSeen = Date.now();
      const data = JSON.parse(m.data);
      YJ.setServerTime(data.server_time);
      applyChanges(data);
      tick();
    });
    source.addEventListener('drills', (m) => {
      lastSeen = Date.now();
      const data = JSON.parse(m.data);
      YJ.setServerTime(data.server_time);
      applyDrills(data.drills);
      tick();
    });
    source.addEventListener('ping', (m) => { lastSeen = Date.now(); YJ.setServerTime(JSON.parse(m.data).server_time); });
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) { // refused (signed out, server error): try again ourselves
        setConn('down');
        source.close();
        setTimeout(probeAndReconnect, 3000);
      } else setConn('retry'); // the browser reconnects; the new stream starts with a snapshot
    };
  }
  async function probeAndReconnect() {
    try {
      const resp = await fetch('/incidents?limit=1', { credentials: 'same-origin', headers: { Accept: 'application/json' } });
      if (resp.status === 401) { YJ.signInAgain(); return; }
    } catch (e) { /* server away: connect() keeps trying */ }
    connect();
  }
  // a half-open connection (sleep, network change) sends nothing: the server pings every 15 s
  setInterval(() => { if (Date.now() - lastSeen > 40000) connect(); }, 5000);

  setFilter(filter);
  connect();
  setInterval(tick, 1000);
})();
