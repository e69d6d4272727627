"""预警 in a real browser (Debian's Chromium driven by Playwright), against an app built from its own parts
and served by uvicorn, no broker (a publisher that keeps what it sends): a 橙 warning drafted through the
form (a bad one first: its refusals beside their field), approved twice, issued, adjusted to 红 and lifted
from its page, while the board — never reloaded — shows it in orange, then red, then no more."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import uvicorn

from services.clock import SimulatedClock
from services.settings import Settings
from services.users import new_token, user_record
from services.web.app import create_app
from tests.pages.test_duty_pages import NOW, PLAN, RecordingPublisher, free_port, shot, sign_in
from topics.catalog import WARNING_EVENTS
from topics.models import Role

ORANGE, RED = (245, 124, 0), (211, 47, 47)


@dataclass
class Site:
    url: str
    app: object
    tokens: dict
    publisher: RecordingPublisher


@pytest.fixture
def site(tmp_path) -> Iterator[Site]:
    """The app served by uvicorn on a loop of its own thread, without its lifespan (no broker)."""
    publisher = RecordingPublisher()
    app = create_app(Settings(data_dir=tmp_path, bootstrap_servers="127.0.0.1:1"), plan=PLAN,
                     clock=SimulatedClock(start=NOW, speed=1.0), publisher=publisher)  # type: ignore[arg-type]
    app.state.warnings.caught_up.set()  # nothing to read back
    tokens = {}
    for role in Role:
        tokens[role] = new_token()
        app.state.users.apply(user_record(f"w-{role.value}", role, tokens[role], now=NOW, by="test"))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning"))
    loops: list[asyncio.AbstractEventLoop] = []

    async def serve() -> None:
        loops.append(asyncio.get_running_loop())
        await server.serve()

    thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield Site(f"http://127.0.0.1:{port}", app, tokens, publisher)
    server.should_exit = True
    thread.join(timeout=10)


def rgb(css: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", css)[:3])


def test_a_warning_drafted_approved_issued_adjusted_and_lifted_from_the_pages_live_on_the_board(site, context):
    from playwright.sync_api import expect

    board = context.new_page()
    sign_in(board, site, Role.COMMANDER, "/board")
    expect(board.locator("#conn")).to_have_attribute("data-state", "live")
    expect(board.locator("#warnings-empty")).to_be_visible()
    board.evaluate("window.__marker = 'loaded-once'")

    page = context.new_page()
    page.goto(site.url + "/board")
    page.locator(".nav").get_by_role("link", name="预警").click()
    expect(page).to_have_url(re.compile(r"/warnings/list$"))
    page.get_by_role("link", name="拟制预警").click()
    expect(page).to_have_url(re.compile(r"/warnings/new$"))

    # the extra measures of 3.2.5(2) show for 橙/红 only
    extra = page.locator("#extra-measures")
    expect(extra).to_be_hidden()
    page.get_by_label("发布单位 *").select_option(label="区应急办")
    page.get_by_label("类别 *").select_option(label="暴雨")
    page.get_by_label("预警级别 *").select_option("orange")
    expect(extra).to_be_visible()
    page.locator("#content\\.area").select_option(["street_zhongcang", "town_songzhuang"])
    page.get_by_label("警示事项 *").fill("预计未来6小时降雨量将达100毫米以上")
    base = page.locator('input[name="content.measures"]:not([data-extra])')
    expect(base).to_have_count(4)
    for i in range(4):
        expect(base.nth(i)).to_be_checked()
        base.nth(i).uncheck()

    # no measures: refused, the message beside the measures
    page.get_by_role("button", name="提交预警草案").click()
    measures_error = page.locator('[data-err-for="content.measures"]')
    expect(measures_error).to_contain_text("缺少应采取的措施")
    expect(page.locator("#form-error")).to_contain_text("请更正")
    assert site.publisher.sent == []
    shot(page, "warn-01-form-refused")

    for i in range(4):
        base.nth(i).check()
    page.get_by_label(re.compile("责令应急救援队伍")).check()
    page.get_by_label(re.compile("转移、疏散或者撤离")).check()
    page.get_by_role("button", name="提交预警草案").click()
    expect(page).to_have_url(re.compile(r"/warnings/w-[0-9a-f]+/page\?done=draft$"))
    warning_id = re.search(r"/warnings/(w-[0-9a-f]+)/page", page.url).group(1)
    expect(page.locator("#status")).to_have_text("草案")
    expect(page.locator("#level-badge")).to_have_text("橙色预警")
    expect(page.locator("#items")).to_contain_text("中仓街道、宋庄镇")
    expect(page.locator("#items")).to_contain_text("转移、疏散或者撤离")

    # 发布 before the approvals: refused, said so
    page.get_by_role("button", name="发布", exact=True).click()
    expect(page.locator("#action-error")).to_contain_text("须先经区领导批准、市应急办批准")

    page.get_by_label("区领导（批准人）").fill("分管副区长 王某")
    page.get_by_role("button", name="区领导批准").click()
    expect(page.locator("#approvals")).to_contain_text("分管副区长 王某")
    page.get_by_label("市应急办（批准人）").fill("市应急办值班室 李某")
    page.get_by_role("button", name="市应急办批准").click()
    expect(page.locator("#approvals")).to_contain_text("市应急办值班室 李某")
    expect(page.get_by_role("button", name="区领导批准")).to_have_count(0)
    expect(board.locator("#warnings li")).to_have_count(0)  # a draft is not on the board

    page.get_by_role("button", name="发布", exact=True).click()
    expect(page.locator("#status")).to_have_text("已发布")
    expect(page.locator("#action-ok")).to_have_text("已发布。")

    # on the board, live, in orange
    card = board.locator(f'#warnings li[data-id="{warning_id}"]')
    expect(card).to_be_visible(timeout=3000)
    expect(card).to_contain_text("暴雨橙色预警")
    expect(card).to_contain_text("中仓街道、宋庄镇")
    assert rgb(card.locator("a").evaluate("n => getComputedStyle(n).backgroundColor")) == ORANGE
    expect(board.locator("#warnings-empty")).to_be_hidden()
    shot(board, "warn-02-board-orange")

    # adjusted to 红 (3.2.6): the board turns red
    page.get_by_label("调整后级别").select_option("red")
    page.get_by_label("区应急委领导（批准人）").fill("区应急委副主任 赵某")
    page.get_by_role("button", name="调整级别").click()
    expect(page.locator("#level-badge")).to_have_text("红色预警")
    expect(card).to_have_attribute("data-level", "red", timeout=3000)
    expect(card).to_contain_text("暴雨红色预警")
    assert rgb(card.locator("a").evaluate("n => getComputedStyle(n).backgroundColor")) == RED
    shot(board, "warn-03-board-red")

    # the history: each step with its CAP link
    history = page.locator("#history tbody tr")
    expect(history).to_have_count(5)
    expect(history.nth(3)).to_contain_text("发布")
    cap = history.nth(4).get_by_role("link", name="CAP")
    expect(cap).to_have_attribute("href", f"/warnings/{warning_id}/cap/5")
    shot(page, "warn-04-page")

    # lifted (3.2.7): off the board
    page.get_by_label("解除原因").fill("降雨已结束")
    page.get_by_role("button", name="解除").click()
    expect(page.locator("#status")).to_have_text("已解除")
    expect(card).to_have_count(0, timeout=3000)
    expect(board.locator("#warnings-empty")).to_be_visible()
    expect(page.get_by_role("button", name="解除")).to_have_count(0)
    assert board.evaluate("window.__marker") == "loaded-once"  # the board never reloaded

    kinds = [r.kind.value for t, _, r in site.publisher.sent if t == WARNING_EVENTS.name]
    assert kinds == ["drafted", "approved", "approved", "issued", "adjusted", "lifted"]

    # the list: lifted now, with its page linked
    page.goto(site.url + "/warnings/list")
    row = page.locator(f'#warnings-table tr[data-id="{warning_id}"]')
    expect(row).to_contain_text("已解除")
    expect(row.get_by_role("link", name=warning_id)).to_have_attribute("href", f"/warnings/{warning_id}/page")


def test_a_drill_warning_is_marked_on_the_board(site, context):
    from playwright.sync_api import expect

    board = context.new_page()
    sign_in(board, site, Role.DUTY_OFFICER, "/board")
    expect(board.locator("#conn")).to_have_attribute("data-state", "live")
    page = context.new_page()
    page.goto(site.url + "/warnings/new")
    page.get_by_label("发布单位 *").select_option(label="区气象局")
    page.get_by_label("类别 *").select_option(label="高温")
    page.get_by_label("预警级别 *").select_option("blue")
    page.locator("#content\\.area").select_option(["street_zhongcang"])
    page.get_by_label("警示事项 *").fill("预计最高气温35℃以上")
    page.get_by_label(re.compile("演练预警")).check()
    page.get_by_role("button", name="提交预警草案").click()
    expect(page.locator("h1 .badge.drill")).to_have_text("演练")
    page.get_by_role("button", name="发布", exact=True).click()
    expect(page.locator("#status")).to_have_text("已发布")
    board.get_by_role("button", name=re.compile("^演练")).click()
    card = board.locator("#warnings li.drill")
    expect(card).to_be_visible(timeout=3000)
    expect(card.locator(".badge.drill")).to_have_text("演练")
    expect(card).to_contain_text("高温蓝色预警")
    board.get_by_role("button", name=re.compile("^实战")).click()
    expect(card).to_be_hidden()  # filtered as drill incidents are, never mixed in silently


def test_the_tasks_of_an_issued_warning_are_confirmed_from_its_page_and_a_viewer_only_reads_them(site, context, browser):
    from playwright.sync_api import expect

    page = context.new_page()
    sign_in(page, site, Role.DUTY_OFFICER, "/warnings/new")
    page.get_by_label("发布单位 *").select_option(label="区气象局")
    page.get_by_label("类别 *").select_option(label="暴雨")
    page.get_by_label("预警级别 *").select_option("blue")
    page.locator("#content\\.area").select_option(["street_zhongcang"])
    page.get_by_label("警示事项 *").fill("预计未来6小时降雨量将达50毫米以上")
    page.get_by_role("button", name="提交预警草案").click()
    expect(page.locator("#status")).to_have_text("草案")
    expect(page.locator("#tasks-empty")).to_be_visible()
    page.get_by_role("button", name="发布", exact=True).click()
    expect(page.locator("#status")).to_have_text("已发布")
    warning_id = re.search(r"/warnings/(w-[0-9a-f]+)/page", page.url).group(1)

    # 发布渠道 (3.2.8) open, each channel with its unit and a 确认完成; the measures folded
    channels = page.locator('details.task-group[data-kind="publication"]')
    expect(channels).to_have_attribute("open", "")
    expect(page.locator('details.task-group[data-kind="measure"]')).not_to_have_attribute("open", "")
    rows = channels.locator("tbody tr")
    expect(rows).to_have_count(7)  # six channels of the district and 中仓街道's targeted notice
    for name in ("广播、电视", "手机短信", "微博、微信", "网站", "电子显示屏", "有线广播警报器、宣传车"):
        expect(channels).to_contain_text(name)
    expect(channels.get_by_role("button", name="确认完成")).to_have_count(7)
    count = channels.locator(".task-count")
    expect(count).to_have_text("已确认 0 / 7")

    sms = rows.filter(has_text="手机短信")
    expect(sms).to_contain_text("区应急办")
    page.evaluate("window.__marker = 'not-reloaded'")
    sms.get_by_role("button", name="确认完成").click()
    expect(sms.locator(".task-done")).to_have_text(re.compile(r"^已确认 \d\d:\d\d（w-duty_officer）$"))
    expect(sms.locator(".task-done")).to_have_attribute("title", re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$"))
    expect(count).to_have_text("已确认 1 / 7")
    expect(sms.get_by_role("button")).to_have_count(0)
    assert page.evaluate("window.__marker") == "not-reloaded"  # the section re-rendered in place
    expect(page.locator("#tasks-error")).to_be_hidden()
    shot(page, "warn-05-tasks")

    # a viewer: the same list, confirmed where it was, no buttons
    viewer_context = browser.new_context(viewport={"width": 1600, "height": 900}, locale="zh-CN",
                                         timezone_id="Asia/Shanghai")
    try:
        viewer = viewer_context.new_page()
        sign_in(viewer, site, Role.VIEWER, f"/warnings/{warning_id}/page")
        seen = viewer.locator('details.task-group[data-kind="publication"]')
        expect(seen.locator("tbody tr")).to_have_count(7)
        expect(seen.locator(".task-count")).to_have_text("已确认 1 / 7")
        expect(seen.locator("tbody tr").filter(has_text="手机短信")).to_contain_text("已确认")
        expect(viewer.locator("#tasks").get_by_role("button")).to_have_count(0)
        expect(viewer.locator("#tasks")).to_contain_text("待确认")
    finally:
        viewer_context.close()
