/* 预警: the warning form (POST /warnings as JSON, refusals shown next to their field) and a warning's
   buttons (approve, issue, adjust, lift: each calls the API, then the page is rendered again); its tasks'
   确认完成 (POST …/tasks/{id}/confirm by the task's own unit: the rows and counts are set again from the
   answer's tasks, no call per row). */
'use strict';

(() => {
  const configNode = document.getElementById('config');
  const config = configNode ? JSON.parse(configNode.textContent) : {};
  if (config.server_time) YJ.setServerTime(config.server_time);
  const high = new Set(config.high || []);

  // The rules answer "field: message (section)"; the field is shown by the slot, the rest translated.
  const RULES = [
    [/^the measures of 3\.2\.5\(1\) are taken at every level/, () => '各级预警均须采取3.2.5(1)的基本措施'],
    [/^a \S+ warning takes one or more of the measures of 3\.2\.5\(2\)/, () => '橙色、红色预警须另选3.2.5(2)的一项或多项措施'],
    [/is a street or township/, () => '街道乡镇不发布预警（3.2.1、3.2.3(1)）'],
    [/^a \S+ warning is (issue|lift)d by 区应急办/, (m) => `橙色、红色预警由区应急办${m[1] === 'lift' ? '解除' : '发布'}（3.2.3(1)）`],
    [/^a \S+ warning is (issue|lift)d by a special HQ or a competent department/, () => '蓝色、黄色预警由专项应急指挥部或主管部门发布（3.2.3(1)）'],
    [/is not the HQ or department of (\S+) warnings/, (m) => `该单位不是${m[1]}预警的专项指挥部或主管部门（3.2.1、3.2.3(1)）`],
    [/^a \S+ warning is issued after (.+) \(3\.2\.3\(1\)\)/, (m) => `须先经${m[1]}（3.2.3(1)）`],
    [/^(\S+) follows \[(.+)\]/, () => '须先经区领导批准，再报市应急办批准（3.2.3(1)）'],
    [/^who approved is recorded/, () => '请填写批准人'],
    [/^an adjustment is approved by/, () => '调整级别须经区应急委领导批准，请填写批准人（3.2.6）'],
    [/^区应急办 adjusts a warning's level/, () => '由区应急办调整预警级别（3.2.6）'],
    [/^the issuer \((.*)\) lifts the warning/, () => '由发布单位解除预警（3.2.7）'],
    [/is not a street or township of 通州/, () => '不是本区的街道乡镇'],
    [/drafts a warning that .* issues: the issuer drafts it/, () => '蓝色、黄色预警由发布单位自行拟制（3.2.3(1)）'],
    [/recorded already/, () => '该批准已记录'],
    [/^the task falls to (\S+), which confirms it/, () => '该任务由其所属单位确认'],
    [/was confirmed already/, () => '该任务已确认'],
    [/is no task of/, () => '没有这项任务'],
  ];
  function readable(message) {
    const text = String(message || '').replace(/^Value error, /, '').replace(/^[\w.]+: /, '');
    for (const [re, fn] of RULES) {
      const m = text.match(re);
      if (m) return fn(m);
    }
    return YJ.translate(text);
  }
  const fieldsOf = (body) => ((body && body.fields) || []).map((f) => ({ field: f.field, message: readable(f.message) }));
  const FIELD_NAMES = { unit: '单位', approval: '批准', approver: '批准人', approvals: '批准', status: '状态',
    warning_id: '编号', task_id: '任务', level: '级别', 'content.level': '级别', 'content.measures': '措施', reason: '原因' };

  // --- the form ------------------------------------------------------------------------------------
  const form = document.getElementById('warning-form');
  if (form) {
    const general = document.getElementById('form-error');
    const submit = document.getElementById('submit');
    const level = form.elements['content.level'];
    const extra = document.getElementById('extra-measures');
    form.elements['content.start'].value = YJ.localInput(YJ.now());
    const showExtra = () => { extra.hidden = !high.has(level.value); };
    level.addEventListener('change', showExtra);
    showExtra();

    form.addEventListener('input', (e) => { // a corrected field loses its message
      const name = e.target.name;
      if (!name) return;
      e.target.removeAttribute('aria-invalid');
      const slot = form.querySelector(`[data-err-for="${CSS.escape(name)}"]`);
      if (slot) slot.textContent = '';
    });

    function body() {
      const value = (name) => form.elements[name].value.trim();
      const unit = value('unit');
      const content = {
        area: [...form.elements['content.area'].selectedOptions].map((o) => o.value),
        hazards: value('content.hazards'),
        // extra measures count only when shown (橙/红)
        measures: [...form.querySelectorAll('input[name="content.measures"]:checked')]
          .filter((n) => !n.hasAttribute('data-extra') || !extra.hidden).map((n) => n.value),
      };
      if (value('content.category')) content.category = value('content.category');
      if (value('content.level')) content.level = value('content.level');
      const start = YJ.fromLocalInput(form.elements['content.start'].value);
      if (start) content.start = start;
      if (unit) content.issuer = unit; // the drafting unit issues it (3.2.3(1))
      return { unit, content, drill: form.elements.drill.checked };
    }

    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      YJ.clearFieldErrors(form, general);
      submit.disabled = true;
      try {
        const resp = await YJ.api('/warnings', { method: 'POST', json: body() });
        if (resp.status === 201) {
          location.assign(`/warnings/${encodeURIComponent(resp.body.warning_id)}/page?done=draft`);
          return;
        }
        if (resp.status === 422 && resp.body && resp.body.fields) {
          // the form has no slot of its own for these: shown by the field that makes them
          const fields = fieldsOf(resp.body).map((f) => ({ ...f, field: f.field === 'content.issuer' ? 'unit' : f.field }));
          YJ.showFieldErrors(form, fields, general);
        } else {
          general.textContent = YJ.statusMessage(resp);
          general.hidden = false;
        }
      } catch (err) {
        general.textContent = `提交失败：无法连接服务（${err.message}）。`;
        general.hidden = false;
      } finally {
        submit.disabled = false;
      }
    });
  }

  // --- a warning's buttons ---------------------------------------------------------------------------
  const page = document.getElementById('warning');
  if (page) {
    const error = document.getElementById('action-error');
    const id = encodeURIComponent(config.warning_id);
    const adjust = page.querySelector('form[data-action="adjust"]');
    if (adjust) {
      const extraBox = adjust.querySelector('.adjust-extra');
      const sync = () => { extraBox.hidden = !high.has(adjust.elements.level.value); };
      adjust.elements.level.addEventListener('change', sync);
      sync();
    }

    function request(f) {
      const v = (name) => (f.elements[name] ? f.elements[name].value.trim() : '');
      switch (f.dataset.action) {
        case 'approve':
          return [`/warnings/${id}/approvals`, { unit: config.approval_units[f.dataset.approval], approval: f.dataset.approval, approver: v('approver') }];
        case 'issue':
          return [`/warnings/${id}/issue`, { unit: config.issuer }];
        case 'adjust': {
          const b = { unit: config.adjuster, level: v('level'), approver: v('approver') };
          if (high.has(b.level)) {
            b.measures = [...config.base, ...[...f.querySelectorAll('input[name=measures]:checked')].map((n) => n.value)];
          }
          return [`/warnings/${id}/adjust`, b];
        }
        default:
          return [`/warnings/${id}/lift`, { unit: config.issuer, reason: v('reason') }];
      }
    }

    const refusalLines = (resp) => {
      if (resp.status === 422 && resp.body && resp.body.fields) {
        return fieldsOf(resp.body).map((x) => `${FIELD_NAMES[x.field] || x.field}：${x.message}`);
      }
      if (resp.status === 404) return ['未找到该预警。'];
      return [YJ.statusMessage(resp)];
    };

    // --- its tasks: 确认完成 ---------------------------------------------------------------------------
    const tasks = document.getElementById('tasks');
    const tasksError = document.getElementById('tasks-error');
    const doneNode = (t) => YJ.el('span', { class: 'task-done', title: YJ.dateTime(t.done_at),
      text: `已确认 ${YJ.time(t.done_at).slice(0, 5)}（${t.done_by || '—'}）` });

    // the section again from the warning's answer: each row's state, each group's count
    function renderTasks(answer) {
      const rows = new Map([...tasks.querySelectorAll('tr[data-task]')].map((r) => [r.dataset.task, r]));
      if ((answer.tasks || []).some((t) => !rows.has(t.task.id))) { // tasks made since: the page again
        location.replace(location.pathname);
        return;
      }
      for (const t of answer.tasks || []) {
        if (!t.done_at) continue;
        const cell = rows.get(t.task.id).querySelector('.task-state');
        if (!cell.querySelector('.task-done')) cell.replaceChildren(doneNode(t));
      }
      for (const group of tasks.querySelectorAll('details.task-group')) {
        const kind = group.dataset.kind;
        const mine = (answer.tasks || []).filter((t) => t.task.kind === kind);
        group.querySelector('.task-count .done').textContent = String(mine.filter((t) => t.done_at).length);
        group.querySelector('.task-count .total').textContent = String(mine.length);
      }
    }

    if (tasks) {
      tasks.addEventListener('click', async (e) => {
        const button = e.target.closest('button.task-confirm');
        if (!button) return;
        tasksError.hidden = true;
        button.disabled = true;
        try {
          const resp = await YJ.api(`/warnings/${id}/tasks/${encodeURIComponent(button.dataset.task)}/confirm`,
            { method: 'POST', json: { unit: button.dataset.unit } });
          if (resp.ok) {
            renderTasks(resp.body);
            return;
          }
          tasksError.replaceChildren(YJ.el('strong', { text: '未受理：' }),
            ...refusalLines(resp).map((t) => YJ.el('div', { class: 'refusal', text: t })));
          tasksError.hidden = false;
        } catch (err) {
          tasksError.textContent = `提交失败：无法连接服务（${err.message}）。`;
          tasksError.hidden = false;
        } finally {
          button.disabled = false;
        }
      });
    }

    page.addEventListener('submit', async (e) => {
      const f = e.target.closest('form[data-action]');
      if (!f) return;
      e.preventDefault();
      error.hidden = true;
      const button = f.querySelector('button');
      button.disabled = true;
      try {
        const [path, json] = request(f);
        const resp = await YJ.api(path, { method: 'POST', json });
        if (resp.ok) {
          location.replace(`${location.pathname}?done=${f.dataset.action}`); // rendered again from the book
          return;
        }
        const lines = refusalLines(resp);
        error.replaceChildren(YJ.el('strong', { text: '未受理：' }), ...lines.map((t) => YJ.el('div', { class: 'refusal', text: t })));
        error.hidden = false;
      } catch (err) {
        error.textContent = `提交失败：无法连接服务（${err.message}）。`;
        error.hidden = false;
      } finally {
        button.disabled = false;
      }
    });
  }
})();
