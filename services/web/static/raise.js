/* 接报登记: the report contract as a form, posted as JSON to /incidents; the API's validation
   messages shown in Chinese next to their field. Times are entered in Beijing time (+08:00). */
'use strict';

(() => {
  const form = document.getElementById('raise-form');
  const general = document.getElementById('form-error');
  const ok = document.getElementById('form-ok');
  const submit = document.getElementById('submit');
  form.elements.received_at.value = YJ.localInput(YJ.now());

  const text = (name) => form.elements[name].value.trim();

  function body() {
    const b = { type: text('type'), location: {}, facts: {}, flags: {}, reporter: {} };
    const occurred = YJ.fromLocalInput(form.elements.occurred_at.value);
    const received = YJ.fromLocalInput(form.elements.received_at.value);
    if (occurred) b.occurred_at = occurred;
    if (received) b.received_at = received;
    if (!b.type) delete b.type;
    if (text('location.street')) b.location.street = text('location.street');
    if (text('location.address')) b.location.address = text('location.address');
    const areas = [...form.querySelectorAll('input[name=key_area]:checked')].map((n) => n.value);
    for (const a of text('key_area_other').split(/[、,，;；]/)) if (a.trim()) areas.push(a.trim());
    if (areas.length) b.location.key_area = areas;
    for (const input of form.querySelectorAll('input[name^="facts."]')) {
      const v = input.value.trim();
      if (v === '' && input.validity.badInput) b.facts[input.name.slice(6)] = 'invalid';
      else if (v !== '') b.facts[input.name.slice(6)] = Number(v);
    }
    for (const input of form.querySelectorAll('input[name^="flags."]')) if (input.checked) b.flags[input.name.slice(6)] = true;
    if (text('asserted_grade')) b.asserted_grade = text('asserted_grade');
    if (text('asserted_by')) b.asserted_by = text('asserted_by');
    if (text('source')) b.source = text('source');
    if (text('summary')) b.summary = text('summary');
    if (text('reporter.name')) b.reporter.name = text('reporter.name');
    if (text('reporter.phone')) b.reporter.phone = text('reporter.phone');
    return b;
  }

  form.addEventListener('input', (e) => { // a corrected field loses its message
    const name = e.target.name;
    if (!name) return;
    e.target.removeAttribute('aria-invalid');
    const slot = form.querySelector(`[data-err-for="${CSS.escape(name)}"]`);
    if (slot) slot.textContent = '';
  });

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    YJ.clearFieldErrors(form, general);
    ok.hidden = true;
    submit.disabled = true;
    submit.textContent = '提交中…';
    try {
      const resp = await YJ.api('/incidents', { method: 'POST', json: body() });
      if (resp.status === 202) {
        const id = resp.body.incident_id;
        ok.replaceChildren(YJ.el('span', { text: `已受理，事件编号 ${id}。` }), ' ',
          YJ.el('a', { href: `/incidents/${encodeURIComponent(id)}/page`, text: '打开事件页（报送、批准）' }), '　',
          YJ.el('a', { href: '/board', text: '返回态势大屏' }));
        ok.hidden = false;
        form.reset();
        form.elements.received_at.value = YJ.localInput(YJ.now());
        window.scrollTo({ top: 0 });
      } else if (resp.status === 422 && resp.body && resp.body.fields) {
        YJ.showFieldErrors(form, resp.body.fields, general);
      } else {
        general.textContent = YJ.statusMessage(resp);
        general.hidden = false;
      }
    } catch (err) {
      general.textContent = `提交失败：无法连接服务（${err.message}）。`;
      general.hidden = false;
    } finally {
      submit.disabled = false;
      submit.textContent = '提交接报';
    }
  });
})();
