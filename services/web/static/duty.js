/* The 值班 pages: the top clock on the server's time, and on the 值班表 page 确认接班 (POST
   /handovers/{id}/confirm with the sign-in cookie; the block updated in place, a refusal in words)
   and 发送测试消息 (POST /people/{id}/test-message). */
'use strict';

(() => {
  const { el } = YJ;
  const config = JSON.parse(document.getElementById('config').textContent);
  if (config.server_time) YJ.setServerTime(config.server_time);
  document.querySelectorAll('button.send-test').forEach((b) => b.addEventListener('click', () => sendTest(b)));

  async function sendTest(b) { // 发送测试消息: the person's 已阅 of it verifies their contacts
    const ok = document.getElementById('test-ok');
    const err = document.getElementById('test-error');
    ok.hidden = true;
    err.hidden = true;
    b.disabled = true;
    let resp;
    try {
      resp = await YJ.api(`/people/${encodeURIComponent(b.dataset.person)}/test-message`, { method: 'POST' });
    } catch (e) {
      resp = null;
    }
    b.disabled = false;
    if (resp && resp.status === 202) {
      ok.textContent = '测试消息已发出，请对方点「已阅」';
      ok.hidden = false;
      return;
    }
    err.textContent = !resp ? '未能发送：无法连接服务器，请稍后重试。'
      : resp.status === 404 ? '未能发送：人员名录中没有此人。'
        : resp.status === 403 ? '未能发送：当前身份无权发送测试消息。'
          : `未能发送：${YJ.statusMessage(resp)}`;
    err.hidden = false;
  }

  const button = document.getElementById('confirm-handover');
  if (!button || !config.handover_id) return;
  const $ = (id) => document.getElementById(id);
  const ITEM_LABEL = { incident: '未结事件', obligation: '到期报送', notice: '未确认通知' };

  function say(node, text) {
    $('ho-ok').hidden = true;
    $('ho-error').hidden = true;
    node.textContent = text;
    node.hidden = false;
  }

  function show(h) { // the block as the confirmation's answer has it
    const late = h.escalated_at ? '；逾期确认，此前已报带班领导' : '';
    const status = $('ho-status');
    status.textContent = `已确认（${h.confirmed_by}，${YJ.dateTime(h.confirmed_at).slice(0, 16)}${late}）`;
    status.className = 'ho-status confirmed';
    $('handover').dataset.state = 'confirmed';
    $('ho-count').textContent = `${h.items.length} 项`;
    $('ho-items').replaceChildren(...(h.items.length ? h.items.map((i) => el('li', { class: `item-${i.kind}` },
      el('span', { class: 'badge item', text: ITEM_LABEL[i.kind] || i.kind }), ` ${i.text} `,
      i.incident_id ? el('a', { href: `/incidents/${encodeURIComponent(i.incident_id)}/page`, text: i.incident_id }) : null))
      : [el('li', { class: 'hint', text: '无' })]));
    button.closest('p').remove();
  }

  function refusal(resp) {
    const detail = resp.body && resp.body.fields && resp.body.fields[0] ? resp.body.fields[0].message : '';
    if (resp.status === 409) {
      const who = detail.match(/already confirmed by (.+) at (.+)$/);
      return who ? `未能确认：该交接班已由 ${who[1]} 于 ${who[2]} 确认。刷新页面可查看。`
        : `未能确认：${/not the incoming/.test(detail) ? '您不是本班接班的值班员。' : '该交接班已确认。'}`;
    }
    if (resp.status === 404) return '未能确认：未找到该交接班（可能尚未开始）。';
    if (resp.status === 403) return '未能确认：当前身份无权确认接班。';
    return `未能确认：${YJ.statusMessage(resp)}`;
  }

  button.addEventListener('click', async () => {
    button.disabled = true;
    let resp;
    try {
      resp = await YJ.api(`/handovers/${encodeURIComponent(config.handover_id)}/confirm`, { method: 'POST', json: {} });
    } catch (e) {
      button.disabled = false;
      say($('ho-error'), '未能确认：无法连接服务器，请稍后重试。');
      return;
    }
    if (resp.ok) {
      show(resp.body);
      say($('ho-ok'), '已确认接班。');
    } else {
      button.disabled = false;
      say($('ho-error'), refusal(resp));
    }
  });
})();
