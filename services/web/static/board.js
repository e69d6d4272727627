/* The board (指挥中心态势大屏) at the size of a storm night (issue 21).

   Every open incident (and those ended today) is kept as data, by id, updated one at a time from the
   event stream. The page comes with its first screen of rows drawn by the server for its URL's view
   and filters (services/web/first_screen.py), painted before this script runs: the script takes those
   very rows over (#first-screen holds their data) and ticks them. The stream's first event is the
   same first screen (rows unchanged since keep their drawn node), then the counts, facets, map and
   charts are drawn when every row has come (`rows` events after it). What is drawn is only what is on
   screen: the table renders the rows in view (a window over the filtered, grouped, ordered list) and
   the one 1-second timer ticks only those.
   Filters (facets with counts), the search, the grouping and the view live in the URL, so a view can
   be shared and reopened. The map and the trends are drawn with ECharts (served from the project).
   Drill incidents carry a 演练 badge and are filtered, never mixed in silently. */
'use strict';

(() => {
  const { el } = YJ;
  const config = JSON.parse(document.getElementById('config').textContent);
  const $ = (id) => document.getElementById(id);
  const tbody = $('rows');
  const wrap = $('table-wrap');
  const vpad = $('vpad');
  const feedList = $('feed');
  const conn = $('conn');
  const drawer = $('drawer');

  const FEED_LIMIT = 100;
  const SOON_MS = 5 * 60 * 1000;
  const URGENT_MS = 60 * 1000;
  const DUE_SOON_MS = 10 * 60 * 1000;
  const ROW_H = 78; // every incident row is this tall (CSS .incidents tr.inc), so the window is arithmetic
  const GROUP_H = 40;
  const OVERSCAN = 8;
  const VIEWS = ['live', 'drill', 'all'];

  // --- the filters: facets, their values and what a row has of each ------------------------------
  const STATES = [
    ['overdue', '已超时'], ['due_soon', '10分钟内到期'], ['approval', '待批准上报'], ['undetermined', '等级未判明'],
    ['unacked', '通知未阅'], ['undeliverable', '通知无法送达'], ['new', '上次查看后新增'], ['ended_today', '今日已结束'],
  ];
  const FACETS = [ // [key, title, fixed values (plan order) or null for values seen in the rows]
    ['state', '状态', STATES.map(([v]) => v)],
    ['level', '响应级别', [...config.levels, '研判中']],
    ['grade', '事件等级', [...config.grades, '研判中']],
    ['category', '事件类别', [...config.categories, '研判中']],
    ['type', '事件类型', null],
    ['street', '属地街道乡镇', [...config.streets, '未明确']],
    ['unit', '牵头单位', null],
  ];
  const STATE_LABEL = Object.fromEntries(STATES);
  const FACET_TITLE = Object.fromEntries(FACETS.map(([k, t]) => [k, t]));
  const TOP = 10; // a facet of values seen in the rows shows this many until 展开

  const rows = new Map(); // id → entry {data, key, due, overdue, values, tr?, built?}
  const filters = Object.fromEntries(FACETS.map(([k]) => [k, new Set()]));
  let view = VIEWS.includes(localStorage.getItem('yj.board.filter')) ? localStorage.getItem('yj.board.filter') : config.default_filter;
  let query = '';
  let groupBy = '';
  const collapsed = new Set();
  const expandedFacets = new Set();
  let selected = null;
  const seenKey = `yj.board.seen.${config.user}`;
  let lastLook = Number(localStorage.getItem(seenKey)) || 0; // "new since I looked", per signed-in user
  const lookedAt = Date.now();

  // the URL holds the view: ?view=live&level=一级&street=宋庄镇&state=overdue&q=燃气&group=street
  function readUrl() {
    const p = new URLSearchParams(location.search);
    if (VIEWS.includes(p.get('view'))) view = p.get('view');
    for (const [k] of FACETS) for (const v of p.getAll(k)) if (v) filters[k].add(v);
    query = (p.get('q') || '').trim();
    groupBy = ['street', 'unit', 'level'].includes(p.get('group')) ? p.get('group') : '';
  }
  function writeUrl() {
    const p = new URLSearchParams();
    if (view !== config.default_filter) p.set('view', view);
    for (const [k] of FACETS) for (const v of filters[k]) p.append(k, v);
    if (query) p.set('q', query);
    if (groupBy) p.set('group', groupBy);
    const qs = p.toString();
    history.replaceState(null, '', qs ? `${location.pathname}?${qs}` : location.pathname);
  }

  // --- time ---------------------------------------------------------------------------------
  // Drill incidents live on their drill's simulated clock: the run's (sent each second while it
  // runs, extrapolated at its speed in between) or else the latest event of any drill incident.
  const drillClock = { sim: null, wall: 0 };
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
  const beijingDay = (ms) => new Date(ms + 8 * 3600 * 1000).toISOString().slice(0, 10);

  // --- an incident as the filters see it -----------------------------------------------------------
  function makeEntry(r) {
    let due = Infinity;
    for (const o of r.obligations) if (o.status === 'open' || o.status === 'missed') due = Math.min(due, Date.parse(o.due_at));
    return {
      data: r,
      ended: r.status === 'ended',
      receivedMs: Date.parse(r.received_at),
      due,
      values: {
        level: [r.level || '研判中'],
        grade: [r.grade || '研判中'],
        category: [r.category || '研判中'],
        type: [r.type],
        street: [r.street || '未明确'],
        unit: r.lead_units.length ? r.lead_units : ['研判中'],
      },
      text: [r.id, r.type, r.category, r.street || '', ...r.lead_units, ...r.key_area].join(' ').toLowerCase(),
      tr: null,
    };
  }
  function statesOf(e, now) { // the 状态 values an incident has now
    const r = e.data;
    const out = [];
    if (e.ended) {
      if (e.data.ended_at && beijingDay(Date.parse(e.data.ended_at)) === beijingDay(YJ.now())) out.push('ended_today');
      return out;
    }
    const t = r.drill ? drillNow(r.id) : now;
    if (r.breached || e.due < t) out.push('overdue');
    else if (e.due - t <= DUE_SOON_MS) out.push('due_soon');
    if (r.needs_approval) out.push('approval');
    if (r.grade === '未判明') out.push('undetermined');
    if (r.notices_unacked) out.push('unacked');
    if (r.notices_undeliverable) out.push('undeliverable');
    if (isNew(e)) out.push('new');
    return out;
  }
  const isNew = (e) => !e.data.drill && lastLook > 0 && e.receivedMs > lastLook;
  const inView = (r) => view === 'all' || (view === 'drill') === r.drill;
  function matchesQuery(e) {
    if (!query) return true;
    return query.toLowerCase().split(/\s+/).every((w) => e.text.includes(w));
  }
  const FACET_KEYS = FACETS.map(([k]) => k);
  function failing(e, states) { // a bit per facet the entry does not pass
    let mask = 0;
    for (let i = 0; i < FACET_KEYS.length; i += 1) {
      const k = FACET_KEYS[i];
      const chosen = filters[k];
      if (k === 'state') {
        if (chosen.size === 0 ? e.ended : !states.some((v) => chosen.has(v))) mask |= 1 << i;
      } else if (chosen.size && !e.values[k].some((v) => chosen.has(v))) mask |= 1 << i;
    }
    return mask;
  }
  // does an entry pass every facet but `skip`? (a facet's own counts ignore its own selection)
  function passes(e, states, skip) {
    for (const [k] of FACETS) {
      if (k === skip) continue;
      const chosen = filters[k];
      if (k === 'state') {
        if (chosen.size === 0) { if (e.ended) return false; continue; }
        if (!states.some((s) => chosen.has(s))) return false;
        continue;
      }
      if (chosen.size && !e.values[k].some((v) => chosen.has(v))) return false;
    }
    return true;
  }

  // --- the derived view: filtered, counted, grouped, ordered; recomputed at most once a frame -----
  let shown = []; // entries passing every filter, in order
  let items = []; // what the table lists: {group} headers and {entry} rows
  let offsets = [0]; // top of each item, and the total height last
  let facetCounts = {};
  let dirty = true;
  let frame = 0;
  let lastDraw = 0;
  const STREAM_DRAW_MS = 200; // changes from the stream are drawn at most this often (a storm sends many)
  let frameSoon = false;
  function invalidate(soon) {
    dirty = true;
    if (frame && (frameSoon || !soon)) return;
    if (frame) clearTimeout(frame); // a person's click does not wait behind the stream's pacing
    frameSoon = Boolean(soon);
    const wait = soon ? 0 : Math.max(0, STREAM_DRAW_MS - (performance.now() - lastDraw));
    frame = setTimeout(() => { frame = 0; draw(); }, wait);
  }

  function rank(e, now) { // what needs a person first: overdue (the highest level first), then due soonest, then level
    const r = e.data;
    const t = r.drill ? drillNow(r.id) : now;
    const overdue = !e.ended && (r.breached || e.due < t);
    const level = -(YJ.LEVEL_RANK[r.level] || 0);
    // on a storm night thousands are overdue: a 一级 one must not sit below every older 三级 one
    return [e.ended ? 2 : (overdue ? 0 : 1), overdue ? level : 0, e.due, level, -e.receivedMs];
  }
  function cmp(a, b) {
    for (let i = 0; i < a.key.length; i += 1) if (a.key[i] !== b.key[i]) return a.key[i] < b.key[i] ? -1 : 1;
    return a.data.id < b.data.id ? -1 : 1;
  }

  function recompute() {
    const now = YJ.now();
    const counts = Object.fromEntries(FACETS.map(([k]) => [k, new Map()]));
    const cells = new Map(); // per street, of the rows passing every filter but the street's: the map
    const out = [];
    let lives = 0; let drills = 0; let fresh = 0;
    for (const e of rows.values()) {
      const r = e.data;
      if (!e.ended) { if (r.drill) drills += 1; else lives += 1; }
      if (!inView(r) || !matchesQuery(e)) continue;
      const states = statesOf(e, now);
      e.states = states;
      if (!e.ended && isNew(e)) fresh += 1;
      e.key = rank(e, now);
      // which facets the incident fails: it counts in a facet's own counts when it fails none or only
      // that one (one pass over the facets, not one per facet)
      const fails = failing(e, states);
      if (fails !== 0 && (fails & (fails - 1)) !== 0) continue; // fails two or more: counted nowhere
      for (let i = 0; i < FACET_KEYS.length; i += 1) {
        if (fails !== 0 && fails !== (1 << i)) continue;
        const k = FACET_KEYS[i];
        const vals = k === 'state' ? states : e.values[k];
        const m = counts[k];
        for (let j = 0; j < vals.length; j += 1) m.set(vals[j], (m.get(vals[j]) || 0) + 1);
        if (k === 'street' && !e.ended) {
          const c = cells.get(vals[0]) || { n: 0, worst: 0, overdue: 0 };
          c.n += 1;
          c.worst = Math.max(c.worst, YJ.LEVEL_RANK[r.level] || 0);
          if (e.key[0] === 0) c.overdue += 1;
          cells.set(vals[0], c);
        }
      }
      if (fails === 0) out.push(e);
    }
    out.sort(cmp);
    shown = out;
    facetCounts = counts;
    cellFacts = cells;
    stats = { lives, drills, fresh };
    buildItems();
  }
  let stats = { lives: 0, drills: 0, fresh: 0 };

  function groupKeys(e) {
    if (groupBy === 'street') return e.values.street;
    if (groupBy === 'unit') return e.values.unit;
    if (groupBy === 'level') return e.values.level;
    return [];
  }
  function buildItems() {
    items = [];
    if (!groupBy) {
      for (const e of shown) items.push({ entry: e });
    } else {
      const groups = new Map();
      for (const e of shown) for (const g of groupKeys(e)) {
        let grp = groups.get(g);
        if (!grp) groups.set(g, grp = { key: g, entries: [], overdue: 0, l: { '一级': 0, '二级': 0, '三级': 0 }, worst: 0 });
        grp.entries.push(e);
        if (e.key[0] === 0) grp.overdue += 1;
        if (grp.l[e.data.level] !== undefined) grp.l[e.data.level] += 1;
        grp.worst = Math.max(grp.worst, YJ.LEVEL_RANK[e.data.level] || 0);
      }
      // the group that needs a person first comes first: overdue ones, then the highest level, then size
      const ordered = [...groups.values()].sort((a, b) => (Math.sign(b.overdue) - Math.sign(a.overdue))
        || (b.worst - a.worst) || (b.entries.length - a.entries.length) || (a.key < b.key ? -1 : 1));
      for (const g of ordered) {
        items.push({ group: g });
        if (!collapsed.has(`${groupBy}:${g.key}`)) for (const e of g.entries) items.push({ entry: e, group: g.key });
      }
    }
    offsets = new Array(items.length + 1);
    offsets[0] = 0;
    for (let i = 0; i < items.length; i += 1) offsets[i + 1] = offsets[i] + (items[i].group && !items[i].entry ? GROUP_H : ROW_H);
  }

  // --- drawing: the rows in view, the facets, the tiles, the map ----------------------------------
  const rendered = new Map(); // tr → entry, of the rows drawn now (the timer ticks only these)
  function firstItemAt(y) { // binary search over offsets
    let lo = 0; let hi = items.length;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (offsets[mid + 1] <= y) lo = mid + 1; else hi = mid; }
    return lo;
  }
  let windowKey = '';
  function drawWindow(force) {
    const top = Math.max(0, wrap.scrollTop - 40); // the sticky header's height
    const height = wrap.clientHeight || 800;
    const start = Math.max(0, firstItemAt(top) - OVERSCAN);
    const end = Math.min(items.length, firstItemAt(top + height) + OVERSCAN + 1);
    const key = `${start}:${end}`;
    if (!force && key === windowKey) return;
    windowKey = key;
    vpad.style.paddingTop = `${offsets[start]}px`;
    vpad.style.paddingBottom = `${offsets[items.length] - offsets[end]}px`;
    const nodes = [];
    const used = new Set();
    rendered.clear();
    const now = YJ.now();
    for (let i = start; i < end; i += 1) {
      const it = items[i];
      if (!it.entry) { nodes.push(groupRow(it.group)); continue; }
      const e = it.entry;
      let tr = e.tr;
      if (!tr || used.has(tr)) { tr = buildRow(e); if (!e.tr || !used.has(e.tr)) e.tr = tr; } // a row under two lead units is drawn twice
      used.add(tr);
      tr.classList.toggle('selected', selected === e.data.id);
      tr.classList.toggle('is-new', isNew(e));
      rendered.set(tr, e);
      tickRow(tr, e, now);
      nodes.push(tr);
    }
    placeRows(nodes);
  }
  // the rows in view put in the table, moving only what moved: a busy stream changes a few rows a draw,
  // and putting back all of them (replaceChildren) had the browser style and lay out the table anew
  function placeRows(nodes) {
    const kids = tbody.children;
    if (kids.length > nodes.length && nodes.every((n, i) => kids[i] === n)) { // the same rows, fewer after them
      while (kids.length > nodes.length) tbody.lastChild.remove();
      return;
    }
    if (kids.length === nodes.length) {
      const changed = [];
      for (let i = 0; i < nodes.length; i += 1) if (kids[i] !== nodes[i]) changed.push(i);
      if (changed.every((i) => nodes[i].parentNode !== tbody)) { // new nodes in place of old ones, no moves
        for (const i of changed) tbody.replaceChild(nodes[i], kids[i]);
        return;
      }
    }
    tbody.replaceChildren(...nodes);
  }

  // a group's header is one node for as long as the grouping lasts, its figures updated in place (the
  // overdue count moves as incidents fall due): a click on its toggle holds while the board is busy
  const groupRows = new Map(); // group id → {sig, tr, td, button}
  function groupRow(g) {
    const id = `${groupBy}:${g.key}`;
    const open = !collapsed.has(id);
    const sig = JSON.stringify([open, g.entries.length, g.overdue, g.l]);
    let kept = groupRows.get(id);
    if (kept && kept.sig === sig) return kept.tr;
    if (!kept) {
      const button = el('button', { type: 'button', class: 'g-toggle', 'data-group': id });
      const td = el('td', { colSpan: 7 }, button);
      kept = { tr: el('tr', { class: 'group', 'data-group': g.key }, td), td, button };
      groupRows.set(id, kept);
    }
    kept.sig = sig;
    kept.button.setAttribute('aria-expanded', String(open));
    setText(kept.button, `${open ? '▾' : '▸'} ${g.key}`);
    while (kept.td.lastChild !== kept.button) kept.td.lastChild.remove(); // the button itself stays put
    const levels = Object.entries(g.l).filter(([, n]) => n).map(([lv, n]) => el('span', { class: `badge level ${YJ.LEVEL_CLASS[lv]} mini`, text: `${lv} ${n}` }));
    kept.td.append(el('span', { class: 'g-count', text: `${g.entries.length} 起` }),
      ...(g.overdue ? [el('span', { class: 'badge g-overdue', text: `超时 ${g.overdue}` })] : []), ...levels);
    return kept.tr;
  }

  const STATUS_ORDER = { missed: 0, open: 1, late: 2, met: 3 };
  function buildRow(e) {
    const r = e.data;
    const tr = el('tr', { 'data-id': r.id, class: `inc ${r.drill ? 'drill' : 'live'}${r.breached ? ' breached' : ''}${e.ended ? ' ended' : ''}` });
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
      el('td', {}, el('div', { class: 'cell' },
        el('div', { class: 'ev-type' }, el('span', { class: 'new-mark', text: '新' }), r.type, r.drill ? [' ', YJ.drillBadge()] : null,
          e.ended ? [' ', el('span', { class: 'badge ended', text: '已结束' })] : null,
          r.needs_approval ? [' ', approvalBadge = el('span', { class: 'badge approval', text: '待批准上报', title: '向市应急办报告须经区应急委主任或副主任批准（4.1.3）' })] : null),
        el('div', { class: 'ev-sub' }, el('span', { text: r.category || '研判中' }), ' ', el('span', { class: 'ev-id', text: r.id })))),
      el('td', {}, r.grade ? el('span', { class: 'badge grade', text: r.grade }) : '—'),
      el('td', { class: 'place' }, el('div', { class: 'cell' }, el('div', { text: r.street || '未明确' }),
        r.key_area.length ? el('div', { class: 'ev-sub', text: r.key_area.join('、') }) : null)),
      el('td', { class: 'units' }, el('div', { class: 'cell' }, el('div', { class: 'lead', text: r.lead_units.join('、') || '—' }),
        cmd ? el('div', { class: 'cmd', title: r.commanders.map((c) => `${c.role}：${c.who}`).join('\n'), text: `${cmd.role}：${cmd.who}` }) : null)),
      el('td', { class: 'since' }, since, el('span', { class: 'at', text: `接报 ${YJ.dateTime(r.received_at).slice(5, 16)}` })),
      el('td', {}, el('div', { class: 'oblig' }, chipNodes.length ? chipNodes : el('span', { class: 'hint', text: r.status === 'reported' ? '研判中' : '无' }), noticeChips(r))),
    );
    tr.yj = { chips, since, sinceText: '', approvalBadge, approvalMs: r.approval_requested_at ? Date.parse(r.approval_requested_at) : null };
    return tr;
  }

  // a row the server drew (services/web/first_screen.py, as buildRow would): kept, its countdowns ticked
  function adoptRow(tr, e) {
    const chips = [...tr.querySelectorAll('.chip[data-due]')].map((node) => {
      const cd = node.querySelector('.cd');
      return { node, cd, due: Number(node.dataset.due), status: node.dataset.status, text: cd.textContent, cls: node.className };
    });
    const since = tr.querySelector('.ago');
    const r = e.data;
    tr.yj = { chips, since, sinceText: since.textContent, approvalBadge: tr.querySelector('.badge.approval'),
      approvalMs: r.approval_requested_at ? Date.parse(r.approval_requested_at) : null };
    return tr;
  }

  function noticeChips(r) { // what became of the incident's notices: none reached, none read yet
    const chips = [];
    if (r.notices_undeliverable) chips.push(el('span', { class: 'chip notice undeliverable', title: '通知各渠道均未能送达（或无人值班），已按升级顺序通知上一级', text: `无法送达 ${r.notices_undeliverable}` }));
    if (r.notices_unacked) chips.push(el('span', { class: 'chip notice unacked', title: '已发出、尚无人点「已阅」的通知', text: `未阅 ${r.notices_unacked}` }));
    return chips.length ? el('span', { class: 'notice-chips' }, chips) : null;
  }

  function tickRow(tr, e, live) {
    const r = e.data;
    const y = tr.yj;
    const t = r.drill ? drillNow(r.id) : live;
    const since = YJ.ago(t - e.receivedMs);
    if (since !== y.sinceText) { y.since.textContent = since; y.sinceText = since; }
    if (y.approvalBadge && y.approvalMs) { // the wait for approval, counted (4.1.3)
      const waited = `待批准上报 · 已等 ${YJ.ago(t - y.approvalMs)}`;
      if (y.approvalBadge.textContent !== waited) y.approvalBadge.textContent = waited;
    }
    for (const c of y.chips) {
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

  function facetButton(k, v, n) {
    const label = k === 'state' ? STATE_LABEL[v] : v;
    const on = filters[k].has(v);
    const b = el('button', { type: 'button', class: `facet-v${n ? '' : ' zero'}`, 'data-facet': k, 'data-value': v, 'aria-pressed': String(on), title: `${FACET_TITLE[k]}：${label}` },
      el('span', { class: 'fv', text: label }), el('span', { class: 'n', text: String(n) }));
    facetButtons.set(`${k}\u0000${v}`, b);
    return b;
  }
  let facetsKey = '';
  const facetButtons = new Map(); // `${facet}\u0000${value}` → its button, to update a count in place
  function drawFacets() {
    const parts = [];
    for (const [k, title, fixed] of FACETS) {
      const counts = facetCounts[k];
      let values = fixed ? fixed.filter((v) => counts.get(v) || filters[k].has(v) || (k !== 'category' && v !== '研判中' && v !== '未明确'))
        : [...counts.keys()].sort((a, b) => (counts.get(b) - counts.get(a)) || (a < b ? -1 : 1));
      for (const v of filters[k]) if (!values.includes(v)) values.push(v); // a chosen value stays, even at 0
      const more = !fixed && values.length > TOP && !expandedFacets.has(k);
      if (more) values = values.filter((v, i) => i < TOP || filters[k].has(v));
      parts.push([k, title, values.map((v) => [v, counts.get(v) || 0]), more]);
    }
    // the buttons are rebuilt only when which ones there are (or which are pressed) changes: a busy
    // stream moves the counts every draw, and a button replaced between press and release loses the click
    const key = JSON.stringify(parts.map(([k, , values, more]) => [k, values.map(([v]) => v), [...filters[k]], more]));
    if (key === facetsKey) {
      for (const [k, , values] of parts) for (const [v, n] of values) {
        const b = facetButtons.get(`${k}\u0000${v}`);
        if (b) { setText(b.lastChild, String(n)); b.classList.toggle('zero', !n); }
      }
      return;
    }
    facetsKey = key;
    facetButtons.clear();
    $('facets').replaceChildren(...parts.map(([k, title, values, more]) => el('section', { class: 'facet', 'data-facet': k },
      el('h3', {}, title, filters[k].size ? el('button', { type: 'button', class: 'facet-clear', 'data-clear': k, text: '清除' }) : null),
      el('div', { class: 'facet-values' }, values.map(([v, n]) => facetButton(k, v, n))),
      more ? el('button', { type: 'button', class: 'facet-more', 'data-more': k, text: '展开全部' }) : null)));
  }

  function setText(node, text) { if (node.textContent !== text) node.textContent = text; }
  function drawTiles() {
    if (!complete) return; // the counts are every row's: they wait for the whole snapshot
    const now = YJ.now();
    const sum = { open: 0, l1: 0, l2: 0, l3: 0, breach: 0, due: 0 };
    for (const e of shown) {
      if (e.ended) continue;
      sum.open += 1;
      const lv = YJ.LEVEL_CLASS[e.data.level];
      if (lv) sum[lv] += 1;
      if (e.data.breached) sum.breach += 1;
      const t = refNow(e.data);
      if (e.due >= t && e.due - t <= DUE_SOON_MS) sum.due += 1;
    }
    for (const k of Object.keys(sum)) setText($(`sum-${k}`), String(sum[k]));
    $('sum-breach').parentNode.classList.toggle('active', sum.breach > 0);
    setText($('count-live'), String(stats.lives));
    setText($('count-drill'), String(stats.drills));
    setText($('count-all'), String(stats.lives + stats.drills));
    setText($('shown-count'), String(shown.length));
    setText($('new-count'), String(stats.fresh));
    $('new-since').classList.toggle('active', filters.state.has('new'));
    const filtered = query || FACETS.some(([k]) => filters[k].size);
    $('clear-filters').hidden = !filtered;
    $('empty').hidden = shown.length > 0;
    setText($('empty'), filtered ? '没有符合当前筛选的事件' : '当前视图无进行中的事件');
    const running = [...runs.values()].filter((run) => run.running);
    $('drill-banner').hidden = stats.drills === 0 && running.length === 0;
    $('drill-hidden-note').hidden = view !== 'live';
    $('drill-banner').querySelector('button').hidden = view === 'drill';
    if (running.length) {
      setText($('drill-text'), `演练进行中：${running.map((run) => `「${run.name}」${run.speed}倍速，模拟时间 ${YJ.dateTime(runNow(run))}`).join('；')}；演练事件 ${stats.drills} 起`);
    } else if (stats.drills) {
      setText($('drill-text'), `演练事件 ${stats.drills} 起，模拟时间 ${YJ.dateTime(drillNow())}（按最近的演练记录）`);
    }
  }

  let firstPaint = false;
  let echartsAsked = false;
  // the map and the trends after the first rows: ECharts (1 MB, served from the project) is fetched
  // and run only then, and its first drawing takes a few hundred ms of the main thread
  function afterFirstRows() {
    const script = document.createElement('script');
    script.src = '/static/vendor/echarts.min.js';
    const then = () => { loadMap(); drawTrends(lastTrends); };
    script.addEventListener('load', then, { once: true });
    script.addEventListener('error', then, { once: true }); // not served (make web-assets): loadMap says so
    document.head.append(script);
  }
  // Before every row has come, what the first event brought is the top of the list when it fills the
  // screen, or when the server kept no more than it sent (`cut`): the server orders as rank() does and
  // keeps every row this page's filters keep. Grouped, the headers count every row: they wait.
  // A view or filter changed meanwhile is not the one the stream was asked for: the rows wait.
  function firstScreenKnown() {
    return !groupBy && !firstStale && (!firstCut || shown.length >= Math.ceil((wrap.clientHeight || 800) / ROW_H));
  }
  function draw() {
    lastDraw = performance.now();
    if (dirty) {
      recompute();
      if (!firstPaint && snapshotSeen) performance.mark(complete ? 'yj:computed' : 'yj:computed-first');
      dirty = false;
      if (complete) { drawFacets(); drawMap(); }
      if (feedDirty) drawFeed();
    }
    const known = complete || (snapshotSeen && firstScreenKnown());
    if (known) drawWindow(true);
    else if (tbody.firstChild) { rendered.clear(); placeRows([]); }
    drawTiles();
    if (!firstPaint && known) {
      firstPaint = true;
      performance.mark('yj:first-rows'); // the page benchmark reads it (tests/bench)
    }
    // ECharts (its script, its first drawing: a few hundred ms) once the rows are up and the stream
    // has begun: not in the way of the first rows, nor of the stream's first event
    if (firstPaint && streamSeen && !echartsAsked) { echartsAsked = true; setTimeout(afterFirstRows, 0); }
    if (complete && !allDrawn) {
      allDrawn = true;
      performance.mark('yj:all-rows'); // every row in, counted and drawn (tests/bench)
      setConn('live');
    }
  }

  // --- the map (ECharts): the district's real outline, the streets as a schematic grid -------------
  let map = null; let mapData = null; let mapKey = '';
  const MAP_EVERY_MS = 1000;
  let mapPainted = -Infinity; let mapTimer = 0;
  const WARN_COLOUR = { blue: '#1e88e5', yellow: '#fdd835', orange: '#fb8c00', red: '#e53935' };
  const LEVEL_FILL = { 3: '#d32f2f', 2: '#f57c00', 1: '#fbc02d', 0: '#2c5a86' };
  // The grid's version last asked for (the plan's `map`): a revision's is fetched anew. An answer for a version no
  // longer the plan's (a rollback while it was on its way, answers out of order) is dropped and the map asked again.
  let mapWanted = null;
  async function loadMap() {
    const version = planShown.map || '';
    mapWanted = version;
    const resp = await YJ.api(`/board/map.json?v=${encodeURIComponent(version)}`);
    if (mapWanted !== version) return; // a later ask is on its way: its answer draws
    if ((planShown.map || '') !== version) { loadMap(); return; }
    if (!resp.ok) { setText($('map-note'), '态势图暂不可用'); return; }
    mapData = resp.body;
    setText($('map-note'), `示意图：${mapData.credit}`);
    if (!window.echarts) { setText($('map-note'), `态势图组件未加载（运行 make web-assets）。${mapData.credit}`); drawMap(); return; }
    echarts.registerMap('tongzhou', mapData.outline);
    if (!map) {
      map = echarts.init($('map'), null, { renderer: 'canvas' });
      map.on('click', (p) => { if (p.data && p.data.street) toggle('street', p.data.street); });
      window.addEventListener('resize', () => map && map.resize());
    }
    mapKey = '';
    drawMap();
  }
  // per street, the open incidents passing every filter but the street's (so a chosen street leaves the
  // others on the map, and a street's figure is its facet count): how many, the worst level, overdue
  let cellFacts = new Map();
  function warningOf(streetId) { // the highest active warning on a street, or on the whole district
    let best = null;
    for (const w of warnings) {
      if (!inView(w)) continue;
      const here = w.area_ids.includes(streetId) || !w.area_ids.some((a) => mapData.street_ids.has(a));
      if (here && (!best || w.rank > best.rank)) best = w;
    }
    return best;
  }
  function drawMap() {
    if (!mapData || !complete) return;
    if (!mapData.street_ids) mapData.street_ids = new Set(mapData.cells.map((c) => c.street_id));
    const per = cellFacts;
    const cells = mapData.cells.map((c) => {
      const f = per.get(c.name) || { n: 0, worst: 0, overdue: 0 };
      const w = warningOf(c.street_id);
      return { street: c.name, id: c.street_id, bbox: c.bbox, n: f.n, worst: f.worst, overdue: f.overdue,
        warning: w ? w.level : null, chosen: filters.street.has(c.name) };
    });
    const key = JSON.stringify(cells);
    if (key === mapKey) return;
    mapKey = key;
    // the same figures as a list, for screen readers (and the tests)
    $('map-cells').replaceChildren(...cells.map((c) => el('li', { 'data-street': c.street, 'data-count': String(c.n), 'data-warning': c.warning || '' },
      `${c.street} ${c.n} 起${c.worst ? `，最高${['', '三级', '二级', '一级'][c.worst]}响应` : ''}${c.warning ? `，${c.warning}预警` : ''}`)));
    if (!map) return;
    // the canvas at most once a second (a storm moves the counts every draw; the list above is current)
    const wait = MAP_EVERY_MS - (performance.now() - mapPainted);
    if (wait > 0) {
      if (!mapTimer) mapTimer = setTimeout(() => { mapTimer = 0; mapKey = ''; drawMap(); }, wait);
      return;
    }
    mapPainted = performance.now();
    const data = cells.map((c) => ({ name: c.street, street: c.street, value: c.bbox, n: c.n, worst: c.worst, overdue: c.overdue, warning: c.warning, chosen: c.chosen }));
    map.setOption({
      animation: false,
      tooltip: { formatter: (p) => (p.data && p.data.street ? `${p.data.street}：${p.data.n} 起${p.data.overdue ? `（超时 ${p.data.overdue}）` : ''}${p.data.warning ? `<br>生效预警：${p.data.warning}` : ''}` : '') },
      geo: { map: 'tongzhou', roam: false, silent: true, top: 8, bottom: 8, left: 8, right: 8,
        itemStyle: { areaColor: '#122132', borderColor: '#6f8bab', borderWidth: 1.5 } },
      series: [{
        type: 'custom', coordinateSystem: 'geo', data, animation: false,
        renderItem(params, api) {
          const d = data[params.dataIndex];
          const [x0, y0] = api.coord([d.value[0], d.value[3]]);
          const [x1, y1] = api.coord([d.value[2], d.value[1]]);
          const fill = d.n ? LEVEL_FILL[d.worst] : '#1a2d44';
          return { type: 'group', children: [
            { type: 'rect', shape: { x: x0, y: y0, width: x1 - x0, height: y1 - y0, r: 3 },
              style: { fill, opacity: d.n ? 0.92 : 0.55, stroke: d.warning ? WARN_COLOUR[d.warning] : (d.chosen ? '#ffffff' : '#3d5a7a'), lineWidth: d.warning ? 4 : (d.chosen ? 3 : 1) } },
            { type: 'text', style: { x: (x0 + x1) / 2, y: (y0 + y1) / 2, text: `${d.street.replace(/(街道|镇|回族乡)$/, '')}\n${d.n}`,
              fill: d.n && d.worst >= 1 && d.worst <= 2 ? '#1a1a1a' : '#ffffff', fontSize: 11, align: 'center', verticalAlign: 'middle', lineHeight: 13 } },
          ] };
        },
      }],
    }, true);
  }

  // --- trends (ECharts): incidents per hour by level; breaches and 督办 per hour ---------------------
  let trendCharts = null;
  let lastTrends = null; // drawn again once ECharts has loaded (it comes after this script)
  function drawTrends(t) {
    if (!t || !window.echarts || !firstPaint) return; // after the first rows (afterFirstRows draws it then)
    if (!trendCharts) trendCharts = [echarts.init($('trend-incidents'), null, { renderer: 'canvas' }), echarts.init($('trend-breaches'), null, { renderer: 'canvas' })];
    const hours = t.hours.map((h) => YJ.time(h).slice(0, 2));
    const axis = { type: 'category', data: hours, axisLabel: { color: '#9fb0c4', fontSize: 10, interval: 3 }, axisLine: { lineStyle: { color: '#2c3e55' } } };
    const yAxis = { type: 'value', minInterval: 1, axisLabel: { color: '#9fb0c4', fontSize: 10 }, splitLine: { lineStyle: { color: '#223246' } } };
    const colours = { '一级': '#d32f2f', '二级': '#f57c00', '三级': '#fbc02d', '研判中': '#607d8b' };
    trendCharts[0].setOption({
      animation: false, grid: { left: 32, right: 8, top: 26, bottom: 20 }, tooltip: { trigger: 'axis' },
      legend: { top: 0, textStyle: { color: '#e8eef5', fontSize: 11 }, itemWidth: 12, itemHeight: 8 },
      xAxis: axis, yAxis,
      series: Object.entries(t.incidents).map(([lv, data]) => ({ name: lv === '研判中' ? lv : `${lv}响应`, type: 'bar', stack: 'n', data, itemStyle: { color: colours[lv] } })),
    });
    trendCharts[1].setOption({
      animation: false, grid: { left: 32, right: 8, top: 26, bottom: 20 }, tooltip: { trigger: 'axis' },
      legend: { top: 0, textStyle: { color: '#e8eef5', fontSize: 11 }, itemWidth: 12, itemHeight: 8 },
      xAxis: axis, yAxis,
      series: [{ name: '超时未报', type: 'line', data: t.breaches, itemStyle: { color: '#ff5252' }, symbolSize: 4 },
        { name: '督办（逐级上报）', type: 'line', data: t.escalations, itemStyle: { color: '#ffab91' }, symbolSize: 4 }],
    });
  }

  // --- feed: filtered like the table ------------------------------------------------------------------
  let feed = []; // newest last
  function feedTitle(f) {
    if (f.kind === 'escalation') return `逐级上报${f.step ? ` 第${f.step}步` : ''}`;
    return YJ.EVENT_KIND[f.kind] || f.kind;
  }
  function feedMatches(f) {
    const e = rows.get(f.incident_id);
    if (e) return inView(e.data) && matchesQuery(e) && passes(e, e.states || [], 'state');
    if (!inView(f)) return false; // an incident no longer on the board: its own facts
    const vals = { level: [f.level || '研判中'], street: [f.street || '未明确'], type: [f.type], unit: f.lead_units && f.lead_units.length ? f.lead_units : ['研判中'] };
    return Object.entries(vals).every(([k, v]) => !filters[k].size || v.some((x) => filters[k].has(x)));
  }
  let feedDirty = true; // new items, or what the feed is filtered by changed
  function drawFeed() {
    feedDirty = false;
    const list = feed.filter(feedMatches).slice(-FEED_LIMIT).reverse();
    feedList.replaceChildren(...list.map((f) => el('li', { class: `${f.kind} ${f.drill ? 'drill' : 'live'}${f.fresh ? ' fresh' : ''}`, 'data-id': f.incident_id, role: 'button' },
      el('div', { class: 'f-head' }, el('span', { class: 'f-kind', text: feedTitle(f) }), f.drill ? YJ.drillBadge() : null,
        el('span', { class: 'f-time', text: YJ.time(f.recorded_at), title: `记录于 ${YJ.dateTime(f.recorded_at)}` })),
      el('div', { class: 'f-what', text: `${f.type}${f.street ? ` · ${f.street}` : ''}` }),
      el('div', { class: 'f-reason', text: YJ.readable(f.reason) }))));
    for (const f of list) f.fresh = false;
    $('feed-empty').hidden = list.length > 0;
    setText($('feed-scope'), FACETS.some(([k]) => k !== 'state' && filters[k].size) || query ? '按当前筛选' : '');
  }
  function addFeed(list, fresh) {
    if (list.length) feedDirty = true;
    for (const f of list) { f.fresh = fresh; feed.push(f); }
    if (feed.length > 4 * FEED_LIMIT) feed = feed.slice(-2 * FEED_LIMIT);
  }

  // --- warnings (预警, 3.2): a strip above the table, each in its level's colour; a drill's marked 演练 ----
  const warningsPanel = $('warnings-panel');
  let warnings = [];
  function renderWarnings(list) {
    warnings = list || [];
    $('warnings').replaceChildren(...warnings.map((w) => el('li', { class: `warning ${w.level} ${w.drill ? 'drill' : 'live'}`, 'data-id': w.id, 'data-level': w.level },
      el('a', { href: `/warnings/${encodeURIComponent(w.id)}/page`, title: w.hazards },
        el('div', { class: 'w-head' }, el('span', { class: 'w-name', text: `${w.category}${w.level_name}预警` }),
          el('span', { class: 'w-grade', text: w.grade }), w.drill ? YJ.drillBadge() : null),
        el('div', { class: 'w-area', text: w.area.join('、') }),
        el('div', { class: 'w-sub', text: `${w.issuer} · 发布 ${YJ.dateTime(w.issued_at).slice(5, 16)}` })))));
    updateWarningsEmpty();
    mapKey = '';
    invalidate();
  }
  function updateWarningsEmpty() { $('warnings-empty').hidden = warnings.some(inView); }

  // --- the plan in force (预案版本, issue 24 item 3): the header, drawn again from the stream's `plan` ---------
  // A change while the board is open (a revision adopted, or a rollback) also raises a notice that stays
  // until someone on duty dismisses it (知道了): a revision adopted at 02:00 is seen by the next shift too.
  let planShown = config.plan;
  const planKey = (p) => `${p.version} ${p.adoption || ''}`;
  function drawPlan(p) {
    setText($('plan-version'), p.version);
    const detail = $('plan-detail');
    if (!p.adoption) { detail.replaceChildren('随服务发布的版本'); detail.removeAttribute('title'); return; }
    const back = p.rollback_of ? el('span', { class: 'badge rollback', text: p.rollback_of === 'shipped' ? '回退至随服务发布的版本' : '回退' }) : null;
    detail.replaceChildren(...[back, `采纳于 ${YJ.dateTime(p.adopted_at).slice(5, 16)}，${p.adopted_by}，原因：${p.reason}`].filter(Boolean));
    detail.title = p.reason;
  }
  function applyPlan(p, serverTime) {
    if (planKey(p) !== planKey(planShown)) {
      setText($('plan-notice-text'), `预案已${p.rollback_of ? '回退' : '修订'}：版本 ${p.version} 自 ${YJ.time(serverTime).slice(0, 5)} 起生效`);
      const shown = p.changes || [];
      const more = (p.changes_total || 0) - shown.length;
      setText($('plan-notice-changes'), shown.length ? `修订内容：${shown.join('；')}${more > 0 ? `；另有 ${more} 项（见预案修订推演页）` : ''}` : '');
      $('plan-notice').hidden = false;
    }
    planShown = p;
    drawPlan(p);
    if (mapWanted !== null && (p.map || '') !== mapWanted) loadMap(); // the grid changed: its streets
  }
  $('plan-notice-close').addEventListener('click', () => { $('plan-notice').hidden = true; });

  // --- controls -------------------------------------------------------------------------------------
  function changed() {
    if (snapshotSeen && !complete) firstStale = true;
    writeUrl(); windowKey = ''; feedDirty = true; invalidate(true);
  }
  function toggle(k, v) {
    if (filters[k].has(v)) filters[k].delete(v); else filters[k].add(v);
    wrap.scrollTop = 0;
    changed();
  }
  function setView(value) {
    view = value;
    localStorage.setItem('yj.board.filter', value);
    warningsPanel.dataset.filter = value;
    updateWarningsEmpty();
    document.querySelectorAll('.segmented [data-view]').forEach((b) => b.setAttribute('aria-pressed', String(b.dataset.view === value)));
    mapKey = '';
    changed();
  }
  document.querySelectorAll('[data-view]').forEach((b) => b.addEventListener('click', () => setView(b.dataset.view)));
  $('facets').addEventListener('click', (ev) => {
    const b = ev.target.closest('button');
    if (!b) return;
    if (b.dataset.facet) toggle(b.dataset.facet, b.dataset.value);
    else if (b.dataset.clear) { filters[b.dataset.clear].clear(); changed(); }
    else if (b.dataset.more) { expandedFacets.add(b.dataset.more); facetsKey = ''; invalidate(true); }
  });
  $('clear-filters').addEventListener('click', () => { for (const [k] of FACETS) filters[k].clear(); query = ''; $('q').value = ''; changed(); });
  let qTimer = null;
  $('q').addEventListener('input', () => { clearTimeout(qTimer); qTimer = setTimeout(() => { query = $('q').value.trim(); wrap.scrollTop = 0; changed(); }, 150); });
  $('group').addEventListener('change', () => { groupBy = $('group').value; wrap.scrollTop = 0; changed(); });
  $('new-since').addEventListener('click', () => toggle('state', 'new'));
  $('mark-seen').addEventListener('click', () => {
    lastLook = YJ.now();
    localStorage.setItem(seenKey, String(lastLook));
    filters.state.delete('new');
    for (const e of rows.values()) e.tr = null;
    changed();
  });
  // leaving the page counts as having looked: the next visit marks what came after
  document.addEventListener('visibilitychange', () => { if (document.visibilityState === 'hidden') localStorage.setItem(seenKey, String(Math.max(lookedAt, YJ.now()))); });
  let scrollFrame = 0;
  wrap.addEventListener('scroll', () => { if (!scrollFrame) scrollFrame = requestAnimationFrame(() => { scrollFrame = 0; drawWindow(false); }); }, { passive: true });
  window.addEventListener('resize', () => drawWindow(true));

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
    selected = id;
    for (const tr of tbody.children) tr.classList.toggle('selected', tr.dataset.id === id);
    $('drawer-title').textContent = '事件详情';
    $('drawer-link').href = `/incidents/${encodeURIComponent(id)}/page`;
    $('drawer-body').replaceChildren(el('p', { class: 'hint', text: '加载中…' }));
    drawer.hidden = false;
    showDetail(id);
  }
  function closeDrawer() {
    drawer.hidden = true;
    selected = null;
    for (const tr of tbody.children) tr.classList.remove('selected');
  }
  function refreshDrawer(ids) {
    if (!selected || !ids.has(selected)) return;
    clearTimeout(drawerTimer);
    drawerTimer = setTimeout(() => showDetail(selected), 250);
  }
  tbody.addEventListener('click', (ev) => {
    const toggleBtn = ev.target.closest('button.g-toggle');
    if (toggleBtn) {
      const id = toggleBtn.dataset.group;
      if (collapsed.has(id)) collapsed.delete(id); else collapsed.add(id);
      windowKey = ''; invalidate(true);
      return;
    }
    const tr = ev.target.closest('tr[data-id]');
    if (tr) openDrawer(tr.dataset.id);
  });
  feedList.addEventListener('click', (ev) => { const li = ev.target.closest('li[data-id]'); if (li) openDrawer(li.dataset.id); });
  $('drawer-close').addEventListener('click', closeDrawer);
  document.addEventListener('keydown', (ev) => { if (ev.key === 'Escape') closeDrawer(); });

  // --- the data ----------------------------------------------------------------------------------------
  function keep(r) { // an ended incident stays only the day it ended (今日已结束), a drill's not at all
    return r.status !== 'ended' || (!r.drill && r.ended_at && beijingDay(Date.parse(r.ended_at)) === beijingDay(YJ.now()));
  }
  function upsert(r, into = rows, before = null) {
    noteDrillClock(r);
    if (!keep(r)) { into.delete(r.id); return; }
    // a row drawn inline and unchanged since keeps its entry and its drawn node: no redraw
    const old = before && before.get(r.id);
    into.set(r.id, old && old.sig !== undefined && old.sig === JSON.stringify(r) ? old : makeEntry(r));
  }
  // The first screen the server drew in the page (services/web/first_screen.py): its rows as data, the
  // drawn rows taken over as they are, when ranked for this page's own view, filters and search (its
  // view may be its localStorage's, which the server did not see); otherwise put away, the stream draws.
  function applyInline() {
    const node = $('first-screen');
    if (!node) return;
    const first = JSON.parse(node.textContent);
    const mine = { view, filters: Object.fromEntries(FACETS.map(([k]) => [k, [...filters[k]].sort()]).filter(([, v]) => v.length)), q: query };
    if (groupBy || JSON.stringify(mine) !== JSON.stringify(first.query)) { // and the figures counted for that view
      tbody.replaceChildren();
      for (const id of ['sum-open', 'sum-l1', 'sum-l2', 'sum-l3', 'sum-breach', 'sum-due', 'shown-count']) $(id).textContent = '…';
      $('sum-breach').parentNode.classList.remove('active');
      return;
    }
    YJ.setServerTime(first.server_time);
    applyDrills(first.drills);
    const drawn = new Map([...tbody.querySelectorAll('tr.inc')].map((tr) => [tr.dataset.id, tr]));
    for (const r of first.rows) {
      upsert(r);
      const e = rows.get(r.id);
      if (!e) continue;
      e.sig = JSON.stringify(r);
      const tr = drawn.get(r.id);
      if (tr) e.tr = adoptRow(tr, e);
    }
    snapshotSeen = true;
    firstCut = Boolean(first.cut);
    performance.mark('yj:inline');
  }
  // A snapshot is a `snapshot` event (the first screen of rows, the feed, the warnings; `more` rows to
  // come) and `rows` events until `more` is 0. The first one fills `rows` as it comes, the first screen
  // drawn at once; a later one (a reconnection) is gathered aside and replaces `rows` when whole, the
  // board meanwhile as it was.
  let snapshotSeen = false; // the first screen came: drawn inline, or the stream's first event
  let streamSeen = false; // the stream's first snapshot event came
  let adoptable = null; // while the first snapshot comes in: the entries before it, kept where unchanged
  let complete = false; // `rows` holds a whole snapshot: the counts are drawn
  let allDrawn = false;
  let firstCut = true; // the first event held fewer rows than the stream's filters kept
  let firstStale = false; // the view or filters changed before every row had come
  let loading = null; // the snapshot coming in: the Map its rows go to
  function applySnapshot(data) {
    if (complete) loading = new Map();
    else { adoptable = new Map(rows); rows.clear(); loading = rows; firstCut = Boolean(data.cut); }
    for (const r of data.rows) upsert(r, loading, adoptable);
    feed = [];
    feedDirty = true;
    addFeed(data.feed, false);
    renderWarnings(data.warnings);
    if (!streamSeen) performance.mark('yj:applied');
    snapshotSeen = true;
    streamSeen = true;
    if (!data.more) finishSnapshot();
    else if (!complete) { windowKey = ''; invalidate(true); }
  }
  function applyRows(data) {
    if (!loading) return;
    for (const r of data.rows) upsert(r, loading, adoptable);
    if (!data.more) finishSnapshot();
  }
  function finishSnapshot() {
    if (loading !== rows) { rows.clear(); for (const [id, e] of loading) rows.set(id, e); }
    loading = null;
    adoptable = null;
    complete = true;
    if (selected) refreshDrawer(new Set([selected]));
    windowKey = '';
    invalidate(true);
  }
  function applyChanges(data) {
    if (data.warnings) renderWarnings(data.warnings);
    const ids = new Set();
    for (const r of data.rows) { ids.add(r.id); upsert(r); }
    addFeed(data.feed, true);
    refreshDrawer(ids);
    invalidate();
  }

  // --- server push --------------------------------------------------------------------------------
  let source = null;
  let lastSeen = Date.now();
  function setConn(state) {
    conn.dataset.state = state;
    conn.textContent = { live: '实时', connecting: '连接中…', retry: '连接中断，正在重连…', down: '连接已断开，稍后重试…' }[state];
  }
  function connect() {
    if (source) source.close();
    setConn('connecting');
    lastSeen = Date.now();
    if (!streamSeen) performance.mark('yj:connect');
    // the view, filters and search go with the stream: its first event is this page's first screen
    const p = new URLSearchParams({ view });
    for (const [k] of FACETS) for (const v of filters[k]) p.append(k, v);
    if (query) p.set('q', query);
    source = new EventSource(`/board/stream?${p}`);
    const on = (name, fn) => source.addEventListener(name, (m) => {
      lastSeen = Date.now();
      if (name === 'snapshot' && !streamSeen) performance.mark('yj:snapshot'); // the page benchmark reads it
      const data = JSON.parse(m.data);
      if (name === 'snapshot' && !streamSeen) performance.mark('yj:parsed');
      YJ.setServerTime(data.server_time);
      fn(data);
    });
    on('snapshot', (data) => { applyDrills(data.drills); applySnapshot(data); if (allDrawn) setConn('live'); });
    on('rows', applyRows);
    on('changes', applyChanges);
    on('drills', (data) => { applyDrills(data.drills); drawTiles(); });
    on('plan', (data) => applyPlan(data.plan, data.server_time));
    on('trends', (data) => drawTrends(lastTrends = data.trends));
    on('ping', () => {});
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

  // the one timer: countdowns of the rows drawn, the tiles; the order and counts again every 5 s
  // (overdue and due-soon change with time alone)
  let ticks = 0;
  setInterval(() => {
    ticks += 1;
    if (ticks % 5 === 0) { dirty = true; feedDirty = true; draw(); return; }
    const now = YJ.now();
    for (const [tr, e] of rendered) tickRow(tr, e, now);
    drawTiles();
  }, 1000);

  readUrl();
  $('q').value = query;
  $('group').value = groupBy;
  setView(view);
  drawPlan(planShown);
  applyInline();
  connect();

})();
