// The what-if page (issue 24): the revision's files and a period posted to POST /whatif as a form; the
// comparison drawn as tables (text only, never markup from the answer); the same form again for the files.
// The plan office (plan.adopt) then adopts the files it just compared (POST /plan/adoptions, written against the
// version the page shows) or rolls back to a version of the history (POST /plan/rollbacks), each after a
// confirmation; the history is drawn again from GET /plan once the adoption is read: 生效中 or 冲突未生效.
'use strict';
(() => {
  const form = document.getElementById('whatif-form');
  if (!form) return;
  const $ = (id) => document.getElementById(id);
  const ASPECT = { decided: '能否受理', grade: '事件等级', level: '响应级别', lead_units: '牵头单位',
                   commanders: '指挥', notice: '通知', obligation: '报送义务', escalation: '督办' };
  const CHANGE = { added: '新增', removed: '删除', changed: '修改' };
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
    if ($('w-scenario').value) data.append('scenario', $('w-scenario').value);  // a drill scenario, not a period
    else {
      data.append('from', `${$('w-from').value}T00:00:00+08:00`);
      data.append('to', `${next($('w-to').value)}T00:00:00+08:00`);
    }
    data.append('format', format);
    return data;
  };
  const FIELD = { previous_version: '页面所示现行版本', files: '修订稿文件', reason: '原因', version: '版本',
                  whatif_days: '推演天数' };
  const showError = (status, answer, what = '推演') => {
    const fields = (answer && answer.fields) || [];
    const detail = answer && (answer.error || answer.detail);
    const lines = fields.length ? fields.map((f) => `${FIELD[f.field] || f.field}：${f.message}`)
                                : [`${what}失败（${status}）${detail ? '：' + detail : ''}`];
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
    const s = r.scenario;  // over a drill scenario: its expectations under both plans
    $('w-scenario-card').hidden = !s;
    if (s) {
      $('w-scenario-headline').textContent = `${s.name}（${s.scenario}）：预期 ${s.expectations} 项，现行预案不符 ${s.failed_before} 项，`
        + `修订稿不符 ${s.failed_after} 项` + (s.refused_after.length ? `；修订稿无法运行此脚本：${s.refused_after.join('；')}` : '');
      const tbody = $('w-expectations').tBodies[0];
      tbody.replaceChildren();
      for (const c of s.changed) {
        const tr = row(tbody, [c.incident, c.label, c.expected, `${c.before}${c.passed_before ? '' : ' ✘'}`,
                               `${c.after}${c.passed_after ? '' : ' ✘'}`]);
        Object.assign(tr.dataset, { incident: c.incident, what: c.what });
      }
      if (!s.changed.length && !s.refused_after.length) row(tbody, ['修订稿下每项预期的结果与现行预案相同。']);
    }
    const changes = $('w-changes').tBodies[0];
    changes.replaceChildren();
    for (const c of r.changes) {
      const tr = row(changes, [c.file, c.path, CHANGE[c.change] || c.change, `${c.basis || '—'}${c.our_choice ? '（我方选择）' : ''}`,
                               c.before, c.after]);
      tr.dataset.path = c.path;
    }
    if (!r.changes.length) row(changes, ['修订稿的规则与现行预案相同（仅注释或格式不同）。']);
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
    for (const id of ['w-summary', 'w-changes-card', 'w-units-card', 'w-rules-card', 'w-incidents-card']) $(id).hidden = false;
  };
  const periodOrScenario = () => {  // a scenario instead of the period: the dates not asked
    for (const id of ['w-from', 'w-to']) { $(id).required = !$('w-scenario').value; $(id).disabled = !!$('w-scenario').value; }
  };
  $('w-scenario').addEventListener('change', periodOrScenario);
  periodOrScenario();  // chosen before this script ran (a quick hand, a browser restoring the form)
  let compared = null;  // the files and the report of the last what-if: what 采纳此修订 adopts
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    $('w-error').hidden = true;
    $('w-run').disabled = true;
    $('w-status').textContent = '推演中……';
    try {
      const files = [...$('w-files').files];
      const { status, body: answer } = await YJ.api('/whatif', { method: 'POST', body: body('json') });
      if (status !== 200) { showError(status, answer); $('w-status').textContent = ''; return; }
      draw(answer);
      compared = { files, report: answer };
      showAdopt();
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

  // --- adopting and rolling back (the plan office) ---------------------------------------------------------
  const history = $('w-history');
  const canAdopt = history.dataset.canAdopt === 'true';
  const shipped = history.dataset.shipped;
  const inForce = () => $('plan-version').textContent.trim();
  const showAdopt = () => {
    if (!canAdopt || !$('w-adopt')) return;
    const same = compared.report.revised_plan === inForce();
    $('w-adopt').hidden = same;  // the revision is the plan in force: nothing to adopt
    $('w-adopt-version').textContent = compared.report.revised_plan;
    $('w-adopt-replaces').textContent = inForce();
  };
  const STATUS = { in_force: '生效中', superseded: '已被取代' };
  const statusText = (a) => {  // as services/web/routes/whatif.py status_text
    if (a.status === 'conflict') return `冲突未生效：依据版本 ${a.previous_version} 写成，其时现行为 ${a.in_force_when_read}`;
    if (a.status === 'refused') return `未能加载：${(a.refused || '').slice(0, 300)}`;
    return STATUS[a.status] + (a.rollback_of ? `，回退至 ${a.rollback_of}` : '');
  };
  const rollbackButton = (version) => {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'button small secondary rollback';
    b.dataset.version = version;
    b.textContent = '回退到此版本';
    return b;
  };
  const changesCell = (td, a) => {  // what the adoption changed, folded: as the page's template draws it
    td.className = 'changes';
    if (!a.changes || !a.changes.length) { td.textContent = '—'; return; }
    const details = document.createElement('details');
    const summary = document.createElement('summary');
    summary.textContent = `${a.changes.length + (a.changes_more || 0)} 项`;
    const ul = document.createElement('ul');
    for (const c of a.changes) {
      const li = document.createElement('li');
      const what = c.change === 'added' ? `新增 ${c.after}` : c.change === 'removed' ? `删除 ${c.before}` : `${c.before} → ${c.after}`;
      li.textContent = `${c.file} ${c.path}：${what}`;
      ul.appendChild(li);
    }
    if (a.changes_more) { const li = document.createElement('li'); li.textContent = `另有 ${a.changes_more} 项`; ul.appendChild(li); }
    details.append(summary, ul);
    td.replaceChildren(details);
  };
  const drawHistory = (plan) => {
    $('plan-version').textContent = plan.version;
    // the what-if was of the revision over the plan then in force: over another, its files make another
    // version, never compared here; so it is asked again before anything is adopted
    if (compared && compared.report.plan_in_force !== plan.version) {
      compared = null;
      if ($('w-adopt')) $('w-adopt').hidden = true;
    }
    const tbody = $('w-adoptions').tBodies[0];
    tbody.replaceChildren();
    for (const a of [...plan.history].reverse()) {
      const tr = row(tbody, [bj(a.adopted_at), a.version, a.adopted_by, a.reason, '',
                             a.whatif ? `${a.whatif.incidents}/${a.whatif.differing}` : null, statusText(a), '']);
      Object.assign(tr.dataset, { id: a.id, version: a.version, status: a.status });
      if (a.in_force) tr.classList.add('in-force');
      tr.cells[1].className = 'mono';
      changesCell(tr.cells[4], a);
      tr.cells[6].className = 'status';
      tr.cells[7].textContent = '';
      if (canAdopt && a.status === 'superseded') tr.cells[7].appendChild(rollbackButton(a.version));
    }
    const adopted = plan.adoption !== null;
    const tr = row(tbody, [`随服务发布的版本 ${shipped}${adopted ? '' : '（尚未采用修订稿）'}`, adopted ? '—' : '生效中', '']);
    tr.cells[0].colSpan = 6;
    tr.cells[1].className = 'status';
    tr.cells[2].textContent = '';
    tr.className = adopted ? 'shipped' : 'shipped in-force';
    Object.assign(tr.dataset, { version: shipped, status: adopted ? 'shipped' : 'in_force' });
    if (canAdopt && plan.version !== shipped) tr.cells[2].appendChild(rollbackButton(shipped));
  };
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const follow = async (written, what) => {  // GET /plan until this replica has read the adoption
    $('w-status').textContent = `${what}已写入日志，等待各副本读取……`;
    for (let i = 0; i < 60; i += 1) {
      const { status, body: plan } = await YJ.api('/plan');
      const mine = status === 200 && plan.history.find((a) => a.id === written.id);
      if (mine) {
        drawHistory(plan);
        if (mine.status === 'in_force') $('w-status').textContent = `${what}完成：版本 ${mine.version} 生效中`;
        else {
          $('w-status').textContent = '';
          showError(409, { fields: [{ field: `${what}未生效`, message: statusText(mine) }] });
        }
        if (compared) showAdopt();
        return;
      }
      await sleep(500);
    }
    $('w-status').textContent = `${what}已写入日志（${written.id}），本副本尚未读到：稍后刷新本页查看`;
  };

  const dialog = $('w-confirm');
  let pending = null;  // what the confirmation confirms
  const confirmThen = (text, withReason, action) => {
    $('w-confirm-text').textContent = text;
    $('w-confirm-reason-label').hidden = !withReason;
    $('w-confirm-reason').value = '';
    $('w-confirm-error').hidden = true;
    pending = { withReason, action };
    dialog.showModal();
  };
  $('w-confirm-cancel').addEventListener('click', () => { pending = null; dialog.close(); });
  $('w-confirm-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    if (!pending) return;
    const reason = $('w-confirm-reason').value.trim();
    if (pending.withReason && !reason) {
      $('w-confirm-error').textContent = '请填写原因';
      $('w-confirm-error').hidden = false;
      return;
    }
    const { action } = pending;
    pending = null;
    dialog.close();
    action(reason);
  });

  const adoptForm = $('w-adopt-form');
  if (adoptForm) {
    adoptForm.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const reason = $('w-reason').value.trim();
      if (!reason || !compared) { $('w-reason').setAttribute('aria-invalid', 'true'); return; }
      $('w-reason').removeAttribute('aria-invalid');
      const days = $('w-adopt-days').value;
      const expected = inForce();
      confirmThen(`确认采纳修订稿（版本 ${compared.report.revised_plan}，替换现行 ${expected}）？采纳前按最近 ${days} 天重新推演并记录结果。`,
        false, async () => {
          $('w-error').hidden = true;
          $('w-adopt-button').disabled = true;
          $('w-status').textContent = `采纳中（推演最近 ${days} 天）……`;
          try {
            const data = new FormData();
            for (const f of compared.files) data.append('files', f, f.name);
            data.append('reason', reason);
            data.append('previous_version', expected);
            data.append('whatif_days', days);
            const { status, body: answer } = await YJ.api('/plan/adoptions', { method: 'POST', body: data });
            if (status !== 202) { $('w-status').textContent = ''; showError(status, answer, '采纳'); return; }
            $('w-reason').value = '';
            await follow(answer, '采纳');
          } finally {
            $('w-adopt-button').disabled = false;
          }
        });
    });
  }
  $('w-adoptions').addEventListener('click', (ev) => {
    const b = ev.target.closest('button.rollback');
    if (!b) return;
    const version = b.dataset.version;
    const expected = inForce();
    confirmThen(`确认回退到版本 ${version}（替换现行 ${expected}）？`, true, async (reason) => {
      $('w-error').hidden = true;
      $('w-status').textContent = '回退中……';
      const { status, body: answer } = await YJ.api('/plan/rollbacks', {
        method: 'POST', json: { version, reason, previous_version: expected } });
      if (status !== 202) { $('w-status').textContent = ''; showError(status, answer, '回退'); return; }
      await follow(answer, '回退');
    });
  });
})();
