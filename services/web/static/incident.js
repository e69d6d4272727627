/* One incident: its decision, reasons and timeline, live; buttons to file reports (值班员) and to
   approve and end (指挥员). The API decides who may do what; the buttons only follow it. */
'use strict';

(() => {
  const { el } = YJ;
  const config = JSON.parse(document.getElementById('config').textContent);
  const id = config.incident_id;
  const $ = (x) => document.getElementById(x);
  const detail = $('detail');
  const actions = $('actions');
  const panel = $('action-panel');
  const okBox = $('action-ok');
  const errBox = $('action-error');
  const conn = $('conn');
  let incident = null;
  let events = [];


  async function load() {
    const [inc, tl] = await Promise.all([YJ.api(`/incidents/${encodeURIComponent(id)}`), YJ.api(`/incidents/${encodeURIComponent(id)}/timeline`)]);
    if (!inc.ok) { detail.replaceChildren(el('p', { text: YJ.statusMessage(inc) })); return; }
    incident = inc.body;
    events = tl.ok ? tl.body.events : [];
    const d = incident.decision;
    const title = [d ? d.type_name : incident.report.type, ' ', YJ.levelBadge(d && d.response_level)];
    if (incident.drill) title.push(' ', YJ.drillBadge());
    if (incident.status === 'ended') title.push(' ', el('span', { class: 'badge grade', text: '已结束' }));
    $('title').replaceChildren(...title);
    document.title = `${d ? d.type_name : '事件'} · 通州区应急指挥`;
    const rendered = YJ.renderDetail(incident, events);
    // what became of each notice, before the timeline
    const timelineHead = [...rendered.querySelectorAll('h3')].find((h) => h.textContent === '时间线');
    rendered.insertBefore(renderDeliveries(incident.deliveries || []), timelineHead || null);
    detail.replaceChildren(rendered);
    renderActions();
  }
  let loadTimer = null;
  const reload = () => { clearTimeout(loadTimer); loadTimer = setTimeout(load, 150); };

  // --- 已发送 / 已送达 / 已阅 per notified unit -------------------------------------------------------
  const NOTICE_KIND = { routing: '事件通报', reminder: '报送提醒', escalation: '督办', approved_report: '批准上报后通报', end: '应急结束', handover: '交接班' };
  const ACK_HOW = { link: '通知链接', page: '事件页面', api: '接口' };
  function stamp(label, iso, title) {
    return iso ? el('span', { class: 'mono', title: `${label} ${YJ.dateTime(iso)}${title ? `（${title}）` : ''}`, text: `${label} ${YJ.time(iso)}` }) : '—';
  }
  function renderDeliveries(list) {
    const frag = document.createDocumentFragment();
    frag.append(el('h3', { text: '通知送达' }));
    if (!list.length) { frag.append(el('p', { class: 'hint', text: '暂无通知。' })); return frag; }
    frag.append(el('table', { id: 'deliveries' },
      el('thead', {}, el('tr', {}, ['单位', '事项', '已发送', '已送达', '已阅', '说明', ''].map((t) => el('th', { text: t })))),
      el('tbody', {}, list.map((n) => {
        const notes = [];
        let bad = false;
        for (const u of n.undeliverable || []) { bad = true; notes.push(`发送失败/无法送达${u.step ? `（第${u.step}步）` : ''}：${u.reason}`); }
        if (!n.sent_at && n.failed_sends && !bad) notes.push(`发送失败 ${n.failed_sends} 次，重试中`);
        for (const s of n.ladder || []) notes.push(`逐级提醒第${s.step}步：${s.role || s.post_name}${s.person_id ? '' : '（无人值守）'} ${YJ.time(s.at)}`);
        if (!n.taken_at && !n.sent_at && !bad) notes.push('待发送');
        const acked = n.acked_at
          ? stamp('已阅', n.acked_at, `${n.acked_how === 'link' ? (n.acked_person_id || '') : (n.acked_by || '')} 经${ACK_HOW[n.acked_how] || n.acked_how}`)
          : '—';
        const button = config.can_ack && !n.acked_at
          ? el('button', { type: 'button', class: 'secondary', 'data-action': 'ack', text: '已阅', onclick: (e) => ack(n.dedup_key, e.target) })
          : null;
        return el('tr', { 'data-notice': n.dedup_key, 'data-unit': n.unit_id || '' },
          el('td', { text: n.unit || n.unit_id || '—' }), el('td', { text: NOTICE_KIND[n.kind] || n.kind || '—' }),
          el('td', { 'data-col': 'sent' }, stamp('已发送', n.sent_at)), el('td', { 'data-col': 'delivered' }, stamp('已送达', n.delivered_at)),
          el('td', { 'data-col': 'acked' }, acked),
          el('td', { class: bad ? 'd-undeliverable' : (notes.length === 1 && notes[0] === '待发送' ? 'd-pending' : ''), 'data-col': 'notes', text: notes.join('；') }),
          el('td', {}, button));
      }))));
    return frag;
  }
  async function ack(dedupKey, button) {
    button.disabled = true;
    try {
      const resp = await YJ.api(`/notices/${encodeURIComponent(dedupKey)}/ack`, { method: 'POST', json: { how: 'page' } });
      if (resp.ok) {
        okBox.textContent = `已阅：已记录（${YJ.time(resp.body.at)}）`;
        okBox.hidden = false;
        reload();
      } else {
        errBox.textContent = resp.status === 404 ? '未找到该通知。' : YJ.statusMessage(resp);
        errBox.hidden = false;
        button.disabled = false;
      }
    } catch (err) {
      errBox.textContent = `提交失败：无法连接服务（${err.message}）。`;
      errBox.hidden = false;
      button.disabled = false;
    }
  }

  // --- buttons ----------------------------------------------------------------------------------
  function obligationState(kind) { return (incident.obligations || []).find((o) => o.kind === kind); }
  function renderActions() {
    const d = incident.decision;
    const ended = incident.status === 'ended';
    // a drill's incident moves on its drill's clock: its scenario files its reports (the API says 409)
    const live = !incident.drill;
    const buttons = [];
    if (!live && (config.can_file || config.can_approve || config.can_end)) {
      buttons.push(el('span', { class: 'hint', 'data-role': 'drill-note', text: '演练事件：报送、批准和结束由演练脚本按模拟时钟产生' }));
    }
    if (config.can_file && d && live) {
      const kinds = ['phone_report', 'written_report', 'detailed_report'];
      // 研判定级 is met by the follow-up that settles the grade, not by a filing of its own
      const byFollowup = new Set(d.obligations.filter((o) => o.met_by === 'grade_determined').map((o) => o.kind));
      for (const o of incident.obligations || []) {
        if (!kinds.includes(o.kind) && o.status !== 'closed' && !byFollowup.has(o.kind)) kinds.push(o.kind);
      }
      if (!ended) kinds.push('followup');
      const approved = events.some((e) => e.kind === 'approved');
      for (const kind of kinds) {
        const st = obligationState(kind);
        const done = st && (st.status === 'met' || st.status === 'late');
        // after the end only what the end opened is owed (a 漏报 stays on record, filing it changes nothing)
        if (ended && !(st && st.status === 'open')) continue;
        // 4.1.3: the city is told once 区应急委 approved; a report filed before does not count until then
        const waits = kind === 'city_report' && d.needs_approval_for_city_report && !approved && !done;
        buttons.push(el('button', { type: 'button', class: done || waits ? 'secondary' : '', 'data-action': kind,
          text: `${kind === 'followup' ? '续报（新情况）' : `报送${YJ.REPORT_KIND[kind] || kind}`}${done ? '（已报）' : ''}${waits ? '（须先经区应急委批准）' : ''}`,
          onclick: () => reportForm(kind) }));
      }
    }
    if (config.can_approve && live && d && d.needs_approval_for_city_report && !ended && !events.some((e) => e.kind === 'approved')) {
      buttons.push(el('button', { type: 'button', 'data-action': 'approve', text: '批准向市应急办报告', onclick: approvalForm }));
    }
    if (config.can_end && live && d && !ended) {
      buttons.push(el('button', { type: 'button', class: 'danger', 'data-action': 'end', text: '应急结束', onclick: endForm }));
    }
    if (config.can_private) {
      buttons.push(el('button', { type: 'button', class: 'secondary', 'data-action': 'private', text: '查看报告人信息', onclick: showPrivate }));
    }
    buttons.push(el('a', { class: 'button secondary', href: '/board', text: '返回态势大屏' }));
    actions.replaceChildren(...buttons);
    actions.hidden = false;
  }

  // --- forms ------------------------------------------------------------------------------------
  function field(name, label, control, hint) {
    control.name = name;
    control.id = `a-${name}`;
    return el('div', { class: 'field' }, el('label', { htmlFor: control.id, text: label }), control,
      hint ? el('div', { class: 'hint', text: hint }) : null, el('div', { class: 'err', 'data-err-for': name }));
  }
  const input = (type, value, extra) => Object.assign(el('input', { type }), { value: value == null ? '' : String(value) }, extra || {});
  function select(options, value) {
    const s = el('select', {}, options.map(([v, t]) => el('option', { value: v, text: t })));
    s.value = value;
    return s;
  }
  const nowInput = () => input('datetime-local', YJ.localInput(YJ.now()), { step: 1 });

  // one id per form opened: a submit sent again (no answer seen, a double click) is applied once
  const newRequestId = () => `w${Date.now().toString(36)}${Math.random().toString(36).slice(2, 12)}`;
  function openPanel(title, fields, submitText, send) {
    okBox.hidden = true;
    const requestId = newRequestId();
    const form = el('form', { noValidate: true, autocomplete: 'off' }, el('h2', { text: title }),
      el('div', { class: 'grid' }, fields.filter((f) => !f.wide)), fields.filter((f) => f.wide),
      el('div', { class: 'actions' }, el('button', { type: 'submit', text: submitText }),
        el('button', { type: 'button', class: 'secondary', text: '取消', onclick: () => { panel.hidden = true; } })));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      YJ.clearFieldErrors(form, errBox);
      const button = form.querySelector('button[type=submit]');
      button.disabled = true;
      try {
        const [path, body] = send(form);
        const resp = await YJ.api(path, { method: 'POST', json: { ...body, request_id: requestId } });
        if (resp.status === 202) {
          panel.hidden = true;
          okBox.textContent = `${title}：已提交，正在处理…（${YJ.time(YJ.now())}）`;
          okBox.hidden = false;
        } else if (resp.status === 422 && resp.body && resp.body.fields) {
          YJ.showFieldErrors(form, resp.body.fields, errBox);
        } else {
          errBox.textContent = YJ.statusMessage(resp);
          errBox.hidden = false;
        }
      } catch (err) {
        errBox.textContent = `提交失败：无法连接服务（${err.message}）。`;
        errBox.hidden = false;
      } finally { button.disabled = false; }
    });
    panel.replaceChildren(form);
    panel.hidden = false;
    const first = form.querySelector('input, select, textarea');
    if (first) first.focus();
    panel.scrollIntoView({ block: 'nearest' });
  }
  const value = (form, name) => form.elements[name].value.trim();
  const when = (form, name) => YJ.fromLocalInput(form.elements[name].value) || undefined;

  const FACTS = [['deaths', '死亡'], ['missing', '失踪'], ['serious_injuries', '重伤'], ['injuries', '受伤'], ['poisoned', '中毒'],
    ['evacuated', '疏散转移'], ['direct_loss_yuan', '直接经济损失（元）'], ['magnitude', '震级'], ['interruption_hours', '中断时长（小时）']];
  const FLAGS = [['sensitive', '敏感事件'], ['major_event', '重大活动或特殊时期'], ['multi_agency', '需多部门协同处置'],
    ['may_escalate', '可能演化为较大以上'], ['foreign_involved', '涉外']];

  const RELEASES = ['first_release', 'public_release', 'end_announcement'];  // topics.models.RELEASE_KINDS
  const DOCUMENTS = ['written_report', 'detailed_report'];  // playbooks.documents.DOCUMENT_KINDS
  function reportForm(kind) {
    const d = incident.decision;
    const owed = d.obligations.find((o) => o.kind === kind);
    const units = [...new Map([...d.lead_unit_ids.map((u, i) => [u, d.lead_units[i]]), ...config.units.map((u) => [u.id, u.name])])];
    const fields = [
      field('unit_id', '报送单位', select(units, owed ? owed.owner_id : d.lead_unit_ids[0])),
      field('filed_at', '报送时间（北京时间）', nowInput()),
      field('filed_by', '报送人', input('text', config.user, { maxLength: 200 })),
    ];
    const content = el('textarea', { rows: 4, maxLength: 4000 });
    const contentField = field('content', '报告内容（加密保存）', content);
    contentField.wide = true;
    fields.push(contentField);
    if (DOCUMENTS.includes(kind)) {  // 4.1.5: drafted from the incident's records, edited here, then filed
      const docPath = `/incidents/${encodeURIComponent(id)}/documents/${kind}`;
      content.rows = 16;
      const tools = el('div', { class: 'actions' },
        el('button', { type: 'button', class: 'secondary', 'data-action': 'draft', text: '按4.1.5要素生成草稿',
          onclick: async () => {
            const resp = await YJ.api(docPath);
            if (resp.status === 200) {
              content.value = resp.body.text;
              missingNote.textContent = resp.body.missing.length
                ? `待补充：${resp.body.items.filter((i) => i.missing).map((i) => i.label).join('、')}（未补充也可报送，时间线上将标注要素不全）` : '';
            }
          } }),
        el('a', { class: 'button secondary', 'data-action': 'docx', href: `${docPath}?format=docx`, download: '',
          text: '下载 Word 草稿（.docx）' }));
      const missingNote = el('div', { class: 'hint', 'data-role': 'draft-missing' });
      tools.wide = true;
      missingNote.wide = true;
      fields.push(tools, missingNote);
    }
    const release = RELEASES.includes(kind);
    if (release) {  // 4.7.1: published only once the commanding body approved the draft
      const note = el('div', { class: 'hint', text: '未经相关应急指挥机构批准，不得擅自对外发布（4.7.1）：填写拟稿和批准。报送时间即发布时间。' });
      note.wide = true;
      fields.push(note,
        field('release.drafted_by', '拟稿单位或人', input('text', '', { maxLength: 200 })),
        field('release.drafted_at', '拟稿时间（北京时间）', nowInput()),
        field('release.approved_by', '批准机构（如 现场指挥部、区应急委）', input('text', '', { maxLength: 200 })),
        field('release.approved_at', '批准时间（北京时间）', nowInput()));
      const general = el('div', { class: 'err', 'data-err-for': 'release' });
      general.wide = true;
      fields.push(general);
    }
    if (kind === 'followup') {
      const facts = incident.report.facts || {};
      const factFields = FACTS.map(([k, label]) => field(`followup.facts.${k}`, label, input('number', facts[k], { min: 0, step: 'any' })));
      const flags = incident.report.flags || {};
      const flagBox = el('div', { class: 'field' }, el('span', { class: 'label', text: '情形' }),
        el('div', { class: 'checks' }, FLAGS.map(([k, label]) => el('label', { class: 'check' },
          Object.assign(el('input', { type: 'checkbox', name: `followup.flags.${k}` }), { checked: !!flags[k] }), label))),
        el('div', { class: 'err', 'data-err-for': 'followup.flags' }));
      flagBox.wide = true;
      const grade = field('followup.asserted_grade', '报告单位认定等级', select([['', '— 无 —'], ...config.grades.map((g) => [g, g])], incident.report.asserted_grade || ''));
      const general = el('div', { class: 'err', 'data-err-for': 'followup' });
      general.wide = true;
      fields.push(...factFields, grade, flagBox, general);
    }
    openPanel(kind === 'followup' ? '续报' : `报送${YJ.REPORT_KIND[kind] || kind}`, fields, '提交报送', (form) => {
      const body = { kind, unit_id: value(form, 'unit_id'), filed_at: when(form, 'filed_at'), filed_by: value(form, 'filed_by'), content: value(form, 'content') };
      if (release) {
        body.release = { drafted_by: value(form, 'release.drafted_by'), drafted_at: when(form, 'release.drafted_at'),
          approved_by: value(form, 'release.approved_by'), approved_at: when(form, 'release.approved_at') };
      }
      if (kind === 'followup') {
        const facts = {};
        for (const [k] of FACTS) {
          const n = form.elements[`followup.facts.${k}`];
          if (n.value.trim() !== '') facts[k] = Number(n.value);
          else if (n.validity.badInput) facts[k] = 'invalid';
        }
        const flags = {};
        for (const [k] of FLAGS) flags[k] = form.elements[`followup.flags.${k}`].checked;
        body.followup = { facts, flags };
        if (value(form, 'followup.asserted_grade')) body.followup.asserted_grade = value(form, 'followup.asserted_grade');
      }
      return [`/incidents/${encodeURIComponent(id)}/reports`, body];
    });
  }

  function approvalForm() {
    openPanel('批准向市应急办报告（4.1.3）', [
      field('approver', '批准人', input('text', '', { maxLength: 200 })),
      field('approver_role', '职务', select([['director', '区应急委主任'], ['deputy_director', '区应急委副主任']], 'deputy_director')),
      field('approved_at', '批准时间（北京时间）', nowInput()),
    ], '记录批准', (form) => [`/incidents/${encodeURIComponent(id)}/approvals`, {
      approver: value(form, 'approver'), approver_role: value(form, 'approver_role'), approved_at: when(form, 'approved_at') }]);
  }

  function endForm() {
    const grade = incident.decision.grade;
    openPanel('应急结束（4.8.2）', [
      field('authority', '决定机关', select([['district_committee', '区应急委批准'], ['city', '市级决定（记录）']], config.end_authority[grade] || 'district_committee'),
        `按预案，${grade}事件由${config.end_authority[grade] === 'city' ? '市级决定' : '区应急委批准'}`),
      field('decided_by', '决定人 / 机关', input('text', '', { maxLength: 200 })),
      field('ended_at', '结束时间（北京时间）', nowInput()),
      field('announce_public', '向社会发布应急结束信息', select([['no', '否'], ['yes', '是（区应急委决定；须经批准后发布）']], 'no'),
        '4.8.2：必要时向社会发布应急结束信息'),
    ], '确认应急结束', (form) => [`/incidents/${encodeURIComponent(id)}/end`, {
      authority: value(form, 'authority'), decided_by: value(form, 'decided_by'), ended_at: when(form, 'ended_at'),
      announce_public: value(form, 'announce_public') === 'yes' }]);
  }

  async function showPrivate() {
    const resp = await YJ.api(`/incidents/${encodeURIComponent(id)}/private`);
    if (!resp.ok) { errBox.textContent = YJ.statusMessage(resp); errBox.hidden = false; return; }
    const p = resp.body;
    panel.replaceChildren(el('h2', { text: '报告人信息（访问已记录）' }), el('div', { class: 'detail' }, el('dl', {},
      el('dt', { text: '姓名' }), el('dd', { text: p.reporter.name || '—' }),
      el('dt', { text: '电话' }), el('dd', { text: p.reporter.phone || '—' }),
      el('dt', { text: '事件简况' }), el('dd', { text: p.summary || '—' }))),
      el('div', { class: 'actions' }, el('button', { type: 'button', class: 'secondary', text: '隐藏', onclick: () => { panel.hidden = true; panel.replaceChildren(); } })));
    panel.hidden = false;
  }

  // --- live ---------------------------------------------------------------------------------------
  function connect() {
    const source = new EventSource(`/board/stream?incident=${encodeURIComponent(id)}`);
    const live = () => { conn.dataset.state = 'live'; conn.textContent = '实时'; };
    source.addEventListener('snapshot', (m) => { YJ.setServerTime(JSON.parse(m.data).server_time); live(); reload(); });
    source.addEventListener('changes', () => { live(); reload(); });
    source.onerror = () => {
      conn.dataset.state = 'retry';
      conn.textContent = '连接中断，正在重连…';
      if (source.readyState === EventSource.CLOSED) { source.close(); setTimeout(connect, 3000); }
    };
  }
  load();
  connect();
})();
