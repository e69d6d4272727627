// The what-if page (issue 24): the revision's files and a period posted to POST /whatif as a form; the
// comparison drawn as tables (text only, never markup from the answer); the same form again for the files.
'use strict';
(() => {
  const form = document.getElementById('whatif-form');
  if (!form) return;
  const $ = (id) => document.getElementById(id);
  const ASPECT = { decided: '能否受理', grade: '事件等级', level: '响应级别', lead_units: '牵头单位',
                   commanders: '指挥', notice: '通知', obligation: '报送义务', escalation: '督办' };
  const next = (day) => {  // the 止 day is included: `to` is the next day's 00:00 in Beijing
    const d = new Date(`${day}T00:00:00+08:00`);
    d.setUTCDate(d.getUTCDate() + 1);
    return new Date(d.getTime() + 8 * 3600e3).toISOString().slice(0, 10);
  };
  const bj = (iso) => new Date(new Date(iso).getTime() + 8 * 3600e3).toISOString().slice(0, 16).replace('T', ' ');
  const row = (tbody, cells) => {
    const tr = document.createElement('tr');
    for (const c of cells) {
      const td = document.createElement('td');
      td.textContent = c === null || c === undefined ? '—' : String(c);
      if (typeof c === 'number' || /^\d+\/\d+$/.test(String(c))) td.className = 'num';  // counts, and before/after pairs
      tr.appendChild(td);
    }
    tbody.appendChild(tr);
    return tr;
  };
  const body = (format) => {
    const data = new FormData();
    for (const f of $('w-files').files) data.append('files', f, f.name);
    data.append('from', `${$('w-from').value}T00:00:00+08:00`);
    data.append('to', `${next($('w-to').value)}T00:00:00+08:00`);
    data.append('format', format);
    return data;
  };
  const showError = (status, answer) => {
    const fields = (answer && answer.fields) || [];
    const lines = fields.length ? fields.map((f) => `${f.field}：${f.message}`)
                                : [`推演失败（${status}）${answer && answer.error ? '：' + answer.error : ''}`];
    const box = $('w-error');
    box.replaceChildren(...lines.map((t) => { const p = document.createElement('div'); p.textContent = t; return p; }));
    box.hidden = false;
  };
  const draw = (r) => {
    const t = r.totals;
    $('w-headline').textContent = `期间 ${bj(r.period_from)} 至 ${bj(r.period_to)}：事件 ${t.incidents} 起，结果不同 ${t.differing} 起`
      + `（依修订稿重放 ${t.replayed_twice} 起）；现行预案 ${r.plan_in_force}，修订稿 ${r.revised_plan}（${r.revised_source}）；读取记录 ${r.records} 条。`;
    const totals = $('w-totals').tBodies[0];
    totals.replaceChildren();
    for (const [label, a, b] of [['漏报（逾期未报）', t.breaches_before, t.breaches_after], ['迟报', t.late_before, t.late_after],
      ['督办步骤', t.escalation_steps_before, t.escalation_steps_after], ['通知', t.notices_before, t.notices_after],
      ['无法受理', t.refused_before, t.refused_after]]) row(totals, [label, a, b]);
    const units = $('w-units').tBodies[0];
    units.replaceChildren();
    for (const u of r.units) row(units, [u.unit, u.incidents, u.differences, `${u.led_before}/${u.led_after}`,
      `${u.notices_before}/${u.notices_after}`, `${u.breaches_before}/${u.breaches_after}`]).dataset.unit = u.unit_id;
    const rules = $('w-rules').tBodies[0];
    rules.replaceChildren();
    for (const x of r.rules) row(rules, [x.rule, x.section, x.incidents, x.differences]);
    const incidents = $('w-incidents').tBodies[0];
    incidents.replaceChildren();
    for (const c of r.incidents) {
      for (const d of c.differences) {
        const tr = row(incidents, [`${c.incident_id} ${c.type_name}`, ASPECT[d.aspect] || d.aspect, d.subject, d.before, d.after,
                                   d.rule, d.section]);
        tr.dataset.incident = c.incident_id;
        tr.dataset.aspect = d.aspect;
      }
    }
    if (!r.incidents.length) row(incidents, ['修订稿与现行预案对本期间每起事件的结果相同。']);
    for (const id of ['w-summary', 'w-units-card', 'w-rules-card', 'w-incidents-card']) $(id).hidden = false;
  };
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    $('w-error').hidden = true;
    $('w-run').disabled = true;
    $('w-status').textContent = '推演中……';
    try {
      const { status, body: answer } = await YJ.api('/whatif', { method: 'POST', body: body('json') });
      if (status !== 200) { showError(status, answer); $('w-status').textContent = ''; return; }
      draw(answer);
      $('w-status').textContent = '推演完成';
      $('w-xlsx').disabled = false;
      $('w-md').disabled = false;
    } finally {
      $('w-run').disabled = false;
    }
  });
  const download = async (format, name) => {
    const resp = await fetch('/whatif', { method: 'POST', body: body(format), credentials: 'same-origin' });
    if (!resp.ok) { showError(resp.status, await resp.json().catch(() => null)); return; }
    const a = document.createElement('a');
    a.href = URL.createObjectURL(await resp.blob());
    a.download = name;
    document.body.appendChild(a);
    a.click();
    a.remove();
  };
  $('w-xlsx').addEventListener('click', () => download('xlsx', '预案修订推演.xlsx'));
  $('w-md').addEventListener('click', () => download('md', '预案修订推演.md'));
})();
