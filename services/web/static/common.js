/* yingji pages: shared helpers. Times shown in Asia/Shanghai; countdowns use the server's clock. */
'use strict';

const YJ = (() => {
  const TZ = 'Asia/Shanghai';
  const parts = new Intl.DateTimeFormat('zh-CN', {
    timeZone: TZ, year: 'numeric', month: '2-digit', day: '2-digit',
    hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23',
  });
  let skewMs = 0; // server clock minus this browser's clock

  function setServerTime(iso) {
    const t = Date.parse(iso);
    if (!Number.isNaN(t)) skewMs = t - Date.now();
  }
  function now() { return Date.now() + skewMs; }

  function fields(ms) {
    const out = {};
    for (const p of parts.formatToParts(new Date(ms))) out[p.type] = p.value;
    return out;
  }
  /** 2026-11-25 19:20:05 (北京时间) */
  function dateTime(iso) {
    if (!iso) return '—';
    const f = fields(typeof iso === 'number' ? iso : Date.parse(iso));
    return `${f.year}-${f.month}-${f.day} ${f.hour}:${f.minute}:${f.second}`;
  }
  function time(iso) {
    if (!iso) return '—';
    const f = fields(typeof iso === 'number' ? iso : Date.parse(iso));
    return `${f.hour}:${f.minute}:${f.second}`;
  }
  /** value for <input type=datetime-local> in Beijing time */
  function localInput(ms) {
    const f = fields(ms);
    return `${f.year}-${f.month}-${f.day}T${f.hour}:${f.minute}:${f.second}`;
  }
  /** <input type=datetime-local> value (Beijing time) → ISO 8601 with +08:00, or '' */
  function fromLocalInput(value) {
    if (!value) return '';
    const withSeconds = /T\d\d:\d\d$/.test(value) ? `${value}:00` : value;
    return `${withSeconds}+08:00`;
  }
  const pad = (n) => String(n).padStart(2, '0');
  /** 09:55, 1:02:03, 2天03:04:05 */
  function clock(ms) {
    let s = Math.max(0, Math.floor(ms / 1000));
    const d = Math.floor(s / 86400); s -= d * 86400;
    const h = Math.floor(s / 3600); s -= h * 3600;
    const m = Math.floor(s / 60); s -= m * 60;
    const hms = h || d ? `${d ? pad(h) : h}:${pad(m)}:${pad(s)}` : `${pad(m)}:${pad(s)}`;
    return d ? `${d}天${hms}` : hms;
  }
  /** 12分 / 3小时5分 / 2天4小时 */
  function ago(ms) {
    const m = Math.max(0, Math.floor(ms / 60000));
    if (m < 1) return '不足1分';
    if (m < 60) return `${m}分`;
    const h = Math.floor(m / 60);
    if (h < 24) return `${h}小时${m % 60}分`;
    return `${Math.floor(h / 24)}天${h % 24}小时`;
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') node.className = v;
      else if (k === 'text') node.textContent = v;
      else if (k.startsWith('data-') || k === 'title' || k === 'href' || k === 'role' || k.startsWith('aria-')) node.setAttribute(k, v);
      else node[k] = v;
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  const LEVEL_CLASS = { '一级': 'l1', '二级': 'l2', '三级': 'l3' };
  const LEVEL_RANK = { '一级': 3, '二级': 2, '三级': 1 };
  function levelBadge(level) {
    if (!level) return el('span', { class: 'badge level pending', text: '研判中' });
    return el('span', { class: `badge level ${LEVEL_CLASS[level] || 'pending'}`, text: `${level}响应` });
  }
  const drillBadge = () => el('span', { class: 'badge drill', text: '演练', title: '演练事件，不是实战' });

  const EVENT_KIND = {
    reported: '接报', decided: '研判', regraded: '等级调整', level_adjusted: '响应级别调整',
    obligation_opened: '报送时限', report_filed: '报送', obligation_met: '按时报送', obligation_late: '迟报',
    obligation_closed: '时限关闭', reminder: '临近时限提醒', breach: '超时未报', escalation: '逐级上报',
    approval_requested: '报请批准', approved: '批准上报', ended: '应急结束', rejected: '未受理',
    release_drafted: '发布稿拟定', release_approved: '批准发布', report_incomplete: '报告要素不全',
    plan_switched: '预案修订生效',
  };
  const OBLIGATION_STATUS = { open: '待报送', met: '已按时报送', late: '迟报', missed: '超时未报', closed: '已关闭' };
  const REPORT_KIND = {
    phone_report: '电话报告', written_report: '书面报告', detailed_report: '详细信息报告', followup: '续报',
    public_release: '信息发布', city_report: '向市应急办报告', evaluation_report: '总结评估报告',
    publicity_briefing: '向区委宣传部通报', first_release: '首次发布简要信息', release_caliber: '信息发布口径',
    city_publicity_report: '向市委宣传部报告', grade_determination: '研判定级', end_announcement: '发布应急结束信息',
  };

  function signInAgain() {
    const next = location.pathname + location.search;
    location.assign(`/login?next=${encodeURIComponent(next)}`);
  }

  /** fetch JSON from the API with the sign-in cookie; 401 → the sign-in page */
  async function api(path, options) {
    const opts = Object.assign({ credentials: 'same-origin', headers: {} }, options || {});
    opts.headers = Object.assign({ Accept: 'application/json' }, opts.headers);
    if (opts.json !== undefined) {
      opts.body = JSON.stringify(opts.json);
      opts.headers['Content-Type'] = 'application/json';
      delete opts.json;
    }
    const resp = await fetch(path, opts);
    if (resp.status === 401) { signInAgain(); throw new Error('未登录'); }
    let body = null;
    try { body = await resp.json(); } catch (e) { body = null; }
    return { status: resp.status, ok: resp.ok, body };
  }

  /** Validation messages of the API (English, from pydantic or the plan) in Chinese */
  const MESSAGES = [
    [/^Field required$/, () => '必填'],
    [/^Input should have timezone info/, () => '时间须带时区'],
    [/^Input should be a valid datetime/, () => '日期时间格式不正确'],
    [/^Input should be a valid (date|time)/, () => '日期时间格式不正确'],
    [/^Input should be greater than or equal to (\S+)/, (m) => `不能小于 ${m[1]}`],
    [/^Input should be greater than (\S+)/, (m) => `须大于 ${m[1]}`],
    [/^Input should be less than or equal to (\S+)/, (m) => `不能大于 ${m[1]}`],
    [/^Input should be less than (\S+)/, (m) => `须小于 ${m[1]}`],
    [/^Input should be a valid integer/, () => '须为整数'],
    [/^Input should be a finite number/, () => '须为有限数值'],
    [/^Input should be a valid number/, () => '须为数字'],
    [/^Input should be a valid boolean/, () => '须为是或否'],
    [/^Input should be a valid string/, () => '须为文字'],
    [/^Input should be a valid list/, () => '须为列表'],
    [/^Input should be (.+)$/, () => '取值不在允许范围内'],
    [/^String should have at most (\d+) characters?/, (m) => `不能超过 ${m[1]} 个字`],
    [/^String should have at least (\d+) characters?/, (m) => `至少 ${m[1]} 个字`],
    [/^String should match pattern/, () => '格式不正确'],
    [/^List should have at most (\d+) items?/, (m) => `最多 ${m[1]} 项`],
    [/^Extra inputs are not permitted/, () => '不允许的字段'],
    [/^must not be before occurred_at/, () => '接报时间不能早于事发时间'],
    [/^must be between 2000-01-01 and 2100-01-01/, () => '时间须在2000年至2100年之间'],
    [/^out of range/, () => '时间超出范围'],
    [/^unknown incident type '(.*)'/, (m) => `未知事件类型「${m[1]}」：不在预案表2.3.6中`],
    [/^'(.*)' is not one of the district's 22 streets/, (m) => `「${m[1]}」不是本区22个街道乡镇之一`],
    [/^a follow-up report .* carries its new facts here/, () => '续报须填写新情况'],
    [/^only a follow-up report carries new facts/, () => '只有续报可以填写新情况'],
    [/^JSON decode error/, () => '提交的内容无法解析'],
    [/^a 通报 of this period was issued already: (\S+)/, (m) => `本期间已印发通报 ${m[1]}，不再重复印发`],
  ];
  function translate(message) {
    const text = String(message || '').replace(/^Value error, /, '');
    for (const [re, fn] of MESSAGES) {
      const m = text.match(re);
      if (m) return fn(m);
    }
    return /[\u4e00-\u9fff]/.test(text) ? text : `输入有误（${text}）`;
  }

  /** Show the API's 422 {"fields":[{field,message}]} next to the inputs of `form`; the rest in `general` */
  function showFieldErrors(form, fields, general) {
    clearFieldErrors(form, general);
    const leftover = [];
    let first = null;
    for (const f of fields || []) {
      let path = String(f.field || '');
      let slot = form.querySelector(`[data-err-for="${CSS.escape(path)}"]`);
      while (!slot && path.includes('.')) { // facts.deaths.x → facts.deaths → facts
        path = path.slice(0, path.lastIndexOf('.'));
        slot = form.querySelector(`[data-err-for="${CSS.escape(path)}"]`);
      }
      const text = translate(f.message);
      if (!slot) { leftover.push(`${f.field}：${text}`); continue; }
      slot.textContent = slot.textContent ? `${slot.textContent}；${text}` : text;
      const input = form.querySelector(`[name="${CSS.escape(path)}"]`);
      if (input) { input.setAttribute('aria-invalid', 'true'); first = first || input; }
    }
    if (general) {
      if (leftover.length) { general.textContent = `请更正：${leftover.join('；')}`; general.hidden = false; }
      else if (fields && fields.length) { general.textContent = '请更正标红的字段。'; general.hidden = false; }
    }
    if (first) first.focus();
  }
  function clearFieldErrors(form, general) {
    form.querySelectorAll('[data-err-for]').forEach((n) => { n.textContent = ''; });
    form.querySelectorAll('[aria-invalid]').forEach((n) => n.removeAttribute('aria-invalid'));
    if (general) { general.hidden = true; general.textContent = ''; }
  }
  function statusMessage(resp) {
    if (resp.status === 403) return '当前身份无权执行此操作。';
    if (resp.status === 404) return '未找到该事件。';
    if (resp.status === 413) return '提交的内容过大。';
    if (resp.status === 503) return `消息总线暂不可用，未受理，请${(resp.body && resp.body.retry_after_s) || 5}秒后重试。`;
    return `提交失败（HTTP ${resp.status}）。`;
  }

  /** The decision, its reasons with plan sections, the obligations and the timeline of one incident */
  function renderDetail(incident, events) {
    const d = incident.decision;
    const r = incident.report || {};
    const loc = r.location || {};
    const root = el('div', { class: 'detail' });
    const head = el('dl', {},
      el('dt', { text: '事件类型' }), el('dd', {}, d ? `${d.type_name}（${d.category_name}）` : r.type, incident.drill ? [' ', drillBadge()] : null),
      el('dt', { text: '事件编号' }), el('dd', { class: 'mono', text: incident.incident_id }),
      el('dt', { text: '状态' }), el('dd', { text: { reported: '研判中', decided: '处置中', ended: '已结束' }[incident.status] || incident.status }),
      el('dt', { text: '属地' }), el('dd', { text: [loc.street || '未明确', ...(loc.key_area || []).map((a) => `重点地区：${a}`)].join('　') }),
      el('dt', { text: '事发时间' }), el('dd', { class: 'mono', text: dateTime(r.occurred_at) }),
      el('dt', { text: '接报时间' }), el('dd', { class: 'mono', text: dateTime(r.received_at) }),
    );
    root.append(el('h3', { text: '基本情况' }), head);
    if (!d) {
      root.append(el('p', { class: 'hint', text: '正在按预案研判…' }));
    } else {
      const flags = [];
      if (d.field_hq) flags.push('成立现场指挥部');
      if (d.under_city_command) flags.push('在市应急委统一指挥协调下');
      if (d.triage_by_district_office) flags.push('由区应急办研判');
      if (d.needs_approval_for_city_report) flags.push('向市应急办报告须经区应急委主任或副主任批准');
      root.append(el('h3', { text: '决策' }), el('dl', {},
        el('dt', { text: '事件等级' }), el('dd', {}, el('span', { class: 'badge grade', text: d.grade }),
          d.computed_grade !== d.grade ? `（规则计算为${d.computed_grade}）` : ''),
        el('dt', { text: '响应级别' }), el('dd', {}, levelBadge(d.response_level)),
        el('dt', { text: '牵头单位' }), el('dd', { text: d.lead_units.join('、') }),
        el('dt', { text: '指挥' }), el('dd', {}, d.commanders.map((c) => el('div', {}, `${c.role}：${c.who}`, el('span', { class: 'sec', text: `　${c.section}` })))),
        el('dt', { text: '说明' }), el('dd', { text: flags.join('；') || '—' }),
        el('dt', { text: '预案版本' }), el('dd', { text: d.plan_version }),
      ));
      root.append(el('h3', { text: '依据' }), el('table', {},
        el('thead', {}, el('tr', {}, el('th', { text: '预案条款' }), el('th', { text: '理由' }))),
        el('tbody', {}, d.reasons.map((x) => el('tr', {}, el('td', { class: 'sec', text: x.section, title: x.rule }), el('td', { text: x.text }))))));
      const ob = new Map((incident.obligations || []).map((o) => [o.kind, o]));
      root.append(el('h3', { text: '报送时限' }), el('table', {},
        el('thead', {}, el('tr', {}, ['事项', '责任单位', '报送对象', '时限（北京时间）', '状态', '条款'].map((t) => el('th', { text: t })))),
        el('tbody', {}, d.obligations.map((o) => {
          const st = ob.get(o.kind);
          let status = st ? (OBLIGATION_STATUS[st.status] || st.status) : '—';
          if (st && st.status === 'late' && st.minutes_late != null) status += ` ${st.minutes_late} 分钟`;
          if (st && st.escalation_step) status += `，已逐级上报第${st.escalation_step}步`;
          return el('tr', {}, el('td', { text: o.label }), el('td', { text: o.owner }), el('td', { text: o.recipient }),
            el('td', { class: 'mono', text: dateTime(o.due_at) }), el('td', { text: status }), el('td', { class: 'sec', text: o.section }));
        }))));
      root.append(el('h3', { text: '通知单位' }), el('table', {},
        el('tbody', {}, d.notify.map((n) => el('tr', {}, el('td', { text: n.unit }),
          el('td', { text: n.after_approval ? `${n.why}（批准后）` : n.why }), el('td', { class: 'sec', text: n.section }))))));
    }
    root.append(el('h3', { text: '时间线' }), el('table', {},
      el('thead', {}, el('tr', {}, ['时间', '事项', '内容', '条款'].map((t) => el('th', { text: t })))),
      el('tbody', {}, (events || []).map((e) => el('tr', { class: `k-${e.kind}` },
        el('td', { class: 'mono', text: dateTime(e.at) }), el('td', { text: EVENT_KIND[e.kind] || e.kind }),
        el('td', { text: readable(e.reason) }), el('td', { class: 'sec', text: e.section || '' }))))));
    return root;
  }

  function startClock() {
    const node = document.getElementById('clock');
    if (!node) return;
    const tick = () => { node.textContent = `北京时间 ${dateTime(now())}`; };
    tick();
    setInterval(tick, 1000);
  }

  /** The engine writes times as ISO 8601 (UTC) and report kinds by id inside its texts: show them
      as the people reading them expect (北京时间, Chinese names). */
  const ISO_IN_TEXT = /\d{4}-\d\d-\d\dT\d\d:\d\d(?::\d\d(?:\.\d+)?)?(?:Z|[+-]\d\d:\d\d)/g;
  const KIND_IN_TEXT = new RegExp(`\\b(${Object.keys(REPORT_KIND).join('|')})\\b`, 'g');
  function readable(text) {
    return String(text || '').replace(ISO_IN_TEXT, (iso) => dateTime(iso)).replace(KIND_IN_TEXT, (k) => REPORT_KIND[k]);
  }

  document.addEventListener('DOMContentLoaded', startClock);

  return {
    TZ, setServerTime, now, dateTime, time, localInput, fromLocalInput, clock, ago, el, levelBadge, drillBadge,
    LEVEL_CLASS, LEVEL_RANK, EVENT_KIND, OBLIGATION_STATUS, REPORT_KIND, api, translate, showFieldErrors,
    clearFieldErrors, statusMessage, renderDetail, signInAgain, readable,
  };
})();


