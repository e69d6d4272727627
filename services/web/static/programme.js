/* The drill programme page (/drills/programme): its forms post JSON to the API, then the page is read again. */
'use strict';

(() => {
  const filter = document.getElementById('programme-filter');
  if (filter) { // 全部单位 is no unit= at all (the API refuses an empty unit, naming it)
    filter.addEventListener('submit', () => {
      for (const input of filter.querySelectorAll('[name]')) input.disabled = input.value.trim() === '';
    });
  }
  const result = document.getElementById('form-result');
  const say = (status, body, done) => {
    const fields = (body && body.fields) || [];
    result.textContent = status < 300 ? done
      : (fields.length ? fields.map((f) => `${f.field}：${YJ.translate(f.message)}`).join('；') : `未能登记（${status}）`);
  };
  for (const form of document.querySelectorAll('form.programme-form')) {
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const json = {};
      for (const input of form.querySelectorAll('[name]')) {
        const value = input.value.trim();
        if (value === '') continue; // absent: the API's default
        if (input.dataset.type === 'int') json[input.name] = Number(value);
        else if (input.dataset.type === 'day') json[input.name] = `${value}T00:00:00+08:00`;
        else if (input.dataset.type === 'day-end') json[input.name] = `${value}T23:59:59+08:00`; // by the end of that day
        else json[input.name] = value;
      }
      const button = form.querySelector('button[type=submit]');
      button.disabled = true;
      const { status, body } = await YJ.api(form.dataset.endpoint, { method: 'POST', json });
      button.disabled = false;
      say(status, body, '已登记');
      if (status === 201) window.location.reload();
    });
  }
  for (const button of document.querySelectorAll('button.close-item')) {
    button.addEventListener('click', async () => {
      button.disabled = true;
      const { status, body } = await YJ.api(`/drills/programme/improvements/${encodeURIComponent(button.dataset.item)}/close`, {
        method: 'POST', json: { closed_at: new Date(YJ.now()).toISOString() } });
      say(status, body, '已完成');
      if (status === 200) window.location.reload(); else button.disabled = false;
    });
  }
})();
